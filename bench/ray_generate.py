"""Data-parallel sampling on Ray actors: 1 worker against N workers, one torch thread each, in one
process (one Ray cluster), on the same requests.

N questions of the bundled QA set x M samples at temperature 1 from the embedded model (fp32, so
the comparison does not depend on this CPU's bf16), through ``ray:<W>:smollm2-135m+fp32``. Prints
new tokens/s of each pool, the speed-up of the largest over 1 worker, and whether every sample is
identical across pools (the per-sample seeds make them so). Actor start-up (loading the model in
each actor) is timed apart from generation. No store: every run generates.

    .venv/bin/python bench/ray_generate.py                 # 48 x 8, 32 new tokens, pools of 1 and 2
    .venv/bin/python bench/ray_generate.py --n 8 --m 2 --tokens 8   # quick look
"""

from __future__ import annotations

import argparse
import os
import time

import ray

from selfalign.data.formats import load_qa
from selfalign.honesty.prompts import plain_prompt
from selfalign.models.registry import load_model
from selfalign.models.precision import cpu_model
from selfalign.types import GenParams, GenRequest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=48, help="questions")
    ap.add_argument("--m", type=int, default=8, help="samples per question")
    ap.add_argument("--tokens", type=int, default=32, help="new tokens at most")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch", type=int, default=64, help="rows per batch in each worker")
    a = ap.parse_args()
    os.environ["SELFALIGN_RAY_THREADS"] = "1"
    ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    items = load_qa("bundled")[: a.n]
    reqs = [GenRequest(plain_prompt(it.question), GenParams(temperature=1.0, max_tokens=a.tokens), n=a.m, seed=i)
            for i, it in enumerate(items)]
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; {len(reqs)} prompts x {a.m} samples, <= {a.tokens} tokens, "
          f"fp32, one torch thread per worker")
    results = {}
    for w in a.workers:
        t0 = time.time()
        pool = load_model(f"ray:{w}:smollm2-135m+fp32", batch_size=a.batch)
        start = time.time() - t0
        pool.generate(reqs[:1])  # warm: first-call costs in every actor
        t0 = time.time()
        # what CachedModel does: chunks of (workers x batch) samples, one call each
        out, chunk, size = [], [], 0
        for r in reqs:
            chunk.append(r)
            size += r.n
            if size >= pool.batch_size:
                out += pool.generate(chunk)
                chunk, size = [], 0
        if chunk:
            out += pool.generate(chunk)
        el = time.time() - t0
        toks = sum(c.n_tokens for r in out for c in r.completions)
        results[w] = ([[c.text for c in r.completions] for r in out], toks / el)
        print(f"workers {w}: {toks} new tokens in {el:.1f} s = {toks / el:.0f} tok/s (actors started in {start:.1f} s)")
        for actor in pool.workers:
            ray.kill(actor)
    base = results[min(a.workers)]
    top = max(a.workers)
    for w, (texts, _) in results.items():
        diff = [i for i, (x, y) in enumerate(zip(texts, base[0])) if x != y]
        if diff:
            print(f"workers {w}: prompts whose samples differ from {min(a.workers)} worker(s): {diff}")
    print(f"speed-up {top} workers / {min(a.workers)}: {results[top][1] / base[1]:.2f}x; "
          f"samples identical across pools: {all(r[0] == base[0] for r in results.values())}")


if __name__ == "__main__":
    main()
