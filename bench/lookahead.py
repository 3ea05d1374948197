"""Experiment (reverted after measuring): greedy decoding with prompt-lookup drafts against plain greedy.

    .venv/bin/python bench/lookahead.py float32     # or bfloat16
"""
import random
import sys
import time

from selfalign.data.formats import load_qa
from selfalign.honesty.prompts import plain_prompt
from selfalign.models import embedded
from selfalign.models.hf import HFModel
from selfalign.types import GenParams, GenRequest
items = random.Random(0).sample(load_qa("bundled"), 64)
m = HFModel(str(embedded.ensure_converted()), dtype=sys.argv[1])
greqs = [GenRequest(plain_prompt(it.question), GenParams(max_tokens=80)) for it in items]
m.generate(greqs[:4])
outs = {}
for la, rows in [(0, 16), (4, 16), (4, 64), (0, 16)]:
    m.lookahead, m.lookahead_rows, m.lookahead_tokens = la, rows, 0
    t = time.perf_counter()
    res = m.generate(greqs)
    dt = time.perf_counter() - t
    n = sum(r.completions[0].n_tokens for r in res)
    texts = [r.texts[0] for r in res]
    outs.setdefault(0, texts)
    same = sum(a == b for a, b in zip(texts, outs[0]))
    print(f"lookahead {la} rows<={rows}: {n} tokens {dt:.2f}s {n/dt:.0f} tok/s; accepted drafts {m.lookahead_tokens}; same as plain {same}/64", flush=True)
