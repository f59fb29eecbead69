#!/usr/bin/env bash
# Benchmark the processor against the Pillow reference, both on one core.
#   processor/scripts/bench.sh [IMAGE_DIR] [--floors FILE] [--no-reference] [--reference-cache DIR]
#   processor/scripts/bench.sh --mosaic [--no-reference]   # the 24 MP whole-upload budget
# Environment: BENCH_FORMATS (default webp,jpeg,png,avif), BENCH_WIDTHS (default the
# pipeline's; `none`), BENCH_WEBP_METHOD (default the pipeline's).
# Needs: python3 (venv), Pillow from PyPI (installed here), nasm (for mozjpeg SIMD).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${BENCH_VENV:-/var/tmp/imagestack-bench-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet -r "$here/requirements-bench.txt"
export BENCH_PYTHON="$venv/bin/python"
args=()
for a in "$@"; do
  if [ "$a" = --mosaic ]; then
    mosaic_dir="${TMPDIR:-/tmp}/imagestack-bench-mosaic"
    mkdir -p "$mosaic_dir"
    "$BENCH_PYTHON" "$here/bench_mosaic.py" "$root/../shared/images" "$mosaic_dir/mosaic_6000x4000.jpg"
    args+=("$mosaic_dir")
  else
    args+=("$a")
  fi
done
cd "$root"
# Build first (on all cores), then measure pinned to core 0.
cargo bench -p imagestack-processor --bench pipeline --no-run
exec taskset -c 0 cargo bench -p imagestack-processor --bench pipeline -- "${args[@]}"
