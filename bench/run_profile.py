"""Where a run's time went, by step: the step records (``steps/*.json``: seconds, finish time) of
one or more run folders, and inside each step's window the store's call log (``calls``: generate,
score and PM calls with their items, tokens and seconds). What no call accounts for is training and
everything else in the step (its trainer logs: ``train.json``'s seconds where the step trained).

    .venv/bin/python bench/run_profile.py runs/rlhf-quick/pm runs/rlhf-quick/frontier --store $SELFALIGN_STORE
    .venv/bin/python bench/run_profile.py runs/quick                      # the demo's run, default store

Only steps this store saw run are split (a step reused from an earlier run made no calls).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

from selfalign.models.precision import cpu_model
from selfalign.store.cache import default_store_path


def steps(run: Path) -> list[dict]:
    out = []
    for f in sorted((run / "steps").glob("*.json")):
        rec = json.loads(f.read_text())
        if isinstance(rec.get("finished_ts"), (int, float)) and isinstance(rec.get("seconds"), (int, float)):
            out.append({"run": str(run), "step": rec.get("step", f.stem), "end": rec["finished_ts"],
                        "seconds": rec["seconds"]})
    return out


def trainings(run: Path) -> list[tuple[str, float]]:
    """(folder, seconds) of every finished training under ``run``."""
    out = []
    for f in sorted(run.rglob("train.json")):
        try:
            out.append((str(f.parent.relative_to(run)), float(json.loads(f.read_text()).get("seconds") or 0.0)))
        except (ValueError, OSError):
            continue
    return out


def short(model_id: str) -> str:
    name = model_id.split("@")[0]
    return name if len(name) <= 48 else "..." + name[-45:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--store", default=None, help="the store the runs used (default: $SELFALIGN_STORE or the cache's)")
    args = ap.parse_args()
    db = sqlite3.connect(args.store or str(default_store_path()))
    print(f"CPU: {cpu_model()}\n")
    all_steps = sorted((s for r in args.runs for s in steps(r)), key=lambda s: s["end"])
    print("| run / step | seconds | in model calls | kind, model: calls, items (cached), tokens, seconds |\n|---|---|---|---|")
    total = 0.0
    for s in all_steps:
        rows = db.execute("SELECT kind, model_id, COUNT(*), SUM(n_items), SUM(n_cached), SUM(n_tokens), SUM(seconds) "
                          "FROM calls WHERE created_at > ? AND created_at <= ? GROUP BY kind, model_id "
                          "ORDER BY SUM(seconds) DESC", (s["end"] - s["seconds"], s["end"] + 1e-3)).fetchall()
        in_calls = sum(r[6] for r in rows)
        parts = "; ".join(f"{k} {short(m)}: {c}, {n} ({h}), {t}, {sec:.0f} s" for k, m, c, n, h, t, sec in rows)
        print(f"| {Path(s['run']).name} / {s['step']} | {s['seconds']:.0f} | {in_calls:.0f} | {parts or '-'} |")
        total += s["seconds"]
    print(f"\nsteps total: {total:.0f} s")
    for r in args.runs:
        for folder, sec in trainings(r):
            print(f"training {r.name}/{folder}: {sec:.0f} s")


if __name__ == "__main__":
    main()
