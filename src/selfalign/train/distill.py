"""The context-distillation trainer (Askell et al. 2021, §3.2; see :mod:`selfalign.rlhf.distill`
for the method, its teacher and its evaluation): ``transformers.Trainer`` with a token-level KL
loss against the teacher's top-k log-probabilities plus one "rest" bucket, on the shared training
pieces (:mod:`selfalign.train.base`: precision from the hardware, resumable checkpoints, atomic
merged save, fingerprint/skip). TRL's distillation trainers give teacher and student the same
input; here they differ by the system prompt, so the teacher's distributions are precomputed into
the rows (:data:`DISTILL_COLUMNS`).

Also a script, so ``accelerate launch`` trains it data-parallel (see :mod:`selfalign.train.sft`)::

    python -m selfalign.train.distill --rows rows.jsonl --base <hub id or path> --out runs/distill [--set ...]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from selfalign.train.base import (TrainConfig, TrainingRun, fingerprint, load_for_training, lora_config, script_main,
                                  trainer_args)

DISTILL_COLUMNS = ("input_ids", "positions", "teacher_ids", "teacher_logprobs")


# ------------------------------------------------------------------ the loss
def bucket_kl(teacher_lp: Any, student_lp_at_ids: Any) -> Any:
    """KL(teacher || student) over k tokens + one "rest" bucket, per position.

    ``teacher_lp`` and ``student_lp_at_ids`` are [..., k] log-probabilities of the same k tokens.

    >>> import torch
    >>> t = torch.log(torch.tensor([[0.5, 0.3]]))
    >>> round(float(bucket_kl(t, t)[0]), 6)
    0.0
    >>> round(float(bucket_kl(t, torch.log(torch.tensor([[0.3, 0.5]])))[0]), 4)  # 0.5 ln(5/3) + 0.3 ln(3/5)
    0.1022
    """
    import torch

    p = teacher_lp.exp()
    p_rest = (1 - p.sum(-1)).clamp(min=0.0)
    q_rest_log = torch.log((1 - student_lp_at_ids.exp().sum(-1)).clamp(min=1e-8))
    p_rest_log = torch.log(p_rest.clamp(min=1e-12))
    kl = (p * (teacher_lp - student_lp_at_ids)).sum(-1) + torch.where(p_rest > 0, p_rest * (p_rest_log - q_rest_log),
                                                                     torch.zeros_like(p_rest))
    return kl


def _collate(pad_id: int, k: int) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        L = max(len(b["input_ids"]) for b in batch)
        R = max(len(b["positions"]) for b in batch)
        ids = torch.full((len(batch), L), pad_id, dtype=torch.long)
        att = torch.zeros((len(batch), L), dtype=torch.long)
        pos = torch.full((len(batch), R), -1, dtype=torch.long)
        tid = torch.zeros((len(batch), R, k), dtype=torch.long)
        tlp = torch.zeros((len(batch), R, k), dtype=torch.float32)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n] = torch.tensor(b["input_ids"])
            att[i, :n] = 1
            r = len(b["positions"])
            pos[i, :r] = torch.tensor(b["positions"])
            tid[i, :r] = torch.tensor(b["teacher_ids"])
            tlp[i, :r] = torch.tensor(b["teacher_logprobs"])
        return {"input_ids": ids, "attention_mask": att, "positions": pos, "teacher_ids": tid, "teacher_logprobs": tlp}

    return collate


def check_distill_rows(rows: Sequence[dict[str, Any]], source: str = "rows") -> int:
    """Refuse rows the training would crash on, naming the row; returns the teacher's top-k (one
    k for all rows): per row as many positions as teacher id lists and log-prob lists, each list k
    long, positions inside the input."""
    k = next((len(r["teacher_ids"][0]) for r in rows if r["teacher_ids"]), 0)
    for line, r in enumerate(rows, 1):
        n = len(r["positions"])
        if len(r["teacher_ids"]) != n or len(r["teacher_logprobs"]) != n:
            raise ValueError(f"{source}:{line}: {n} positions but {len(r['teacher_ids'])} teacher_ids and "
                             f"{len(r['teacher_logprobs'])} teacher_logprobs lists")
        if any(len(t) != k for t in r["teacher_ids"]) or any(len(t) != k for t in r["teacher_logprobs"]):
            raise ValueError(f"{source}:{line}: every teacher_ids / teacher_logprobs list must have the same length "
                             f"({k}, from the first row with positions)")
        if any(not 0 <= p < len(r["input_ids"]) - 1 for p in r["positions"]):
            raise ValueError(f"{source}:{line}: a position outside input_ids (each must predict a next token)")
    if not k:
        raise ValueError(f"{source}: no row has an answer position to distill")
    return k


def train_distilled_rows(rows: Sequence[dict[str, Any]], base: str, out_dir: str | Path, cfg: TrainConfig,
                         base_id: str | None = None) -> Any:
    """Token-level distillation of ``base`` (LoRA, merged at the end) on rows made by
    :func:`selfalign.rlhf.distill.distill_rows`: per answer position, KL between the teacher's top-k
    buckets (+ the rest) and the student's probabilities of the same tokens."""
    rows = list(rows)
    run = TrainingRun(out_dir, fingerprint("context-distill", base_id or base, rows, cfg, DISTILL_COLUMNS))
    if (earlier := run.begin(len(rows), "distillation rows", trl=False)) is not None:
        return earlier
    import torch
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import Trainer, TrainingArguments

    k = check_distill_rows(rows)
    precision, resume, tok, model = load_for_training(cfg, run, base)
    if cfg.lora:
        model = get_peft_model(model, lora_config(cfg, model.config.num_hidden_layers))

    class KDTrainer(Trainer):
        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            pos = inputs["positions"]
            mask = pos >= 0
            hidden = out.logits.gather(1, pos.clamp(min=0)[..., None].expand(-1, -1, out.logits.shape[-1]))
            logq = torch.log_softmax(hidden.float(), dim=-1).gather(-1, inputs["teacher_ids"])
            kl = bucket_kl(inputs["teacher_logprobs"], logq)
            loss = (kl * mask).sum() / mask.sum().clamp(min=1)
            return (loss, out) if return_outputs else loss

    args = TrainingArguments(**trainer_args(cfg, run.ckpt_dir, precision), remove_unused_columns=False)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    trainer = KDTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), data_collator=_collate(pad, k))
    return run.train(trainer, tok, resume, len(rows), base_id or base, cfg, precision)


def main(argv: list[str] | None = None) -> None:
    """``python -m selfalign.train.distill``: the token-level training alone on rows made by
    :func:`selfalign.rlhf.distill.distill_rows` (one entry point for a single process and ``accelerate launch``)."""
    def bind(a: Any, rows: Sequence[dict[str, Any]]) -> Callable[..., Any]:
        check_distill_rows(rows, a.rows)  # before the model loads
        return train_distilled_rows

    script_main(argv, "python -m selfalign.train.distill", __doc__ or "", TrainConfig, DISTILL_COLUMNS,
                train_distilled_rows, bind=bind)


if __name__ == "__main__":
    main()
