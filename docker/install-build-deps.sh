#!/usr/bin/env bash
# Install what docker/build.sh needs, idempotently. The Dockerfile's build stage runs this, and so
# does scripts/check-image-build.sh on a developer machine or CI, so both use one list.
#
#   Debian packages: nasm (mozjpeg's x86_64 SIMD), binutils (nm, used by the artifact script to
#                    prove SIMD was compiled in), python3 + python3-venv (zip writer, build venv)
#   Rust targets:    x86_64-unknown-linux-gnu, aarch64-unknown-linux-gnu (rustup)
#   PyPI:            docker/requirements-build.txt (cargo-lambda, ziglang) into a venv at
#                    ${IMAGESTACK_BUILD_VENV:-/opt/imagestack-build-venv}; put its bin/ on PATH.
# Prints the venv's bin directory on stdout.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VENV=${IMAGESTACK_BUILD_VENV:-/opt/imagestack-build-venv}
log() { echo "install-build-deps: $*" >&2; }

missing=()
command -v nasm >/dev/null || missing+=(nasm)
command -v nm >/dev/null || missing+=(binutils)
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || { log "ERROR: missing ${missing[*]} and no apt-get"; exit 1; }
  log "apt-get install ${missing[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

command -v rustup >/dev/null || { log "ERROR: rustup not found (the Rust toolchain comes from rustup)"; exit 1; }
installed=$(rustup target list --installed)
for t in x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu; do
  grep -qx "$t" <<<"$installed" || { log "rustup target add $t"; rustup target add "$t" >&2; }
done

stamp=$VENV/.imagestack-build.stamp
want=$(sha256sum "$HERE/requirements-build.txt" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! "$VENV/bin/cargo-lambda" lambda --help >/dev/null 2>&1; then
  log "pip install -r docker/requirements-build.txt into $VENV"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" >&2
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install --quiet --progress-bar off \
    --root-user-action=ignore -r "$HERE/requirements-build.txt" >&2
  echo "$want" > "$stamp"
fi
echo "$VENV/bin"
