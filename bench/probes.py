"""Small measurements behind issue 12's decisions and negative results (docs/RESULTS.md), one per
subcommand. Each prints what it measured; none is a pass/fail test.

    .venv/bin/python bench/probes.py gemm            # fp32 and bf16 GEMM rates of the model's shapes on this CPU
    ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python bench/probes.py gemm
    .venv/bin/python bench/probes.py int8            # weight-only int8 (per-channel scales) against fp32 linear
    .venv/bin/python bench/probes.py prompt-cache    # k(x): greedy then 6 samples, with and without prompt KV reuse
    .venv/bin/python bench/probes.py batch-identity  # how many T=1 samples change when only the batch changes
    .venv/bin/python bench/probes.py kx-cap runs/quick   # k(x) labels if samples were capped below 32 tokens
    .venv/bin/python bench/probes.py kx-merge        # k(x): greedy and 6 samples in two calls vs one
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def _ms(fn, n: int = 20) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return 1000 * (time.perf_counter() - t) / n


def gemm(_: argparse.Namespace) -> None:
    print(f"torch threads {torch.get_num_threads()}, ATen CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print("| dtype | M x K x N | ms | GFLOP/s |\n|---|---|---|---|")
    for dtype in (torch.float32, torch.bfloat16):
        for m, k, n in ((256, 576, 1536), (256, 576, 576), (256, 576, 49152)):
            a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
            ms = _ms(lambda: a @ b, 10)
            print(f"| {str(dtype).removeprefix('torch.')} | {m} x {k} x {n} | {ms:.2f} | {2 * m * k * n / ms / 1e6:.0f} |")


def int8(_: argparse.Namespace) -> None:
    w = torch.randn(1536, 576)
    scales = w.abs().amax(1) / 127
    wq = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8)
    print("| rows | fp32 linear ms | weight-only int8 ms | int8 / fp32 |\n|---|---|---|---|")
    for m in (1, 4, 16, 64, 256):
        x = torch.randn(m, 576)
        a = _ms(lambda: F.linear(x, w))
        b = _ms(lambda: torch.ops.aten._weight_int8pack_mm(x, wq, scales))
        print(f"| {m} | {a:.3f} | {b:.3f} | {b / a:.1f}x |")


def _model_and_items(n: int):
    from selfalign.data.formats import load_qa
    from selfalign.models import embedded
    from selfalign.models.hf import HFModel

    return HFModel(str(embedded.ensure_converted()), dtype="float32"), random.Random(0).sample(load_qa("bundled"), n)


def prompt_cache(_: argparse.Namespace) -> None:
    from selfalign.honesty.prompts import plain_prompt
    from selfalign.types import GenParams, GenRequest

    m, items = _model_and_items(128)
    greedy = [GenRequest(plain_prompt(it.question), GenParams(0.0, 1.0, 32), seed=0) for it in items]
    sampled = [GenRequest(plain_prompt(it.question), GenParams(1.0, 1.0, 32), n=6, seed=0) for it in items]
    print("| round | prompt KV kept | greedy s | 6 samples s | both s |\n|---|---|---|---|---|")
    for r in range(2):
        for kept in (0, 200_000):
            m.prompt_cache_tokens = kept
            m.clear_prompt_cache()
            m._head_kv = None
            t0 = time.perf_counter()
            m.generate(greedy)
            t1 = time.perf_counter()
            m.generate(sampled)
            t2 = time.perf_counter()
            print(f"| {r + 1} | {'yes' if kept else 'no'} | {t1 - t0:.1f} | {t2 - t1:.1f} | {t2 - t0:.1f} |", flush=True)


def kx_merge(args: argparse.Namespace) -> None:
    """k(x)'s greedy answers and samples in two calls (the code before) against one call, in which
    the backend decodes each question's greedy row beside its sampled rows after one prefill."""
    from selfalign.honesty.prompts import plain_prompt
    from selfalign.types import GenParams, GenRequest

    m, items = _model_and_items(args.questions)
    greedy = [GenRequest(plain_prompt(it.question), GenParams(0.0, 1.0, 32), seed=0) for it in items]
    sampled = [GenRequest(plain_prompt(it.question), GenParams(1.0, 1.0, 32), n=6, seed=0) for it in items]
    # the order the store sends them in: each question's greedy request, then its sampled one
    mixed = [r for pair in zip(greedy, sampled) for r in pair]
    print("| round | way | seconds | new tokens | new tok/s |\n|---|---|---|---|---|")
    texts = {}
    for rnd in range(args.rounds):
        for way in ("two calls", "one call"):
            m._head_kv = None
            t0 = time.perf_counter()
            res = (m.generate(greedy) + m.generate(sampled)) if way == "two calls" else m.generate(mixed)
            el = time.perf_counter() - t0
            if way == "one call":
                res = res[0::2] + res[1::2]
            texts[way] = [r.texts for r in res]
            n_tok = sum(c.n_tokens for x in res for c in x.completions)
            print(f"| {rnd + 1} | {way} | {el:.1f} | {n_tok} | {n_tok / el:.0f} |", flush=True)
    a, b = texts["two calls"], texts["one call"]
    k = len(items)
    print(f"greedy answers identical: {sum(x == y for x, y in zip(a[:k], b[:k]))} of {k}; samples identical: "
          f"{sum(x == y for ra, rb in zip(a[k:], b[k:]) for x, y in zip(ra, rb))} of {6 * k}")


