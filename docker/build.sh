#!/usr/bin/env bash
# The image's build commands, in one place: the Dockerfile RUNs this script, and
# scripts/check-image-build.sh runs the same script where there is no Docker engine.
#
#   docker/build.sh OUT_DIR
#
# Builds, from the repository root:
#   1. the operator, release profile:  cargo build --release --locked -p imagestack-operator --bin operator
#   2. the processor Lambda zips for x86_64 and arm64 with the processor's own artifact command,
#      processor/scripts/build-artifact.sh (cargo-lambda + zig, reproducible zips)
# and lays them out in OUT_DIR exactly as the image holds them:
#   OUT_DIR/usr/local/bin/operator
#   OUT_DIR/opt/imagestack/processor/x86_64.zip   (+ .sha256)
#   OUT_DIR/opt/imagestack/processor/arm64.zip    (+ .sha256)
# Needs what docker/install-build-deps.sh installs (its venv's bin/ on PATH).
# CARGO_TARGET_DIR is honoured (default: <repo>/target).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:?usage: docker/build.sh OUT_DIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
log() { printf '==> %s\n' "$*" >&2; }
cd "$REPO"

mkdir -p "$CARGO_TARGET_DIR"
CARGO_TARGET_DIR=$(cd "$CARGO_TARGET_DIR" && pwd)

# Build from a mirror of the sources at a path that depends only on the target dir, not on where
# this checkout is: a new checkout sharing the target dir recompiles only what changed, and the
# zips are byte-identical (scripts/stage-sources.sh, processor/scripts/build-artifact.sh).
SRC=$CARGO_TARGET_DIR/imagestack-src
exec 9>"$CARGO_TARGET_DIR/imagestack-src.lock"
flock 9
log "sources mirrored to $("$REPO/scripts/stage-sources.sh" "$SRC")"

log "operator (release)"
(cd "$SRC" && cargo build --release --locked -p imagestack-operator --bin operator)
install -D -m 0755 "$CARGO_TARGET_DIR/release/operator" "$OUT/usr/local/bin/operator"

log "processor Lambda artifacts (x86_64, arm64) via processor/scripts/build-artifact.sh"
artifacts=$(mktemp -d)
trap 'rm -rf "$artifacts"' EXIT
IMAGESTACK_STAGED_SRC=$SRC IMAGESTACK_ARTIFACT_DIR=$artifacts "$SRC/processor/scripts/build-artifact.sh" x86_64 arm64
for arch in x86_64 arm64; do
  install -D -m 0644 "$artifacts/$arch/bootstrap.zip" "$OUT/opt/imagestack/processor/$arch.zip"
  (cd "$OUT/opt/imagestack/processor" && sha256sum "$arch.zip" > "$arch.zip.sha256")
done
log "done: $(cd "$OUT" && find . -type f | sort | tr '\n' ' ')"
