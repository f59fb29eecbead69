#!/usr/bin/env bash
# Mirror this checkout's sources into DEST, a directory whose path does not depend on where the
# checkout is, so that release and cross builds compile the same paths from any checkout: the same
# target dir is reused across checkouts, and `--remap-path-prefix=DEST=/src` makes the binaries
# identical whichever target dir built them.
#
#   scripts/stage-sources.sh DEST
#
# Sources are the files git tracks (plus untracked, not ignored ones), or, outside a git work tree
# (a Docker build context), every file except target/, dist/, .run/, .venv/ and .git/.
# Only files whose bytes differ are written; they get the current time as mtime, so cargo rebuilds
# exactly what changed (copying a checkout's own mtimes could make a changed file look older than
# the last build). Files that are no longer sources are removed. Callers serialise on a lock
# (processor/scripts/build-artifact.sh, docker/build.sh).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEST=${1:?usage: scripts/stage-sources.sh DEST}
mkdir -p "$DEST"
python3 - "$REPO" "$DEST" <<'PY'
import os, subprocess, sys

repo, dest = sys.argv[1], os.path.abspath(sys.argv[2])
SKIP = {"target", "dist", ".run", ".venv", ".git", "__pycache__", ".pytest_cache"}

def sources():
    try:
        out = subprocess.run(
            ["git", "-C", repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            check=True, capture_output=True,
        ).stdout
        return sorted({p for p in out.decode().split("\0") if p and os.path.isfile(os.path.join(repo, p))})
    except (OSError, subprocess.CalledProcessError):
        found = []
        for root, dirs, files in os.walk(repo):
            dirs[:] = [d for d in dirs if d not in SKIP]
            for f in files:
                found.append(os.path.relpath(os.path.join(root, f), repo))
        return sorted(found)

wanted = sources()
if os.path.commonpath([dest, repo]) == repo:
    # DEST inside the checkout (e.g. the default target dir): never mirror it into itself.
    inner = os.path.relpath(dest, repo)
    wanted = [p for p in wanted if not (p == inner or p.startswith(inner + os.sep))]
written = 0
for rel in wanted:
    src, dst = os.path.join(repo, rel), os.path.join(dest, rel)
    with open(src, "rb") as f:
        data = f.read()
    try:
        with open(dst, "rb") as f:
            same = f.read() == data
    except OSError:
        same = False
    mode = os.stat(src).st_mode & 0o777
    if not same:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        tmp = dst + ".staging-tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, dst)
        written += 1
    if os.stat(dst).st_mode & 0o777 != mode:
        os.chmod(dst, mode)
keep = set(wanted)
removed = 0
for root, dirs, files in os.walk(dest, topdown=False):
    for f in files:
        rel = os.path.relpath(os.path.join(root, f), dest)
        if rel not in keep:
            os.remove(os.path.join(root, f))
            removed += 1
    if root != dest and not os.listdir(root):
        os.rmdir(root)
print(f"staged {len(wanted)} files in {dest} ({written} written, {removed} removed)", file=sys.stderr)
PY
echo "$DEST"
