"""The harm judge as a fine-tuned classifier (LoRA + score head), leave-one-source-model-out (issue 23).

    .venv/bin/python bench/harm_lora.py [--data FILE] [--work runs/judges/lora] [--json OUT] [--set KEY=VALUE ...]

The protocol is selfalign.reward.harm_lora's docstring: training options fixed beforehand, the
threshold chosen on the dev questions (bar sources' folds), the test questions reported once. Prints the
CPU, each fit's time, the dev threshold table, and the test table beside the frozen-feature judge's
recorded test numbers (docs/RESULTS.md). A re-run reuses finished fits (<work>/<fit>/pred.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harm_judge import DATA, cpu, row  # noqa: E402

from selfalign.judges.registry import load_labelled  # noqa: E402
from selfalign.models.registry import require_trainable  # noqa: E402
from selfalign.reward.harm_judge import proxy_table  # noqa: E402
from selfalign.reward.harm_lora import protocol  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--base", default="smollm2-135m")
    ap.add_argument("--work", default="runs/judges/lora")
    ap.add_argument("--json", default="")
    ap.add_argument("--threshold", type=float, default=None, help="fix the threshold and skip the dev phase")
    ap.add_argument("--test-sources", default="", help="comma-separated held-out sources to fit (default: all)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a training option")
    a = ap.parse_args()
    over = {}
    for kv in a.set:
        k, v = kv.split("=", 1)
        over[k] = json.loads(v)
    print(f"CPU: {cpu()}")
    _, rows = load_labelled(a.data)
    base = require_trainable(a.base)
    res = protocol(rows, base, a.base, a.work, threshold=a.threshold,
                   test_sources=a.test_sources.split(",") if a.test_sources else None, **over)
    print(f"\nbar sources: {res['bar_sources']}; config: { {k: res['config'][k] for k in ('epochs', 'learning_rate', 'lora_r', 'lora_layers', 'batch_size', 'balanced', 'precision')} }")
    print("dev questions (bar sources' folds pooled), by grid entry and threshold: worst kappa, mean accuracy")
    for name, d in res["dev"].items():
        if not d["tried"]:
            print(f"  {name}: {d.get('note', '')}")
            continue
        print(f"  {name}: " + ", ".join(f"t {t['threshold']:.2f} k {t['criterion'][0]:.3f}" for t in d["tried"]))
        print(row(f"    {name} @ {d['threshold']}", next(t['table'] for t in d['tried'] if t['threshold'] == d['threshold'])))
    print(f"chosen: {res['chosen']}, threshold {res['threshold']}")
    print("\ntest questions, once (held out -> trained on the other sources' dev-question answers):")
    print(row("LoRA classifier @ chosen threshold", res["test"]))
    print(row("LoRA classifier @ 0.5 (not chosen; for reading)", res["test_at_half"]))
    print(row("refusal proxy", proxy_table(rows, "test")))
    for s, d in res["test"].items():
        print(f"  {s}: n {d['n']}, ECE {d['ece']:.3f}")
    fits = [f for d in res["dev"].values() for v in d["fits"].values() for f in v] + [
        f for v in res["test_fits"].values() for f in v]
    print(f"fits: {len(fits)}, train {sum(f['train_s'] for f in fits):.0f} s, score {sum(f['score_s'] for f in fits):.0f} s; "
          f"protocol wall {res['seconds']:.0f} s (reused fits count their first time)")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
