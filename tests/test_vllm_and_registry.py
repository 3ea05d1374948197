import importlib.util

import pytest

from selfalign.models.base import MissingExtra, ModelError
from selfalign.models.registry import load_model
from selfalign.models.vllm import sampling_kwargs
from selfalign.types import GenParams, GenRequest, sample_seed, user


def test_vllm_sampling_kwargs():
    req = GenRequest(user("q"), GenParams(temperature=0.8, top_p=0.95, max_tokens=12, stop=("END",), logprobs=True),
                     n=4, seed=5)
    kw = sampling_kwargs(req, 3)
    assert kw == {"n": 1, "temperature": 0.8, "top_p": 0.95, "max_tokens": 12, "seed": sample_seed(5, 3) % (2**31),
                  "stop": ["END"], "logprobs": 0}
    assert "stop" not in sampling_kwargs(GenRequest(user("q")), 0)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_vllm_missing_names_the_extra():
    with pytest.raises(MissingExtra, match=r"selfalign\[vllm\]"):
        load_model("vllm:some/model")


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ModelError, match="Known: smollm2-135m, hf:"):
        load_model("gpt-17")


def test_scripted_rules_from_a_file(tmp_path):
    p = tmp_path / "rules.json"
    p.write_text('{"rules": {"France": "Paris"}, "default": "no idea"}')
    m = load_model(f"scripted:{p}")
    assert m.generate([GenRequest(user("capital of France"))])[0].texts == ["Paris"]
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ModelError, match="bad.json"):
        load_model(f"scripted:{tmp_path / 'bad.json'}")


def test_hf_by_local_path(tiny_model_dir):
    m = load_model(f"hf:{tiny_model_dir}")
    assert m.model_id.startswith(f"hf:{tiny_model_dir}@")
    assert load_model(str(tiny_model_dir)).model_id == m.model_id
    # the hf backend's attention option reaches the model (bench/resume.py asks for the invariant one)
    assert not m.invariant_attention
    assert load_model(f"hf:{tiny_model_dir}+bf16", attention="invariant").invariant_attention


def test_a_precision_suffix_loads_the_weights_in_that_precision(tiny_model_dir):
    import torch

    from selfalign.models.base import ModelError
    from selfalign.models.registry import check_spec, load_model, split_precision, trainable_path

    m = load_model(f"{tiny_model_dir}+bf16")
    assert next(m.model.parameters()).dtype == torch.bfloat16 and m.model_id.endswith("+bf16")
    assert load_model(f"{tiny_model_dir}+fp32").model_id + "+bf16" == m.model_id
    f = load_model(f"{tiny_model_dir}+fp32")
    assert next(f.model.parameters()).dtype == torch.float32 and not f.model_id.endswith("+fp32")
    assert trainable_path(f"{tiny_model_dir}+bf16") == str(tiny_model_dir)  # training starts from the same weights
    assert split_precision("hf:a/b+int8") == ("hf:a/b", {"quantize": "int8"})
    for bad in ("openai:gpt-4o+bf16", "scripted+bf16"):
        with pytest.raises(ModelError, match="precision suffix"):
            check_spec(bad)


@pytest.mark.native_precision
def test_auto_precision_follows_the_cpu(tiny_model_dir, monkeypatch):
    """No suffix: bf16 weights on a CPU with native bf16, fp32 on one without (where bf16 is emulated)."""
    import torch

    import selfalign.models.precision as prec
    from selfalign.models.hf import HFModel

    monkeypatch.setattr(prec, "cpu_flags", lambda: {"avx2", "fma"})
    plain = HFModel(str(tiny_model_dir), device="cpu")
    assert next(plain.model.parameters()).dtype == torch.float32 and "without native bf16" in plain.precision_reason
    monkeypatch.setattr(prec, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    native = HFModel(str(tiny_model_dir), device="cpu")
    assert next(native.model.parameters()).dtype == torch.bfloat16 and native.model_id == plain.model_id + "+bf16"
    assert HFModel(str(tiny_model_dir), device="cpu", dtype="float32").model_id == plain.model_id
    # dynamic int8 quantises fp32 layers: auto loads fp32 for it on any CPU
    q = HFModel(str(tiny_model_dir), device="cpu", quantize="int8")
    assert q.model_id == plain.model_id + "+int8"
    with pytest.raises(ModelError, match="unknown dtype"):
        HFModel(str(tiny_model_dir), dtype="fp8")
