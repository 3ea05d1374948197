"""``python -m selfalign.rlhf.train_rl``: RL with a KL penalty (:func:`selfalign.train.rloo.train_rloo`)
against a saved preference model, as a script, so ``accelerate launch`` runs it data-parallel
unchanged (see :mod:`selfalign.train.sft` for the launcher's options on CPUs and GPUs)::

    python -m selfalign.rlhf.train_rl --rows prompts.jsonl --reward-model runs/pm/pm/model --base <hub id or path> --out runs/rl
    accelerate launch --multi_gpu --num_processes 2 -m selfalign.rlhf.train_rl --rows ... --reward-model ... --base ... --out ...

The rows are ``{"prompt": [chat messages]}``. Every process loads the PM and rewards its own
completions with :meth:`selfalign.reward.pm.PreferenceModel.rewards` (the path that trained and
evaluates it); here the rewards do not go through the store (each rank would write the same
texts). Only process 0 saves the policy and writes ``train.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from selfalign.reward.pm import PreferenceModel
from selfalign.train.base import script_main
from selfalign.train.rloo import RLOOTrainConfig, RLResult, train_rloo


def bind_pm(a: Any, rows: Sequence[dict[str, Any]]) -> Callable[..., RLResult]:
    """The script's training function: RLOO against the PM at ``--reward-model``, checked here
    with the rows (a one-line error before anything loads), loaded when training starts."""
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
    script_main(argv, "python -m selfalign.rlhf.train_rl", __doc__ or "", RLOOTrainConfig, ("prompt",), train_rloo,
                options=[("--reward-model", {"required": True, "help": "directory of the preference model"})],
                bind=bind_pm)


if __name__ == "__main__":
    main()
