#!/bin/bash
# Install the local AWS emulator (moto[server]==5.2.5 + test tools) into a private venv.
#
# Idempotent and fast when already done: a stamp file in the venv records the hash of
# requirements.txt + constraints.txt + the interpreter version; when it matches, nothing is run.
#
# Knobs: IMAGESTACK_VENV   venv directory (default: <repo>/.venv)
#        IMAGESTACK_PYTHON interpreter used to create the venv (default: python3; needs >= 3.9 and
#                          the venv module, Debian package python3-venv)
# Output: progress on stderr; prints the venv path on stdout.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
VENV=${IMAGESTACK_VENV:-$REPO/.venv}
PYTHON=${IMAGESTACK_PYTHON:-python3}
REQ=$HERE/requirements.txt
CON=$HERE/constraints.txt
STAMP=$VENV/.imagestack-emulator.stamp

# Only the venv's own packages: no PYTHONPATH leaking the system-wide moto 5.2.1 into pip or imports.
unset PYTHONPATH PYTHONHOME PIP_USER PIP_TARGET PIP_PREFIX

log() { echo "install.sh: $*" >&2; }
die() { echo "install.sh: ERROR: $*" >&2; exit 1; }

hash_pins() { cat "$REQ" "$CON" | sha256sum | cut -d' ' -f1; }
venv_ver() { "$VENV/bin/python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null; }

# Fast path: already installed with exactly these pins, and the venv's interpreter still runs.
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(hash_pins)-py$(venv_ver)" ]; then
  echo "$VENV"
  exit 0
fi

command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' not found; install python3 (>= 3.9) or set IMAGESTACK_PYTHON"
PYVER=$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])') \
  || die "'$PYTHON' does not run"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' \
  || die "moto 5.2.5 needs Python >= 3.9, '$PYTHON' is $PYVER (set IMAGESTACK_PYTHON)"

mkdir -p "$(dirname "$VENV")" "$REPO/.run"
# Serialise concurrent installs (test.sh and a developer, say); .run/ is git-ignored.
exec 9>"$REPO/.run/venv-install.lock"
if command -v flock >/dev/null 2>&1; then
  flock -w 600 9 || die "timed out waiting for another install (lock $REPO/.run/venv-install.lock)"
fi
# Another install may have finished while we waited.
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(hash_pins)-py$(venv_ver)" ]; then
  echo "$VENV"
  exit 0
fi

# A venv whose interpreter no longer runs (base Python removed or upgraded) is recreated.
if [ -e "$VENV" ] && ! "$VENV/bin/python" -c '' 2>/dev/null; then
  [ -f "$VENV/pyvenv.cfg" ] || [ -z "$(ls -A "$VENV")" ] \
    || die "$VENV exists but is not a Python venv; remove it or set IMAGESTACK_VENV"
  log "(re)creating venv $VENV with $PYTHON ($PYVER)"
  "$PYTHON" -m venv --clear "$VENV" >&2 \
    || die "'$PYTHON -m venv' failed; on Debian/Ubuntu: apt-get install -y python3-venv"
elif [ ! -e "$VENV" ]; then
  log "creating venv $VENV with $PYTHON ($PYVER)"
  "$PYTHON" -m venv "$VENV" >&2 \
    || die "'$PYTHON -m venv' failed; on Debian/Ubuntu: apt-get install -y python3-venv"
fi

log "installing pinned requirements (moto[server]==5.2.5, boto3, pytest) into $VENV"
rm -f "$STAMP"
PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
  "$VENV/bin/python" -m pip install --quiet --progress-bar off --root-user-action=ignore \
  -r "$REQ" -c "$CON" >&2 \
  || die "pip install failed (is PyPI reachable? see the pip output above)"

"$VENV/bin/python" - <<'PYEOF' >&2 || die "installed venv is not usable (see above)"
import sys, moto, boto3, pytest
assert moto.__version__ == "5.2.5", f"moto {moto.__version__} in the venv, expected 5.2.5"
assert moto.__file__.startswith(sys.prefix), f"moto imported from {moto.__file__}, not from the venv {sys.prefix}"
import moto.server  # the [server] extra (flask, werkzeug, ...) is present
PYEOF
echo "$(hash_pins)-py$(venv_ver)" > "$STAMP"
log "done: moto $("$VENV/bin/python" -c 'import moto; print(moto.__version__)') in $VENV"
echo "$VENV"
