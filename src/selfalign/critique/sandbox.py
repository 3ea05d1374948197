"""Run a Python program against its tests in a separate process, with a time limit.

The child runs ``python -I`` (isolated: no user site, no PYTHON* variables) in a fresh
temporary directory that is also its HOME and cwd, under an address-space and CPU-time limit.
A prelude makes sockets unusable and refuses file writes, deletions and renames outside that
directory. This guards against accidents in generated or mutated code (an infinite loop, a
stray ``open(path, "w")``), as the HumanEval harness and CriticGPT's tampering pipeline need;
it is not a security boundary against hostile code (use a container for that).

Outcomes: ``pass`` (every assertion of ``check(candidate)`` held), ``fail`` (an assertion or
any exception), ``timeout``, ``error`` (the program itself did not compile or import).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

_PRELUDE = r'''
import builtins, io, os, socket, sys
_ROOT = os.path.realpath(os.getcwd())
def _inside(p):
    try:
        p = os.path.realpath(os.fspath(p))
    except TypeError:
        return True  # a file descriptor: already open
    return p == _ROOT or p.startswith(_ROOT + os.sep)
def _no_net(*a, **k):
    raise OSError("network access is disabled in the sandbox")
socket.socket = _no_net
socket.create_connection = _no_net
socket.socketpair = _no_net
_open = builtins.open
def _guarded_open(file, mode="r", *a, **k):
    if any(c in mode for c in "wax+") and not _inside(file):
        raise PermissionError(f"writing outside the sandbox: {file}")
    return _open(file, mode, *a, **k)
builtins.open = _guarded_open
io.open = _guarded_open
_os_open = os.open
def _guarded_os_open(path, flags, *a, **k):
    if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC) and not _inside(path):
        raise PermissionError(f"writing outside the sandbox: {path}")
    return _os_open(path, flags, *a, **k)
os.open = _guarded_os_open
def _guard1(fn):
    def g(path, *a, **k):
        if not _inside(path):
            raise PermissionError(f"changing files outside the sandbox: {path}")
        return fn(path, *a, **k)
    return g
def _guard2(fn):
    def g(src, dst, *a, **k):
        if not (_inside(src) and _inside(dst)):
            raise PermissionError(f"changing files outside the sandbox: {src} -> {dst}")
        return fn(src, dst, *a, **k)
    return g
for _n in ("remove", "unlink", "rmdir", "mkdir", "makedirs", "removedirs", "chmod"):
    setattr(os, _n, _guard1(getattr(os, _n)))
for _n in ("rename", "replace", "link", "symlink"):
    setattr(os, _n, _guard2(getattr(os, _n)))
os.system = lambda *a, **k: (_ for _ in ()).throw(PermissionError("os.system is disabled in the sandbox"))
'''

_RUNNER = r'''
import json, sys, resource
mem = int(sys.argv[1])
if mem:
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
src = open("program.py").read()
test = open("test.py").read()
entry = sys.argv[2]
exec(compile(PRELUDE, "<prelude>", "exec"), {})
ns = {}
try:
    exec(compile(src, "program.py", "exec"), ns)
except BaseException as e:
    print(json.dumps({"outcome": "error", "detail": f"{type(e).__name__}: {e}"[:300]}))
    sys.exit(0)
try:
    exec(compile(test, "test.py", "exec"), ns)
    ns["check"](ns[entry])
except BaseException as e:
    print(json.dumps({"outcome": "fail", "detail": f"{type(e).__name__}: {e}"[:300]}))
    sys.exit(0)
print(json.dumps({"outcome": "pass", "detail": ""}))
'''


@dataclass(frozen=True)
class TestRun:
    outcome: str  # pass | fail | timeout | error
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"


def run_tests(program: str, test: str, entry_point: str, timeout: float = 10.0,
              memory_mb: int = 1024) -> TestRun:
    """Run ``check(entry_point)`` from ``test`` against ``program`` in a sandboxed subprocess."""
    with tempfile.TemporaryDirectory(prefix="selfalign-sandbox-") as tmp:
        with open(os.path.join(tmp, "program.py"), "w") as f:
            f.write(program)
        with open(os.path.join(tmp, "test.py"), "w") as f:
            f.write(test)
        runner = "PRELUDE = " + repr(_PRELUDE) + "\n" + _RUNNER
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, "TMPDIR": tmp,
               "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
        try:
            proc = subprocess.run([sys.executable, "-I", "-c", runner, str(memory_mb * 2**20), entry_point],
                                  cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return TestRun("timeout", f"over {timeout:g}s")
        for line in reversed(proc.stdout.strip().splitlines()):
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(d, dict) and d.get("outcome") in ("pass", "fail", "error"):
                return TestRun(d["outcome"], d.get("detail", ""))
        # killed (memory limit, os._exit, a signal) before reporting
        return TestRun("fail", f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}")


def run_many(jobs: Sequence[tuple[str, str, str]], timeout: float = 10.0, workers: int = 2) -> list[TestRun]:
    """``run_tests`` over (program, test, entry_point) triples, ``workers`` processes at a time."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(lambda j: run_tests(j[0], j[1], j[2], timeout=timeout), jobs))
