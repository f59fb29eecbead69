#!/usr/bin/env bash
# Chart and Argo CD health-check tests, in one command (called by ./scripts/test and .ci/run).
#
#   charts/test.sh            # everything: chart render/schema/CRD tests + Lua health tests
#   charts/test.sh -k schema  # extra arguments go to pytest (the Lua tests still run)
#   charts/test.sh --deployed # only the operator as the chart deploys it (tests/test_deployed.py):
#                             # Helm install into a full API server, the operator binary run with the
#                             # Deployment's args and the chart's ServiceAccount token. Needs the
#                             # operator binary and .run/artifacts (cargo build; scripts/dev-artifacts.sh);
#                             # ./scripts/test runs it after its build.
#
# Installs what it needs, idempotently:
#   - Python packages from charts/tests/requirements.txt into ${IMAGESTACK_VENV:-<repo>/.venv}
#     (the emulator harness's venv; created here if missing), constrained by
#     scripts/emulator/constraints.txt so shared packages keep one version;
#   - Debian's lua5.1 (the Lua version of Argo CD's gopher-lua) when `lua5.1` is missing.
# Kubernetes: KUBECONFIG if it reaches an API server (the lead's test script exports it); else a
# private API server from ../shared/envtest on its own ports and data dir, stopped on exit (by PID):
# the CRD-only one, or with --deployed the full kube-apiserver (own ports and data dir again).
# AWS (--deployed only): the emulator of AWS_ENDPOINT_URL (./scripts/test exports it); else a private
# emulator on its own port and run dir, stopped on exit. IMAGESTACK_API_SERVER=crd (the CRD-only
# server chosen for ./scripts/test) skips --deployed, which needs RBAC, Leases and Events.
# Exit status: non-zero if any test fails or nothing was tested.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
VENV=${IMAGESTACK_VENV:-$REPO/.venv}
PYTHON=${IMAGESTACK_PYTHON:-python3}
REQ=$HERE/tests/requirements.txt
CON=$REPO/scripts/emulator/constraints.txt
STAMP=$VENV/.imagestack-charts.stamp
SHARED=${IMAGESTACK_SHARED_DIR:-$REPO/../shared}
unset PYTHONPATH PYTHONHOME PIP_USER PIP_TARGET PIP_PREFIX
DEPLOYED=0
if [ "${1:-}" = --deployed ]; then DEPLOYED=1; shift; fi

log() { printf '\033[1mcharts/test.sh: %s\033[0m\n' "$*" >&2; }
die() { printf 'charts/test.sh: ERROR: %s\n' "$*" >&2; exit 1; }

# ---- Python packages (stamp = hash of the pins; a lock serialises concurrent installs)
pins_hash() { cat "$REQ" "$CON" 2>/dev/null | sha256sum | cut -d' ' -f1; }
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$(pins_hash)" ] || ! "$VENV/bin/python" -c 'import helm_python, kubernetes_validate' 2>/dev/null; then
  mkdir -p "$REPO/.run"
  exec 9>"$REPO/.run/venv-install.lock"
  command -v flock >/dev/null && { flock -w 600 9 || die "timed out waiting for another venv install"; }
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating venv $VENV"
    "$PYTHON" -m venv "$VENV" || die "'$PYTHON -m venv' failed; on Debian: apt-get install -y python3-venv"
  fi
  log "installing charts/tests/requirements.txt into $VENV (helm-python-sdk is ~60 MB)"
  constraint=()
  [ -f "$CON" ] && constraint=(-c "$CON")
  PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 "$VENV/bin/python" -m pip install --quiet \
    --progress-bar off --root-user-action=ignore -r "$REQ" "${constraint[@]}" >&2 \
    || die "pip install failed (is PyPI reachable? see above)"
  "$VENV/bin/python" -c 'import helm_python, kubernetes_validate, yaml, pytest' \
    || die "the venv cannot import the chart test packages"
  pins_hash > "$STAMP"
  exec 9>&-
fi

if [ "$DEPLOYED" = 1 ] && [ "${IMAGESTACK_API_SERVER:-}" = crd ]; then
  log "skipping the deployed-chart test: IMAGESTACK_API_SERVER=crd has no RBAC, Leases or Events"
  exit 0
fi

# ---- Lua 5.1
if [ "$DEPLOYED" = 0 ] && ! command -v lua5.1 >/dev/null; then
  command -v apt-get >/dev/null || die "lua5.1 is missing and apt-get is not available; install Lua 5.1"
  log "installing lua5.1 (apt-get)"
  if [ "$(id -u)" = 0 ]; then SUDO=(); else SUDO=(sudo); fi
  "${SUDO[@]}" apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq lua5.1 >&2 \
    || die "apt-get install lua5.1 failed"
fi

# ---- Kubernetes API server for the CRD tests
kube_ok() { kubectl get --raw /version --request-timeout=5s >/dev/null 2>&1; }
if [ "$DEPLOYED" = 1 ]; then
  ENVTEST_DATA=${IMAGESTACK_CHARTS_E2E_ENVTEST_DIR:-/tmp/imagestack-charts-e2e-envtest}
  FULL=1 API_PORT=${IMAGESTACK_CHARTS_E2E_API_PORT:-16643} ETCD_PORT=${IMAGESTACK_CHARTS_E2E_ETCD_PORT:-12579}
  ETCD_PEER_PORT=${IMAGESTACK_CHARTS_E2E_ETCD_PEER_PORT:-12580}
