"""Escape probes against the code sandbox: each runs hostile code and asserts that the harm did not
happen (the marker file is absent, the planted file is intact, the listener saw no connection, the
secret shows nowhere, no process is left), not only the outcome.

Every probe runs in ``bwrap`` mode (skipped where bwrap cannot run here) and, where the fallback
claims to stop it, in ``process`` mode too. Forged verdicts fail in every mode.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import resource
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from selfalign.critique import sandbox
from selfalign.critique.sandbox import SandboxUnavailable, resolve_sandbox, run_tests


def _bwrap_reason() -> str | None:
    try:
        resolve_sandbox("bwrap")
        return None
    except SandboxUnavailable as e:
        return str(e)


BWRAP_WHY = _bwrap_reason()
needs_bwrap = pytest.mark.skipif(BWRAP_WHY is not None, reason=f"bwrap cannot run here: {BWRAP_WHY}")
BWRAP = pytest.param("bwrap", marks=needs_bwrap)
BOTH = [BWRAP, "process"]

# the check shows whatever the program returns, so anything it read would reach the detail
SHOW = "def check(c):\n    r = c()\n    assert r == 'SAFE', r\n"


def probe(body: str, mode: str, timeout: float = 5.0, check: str = SHOW, **kw: object) -> tuple[sandbox.TestRun, str]:
    """Run ``def f(): <body>`` under ``mode``; returns the run and the label its processes carry."""
    label = "probe-" + uuid.uuid4().hex
    prog = "import os, sys\ndef f():\n" + "".join(f"    {line}\n" for line in body.strip("\n").splitlines())
    r = run_tests(prog, check, "f", timeout=timeout, sandbox=mode, label=label, **kw)  # type: ignore[arg-type]
    assert r.sandbox == mode
    return r, label


def processes_with(token: str) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if token.encode() in f.read():
                        out.append(int(name))
            except OSError:
                pass
    return out


def assert_no_process(token: str) -> None:
    for _ in range(20):  # the kernel may take a moment to tear a namespace down
        if not processes_with(token):
            return
        time.sleep(0.05)
    raise AssertionError(f"processes left behind: {processes_with(token)}")


# ------------------------------------------------------------------ verdicts cannot be forged
FORGERIES = {
    "print-and-exit": "import json\nprint(json.dumps({'outcome': 'pass', 'detail': ''}), flush=True)\nos._exit(0)",
    "print-and-exit-0-at-import": None,  # below: at import time
    "write-every-fd": (
        "b = json.dumps({'outcome': 'pass', 'detail': ''}).encode()\n"
        "for fd in range(3, 64):\n"
        "    for frame in (b, b'%012d' % len(b) + b):\n"
        "        try:\n"
        "            os.write(fd, frame)\n"
        "        except OSError:\n"
        "            pass\n"
        "os._exit(0)"),
    "parent-fds-via-proc": (
        "b = json.dumps({'outcome': 'pass', 'detail': ''}).encode()\n"
        "for fd in range(0, 64):\n"
        "    try:\n"
        "        x = os.open(f'/proc/{os.getppid()}/fd/{fd}', os.O_WRONLY)\n"
        "        os.write(x, b'%012d' % len(b) + b)\n"
        "    except OSError:\n"
        "        pass\n"
        "os._exit(0)"),
    "always-equal": "class Eq(str):\n    def __eq__(self, o):\n        return True\nreturn Eq('nope')",
    "exit-zero": "raise SystemExit(0)",
}


@pytest.mark.parametrize("mode", BOTH)
@pytest.mark.parametrize("kind", sorted(FORGERIES))
def test_a_forged_verdict_fails(mode, kind):
    check = "def check(c):\n    assert c() == 'right'\n"
    if FORGERIES[kind] is None:
        prog = "import json, os\nprint(json.dumps({'outcome': 'pass'}), flush=True)\nos._exit(0)\ndef f():\n    pass\n"
        r = run_tests(prog, check, "f", timeout=5.0, sandbox=mode)
    else:
        r, _ = probe("import json\n" + FORGERIES[kind], mode, check=check)
    assert r.outcome == "fail", r
    assert r.sandbox == mode


@pytest.mark.parametrize("mode", BOTH)
def test_honest_programs_still_pass_fail_and_error(mode):
    t = "def check(candidate):\n    assert candidate([3, 1, 2]) == (1, 2, 3)\n    assert candidate([]) == ()\n"
    assert run_tests("def s(x):\n    return tuple(sorted(x))\n", t, "s", sandbox=mode).outcome == "pass"
    assert run_tests("def s(x):\n    return sorted(x)\n", t, "s", sandbox=mode).outcome == "fail"  # list != tuple
    assert run_tests("def s(x:\n", t, "s", sandbox=mode).outcome == "error"
    # the test may use the program's helpers, constants and imports
    prog = "import math\nK = [1, 2]\ndef sq(x):\n    return x * x\ndef s(x):\n    return math.sqrt(sq(x))\n"
    t2 = "def check(c):\n    assert c(3) == 3.0 and sq(2) == 4 and K == [1, 2] and math.pi > 3\n"
    assert run_tests(prog, t2, "s", sandbox=mode).passed
    # exceptions keep their type for tests that expect them
    t3 = "def check(c):\n    try:\n        c(0)\n    except ZeroDivisionError:\n        return\n    assert False\n"
    assert run_tests("def d(x):\n    return 1 / x\n", t3, "d", sandbox=mode).passed


# ------------------------------------------------------------------ files outside
WRITES = {
    "subprocess": "import subprocess\nsubprocess.run(['/bin/sh', '-c', 'echo x > ' + {m!r}])",
    "posix_spawn": "pid = os.posix_spawn('/bin/sh', ['sh', '-c', 'echo x > ' + {m!r}], {{}})\nos.waitpid(pid, 0)",
    "ctypes": "import ctypes\nfd = ctypes.CDLL(None).open({m!r}.encode(), os.O_WRONLY | os.O_CREAT, 0o644)\n"
              "ctypes.CDLL(None).write(fd, b'x', 1)",
    "io.FileIO": "import io\nio.FileIO({m!r}, 'w').write(b'x')",
    "posix.open": "import posix\nposix.write(posix.open({m!r}, os.O_WRONLY | os.O_CREAT), b'x')",
}
DELETES = {
    "posix.unlink": "import posix\nposix.unlink({p!r})",
    "ctypes-unlink": "import ctypes\nctypes.CDLL(None).unlink({p!r}.encode())",
    "os.truncate": "os.truncate({p!r}, 0)",
    "posix.truncate": "import posix\nposix.truncate({p!r}, 0)",
    "os.remove": "os.remove({p!r})",
}
# the fallback stops what the seccomp filter (no new processes) and the Python guards cover
PROCESS_STOPS = {"subprocess", "posix_spawn", "os.truncate", "os.remove"}


def _cases(kinds):
    out = []
    for k in kinds:
        out.append(pytest.param(k, "bwrap", marks=needs_bwrap, id=f"{k}-bwrap"))
        if k in PROCESS_STOPS:
            out.append(pytest.param(k, "process", id=f"{k}-process"))
    return out


@pytest.mark.parametrize("kind,mode", _cases(WRITES))
def test_no_writes_outside(tmp_path, kind, mode):
    marker = tmp_path / "marker.txt"
    r, label = probe(WRITES[kind].format(m=str(marker)) + "\nreturn 'SAFE'", mode)
    assert not marker.exists(), r
    assert_no_process(label)


@pytest.mark.parametrize("kind,mode", _cases(DELETES))
def test_no_deletes_or_truncation_outside(tmp_path, kind, mode):
    planted = tmp_path / "planted.txt"
    planted.write_text("keep me")
    r, _ = probe(DELETES[kind].format(p=str(planted)) + "\nreturn 'SAFE'", mode)
    assert planted.exists() and planted.read_text() == "keep me", r


# ------------------------------------------------------------------ network
@pytest.mark.parametrize("how,mode", [pytest.param("_socket", "bwrap", marks=needs_bwrap),
                                      pytest.param("socket", "bwrap", marks=needs_bwrap), ("socket", "process")])
def test_no_connection_to_a_local_listener(how, mode):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    srv.settimeout(0.3)
    port = srv.getsockname()[1]
    try:
        body = (f"import {how}\ns = {how}.socket({how}.AF_INET, {how}.SOCK_STREAM)\n"
                f"s.settimeout(2)\ns.connect(('127.0.0.1', {port}))\ns.sendall(b'hello')\nreturn 'SAFE'")
        r, _ = probe(body, mode)
        with pytest.raises(socket.timeout):
            conn, _ = srv.accept()
            conn.close()
        assert r.outcome == "fail", r
    finally:
        srv.close()


# ------------------------------------------------------------------ secrets
@needs_bwrap
def test_a_planted_file_outside_cannot_be_read(tmp_path):
    secret = "S3CRET-" + uuid.uuid4().hex
    f = tmp_path / "secret.txt"
    f.write_text(secret)
    body = (f"out = []\nfor p in ({str(f)!r}, '/etc/passwd', '/root/.bash_history'):\n"
            "    try:\n        out.append(open(p).read())\n    except OSError as e:\n        out.append(str(e))\n"
            "print(out)\nreturn repr(out)")
    r, _ = probe(body, "bwrap")
    assert r.outcome == "fail" and secret not in r.detail, r
    assert "No such file" in r.detail


READ_ENVIRON = """
import glob
out = []
for p in [f'/proc/{os.getppid()}/environ', '/proc/1/environ'] + glob.glob('/proc/[0-9]*/environ') + ['PPENV']:
    try:
        out.append(open(p, 'rb').read().decode('latin-1'))
    except OSError as e:
        out.append(str(e))
