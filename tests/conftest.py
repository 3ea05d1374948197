"""Shared fixtures: an isolated store per test, a tiny random-init Llama with a tokenizer trained
here (no downloads), and the scripted model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are tiny.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = [
    "What is the capital of France? The capital of France is Paris.",
    "Answer the question. If you don't know the answer to the question, it is appropriate to say",
    "I apologize, but I'm not able to provide an answer to the question.",
    "Q: What is the chemical symbol of Iron? A: Fe. The atomic number of Gold is 79.",
    "Name a fruit. Apples, pears and bananas are fruits. Lima is the capital of Peru.",
    "You are tiny. system user assistant 0123456789 hello world the a an of is",
]


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path, monkeypatch):
    """Each test gets its own store; the converted embedded model stays in the shared cache."""
    monkeypatch.setenv("SELFALIGN_STORE", str(tmp_path / "store.sqlite"))


@pytest.fixture(autouse=True)
def _fp32_inference_on_every_cpu(request, monkeypatch):
    """Models load in fp32 on every CPU in tests, so a test gives the same answers on a CPU with native
    bf16 (where ``dtype="auto"`` loads bf16) and on one without; a test marked ``native_precision`` sees
    the real rule."""
    if request.node.get_closest_marker("native_precision"):
        return
    import selfalign.models.hf as hf

    real = hf.inference_dtype
    monkeypatch.setattr(hf, "inference_dtype",
                        lambda device, flags=None: real(device, {"avx2"} if device == "cpu" else flags))


def build_tiny_model(path: Path, seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS * 5, trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<|im_end|>",
                                   bos_token="<|im_start|>")
    fast.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      pad_token_id=fast.pad_token_id, eos_token_id=fast.eos_token_id, bos_token_id=fast.bos_token_id,
                      tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


def qa_file(tmp_path: Path, n: int = 16) -> Path:
    """A knowledge QA file of ``n`` capital-city questions, one in four in the test split."""
    import json

    p = tmp_path / "qa.jsonl"
    rows = [{"id": f"q{i}", "question": f"What is the capital of country {i}?", "answers": [f"City{i}"],
             "split": "test" if i % 4 == 0 else "train"} for i in range(n)]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return p


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture()
def tiny_model(tiny_model_dir):
    from selfalign.models.hf import HFModel

    return HFModel(str(tiny_model_dir), batch_size=8)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.exists():
        pytest.skip(f"{SHARED} is absent (the shared data folder is optional; fixtures cover the formats)")
    return SHARED


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def kill_training_at(monkeypatch, step: int, exc: type[BaseException]):
    """Make every training started from now on raise ``exc`` at the end of ``step`` (a fake SIGKILL
    after the checkpoints before it). Returns the function that undoes it."""
    import selfalign.train.base as base

    real = base.use_step_log

    class Kill:
        def __getattr__(self, event):
            return lambda *a, **k: None

        def on_step_end(self, args, state, control, **kw):
            if state.global_step == step:
                raise exc

    monkeypatch.setattr(base, "use_step_log", lambda trainer, name: (real(trainer, name), trainer.add_callback(Kill())))
    return lambda: monkeypatch.setattr(base, "use_step_log", real)


@pytest.fixture(scope="session")
def eos_pad_model(tmp_path_factory):
    """The tiny model with SmolLM2's quirk: pad token = eos token."""
    from transformers import AutoTokenizer

    path = build_tiny_model(tmp_path_factory.mktemp("eospad") / "model")
    tok = AutoTokenizer.from_pretrained(path)
    tok.pad_token = tok.eos_token
    tok.save_pretrained(path)
    return path
