#!/usr/bin/env bash
# Build the Lambda artifact the operator deploys: bootstrap.zip for the
# provided.al2023 runtime, x86_64 and arm64.
#
#   processor/scripts/build-artifact.sh [x86_64|arm64 ...]    (default: both)
#
# Output: dist/lambda/<arch>/bootstrap.zip (+ bootstrap.zip.sha256) under the repo root
# (override with IMAGESTACK_ARTIFACT_DIR). Release profile (LTO, stripped).
# Needs: pip install cargo-lambda ziglang; rustup target add x86_64-unknown-linux-gnu
#        aarch64-unknown-linux-gnu; apt-get install nasm (mozjpeg SIMD on x86_64).
#
# Reproducible and independent of the checkout's path: the sources are mirrored to
# $CARGO_TARGET_DIR/imagestack-src (scripts/stage-sources.sh) and built there, with that path
# and the registry's remapped out of the binary, and the zip has fixed timestamps, permissions
# and order. So the same sources and toolchain give byte-identical zips from any checkout and
# any target dir (compare the .sha256 files), and a second checkout sharing the target dir
# recompiles only what differs. Builds sharing a target dir take turns (a lock beside it).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${IMAGESTACK_ARTIFACT_DIR:-$root/dist/lambda}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
mkdir -p "$CARGO_TARGET_DIR"
CARGO_TARGET_DIR="$(cd "$CARGO_TARGET_DIR" && pwd)"
archs=("$@")
[ ${#archs[@]} -eq 0 ] && archs=(x86_64 arm64)

command -v nasm >/dev/null || { echo "nasm missing: apt-get install nasm" >&2; exit 1; }
command -v cargo-lambda >/dev/null || { echo "cargo-lambda missing: pip install cargo-lambda ziglang" >&2; exit 1; }

# docker/build.sh stages (and holds the lock) itself and says so with IMAGESTACK_STAGED_SRC.
if [ -n "${IMAGESTACK_STAGED_SRC:-}" ]; then
  src="$IMAGESTACK_STAGED_SRC"
else
  src="$CARGO_TARGET_DIR/imagestack-src"
  exec 9>"$CARGO_TARGET_DIR/imagestack-src.lock"
  flock 9
  "$root/scripts/stage-sources.sh" "$src" >/dev/null
fi

registry="${CARGO_HOME:-$HOME/.cargo}"
export RUSTFLAGS="${RUSTFLAGS:-} --remap-path-prefix=$registry=/cargo --remap-path-prefix=$src=/src"
export SOURCE_DATE_EPOCH=315532800

for arch in "${archs[@]}"; do
  case "$arch" in
    x86_64) flag=--x86-64; triple=x86_64-unknown-linux-gnu ;;
    arm64) flag=--arm64; triple=aarch64-unknown-linux-gnu ;;
    *) echo "unknown arch $arch (x86_64 or arm64)" >&2; exit 2 ;;
  esac
  staging="$CARGO_TARGET_DIR/lambda-staging/$arch"
  rm -rf "$staging"
  (cd "$src" && cargo lambda build --release --locked -p imagestack-processor --bin bootstrap "$flag" --lambda-dir "$staging")
  bin="$staging/bootstrap/bootstrap"
  [ -x "$bin" ] || { echo "no binary at $bin" >&2; exit 1; }

  # SIMD really compiled in? (mozjpeg: nasm AVX2 kernels / NEON; libwebp: SSE4.1 / NEON)
  # (the C code is in the crates' rlibs or in static libraries their build scripts made)
  built="$CARGO_TARGET_DIR/$triple/release"
  if [ "$arch" = x86_64 ]; then jpeg_simd='jsimd_.*_avx2'; webp_simd='SSE41'; else jpeg_simd='jsimd_.*_neon'; webp_simd='NEON'; fi
  symbols() { nm "$built"/deps/lib"$1"-*.rlib "$built"/build/"$2"-*/out/*.a 2>/dev/null || true; }
  symbols mozjpeg_sys mozjpeg-sys | grep -q " T $jpeg_simd" \
    || { echo "mozjpeg built without SIMD for $arch" >&2; exit 1; }
  symbols libwebp_sys libwebp-sys | grep -q "$webp_simd" \
    || { echo "libwebp built without SIMD for $arch" >&2; exit 1; }

  mkdir -p "$out/$arch"
  python3 - "$bin" "$out/$arch/bootstrap.zip" <<'PY'
import sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
info = zipfile.ZipInfo("bootstrap", date_time=(1980, 1, 1, 0, 0, 0))
info.external_attr = (0o100755 & 0xFFFF) << 16
info.create_system = 3
info.compress_type = zipfile.ZIP_DEFLATED
with open(src, "rb") as f, zipfile.ZipFile(dst, "w") as z:
    z.writestr(info, f.read(), compresslevel=9)
PY
  (cd "$out/$arch" && sha256sum bootstrap.zip > bootstrap.zip.sha256)
  echo "$arch: $out/$arch/bootstrap.zip $(stat -c %s "$out/$arch/bootstrap.zip") bytes (binary $(stat -c %s "$bin") bytes) sha256 $(cut -d' ' -f1 "$out/$arch/bootstrap.zip.sha256")"
done
