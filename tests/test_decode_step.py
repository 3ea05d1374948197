"""The pieces of a decoding step: grouped-query attention for one query position against
transformers' SDPA, the output layer in row slices, and the inverse-CDF draw's distribution."""

import math

import pytest
import torch

from selfalign.types import GenParams, GenRequest, user

QS = ["What is the capital of France?", "Name a fruit.", "What is the atomic number of Gold?"]


class _Module:
    num_key_value_groups = 3
    is_causal = True
    training = False


@pytest.mark.parametrize("mask_kind", ["bool", "float", "none"])
def test_grouped_attention_gives_what_sdpa_gives_for_one_query_position(mask_kind):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from selfalign.models.attention import grouped_decode_attention

    g = torch.Generator().manual_seed(0)
    b, hq, hkv, t, d = 5, 6, 2, 11, 8
    q = torch.randn(b, hq, 1, d, generator=g)
    k, v = torch.randn(b, hkv, t, d, generator=g), torch.randn(b, hkv, t, d, generator=g)
    keep = torch.ones(b, 1, 1, t, dtype=torch.bool)
    keep[0, ..., :4] = False  # left padding of row 0
    keep[3, ..., 2:5] = False  # padding between a shared head and a tail
    mask = {"bool": keep, "float": torch.zeros(b, 1, 1, t).masked_fill(~keep, float("-inf")), "none": None}[mask_kind]
    module = _Module()
    module.num_key_value_groups = hq // hkv
    ref, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=0.3)
    out, _ = grouped_decode_attention(module, q, k, v, mask, scaling=0.3)
    assert out.shape == ref.shape == (b, 1, hq, d)
    assert torch.allclose(out, ref, atol=1e-5)
    if mask_kind == "bool":  # the mask is honoured: changing a masked-out key changes nothing
        k2 = k.clone()
        k2[0, :, :4] += 100.0
        assert torch.allclose(grouped_decode_attention(module, q, k2, v, mask, scaling=0.3)[0], out)


def test_grouped_attention_leaves_every_other_call_to_sdpa(monkeypatch):
    import transformers.integrations.sdpa_attention as sa

    from selfalign.models.attention import grouped_decode_attention

    seen = []
    monkeypatch.setattr(sa, "sdpa_attention_forward", lambda *a, **kw: seen.append(kw) or ("sdpa", None))
    q1, q4 = torch.randn(1, 4, 1, 8), torch.randn(1, 4, 4, 8)
    kv = torch.randn(1, 2, 4, 8)
    assert grouped_decode_attention(_Module(), q4, kv, kv, None)[0] == "sdpa"  # a prefill
    assert grouped_decode_attention(_Module(), q1, kv, kv, None, dropout=0.1)[0] == "sdpa"
    assert grouped_decode_attention(_Module(), q1, kv, kv, None, softcap=30.0)[0] == "sdpa"
    assert grouped_decode_attention(_Module(), q1, kv, kv, None, sliding_window=2)[0] == "sdpa"
    assert len(seen) == 4
    assert grouped_decode_attention(_Module(), q1, kv, kv, None)[0] is not None and len(seen) == 4


def test_a_cpu_model_decodes_with_grouped_attention_and_the_same_answers(tiny_model_dir):
    from selfalign.models.attention import NAME
    from selfalign.models.hf import HFModel

    grouped = HFModel(str(tiny_model_dir), batch_size=8)
    assert grouped.grouped_attention and grouped.model.config._attn_implementation == NAME
    plain = HFModel(str(tiny_model_dir), batch_size=8)
    plain.model.set_attn_implementation("sdpa")
    head = "Answer the question. If you don't know the answer, say so.\n"
    greedy = [GenRequest(user(head + q), GenParams(max_tokens=12)) for q in QS]
    sampled = [GenRequest(user(head + q), GenParams(temperature=1.0, max_tokens=12), n=4, seed=1) for q in QS]
    for reqs in (greedy, sampled):
        assert [r.texts for r in grouped.generate(reqs)] == [r.texts for r in plain.generate(reqs)]
    # a model passed in is left as it is
    passed = HFModel(str(tiny_model_dir), model=plain.model, tokenizer=plain.tokenizer, model_id="x")
    assert not passed.grouped_attention and plain.model.config._attn_implementation == "sdpa"


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
