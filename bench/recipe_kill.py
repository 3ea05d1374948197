"""SIGKILL a recipe run at three points (inside a generation, inside a training, inside an
evaluation), re-run it each time, and compare its final report with an uninterrupted run's.

    python bench/recipe_kill.py recipes/quick.yaml --out runs/recipe-killed --reference runs/recipe-quick/report.json

Run it with a fresh store (``SELFALIGN_STORE``), not the reference run's: with the reference's
store every answer would be a cache hit and the comparison would prove nothing. Each kill point
is a line of the run's log (a regex) and a delay after it; the process group is killed with
SIGKILL (no handler runs), then the same command is started again. The last run goes to the end.

Compared (equal or not, and which fields differ): the stage x measure matrix, and every stage's
typed result with model paths made relative to the run folder. Timing fields are left out.
Prints one JSON line per run and a verdict; exits 1 when the reports differ.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: (name, log regex, seconds to wait after it) -- the quick recipe's three points
POINTS = [
    ("generation", r"\[self-instruct\] round 2:", 3.0),  # Self-Instruct is generating its third round
    ("training", r"\[train\] absolute: \d+ steps", 4.0),  # the honesty stage's SFT is under way
    ("evaluation", r"\[03-best-of-n\] done in", 8.0),  # the suite after best-of-n is answering
]
TIMING = {"seconds", "eval_seconds", "reused", "usage", "eval_usage"}


def run_until(cmd: list[str], log: Path, pattern: str | None, delay: float) -> dict[str, Any]:
    """Start ``cmd`` (its output appended to ``log``); SIGKILL its group ``delay`` s after a new log
    line matches ``pattern``; or wait for it to finish when ``pattern`` is None."""
    start = log.stat().st_size if log.exists() else 0
    t0 = time.time()
    with log.open("a") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    killed_at = None
    while proc.poll() is None:
        time.sleep(0.5)
        if pattern and killed_at is None:
            with log.open() as f:
                f.seek(start)
                if re.search(pattern, f.read()):
                    time.sleep(delay)
                    if proc.poll() is None:
                        os.killpg(proc.pid, signal.SIGKILL)
                        killed_at = time.time() - t0
    proc.wait()
    return {"returncode": proc.returncode, "seconds": round(time.time() - t0, 1),
            "killed_after_s": round(killed_at, 1) if killed_at else None}


def normalised(report: dict[str, Any], out: str) -> dict[str, Any]:
    """The parts of a report that must not depend on the kills: the matrix and the stage results,
    with paths under the run folder made relative."""
    text = json.dumps({"matrix": report["matrix"],
                       "stages": [{k: v for k, v in st.items() if k not in TIMING} for st in report["stages"]]})
    text = text.replace(str(Path(out).resolve()) + "/", "").replace(out.rstrip("/") + "/", "")
    return _drop_seconds(json.loads(text))


def _drop_seconds(x: Any) -> Any:
    """Wall times anywhere (a training's ``seconds`` too): they differ between any two runs."""
    if isinstance(x, dict):
        return {k: _drop_seconds(v) for k, v in x.items() if k != "seconds"}
    if isinstance(x, list):
        return [_drop_seconds(v) for v in x]
    return x


def diff(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in diff(a.get(k), b.get(k), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return []  # "not defined" in both (a McNemar p of a continuous measure): the same
    return [] if a == b else [f"{path}: {json.dumps(a)[:80]} != {json.dumps(b)[:80]}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe")
    ap.add_argument("--out", required=True, help="the killed run's folder (must not exist)")
    ap.add_argument("--reference", required=True, help="report.json of an uninterrupted run of the same recipe")
    ap.add_argument("--reference-out", default="", help="that run's folder (default: the report's folder)")
    ap.add_argument("--selfalign", default=str(Path(sys.executable).with_name("selfalign")))
    ap.add_argument("--compare-only", action="store_true", help="no runs: compare --out's finished report")
    a = ap.parse_args()
    if not a.compare_only and Path(a.out).exists():
        sys.exit(f"--out {a.out}: exists; the killed run starts from nothing")
    ref = json.loads(Path(a.reference).read_text())
    ref_out = a.reference_out or str(Path(a.reference).parent)
    log = Path(a.out + ".log")
    cmd = [a.selfalign, "recipe", "run", a.recipe, "--set", f"out={a.out}"]
    for name, pattern, delay in [] if a.compare_only else POINTS + [("finish", None, 0.0)]:
        r = run_until(cmd, log, pattern, delay)
        print(json.dumps({"run": name, **r}), flush=True)
        if name != "finish" and r["killed_after_s"] is None:
            sys.exit(f"the {name} kill point was never reached (pattern {pattern!r}); see {log}")
    got = json.loads((Path(a.out) / "report.json").read_text())
    d = diff(normalised(ref, ref_out), normalised(got, a.out))
    print(json.dumps({"same_report": not d, "differences": len(d), "first": d[:20]}, indent=1))
    sys.exit(1 if d else 0)


if __name__ == "__main__":
    main()
