#!/usr/bin/env bash
# Copy the CRD generated from the Rust types (crds/ at the repository root) into the chart.
# The chart's copy must be byte-identical: operator/tests/crd.rs and charts/tests fail otherwise.
#
#   charts/imagestack-operator/sync-crds.sh          # copy
#   charts/imagestack-operator/sync-crds.sh --check  # exit 1 if the copy differs (CI)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$here/../../crds/imagestack.dev_imagestacks.yaml
dst=$here/crds/imagestack.dev_imagestacks.yaml
if [ "${1:-}" = "--check" ]; then
  if cmp -s "$src" "$dst"; then echo "chart CRD is in sync"; exit 0; fi
  echo "error: $dst differs from $src; run $0 to copy it" >&2
  exit 1
fi
mkdir -p "$(dirname "$dst")"
cp "$src" "$dst"
echo "copied $src -> $dst"
