"""Sampling speed of the hf backend against plain transformers ``generate``, in one process.

N questions of the bundled QA set x M samples at temperature 1, up to T new tokens, from the
embedded model. Prints new tokens/s for each way and the ratio to batched ``generate``, plus
the share of samples that contain the gold answer (same sampling distribution -> same
quality; ``--int8`` adds the opt-in dynamic int8 model, to show what it costs). Then greedy
answers (one per question, as evaluation asks) against batched greedy ``generate``. Each precision
(fp32 always; bf16 too where the default model loads in bf16, a CPU with native bf16) is compared
with ``generate`` in the same precision, so a ratio never mixes precisions.

    .venv/bin/python bench/generate.py            # 64 x 10, 32 new tokens; fp32, and bf16 where native; 3 greedy rounds
    .venv/bin/python bench/generate.py --n 16 --m 4 --tokens 16   # quick look
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

from selfalign.data.formats import load_qa
from selfalign.evals.stats import wilson_interval
from selfalign.honesty.prompts import plain_prompt
from selfalign.judges.correctness import contains_answer
from selfalign.models import embedded
from selfalign.models.hf import HFModel, inference_dtype
from selfalign.models.precision import cpu_model
from selfalign.types import GenParams, GenRequest

from peak import flops_per_position, peak_gflops, share


def count_new_tokens(seqs: torch.Tensor, start: int, eos_ids: list[int]) -> tuple[int, list[list[int]]]:
    total, outs = 0, []
    for row in seqs[:, start:].tolist():
        toks = []
        for t in row:
            toks.append(t)
            if t in eos_ids:
                break
        total += len(toks)
        outs.append(toks)
    return total, outs


def hf_generate(model: HFModel, prompts: list[list[int]], m: int, tokens: int, rows_per_batch: int,
                greedy: bool = False):
    """Plain transformers generate: each prompt repeated m times, left-padded batches of rows_per_batch rows."""
    tok = model.tokenizer
    rows = [p for p in prompts for _ in range(m)]
    texts, n_tok = [], 0
    for i in range(0, len(rows), rows_per_batch):
        chunk = rows[i:i + rows_per_batch]
        width = max(len(r) for r in chunk)
        ids = torch.full((len(chunk), width), model.pad_id)
        att = torch.zeros((len(chunk), width), dtype=torch.long)
        for j, r in enumerate(chunk):
            ids[j, width - len(r):] = torch.tensor(r)
            att[j, width - len(r):] = 1
        with torch.inference_mode():
            if greedy:
                out = model.model.generate(input_ids=ids, attention_mask=att, do_sample=False,
                                           max_new_tokens=tokens, pad_token_id=model.pad_id)
            else:
                out = model.model.generate(input_ids=ids, attention_mask=att, do_sample=True, temperature=1.0, top_k=0,
                                           top_p=1.0, max_new_tokens=tokens, pad_token_id=model.pad_id)
        n, toks = count_new_tokens(out, width, model.eos_ids)
        n_tok += n
        texts += [tok.decode(t, skip_special_tokens=True) for t in toks]
    return n_tok, texts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64, help="questions")
    ap.add_argument("--m", type=int, default=10, help="samples per question")
    ap.add_argument("--tokens", type=int, default=32, help="max new tokens when sampling")
    ap.add_argument("--greedy-tokens", type=int, default=80, help="max new tokens of greedy answers (evaluation)")
    ap.add_argument("--one-at-a-time", type=int, default=8, help="questions for the one-prompt-at-a-time baseline")
    ap.add_argument("--int8", action="store_true", help="also time the opt-in dynamic int8 model")
    ap.add_argument("--precisions", default="",
                    help="comma-separated of fp32,bf16 (default: fp32, and bf16 too where it is what the default "
                         "model loads, i.e. on a CPU with native bf16); each is timed against generate in the same "
                         "precision")
    ap.add_argument("--dynamic-cache-rows", action="store_true",
                    help="also time our decoder without its preallocated KV buffer (DynamicCache, a copy per step)")
    ap.add_argument("--greedy-rounds", type=int, default=3,
                    help="interleaved greedy rounds (generate, then ours) per precision; prints the median ratio")
    ap.add_argument("--rows-per-batch", type=int, default=0,
                    help="rows per decoding batch, ours and generate's (default: the hf backend's default)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    items = random.Random(args.seed).sample(load_qa("bundled"), args.n)
    path = str(embedded.ensure_converted())
    auto, why = inference_dtype("cuda" if torch.cuda.is_available() else "cpu")
    names = [p for p in args.precisions.split(",") if p] or (["fp32", "bf16"] if auto == "bfloat16" else ["fp32"])
    bad = [p for p in names if p not in ("fp32", "bf16")]
    if bad:
        raise SystemExit(f"unknown precision(s) {bad}; known: fp32, bf16")
    print(f"the default (auto) precision here: {auto} ({why})", flush=True)
    loaded = {p: HFModel(path, dtype={"fp32": "float32", "bf16": "bfloat16"}[p]) for p in names}
    for model in loaded.values():
        model.batch_size = args.rows_per_batch or model.batch_size
    first = loaded[names[0]]
    rows_per_batch = first.batch_size  # the baseline gets the same rows per forward pass as ours
    prompts = [first.encode_prompt(plain_prompt(it.question)) for it in items]
    # the ceiling: this CPU's best GEMM rate at the model's shapes, in each precision measured
    peaks = {p: max(peak_gflops({"fp32": torch.float32, "bf16": torch.bfloat16}[p]).values()) for p in names}
    if "fp32" not in peaks:
        peaks["fp32"] = max(peak_gflops(torch.float32).values())
    fpp = flops_per_position(first.model)
    answers = [it.answers for it in items]

    def quality(texts: list[str], n_items: int) -> tuple[int, int]:
        per = len(texts) // n_items
        return sum(contains_answer(t, answers[i // per]) for i, t in enumerate(texts)), len(texts)

    last_texts: list[str] = []

    def timed(label: str, shape: str, fn, ref: float | None, baseline: bool = False) -> float:
        """Run ``fn``, add its row (its ratio against ``ref``; a baseline is its own ref) and return tok/s."""
        t = time.perf_counter()
        n_tok, texts = fn()
        dt = time.perf_counter() - t
        ref = n_tok / dt if baseline else ref
        rows.append((label, shape, n_tok, dt, quality(texts, len(texts) // int(shape.split("x")[1])), ref))
        last_texts[:] = texts
        print(f"  {label}: {n_tok / dt:.0f} new tok/s", flush=True)
        return n_tok / dt

    def ours(model: HFModel, reqs: list[GenRequest]):
        res = model.generate(reqs)
        return sum(c.n_tokens for r in res for c in r.completions), [x for r in res for x in r.texts]

    rows: list[tuple] = []
    params = GenParams(temperature=1.0, max_tokens=args.tokens)
    reqs = [GenRequest(plain_prompt(it.question), params, n=args.m, seed=args.seed) for it in items]
    greqs = [GenRequest(plain_prompt(it.question), GenParams(max_tokens=args.greedy_tokens)) for it in items]
    torch.manual_seed(args.seed)
    k = args.one_at_a_time
    if k:
        timed(f"sample: generate ({names[0]}), one prompt at a time", f"{k}x{args.m}",
              lambda: hf_generate(first, prompts[:k], args.m, args.tokens, rows_per_batch=args.m), None)
    greedy_texts: dict[str, list[str]] = {}
    sample_base: dict[str, float] = {}
    medians: dict[str, tuple[float, list[float]]] = {}
    for p in names:
        model = loaded[p]
        base = timed(f"sample: generate ({p}), batches of {rows_per_batch} rows", f"{args.n}x{args.m}",
                     lambda: hf_generate(model, prompts, args.m, args.tokens, rows_per_batch=rows_per_batch), None,
                     baseline=True)
        sample_base[p] = base
        timed(f"**sample: selfalign hf ({p})**", f"{args.n}x{args.m}", lambda: ours(model, reqs), base)
        if args.dynamic_cache_rows:
            plain = HFModel(path, model=model.model, tokenizer=model.tokenizer, model_id=model.model_id)
            plain.kv_buffer = False
            timed(f"sample: selfalign hf ({p}), DynamicCache instead of the KV buffer", f"{args.n}x{args.m}",
                  lambda: ours(plain, reqs), base)
        ratios = []
        for r in range(args.greedy_rounds):  # interleaved: machine noise hits both alike
            tag = f", round {r + 1}" if args.greedy_rounds > 1 else ""
            gbase = timed(f"greedy: generate ({p}), batches of {rows_per_batch} rows{tag}", f"{args.n}x1",
                          lambda: hf_generate(model, prompts, 1, args.greedy_tokens, rows_per_batch=rows_per_batch,
                                              greedy=True), None, baseline=True)
            ratios.append(timed(f"**greedy: selfalign hf ({p}){tag}**", f"{args.n}x1", lambda: ours(model, greqs),
                                gbase) / gbase)
        greedy_texts[p] = list(last_texts)
        if len(ratios) > 1:
            medians[p] = (statistics.median(ratios), ratios)
    if args.int8:
        q = HFModel(path, quantize="int8")
        timed("sample: selfalign hf (int8 dynamic)", f"{args.n}x{args.m}", lambda: ours(q, reqs),
              sample_base.get("fp32"))

    print(f"\n{args.n} questions; sampling {args.m} samples at T=1.0, <= {args.tokens} new tokens; greedy <= "
          f"{args.greedy_tokens} new tokens; torch threads {torch.get_num_threads()}; CPU {cpu_model()}; "
          f"default precision here {auto}\n")
    print(f"GEMM peak at the model's shapes (bench/peak.py), GFLOP/s: {', '.join(f'{p} {v:.0f}' for p, v in peaks.items())}; "
          f"{fpp / 1e9:.3f} GFLOP per position; share of peak counts each prompt's positions once and every new token\n")
    print("| way | prompts x samples | new tokens | seconds | new tokens/s | vs batched generate, same precision | "
          "samples with gold answer [95% Wilson] | GFLOP/s | share of peak |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, shape, n, dt, (hits, total), ref in rows:
        lo, hi = wilson_interval(hits, total)
        ratio = f"{n / dt / ref:.2f}x" if ref else "-"
        positions = sum(len(p) for p in prompts[:int(shape.split("x")[0])]) + n
        gflops, frac = share(positions, dt, fpp, peaks["bf16" if "bf16" in name else "fp32"])
        print(f"| {name} | {shape} | {n} | {dt:.1f} | {n / dt:.0f} | {ratio} | {100 * hits / total:.1f}% "
              f"[{100 * lo:.1f}, {100 * hi:.1f}] | {gflops:.0f} | {100 * frac:.1f}% |")
    for p, (med, ratios) in medians.items():
        print(f"\ngreedy ({p}), ours vs batched generate by round: {', '.join(f'{x:.2f}x' for x in ratios)}; "
              f"median {med:.2f}x")
    if len(greedy_texts) == 2:
        same = sum(a == b for a, b in zip(greedy_texts["fp32"], greedy_texts["bf16"]))
        print(f"\ngreedy answers identical in fp32 and bf16: {same}/{args.n}")
    print(f"head KV reuses across chunks and calls: {sum(m.head_reuses for m in loaded.values())}")


if __name__ == "__main__":
    main()
