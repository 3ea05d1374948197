"""The hf backend on a tiny random-init Llama: exactness against transformers' own generate,
per-sample seeds independent of batching, stop strings, scoring."""

import math

import pytest
import torch

from selfalign.types import GenParams, GenRequest, ScoreRequest, user

QS = ["What is the capital of France?", "Name a fruit.", "What is the atomic number of Gold?"]


def test_greedy_matches_transformers_generate(tiny_model):
    reqs = [GenRequest(user(q), GenParams(max_tokens=12)) for q in QS]
    ours = [r.texts[0] for r in tiny_model.generate(reqs)]
    tok, model = tiny_model.tokenizer, tiny_model.model
    for q, text in zip(QS, ours):
        ids = tok(tiny_model.render(user(q)), add_special_tokens=False, return_tensors="pt")
        out = model.generate(**ids, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
        ref = tok.decode(out[0][ids["input_ids"].shape[1]:], skip_special_tokens=True)
        assert text == ref


def test_sample_i_is_the_same_whatever_the_batch(tiny_model):
    p = GenParams(temperature=1.0, max_tokens=10)
    alone = tiny_model.generate([GenRequest(user(QS[0]), p, n=6, seed=3)])[0].texts
    mixed = tiny_model.generate([GenRequest(user(QS[1]), p, n=5, seed=9),
                                 GenRequest(user(QS[0]), p, n=6, seed=3)])[1].texts
    subset = tiny_model.generate([GenRequest(user(QS[0]), p, n=6, seed=3, indices=(4, 1))])[0].texts
    assert alone == mixed
    assert subset == [alone[4], alone[1]]
    assert len(set(alone)) > 1  # a random-init model at T=1 does vary
    other_seed = tiny_model.generate([GenRequest(user(QS[0]), p, n=6, seed=4)])[0].texts
    assert other_seed != alone


def test_greedy_and_sampled_requests_decode_together_as_they_do_apart(tiny_model):
    """Requests differing only in temperature share one decoding batch (one prefill per prompt),
    each row at its own temperature: argmax rows give the greedy answers, sampled rows the samples
    (and log-probabilities) each gives apart."""
    from selfalign.models.hf import HFModel

    greedy = GenParams(max_tokens=10, logprobs=True)
    hot, warm = GenParams(temperature=1.0, max_tokens=10, logprobs=True), GenParams(temperature=0.7, max_tokens=10,
                                                                                  logprobs=True)
    reqs = ([GenRequest(user(q), greedy) for q in QS] + [GenRequest(user(q), hot, n=4, seed=2) for q in QS]
            + [GenRequest(user(QS[0]), warm, n=3, seed=8)])
    m = HFModel("tiny", model=tiny_model.model, tokenizer=tiny_model.tokenizer, model_id="t", batch_size=64)
    decoded: list[int] = []
    original = m._decode
    m._decode = lambda chunk, *a: decoded.append(len(chunk)) or original(chunk, *a)  # type: ignore[method-assign]
    together = m.generate(reqs)
    assert decoded == [3 + 12 + 3]  # one batch: every prompt prefilled once for all its rows
    for got, r in zip(together, reqs):
        apart = tiny_model.generate([r])[0]
        assert got.texts == apart.texts
        for cg, ca in zip(got.completions, apart.completions):
            assert cg.token_logprobs == pytest.approx(ca.token_logprobs, abs=1e-4)
    assert together[QS.__len__()].texts != [together[0].texts[0]] * 4  # the sampled rows did sample
    # without log-probabilities the draw scales the logits in place: the same tokens
    plain = [GenRequest(r.prompt, GenParams(r.params.temperature, max_tokens=10), r.n, r.seed) for r in reqs]
    assert [r.texts for r in m.generate(plain)] == [r.texts for r in together]


def test_shared_prefix_changes_nothing(tiny_model):
    """Prompts sharing a long head (prefilled once) give what each gives alone."""
    p = GenParams(max_tokens=8)
    head = "Answer the question. If you don't know the answer to the question, it is appropriate to say so.\n"
    reqs = [GenRequest(user(head + q), p) for q in QS]
    together = [r.texts[0] for r in tiny_model.generate(reqs)]
    alone = [tiny_model.generate([r])[0].texts[0] for r in reqs]
    assert together == alone


def test_head_kv_reused_across_chunks_and_calls_changes_nothing(tiny_model):
    """The stored head KV (reused by later chunks and calls with the same head, recomputed where a
    chunk's head is longer or diverges) gives what a fresh model without any stored head gives:
    the same texts as each request alone, and bit for bit what a fresh model gives the same call."""
    from selfalign.models.hf import HFModel

    head = "Answer the question. If you don't know the answer to the question, it is appropriate to say so.\n"
    longer = head + "Think of the capital, the river and the mountain. "
    sampled, greedy = GenParams(temperature=1.0, max_tokens=6, logprobs=True), GenParams(max_tokens=6, logprobs=True)
    calls = [
        [GenRequest(user(head + q), sampled, n=3, seed=5) for q in QS],
        [GenRequest(user(longer + q), greedy) for q in QS],  # head shared and longer: extended
        [GenRequest(user("Unrelated: " + q), greedy) for q in QS],  # diverges: recomputed
        [GenRequest(user(head + q), greedy) for q in QS],
    ]
    reuser = HFModel("tiny", model=tiny_model.model, tokenizer=tiny_model.tokenizer, model_id="t", batch_size=2)
    for reqs in calls:
        got = reuser.generate(reqs)
        fresh = HFModel("tiny", model=tiny_model.model, tokenizer=tiny_model.tokenizer, model_id="t", batch_size=64)
        want = [fresh.generate([r])[0] for r in reqs]
        assert [r.texts for r in got] == [r.texts for r in want]
        # log-probabilities see any change in the context (positions, cached keys), texts may not
        for g, w in zip(got, want):
            for cg, cw in zip(g.completions, w.completions):
                assert cg.token_logprobs == pytest.approx(cw.token_logprobs, abs=1e-4)
        # the same call on a model with no history: identical to the last bit (no dependence on
        # the calls before, which sampling at temperature 1 would turn into other tokens)
        same = HFModel("tiny", model=tiny_model.model, tokenizer=tiny_model.tokenizer, model_id="t", batch_size=2)
        assert [[c.token_logprobs for c in r.completions] for r in same.generate(reqs)] == \
            [[c.token_logprobs for c in r.completions] for r in got]
    assert reuser.head_reuses >= 1  # batch_size=2 splits every call into chunks; some share their head


def test_logprobs_and_score_agree(tiny_model):
    """Sampling's per-token log-probabilities equal scoring's for the same tokens."""
    res = tiny_model.generate([GenRequest(user(QS[0]), GenParams(temperature=1.0, max_tokens=6, logprobs=True),
                                          n=48, seed=2)])[0]
    compared = 0
    for c in res.completions:
        assert c.token_logprobs is not None
        assert len(c.token_logprobs) == c.n_tokens - (1 if c.finish_reason == "stop" else 0)
        ids = tiny_model.tokenizer(c.text, add_special_tokens=False)["input_ids"]
        if len(ids) != len(c.token_logprobs) or not c.text:
            continue  # the text does not re-tokenize into the sampled tokens: nothing to compare
        sc = tiny_model.score([ScoreRequest(user(QS[0]), c.text)])[0]
        assert all(math.isclose(a, b, abs_tol=1e-4) for a, b in zip(sc.token_logprobs, c.token_logprobs))
        compared += 1
    assert compared >= 1, "no sample re-tokenized to its own tokens"


def test_score_matches_a_manual_forward_pass(tiny_model):
    tok, model = tiny_model.tokenizer, tiny_model.model
    req = ScoreRequest(user("Name a fruit."), "Apples are fruits")
    got = tiny_model.score([req, ScoreRequest("", "hello world")])
    p = tok(tiny_model.render(req.prompt), add_special_tokens=False)["input_ids"]
    c = tok(req.completion, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([p + c])).logits[0]
    lp = torch.log_softmax(logits, -1)
    manual = [lp[len(p) - 1 + i, t].item() for i, t in enumerate(c)]
    assert all(math.isclose(a, b, abs_tol=1e-4) for a, b in zip(got[0].token_logprobs, manual))
    assert len(got[1].token_logprobs) == len(tok("hello world", add_special_tokens=False)["input_ids"])


def test_stop_strings_cut_the_text(tiny_model):
    p = GenParams(temperature=1.0, max_tokens=20)
    texts = tiny_model.generate([GenRequest(user(QS[1]), p, n=4, seed=1)])[0].texts
    stop = next((t[len(t) // 2] for t in texts if len(t) > 3 and t[len(t) // 2].strip()), None)
    assert stop is not None, f"no usable stop character in {texts}"
    cut = tiny_model.generate([GenRequest(user(QS[1]), GenParams(temperature=1.0, max_tokens=20, stop=(stop,)), n=4, seed=1)])[0]
    for full, c in zip(texts, cut.completions):
        assert stop not in c.text
        if stop in full:
            assert full.startswith(c.text) and c.finish_reason == "stop"


def test_local_path_model_id_tracks_the_weights(tiny_model_dir, tmp_path):
    from selfalign.models.hf import HFModel
    from conftest import build_tiny_model

    a = HFModel(str(tiny_model_dir)).model_id
    assert a == HFModel(str(tiny_model_dir)).model_id
    other = build_tiny_model(tmp_path / "m2", seed=1)
    assert HFModel(str(other)).model_id != a


def test_score_batches_by_tokens_and_matches_one_by_one(tiny_model):
    reqs = [ScoreRequest(user(q), "Paris is the capital " * k) for q, k in zip(QS * 3, range(1, 10))]
    tiny_model.score_token_budget = 64  # forces several batches of different sizes
    together = tiny_model.score(reqs)
    alone = [tiny_model.score([r])[0] for r in reqs]
    for a, b in zip(together, alone):
        assert len(a.token_logprobs) == len(b.token_logprobs)
        assert all(math.isclose(x, y, abs_tol=1e-4) for x, y in zip(a.token_logprobs, b.token_logprobs))
    batches = tiny_model._token_batches(list(range(5)), [10, 20, 30, 40, 100])
    assert batches == [[0, 1], [2], [3], [4]]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_scoring_reads_each_prompt_once_with_the_plain_passes_log_probs(tiny_model_dir, dtype):
    """Best-of-N-like calls (many answers per prompt, mixed lengths) beside prompts with one or two
    answers: the shared-prefix batches give the plain pass's log-probs, and they did share."""
    from selfalign.models.hf import HFModel

    # bf16 with the opt-in invariant attention: scoring must switch to SDPA and back
    model = HFModel(str(tiny_model_dir), batch_size=8, dtype=dtype, attention="invariant" if dtype == "bfloat16" else "auto")
    assert model.invariant_attention == (dtype == "bfloat16")
    model.score_token_budget = 400  # a group of 9 answers splits over two batches
    words = "one two three four five six seven eight nine ten".split()
    reqs = [ScoreRequest(user(QS[0]), " ".join(words[:k])) for k in range(1, 10)]  # 9 answers, one prompt
    reqs += [ScoreRequest(user(QS[1] + " Think first."), w * k) for w, k in zip(words, (3, 1, 7, 2, 5))]
    reqs += [ScoreRequest(user(q), "Paris " * k) for q, k in zip(QS[2:], (4, 1))]  # fewer than score_group_min
    reqs += [ScoreRequest(user(QS[0]), "one two")]  # a repeat, after its group's others
    shuffled = [reqs[i] for i in (5, 0, 14, 9, 3, 15, 1, 12, 7, 2, 10, 6, 13, 4, 11, 8)]
    model.score_shared_prefix = False
    plain = model.score(shuffled)
    model.score_shared_prefix = True
    shared = model.score(shuffled)
    stats = model._split_head()[0]._selfalign_shared_prefix
    assert stats.shared_calls >= 3 and stats.saved_fraction() > 0.3
    tol = 1e-4 if dtype == "float32" else 1e-2  # bf16: rounding of another batch shape (bench/score.py measures it)
    worst = max(abs(x - y) for a, b in zip(plain, shared) for x, y in zip(a.token_logprobs, b.token_logprobs))
    assert worst <= tol
    assert [r.request for r in shared] == shuffled
    assert [len(a.token_logprobs) for a in plain] == [len(b.token_logprobs) for b in shared]
    again = model.score(list(reversed(shuffled)))  # other batches, same rows: still within the tolerance
    assert max(abs(x - y) for a, b in zip(reversed(again), shared) for x, y in zip(a.token_logprobs, b.token_logprobs)) <= tol
    if model.invariant_attention:  # bf16 scoring runs SDPA, and decoding gets its invariant attention back
        from selfalign.models.hf import INVARIANT_ATTENTION

        seen: list[str] = []
        model.model.model.register_forward_pre_hook(lambda m, a: seen.append(m.config._attn_implementation))
        model.score(shuffled[:3])
        assert seen and set(seen) == {"sdpa"} and model.model.config._attn_implementation == INVARIANT_ATTENTION


def test_score_batches_put_a_prompts_answers_together(tiny_model):
    """What HFModel.score cuts: prompt_runs' runs, each in token batches."""
    from selfalign.models.shared_prefix import prompt_runs

    p, q = [1, 2, 3], [1, 2, 4]
    pairs = [(p, [5] * 3), (q, [5]), (p, [5]), (p, [5] * 2), (p, [5] * 9), (q, [6, 6])]
    total = [len(a) + len(b) for a, b in pairs]

    def batches():
        runs = prompt_runs([tuple(a) for a, _ in pairs], total, tiny_model.score_group_min)
        return [b for run in runs for b in tiny_model._token_batches(run, total)]

    tiny_model.score_group_min = 4
    assert batches() == [[2, 3, 0, 4], [1, 5]]
    tiny_model.score_group_min = 2
    assert batches() == [[2, 3, 0, 4], [1, 5]]
    tiny_model.score_token_budget = 24  # rows x longest row: [2, 3, 0] is 3 x 6, adding 4 makes 4 x 12
    assert batches() == [[2, 3, 0], [4], [1, 5]]


LONG_SCORE = """
import resource, sys
sys.path.insert(0, sys.argv[2])
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from selfalign.models.hf import HFModel
from selfalign.types import ScoreRequest
from conftest import build_tiny_model
tok = HFModel(str(build_tiny_model(__import__("pathlib").Path(sys.argv[1])))).tokenizer
torch.manual_seed(0)
V = 50000  # a real vocabulary's size: [batch x length x V] floats would be gigabytes
cfg = LlamaConfig(vocab_size=V, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                  num_key_value_heads=1, max_position_embeddings=32768, pad_token_id=0, eos_token_id=2)
m = HFModel("long", model=LlamaForCausalLM(cfg), tokenizer=tok, model_id="long", batch_size=64)
text = "hello world the capital of France is Paris " * 300
n = len(tok(text, add_special_tokens=False)["input_ids"])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = m.score([ScoreRequest("", text)] * 4)
grew_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
assert all(len(r.token_logprobs) == n for r in out)
print(n, grew_mb)
"""


def test_scoring_long_texts_stays_within_a_memory_cap(tmp_path):
    """Four ~4,000-token texts against a 50k vocabulary: full logits would be 4 x 4000 x 50k floats
    (3.2 GB, twice with the log-softmax); scoring must stay far below that."""
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "long.py"
    script.write_text(LONG_SCORE)
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "tiny"), str(Path(__file__).parent)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    n_tokens, grew_mb = out.stdout.split()
    assert int(n_tokens) > 2000
    assert float(grew_mb) < 600, f"scoring grew the process by {grew_mb} MB"


def test_an_assistant_message_last_is_a_prefill_the_model_continues(tiny_model):
    """A chat prompt ending with the assistant's partial message renders as the generation prompt
    followed by that text, and greedy decoding from it continues the same greedy answer."""
    from selfalign.types import Message

    q = user(QS[0])
    full = tiny_model.generate([GenRequest(q, GenParams(max_tokens=12))])[0].completions[0]
    # the first few tokens of the answer, decoded, become the prefill
    ids = tiny_model.tokenizer(full.text, add_special_tokens=False)["input_ids"]
    head = tiny_model.tokenizer.decode(ids[:4])
    assert tiny_model.render(q + (Message("assistant", head),)) == tiny_model.render(q) + head
    rest = tiny_model.generate([GenRequest(q + (Message("assistant", head),), GenParams(max_tokens=8))])[0].texts[0]
    assert (head + rest).startswith(full.text[:len(head) + 3]) and rest


def test_prompt_kv_kept_across_calls_changes_nothing(tiny_model_dir):
    """With the prompt cache on, prompts that continue earlier prompts (as FSBS's rounds do) run
    only their new tokens and give what a model without the cache gives."""
    from selfalign.models.hf import HFModel
    from selfalign.types import Message

    plain, cached = HFModel(str(tiny_model_dir), batch_size=8), HFModel(str(tiny_model_dir), batch_size=8)
    cached.prompt_cache_tokens = 10_000
    long_q = "What is the capital of France? " * 4
    first = [user(long_q + q) for q in QS]
    later = [p + (Message("assistant", "The capital of France is Paris." + " hello world" * k),) for k, p in
             enumerate(first)] + [user("Name a fruit.")]  # the last one continues nothing
    p = GenParams(temperature=1.0, max_tokens=8, logprobs=True)
    for reqs in ([GenRequest(q, p, n=3, seed=1) for q in first], [GenRequest(q, p, n=3, seed=2) for q in later]):
        a, b = plain.generate(reqs), cached.generate(reqs)
        for ra, rb in zip(a, b):
            assert ra.texts == rb.texts
            for ca, cb in zip(ra.completions, rb.completions):
                assert ca.token_logprobs == pytest.approx(cb.token_logprobs, abs=1e-4)
    assert cached.prompt_cache_hits >= len(QS) and cached._prompt_kv_tokens <= 10_000
    cached.prompt_cache_tokens = 40  # a small budget keeps only the newest prompts that fit
    cached.generate([GenRequest(user("Name a fruit."), p)])
    assert cached._prompt_kv_tokens <= 40


def test_preallocated_kv_buffer_gives_what_dynamic_cache_gives(tiny_model_dir):
    """Decoding into preallocated KV buffers (the default) gives the same tokens and log-probs as
    transformers' DynamicCache, also when rows finish early and leave the batch (stop strings)."""
    from selfalign.models.hf import HFModel

    buffered, plain = HFModel(str(tiny_model_dir), batch_size=16), HFModel(str(tiny_model_dir), batch_size=16)
    plain.kv_buffer = False
    assert buffered.kv_buffer
    sampled = GenParams(temperature=1.0, max_tokens=12, logprobs=True, stop=("e",))
    greedy = GenParams(max_tokens=12, logprobs=True)
    reqs = [GenRequest(user(q), sampled, n=4, seed=7) for q in QS] + [GenRequest(user(q), greedy) for q in QS]
    a, b = buffered.generate(reqs), plain.generate(reqs)
    lengths = set()
    for ra, rb in zip(a, b):
        assert ra.texts == rb.texts
        for ca, cb in zip(ra.completions, rb.completions):
            assert ca.finish_reason == cb.finish_reason
            assert ca.token_logprobs == pytest.approx(cb.token_logprobs, abs=1e-5)
            lengths.add(ca.n_tokens)
    assert len(lengths) > 1  # some rows stopped early, so pruning ran


def test_buffered_kv_layer_grows_selects_and_crops():
    from selfalign.models.hf import _buffered_layer_type

    keys, vals = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    layer = _buffered_layer_type()(keys, vals, spare=1)
    new_k, new_v = torch.randn(2, 3, 3, 5), torch.randn(2, 3, 3, 5)
    k, v = layer.update(new_k, new_v)  # 3 positions into 1 spare: the buffer grows
    assert torch.equal(k, torch.cat([keys, new_k], dim=-2)) and torch.equal(v, torch.cat([vals, new_v], dim=-2))
    assert layer.get_seq_length() == 7
    layer.batch_select_indices(torch.tensor([1, 1, 0]))
    assert torch.equal(layer.keys[2], k[0]) and torch.equal(layer.keys[0], k[1]) and layer.keys.shape[0] == 3
    layer.crop(-2)
    assert layer.get_seq_length() == 5 and torch.equal(layer.values[2], v[0, :, :5])
    k2, _ = layer.update(torch.ones(3, 3, 1, 5), torch.ones(3, 3, 1, 5))
    assert torch.equal(k2[:, :, 5], torch.ones(3, 3, 5)) and torch.equal(k2[2, :, :5], k[0, :, :5])


def test_the_weights_precision_is_part_of_the_model_id(tiny_model_dir):
    """bf16 weights give other logits than fp32 ones: their samples must not share store keys."""
    from selfalign.models.hf import HFModel

    fp32 = HFModel(str(tiny_model_dir), dtype="float32")
    bf16 = HFModel(str(tiny_model_dir), dtype="bfloat16")
    assert not fp32.model_id.endswith("+fp32")  # fp32 adds nothing: ids made before precisions existed stay valid
    assert bf16.model_id == fp32.model_id + "+bf16"
