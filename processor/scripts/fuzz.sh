#!/usr/bin/env bash
# Fuzz the decode path (cargo-fuzz on the nightly toolchain).
#   processor/scripts/fuzz.sh [SECONDS]      (default 600)
# Needs: rustup toolchain nightly, `cargo install cargo-fuzz`, nasm.
# The corpus starts from the small images in ../shared/images and grows in
# processor/fuzz/corpus/decode (not committed); crashes land in processor/fuzz/artifacts.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
seconds="${1:-600}"
corpus="$here/fuzz/corpus/decode"
mkdir -p "$corpus"
images="${IMAGESTACK_TEST_IMAGES:-$here/../../shared/images}"
for f in "$images"/*; do
  # Seeds under 200 kB keep executions fast.
  if [ -f "$f" ] && [ "$(stat -c %s "$f")" -lt 200000 ]; then cp -n "$f" "$corpus/" || true; fi
done
cd "$here/fuzz"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/imagestack-target}/fuzz"
cargo +nightly fuzz run decode "$corpus" -- \
  -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=30 -print_final_stats=1
