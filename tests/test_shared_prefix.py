"""The shared-prefix training forward: the same hidden states, losses and gradients as a plain
forward pass, and the plain pass wherever sharing would not be exact."""

import pytest

from selfalign.train.base import TrainConfig

torch = pytest.importorskip("torch")


def _batch(prefix: int, tails: list[int], vocab: int, seed: int = 0, left_pad: bool = False):
    """Rows of ``prefix`` shared tokens then a tail of their own, right-padded (or left-padded) with 0."""
    g = torch.Generator().manual_seed(seed)
    head = torch.randint(3, vocab, (prefix,), generator=g)
    rows = [torch.cat([head, torch.randint(3, vocab, (n,), generator=g)]) for n in tails]
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    att = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        sl = slice(width - len(r), width) if left_pad else slice(0, len(r))
        ids[i, sl], att[i, sl] = r, 1
    return ids, att


def _lora(model, seed: int = 0):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"]))
    torch.manual_seed(seed)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # non-zero, so the adapters change the forward pass and get gradients of their own
            p.data.normal_(0, 0.05)
    return model


@pytest.mark.parametrize("kind,attn,pack,positions", [
    ("causal", "eager", True, False), ("causal", "sdpa", True, True), ("causal", "eager", False, False),
    ("seq-cls", "eager", True, False), ("seq-cls", "eager", False, True)])
def test_the_prefix_runs_once_with_the_plain_passes_losses_and_gradients(tiny_model_dir, monkeypatch, kind, attn, pack,
                                                                         positions):
    """Tails padded (the prefix's KV repeated per row) or packed (one row, a block mask), with and
    without position ids from the collator: the plain pass's loss and gradients."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    import selfalign.models.shared_prefix as sp

    monkeypatch.setattr(sp, "packing_pays", lambda *a: pack)
    if kind == "causal":
        model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32, attn_implementation=attn)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir), num_labels=1, dtype=torch.float32,
                                                                   attn_implementation=attn)
        model.config.pad_token_id = 0
    model = _lora(model)
    model.train()
    ids, att = _batch(20, [3, 7, 1, 5], model.config.vocab_size)
    extra = {"position_ids": (att.cumsum(1) + 2).clamp(min=0)} if positions else {}  # not 0, 1, ...: must be used

    def step():
        model.zero_grad()
        if kind == "causal":
            labels = ids.masked_fill(att == 0, -100)
            labels[:, :18] = -100  # the loss on the tails and the prefix's last tokens
            out = model(input_ids=ids, attention_mask=att, labels=labels, use_cache=False, **extra)
            loss = out.loss
        else:
            loss = model(input_ids=ids, attention_mask=att, **extra).logits.square().sum()
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        assert grads and all(g.abs().sum() > 0 for n, g in grads.items() if "lora" in n)
        return loss.item(), grads

    plain_loss, plain_grads = step()
    stats = sp.install(model.get_base_model().model)
    loss, grads = step()
    assert stats.shared_calls == 1 and stats.plain_calls == 0 and stats.packed_calls == pack
    assert stats.positions_run == 20 + (3 + 7 + 1 + 5 if pack else 4 * 7) and stats.positions_plain == 4 * 27
    assert loss == pytest.approx(plain_loss, rel=1e-5)
    for name, g in plain_grads.items():
        assert torch.allclose(grads[name], g, rtol=1e-4, atol=1e-6), name


def test_the_plain_forward_runs_where_sharing_would_not_be_exact(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from selfalign.models.shared_prefix import install, uninstall

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32, attn_implementation="eager")
    backbone = model.model
    stats = install(backbone)
    assert install(backbone) is stats  # idempotent
    vocab = model.config.vocab_size
    ids, att = _batch(20, [3, 7], vocab)
    with torch.no_grad():
        plain = backbone._selfalign_plain_forward(input_ids=ids, attention_mask=att).last_hidden_state
        model(input_ids=ids, attention_mask=att, use_cache=True)  # generation asks for a cache: plain
        model(input_ids=ids[:1], attention_mask=att[:1], use_cache=False)  # one row: nothing to share
        short_ids, short_att = _batch(4, [3, 7], vocab)
        model(input_ids=short_ids, attention_mask=short_att, use_cache=False)  # prefix below MIN_PREFIX
        left_ids, left_att = _batch(20, [3, 7], vocab, left_pad=True)
        model(input_ids=left_ids, attention_mask=left_att, use_cache=False)  # left padding: pads are no prefix
        assert stats.shared_calls == 0 and stats.plain_calls == 4
        shared = backbone(input_ids=ids, attention_mask=att, use_cache=False).last_hidden_state
        assert stats.shared_calls == 1
    real = att.bool()
    assert stats.packed_calls == 1  # tails of 3 and 7: packing pays
    assert torch.allclose(shared[real], plain[real], atol=1e-5)
    assert not shared[~real].any()  # pad positions: zeros (no loss, mask or pooling reads them)
    uninstall(backbone)
    assert backbone._selfalign_shared_prefix is None and "forward" not in vars(backbone)

    # dropout anywhere in the backbone, in training mode: one prefix pass would share its masks across rows
    model.config.attention_dropout = 0.1
    dropped = install(model.model)
    model.train()
    model(input_ids=ids, attention_mask=att, use_cache=False)
    assert dropped.shared_calls == 0 and dropped.plain_calls == 1
    model.eval()  # dropout is off in eval mode: sharing is exact again
    with torch.no_grad():
        model(input_ids=ids, attention_mask=att, use_cache=False)
    assert dropped.shared_calls == 1


def test_lora_dropout_added_after_install_turns_sharing_off(tiny_model_dir):
    """The trainers install the shared prefix before PEFT adds its adapters: LoRA dropout must still count."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from selfalign.models.shared_prefix import install

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32, attn_implementation="eager")
    stats = install(model.model)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules=["q_proj", "v_proj"]))
    model.train()
    ids, att = _batch(20, [3, 7], model.config.vocab_size)
    model(input_ids=ids, attention_mask=att, use_cache=False)
    assert stats.shared_calls == 0 and stats.plain_calls == 1


