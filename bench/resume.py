"""Batch invariance and speed of the hf backend's attention (issue 26: exact resume), in one process.

N questions of the bundled QA set (plain prompt) on the embedded model, asked greedily and for M
samples at T = 1 (``--m 0``: greedy only), up to T new tokens: once as one call and once in calls of 5 requests (what a
resumed run does: it regenerates only the missing requests, in other batches). Prints how many
requests got different completions. bf16 runs it with the batch-invariant attention (opt-in,
``HFModel(attention="invariant")``, ``selfalign.models.hf._invariant_attention``) and with torch's
SDPA (the default), then times the one-call runs of both alternately (``--rounds`` times each, A B A B) for
the speed ratio; fp32 keeps SDPA and is checked for invariance only.

    .venv/bin/python bench/resume.py                         # 24 questions, 2 samples, 24 tokens; bf16 and fp32
    .venv/bin/python bench/resume.py --precisions fp32       # quick look
"""

from __future__ import annotations

import argparse
import random
import time

from selfalign.data.formats import load_qa
from selfalign.honesty.prompts import plain_prompt
from selfalign.models.registry import load_model
from selfalign.types import GenParams, GenRequest


def requests(n: int, m: int, tokens: int, seed: int) -> list[GenRequest]:
    items = random.Random(seed).sample(load_qa("bundled"), n)
    greedy, hot = GenParams(max_tokens=tokens), GenParams(temperature=1.0, max_tokens=tokens)
    return ([GenRequest(plain_prompt(it.question), greedy, seed=i) for i, it in enumerate(items)]
            + [GenRequest(plain_prompt(it.question), hot, n=m, seed=i) for i, it in enumerate(items) if m])


def timed(model, reqs) -> tuple[list[list[str]], float, int]:
    t = time.perf_counter()
    res = model.generate(reqs)
    return [r.texts for r in res], time.perf_counter() - t, sum(c.n_tokens for r in res for c in r.completions)


def invariance(model, reqs, label: str) -> list[list[str]]:
    one, sec, toks = timed(model, reqs)
    fives = [t for a in range(0, len(reqs), 5) for t in timed(model, reqs[a:a + 5])[0]]
    greedy = [r.params.greedy for r in reqs]
    diff_g = sum(x != y for x, y, g in zip(one, fives, greedy) if g)
    diff_s = sum(x != y for x, y, g in zip(one, fives, greedy) if not g)
    print(f"{label}: one call vs calls of 5: {diff_g} of {sum(greedy)} greedy requests differ, {diff_s} of "
          f"{len(reqs) - sum(greedy)} sampled requests differ (one call {toks} new tokens in {sec:.1f} s)", flush=True)
    return one


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--m", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--precisions", default="bf16,fp32")
    args = ap.parse_args()
    reqs = requests(args.n, args.m, args.tokens, args.seed)
    for prec in args.precisions.split(","):
        # bf16: the opt-in padding-invariant attention first, then SDPA (the default)
        model = load_model(f"smollm2-135m+{prec}", **({"attention": "invariant"} if prec == "bf16" else {}))
        attn = model.model.config._attn_implementation
        print(f"{prec}: {model.model_id}, attention {attn}", flush=True)
        if prec != "bf16":
            invariance(model, reqs, f"{prec} {attn}")
            continue
        inv = invariance(model, reqs, f"bf16 {attn}")
        model.model.set_attn_implementation("sdpa")
        sdpa = invariance(model, reqs, "bf16 sdpa")
        print(f"bf16: invariant vs sdpa, one call: {sum(x != y for x, y in zip(inv, sdpa))} of {len(reqs)} requests "
              "differ (other rounding, same distribution)", flush=True)
        if args.rounds < 1:
            continue
        speed: dict[str, list[float]] = {attn: [], "sdpa": []}
        for _ in range(args.rounds):
            for name in (attn, "sdpa"):
                model.model.set_attn_implementation(name)
                _, sec, toks = timed(model, reqs)
                speed[name].append(toks / sec)
        a, s = max(speed[attn]), max(speed["sdpa"])
        print(f"bf16 speed (best of {args.rounds}, new tokens/s): {attn} {a:.1f} {[round(x, 1) for x in speed[attn]]}, "
              f"sdpa {s:.1f} {[round(x, 1) for x in speed['sdpa']]}; ratio {a / s:.2f}", flush=True)


if __name__ == "__main__":
    main()
