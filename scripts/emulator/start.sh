#!/bin/bash
# Start the local AWS emulator (moto 5.2.5 + scripts/emulator/patches.py) on https://127.0.0.1:PORT.
#
# - Installs the venv first if needed (install.sh; fast when already done).
# - Makes, once, a test CA and a server certificate for 127.0.0.1/localhost (SAN), and a CA bundle
#   = the system bundle + the test CA (for SSL_CERT_FILE / AWS_CA_BUNDLE).
# - Starts scripts/emulator/server.py in the background, polls until it answers over TLS (bounded by
#   IMAGESTACK_EMULATOR_START_TIMEOUT, default 60 s), records its PID.
# - Writes the env file (export AWS_ENDPOINT_URL=..., SSL_CERT_FILE=..., credentials, region).
# - Prints the env file's path on stdout; everything else goes to stderr (server output: server.log).
# If our emulator is already running and answering, it only prints the env file's path.
#
# Knobs: IMAGESTACK_EMULATOR_PORT (14566), IMAGESTACK_RUN_DIR (<repo>/.run/emulator),
#        IMAGESTACK_VENV (<repo>/.venv), IMAGESTACK_EMULATOR_START_TIMEOUT (60),
#        IMAGESTACK_EMULATOR_NO_PATCHES=1 runs plain moto (for measuring moto itself; not for tests).
# Stop with stop.sh (by the recorded PID only).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
RUN=${IMAGESTACK_RUN_DIR:-$REPO/.run/emulator}
VENV=${IMAGESTACK_VENV:-$REPO/.venv}
PORT=${IMAGESTACK_EMULATOR_PORT:-14566}
TIMEOUT=${IMAGESTACK_EMULATOR_START_TIMEOUT:-60}
PY=$VENV/bin/python
PIDF=$RUN/pid
ENVF=$RUN/env
LOG=$RUN/server.log
BUNDLE=$RUN/ca-bundle.crt
SYSTEM_BUNDLE=/etc/ssl/certs/ca-certificates.crt

log() { echo "start.sh: $*" >&2; }
die() { echo "start.sh: ERROR: $*" >&2; exit 1; }

[[ $PORT =~ ^[0-9]+$ ]] && [ "$PORT" -ge 1 ] && [ "$PORT" -le 65535 ] \
  || die "IMAGESTACK_EMULATOR_PORT='$PORT' is not a TCP port number"
