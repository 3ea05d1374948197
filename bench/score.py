"""Scoring speed, with and without the shared prompt, in one process, beside this CPU's measured peak.

The workload is ``rlhf quick``'s Best-of-16: the first ``--n`` answerable bundled test questions in
Best-of-N's prompt (``critique.bon.qa_prompt``), ``--m`` answers each sampled from the embedded
model at T = 1, up to ``--tokens`` new tokens. Then, over the same answers:

* **PM rewards**: a preference model on the embedded model's backbone (a fresh score head, seed 0:
  a trained PM costs the same), in fp32 as ``PreferenceModel`` loads it, read the plain way (every
  answer with its whole prompt, batches in length order) and the shared way (a prompt's answers in
  batches of their own, the prompt run once; ``selfalign.models.shared_prefix``). Also the same PM
  cast to bf16 where the CPU has native bf16, shared, to show what bf16 PM inference would change
  (largest reward difference, Best-of-N picks that change).
* **Log-probs** (what KL, IFD and DPO's reference read): ``HFModel.score``, plain and shared, in the
  precision the embedded model loads in here, and in fp32.

For every figure: tokens/s counted as the plain pass's token positions (prompt + answer per
answer, so the two ways are compared on the same work), the largest difference from the plain
pass, and the share of peak: the matrix FLOPs the forward positions actually run would take
(2 x the backbone's linear-layer weights per position, attention's own products left out: under
5% at these lengths) over the best GEMM rate this CPU measured at the model's shapes in that dtype
(``peak``, a microbenchmark, not a datasheet). Sampling is reported the same way.

    .venv/bin/python bench/score.py                  # 60 x 16, 32 tokens (rlhf quick's Best-of-16)
    .venv/bin/python bench/score.py --n 8 --m 4      # quick look
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from selfalign.critique.bon import qa_prompt
from selfalign.data.formats import load_qa
from selfalign.models import embedded
from selfalign.models.hf import HFModel
from selfalign.models.precision import cpu_flags, cpu_model, native_cpu_bf16
from selfalign.reward.pm import PreferenceModel
from selfalign.types import GenParams, GenRequest, ScoreRequest

from peak import flops_per_position, peak_gflops, share


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def stats_delta(backbone, before: tuple[int, int]) -> tuple[int, int]:
    s = getattr(backbone, "_selfalign_shared_prefix", None)
    if s is None:
        return 0, 0
    return s.positions_run - before[0], s.positions_plain - before[1]


def stats_now(backbone) -> tuple[int, int]:
    s = getattr(backbone, "_selfalign_shared_prefix", None)
    return (0, 0) if s is None else (s.positions_run, s.positions_plain)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=60, help="prompts")
    ap.add_argument("--m", type=int, default=16, help="answers per prompt")
    ap.add_argument("--tokens", type=int, default=32, help="new tokens per answer at most")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    flags = cpu_flags()
    print(f"CPU: {cpu_model()}; torch threads {torch.get_num_threads()}; native bf16 {native_cpu_bf16(flags)}")
    peaks = {"float32": peak_gflops(torch.float32)}
    if native_cpu_bf16(flags):
        peaks["bfloat16"] = peak_gflops(torch.bfloat16)
    peak = {d: max(v.values()) for d, v in peaks.items()}
    print("GEMM GFLOP/s at the model's shapes (512 rows):",
          {d: {s: round(g) for s, g in v.items()} for d, v in peaks.items()})

    path = str(embedded.ensure_converted(verbose=False))
    policy = HFModel(path)  # the precision it loads in here
    pdtype = str(next(policy.model.parameters()).dtype).removeprefix("torch.")
    items = [it for it in load_qa("bundled", split="test") if it.answerable][:args.n]
    prompts = [qa_prompt(it.question) for it in items]
    res, s_gen = timed(lambda: policy.generate(
        [GenRequest(p, GenParams(1.0, 1.0, args.tokens), n=args.m, seed=0) for p in prompts]))
    answers = [(p, t) for p, r in zip(prompts, res) for t in r.texts if t.strip()]
    new_tokens = sum(len(policy.tokenizer(t, add_special_tokens=False)["input_ids"]) for _, t in answers)
    fpp = flops_per_position(policy.model)
    rows = []

    def row(what: str, dtype: str, seconds: float, plain_positions: int, run_positions: int, diff: float | None,
            note: str = "") -> None:
        achieved, frac = share(run_positions, seconds, fpp, peak.get(dtype, peak["float32"]))
        rows.append({"what": what, "dtype": dtype, "seconds": round(seconds, 2),
                     "tokens_per_s": round(plain_positions / seconds), "positions_run": run_positions,
                     "gflops": round(achieved, 1), "peak_gflops": round(peak.get(dtype, peak["float32"])),
                     "share_of_peak": round(frac, 3),
                     "max_abs_diff": diff, "note": note})

    prompt_ids = {id(p): len(policy.encode_prompt(p)) for p in prompts}
    # sampling: every prompt position once per prompt, every new token once (the decode is row by row)
    gen_positions = sum(prompt_ids.values()) + new_tokens
    row("sampling (hf, T=1)", pdtype, s_gen, gen_positions, gen_positions, None,
        f"{len(answers)} answers, {new_tokens} new tokens, {new_tokens / s_gen:.0f} new tok/s")

    # PM rewards, fp32 as PreferenceModel loads it
    pm = PreferenceModel(path, seed=0)
    ps, ts = [p for p, _ in answers], [t for _, t in answers]
    backbone = pm.model.model
    plain_positions = sum(len(pm.enc.encode(p, t)[0]) for p, t in answers)
    pm.shared_prefix = False
    pm.rewards(ps[:8], ts[:8])  # warm-up
    plain, s_plain = timed(lambda: pm.rewards(ps, ts))
    row("PM rewards, plain", "float32", s_plain, plain_positions, plain_positions, 0.0)
    pm.shared_prefix = True
    pm.rewards(ps[:8], ts[:8])
    before = stats_now(backbone)
    shared, s_shared = timed(lambda: pm.rewards(ps, ts))
    run, _ = stats_delta(backbone, before)
    row("PM rewards, shared prompt", "float32", s_shared, plain_positions, run,
        max(abs(a - b) for a, b in zip(plain, shared)), f"{s_plain / s_shared:.2f}x plain")

    def picks(rw: list[float]) -> list[int]:
        out, i = [], 0
        for p in prompts:
            k = sum(1 for q, _ in answers if q is p)
            out.append(max(range(k), key=lambda j: rw[i + j]))
            i += k
        return out

    if "bfloat16" in peak:
        pm.model.to(torch.bfloat16)
        pm.rewards(ps[:8], ts[:8])
        before = stats_now(backbone)
        half, s_half = timed(lambda: pm.rewards(ps, ts))
        run, _ = stats_delta(backbone, before)
        same = sum(a == b for a, b in zip(picks(plain), picks(half)))
        row("PM rewards, shared prompt", "bfloat16", s_half, plain_positions, run,
            max(abs(a - b) for a, b in zip(plain, half)),
            f"{s_plain / s_half:.2f}x fp32 plain; best-of-{args.m} pick unchanged on {same}/{len(prompts)} prompts")

    # log-probs: the policy in its own precision, then fp32
    reqs = [ScoreRequest(p, t) for p, t in answers]
    for model in (policy, HFModel(path, dtype="float32") if pdtype != "float32" else None):
        if model is None:
            continue
        dtype = str(next(model.model.parameters()).dtype).removeprefix("torch.")
        backbone = model._split_head()[0]
        lp_positions = sum(prompt_ids[id(p)] + len(model.tokenizer(t, add_special_tokens=False)["input_ids"])
                           for p, t in answers)
        model.score_shared_prefix = False
        model.score(reqs[:8])
        plain_lp, s_plain = timed(lambda: model.score(reqs))
        row("log-probs, plain", dtype, s_plain, lp_positions, lp_positions, 0.0)
        model.score_shared_prefix = True
        model.score(reqs[:8])
        before = stats_now(backbone)
        shared_lp, s_shared = timed(lambda: model.score(reqs))
        run, _ = stats_delta(backbone, before)
        diff = max(abs(x - y) for a, b in zip(plain_lp, shared_lp) for x, y in zip(a.token_logprobs, b.token_logprobs))
        row("log-probs, shared prompt", dtype, s_shared, lp_positions, run, diff, f"{s_plain / s_shared:.2f}x plain")

    print(f"\n{len(prompts)} prompts x {args.m} answers ({len(answers)} non-empty), up to {args.tokens} tokens; "
          f"{fpp / 1e9:.3f} GFLOP per position in the backbone's linear layers")
    print("| what | dtype | s | tokens/s (plain positions) | positions run | GFLOP/s | peak | share of peak "
          "| max abs diff vs plain | note |\n|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        diff = "-" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.2e}"
        print(f"| {r['what']} | {r['dtype']} | {r['seconds']} | {r['tokens_per_s']} | {r['positions_run']} | "
              f"{r['gflops']} | {r['peak_gflops']} | {100 * r['share_of_peak']:.1f}% | {diff} | {r['note']} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_model(), "peaks": peaks, "rows": rows, "args": vars(args)}, f, indent=1)


if __name__ == "__main__":
    main()
