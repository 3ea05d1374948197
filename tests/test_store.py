"""The store: cache hits, resume after an interruption (identical to an uninterrupted run),
two writers at once, named migrations."""

import multiprocessing as mp
import sqlite3

import pytest

from selfalign.models.scripted import ScriptedModel
from selfalign.store.cache import MIGRATIONS, CachedModel, Store
from selfalign.types import GenParams, GenRequest, ScoreRequest, user


def seeded_rule(text, index, seed):
    return f"answer-{abs(hash((text, index, seed))) % 1000}"


def requests(n_prompts=10, n=3):
    return [GenRequest(user(f"question {i}"), GenParams(temperature=1.0), n=n, seed=7) for i in range(n_prompts)]


def test_second_call_is_served_from_the_store(tmp_path):
    backend = ScriptedModel(default=seeded_rule)
    m = CachedModel(backend, Store(tmp_path / "s.sqlite"), progress=False)
    first = m.generate(requests())
    assert backend._served == 30
    second = m.generate(requests())
    assert backend._served == 30  # nothing generated again
    assert [r.texts for r in first] == [r.texts for r in second]
    assert all(c.cached for r in second for c in r.completions)
    assert not any(c.cached for r in first for c in r.completions)


def test_a_killed_run_resumes_and_equals_an_uninterrupted_one(tmp_path):
    reference = CachedModel(ScriptedModel(default=seeded_rule), Store(tmp_path / "ref.sqlite"), progress=False,
                            chunk_size=4).generate(requests())
    store = Store(tmp_path / "s.sqlite")
    killed = ScriptedModel(default=seeded_rule, fail_after=13)
    with pytest.raises(KeyboardInterrupt):
        CachedModel(killed, store, progress=False, chunk_size=4).generate(requests())
    saved = store.db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
    assert saved == 12  # three whole chunks of 4 were committed before the interruption
    again = ScriptedModel(default=seeded_rule)
    resumed = CachedModel(again, store, progress=False, chunk_size=4).generate(requests())
    assert again._served == 30 - 12  # only the missing samples
    assert [r.texts for r in resumed] == [r.texts for r in reference]


def test_hf_resume_is_identical(tmp_path, tiny_model):
    p = GenParams(temperature=1.0, max_tokens=8)
    reqs = [GenRequest(user(f"Name a fruit {i}."), p, n=4, seed=1) for i in range(6)]
    full = CachedModel(tiny_model, Store(tmp_path / "a.sqlite"), progress=False).generate(reqs)
    store = Store(tmp_path / "b.sqlite")
    CachedModel(tiny_model, store, progress=False).generate(reqs[:3])  # "killed" halfway
    resumed = CachedModel(tiny_model, store, progress=False).generate(reqs)
    assert [r.texts for r in resumed] == [r.texts for r in full]
    assert sum(c.cached for r in resumed for c in r.completions) == 12


def test_key_covers_every_semantic_parameter(tmp_path):
    backend = ScriptedModel(default=seeded_rule)
    m = CachedModel(backend, Store(tmp_path / "s.sqlite"), progress=False)
    base = GenRequest(user("q"), GenParams(temperature=1.0, max_tokens=5), n=1, seed=1)
    variants = [base, GenRequest(user("q"), GenParams(temperature=0.5, max_tokens=5), seed=1),
                GenRequest(user("q"), GenParams(temperature=1.0, max_tokens=6), seed=1),
                GenRequest(user("q"), GenParams(temperature=1.0, max_tokens=5, stop=("x",)), seed=1),
                GenRequest(user("q"), GenParams(temperature=1.0, max_tokens=5), seed=2),
                GenRequest(user("q2"), GenParams(temperature=1.0, max_tokens=5), seed=1)]
    m.generate(variants)
    assert backend._served == 6
    other = CachedModel(ScriptedModel(default=seeded_rule, model_id="other"), m.store, progress=False)
    other.generate([base])
    assert other.backend._served == 1


def test_scores_are_cached(tmp_path):
    backend = ScriptedModel()
    m = CachedModel(backend, Store(tmp_path / "s.sqlite"), progress=False)
    reqs = [ScoreRequest(user("Name a fruit."), "apple pie"), ScoreRequest("", "apple pie")]
    a = m.score(reqs)
    b = m.score(reqs)
    assert [x.token_logprobs for x in a] == [x.token_logprobs for x in b]
    assert len(backend.calls) == 2


