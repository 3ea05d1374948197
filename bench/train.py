"""Training speed of the SFT path on this machine: fp32 vs bf16, against TRL's own defaults.

Rows are honesty training rows (the bundled questions in the honesty prompt, a CONFIDENCE-VERB
style completion), LoRA on every layer as in ``configs/quick.yaml``, on the embedded model.
Each variant trains ``--warmup`` steps (not timed) and then ``--steps`` timed optimizer steps;
prints examples/s, the ratio to TRL's defaults (``bf16=True``, gradient checkpointing on),
the last loss, and which precision ``auto`` chooses here and whether it is the faster one.

    .venv/bin/python bench/train.py                      # TRL's defaults against ours, 2 timed steps of 8 rows
    .venv/bin/python bench/train.py --variants fp32,bf16 --steps 3

"ours" is what ``TrainConfig()`` resolves to on this machine: the precision ``auto`` picks,
gradient checkpointing off, the output layer on labelled positions only, eager attention on a CPU,
and each batch's common prefix run once (``selfalign.models.shared_prefix``); "ours-noshare" is the
same without the shared prefix, "ours-nopack" with it but its tails always padded.

    .venv/bin/python bench/train.py --variants ours,ours-nopack --steps 6 --rows runs/quick/datasets/confidence-verb.jsonl
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from selfalign.data.formats import load_qa
from selfalign.honesty.prompts import honesty_prompt
from selfalign.models import embedded
from selfalign.train.base import (TrainConfig, attn_kwargs, completion_positions_only, lora_config, share_prefix,
                                  trainer_args)
from selfalign.models.precision import choose_precision, cpu_flags, cpu_model, native_cpu_bf16

from peak import flops_per_position, peak_gflops, share

# name -> (precision, gradient checkpointing, output layer on completion positions only, padding-free,
# adapters on the top N layers only (0: every layer), attention kernel ("" = the model's default, SDPA),
# shared-prefix forward, its packed tails where they pay); "trl-defaults" is what SFTConfig() gives a CPU user,
# "ours" what TrainConfig() resolves to here
VARIANTS = {
    "trl-defaults": ("bf16", True, False, False, 0, "", False, True),
    "ours": ("auto", False, True, False, 0, "auto", True, True),
    "ours-nopack": ("auto", False, True, False, 0, "auto", True, False),
    "ours-noshare": ("auto", False, True, False, 0, "auto", False, True),
    "bf16": ("bf16", False, False, False, 0, "", False, True),
    "fp32": ("fp32", False, False, False, 0, "", False, True),
    "fp32-compact": ("fp32", False, True, False, 0, "", False, True),
    "bf16-compact": ("bf16", False, True, False, 0, "", False, True),
    "fp32-compact-eager": ("fp32", False, True, False, 0, "eager", False, True),
    "bf16-compact-eager": ("bf16", False, True, False, 0, "eager", False, True),
    "fp32-compact-eager-shared": ("fp32", False, True, False, 0, "eager", True, True),
    "bf16-compact-eager-shared": ("bf16", False, True, False, 0, "eager", True, True),
    "fp32-compact-sdpa-shared": ("fp32", False, True, False, 0, "", True, True),
    "fp32-compact-padfree": ("fp32", False, True, True, 0, "", False, True),
    "bf16-compact-top15": ("bf16", False, True, False, 15, "", False, True),
    "bf16-compact-top10": ("bf16", False, True, False, 10, "", False, True),
    "fp32-compact-top15": ("fp32", False, True, False, 15, "", False, True),
}


def make_rows(n: int, seed: int = 0) -> list[dict]:
    items = load_qa("bundled")
    random.Random(seed).shuffle(items)
    rows = []
    for it in items[:n]:
        prompt = [{"role": m.role, "content": m.content} for m in honesty_prompt(it.question)]
        answer = f"I'm fairly confident that the answer is {it.answers[0]}."
        rows.append({"prompt": prompt, "completion": [{"role": "assistant", "content": answer}]})
    return rows


def run_variant(name: str, base: str, rows: list[dict], warmup: int, steps: int, batch: int) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    prec_name, checkpointing, compact, padding_free, top, attn, shared, pack = VARIANTS[name]
    completion_positions_only(compact)
    cfg = TrainConfig(batch_size=batch, max_steps=warmup + steps, logging_steps=1, save_steps=10_000,
                      gradient_checkpointing=checkpointing, warmup_ratio=0.0, lr_scheduler="constant", lora_layers=top,
                      attn_implementation=attn or "sdpa", shared_prefix=shared)
    precision = choose_precision(prec_name)
    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            stamps.append(time.perf_counter())

    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, **attn_kwargs(cfg))
    share_prefix(model, cfg, pack=pack)
    with tempfile.TemporaryDirectory() as tmp:
        kwargs = {**trainer_args(cfg, Path(tmp), precision), "save_strategy": "no"}
        args = SFTConfig(**kwargs, max_length=None if padding_free else cfg.max_length, completion_only_loss=True,
                         padding_free=padding_free)
        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                             peft_config=lora_config(cfg, model.config.num_hidden_layers), callbacks=[Clock()])
        t0 = time.perf_counter()
        trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    timed = stamps[warmup - 1:] if warmup else [t0, *stamps]
    seconds = timed[-1] - timed[0]
    return {"variant": name, "examples_per_s": steps * batch / seconds, "s_per_step": seconds / steps,
            "last_loss": losses[-1] if losses else float("nan"), "precision": precision.name}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default="trl-defaults,ours", help=f"comma-separated, of {', '.join(VARIANTS)}")
    ap.add_argument("--steps", type=int, default=2, help="timed optimizer steps per variant")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rows", default="", help="a JSONL of prompt/completion rows to train on instead (e.g. an "
                    "honesty run's datasets/confidence-verb.jsonl)")
    a = ap.parse_args()
    names = [v for v in a.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    import torch

    n_rows = a.batch_size * (a.warmup + a.steps)
    if a.rows:
        from selfalign.data.io import DataError, read_jsonl

        try:
            rows = read_jsonl(a.rows, required=("prompt", "completion"))
        except DataError as e:
            raise SystemExit(str(e)) from None
        random.Random(0).shuffle(rows)
        if len(rows) < n_rows:
            raise SystemExit(f"{a.rows}: {len(rows)} rows, the steps need {n_rows}")
        rows = [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows[:n_rows]]
    else:
        rows = make_rows(n_rows)
    base = str(embedded.ensure_converted())  # after the rows are checked
    chosen = choose_precision("auto")
    print(f"CPU: {cpu_model()} | native bf16: {native_cpu_bf16()} | threads: {torch.get_num_threads()} | "
          f"CUDA: {torch.cuda.is_available()}")
    print(f"auto chooses: {chosen}")
    flags = cpu_flags()
    print(f"flags: avx2={'avx2' in flags} avx512f={'avx512f' in flags} avx512_bf16={'avx512_bf16' in flags} "
          f"amx_bf16={'amx_bf16' in flags}")
    # share of peak: a LoRA step on frozen weights runs each position forward once and backward once
    # (input gradients; the adapters' own are small), ~2 x the forward's linear-layer FLOPs per position
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    per_row = sum(len(tok.apply_chat_template(r["prompt"] + r["completion"], tokenize=True)["input_ids"])
                  for r in rows) / len(rows)
    fpp = 2 * flops_per_position(AutoModelForCausalLM.from_pretrained(base))
    peaks = {"fp32": max(peak_gflops(torch.float32).values())}
    if native_cpu_bf16():
        peaks["bf16"] = max(peak_gflops(torch.bfloat16).values())
    print(f"GEMM peak (bench/peak.py), GFLOP/s: {', '.join(f'{k} {v:.0f}' for k, v in peaks.items())}; "
          f"{per_row:.0f} tokens per row; {fpp / 1e9:.3f} GFLOP per position (forward + backward)")
    results = []
    for name in names:
        r = run_variant(name, base, rows, a.warmup, a.steps, a.batch_size)
        results.append(r)
        print(f"  {name:13s} {r['examples_per_s']:7.2f} examples/s  {r['s_per_step']:7.1f} s/step  "
              f"last loss {r['last_loss']:.3f}", flush=True)
    by = {r["variant"]: r for r in results}
    print("\n| variant | precision | examples/s | s/step | last loss | vs TRL defaults | GFLOP/s | share of peak |"
          "\n|---|---|---|---|---|---|---|---|")
    ref = by.get("trl-defaults")
    for r in results:
        ratio = f"{r['examples_per_s'] / ref['examples_per_s']:.2f}x" if ref else "n/a"
        gflops, frac = share(round(r["examples_per_s"] * per_row), 1.0, fpp, peaks.get(r["precision"], peaks["fp32"]))
        print(f"| {r['variant']} | {r['precision']} | {r['examples_per_s']:.2f} | {r['s_per_step']:.1f} | "
              f"{r['last_loss']:.3f} | {ratio} | {gflops:.0f} | {100 * frac:.1f}% |")
    for suffix in ("", "-compact"):  # like with like: the same output-layer path in both precisions
        f32, b16 = by.get("fp32" + suffix), by.get("bf16" + suffix)
        if f32 and b16:
            faster, slower = (f32, b16) if f32["examples_per_s"] >= b16["examples_per_s"] else (b16, f32)
            name = faster["variant"].removesuffix(suffix)
            ok = "yes" if name == chosen.name else "NO"
            print(f"\nfaster here{' (' + suffix[1:] + ')' if suffix else ''}: {name} "
                  f"({faster['examples_per_s'] / slower['examples_per_s']:.2f}x); auto chose {chosen.name}: {ok}")


if __name__ == "__main__":
    main()
