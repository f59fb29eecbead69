#!/bin/bash
# Stop the emulator that start.sh started: exactly the PID recorded in <run dir>/pid, and only if
# that process is still our server.py. SIGTERM, then SIGKILL if it has not exited within 10 s.
# Removes the pid and env files. Exit 0 also when nothing was running.
# Knobs: IMAGESTACK_RUN_DIR (<repo>/.run/emulator)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
RUN=${IMAGESTACK_RUN_DIR:-$REPO/.run/emulator}
PIDF=$RUN/pid

log() { echo "stop.sh: $*" >&2; }

[ -d "$RUN" ] || { log "not running (no $RUN)"; exit 0; }
exec 9>"$RUN/lock"
command -v flock >/dev/null 2>&1 && { flock -w 120 9 || { log "ERROR: timed out waiting for $RUN/lock"; exit 1; }; }

ours() { [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' < "/proc/$1/cmdline" | grep -q "$HERE/server.py"; }
gone() { ! kill -0 "$1" 2>/dev/null || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]; }

if [ ! -f "$PIDF" ]; then
  log "not running (no $PIDF)"
  rm -f "$RUN/env"
  exit 0
fi
pid=$(cat "$PIDF")
if [[ $pid =~ ^[0-9]+$ ]] && ours "$pid"; then
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 200); do gone "$pid" && break; sleep 0.05; done   # poll, at most 10 s
  if ! gone "$pid"; then
    log "pid $pid did not exit after SIGTERM within 10 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do gone "$pid" && break; sleep 0.05; done
  fi
  gone "$pid" || { log "ERROR: pid $pid is still alive"; exit 1; }
  log "stopped emulator pid $pid"
else
  log "pid file held $pid, which is not our emulator (already stopped); cleaning up"
fi
rm -f "$PIDF" "$RUN/env"
