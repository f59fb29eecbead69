#!/usr/bin/env bash
# Development processor artifact: the `bootstrap` binary of this checkout (debug build, stripped)
# zipped as the Lambda expects it, at .run/artifacts/x86_64.zip — what ./scripts/up and the tests
# deploy with `--processor-artifact-dir .run/artifacts`. Deterministic: same binary, same zip,
# same CodeSha256. Release zips for x86_64 and arm64: see processor/README.md.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$REPO"
OUT=${1:-$RUN/artifacts}
mkdir -p "$OUT"
cargo build -q -p imagestack-processor --bin bootstrap
BIN=${CARGO_TARGET_DIR:-$REPO/target}/debug/bootstrap
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cp "$BIN" "$tmp/bootstrap"
strip "$tmp/bootstrap" 2>/dev/null || true
python3 - "$tmp/bootstrap" "$OUT/x86_64.zip" <<'PY'
import sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
info = zipfile.ZipInfo("bootstrap", date_time=(1980, 1, 1, 0, 0, 0))
info.external_attr = 0o100755 << 16
info.compress_type = zipfile.ZIP_DEFLATED
with open(src, "rb") as f, zipfile.ZipFile(dst + ".tmp", "w") as z:
    z.writestr(info, f.read(), compresslevel=6)
import os; os.replace(dst + ".tmp", dst)
PY
echo "$OUT/x86_64.zip ($(du -h "$OUT/x86_64.zip" | cut -f1))"
