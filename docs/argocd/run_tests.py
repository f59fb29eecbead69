#!/usr/bin/env python3
"""Run health.lua through a real Lua 5.1 interpreter for every case in health_test.yaml.

Argo CD evaluates health scripts with gopher-lua (Lua 5.1) and hands them the live object as the
global `obj`, converted from JSON: objects and arrays become tables (arrays 1-based), numbers
become Lua numbers, null becomes nil. This runner does the same conversion, runs the script in a
sandbox holding only the functions Argo CD's VM offers (no io, os, require), and compares the
returned status and message with the expected ones exactly, like Argo CD's own health tests.

It also checks that every published copy of the script (argocd-cm snippet, chart README) is
byte-identical to health.lua.

Prints one line per case and `N passed, N failed`; exits 1 on any failure.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import tempfile

import yaml

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
SCRIPT = HERE / "health.lua"
LUA = os.environ.get("LUA", "lua5.1")

# What Argo CD's Lua VM opens (base, table, string, math; no io/os/package/debug).
SANDBOX_PRELUDE = r"""
local sandbox = {
  ipairs = ipairs, pairs = pairs, next = next, select = select, type = type,
  tostring = tostring, tonumber = tonumber, unpack = unpack, error = error,
  assert = assert, pcall = pcall, rawget = rawget, rawequal = rawequal,
  setmetatable = setmetatable, getmetatable = getmetatable,
  string = string, table = table, math = math,
}
"""


def lua_string(s: str) -> str:
    out = ['"']
    for b in s.encode("utf-8"):
        ch = chr(b)
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif 32 <= b < 127:
            out.append(ch)
        else:
            out.append("\\%d" % b)  # Lua 5.1 decimal escape; bytes pass through unchanged
    out.append('"')
    return "".join(out)


def to_lua(value) -> str:
    """A Lua 5.1 table constructor for a JSON-like value (as Argo CD converts objects)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return lua_string(value)
    if isinstance(value, list):
        return "{" + ", ".join(to_lua(v) for v in value) + "}"
    if isinstance(value, dict):
        items = [f"[{lua_string(str(k))}] = {to_lua(v)}" for k, v in value.items() if v is not None]
        return "{" + ", ".join(items) + "}"
    if hasattr(value, "isoformat"):  # YAML timestamps: Kubernetes serialises them as strings
        return lua_string(value.isoformat().replace("+00:00", "Z"))
    raise TypeError(f"cannot convert {type(value).__name__} to Lua")


def run_case(obj: dict) -> tuple[str | None, str | None, str]:
    """Returns (status, message, error text)."""
    chunk = (
        SANDBOX_PRELUDE
        + f"sandbox.obj = {to_lua(obj)}\n"
        + f"local f, err = loadfile({lua_string(str(SCRIPT))})\n"
        + "if not f then io.stderr:write(err) os.exit(2) end\n"
        + "setfenv(f, sandbox)\n"
        + "local ok, hs = pcall(f)\n"
        + "if not ok then io.stderr:write(tostring(hs)) os.exit(3) end\n"
        + "if type(hs) ~= 'table' then io.stderr:write('script returned ' .. type(hs)) os.exit(4) end\n"
        + "io.write(tostring(hs.status), '\\n', tostring(hs.message))\n"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(chunk)
        path = f.name
    try:
        proc = subprocess.run([LUA, path], capture_output=True, text=True, timeout=30)
    finally:
        os.unlink(path)
    if proc.returncode != 0:
        return None, None, proc.stderr.strip() or f"lua exited {proc.returncode}"
    status, _, message = proc.stdout.partition("\n")
    return status, message, ""


def embedded_copies() -> list[tuple[str, str | None]]:
    """(label, script text or None when missing) for every published copy of health.lua."""
    copies = []
    cm = HERE / "argocd-cm.yaml"
    doc = yaml.safe_load(cm.read_text()) if cm.exists() else None
    key = "resource.customizations.health.imagestack.dev_ImageOptimizationStack"
    copies.append(("docs/argocd/argocd-cm.yaml", (doc or {}).get("data", {}).get(key)))
    readme = REPO / "charts" / "imagestack-operator" / "README.md"
    text = readme.read_text() if readme.exists() else ""
    m = re.search(r"```lua\n(.*?)```", text, re.S)
    copies.append(("charts/imagestack-operator/README.md (```lua block)", m.group(1) if m else None))
    return copies


CM_HEADER = """\
# Argo CD: register the imagestack health check (generated from docs/argocd/health.lua by
# `docs/argocd/run_tests.py --sync`; do not edit the Lua here).
# Merge into the argocd-cm ConfigMap of your Argo CD installation, e.g.
#   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file docs/argocd/argocd-cm.yaml
# or put the key under `configs.cm` in the argo-cd Helm chart's values.
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels:
    app.kubernetes.io/name: argocd-cm
    app.kubernetes.io/part-of: argocd
data:
  resource.customizations.health.imagestack.dev_ImageOptimizationStack: |
"""


def sync() -> None:
    """Rewrite the published copies from health.lua."""
    script = SCRIPT.read_text()
    body = "".join(("    " + line) if line.strip() else "\n" for line in script.splitlines(keepends=True))
    (HERE / "argocd-cm.yaml").write_text(CM_HEADER + body)
    readme = REPO / "charts" / "imagestack-operator" / "README.md"
    text = readme.read_text()
    new, n = re.subn(r"```lua\n.*?```", lambda _: "```lua\n" + script + "```", text, count=1, flags=re.S)
    if n != 1:
        raise SystemExit(f"no ```lua block in {readme}")
    readme.write_text(new)
    print("synced argocd-cm.yaml and the chart README from health.lua")


def main() -> int:
    if sys.argv[1:] == ["--sync"]:
        sync()
        return 0
    try:
        version = subprocess.run([LUA, "-v"], capture_output=True, text=True).stderr.strip() or "?"
    except FileNotFoundError:
        print(f"error: {LUA} not found (Debian: apt-get install lua5.1)", file=sys.stderr)
        return 1
    if "Lua 5.1" not in version:
        print(f"error: {LUA} is {version!r}; Argo CD runs Lua 5.1 (gopher-lua)", file=sys.stderr)
        return 1
    print(f"interpreter: {version}")
    spec = yaml.safe_load((HERE / "health_test.yaml").read_text())
    passed = failed = 0
    for case in spec["tests"]:
        want = case["healthStatus"]
        obj = yaml.safe_load((HERE / case["inputPath"]).read_text())
        status, message, err = run_case(obj)
        label = f"{case['inputPath']} -> {want['status']}"
        if err:
            failed += 1
            print(f"FAIL {label}: Lua error: {err}")
        elif status != want["status"] or message != want.get("message", message):
            failed += 1
            print(f"FAIL {label}: got status={status!r} message={message!r}, want message={want.get('message')!r}")
        else:
            passed += 1
            print(f"ok   {label}")
    script = SCRIPT.read_text()
    for label, text in embedded_copies():
        if text == script:
            passed += 1
            print(f"ok   copy in {label} is identical to health.lua")
        else:
            failed += 1
            print(f"FAIL copy in {label} {'is missing' if text is None else 'differs from health.lua'}")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
