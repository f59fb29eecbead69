#!/usr/bin/env bash
# Benchmark the processor against the Pillow reference, both on one core.
#   processor/scripts/bench.sh [IMAGE_DIR] [--floors FILE]
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
cd "$root"
# Build first (on all cores), then measure pinned to core 0.
cargo bench -p imagestack-processor --bench pipeline --no-run
exec taskset -c 0 cargo bench -p imagestack-processor --bench pipeline -- "$@"
