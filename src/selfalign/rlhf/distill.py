"""Context distillation: a model that behaves as if it were given a long system prompt, without it.

Askell et al. 2021, "A General Language Assistant as a Laboratory for Alignment" (arXiv 2112.00861,
§3.2 and App. B) and Bai et al. 2022 (HH, arXiv 2204.05862, App. A.1): run the model **with** an
HHH prompt, keep its next-token distribution over each token of its own answer, and train the model
**without** the prompt to match it, minimising KL(prompted || student) token by token.

What this module does:

1. Prompts: the bundled instruction seed tasks and knowledge questions (``n_prompts``), split into
   train and held-out by a hash of the prompt text (``heldout_fraction``).
2. Teacher answers: the base model with :data:`HHH_PROMPT` as its system message samples one answer
   per prompt (through the store, ``temperature``, per-prompt seed).
3. Teacher distributions: for each answer token, the top-``top_k`` (50) log-probabilities of the
   prompted model and the remaining mass as one more bucket (51 in all), through the store's
   scores table.
4. Student: LoRA on the base model, input = the same user turn **without** the HHH prompt (see the
   note below), loss = KL between the teacher's 51 buckets and the student's probabilities of the
   same 50 tokens plus the rest, averaged over answer tokens. Trained with ``transformers.Trainer``
   and a custom loss (TRL's distillation trainers give the teacher and the student the same input;
   here they differ by the system prompt), on the shared training pieces (precision from the
   hardware, resumable checkpoints, atomic merged save, fingerprint/skip): the trainer is
   :func:`selfalign.train.distill.train_distilled_rows`, with the other trainers.
5. Baseline: the sequence-level version, SFT of the prompt-less model on the teacher's answers.
6. Evaluation on held-out prompts: the **full-vocabulary** KL(prompted base || model without the
   prompt) per answer token of the teacher's answers, for the undistilled base, the sequence-level
   SFT model and the token-level distilled model, each the mean over prompts with a bootstrap
   interval; the distilled/undistilled ratio is the headline.

Note: SmolLM2's chat template inserts its own short system message ("You are a helpful AI assistant
named SmolLM, trained by Hugging Face") when a conversation has none, so "without the prompt" means
with that default message, exactly what the model sees when deployed without a system prompt.

Deviations: the papers distil a 52B model over a large prompt distribution with the prompt as
conversation context; here the HHH prompt is our own short text, given as a system message, over a
few hundred bundled prompts, one sampled answer each; the KL is truncated to 50 tokens + rest in
training (as the paper does) but measured over the full vocabulary in evaluation.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from selfalign.train.base import TrainConfig
from selfalign.train.distill import main, train_distilled_rows

HHH_PROMPT = (
    "You are a careful, honest and kind assistant. You help people with what they ask when it is safe, and you "
    "explain briefly when you cannot. You never make up facts: if you do not know the answer, you say \"I don't "
    "know\". You keep answers short and clear, you admit mistakes, and you treat everyone with respect."
)


@dataclass
class DistillConfig:
    base: str = "smollm2-135m"  # the model to distil into itself (a directory or hub id)
    system_prompt: str = HHH_PROMPT
    n_prompts: int = 300  # bundled prompts (seed tasks first, then knowledge questions)
    heldout_fraction: float = 0.2
    temperature: float = 1.0  # teacher answers
    max_tokens: int = 48
    top_k: int = 50
    seed: int = 0
    bootstrap: int = 1000
    store: str = ""
    out: str = "runs/distill"
    sequence_baseline: bool = True
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=2.0, learning_rate=2e-4, batch_size=8))

    def __post_init__(self) -> None:
        if isinstance(self.train, dict):
            self.train = TrainConfig(**self.train)
        if not 0 < self.heldout_fraction < 1:
            raise ValueError(f"heldout_fraction must be in (0, 1), got {self.heldout_fraction}")
        if self.n_prompts < 4:
            raise ValueError(f"n_prompts must be >= 4, got {self.n_prompts}")
        if not 1 <= self.top_k <= 1000 or self.max_tokens < 1 or self.temperature < 0:
            raise ValueError("top_k must be in [1, 1000], max_tokens >= 1 and temperature >= 0")
        if not self.system_prompt.strip():
            raise ValueError("system_prompt must not be empty")


def bundled_prompts(n: int) -> list[str]:
    """Instructions from the bundled seed tasks (with their first input), then knowledge questions."""
    from importlib import resources

    from selfalign.data.formats import load_qa
    from selfalign.data.io import read_jsonl

    seeds = read_jsonl(str(resources.files("selfalign.data.bundled").joinpath("seed_tasks.jsonl")))
    out = []
    for t in seeds:
        inst = t["instruction"]
        first = (t.get("instances") or [{}])[0].get("input", "")
        out.append(f"{inst}\n\n{first}".strip())
    out += [q.question for q in load_qa("bundled", split="train")]
    return out[:n]


def is_held_out(text: str, fraction: float, seed: int = 0) -> bool:
    return int(hashlib.sha256(f"{seed}|{text}".encode()).hexdigest()[:8], 16) / 16**8 < fraction


# ------------------------------------------------------------------ teacher side
@dataclass
class Example:
    prompt: str
    answer: str
    teacher_ids: list[int]  # rendered prompt with the system message + answer tokens
    student_ids: list[int]  # rendered prompt without it + the same answer tokens
    n_answer: int
    topk: list[tuple[list[int], list[float]]] = field(default_factory=list)  # per answer token


def _messages(system: str | None, user_text: str) -> tuple[Any, ...]:
    from selfalign.types import Message

    return ((Message("system", system),) if system else ()) + (Message("user", user_text),)


def build_examples(hf: Any, cached: Any, prompts: Sequence[str], cfg: DistillConfig) -> list[Example]:
    """Teacher answers (through the store) and both tokenisations of each."""
    from selfalign.types import GenParams, GenRequest

    params = GenParams(temperature=cfg.temperature, max_tokens=cfg.max_tokens)
    res = cached.generate([GenRequest(_messages(cfg.system_prompt, p), params, seed=cfg.seed) for p in prompts],
                          description="distill: teacher answers with the system prompt")
    eos = hf.tokenizer.eos_token_id
    out = []
    for p, r in zip(prompts, res):
        c = r.completions[0]
        ans = hf.tokenizer.encode(c.text, add_special_tokens=False) + ([eos] if c.finish_reason == "stop" else [])
        if not ans:
            continue
        out.append(Example(p, c.text, hf.encode_prompt(_messages(cfg.system_prompt, p)) + ans,
                           hf.encode_prompt(_messages(None, p)) + ans, len(ans)))
    return out


def _answer_logprobs(model: Any, ids: list[int], n_answer: int) -> Any:
    """Log-softmax over the vocabulary at the positions that predict the last ``n_answer`` tokens."""
    import torch

    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids], device=model.device)).logits[0]
    start = len(ids) - n_answer - 1
    return torch.log_softmax(logits[start:start + n_answer].float(), dim=-1)


def teacher_topk(hf: Any, store: Any, examples: Sequence[Example], k: int,
                 progress: Callable[[int, int], None] | None = None) -> None:
    """Fill each example's ``topk`` (ids, log-probs) from the prompted model, through the store."""
    from selfalign.types import stable_hash

    keys = [stable_hash({"distill_topk": hf.model_id, "ids": ex.teacher_ids, "n": ex.n_answer, "k": k})
            for ex in examples]
    have = store.get_scores(keys)
    new = []
    for i, (ex, key) in enumerate(zip(examples, keys)):
        if key not in have:
            lp = _answer_logprobs(hf.model, ex.teacher_ids, ex.n_answer)
            top = lp.topk(k, dim=-1)
            flat: list[float] = []
            for ids, vals in zip(top.indices.tolist(), top.values.tolist()):
                for t, v in zip(ids, vals):
                    flat += [float(t), v]
            have[key] = tuple(flat)
            new.append((key, hf.model_id, {"distill_topk": k}, tuple(flat)))
            if len(new) >= 32:
                store.put_scores(new)
                new = []
        flat_v = have[key]
        per = [(list(map(int, flat_v[j:j + 2 * k:2])), list(flat_v[j + 1:j + 2 * k:2]))
               for j in range(0, len(flat_v), 2 * k)]
        ex.topk = per
        if progress:
            progress(i + 1, len(examples))
    if new:
        store.put_scores(new)


