"""Sampling speed of the hf backend against plain transformers ``generate``, in one process.

N questions of the bundled QA set x M samples at temperature 1, up to T new tokens, from the
embedded model. Prints new tokens/s for each way and the ratio to batched ``generate``, plus
the share of samples that contain the gold answer (same sampling distribution -> same
quality; ``--int8`` adds the opt-in dynamic int8 model, to show what it costs). Then greedy
answers (one per question, as evaluation asks) against batched greedy ``generate``.

    .venv/bin/python bench/generate.py            # 64 x 10, 32 new tokens
    .venv/bin/python bench/generate.py --n 16 --m 4 --tokens 16   # quick look
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from selfalign.data.formats import load_qa
from selfalign.evals.stats import wilson_interval
from selfalign.honesty.prompts import plain_prompt
from selfalign.judges.correctness import contains_answer
from selfalign.models import embedded
from selfalign.models.hf import HFModel
from selfalign.types import GenParams, GenRequest


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
    ap.add_argument("--bf16", action="store_true", help="also time bf16 weights (smollm2-135m+bf16; fast only on a "
                    "CPU with native bf16)")
    ap.add_argument("--no-kv-buffer-rows", action="store_true",
                    help="skip our decoder without its preallocated KV buffer (DynamicCache, a copy per step)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    items = random.Random(args.seed).sample(load_qa("bundled"), args.n)
    path = str(embedded.ensure_converted())
    fp32 = HFModel(path)
    rows_per_batch = fp32.batch_size  # the baseline gets the same rows per forward pass as ours
    prompts = [fp32.encode_prompt(plain_prompt(it.question)) for it in items]
    answers = [it.answers for it in items]

    def quality(texts: list[str], n_items: int) -> tuple[int, int]:
        per = len(texts) // n_items
        return sum(contains_answer(t, answers[i // per]) for i, t in enumerate(texts)), len(texts)

    rows = []
    torch.manual_seed(args.seed)
    k = args.one_at_a_time
    t = time.perf_counter()
    n_tok, texts = hf_generate(fp32, prompts[:k], args.m, args.tokens, rows_per_batch=args.m)
    rows.append(("sample: generate, one prompt at a time", f"{k}x{args.m}", n_tok, time.perf_counter() - t,
                 quality(texts, k), None))

    t = time.perf_counter()
    n_tok, texts = hf_generate(fp32, prompts, args.m, args.tokens, rows_per_batch=rows_per_batch)
    dt = time.perf_counter() - t
    base = n_tok / dt
    rows.append((f"sample: generate, batches of {rows_per_batch} rows", f"{args.n}x{args.m}", n_tok, dt,
                 quality(texts, args.n), base))

    params = GenParams(temperature=1.0, max_tokens=args.tokens)
    reqs = [GenRequest(plain_prompt(it.question), params, n=args.m, seed=args.seed) for it in items]
    models = [("selfalign hf (fp32)", fp32)]
    plain = None
    if not args.no_kv_buffer_rows:
        plain = HFModel(path, model=fp32.model, tokenizer=fp32.tokenizer, model_id=fp32.model_id)
        plain.kv_buffer = False
        models.append(("selfalign hf (fp32), DynamicCache instead of the KV buffer", plain))
    if args.int8:
        models.append(("selfalign hf (int8 dynamic)", HFModel(path, quantize="int8")))
    bf16 = HFModel(path, dtype="bfloat16") if args.bf16 else None
    if bf16 is not None:
        models.append(("selfalign hf (bf16 weights)", bf16))
    for name, model in models:
        t = time.perf_counter()
        res = model.generate(reqs)
        dt = time.perf_counter() - t
        texts = [x for r in res for x in r.texts]
        rows.append((f"sample: {name}", f"{args.n}x{args.m}", sum(c.n_tokens for r in res for c in r.completions), dt,
                     quality(texts, args.n), base))

    # greedy answers, one per question (what evaluation does)
    t = time.perf_counter()
    n_tok, texts = hf_generate(fp32, prompts, 1, args.greedy_tokens, rows_per_batch=rows_per_batch, greedy=True)
    dt = time.perf_counter() - t
    gbase = n_tok / dt
    rows.append((f"greedy: generate, batches of {rows_per_batch} rows", f"{args.n}x1", n_tok, dt,
                 quality(texts, args.n), gbase))
    greqs = [GenRequest(plain_prompt(it.question), GenParams(max_tokens=args.greedy_tokens)) for it in items]
    t = time.perf_counter()
    res = fp32.generate(greqs)
    dt = time.perf_counter() - t
    rows.append(("greedy: selfalign hf (fp32)", f"{args.n}x1", sum(r.completions[0].n_tokens for r in res), dt,
                 quality([r.texts[0] for r in res], args.n), gbase))
    if bf16 is not None:
        t = time.perf_counter()
        res3 = bf16.generate(greqs)
        dt = time.perf_counter() - t
        rows.append(("greedy: selfalign hf (bf16 weights)", f"{args.n}x1", sum(r.completions[0].n_tokens for r in res3),
                     dt, quality([r.texts[0] for r in res3], args.n), gbase))
    if plain is not None:
        t = time.perf_counter()
        res2 = plain.generate(greqs)
        dt = time.perf_counter() - t
        assert [r.texts for r in res2] == [r.texts for r in res], "the KV buffer changed a greedy answer"
        rows.append(("greedy: selfalign hf (fp32), DynamicCache instead of the KV buffer", f"{args.n}x1",
                     sum(r.completions[0].n_tokens for r in res2), dt, quality([r.texts[0] for r in res2], args.n),
                     gbase))

    print(f"\n{args.n} questions; sampling {args.m} samples at T=1.0, <= {args.tokens} new tokens; greedy <= "
          f"{args.greedy_tokens} new tokens; torch threads {torch.get_num_threads()}; CPU {cpu_name()}\n")
    print("| way | prompts x samples | new tokens | seconds | new tokens/s | vs batched generate | samples with gold answer [95% Wilson] |")
    print("|---|---|---|---|---|---|---|")
    for name, shape, n, dt, (hits, total), ref in rows:
        lo, hi = wilson_interval(hits, total)
        ratio = f"{n / dt / ref:.2f}x" if ref else "-"
        print(f"| {name} | {shape} | {n} | {dt:.1f} | {n / dt:.0f} | {ratio} | {100 * hits / total:.1f}% "
              f"[{100 * lo:.1f}, {100 * hi:.1f}] |")
    print(f"\nhead KV reuses across chunks and calls: {fp32.head_reuses}")


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