def test_a_score_request_asked_twice_in_one_call_is_scored_once(tmp_path):
    backend = ScriptedModel()
    m = CachedModel(backend, Store(tmp_path / "s.sqlite"), progress=False, chunk_size=8)  # one chunk: repeats meet inside it
    a, b = ScoreRequest(user("Name a fruit."), "apple"), ScoreRequest(user("Name a fruit."), "pear")
    got = m.score([a, b, a, a, b])
    assert backend.calls == [a, b]  # every request the backend got, in order
    assert [r.request for r in got] == [a, b, a, a, b]
    assert got[0].token_logprobs == got[2].token_logprobs == got[3].token_logprobs


def _writer(path, worker):
    m = CachedModel(ScriptedModel(default=lambda t, i, s: f"{t}|{i}|w{worker}"), Store(path), progress=False, chunk_size=3)
    return [r.texts for r in m.generate(requests(20, 2))]


def test_two_processes_writing_at_once(tmp_path):
    path = tmp_path / "s.sqlite"
    Store(path).close()
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        a, b = pool.starmap(_writer, [(path, 1), (path, 2)])
    assert a == b  # both return the first answer stored for each sample
    n = sqlite3.connect(path).execute("SELECT COUNT(*) FROM generations").fetchone()[0]
    assert n == 40


def test_migrations_are_named_and_applied_once(tmp_path):
    s = Store(tmp_path / "s.sqlite")
    assert s.applied_migrations() == [name for name, _ in MIGRATIONS]
    s.close()
    s2 = Store(tmp_path / "s.sqlite")
    assert s2.applied_migrations() == [name for name, _ in MIGRATIONS]
    assert s2.stats()["calls"] == 0


def test_a_new_sampler_does_not_reuse_sampled_completions_but_reuses_greedy(tmp_path):
    """A backend that draws samples another way (its ``sampler`` name) gets fresh samples for the
    same seeds; greedy answers, which do not depend on it, come from the store."""
    store = Store(tmp_path / "s.sqlite")
    old = ScriptedModel(default=seeded_rule)
    greedy = [GenRequest(user("question 0"), GenParams(temperature=0.0))]
    CachedModel(old, store, progress=False).generate(requests(2) + greedy)
    assert old._served == 7
    new = ScriptedModel(default=seeded_rule)
    new.sampler = "another-way"  # type: ignore[attr-defined]
    CachedModel(new, store, progress=False).generate(requests(2) + greedy)
    assert new._served == 6  # the 6 sampled ones again, not the greedy one
    again = ScriptedModel(default=seeded_rule)
    again.sampler = "another-way"  # type: ignore[attr-defined]
    CachedModel(again, store, progress=False).generate(requests(2) + greedy)
    assert again._served == 0


def test_a_prompts_requests_reach_the_backend_in_the_same_chunk(tmp_path):
    """Greedy and sampled requests for one prompt, asked for in one call, go to the backend side by
    side (so it can prefill the prompt once), prompts of similar length together."""
    seen: list[list[tuple[str, float]]] = []

    class Recording(ScriptedModel):
        def generate(self, reqs, progress=None):
            seen.append([(r.prompt[0].content, r.params.temperature) for r in reqs])
            return super().generate(reqs, progress)

    qs = [f"question {'x' * (i % 3)}{i}" for i in range(6)]
    reqs = ([GenRequest(user(q), GenParams(max_tokens=4)) for q in qs]
            + [GenRequest(user(q), GenParams(temperature=1.0, max_tokens=4), n=3, seed=1) for q in qs])
    CachedModel(Recording(default=seeded_rule), Store(tmp_path / "s.sqlite"), progress=False,
                chunk_size=4).generate(reqs)
    assert [len(c) for c in seen] == [2] * 6  # each chunk of 4 samples: one prompt's greedy + 3 samples
    assert all(c[0][1] == 0.0 and c[1][1] == 1.0 and c[0][0] == c[1][0] for c in seen)
    lengths = [len(c[0][0]) for c in seen]
    assert lengths == sorted(lengths)
