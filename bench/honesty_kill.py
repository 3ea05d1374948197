"""SIGKILL ``selfalign honesty run`` inside its sampling, its training and its evaluation, re-run it
after each kill, and compare every file it wrote with an uninterrupted run's (issue 26's bar:
kill-and-resume gives the files of an uninterrupted run, in bf16 and in fp32).

    python bench/honesty_kill.py --config bench/honesty_kill.yaml --out runs/honesty-kill            # this CPU's precision
    python bench/honesty_kill.py --config bench/honesty_kill.yaml --out runs/honesty-kill-fp32 --model smollm2-135m+fp32

Each run gets its own fresh store under ``--out`` (with a shared store the second run would only
read the first one's answers and prove nothing); the model cache is shared. Both runs write to
``OUT/run`` (the same path, so paths and the hashes of configs that name them are the same), which
is then renamed to ``OUT/reference`` and ``OUT/killed``. A kill point is a regex over the run's log
and a delay after the first new line that matches it; the process group gets SIGKILL (no handler
runs), and the same command is started again; the last start runs to the end.

Compared: every file of the two run folders, as :func:`selfalign.store.runs.comparable_files`
reads them: bytes, or JSON without wall times, without what each start did and without the
hashes of JSON outputs in step records; ``report.html`` through ``report.json``. Prints one line per start, one per file
that differs, and a JSON verdict; exits 1 when any file differs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from selfalign.store.runs import comparable_files

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe_kill import run_until  # noqa: E402  (one way to start and SIGKILL a command, shared)

#: (name, log regex, seconds to wait after it): inside k(x) sampling once its first chunks are
#: committed, inside the training after its first checkpoint, inside the prompt method's evaluation
POINTS = [
    ("sampling", r"k\(x\): greedy \+ \d+ samples: [1-9]\d*/", 2.0),
    ("training", r"\[train\] confidence-verb: \d+ steps", 9.0),
    ("evaluation", r"eval honesty-test \[prompt\]: .*: [1-9]\d*/", 1.0),
]


def compare(a: Path, b: Path) -> tuple[int, list[str]]:
    """(files compared, the relative paths that differ or exist in one folder only)."""
    fa, fb = comparable_files(a), comparable_files(b)
    differ = [f"{p} (only in {'reference' if p in fa else 'killed'})" for p in sorted(set(fa) ^ set(fb))]
    differ += [p for p in sorted(set(fa) & set(fb)) if fa[p] != fb[p]]
    return len(set(fa) | set(fb)), differ


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--model", default="", help="model spec (default: the config's)")
    ap.add_argument("--compare-only", action="store_true", help="compare the two folders of an earlier run")
    args = ap.parse_args()
    exe = str(Path(sys.executable).with_name("selfalign"))
    ref, killed, work = args.out / "reference", args.out / "killed", args.out / "run"
    cmd = [exe, "honesty", "run", "-c", args.config, "--set", f"out={work}"] + (["--model", args.model] if args.model else [])

    if not args.compare_only:
        if ref.exists() or killed.exists() or work.exists():
            sys.exit(f"--out {args.out}: holds an earlier run; both runs start from nothing")
        args.out.mkdir(parents=True, exist_ok=True)
        for name, out, points in (("reference", ref, [None]), ("killed", killed, [*POINTS, None])):
            store = args.out / f"{name}.sqlite"
            for p in (store, Path(f"{store}-wal"), Path(f"{store}-shm")):
                p.unlink(missing_ok=True)
            os.environ["SELFALIGN_STORE"] = str(store)
            for point in points:
                pattern, delay = (point[1], point[2]) if point else (None, 0.0)
                res = run_until(cmd, args.out / f"{name}.log", pattern, delay)
                print(json.dumps({"run": name, "kill_point": point[0] if point else None, **res}), flush=True)
                if point and res["killed_after_s"] is None:
                    sys.exit(f"the {point[0]} kill point was never reached ({point[1]!r}); see {args.out / (name + '.log')}")
                if point is None and res["returncode"] != 0:
                    print(f"{name} failed (exit {res['returncode']}): see {args.out / (name + '.log')}", flush=True)
                    return 1
            work.rename(out)
    n, differ = compare(ref, killed)
    for d in differ:
        print(f"differs: {d}")
    print(json.dumps({"files": n, "identical": n - len(differ), "differ": len(differ), "same_files": not differ}))
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
