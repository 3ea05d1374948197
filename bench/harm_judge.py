"""The harm judge's numbers (issue 23): leave-one-source-model-out on Liu et al.'s safety labels.

    .venv/bin/python bench/harm_judge.py [--data FILE] [--encoder smollm2-135m] [--json OUT]
    .venv/bin/python bench/harm_judge.py --pm-cost 32   # time LoRA score-head steps (option b)

Prints: the CPU, feature-extraction and head-fitting wall times, the dev-question LOSO table of
every variant (best L2 / weighting / threshold per feature set, layer and pooling; ``combo`` is an
encoder slice + TF-IDF of the words + the refusal verdict, selfalign.reward.harm_text), the chosen
config, then on the test questions (once) the chosen config, the best bag-of-words config (also
chosen on dev) and the refusal proxy, the reliability table, and the all-questions LOSO (labelled:
the dev half was seen in selection). The protocol is selfalign.reward.harm_judge's docstring.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path
from typing import Any

DATA = "/work/shared/data/liu-llm-eval/safety_labelled.dev.jsonl"
SRC = ("davinci", "text-davinci-003", "gpt-4")


def cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "?")
    except OSError:
        return "?"


def pct(x: Any) -> str:
    return "   -  " if x is None or x != x else f"{100 * x:5.1f}%"


def row(name: str, tab: dict[str, Any]) -> str:
    cells = []
    for s in SRC:
        d = tab.get(s)
        if d is None:
            cells.append(" " * 34)
            continue
        rec = d["per_class"]
        cells.append(f"{pct(d['accuracy'])} k{d['kappa']:6.3f} rH {pct(rec['harmful']['recall'])} "
                     f"rN {pct(rec['not_harmful']['recall'])}")
    return f"{name:44s} | " + " | ".join(cells)


def header() -> str:
    return f"{'':44s} | " + " | ".join(f"{s:34s}" for s in SRC) + "\n" + f"{'':44s} | " + " | ".join(
        f"{'acc     kappa   recall H  recall N':34s}" for _ in SRC)


def ece_line(name: str, tab: dict[str, Any]) -> str:
    return f"{name:44s} | " + " | ".join(f"ECE {tab[s]['ece']:.3f} (n {tab[s]['n']})" if s in tab and "ece" in tab[s]
                                         else "-" for s in SRC)


def pm_cost(n: int, encoder: str) -> None:
    """Seconds per LoRA training step of the PM machinery's score-head model on n real rows."""
    import torch

    from selfalign.judges.registry import load_labelled
    from selfalign.models.registry import require_trainable
    from selfalign.train.reward import PMEncoder, load_seq_cls
    from selfalign.train.base import TrainConfig, lora_config

    _, rows = load_labelled(DATA)
    path = require_trainable(encoder)
    model, tok = load_seq_cls(path)
    from peft import get_peft_model

    enc = PMEncoder(tok, 512)
    model.config.pad_token_id = enc.pad_id
    model = get_peft_model(model, lora_config(TrainConfig(), model.config.num_hidden_layers, task_type="SEQ_CLS"))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batch = 8
    seqs = [enc.encode(r.prompt, r.response)[0] for r in rows[:n]]
    y = torch.tensor([1.0 if r.gold == "harmful" else 0.0 for r in rows[:n]])
    t0 = time.time()
    for i in range(0, n, batch):
        b = seqs[i:i + batch]
        width = max(len(s) for s in b)
        ids = torch.full((len(b), width), enc.pad_id)
        att = torch.zeros((len(b), width), dtype=torch.long)
        for k, s in enumerate(b):
            ids[k, :len(s)] = torch.tensor(s)
            att[k, :len(s)] = 1
        logit = model(input_ids=ids, attention_mask=att).logits[:, 0]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, y[i:i + batch])
        loss.backward()
        opt.step()
        opt.zero_grad()
    secs = time.time() - t0
    per_row = secs / n
    print(f"PM LoRA (score head + LoRA, fp32, batch {batch}): {n} rows in {secs:.1f} s = {per_row:.3f} s/row/epoch")
    # dev selection: 3 held-out sources x 2 folds, ~492 train rows each; test: 3 x ~984; final: 2952
    for label, rows_ in (("one epoch, dev LOSO (6 fits x ~492 rows)", 6 * 492), ("test LOSO (3 fits x ~984 rows)", 3 * 984),
                         ("final judge (2952 rows)", 2952)):
        print(f"  estimate {label}: {rows_ * per_row / 60:.0f} min per epoch (forward passes for scoring not counted)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--encoder", default="smollm2-135m")
    ap.add_argument("--cache", default="runs/judges/features", help="feature cache directory")
    ap.add_argument("--json", default="", help="write every candidate's dev table and the reports here")
    ap.add_argument("--pm-cost", type=int, default=0, help="only time N rows of LoRA score-head training")
    a = ap.parse_args()
    print(f"CPU: {cpu()}")
    if a.pm_cost:
        pm_cost(a.pm_cost, a.encoder)
        return

    from selfalign.reward.harm_judge import build_features, leave_one_source_out, proxy_table
    from selfalign.reward.harm_train import (HeadConfig, fit_logistic, gold01, grid, loso_predict, pick, table)
    from selfalign.judges.registry import load_labelled

    _, rows = load_labelled(a.data)
    print(f"rows: {len(rows)} from {a.data}")
    t = time.time()
    feats = build_features(rows, a.encoder, a.cache, progress=False)
    fc = feats["feature_cache"]
    how = f"from cache {fc['key']}" if fc["cached"] else f"computed in {fc['seconds']:.0f} s"
    print(f"encoder {feats['encoder'].id}, layers {feats['layers']}; load {feats['timing']['encoder_load_s']:.1f} s; "
          f"features {how} (wall here {time.time() - t:.1f} s)")
    t = time.time()
    fit_logistic(pick(feats, HeadConfig("enc", feats["layers"][-1], "last")), gold01(rows), 1e-2)
    print(f"one head fit on all {len(rows)} rows (576 features, L-BFGS): {time.time() - t:.2f} s")

    res = leave_one_source_out(rows, feats, grid(feats["layers"]), progress=True)
    print(f"selection: {len(res['selection'])} configs (candidates x thresholds) in {res['selection_s']:.0f} s; "
          f"bar sources: {', '.join(res['bar_sources'])}; criterion: worst kappa over them, then mean accuracy\n")

    print("DEV questions, LOSO (cross-fitted): the best L2 / weighting / threshold per variant")
    print(header())
    best: dict[str, Any] = {}
    for r in res["selection"]:
        c = r["config"]
        fam = {"enc": f"enc L{c.layer:<2d} {c.pooling}", "bow": "bow (hashed 1-2 grams)",
               "combo": f"combo L{c.layer:<2d} {c.pooling} (+tfidf+refusal)"}[c.features]
        best.setdefault(fam, r)
    for fam, r in sorted(best.items(), key=lambda kv: kv[1]["criterion"], reverse=True):
        c = r["config"]
        print(row(f"{fam} l2 {c.l2:g} {'bal' if c.balanced else 'unw'} t{c.threshold:g}", r["table"]))
    chosen = res["chosen"]
    bow = best["bow (hashed 1-2 grams)"]["config"]
    print(f"\nchosen: {chosen.name()}")

    print("\nTEST questions, LOSO (train: other sources' dev-question answers; reported once)")
    print(header())
    test_bow = table(loso_predict(pick(feats, bow), rows, bow, "test"), bow.threshold)
    proxy_test = proxy_table(rows, "test")
    print(row("chosen: " + chosen.name()[:36], res["test"]))
    print(row("bow (best on dev): " + bow.name()[:25], test_bow))
    print(row("refusal proxy (no training)", proxy_test))
    print(ece_line("chosen", res["test"]))
    print(ece_line("bow", test_bow))
    for s in SRC:
        print(f"  reliability, chosen, test, {s}: " + "; ".join(
            f"{b['bin']} n{b['n']} p{b['predicted']:.2f} o{b['observed']:.2f}" for b in res["test"][s]["reliability"]))

    print("\nALL questions, LOSO (both halves, each trained on the other; the dev half was seen in selection)")
    print(header())
    all_bow = table(loso_predict(pick(feats, bow), rows, bow, "all"), bow.threshold)
    print(row("chosen: " + chosen.name()[:36], res["all"]))
    print(row("bow (best on dev): " + bow.name()[:25], all_bow))
    print(row("refusal proxy (no training)", res["proxy"]))
    print(ece_line("chosen", res["all"]))

    bar = res["bar_sources"]
    ok = all(res["test"][s]["accuracy"] >= 0.85 and res["test"][s]["kappa"] >= 0.5 for s in bar)
    print(f"\nbar (>= 85% accuracy and kappa >= 0.5 on {', '.join(bar)}, test questions): {'MET' if ok else 'MISSED'}")
    if a.json:
        def clean(tab: dict[str, Any]) -> dict[str, Any]:
            return {s: {k: v for k, v in d.items()} for s, d in tab.items()}

        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({
            "chosen": chosen.name(), "bow": bow.name(), "test": clean(res["test"]), "all": clean(res["all"]),
            "test_bow": clean(test_bow), "proxy_test": clean(proxy_test), "proxy_all": clean(res["proxy"]),
            "selection": [{"config": r["config"].name(), "criterion": r["criterion"], "table": r["table"]}
                          for r in res["selection"]]}, default=float, indent=1))
        print(f"json: {a.json}")


if __name__ == "__main__":
    main()
