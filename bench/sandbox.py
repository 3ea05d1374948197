"""Sandbox speed: canonical solutions run against their tests, runs per second, for the harness
before the bwrap rewrite (its source taken from git and loaded as a temporary module) and the
current one in ``bwrap`` and ``process`` mode, in one process, interleaved round by round so that
the machine's load falls on all three alike. Every run must pass in every harness.

    .venv/bin/python bench/sandbox.py                      # the bundled problems, 3 rounds
    .venv/bin/python bench/sandbox.py --data humaneval     # HumanEval (skipped if absent)
    .venv/bin/python bench/sandbox.py --data humaneval --mutants 3   # also: do old and new judge mutants alike?
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from selfalign.critique import sandbox
from selfalign.critique.tamper import bundled_problems, load_humaneval, mutants

ROOT = Path(__file__).resolve().parents[1]
PATH = "src/selfalign/critique/sandbox.py"
HUMANEVAL = Path("/work/shared/data/humaneval/HumanEval.jsonl.gz")


def old_module(rev: str | None) -> tuple[str, ModuleType]:
    """The sandbox module as it was before the checker/worker rewrite (or at ``rev``)."""
    if rev is None:
        new = subprocess.run(["git", "log", "--format=%H", "--reverse", "-S_CHECKER", "--", PATH], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
        if not new:
            raise SystemExit("cannot find the commit that introduced the checker; pass --old-rev")
        rev = new[0] + "^"
    src = subprocess.run(["git", "show", f"{rev}:{PATH}"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    f = Path(tempfile.mkdtemp(prefix="bench-sandbox-")) / "old_sandbox.py"
    f.write_text(src)
    spec = importlib.util.spec_from_file_location("old_sandbox", f)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["old_sandbox"] = mod  # dataclasses look the module up
    spec.loader.exec_module(mod)
    return rev, mod


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(x.split(":", 1)[1].strip() for x in out.splitlines() if x.startswith("Model name"))
    except Exception:
        return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="bundled", help="bundled | humaneval | a HumanEval-format JSONL path")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--limit", type=int, default=0, help="first N problems only")
    ap.add_argument("--old-rev", default=None, help="git revision of the old harness")
    ap.add_argument("--mutants", type=int, default=0,
                    help="then run N mutants of each problem (spread over its list) in each harness and compare outcomes")
    a = ap.parse_args()
    if a.data == "bundled":
        problems = bundled_problems()
    else:
        path = HUMANEVAL if a.data == "humaneval" else Path(a.data)
        if not path.exists():
            print(f"skipped: {path} is absent")
            return
        problems = load_humaneval(path)
    if a.limit:
        problems = problems[:a.limit]
    rev, old = old_module(a.old_rev)
    harnesses: dict[str, Callable[..., Any]] = {"old": lambda p, t, e: old.run_tests(p, t, e)}
    try:
        sandbox.resolve_sandbox("bwrap")
        harnesses["bwrap"] = lambda p, t, e: sandbox.run_tests(p, t, e, sandbox="bwrap")
    except sandbox.SandboxUnavailable as e:
        print(f"bwrap skipped: {e}")
    harnesses["process"] = lambda p, t, e: sandbox.run_tests(p, t, e, sandbox="process")
    secs = {k: 0.0 for k in harnesses}
    bad: dict[str, list[str]] = {k: [] for k in harnesses}
    for _ in range(a.rounds):
        for name, run in harnesses.items():
            t0 = time.perf_counter()
            for p in problems:
                r = run(p.program, p.test, p.entry_point)
                if r.outcome != "pass":
                    bad[name].append(f"{p.task_id}: {r.outcome} {r.detail[:120]}")
            secs[name] += time.perf_counter() - t0
    n = len(problems) * a.rounds
    print(f"CPU: {cpu_name()}; python {platform.python_version()}; {len(problems)} problems ({a.data}) x "
          f"{a.rounds} rounds, one at a time; old harness = {rev}")
    base = n / secs["old"]
    for name in harnesses:
        rate = n / secs[name]
        print(f"{name:8s} {rate:6.2f} runs/s  ({rate / base:6.1%} of old)  not passing: {len(bad[name])}")
        for line in sorted(set(bad[name]))[:10]:
            print(f"    {line}")
    if a.mutants:
        agree = {k: 0 for k in harnesses if k != "old"}
        differ: dict[str, list[str]] = {k: [] for k in agree}
        total = 0
        for p in problems:
            ms = list(mutants(p))  # spread over the kinds (they come kind by kind)
            for m in ms[::max(1, len(ms) // a.mutants)][:a.mutants]:
                total += 1
                ref = harnesses["old"](m.code, p.test, p.entry_point)
                for name in agree:
                    r = harnesses[name](m.code, p.test, p.entry_point)
                    if r.outcome == ref.outcome:
                        agree[name] += 1
                    else:
                        differ[name].append(f"{m.task_id} {m.description}: old {ref.outcome} {ref.detail[:60]!r}, "
                                            f"new {r.outcome} {r.detail[:60]!r}")
        for name in agree:
            print(f"mutants  {name:8s} same outcome as old: {agree[name]}/{total}")
            for line in differ[name][:10]:
                print(f"    {line}")


if __name__ == "__main__":
    main()
