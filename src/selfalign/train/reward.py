"""Preference model: a scalar reward read at an end-of-context token, trained with the ranking loss.

Askell et al. 2021 ("A General Language Assistant as a Laboratory for Alignment", arXiv
2112.00861, §4) and Bai et al. 2022 (arXiv 2204.05862, §3): a language model with a scalar head
reads a context and a response and outputs r at an end-of-context token appended to the text;
the loss on a comparison is L = log(1 + exp(r_rejected - r_chosen)). Trained here through TRL's
``RewardTrainer`` (whose loss is exactly that, -log sigmoid(r_c - r_r), plus an optional margin).

One code path (:class:`PMEncoder`) turns (prompt, response) into token ids for training,
evaluation, Best-of-N and RL:

* the conversation is rendered with the tokenizer's chat template; whatever the template adds
  after the last end-of-turn token (a newline) is cut, so every text ends with the
  end-of-context token (the tokenizer's eos, ``<|im_end|>`` for SmolLM2) and the reward is read
  there;
* **pad != end of context**: transformers' sequence-classification models pool at the last
  token that is not the pad token. SmolLM2's pad token *is* its eos, so pooling would skip the
  end-of-context token (and any eos inside a text); the PM therefore pads with another token
  (the tokenizer's unk, else bos, else id 0), recorded in the saved config;
* over-long texts are shortened by dropping the oldest turns first (a system message stays),
  then, if the last exchange alone is too long, by cutting tokens from the left; every such
  text is counted (``truncated``). TRL's own ``max_length`` filter, which drops rows silently,
  is turned off.

LoRA by default (``task_type=SEQ_CLS``: the new score head is trained in full beside the
adapters), merged at the end; the saved directory reloads with
``AutoModelForSequenceClassification`` and gives the same rewards (tested), the trained head
included. Rewards go through the store's scores table, keyed by the PM's id (its weights' hash)
and the text, so scoring the same candidates twice costs nothing.

Deviations: Askell et al. pretrain the PM on large public comparison sets (PMP) before
fine-tuning; here PMP is optional (:func:`train_pm` on the plentiful self-made pairs, then again
from that directory on the target pairs). The paper's PMs are 13M-52B models; the default is the
135M embedded model.

The trainer in TRL's shape (a config, :class:`PMConfig`; a trainer, :func:`train_pm`; a thin
script), beside the other trainers of :mod:`selfalign.train`. ``python -m selfalign.reward.pm``,
its earlier name, still runs it. A script, so ``accelerate launch`` trains it data-parallel (see
:mod:`selfalign.train.sft`)::

    python -m selfalign.train.reward --rows pairs.jsonl --base <hub id or path> --out runs/pm [--set ...]
    accelerate launch --multi_gpu --num_processes 2 -m selfalign.train.reward --rows pairs.jsonl --base ... --out ...
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from selfalign.models.hf import model_revision
from selfalign.models.shared_prefix import install as install_shared_prefix, plain_forward, prompt_runs
from selfalign.store.cache import Store
from selfalign.types import stable_hash
from selfalign.train.base import (
    TrainConfig,
    TrainingRun,
    TrainResult,
    attn_kwargs,
    share_prefix,
    fingerprint as _fingerprint,
    lora_config,
    resolve_precision,
    script_main,
    trainer_args,
)

COLUMNS = ("prompt", "chosen", "rejected", "margin")


@dataclass
class PMConfig(TrainConfig):
    max_length: int = 512  # tokens per (prompt + response); longer ones lose their oldest turns
    learning_rate: float = 1e-4
    epochs: float = 1.0
    use_margin: bool = False  # add the rows' margin inside the sigmoid (TRL's margin option)
    center_rewards: float = 0.0  # TRL's center_rewards_coefficient (0 = off)
    score_batch_tokens: int = 8192  # scoring: padded tokens per forward pass

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.center_rewards < 0:
            raise ValueError(f"center_rewards must be >= 0, got {self.center_rewards}")


def _messages(prompt: Any) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [m.to_dict() if hasattr(m, "to_dict") else {"role": m["role"], "content": m["content"]} for m in prompt]


def _response(resp: Any) -> str:
    if isinstance(resp, str):
        return resp
    if isinstance(resp, (list, tuple)) and resp and isinstance(resp[-1], dict):
        return str(resp[-1]["content"])
    raise ValueError(f"a response must be a string or a list with one assistant message, got {resp!r:.80}")


class PMEncoder:
    """(prompt, response) -> token ids ending at the end-of-context token; padding id != it."""

    def __init__(self, tokenizer: Any, max_length: int = 512):
        self.tok = tokenizer
        self.max_length = max_length
        self.eoc_id = tokenizer.eos_token_id
        if self.eoc_id is None:
            raise ValueError("the tokenizer has no eos token to read the reward at")
        self.pad_id = self._pad_id()

    def _pad_id(self) -> int:
        for cand in (self.tok.unk_token_id, self.tok.pad_token_id, self.tok.bos_token_id, 0, 1):
            if cand is not None and cand != self.eoc_id:
                return int(cand)
        raise ValueError("no token other than eos to pad with")

    def _render(self, msgs: list[dict[str, str]]) -> list[int]:
        if getattr(self.tok, "chat_template", None):
            out = self.tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=False)
            ids = list(out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out)
        else:
            text = "".join(f"{m['role']}: {m['content']}\n" for m in msgs)
            ids = list(self.tok(text, add_special_tokens=True)["input_ids"])
        # cut what the template adds after the last end of turn; make sure the text ends with it
        last = max((i for i, t in enumerate(ids) if t == self.eoc_id), default=-1)
        if last >= 0:
            ids = ids[:last + 1]
        else:
            ids.append(self.eoc_id)
        return ids

    def encode(self, prompt: Any, response: Any) -> tuple[list[int], bool]:
        """Token ids and whether the text had to be shortened to ``max_length``."""
        msgs = _messages(prompt) + [{"role": "assistant", "content": _response(response)}]
        ids = self._render(msgs)
        if len(ids) <= self.max_length:
            return ids, False
        head = [m for m in msgs[:1] if m["role"] == "system"]
        body = msgs[len(head):]
        while len(body) > 2:  # drop the oldest exchange, keep the system message and the last turns
            body = body[2:] if body[0]["role"] == "user" and body[1]["role"] == "assistant" else body[1:]
            ids = self._render(head + body)
            if len(ids) <= self.max_length:
                return ids, True
        return ids[-self.max_length:], True


def fingerprint(base: str, rows: Sequence[dict[str, Any]], cfg: PMConfig) -> str:
    return _fingerprint("pm", base, rows, cfg, COLUMNS)


@dataclass
class PMTrainResult(TrainResult):
    truncated: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def load_seq_cls(path: str, seed: int = 0, **load: Any) -> tuple[Any, Any]:
    """The model with a 1-output score head (new heads are initialised from ``seed``) and its tokenizer;
    ``load`` goes to ``from_pretrained`` (training passes its attention kernel)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed

    set_seed(seed)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32, **load)
    return model, tok


