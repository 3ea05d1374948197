"""Supervised fine-tuning through TRL's SFTTrainer (a thin mapping over :mod:`selfalign.train.base`).

Rows are TRL prompt-completion rows (conversational or plain); the loss is on the completion
only. LoRA by default (merged into the base weights at the end, so the output directory is a
plain transformers model that the ``hf`` backend loads by path); full fine-tuning with
``lora: false``. ``lora_layers: N`` puts adapters on the top N decoder layers only, which also
stops back-propagation below them: on a CPU it is the main lever on training time.

Resumable: checkpoints go to ``<out>/checkpoints`` and a re-run continues from the last one; a
finished run writes ``<out>/train.json`` with a fingerprint of (base model, rows, config) and is
skipped when re-run with the same inputs.

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
    fingerprint as _fingerprint,
    lora_config,
    losses_of,
    require_trl,
    resolve_precision,
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
    run = TrainingRun(out_dir, fingerprint(base_id or base, rows, cfg))
    earlier = run.finished(len(rows))
    if earlier is not None:
        return earlier
    if not rows:
        raise ValueError("no training rows")
    require_trl()
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    precision = resolve_precision(cfg)
    resume = run.prepare()
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    ds = Dataset.from_list([{k: r[k] for k in COLUMNS} for r in rows])
    peft_config = lora_config(cfg, model.config.num_hidden_layers) if cfg.lora else None
    args = SFTConfig(**trainer_args(cfg, run.ckpt_dir, precision), max_length=cfg.max_length, completion_only_loss=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_config)
    trainer.train(resume_from_checkpoint=resume)
    losses = losses_of(trainer)
    if trainer.accelerator.is_main_process:
        run.save(trainer.accelerator.unwrap_model(trainer.model), tok, merge_lora=cfg.lora)
        result = run.finish(losses, len(rows), base_id or base, cfg, precision)
    else:
        result = TrainResult(run.model_dir, losses, 0.0, len(rows), precision=precision.name)
    trainer.accelerator.wait_for_everyone()
    return result


def main(argv: list[str] | None = None) -> None:
    """``python -m selfalign.train.sft``: one entry point for a single process and ``accelerate launch``."""
    import argparse
    import json
    import os
    import sys

    from selfalign.config import ConfigError, config_from_yaml
    from selfalign.data.io import DataError, read_jsonl

    ap = argparse.ArgumentParser(prog="python -m selfalign.train.sft", description=__doc__.split("\n")[0])
    ap.add_argument("--rows", required=True, help="JSONL of TRL prompt-completion rows")
    ap.add_argument("--base", required=True, help="hub id or local path of the model to fine-tune")
    ap.add_argument("--out", required=True, help="output directory (the model lands in OUT/model)")
    ap.add_argument("--config", default="", help="YAML of TrainConfig options")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one option")
    a = ap.parse_args(argv)
    try:  # every input checked before the model loads; a bad one is one line and exit 2, as in the CLI
        cfg = config_from_yaml(TrainConfig, a.config or None, a.set)
        rows = read_jsonl(a.rows, required=COLUMNS)
    except (DataError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    res = train_sft(rows, a.base, a.out, cfg)
    line = "selfalign-train: " + json.dumps({"process": int(os.environ.get("RANK", "0")), "world_size": int(os.environ.get("WORLD_SIZE", "1")),
                      "model_dir": str(res.model_dir), "skipped": res.skipped, "precision": res.precision,
                      "n_rows": res.n_rows, "last_loss": res.losses[-1] if res.losses else None})
    sys.stdout.write(line + "\n")  # one write: several ranks share the same stdout
    sys.stdout.flush()


if __name__ == "__main__":
    main()