def batch_identity(_: argparse.Namespace) -> None:
    from selfalign.honesty.prompts import plain_prompt
    from selfalign.types import GenParams, GenRequest

    m, items = _model_and_items(64)
    reqs = [GenRequest(plain_prompt(it.question), GenParams(1.0, 1.0, 32), n=6, seed=0) for it in items]
    a = [x for r in m.generate(reqs) for x in r.texts]
    m._head_kv = None
    b = [x for r in m.generate(reqs) for x in r.texts]
    c = [x for r in m.generate(reqs[:32]) for x in r.texts]
    print(f"the same batch twice: {sum(x == y for x, y in zip(a, b))} of {len(a)} samples identical; "
          f"the first 32 questions alone: {sum(x == y for x, y in zip(a, c))} of {len(c)}")


def kx_cap(args: argparse.Namespace) -> None:
    """Samples are drawn token by token from per-sample seeds, so a cap of N tokens gives exactly the
    first N tokens of the stored 32-token samples: cut them and judge them again."""
    from transformers import AutoTokenizer

    from selfalign.honesty.judging import Judge
    from selfalign.judges.idk import IDK_SIGNS
    from selfalign.models import embedded

    from selfalign.data.io import DataError, read_jsonl

    try:
        recs = read_jsonl(Path(args.run) / "knowledge" / "train.jsonl", required=("question", "answers", "samples", "labels"))
    except DataError as e:
        raise SystemExit(str(e)) from None
    tok = AutoTokenizer.from_pretrained(str(embedded.ensure_converted()))
    judge = Judge(list(IDK_SIGNS), None)
    ids = [[tok(t, add_special_tokens=False)["input_ids"] for t in r["samples"]] for r in recs]
    print(f"{sum(len(x) >= 32 for row in ids for x in row)} of {sum(len(row) for row in ids)} samples reach 32 tokens\n")
    print("| cap | sample tokens | labels changed | correct samples |\n|---|---|---|---|")
    base = sum(min(len(x), 32) for row in ids for x in row)
    for cap in (32, 28, 24, 20, 16):
        qs, texts, answers, old = [], [], [], []
        for r, row in zip(recs, ids):
            for x, label in zip(row, r["labels"]):
                qs.append(r["question"])
                texts.append(tok.decode(x[:cap]))
                answers.append(tuple(r["answers"]))
                old.append(label)
        new = judge.label_many(qs, texts, answers)
        n_tok = sum(min(len(x), cap) for row in ids for x in row)
        print(f"| {cap} | {n_tok:,} ({n_tok / base:.0%}) | {sum(a != b for a, b in zip(old, new))} | "
              f"{sum(b == 'correct' for b in new)} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="probe", required=True)
    for name, fn in (("gemm", gemm), ("int8", int8), ("prompt-cache", prompt_cache),
                     ("batch-identity", batch_identity)):
        sub.add_parser(name).set_defaults(fn=fn)
    cap = sub.add_parser("kx-cap")
    cap.add_argument("run", help="an honesty run directory with knowledge/train.jsonl (e.g. runs/quick)")
    cap.set_defaults(fn=kx_cap)
    merge = sub.add_parser("kx-merge")
    merge.add_argument("--questions", type=int, default=128)
    merge.add_argument("--rounds", type=int, default=2)
    merge.set_defaults(fn=kx_merge)
    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
