#!/bin/bash
# Self-test of the emulator harness: install (if needed), start a PRIVATE emulator instance, run
# test_patches.py against it with pytest, stop the instance. Exit non-zero on any failure,
# including pytest's exit code 5 (no tests collected).
#
# The private instance has its own run dir and port, so it never disturbs an emulator other tests
# are using, and the /moto-api/reset test may run. Extra arguments go to pytest (e.g. -k etag).
# Knobs: IMAGESTACK_SELFTEST_RUN_DIR (<repo>/.run/emulator-selftest), IMAGESTACK_SELFTEST_PORT (14567),
#        IMAGESTACK_VENV (<repo>/.venv)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
VENV=${IMAGESTACK_VENV:-$REPO/.venv}
export IMAGESTACK_RUN_DIR=${IMAGESTACK_SELFTEST_RUN_DIR:-$REPO/.run/emulator-selftest}
export IMAGESTACK_EMULATOR_PORT=${IMAGESTACK_SELFTEST_PORT:-14567}

log() { echo "test.sh: $*" >&2; }

"$HERE/install.sh" >/dev/null
trap '"$HERE/stop.sh" || log "warning: stop.sh failed"' EXIT
"$HERE/start.sh" >/dev/null  # the pytest fixture finds this instance through the exported run dir/port

set +e
IMAGESTACK_EMULATOR_ALLOW_RESET=1 \
  env -u PYTHONPATH -u PYTHONHOME "$VENV/bin/python" -s -m pytest -p no:cacheprovider -q -rfEs \
  "$HERE/test_patches.py" "$@"
rc=$?
set -e
case $rc in
  0) log "all emulator tests passed" ;;
  5) log "ERROR: pytest collected no tests (exit 5)"; exit 1 ;;
  *) log "ERROR: pytest failed (exit $rc); server log: $IMAGESTACK_RUN_DIR/server.log"; exit "$rc" ;;
esac
