"""Dynamic int8 quantisation variants against fp32 on the embedded model: sampling speed and the
share of samples that contain the gold answer (the quality check issue 12 asks for).

    .venv/bin/python bench/quantize.py [fp32] [pc-nohead] [pt-all]

64 bundled training questions x 10 samples (T=1, <= 32 new tokens) and 64 greedy answers per
variant, each variant in a fresh model. ``pc-nohead``: per-channel weight scales on every
decoder linear layer, the 49k-wide output layer left in fp32; ``pt-all``: torch's default
per-tensor dynamic int8 on every linear layer (the old opt-in ``quantize="int8"``).
"""

from __future__ import annotations

import sys
import time

import torch


def main(variants: list[str]) -> None:
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    from selfalign.data.formats import load_qa
    from selfalign.evals.stats import wilson_interval
    from selfalign.honesty.prompts import plain_prompt
    from selfalign.judges.correctness import contains_answer
    from selfalign.models import embedded
    from selfalign.types import GenParams, GenRequest

    torch.set_num_threads(2)
    items = load_qa("bundled", split="train")[:64]
    print(f"{'variant':12s} {'sampled tok/s':>13s} {'gold samples':>22s} {'greedy tok/s':>12s} {'greedy gold':>11s}")
    for variant in variants:
        m = embedded.load()
        linear = {n for n, mod in m.model.named_modules() if isinstance(mod, torch.nn.Linear)}
        if variant == "pc-nohead":
            m.model = quantize_dynamic(m.model, {n: per_channel_dynamic_qconfig for n in linear if "lm_head" not in n},
                                       dtype=torch.qint8)
        elif variant == "pt-all":
            m.model = quantize_dynamic(m.model, {n: default_dynamic_qconfig for n in linear}, dtype=torch.qint8)
        elif variant != "fp32":
            raise SystemExit(f"unknown variant {variant}")
        reqs = [GenRequest(plain_prompt(it.question), GenParams(1.0, 1.0, 32), n=10, seed=7) for it in items]
        t = time.time()
        res = m.generate(reqs)
        dt = time.time() - t
        toks = sum(c.n_tokens for r in res for c in r.completions)
        k = sum(contains_answer(c.text, it.answers) for r, it in zip(res, items) for c in r.completions)
        lo, hi = wilson_interval(k, 640)
        g = [GenRequest(plain_prompt(it.question), GenParams(0.0, 1.0, 32)) for it in items]
        t = time.time()
        gr = m.generate(g)
        gdt = time.time() - t
        gt = sum(c.n_tokens for r in gr for c in r.completions)
        gk = sum(contains_answer(r.texts[0], it.answers) for r, it in zip(gr, items))
        print(f"{variant:12s} {toks / dt:13.0f} {100 * k / 640:9.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] "
              f"{gt / gdt:12.0f} {gk:8d}/64", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["fp32", "pc-nohead", "pt-all"])
