"""Supervised fine-tuning through TRL's SFTTrainer (a thin adapter; TRL renames live here).

Rows are TRL prompt-completion rows (conversational or plain); the loss is on the completion
only. LoRA by default (merged into the base weights at the end, so the output directory is a
plain transformers model that the ``hf`` backend loads by path); full fine-tuning with
``lora: false``. ``lora_layers: N`` puts adapters on the top N decoder layers only, which also
stops back-propagation below them: on a CPU it is the main lever on training time.

Resumable: checkpoints go to ``<out>/checkpoints`` and a re-run continues from the last one; a
finished run writes ``<out>/train.json`` with a fingerprint of (base model, rows, config) and is
skipped when re-run with the same inputs.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from selfalign.models.base import MissingExtra
from selfalign.types import stable_hash

DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class TrainConfig:
    lora: bool = True
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_layers: int = 0  # adapters on the top N decoder layers only (0 = every layer)
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    epochs: float = 2.0
    max_steps: int = -1
    learning_rate: float = 2e-4
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.05
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 256
    save_steps: int = 100
    seed: int = 0
    logging_steps: int = 10


@dataclass
class TrainResult:
    model_dir: Path
    losses: list[float]
    seconds: float
    n_rows: int
    skipped: bool = False


def _require_trl() -> None:
    import importlib.util

    for pkg in ("trl", "peft", "datasets"):
        if importlib.util.find_spec(pkg) is None:
            raise MissingExtra(pkg, "train", "training")


def fingerprint(base: str, rows: Sequence[dict[str, Any]], cfg: TrainConfig) -> str:
    from selfalign.config import config_to_dict

    clean = [{k: r[k] for k in ("prompt", "completion") if k in r} for r in rows]
    return stable_hash({"base": base, "rows": clean, "config": config_to_dict(cfg)})


def train_sft(rows: Sequence[dict[str, Any]], base: str, out_dir: str | Path, cfg: TrainConfig | None = None,
              base_id: str | None = None) -> TrainResult:
    """Fine-tune ``base`` (hub id or local path) on ``rows``; the merged model lands in ``out_dir/model``."""
    cfg = cfg or TrainConfig()
    out = Path(out_dir)
    fp = fingerprint(base_id or base, rows, cfg)
    done = out / "train.json"
    if done.exists():
        info = json.loads(done.read_text())
        if info.get("fingerprint") == fp and (out / "model" / "config.json").exists():
            return TrainResult(out / "model", info.get("losses", []), info.get("seconds", 0.0), len(rows), skipped=True)
    if not rows:
        raise ValueError("no training rows")
    _require_trl()
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTConfig, SFTTrainer

    t0 = time.time()
    ckpt_dir = out / "checkpoints"
    if (ckpt_dir / "fingerprint").exists() and (ckpt_dir / "fingerprint").read_text() != fp:
        shutil.rmtree(ckpt_dir)  # checkpoints of other inputs: never resume from them
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    (ckpt_dir / "fingerprint").write_text(fp)
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    ds = Dataset.from_list([{k: r[k] for k in ("prompt", "completion")} for r in rows])
    peft_config = None
    if cfg.lora:
        from peft import LoraConfig

        n_layers = model.config.num_hidden_layers
        layers = list(range(n_layers - cfg.lora_layers, n_layers)) if 0 < cfg.lora_layers < n_layers else None
        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                 target_modules=list(cfg.target_modules), layers_to_transform=layers,
                                 task_type="CAUSAL_LM")
    args = SFTConfig(
        output_dir=str(ckpt_dir),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=1,
        report_to=[],
        max_length=cfg.max_length,
        completion_only_loss=True,
        seed=cfg.seed,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_config)
    trainer.train(resume_from_checkpoint=get_last_checkpoint(str(ckpt_dir)))
    losses = [float(h["loss"]) for h in trainer.state.log_history if "loss" in h]
    final = trainer.model
    if cfg.lora:
        final = final.merge_and_unload()
    model_dir = out / "model"
    tmp = out / "model.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    final.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    if model_dir.exists():
        shutil.rmtree(model_dir)
    tmp.rename(model_dir)
    seconds = time.time() - t0
    done.write_text(json.dumps({"fingerprint": fp, "base": base_id or base, "losses": losses, "seconds": seconds,
                                "n_rows": len(rows), "config": vars(cfg)}, indent=2))
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return TrainResult(model_dir, losses, seconds, len(rows))
