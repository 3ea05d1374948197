"""RL with a KL penalty, HH's objective, through TRL's RLOOTrainer (a thin mapping over :mod:`selfalign.train.base`).

Bai et al. 2022 (arXiv 2204.05862), §4.1: the policy is trained with the reward
r = r_PM - beta * KL(policy || initial policy). TRL 1.16 has no PPO trainer any more; its
RLOOTrainer (Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for
Learning from Human Feedback in LLMs") samples ``num_generations`` completions per prompt,
subtracts beta times each sample's summed per-token log-ratio to the reference from its reward,
exactly HH's shaped reward, and uses the leave-one-out mean of the other samples' rewards as
the baseline. ``beta`` must be > 0 here: GRPO's default beta is 0 (no KL), which is not RLHF.

The reward function is given (``reward_fn(prompts, completions) -> list[float]``); for RLHF it is
a preference model's :meth:`selfalign.train.reward.CachedPM.rewards`, the same code path that trains
and evaluates the PM (one tokenisation, read at the end-of-context token). With LoRA (the
default) the reference model is the base with adapters disabled.

Every logging step keeps TRL's ``kl`` (mean per-token log-ratio on the sampled tokens, which can
be negative) and the mean reward, and beside them, on the same training completions,
``kl_seq`` (the per-sequence log-ratio sum, the quantity the penalty uses) and ``kl_k3_seq``
(Schulman's non-negative k3 = (ratio - 1) - log ratio per token, summed per sequence), computed
by one extra forward pass of the policy and of the reference; a ``monitor`` (e.g. the held-out
PM's reward and the gold accuracy of the same completions) adds its own metrics to each step.
:func:`sequence_kl` measures KL(policy || reference) per sequence on held-out prompts with the
same two estimators.

Deviations from HH: RLOO instead of PPO (no value network; the paper's PPO also has a value
head and clipping); rewards are not whitened; the KL is the sampled estimate TRL uses.

Run as a script against a saved PM (``accelerate launch`` too): ``python -m selfalign.train.rloo``
(:func:`main`; ``selfalign.rlhf.train_rl`` is its earlier name).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from selfalign.train.base import (
    TrainConfig,
    TrainingRun,
    TrainResult,
    fingerprint as _fingerprint,
    load_for_training,
    lora_config,
    script_main,
    trainer_args,
)
from selfalign.train.reward import PreferenceModel

RewardFn = Callable[[Sequence[Any], Sequence[Any]], list[float]]
Monitor = Callable[[Sequence[Any], Sequence[Any]], dict[str, float]]


@dataclass
class RLOOTrainConfig(TrainConfig):
    beta: float = 0.05  # the KL coefficient of r = r_PM - beta KL
    num_generations: int = 4  # samples per prompt (the leave-one-out group)
    max_completion_length: int = 32
    temperature: float = 1.0
    learning_rate: float = 1e-5
    epochs: float = 1.0
    batch_size: int = 8  # completions per device step (a multiple of num_generations)
    logging_steps: int = 1
    snapshot_steps: list[int] = field(default_factory=list)  # also save the merged policy after these steps

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0 (a KL penalty; beta = 0 is reward hacking unchecked), got {self.beta}")
        if self.num_generations < 2:
            raise ValueError(f"num_generations must be >= 2 (leave-one-out needs a group), got {self.num_generations}")
        if (self.batch_size * self.grad_accum) % self.num_generations:
            raise ValueError(f"batch_size x grad_accum ({self.batch_size * self.grad_accum}) must be a multiple of "
                             f"num_generations ({self.num_generations})")


def fingerprint(base: str, prompts: Sequence[Any], cfg: RLOOTrainConfig, reward_id: str) -> str:
    rows = [{"prompt": p} for p in prompts]
    return _fingerprint("rloo", base + "|reward=" + reward_id, rows, cfg, ("prompt",))


@dataclass
class RLResult(TrainResult):
    history: list[dict[str, float]] | None = None  # per logging step: reward, kl, loss


def train_rloo(prompts: Sequence[Any], reward_fn: RewardFn, reward_id: str, base: str, out_dir: str | Path,
               cfg: RLOOTrainConfig | None = None, base_id: str | None = None, monitor: Monitor | None = None
               ) -> RLResult:
    """RLOO from ``base`` on ``prompts`` (chat message lists) against ``reward_fn``; the merged
    policy lands in ``out_dir/model``. ``reward_id`` names the reward (the PM's id) for the fingerprint.
    ``monitor(prompts, completions)`` returns extra metrics of each batch (it does not change
    training, so it is not in the fingerprint)."""

    cfg = cfg or RLOOTrainConfig()
    run = TrainingRun(out_dir, fingerprint(base_id or base, prompts, cfg, reward_id))
    if (earlier := run.begin(len(prompts), "prompts", RLResult, ("history",))) is not None:
        return earlier
    from datasets import Dataset
    from trl import RLOOConfig, RLOOTrainer

    precision, resume, tok, model = load_for_training(cfg, run, base)
    ds = Dataset.from_list([{"prompt": [dict(m) for m in p]} for p in prompts])

    holder: dict[str, Any] = {}

    def reward(prompts: list, completions: list, completion_ids: list | None = None, log_metric: Any = None,
               **_: Any) -> list[float | None]:
        out: list[float | None] = [float(x) for x in reward_fn(prompts, completions)]
        if log_metric is not None:
            if completion_ids is not None and "trainer" in holder:
                for k, v in sampled_kl(holder["trainer"], prompts, completion_ids).items():
                    log_metric(k, v)
            if monitor is not None:
                for k, v in monitor(prompts, completions).items():
                    log_metric(k, float(v))
        return out

    reward.__name__ = "pm"  # TRL logs rewards/<name>
    peft_config = lora_config(cfg, model.config.num_hidden_layers) if cfg.lora else None
    args = RLOOConfig(**trainer_args(cfg, run.ckpt_dir, precision), beta=cfg.beta, num_generations=cfg.num_generations,
                      max_completion_length=cfg.max_completion_length, temperature=cfg.temperature)
    trainer = RLOOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=ds, processing_class=tok,
                          peft_config=peft_config)
    holder["trainer"] = trainer
    if cfg.snapshot_steps:
        trainer.add_callback(_Snapshots(run.out / "snapshots", set(cfg.snapshot_steps), tok, cfg.lora))
    def history(t: Any) -> list[dict[str, float]]:
        return [{k: float(v) for k, v in h.items() if isinstance(v, (int, float))}
                for h in t.state.log_history if "kl" in h or "reward" in h]

    res = run.train(trainer, tok, resume, len(prompts), base_id or base, cfg, precision,
                    extra=lambda t: {"history": history(t), "reward_id": reward_id})
    return RLResult(res.model_dir, res.losses, res.seconds, res.n_rows, False, res.precision, history(trainer))


def sampled_kl(trainer: Any, prompts: Sequence[Any], completion_ids: Sequence[Sequence[int]]) -> dict[str, float]:
    """Per-sequence KL(policy || reference) on the completions just sampled: the log-ratio sum and
    the non-negative k3 sum, averaged over the batch. The reference is TRL's ``ref_model`` or, with
    LoRA, the same network with its adapters disabled."""
    import contextlib

    import torch

    model = trainer.model
    tok = trainer.processing_class
    device = next(model.parameters()).device
    seqs, spans = [], []
    for p, c in zip(prompts, completion_ids):
        pids = tok.apply_chat_template(p, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        ids = list(pids) + list(c)
        seqs.append(ids)
        spans.append((len(pids), len(ids)))
    width = max(len(x) for x in seqs)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids_t = torch.full((len(seqs), width), pad, dtype=torch.long)
    att = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, x in enumerate(seqs):
        ids_t[i, :len(x)] = torch.tensor(x)
        att[i, :len(x)] = 1
    ids_t, att = ids_t.to(device), att.to(device)

    def logps(m: Any, ctx: Any) -> Any:
        with ctx, torch.no_grad():
            logits = m(input_ids=ids_t, attention_mask=att).logits.float()
        return torch.log_softmax(logits[:, :-1], -1).gather(-1, ids_t[:, 1:, None])[..., 0]

    ref = getattr(trainer, "ref_model", None)
    lp = logps(model, contextlib.nullcontext())
    if ref is not None:
        lq = logps(ref, contextlib.nullcontext())
    elif hasattr(model, "disable_adapter"):
        lq = logps(model, model.disable_adapter())
    else:  # no reference to compare with (cannot happen with beta > 0 in TRL)
        return {}
    plain: list[float] = []
    k3: list[float] = []
    for i, (a, b) in enumerate(spans):
        if b <= a:
            continue
        kl_plain, kl_k3 = kl_estimates(lp[i, a - 1:b - 1].tolist(), lq[i, a - 1:b - 1].tolist())  # sampled tokens
        plain.append(kl_plain)
        k3.append(kl_k3)
    if not plain:
        return {}
    return {"kl_seq": sum(plain) / len(plain), "kl_k3_seq": sum(k3) / len(k3)}


def kl_estimates(logp: Sequence[float], logq: Sequence[float]) -> tuple[float, float]:
    """Two estimates of KL(p || q) for one sequence sampled from p, from its tokens' log-probs
    under p and q: the log-ratio sum (unbiased, one sample can be negative) and the sum of
    Schulman's k3 = (q/p - 1) - log(q/p) per token (unbiased and never negative).

    >>> kl_estimates([-1.0, -2.0], [-1.0, -2.0])
    (0.0, 0.0)
    >>> plain, k3 = kl_estimates([-0.1], [-1.1])  # log p - log q = 1
    >>> plain, round(k3, 4)  # e^-1 - 1 + 1
    (1.0, 0.3679)
    """
    import math

    plain = sum(x - y for x, y in zip(logp, logq))
    k3 = sum(math.exp(y - x) - 1 - (y - x) for x, y in zip(logp, logq))
    return plain, k3


def _Snapshots(folder: Path, steps: set[int], tok: Any, merged: bool) -> Any:
    """A callback that saves the policy after the given optimizer steps as a plain model directory
    (LoRA merged into a copy; the training model is untouched), for the KL-vs-reward curve."""
    from transformers import TrainerCallback

    class Snapshots(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
            if state.global_step not in steps or not state.is_world_process_zero or model is None:
                return
            import copy
            import shutil

            dest = folder / f"step-{state.global_step}"
            tmp = folder / f"step-{state.global_step}.tmp"
            if dest.exists():
                return
            m = copy.deepcopy(model)
            if merged and hasattr(m, "merge_and_unload"):
                m = m.merge_and_unload()
            shutil.rmtree(tmp, ignore_errors=True)
            m.save_pretrained(tmp, safe_serialization=True)
            tok.save_pretrained(tmp)
            tmp.rename(dest)

    return Snapshots()


def snapshots(out_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, directory) of the saved snapshots of an RLOO run, in step order."""
    folder = Path(out_dir) / "snapshots"
    found = [(int(p.name.split("-")[1]), p) for p in folder.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp")]
    return sorted(found)


def sequence_kl(policy: Any, reference: Any, prompts: Sequence[Any], samples: Sequence[Sequence[str]]
                ) -> dict[str, float]:
    """KL(policy || reference) per sequence, estimated on completions sampled from the policy.

    ``policy``/``reference`` are store-wrapped models that can score. Two estimators, averaged
    over samples: ``kl`` = sum over tokens of log p - log q (unbiased; one sample can be
    negative), ``kl_k3`` = sum of (q/p - 1) - log(q/p) (non-negative per token, also unbiased);
    see :func:`kl_estimates`.
    """
    from selfalign.types import ScoreRequest

    reqs = [ScoreRequest(p, s) for p, ss in zip(prompts, samples) for s in ss if s.strip()]
    if not reqs:
        return {"kl": float("nan"), "kl_k3": float("nan"), "n": 0}
    lp = policy.score(reqs)
    lq = reference.score(reqs)
    plain, k3 = [], []
    for a, b in zip(lp, lq):
        if len(a.token_logprobs) != len(b.token_logprobs):
            raise ValueError("policy and reference tokenise the completion differently; KL needs one tokenizer")
        x, y = kl_estimates(a.token_logprobs, b.token_logprobs)
        plain.append(x)
        k3.append(y)
    return {"kl": sum(plain) / len(plain), "kl_k3": sum(k3) / len(k3), "n": len(plain)}


def bind_pm(a: Any, rows: Sequence[dict[str, Any]]) -> Callable[..., RLResult]:
    """The script's training function: RLOO against the PM at ``--reward-model``, checked here
    with the rows (a one-line error before anything loads), loaded when training starts. Every
    process loads the PM and rewards its own completions with
    :meth:`selfalign.train.reward.PreferenceModel.rewards` (the path that trained and evaluates
    it); the rewards do not go through the store here (each rank would write the same texts)."""
    pm_dir = Path(a.reward_model)
    if not (pm_dir / "config.json").exists():
        raise ValueError(f"--reward-model {pm_dir}: not a saved preference model (no config.json)")
    bad = next((i for i, r in enumerate(rows, 1) if not isinstance(r["prompt"], list)), None)
    if bad is not None:
        raise ValueError(f"{a.rows}:{bad}: field 'prompt' must be a list of chat messages")

    def train(rows: Sequence[dict[str, Any]], base: str, out: str, cfg: RLOOTrainConfig) -> RLResult:
        pm = PreferenceModel(pm_dir)
        return train_rloo([r["prompt"] for r in rows], pm.rewards, pm.model_id, base, out, cfg)

    return train


def main(argv: list[str] | None = None) -> None:
    """``python -m selfalign.train.rloo --rows prompts.jsonl --reward-model PM_DIR --base ... --out ...``:
    RLOO against a saved PM, one entry point for a single process and ``accelerate launch`` (rows
    are ``{"prompt": [chat messages]}``; only process 0 saves the policy and writes ``train.json``)."""
    script_main(argv, "python -m selfalign.train.rloo", main.__doc__ or "", RLOOTrainConfig, ("prompt",), train_rloo,
                options=[("--reward-model", {"required": True, "help": "directory of the preference model"})],
                bind=bind_pm)


if __name__ == "__main__":
    main()