out.append(repr(dict(os.environ)))
print(out, file=sys.stderr)
found = [x for x in out if 'OPENAI_API_KEY' in x]
return repr(found) if found else f'tried {len(out)} environ files, no key: {out[:2]}'
"""


def _environ_probe(mode: str) -> tuple[str, str, str]:
    """A parent whose environment holds a secret (as an API key would) sandboxes a program that reads
    every environ it can find, the real parent's too (by its pid outside); returns (secret, detail, all
    the parent printed)."""
    secret = "sk-" + uuid.uuid4().hex
    prog = "import os, sys\ndef f():\n" + "".join(
        f"    {x}\n" for x in READ_ENVIRON.replace("PPENV", "/proc/PARENT/environ").strip().splitlines())
    driver = (
        "import json, os, sys\nfrom selfalign.critique.sandbox import run_tests\n"
        f"prog = {prog!r}.replace('PARENT', str(os.getpid()))\n"
        f"r = run_tests(prog, {SHOW!r}, 'f', timeout=5.0, sandbox={mode!r})\n"
        "print(json.dumps([r.outcome, r.detail, r.sandbox]))\n")
    p = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "OPENAI_API_KEY": secret})
    assert p.returncode == 0, p.stderr
    outcome, detail, got = json.loads(p.stdout.strip().splitlines()[-1])
    assert got == mode and outcome == "fail"
    assert "environ" in detail  # it did try
    return secret, detail, p.stdout + p.stderr


@needs_bwrap
def test_the_parents_environment_cannot_be_read():
    secret, detail, printed = _environ_probe("bwrap")
    assert secret not in detail and secret not in printed


def test_process_mode_hides_the_parents_environment_only_from_root():
    secret, detail, _ = _environ_probe("process")
    if os.geteuid() != 0:
        # the documented limit of the fallback: a program running as the same user reads it
        pytest.skip("process mode does not hide the parent's environment from the same user")
    # as root the worker drops every capability, so it may not read a fully capable process's environ
    assert secret not in detail and "no key" in detail


# ------------------------------------------------------------------ controls: the probes do harm unsandboxed
def _unsandboxed(body: str) -> None:
    prog = "import os, sys\ndef f():\n" + "".join(f"    {x}\n" for x in body.strip("\n").splitlines()) + "f()\n"
    subprocess.run([sys.executable, "-I", "-c", prog], capture_output=True, timeout=30)


@pytest.mark.parametrize("kind", sorted(WRITES))
def test_control_the_write_probes_work_without_a_sandbox(tmp_path, kind):
    marker = tmp_path / "marker.txt"
    _unsandboxed(WRITES[kind].format(m=str(marker)))
    assert marker.exists()


@pytest.mark.parametrize("kind", sorted(DELETES))
def test_control_the_delete_probes_work_without_a_sandbox(tmp_path, kind):
    planted = tmp_path / "planted.txt"
    planted.write_text("keep me")
    _unsandboxed(DELETES[kind].format(p=str(planted)))
    assert not planted.exists() or planted.read_text() == ""


# ------------------------------------------------------------------ processes and resources
@pytest.mark.parametrize("mode", BOTH)
def test_a_forked_child_does_not_outlive_the_run(mode):
    token = "survivor-" + uuid.uuid4().hex
    body = ("try:\n    pid = os.fork()\nexcept OSError as e:\n    pid = -1\n"
            f"if pid == 0:\n    os.setsid()\n    os.execv(sys.executable, [sys.executable, '-c', "
            f"'import time; time.sleep(30)', {token!r}])\n"
            "while True:\n    pass")
    t0 = time.monotonic()
    r, label = probe(body, mode, timeout=1.5)
    assert r.outcome == "timeout" and time.monotonic() - t0 < 10
    assert_no_process(token)
    assert_no_process(label)


@pytest.mark.parametrize("mode", BOTH)
def test_a_fork_bomb_is_bounded(mode):
    token = "bomb-" + uuid.uuid4().hex
    # bounded by construction (at most 2**8 processes) in case every limit failed
    body = ("made = 0\nfor _ in range(8):\n    try:\n        if os.fork() == 0:\n"
            f"            os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(20)', {token!r}])\n"
            "        made += 1\n    except OSError:\n        pass\nreturn f'made {made}'")
    r, label = probe(body, mode)
    assert r.outcome == "fail" and "made 0" in r.detail, r
    assert_no_process(token)
    assert_no_process(label)


@pytest.mark.parametrize("mode", BOTH)
def test_a_10gb_allocation_fails(mode):
    # bytearray asks calloc for untouched pages, so even without the limit it would not fill memory
    r, _ = probe("b = bytearray(10 * 2**30)\nreturn 'SAFE'", mode, memory_mb=512)
    assert r.outcome == "fail" and "MemoryError" in r.detail, r


@pytest.mark.parametrize("mode", BOTH)
def test_endless_output_is_cut_and_not_kept(mode):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    r, label = probe("s = 'x' * 65536\nwhile True:\n    print(s)", mode, timeout=20.0, max_output=4 << 20)
    assert r.outcome == "fail" and "output over" in r.detail, r
    assert time.monotonic() - t0 < 15
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024  # KiB: under 64 MB
    assert_no_process(label)


@pytest.mark.parametrize("mode", BOTH)
def test_a_1gb_file_stops_at_the_file_size_limit(mode):
    body = ("import signal\nsignal.signal(signal.SIGXFSZ, signal.SIG_IGN)\nn = 0\nchunk = b'x' * 2**20\n"
            "try:\n    with open('big.bin', 'wb') as f:\n        for _ in range(1024):\n"
            "            n += f.write(chunk)\n            f.flush()\nexcept OSError as e:\n"
            "    return f'stopped at {n // 2**20} MB: {e}'\nreturn f'wrote {n // 2**20} MB'")
    r, _ = probe(body, mode, max_file_mb=8)
    assert r.outcome == "fail" and "stopped at 8 MB" in r.detail, r


@pytest.mark.parametrize("mode", BOTH)
def test_a_surviving_thread_does_not_hold_the_run(mode):
    body = ("import threading, time\n"
            "threading.Thread(target=lambda: [time.sleep(0.01) for _ in iter(int, 1)]).start()\nreturn 'SAFE'")
    t0 = time.monotonic()
    r, label = probe(body, mode, timeout=5.0)
    assert r.outcome == "pass" and time.monotonic() - t0 < 4, r
    assert_no_process(label)


@pytest.mark.parametrize("mode", BOTH)
def test_killing_its_parent_does_not_reach_us(mode):
    r, label = probe("import signal\nos.kill(os.getppid(), signal.SIGKILL)\nimport time\ntime.sleep(0.5)\n"
                     "return 'SAFE'", mode, timeout=5.0)
    # bwrap: the checker is PID 1 of the namespace, which ignores it; process: the checker dies, so no verdict
    assert r.outcome in ("pass", "fail") and (mode == "bwrap" or r.outcome == "fail"), r
    assert os.getpid() > 0  # still here
    assert_no_process(label)


# ------------------------------------------------------------------ modes
def test_fallback_warns_once_and_records_the_mode(monkeypatch, caplog):
    monkeypatch.setattr(sandbox, "bwrap_binary", lambda: None)
    monkeypatch.setattr(sandbox, "_probed", {})
    monkeypatch.setattr(sandbox, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="selfalign.critique.sandbox"):
        assert resolve_sandbox("auto") == "process"
        assert resolve_sandbox(None) == "process"
        r = run_tests("def f():\n    return 1\n", "def check(c):\n    assert c() == 1\n", "f")
    assert r.passed and r.sandbox == "process"
    assert sum("SANDBOX FALLBACK" in m for m in caplog.messages) == 1
    with pytest.raises(SandboxUnavailable, match="no bwrap binary"):
        resolve_sandbox("bwrap")


def test_docker_and_unknown_modes_say_what_is_missing(monkeypatch):
    with pytest.raises(SandboxUnavailable, match="docker sandbox is not implemented"):
        resolve_sandbox("docker")
    with pytest.raises(ValueError, match="sandbox must be one of"):
        resolve_sandbox("chroot")
    monkeypatch.setenv("SELFALIGN_SANDBOX", "process")
    assert resolve_sandbox(None) == "process"


@needs_bwrap
def test_auto_is_bwrap_where_it_works():
    assert resolve_sandbox("auto") == "bwrap"
    assert run_tests("def f():\n    return 1\n", "def check(c):\n    assert c() == 1\n", "f").sandbox == "bwrap"


def test_bwrap_binds_no_home_or_work_tree():
    bw = sandbox.bwrap_binary() or "bwrap"
    args = sandbox._bwrap_args(bw, 16)
    binds = {args[i + 1] for i, a in enumerate(args) if a == "--ro-bind"}
    assert "/" not in binds and "/root" not in binds and str(Path.home()) not in binds
    assert "--unshare-all" in args and "--die-with-parent" in args and "--clearenv" in args


def test_a_sandbox_that_cannot_be_set_up_raises(monkeypatch):
    # e.g. a kernel without seccomp: every run failing quietly would read as "all mutants caught"
    broken = sandbox._CHECKER.replace("def seccomp():\n", "def seccomp():\n    raise OSError('no seccomp here')\n")
    monkeypatch.setattr(sandbox, "_CHECKER", broken)
    sandbox._checker_code.cache_clear()
    try:
        with pytest.raises(SandboxUnavailable, match="could not be set up here: OSError: no seccomp here"):
            run_tests("def f():\n    return 1\n", "def check(c):\n    assert c() == 1\n", "f", sandbox="process")
    finally:
        monkeypatch.undo()
        sandbox._checker_code.cache_clear()


@needs_bwrap
def test_memory_backed_filesystems_are_capped():
    # tmpfs pages are the host's memory and escape RLIMIT_AS; many small files escape RLIMIT_FSIZE.
    # Bounded by construction: at most 40 MB per directory even if every cap failed.
    body = ("import io\nres = {}\nfor d in ('/dev', '/dev/shm', '/sandbox', '/'):\n    n = 0\n"
            "    try:\n        for i in range(40):\n"
            "            with io.FileIO(f'{d}/fill{i}.bin', 'w') as fh:\n                fh.write(b'x' * 2**20)\n"
            "            n += 1\n    except OSError:\n        pass\n    res[d] = n\nreturn repr(res)")
    r, _ = probe(body, "bwrap", max_file_mb=8)  # the cwd tmpfs gets 16 MB
    got = ast.literal_eval(r.detail.split("AssertionError: ", 1)[1])
    assert got["/dev"] == 0 and got["/"] == 0 and got["/dev/shm"] <= 4 and got["/sandbox"] <= 16, got
