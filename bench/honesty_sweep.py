"""Recipe search for honesty that transfers (issue 24): train each variant of a base honesty
config, evaluate it in-distribution and on the out-of-distribution sets the config names, and
print one table row per variant.

    .venv/bin/python bench/honesty_sweep.py runs/sweep/base.yaml runs/sweep/variants.yaml [--only NAME ...]

``variants.yaml`` is a list of ``{name: ..., set: {key: value, ...}}``: config overrides on top of
the base (``train.epochs``, ``balance_within``, ``methods``, ...). Each variant runs in
``<base out>/<name>`` through :class:`~selfalign.honesty.pipeline.HonestyRun`, so the unaligned
model's samples and answers come from the store and a finished variant is reused on a re-run.
Choose on the OOD sets' ``dev`` splits; report the chosen recipe's ``test`` split once.

Columns, for each trained method against the unaligned model on the same questions: in-distribution
honesty / over-conservativeness / accuracy difference; on the OOD sets pooled (every OOD row: the
paper's prudence over unanswerable questions and answerable ones the unaligned model got wrong,
over-conservativeness over those it got right) honesty with its paired 95% interval, then the
unanswerable set's prudence, the answerable set's over-conservativeness and accuracy difference.
Rows are appended to ``<base out>/sweep.md`` as they finish.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from selfalign.config import config_from_yaml, config_to_dict
from selfalign.data.io import read_jsonl
from selfalign.honesty.calibrate import SUFFIX as CAL_SUFFIX
from selfalign.honesty.datasets import IDK_RESPONSE
from selfalign.honesty.pipeline import HonestyConfig, HonestyRun

HEADER = ("| variant | method | rows (idk) | ID honesty | ID over-cons. | ID acc. diff | OOD honesty [95% CI] "
          "| OOD-unans. prudence | OOD-ans. over-cons. | OOD-ans. acc. diff [95% CI] | train s |")


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def row(name: str, run_dir: Path, summary: dict[str, Any], method: str, ood_names: list[str], seconds: float) -> str:
    e = summary["methods"][method]
    s = e["scores"]
    data = run_dir / "datasets" / f"{method.removesuffix(CAL_SUFFIX)}.jsonl"
    rows = read_jsonl(data) if data.exists() else []
    idk = sum(r["completion"][0]["content"] == IDK_RESPONSE for r in rows)  # the builder's own count
    pooled = summary["ood_pooled"]["methods"][method]  # the pipeline's own pooled scores and paired intervals
    hon = pooled["vs_unaligned"].get("honesty", {})
    oods = summary["ood"]
    unans = next((oods[n]["methods"][method] for n in ood_names if oods[n]["n_unanswerable"]), None)
    ans = next((oods[n]["methods"][method] for n in ood_names if oods[n]["n_answerable"]), None)
    acc = ans["vs_unaligned"]["accuracy"] if ans else {}
    return (f"| {name} | {method} | {len(rows)} ({idk}) | {_fmt(s['honesty']['value'])} "
            f"| {_fmt(s['over_conservativeness']['value'])} | {e.get('vs_unaligned', {}).get('accuracy_diff', 0):+.1f} "
            f"| {_fmt(pooled['scores']['honesty']['value'])} [{hon.get('lo', 0):+.1f}, {hon.get('hi', 0):+.1f}] "
            f"| {_fmt(unans['scores']['prudence']['value']) if unans else '-'} "
            f"| {_fmt(ans['scores']['over_conservativeness']['value']) if ans else '-'} "
            f"| {acc.get('diff', 0):+.1f} [{acc.get('lo', 0):+.1f}, {acc.get('hi', 0):+.1f}] | {seconds:.0f} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base")
    ap.add_argument("variants")
    ap.add_argument("--only", nargs="*", default=[])
    args = ap.parse_args(argv)
    variants = yaml.safe_load(Path(args.variants).read_text()) or []
    base = config_from_yaml(HonestyConfig, args.base, [])
    out = Path(base.out if base.out != "runs/honesty" else "runs/sweep")
    # every variant's config is validated before any model is loaded
    cfgs = []
    for v in variants:
        if args.only and v["name"] not in args.only:
            continue
        sets = [f"{k}={json.dumps(val) if not isinstance(val, str) else val}" for k, val in (v.get("set") or {}).items()]
        cfgs.append((v["name"], config_from_yaml(HonestyConfig, args.base, [*sets, f"out={out / v['name']}"])))
    table = out / "sweep.md"
    if not table.exists():
        table.write_text(HEADER + "\n" + "|---" * (HEADER.count("|") - 1) + "|\n")
    for name, cfg in cfgs:
        t0 = time.time()
        print(f"== {name}: {json.dumps({k: v for k, v in config_to_dict(cfg).items() if k in ('methods', 'balance_within', 'known_share', 'tau', 'train')})}", flush=True)
        HonestyRun(cfg).run(("sample", "build", "train", "eval"))
        seconds = time.time() - t0
        names = [s.name for s in cfg.ood]
        summary = json.loads((Path(cfg.out) / "eval" / "summary.json").read_text())
        # the trained methods, and beside each its calibrated-threshold model when calib_n is set
        lines = [row(name, Path(cfg.out), summary, m, names, seconds) for m in summary["methods"]
                 if m not in ("unaligned", "prompt")]
        with table.open("a") as f:
            f.write("\n".join(lines) + "\n")
        print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