def test_sft_trains_to_the_same_losses_and_weights_with_and_without_the_shared_prefix(tiny_model_dir, tmp_path,
                                                                                      monkeypatch):
    from safetensors.torch import load_file

    import selfalign.train.base as tb
    from selfalign.train.sft import fingerprint, train_sft

    installed: list = []
    real = tb.install_shared_prefix
    monkeypatch.setattr(tb, "install_shared_prefix",
                        lambda backbone, **kw: installed.append(real(backbone, **kw)) or installed[-1])
    head = "Answer the question. If you do not know the answer to the question, say so. "
    rows = [{"prompt": [{"role": "user", "content": head + f"Q: what is the capital of country number {i}?"}],
             "completion": [{"role": "assistant", "content": "Paris" + " is it" * (i % 4)}]} for i in range(8)]
    out = {}
    for on in (False, True):
        cfg = TrainConfig(epochs=1, batch_size=4, lora_r=4, max_steps=2, logging_steps=1, warmup_ratio=0.0,
                          precision="fp32", shared_prefix=on)
        res = train_sft(rows, str(tiny_model_dir), tmp_path / f"on{on}", cfg)
        out[on] = (res.losses, load_file(str(next((tmp_path / f"on{on}" / "model").glob("*.safetensors")))))
    assert len(installed) == 1 and installed[0].shared_calls >= 2  # on: every training step shared its prefix
    assert installed[0].saved_fraction() > 0.3
    assert len(out[True][0]) == 2 and out[True][0] == pytest.approx(out[False][0], rel=1e-4)
    for k, w in out[False][1].items():
        assert torch.allclose(w, out[True][1][k], atol=1e-5), k
    # speed-only: one fingerprint, so a model trained either way is reused
    assert fingerprint("b", rows, TrainConfig(shared_prefix=False)) == fingerprint("b", rows, TrainConfig())
