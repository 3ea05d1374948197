"""Supervised fine-tuning through TRL's SFTTrainer (a thin mapping over :mod:`selfalign.train.base`).

Rows are TRL prompt-completion rows (conversational or plain); the loss is on the completion
only. LoRA by default (merged into the base weights at the end, so the output directory is a
plain transformers model that the ``hf`` backend loads by path); full fine-tuning with
``lora: false``. ``lora_layers: N`` puts adapters on the top N decoder layers only, which also
stops back-propagation below them: on a CPU it is the main lever on training time.

Resumable: checkpoints go to ``<out>/checkpoints`` and a re-run continues from the last one; a
finished run writes ``<out>/train.json`` (losses, history, config) and the step record
``<out>/steps/training.json`` keyed by a fingerprint of (base model, rows, config); a re-run with
the same fingerprint, its model unchanged on disk, is skipped (:meth:`TrainingRun.is_finished`).

Also a script, so that ``accelerate launch`` runs it data-parallel (DDP on CPUs or GPUs, or
DeepSpeed through an accelerate config); the same code, unchanged::

    python -m selfalign.train.sft --rows rows.jsonl --base <hub id or path> --out runs/sft [--config train.yaml]
    # two processes on one machine; with no GPU this is torchrun + gloo on the CPU
    # (accelerate's --cpu with several processes selects its MPI launcher, which needs mpirun/oneCCL)
    accelerate launch --multi_gpu --num_processes 2 -m selfalign.train.sft --rows rows.jsonl --base ... --out ...
    # GPUs with DeepSpeed ZeRO-2 (pip install deepspeed)
    accelerate launch --use_deepspeed --zero_stage 2 --num_processes 8 -m selfalign.train.sft --rows ... --base ... --out ...

Only process 0 saves the model and writes ``train.json``; every process prints one
``selfalign-train: {json}`` line with its rank when it is done.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from selfalign.train.base import (
    DEFAULT_TARGETS,
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

__all__ = ["DEFAULT_TARGETS", "TrainConfig", "TrainResult", "fingerprint", "train_sft", "main"]

COLUMNS = ("prompt", "completion")


def fingerprint(base: str, rows: Sequence[dict[str, Any]], cfg: TrainConfig) -> str:
    return _fingerprint("sft", base, rows, cfg, COLUMNS)


def train_sft(rows: Sequence[dict[str, Any]], base: str, out_dir: str | Path, cfg: TrainConfig | None = None,
              base_id: str | None = None) -> TrainResult:
    """Fine-tune ``base`` (hub id or local path) on ``rows``; the merged model lands in ``out_dir/model``."""
    cfg = cfg or TrainConfig()
    check_rows(rows, cfg)  # zero rows or zero steps: refused before anything loads
    run = TrainingRun(out_dir, fingerprint(base_id or base, rows, cfg))
    if (earlier := run.begin(len(rows), "training rows")) is not None:
        return earlier
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    precision, resume, tok, model = load_for_training(cfg, run, base)
    ds = Dataset.from_list([{k: r[k] for k in COLUMNS} for r in rows])
    peft_config = lora_config(cfg, model.config.num_hidden_layers) if cfg.lora else None
    args = SFTConfig(**trainer_args(cfg, run.ckpt_dir, precision), max_length=cfg.max_length, completion_only_loss=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_config)
    return run.train(trainer, tok, resume, len(rows), base_id or base, cfg, precision)


def main(argv: list[str] | None = None) -> None:
    """``python -m selfalign.train.sft``: one entry point for a single process and ``accelerate launch``."""
    script_main(argv, "python -m selfalign.train.sft", __doc__ or "", TrainConfig, COLUMNS, train_sft)


if __name__ == "__main__":
    main()
