"""The pieces of a decoding step: the output layer in row slices, and the inverse-CDF draw's
distribution."""

import math

import pytest
import torch

from selfalign.types import GenParams, GenRequest, user

QS = ["What is the capital of France?", "Name a fruit.", "What is the atomic number of Gold?"]


def test_the_output_layer_in_row_slices_changes_no_sample_and_no_logprob(tiny_model):
    reqs = [GenRequest(user(q), GenParams(temperature=1.0, max_tokens=10, logprobs=True), n=5, seed=2) for q in QS]
    whole = tiny_model.generate(reqs)
    tiny_model.head_rows = 4  # 15 rows: slices of 4, 4, 4, 3
    sliced = tiny_model.generate(reqs)
    assert [r.texts for r in sliced] == [r.texts for r in whole]
    for a, b in zip(whole, sliced):
        for ca, cb in zip(a.completions, b.completions):
            assert ca.token_logprobs == pytest.approx(cb.token_logprobs, abs=1e-5)


@pytest.mark.parametrize("top_p", [1.0, 0.8])
def test_the_draw_follows_softmax_over_temperature(tiny_model, top_p):
    """Frequencies of 20,000 draws (one generator each) match the target distribution: softmax(logits
    / T), truncated to the smallest set of tokens reaching top_p; a -inf logit is never drawn."""
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, float("-inf")])
    t = 0.7
    p = torch.softmax(logits / t, -1)
    if top_p < 1:
        sp, si = p.sort(descending=True)
        keep = (sp.cumsum(0) - sp) <= top_p
        p = torch.zeros_like(p).scatter_(0, si, sp * keep)
        p = p / p.sum()
    n = 20_000
    gens = [torch.Generator().manual_seed(i) for i in range(n)]
    params = GenParams(temperature=t, top_p=top_p, max_tokens=1)
    for in_place in (False, True):
        batch = logits.repeat(n, 1)
        idx = tiny_model._draw(batch, params, gens if not in_place else [g.manual_seed(i) for i, g in enumerate(gens)],
                               in_place=in_place)
        freq = torch.bincount(idx, minlength=len(logits)).float() / n
        assert freq[-1] == 0
        for k in range(len(logits)):  # within 4 binomial standard errors
            assert abs(freq[k] - p[k]) <= 4 * math.sqrt(max(p[k] * (1 - p[k]), 1e-12) / n) + 1e-9, (k, freq, p)
    assert torch.equal(batch[0], logits) is False  # in_place did overwrite its input
