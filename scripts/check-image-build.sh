#!/usr/bin/env bash
# Check the container image's build without a Docker engine: run the exact commands the Dockerfile
# runs (docker/install-build-deps.sh, then docker/build.sh) and check the files the image needs.
#
#   scripts/check-image-build.sh          # cold build in a fresh target dir, like `docker build`
#   scripts/check-image-build.sh --fast   # reuse $CARGO_TARGET_DIR (default /var/tmp/imagestack-target)
#
# Checks (printed one per line, then "N passed, N failed"; exit 1 on any failure):
#   - the Dockerfile still delegates to docker/install-build-deps.sh and docker/build.sh, copies
#     their output to /, runs as non-root and starts /usr/local/bin/operator;
#   - usr/local/bin/operator: an executable ELF for this machine that answers --version, has no
#     crash-safety test hook (cargo feature crash-hook) and whose `operator crd` is the committed
#     crds/imagestack.dev_imagestacks.yaml;
#   - opt/imagestack/processor/{x86_64,arm64}.zip: a zip holding one executable `bootstrap`, an
#     ELF for that architecture, with a matching .sha256 file; `operator --version` prints both.
# Knobs: IMAGESTACK_IMAGE_OUT (staging dir, default a temp dir, removed unless kept with --keep),
#        CARGO_TARGET_DIR (with --fast), IMAGESTACK_BUILD_VENV (build tools venv).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
fast=0 keep=0
for a in "$@"; do
  case $a in
    --fast) fast=1 ;;
    --keep) keep=1 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown argument $a (--fast, --keep)" >&2; exit 2 ;;
  esac
done
export IMAGESTACK_BUILD_VENV=${IMAGESTACK_BUILD_VENV:-/var/tmp/imagestack-build-venv}

tmp=$(mktemp -d /var/tmp/imagestack-image-check.XXXXXX)
OUT=${IMAGESTACK_IMAGE_OUT:-$tmp/out}
cleanup() { if [ $keep = 0 ]; then rm -rf "$tmp"; else echo "kept: $tmp" >&2; fi; }
trap cleanup EXIT
if [ $fast = 1 ]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/imagestack-target}
else
  export CARGO_TARGET_DIR=$tmp/target   # cold, like a fresh `docker build` without cache
fi

echo "==> build tools (docker/install-build-deps.sh)" >&2
bin=$("$REPO/docker/install-build-deps.sh")
export PATH=$bin:$PATH
echo "==> docker/build.sh $OUT (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)" >&2
started=$(date +%s)
"$REPO/docker/build.sh" "$OUT"
echo "==> built in $(( $(date +%s) - started ))s" >&2

passed=0 failed=0
check() { # description, then a command that succeeds when the check holds
  local what=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok   $what"; else failed=$((failed + 1)); echo "FAIL $what"; fi
}
elf_machine() { # x86_64 / arm64 / other(..) for an ELF file (e_machine at offset 18, little endian)
  [ "$(head -c4 "$1" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ] || { echo not-elf; return; }
  case $(od -An -tx1 -j18 -N2 "$1" | tr -d ' \n') in 3e00) echo x86_64 ;; b700) echo arm64 ;; *) echo other ;; esac
}
is_elf_for() { [ -f "$2" ] && [ "$(elf_machine "$2")" = "$1" ]; }
final_stage_is_distroless() { awk '/^FROM /{f=$0} END{print f}' "$DF" | grep -q 'distroless/cc'; }
op_version() { "$op" --version | grep -q '^operator '; }
op_without_crash_hook() { # the crash-after-N-writes test hook (cargo feature crash-hook) is not in it
  ! "$op" --version | grep -q crash-hook && ! grep -aq IMAGESTACK_CRASH_AFTER_WRITES "$op"
}
op_version_names_zips() { # operator --version lists each shipped zip's sha256 (as the image holds them)
  local v; v=$(IMAGESTACK_PROCESSOR_ARTIFACT_DIR=$OUT/opt/imagestack/processor "$op" --version)
  for arch in x86_64 arm64; do
    grep -q "$arch.zip sha256 $(cut -d' ' -f1 "$OUT/opt/imagestack/processor/$arch.zip.sha256")" <<<"$v" || return 1
  done
}
op_crd_matches() { "$op" crd | cmp -s - "$REPO/crds/imagestack.dev_imagestacks.yaml"; }
zip_holds_bootstrap() {
  python3 - "$1" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    infos = z.infolist()
    ok = [i.filename for i in infos] == ["bootstrap"] and (infos[0].external_attr >> 16) & 0o111 == 0o111
    sys.exit(0 if ok else 1)
PY
}
sha_matches() { (cd "$OUT/opt/imagestack/processor" && sha256sum -c --quiet "$1.zip.sha256"); }

DF=$REPO/Dockerfile
check "Dockerfile RUNs docker/install-build-deps.sh" grep -Eq '^RUN docker/install-build-deps\.sh$' "$DF"
check "Dockerfile RUNs docker/build.sh /out" grep -Eq '^[[:space:]]*docker/build\.sh /out$' "$DF"
check "Dockerfile copies /out/ into the final image" grep -Eq '^COPY --from=build /out/ /$' "$DF"
check "Dockerfile final stage is distroless/cc" final_stage_is_distroless
check "Dockerfile runs as non-root (USER 65532:65532)" grep -Eq '^USER 65532:65532$' "$DF"
check "Dockerfile entrypoint is /usr/local/bin/operator" grep -Fq 'ENTRYPOINT ["/usr/local/bin/operator"]' "$DF"

op=$OUT/usr/local/bin/operator
host=$(uname -m); [ "$host" = aarch64 ] && host=arm64
check "usr/local/bin/operator is executable" test -x "$op"
check "usr/local/bin/operator is an ELF for $host" is_elf_for "$host" "$op"
check "operator --version answers" op_version
check "operator is built without the crash-hook test feature" op_without_crash_hook
check "operator crd equals crds/imagestack.dev_imagestacks.yaml" op_crd_matches

for arch in x86_64 arm64; do
  zip=$OUT/opt/imagestack/processor/$arch.zip
  check "opt/imagestack/processor/$arch.zip exists" test -s "$zip"
  check "$arch.zip holds exactly one executable 'bootstrap'" zip_holds_bootstrap "$zip"
  unz=$tmp/unzip-$arch; mkdir -p "$unz"
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$zip" "$unz" 2>/dev/null || true
  check "$arch.zip's bootstrap is an ELF for $arch" is_elf_for "$arch" "$unz/bootstrap"
  check "$arch.zip.sha256 matches" sha_matches "$arch"
done
check "operator --version names both zips' sha256" op_version_names_zips

echo "image files: $(cd "$OUT" && find . -type f -printf '%p %s bytes; ' | sort)"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