def load_for_scoring_head(cfg: PMConfig, run: TrainingRun, base: str) -> tuple[Any, str | None, Any, Any, PMEncoder]:
    """What a trainer of the score head starts with (the PM's and the classifier's): the precision
    (logged), the checkpoint to resume from, the model with its head, the tokenizer, and the encoder
    whose pad id (not eos) the model pools by."""
    precision = resolve_precision(cfg)
    resume = run.prepare()
    model, tok = load_seq_cls(base, cfg.seed, **attn_kwargs(cfg))
    share_prefix(model, cfg)
    enc = PMEncoder(tok, cfg.max_length)
    tok.pad_token_id = enc.pad_id
    model.config.pad_token_id = enc.pad_id
    return precision, resume, model, tok, enc


def train_pm(rows: Sequence[dict[str, Any]], base: str, out_dir: str | Path, cfg: PMConfig | None = None,
             base_id: str | None = None) -> PMTrainResult:
    """Train a PM on preference rows; the merged model (with its score head) lands in ``out_dir/model``."""
    cfg = cfg or PMConfig()
    run = TrainingRun(out_dir, fingerprint(base_id or base, rows, cfg))
    if (earlier := run.begin(len(rows), "preference rows", PMTrainResult, ("truncated",))) is not None:
        return earlier
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    precision, resume, model, tok, enc = load_for_scoring_head(cfg, run, base)
    data, truncated = [], 0
    for r in rows:
        c, tc = enc.encode(r["prompt"], r["chosen"])
        j, tj = enc.encode(r["prompt"], r["rejected"])
        truncated += tc + tj
        row: dict[str, Any] = {"chosen_ids": c, "rejected_ids": j}
        if cfg.use_margin:
            row["margin"] = float(r.get("margin") or 0.0)
        data.append(row)
    peft_config = lora_config(cfg, model.config.num_hidden_layers, task_type="SEQ_CLS") if cfg.lora else None
    args = RewardConfig(**trainer_args(cfg, run.ckpt_dir, precision), max_length=None,
                        center_rewards_coefficient=cfg.center_rewards or None)
    trainer = RewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(data), processing_class=tok,
                            peft_config=peft_config)
    res = run.train(trainer, tok, resume, len(rows), base_id or base, cfg, precision,
                    extra=lambda _: {"truncated": truncated, "pad_token_id": enc.pad_id, "eoc_token_id": enc.eoc_id})
    return PMTrainResult(res.model_dir, res.losses, res.seconds, res.n_rows, False, res.precision, truncated=truncated)


