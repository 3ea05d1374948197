"""Direct Preference Optimisation through TRL's DPOTrainer (a thin mapping over :mod:`selfalign.train.base`).

Rafailov et al. 2023, "Direct Preference Optimization" (arXiv 2305.18290): the loss on a pair is
-log sigmoid(beta [(log pi(y_c|x) - log ref(y_c|x)) - (log pi(y_r|x) - log ref(y_r|x))]). With LoRA
(the default) the reference model is the same network with its adapters disabled (TRL does this
when given a PEFT config and no reference model), so no second copy is held in memory.

Rows are TRL preference rows (``prompt``, ``chosen``, ``rejected``). Every logged step keeps
TRL's ``logps/chosen`` and ``logps/rejected`` (the policy's sequence log-probabilities) and the
implicit rewards; :func:`train_dpo` returns them, because **both log-probabilities falling** while
the margin grows is a known DPO failure (the policy moves mass to neither response); the result
flags it (``both_logps_fell``).

Resumable and skipped when unchanged, like SFT; also ``python -m selfalign.train.dpo --rows ...
--base ... --out ...`` so ``accelerate launch`` runs it data-parallel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from selfalign.train.base import (
    TrainConfig,
    TrainingRun,
    TrainResult,
    check_rows,
    fingerprint as _fingerprint,
    load_for_training,
    lora_config,
    script_main,
    trainer_args,
)

COLUMNS = ("prompt", "chosen", "rejected")


@dataclass
class DPOTrainConfig(TrainConfig):
    beta: float = 0.1
    loss_type: str = "sigmoid"  # TRL's loss types: sigmoid (DPO), ipo, hinge, ...
    learning_rate: float = 5e-5
    epochs: float = 1.0
    logging_steps: int = 1  # the chosen/rejected log-prob trend is read from every logged step

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")


@dataclass
class DPOResult(TrainResult):
    logps_chosen: list[float] = field(default_factory=list)
    logps_rejected: list[float] = field(default_factory=list)
    margins: list[float] = field(default_factory=list)

    @property
    def both_logps_fell(self) -> bool:
        c, r = self.logps_chosen, self.logps_rejected
        return len(c) >= 2 and c[-1] < c[0] and r[-1] < r[0]


def fingerprint(base: str, rows: Sequence[dict[str, Any]], cfg: DPOTrainConfig) -> str:
    return _fingerprint("dpo", base, rows, cfg, COLUMNS)


def _history(trainer_or_info: Any, key: str) -> list[float]:
    hist = trainer_or_info.state.log_history if hasattr(trainer_or_info, "state") else trainer_or_info
    return [float(h[key]) for h in hist if key in h and "loss" in h]


def train_dpo(rows: Sequence[dict[str, Any]], base: str, out_dir: str | Path, cfg: DPOTrainConfig | None = None,
              base_id: str | None = None) -> DPOResult:
    """DPO on ``rows`` from ``base``; the merged model lands in ``out_dir/model``."""
    cfg = cfg or DPOTrainConfig()
    check_rows(rows, cfg)  # zero rows or zero steps: refused before anything loads
    run = TrainingRun(out_dir, fingerprint(base_id or base, rows, cfg))
    trend_keys = ("logps_chosen", "logps_rejected", "margins")
    if (earlier := run.begin(len(rows), "preference rows", DPOResult, trend_keys)) is not None:
        return earlier
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    precision, resume, tok, model = load_for_training(cfg, run, base)
    ds = Dataset.from_list([{k: r[k] for k in COLUMNS} for r in rows])
    peft_config = lora_config(cfg, model.config.num_hidden_layers) if cfg.lora else None
    args = DPOConfig(**trainer_args(cfg, run.ckpt_dir, precision), beta=cfg.beta, loss_type=[cfg.loss_type],
                     max_length=cfg.max_length)
    trainer = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_config)
    def trend(t: Any) -> dict[str, Any]:
        return {"logps_chosen": _history(t, "logps/chosen"), "logps_rejected": _history(t, "logps/rejected"),
                "margins": _history(t, "rewards/margins"), "beta": cfg.beta}

    res = run.train(trainer, tok, resume, len(rows), base_id or base, cfg, precision, extra=trend)
    got = trend(trainer)
    lc, lr, mg = got["logps_chosen"], got["logps_rejected"], got["margins"]
    return DPOResult(res.model_dir, res.losses, res.seconds, res.n_rows, False, res.precision, lc, lr, mg)


def main(argv: list[str] | None = None) -> None:
    """``python -m selfalign.train.dpo``: one entry point for a single process and ``accelerate launch``."""
    script_main(argv, "python -m selfalign.train.dpo", __doc__ or "", DPOTrainConfig, COLUMNS, train_dpo,
                lambda res: {"both_logps_fell": res.both_logps_fell})


if __name__ == "__main__":
    main()
