# Shared helpers for scripts/up, scripts/down and scripts/test. Source it; do not run it.
# Everything a script starts is recorded under $RUN (PID files and "started-by-us" marks), so
# scripts/down stops exactly that and nothing else.
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN=${IMAGESTACK_RUN_DIR:-$REPO/.run}
SHARED=${IMAGESTACK_SHARED_DIR:-$REPO/../shared}
ENVTEST_DIR=${DATA:-/tmp/imagestack-envtest}
mkdir -p "$RUN"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Install the Debian packages the build and the tests need when they are missing (as root, or with
# sudo); otherwise say exactly what to install. `ensure_packages` for ./scripts/up,
# `ensure_packages test` adds what only the tests need, `ensure_packages shipped` what running
# the shipped arm64 processor needs (user-mode emulation and an aarch64 glibc).
ensure_packages() {
  local need=()
  command -v openssl >/dev/null || need+=(openssl)
  command -v nasm >/dev/null || need+=(nasm)                  # mozjpeg SIMD (processor)
  command -v xz >/dev/null || need+=(xz-utils)                # ../shared/envtest binaries
  command -v cc >/dev/null || need+=(gcc)
  python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
  [ -f /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
  if [ "${1:-}" = test ]; then
    command -v lua5.1 >/dev/null || need+=(lua5.1)            # Argo CD health check tests
    command -v avifdec >/dev/null || need+=(libavif-bin)      # decodes AVIF renditions (libavif + dav1d)
    command -v node >/dev/null || need+=(nodejs)              # tests/edge: the CloudFront Function's harness
  fi
  if [ "${1:-}" = shipped ]; then
    command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
    [ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] || need+=(libc6-arm64-cross)
  fi
  [ ${#need[@]} -eq 0 ] && return 0
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "missing packages: ${need[*]} (install them: apt-get install -y ${need[*]})"
    sudo=(sudo)
  fi
  command -v apt-get >/dev/null || die "missing packages: ${need[*]} (not a Debian-like system: install them by hand)"
  log "installing ${need[*]} (apt-get)"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
}

# True when kubectl can reach the API server of the current KUBECONFIG/context within 5 s.
kube_reachable() { kubectl get --raw /version --request-timeout=5s >/dev/null 2>&1; }

# AWS credentials configured in the environment or a profile (then we use real AWS, or
# whatever AWS_ENDPOINT_URL points at).
aws_configured() {
  [ -n "${AWS_ENDPOINT_URL:-}" ] || [ -n "${AWS_ACCESS_KEY_ID:-}" ] || [ -n "${AWS_PROFILE:-}" ] \
    || [ -n "${AWS_WEB_IDENTITY_TOKEN_FILE:-}" ] || [ -f "${AWS_SHARED_CREDENTIALS_FILE:-$HOME/.aws/credentials}" ]
}

# Use AWS from the environment if configured, else start (or reuse) the local emulator.
ensure_aws() {
  if aws_configured && [ "${IMAGESTACK_FORCE_EMULATOR:-}" != 1 ]; then
    log "AWS: using the configured environment${AWS_ENDPOINT_URL:+ (endpoint $AWS_ENDPOINT_URL)}"
    return
  fi
  "$REPO/scripts/emulator/install.sh" >/dev/null
  local pidfile=$RUN/emulator/pid
  if ! { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }; then
    touch "$RUN/started-emulator"
  fi
  local envfile
  envfile=$("$REPO/scripts/emulator/start.sh")
  # shellcheck disable=SC1090
  . "$envfile"
  export AWS_ENDPOINT_URL SSL_CERT_FILE AWS_CA_BUNDLE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION AWS_DEFAULT_REGION AWS_EC2_METADATA_DISABLED
  log "AWS: local emulator at $AWS_ENDPOINT_URL (moto 5.2.5 + patches, scripts/emulator/README.md)"
}

# Use the current kube context if reachable, else kind if Docker runs, else the local API server
# from ../shared/envtest.
ensure_kube() {
  if [ "${IMAGESTACK_FORCE_ENVTEST:-}" != 1 ] && kube_reachable; then
    log "Kubernetes: current context ($(kubectl config current-context 2>/dev/null || echo "${KUBECONFIG:-in-cluster}"))"
    return
  fi
  if [ -f "$ENVTEST_DIR/kubeconfig" ] && KUBECONFIG=$ENVTEST_DIR/kubeconfig kube_reachable; then
    export KUBECONFIG=$ENVTEST_DIR/kubeconfig
    log "Kubernetes: local API server already running ($KUBECONFIG)"
    return
  fi
  if [ "${IMAGESTACK_FORCE_ENVTEST:-}" != 1 ] && command -v kind >/dev/null && docker info >/dev/null 2>&1; then
    log "Kubernetes: creating a kind cluster from kind-config.yaml"
    kind create cluster --name imagestack --config "$REPO/kind-config.yaml" --wait 120s
    touch "$RUN/started-kind"
    return
  fi
  [ -x "$SHARED/envtest/start.sh" ] || die "no reachable Kubernetes API, no Docker for kind, and no $SHARED/envtest: set KUBECONFIG"
  local kc full=1 what="full kube-apiserver: core API, RBAC, Leases, Events, ConfigMaps"
  case "${IMAGESTACK_API_SERVER:-full}" in
    full) ;;
    crd) full=0; what="etcd + apiextensions-apiserver: CRDs only, no core API" ;;
    *) die "IMAGESTACK_API_SERVER must be 'full' (default) or 'crd', not '${IMAGESTACK_API_SERVER}'" ;;
  esac
  kc=$(FULL=$full "$SHARED/envtest/start.sh" | tail -n 1)
  touch "$RUN/started-envtest"
  export KUBECONFIG=$kc
  export IMAGESTACK_API_SERVER=${IMAGESTACK_API_SERVER:-full}
  log "Kubernetes: local API server ($what; $KUBECONFIG)"
}

# Stop what ensure_aws/ensure_kube started.
stop_started() {
  if [ -f "$RUN/started-emulator" ]; then
    "$REPO/scripts/emulator/stop.sh" >&2 || true
    rm -f "$RUN/started-emulator"
  fi
  if [ -f "$RUN/started-envtest" ]; then
    "$SHARED/envtest/stop.sh" >&2 || true
    rm -f "$RUN/started-envtest"
  fi
  if [ -f "$RUN/started-kind" ]; then
    kind delete cluster --name imagestack >&2 || true
    rm -f "$RUN/started-kind"
  fi
}
