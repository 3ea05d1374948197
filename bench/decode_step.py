"""Cost of one decoding step of the embedded model by batch rows, and of a 20-token prefill.

Shows why greedy evaluation gains less than sampling over ``generate``: a step of one row
costs a large share of a step of 64 (the weights are read once per step whatever the rows),
and greedy answers end at different lengths, so their last steps run nearly empty.

    .venv/bin/python bench/decode_step.py                  # the default precision here
    .venv/bin/python bench/decode_step.py --dtype float32
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import AutoModelForCausalLM

from selfalign.models import embedded
from selfalign.models.hf import cache_kwarg, inference_dtype


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    ap.add_argument("--rows", default="64,32,16,4,1")
    ap.add_argument("--steps", type=int, default=10)
    a = ap.parse_args()
    dtype = inference_dtype("cpu")[0] if a.dtype == "auto" else a.dtype
    model = AutoModelForCausalLM.from_pretrained(str(embedded.ensure_converted()), dtype=getattr(torch, dtype)).eval()
    print(f"{dtype}, torch threads {torch.get_num_threads()}\n")
    print("| rows | ms per decoding step | new tokens/s | ms for a 20-token prefill of every row |\n|---|---|---|---|")
    kw = cache_kwarg(model.forward)  # `cache` since transformers 5.24, `past_key_values` before
    with torch.inference_mode():
        for rows in [int(r) for r in a.rows.split(",")]:
            ids = torch.randint(0, 1000, (rows, 60), generator=torch.Generator().manual_seed(0))
            cache = getattr(model(input_ids=ids, use_cache=True), kw)
            nxt = ids[:, -1:]
            t = time.perf_counter()
            for _ in range(a.steps):
                cache = getattr(model(input_ids=nxt, **{kw: cache}, use_cache=True), kw)
            step = (time.perf_counter() - t) / a.steps
            t = time.perf_counter()
            model(input_ids=ids[:, :20])
            prefill = time.perf_counter() - t
            print(f"| {rows} | {1000 * step:.1f} | {rows / step:.0f} | {1000 * prefill:.0f} |", flush=True)


if __name__ == "__main__":
    main()
