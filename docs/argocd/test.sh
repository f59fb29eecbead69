#!/usr/bin/env bash
# Argo CD health-check tests: every case of health_test.yaml through a real Lua 5.1 interpreter
# (Debian package lua5.1; Argo CD runs gopher-lua, which is Lua 5.1), plus a check that the
# published copies (argocd-cm.yaml, chart README) equal health.lua.
# Prints one line per case and "N passed, N failed"; exits non-zero on any failure.
# Needs python3 with PyYAML: the repo venv (${IMAGESTACK_VENV:-<repo>/.venv}) when present.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
VENV=${IMAGESTACK_VENV:-$REPO/.venv}
PY=python3
[ -x "$VENV/bin/python" ] && PY=$VENV/bin/python
command -v lua5.1 >/dev/null || { echo "error: lua5.1 not found; apt-get install -y lua5.1 (or run charts/test.sh, which installs it)" >&2; exit 1; }
"$PY" -c 'import yaml' 2>/dev/null || { echo "error: $PY has no PyYAML; run charts/test.sh (installs it into $VENV)" >&2; exit 1; }
exec "$PY" "$HERE/run_tests.py" "$@"
