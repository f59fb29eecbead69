"""Wait until the emulator answers over TLS (used by start.sh; no fixed sleeps, bounded by a deadline).

    python probe.py URL CA_FILE TIMEOUT_SECONDS [PID]

Polls GET URL every 50 ms, verifying the server certificate against CA_FILE (so a foreign server on
the port does not count). Exit 0 when it answers 2xx; 2 on timeout; 3 as soon as PID (if given) is
no longer alive. Proxies from the environment are ignored: the emulator is on loopback.
"""

import os
import ssl
import sys
import time
import urllib.request


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not alive for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def main() -> int:
    url, cafile, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
    pid = int(sys.argv[4]) if len(sys.argv) > 4 else None
    ctx = ssl.create_default_context(cafile=cafile)
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx)
    )
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while True:
        try:
            with opener.open(url, timeout=2) as resp:
                if 200 <= resp.status < 300:
                    return 0
                last = f"HTTP {resp.status}"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last = f"{type(exc).__name__}: {exc}"
        if pid is not None and not alive(pid):
            print(f"probe: process {pid} exited ({last})", file=sys.stderr)
            return 3
        if time.monotonic() >= deadline:
            print(f"probe: no answer from {url} within {timeout:g}s ({last})", file=sys.stderr)
            return 2
        time.sleep(0.05)  # poll interval, not synchronisation


if __name__ == "__main__":
    sys.exit(main())
