"""Cost of one decoding step of the embedded model by batch rows, and of a 20-token prefill.

Shows why greedy evaluation gains less than sampling over ``generate``: a step of one row
costs a large share of a step of 64 (the weights are read once per step whatever the rows),
and greedy answers end at different lengths, so their last steps run nearly empty.

    .venv/bin/python bench/decode_step.py                  # the default precision here
    .venv/bin/python bench/decode_step.py --dtype float32
    .venv/bin/python bench/decode_step.py --pick --rounds 10   # output layer + draw of 256 rows: ours vs one pass

``--pick`` times what follows the backbone in a sampling step of 256 rows: the output layer and
the draw, as the hf backend does it (``HFModel._pick``: 128-row slices, unnormalised weights)
against one pass over all rows with a softmax before the cumulative sum (what the backend did
before commit 8d77331), interleaved round by round so machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import AutoModelForCausalLM

from selfalign.models import embedded
from selfalign.models.hf import HFModel, inference_dtype
from selfalign.models.shared_prefix import cache_kwarg
from selfalign.types import GenParams


def bench_pick(dtype: str, rounds: int) -> None:
    import statistics

    m = HFModel(str(embedded.ensure_converted()), dtype=dtype)
    _, head = m._split_head()
    h = torch.randn(256, m.model.config.hidden_size, generator=torch.Generator().manual_seed(0)).to(
        next(m.model.parameters()).dtype) * 1.5
    params = GenParams(1.0, 1.0, 32)
    gens = [torch.Generator().manual_seed(i) for i in range(256)]

    def one_pass():
        probs = torch.softmax(head(h).float() / params.temperature, dim=-1)
        cdf = probs.cumsum(-1)
        u = torch.tensor([float(torch.rand((), generator=g)) for g in gens])
        return torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True)[:, 0]

    def sliced(rows: int):
        m.head_rows = rows
        return m._pick(h, params, gens)[0]

    ways = {"one pass of 256 rows, softmax then cumsum": one_pass, "_pick, one 256-row slice": lambda: sliced(256),
            "**_pick, 128-row slices (the default)**": lambda: sliced(128), "_pick, 64-row slices": lambda: sliced(64)}
    times: dict[str, list[float]] = {k: [] for k in ways}
    with torch.inference_mode():
        for _ in range(rounds):
            for name, fn in ways.items():
                t = time.perf_counter()
                fn()
                times[name].append(1000 * (time.perf_counter() - t))
    ref = statistics.median(times[next(iter(ways))])
    print(f"{dtype}, 256 rows, vocabulary {m.model.config.vocab_size}, {rounds} interleaved rounds\n")
    print("| output layer + draw | median ms | min | max | vs one pass |\n|---|---|---|---|---|")
    for name, v in times.items():
        print(f"| {name} | {statistics.median(v):.1f} | {min(v):.1f} | {max(v):.1f} | {ref / statistics.median(v):.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    ap.add_argument("--rows", default="64,32,16,4,1")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--pick", action="store_true", help="time the output layer + draw of 256 rows instead")
    ap.add_argument("--rounds", type=int, default=10)
    a = ap.parse_args()
    dtype = inference_dtype("cpu")[0] if a.dtype == "auto" else a.dtype
    if a.pick:
        bench_pick(dtype, a.rounds)
        return
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