else
  ENVTEST_DATA=${IMAGESTACK_CHARTS_ENVTEST_DIR:-/tmp/imagestack-charts-envtest}
  FULL=0 API_PORT=${IMAGESTACK_CHARTS_API_PORT:-16543} ETCD_PORT=${IMAGESTACK_CHARTS_ETCD_PORT:-12479}
  ETCD_PEER_PORT=${IMAGESTACK_CHARTS_ETCD_PEER_PORT:-12480}
fi
EMU_RUN=${IMAGESTACK_CHARTS_EMULATOR_DIR:-/tmp/imagestack-charts-emulator}
cleanup() {
  if [ -f "$ENVTEST_DATA/started-by-charts-test" ]; then
    DATA=$ENVTEST_DATA "$SHARED/envtest/stop.sh" >&2 || log "warning: stopping the private API server failed"
    rm -f "$ENVTEST_DATA/started-by-charts-test"
  fi
  if [ -f "$EMU_RUN/started-by-charts-test" ]; then
    IMAGESTACK_RUN_DIR=$EMU_RUN "$REPO/scripts/emulator/stop.sh" >&2 || log "warning: stopping the private emulator failed"
    rm -f "$EMU_RUN/started-by-charts-test"
  fi
}
trap cleanup EXIT
if [ -n "${KUBECONFIG:-}" ] && command -v kubectl >/dev/null && kube_ok; then
  log "Kubernetes: using KUBECONFIG=$KUBECONFIG"
elif [ -x "$SHARED/envtest/start.sh" ] && command -v kubectl >/dev/null; then
  log "Kubernetes: starting a private API server ($SHARED/envtest, FULL=$FULL, data in $ENVTEST_DATA)"
  kc=$(DATA=$ENVTEST_DATA FULL=$FULL API_PORT=$API_PORT ETCD_PORT=$ETCD_PORT ETCD_PEER_PORT=$ETCD_PEER_PORT \
    "$SHARED/envtest/start.sh" | tail -n 1)
  touch "$ENVTEST_DATA/started-by-charts-test"
  export KUBECONFIG=$kc
else
  die "no Kubernetes API server: KUBECONFIG is unset/unreachable and $SHARED/envtest/start.sh is missing"
fi
export IMAGESTACK_REQUIRE_KUBE=1

# ---- --deployed: the AWS emulator, then only tests/test_deployed.py (it fails, never skips, here)
if [ "$DEPLOYED" = 1 ]; then
  if [ -n "${AWS_ENDPOINT_URL:-}" ]; then
    log "AWS: using AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL"
  else
    log "AWS: starting a private emulator (run dir $EMU_RUN)"
    mkdir -p "$EMU_RUN"
    [ -f "$EMU_RUN/pid" ] && kill -0 "$(cat "$EMU_RUN/pid")" 2>/dev/null || touch "$EMU_RUN/started-by-charts-test"
    envfile=$(IMAGESTACK_RUN_DIR=$EMU_RUN IMAGESTACK_EMULATOR_PORT=${IMAGESTACK_CHARTS_EMULATOR_PORT:-14577} \
      "$REPO/scripts/emulator/start.sh")
    # shellcheck disable=SC1090
    . "$envfile"
    export AWS_ENDPOINT_URL SSL_CERT_FILE AWS_CA_BUNDLE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION AWS_DEFAULT_REGION AWS_EC2_METADATA_DISABLED
  fi
  log "the operator as the chart deploys it (Helm install, ServiceAccount token, chart RBAC; about a minute)"
  set +e
  IMAGESTACK_CHART_E2E=1 env -u PYTHONPATH "$VENV/bin/python" -s -m pytest -p no:cacheprovider -q -rfEs \
    "$HERE/tests/test_deployed.py" "$@"
  rc=$?
  set -e
  case $rc in
    0) exit 0 ;;
    5) log "ERROR: pytest collected no deployed-chart tests"; exit 1 ;;
    *) log "ERROR: deployed-chart tests failed (pytest exit $rc; operator logs in $REPO/.run/test-logs/chart-e2e-*.log)"; exit 1 ;;
  esac
fi

# ---- run both suites, report both, fail if either failed
status=0
log "chart tests (pytest, Helm v4 engine)"
set +e
env -u PYTHONPATH "$VENV/bin/python" -s -m pytest -p no:cacheprovider -q -rfEs "$HERE/tests" "$@"
rc=$?
set -e
case $rc in
  0) ;;
  5) log "ERROR: pytest collected no chart tests"; status=1 ;;
  *) log "ERROR: chart tests failed (pytest exit $rc)"; status=1 ;;
esac

log "Argo CD health check (Lua 5.1)"
"$REPO/docs/argocd/test.sh" || { log "ERROR: Lua health tests failed"; status=1; }

exit $status