def train_distilled(examples: Sequence[Example], base: str, out_dir: str | Path, cfg: TrainConfig,
                    base_id: str | None = None) -> Any:
    """Token-level context distillation of ``base`` (LoRA, merged at the end) on the examples."""
    return train_distilled_rows(distill_rows(examples), base, out_dir, cfg, base_id)


def distill_rows(examples: Sequence[Example]) -> list[dict[str, Any]]:
    """The training rows of the examples (:data:`selfalign.train.distill.DISTILL_COLUMNS`): the student's input, the
    positions whose next token is an answer token, and the teacher's top-k ids and log-probs there."""
    return [{"input_ids": ex.student_ids,
             "positions": list(range(len(ex.student_ids) - ex.n_answer - 1, len(ex.student_ids) - 1)),
             "teacher_ids": [t for t, _ in ex.topk], "teacher_logprobs": [v for _, v in ex.topk]} for ex in examples]


def kl_to_prompted(teacher: Any, student: Any, examples: Sequence[Example]) -> list[float]:
    """Per example: mean over answer tokens of the full-vocabulary KL(prompted teacher || student
    without the prompt)."""
    out = []
    for ex in examples:
        p = _answer_logprobs(teacher, ex.teacher_ids, ex.n_answer)
        q = _answer_logprobs(student, ex.student_ids, ex.n_answer)
        out.append(float((p.exp() * (p - q)).sum(-1).mean()))
    return out