[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "IMAGESTACK_EMULATOR_START_TIMEOUT='$TIMEOUT' is not a number of seconds"
command -v openssl >/dev/null 2>&1 || die "openssl not found (Debian: apt-get install -y openssl)"

mkdir -p "$RUN"
chmod 700 "$RUN"
# One start.sh/stop.sh at a time per run dir (parallel test processes may all call start.sh).
exec 9>"$RUN/lock"
command -v flock >/dev/null 2>&1 && { flock -w "$((TIMEOUT + 30))" 9 || die "timed out waiting for $RUN/lock"; }

# Is the process recorded in $PIDF our server?
ours() { [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' < "/proc/$1/cmdline" | grep -q "$HERE/server.py"; }

# ---- already running?
if [ -f "$PIDF" ]; then
  pid=$(cat "$PIDF")
  if [[ $pid =~ ^[0-9]+$ ]] && ours "$pid"; then
    [ -f "$ENVF" ] || die "emulator pid $pid is running but $ENVF is missing; run stop.sh, then start.sh"
    url=$(sed -n 's/^export AWS_ENDPOINT_URL=//p' "$ENVF")
    if "$PY" -s "$HERE/probe.py" "$url/moto-api/config" "$BUNDLE" "$TIMEOUT" "$pid"; then
      [ "$url" = "https://127.0.0.1:$PORT" ] || log "note: the running emulator is on $url (not port $PORT)"
      log "already running: pid $pid on $url"
      echo "$ENVF"
      exit 0
    fi
    die "emulator pid $pid is alive but does not answer on $url; see $LOG; run stop.sh"
  fi
  log "removing stale pid file ($pid is not our emulator)"
  rm -f "$PIDF" "$ENVF"
fi

# ---- venv (fast no-op when already installed)
"$HERE/install.sh" >/dev/null

# ---- port must be free (a foreign listener would otherwise answer our probe with the wrong cert)
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  die "port $PORT on 127.0.0.1 is already in use by another process; stop it or set IMAGESTACK_EMULATOR_PORT"
fi

# ---- certificates, made once: test CA + server cert (SAN IP:127.0.0.1, DNS:localhost)
certs_ok() {
  [ -s "$RUN/ca.crt" ] && [ -s "$RUN/server.crt" ] && [ -s "$RUN/server.key" ] &&
    openssl verify -CAfile "$RUN/ca.crt" "$RUN/server.crt" >/dev/null 2>&1 &&
    openssl x509 -checkend 86400 -noout -in "$RUN/server.crt" >/dev/null 2>&1 &&
    [ "$(openssl x509 -noout -pubkey -in "$RUN/server.crt" | sha256sum)" = \
      "$(openssl pkey -pubout -in "$RUN/server.key" 2>/dev/null | sha256sum)" ]
}
if ! certs_ok; then
  log "generating test CA and server certificate in $RUN"
  (
    set -e
    cd "$RUN"
    umask 077
    rm -f ca.key ca.csr ca.crt server.key server.csr server.crt
    printf '%s\n' 'basicConstraints=critical,CA:TRUE' 'keyUsage=critical,keyCertSign,cRLSign' \
      'subjectKeyIdentifier=hash' > ca.ext
    printf '%s\n' 'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature,keyEncipherment' \
      'extendedKeyUsage=serverAuth' 'subjectAltName=IP:127.0.0.1,DNS:localhost' \
      'subjectKeyIdentifier=hash' 'authorityKeyIdentifier=keyid' > server.ext
    openssl req -new -newkey rsa:2048 -nodes -subj "/CN=imagestack emulator test CA" \
      -keyout ca.key -out ca.csr 2>/dev/null
    openssl x509 -req -in ca.csr -signkey ca.key -days 3650 -extfile ca.ext -out ca.crt 2>/dev/null
    openssl req -new -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr 2>/dev/null
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
      -days 825 -extfile server.ext -out server.crt 2>/dev/null
    rm -f ca.csr server.csr
    chmod 644 ca.crt server.crt
  ) || die "openssl failed to make the test certificates in $RUN"
  certs_ok || die "the generated certificates in $RUN do not verify"
fi

# ---- CA bundle = system bundle + test CA (aws-sdk-rust reads SSL_CERT_FILE, boto3 AWS_CA_BUNDLE)
{
  if [ -r "$SYSTEM_BUNDLE" ]; then cat "$SYSTEM_BUNDLE"; echo; else
    log "warning: $SYSTEM_BUNDLE not found; the bundle holds only the test CA (Debian: apt-get install -y ca-certificates)"; fi
  cat "$RUN/ca.crt"
} > "$BUNDLE.tmp"
chmod 644 "$BUNDLE.tmp"
mv -f "$BUNDLE.tmp" "$BUNDLE"

# ---- start the server (loopback only), detached from our terminal/process group
[ -f "$LOG" ] && mv -f "$LOG" "$LOG.1"
extra=()
[ "${IMAGESTACK_EMULATOR_NO_PATCHES:-0}" = 1 ] && extra=(--no-patches)
log "starting emulator on https://127.0.0.1:$PORT (log: $LOG)"
SETSID=$(command -v setsid || true)
# -s: ignore the user site dir; PYTHONPATH/PYTHONHOME unset: only the venv's packages are used.
env -u PYTHONPATH -u PYTHONHOME $SETSID "$PY" -s "$HERE/server.py" \
  --host 127.0.0.1 --port "$PORT" --cert "$RUN/server.crt" --key "$RUN/server.key" "${extra[@]}" \
  </dev/null >>"$LOG" 2>&1 9>&- &
pid=$!
echo "$pid" > "$PIDF"

if ! "$PY" -s "$HERE/probe.py" "https://127.0.0.1:$PORT/moto-api/config" "$BUNDLE" "$TIMEOUT" "$pid"; then
  log "emulator did not come up; last lines of $LOG:"
  tail -n 30 "$LOG" >&2 || true
  if kill -0 "$pid" 2>/dev/null; then kill "$pid" 2>/dev/null || true; fi
  rm -f "$PIDF"
  exit 1
fi
ours "$pid" || die "process $pid answering is not $HERE/server.py (unexpected)"

# ---- env file (values shell-quoted only if they contain special characters)
{
  printf 'export AWS_ENDPOINT_URL=%q\n' "https://127.0.0.1:$PORT"
  printf 'export SSL_CERT_FILE=%q\n' "$BUNDLE"
  printf 'export AWS_CA_BUNDLE=%q\n' "$BUNDLE"
  printf 'export AWS_ACCESS_KEY_ID=testing\n'
  printf 'export AWS_SECRET_ACCESS_KEY=testing\n'
  printf 'export AWS_REGION=us-east-1\n'
  printf 'export AWS_DEFAULT_REGION=us-east-1\n'
  printf 'export AWS_EC2_METADATA_DISABLED=true\n'
} > "$ENVF.tmp"
mv -f "$ENVF.tmp" "$ENVF"
log "ready: pid $pid on https://127.0.0.1:$PORT; source $ENVF"
echo "$ENVF"