class PreferenceModel:
    """Rewards from a saved (or freshly initialised) sequence-classification model.

    ``rewards(prompts, responses)`` is the one scoring path: the encoder above, right padding with
    the non-eos pad id, and the model's own pooling at the last non-pad token = the end of context.
    """

    def __init__(self, path: str | Path, max_length: int = 512, batch_tokens: int = 8192, seed: int = 0):
        import torch

        self.torch = torch
        self.path = str(path)
        self.model, self.tok = load_seq_cls(self.path, seed)
        self.model.eval()
        self.enc = PMEncoder(self.tok, max_length)
        self.model.config.pad_token_id = self.enc.pad_id
        self.batch_tokens = batch_tokens
        self.model_id = f"pm:{self.path}@{model_revision(self.path, None)}#seed{seed}#max{max_length}"
        self.truncated = 0

    #: False: every answer reads its whole prompt (the plain pass, for ``bench/score.py`` and the tests)
    shared_prefix = True
    #: a prompt with at least this many answers in one call gets batches of its own (see :meth:`rewards`)
    group_min = 4

    def rewards(self, prompts: Sequence[Any], responses: Sequence[Any]) -> list[float]:
        """One reward per (prompt, response). Answers to one prompt (at least ``group_min`` of them)
        are batched together, and the backbone runs the tokens every row of a batch starts with
        once (:mod:`selfalign.models.shared_prefix`, exact up to float rounding): Best-of-16's 16
        answers read their prompt once. The rest go in length order, as all did before."""
        torch = self.torch
        encoded: list[list[int]] = []
        for p, r in zip(prompts, responses):
            ids, cut = self.enc.encode(p, r)
            self.truncated += cut
            encoded.append(ids)
        backbone = getattr(self.model, getattr(self.model, "base_model_prefix", ""), None)
        share = self.shared_prefix and backbone is not None and backbone is not self.model
        if share:
            install_shared_prefix(backbone)
        runs = prompt_runs([stable_hash(_messages(p)) for p in prompts], [len(e) for e in encoded],
                           self.group_min if share else None)
        out = [0.0] * len(encoded)
        for order in runs:
            i = 0
            while i < len(order):
                j = i + 1
                while j < len(order) and (j - i + 1) * len(encoded[order[j]]) <= self.batch_tokens:
                    j += 1
                batch = [encoded[k] for k in order[i:j]]
                width = max(len(b) for b in batch)
                ids = torch.full((len(batch), width), self.enc.pad_id, dtype=torch.long)
                att = torch.zeros((len(batch), width), dtype=torch.long)
                for b, seq in enumerate(batch):
                    ids[b, :len(seq)] = torch.tensor(seq)
                    att[b, :len(seq)] = 1
                with torch.no_grad(), (contextlib.nullcontext() if self.shared_prefix else plain_forward(backbone)):
                    logits = self.model(input_ids=ids, attention_mask=att).logits[:, 0]
                for k, v in zip(order[i:j], logits.tolist()):
                    out[k] = float(v)
                i = j
        return out


class CachedPM:
    """A preference model whose rewards go through the store (scores table, keyed by PM id + text)."""

    def __init__(self, pm: Any, store: Any = None):
        self.pm = pm
        self.store = store if store is not None else Store()
        self.model_id = pm.model_id

    def _key(self, prompt: Any, response: Any) -> str:
        return stable_hash({"pm": self.model_id, "prompt": _messages(prompt), "response": _response(response)})

    def rewards(self, prompts: Sequence[Any], responses: Sequence[Any]) -> list[float]:
        keys = [self._key(p, r) for p, r in zip(prompts, responses)]
        have = self.store.get_scores(keys)
        first = {k: i for i, k in reversed(list(enumerate(keys)))}
        todo = [i for i, k in enumerate(keys) if k not in have and first[k] == i]  # a repeated answer: read once
        if todo:
            t0 = time.time()
            got = self.pm.rewards([prompts[i] for i in todo], [responses[i] for i in todo])
            self.store.put_scores([(keys[i], self.model_id, {"pm": True}, (v,)) for i, v in zip(todo, got)])
            for i, v in zip(todo, got):
                have[keys[i]] = (v,)
            # in the call log (kind "pm") beside generate and score, for bench/run_profile.py
            self.store.log_call("pm", self.model_id, len(keys), len(keys) - len(todo), 0, time.time() - t0)
        return [float(have[k][0]) for k in keys]


def main(argv: list[str] | None = None) -> None:
    """``python -m selfalign.train.reward``: one entry point for a single process and ``accelerate launch``."""
    script_main(argv, "python -m selfalign.train.reward", __doc__ or "", PMConfig, ("prompt", "chosen", "rejected"),
                train_pm, lambda res: {"truncated": res.truncated})


if __name__ == "__main__":
    main()