@dataclass
class DistillResult:
    """The summary (held-out KL per model, the token-level ratio, trainings) and a row per held-out prompt."""
    summary: dict[str, Any]
    rows: list[dict[str, Any]]


def run(cfg: DistillConfig, progress: Callable[[str], None] | None = None, store: Any = None,
        base_path: str | None = None) -> DistillResult:
    """The whole stage; returns the summary and the held-out rows. Resumable: answers and teacher distributions
    through the store, trainings skipped when their inputs are unchanged."""
    from selfalign.evals.stats import mean_ci, paired_bootstrap
    from selfalign.models.hf import HFModel
    from selfalign.models.registry import require_trainable
    from selfalign.store.cache import CachedModel, Store
    from selfalign.train.sft import train_sft

    say = progress or (lambda m: None)
    store = store if store is not None else Store(cfg.store or None)
    base = base_path or require_trainable(cfg.base)
    hf = HFModel(base)
    prompts = bundled_prompts(cfg.n_prompts)
    say(f"teacher answers for {len(prompts)} prompts (with the system prompt)")
    examples = build_examples(hf, CachedModel(hf, store, description="distill"), prompts, cfg)
    train = [ex for ex in examples if not is_held_out(ex.prompt, cfg.heldout_fraction, cfg.seed)]
    test = [ex for ex in examples if is_held_out(ex.prompt, cfg.heldout_fraction, cfg.seed)]
    if not train or not test:
        raise ValueError(f"need training and held-out prompts, got {len(train)} and {len(test)}")
    say(f"teacher top-{cfg.top_k} log-probabilities over {sum(ex.n_answer for ex in train)} answer tokens")
    teacher_topk(hf, store, train, cfg.top_k)
    out = Path(cfg.out)
    say(f"token-level distillation on {len(train)} examples")
    kd = train_distilled(train, base, out / "token", cfg.train, base_id=cfg.base)
    models: dict[str, Any] = {"undistilled": hf.model}
    from transformers import AutoModelForCausalLM

    models["token-level"] = AutoModelForCausalLM.from_pretrained(str(kd.model_dir)).eval()
    seq = None
    if cfg.sequence_baseline:
        say("sequence-level baseline: SFT without the prompt on the teacher's answers")
        rows = [{"prompt": [{"role": "user", "content": ex.prompt}],
                 "completion": [{"role": "assistant", "content": ex.answer}]} for ex in train]
        seq = train_sft(rows, base, out / "sequence", cfg.train, base_id=cfg.base)
        models["sequence-level"] = AutoModelForCausalLM.from_pretrained(str(seq.model_dir)).eval()
    say(f"KL(prompted || model) on {len(test)} held-out prompts")
    kls = {name: kl_to_prompted(hf.model, m, test) for name, m in models.items()}
    summary: dict[str, Any] = {"train_prompts": len(train), "test_prompts": len(test),
                               "answer_tokens_train": sum(ex.n_answer for ex in train),
                               "kl": {n: mean_ci(v, cfg.bootstrap, cfg.seed) for n, v in kls.items()},
                               "token_seconds": kd.seconds, "token_losses": kd.losses,
                               "sequence_seconds": seq.seconds if seq else None,
                               "models": {"token-level": str(kd.model_dir),
                                          **({"sequence-level": str(seq.model_dir)} if seq else {})}}
    und = summary["kl"]["undistilled"]["value"]
    summary["ratio_token_to_undistilled"] = summary["kl"]["token-level"]["value"] / und if und else math.nan
    d = paired_bootstrap(kls["undistilled"], kls["token-level"], resamples=cfg.bootstrap, seed=cfg.seed)
    summary["token_minus_undistilled"] = {"value": d.diff, "lo": d.lo, "hi": d.hi}
    rows_out = [{"prompt": ex.prompt, "answer": ex.answer, "n_answer": ex.n_answer,
                 **{f"kl_{n}": kls[n][i] for n in kls}} for i, ex in enumerate(test)]
    return DistillResult(summary=summary, rows=rows_out)


if __name__ == "__main__":  # python -m selfalign.rlhf.distill: the earlier name of python -m selfalign.train.distill
    main()
