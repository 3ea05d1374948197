"""A classifier on the preference model's body: the PM's score head trained on labelled rows.

Where a preference model learns from comparisons (:mod:`selfalign.train.reward`, the ranking loss
of Askell et al. 2021 / Bai et al. 2022), a judge learns from one label per answer: a harm label
from Liu et al. 2023's GPT-4 check, a refusal label from XSTest's annotators. This trainer keeps
everything of the PM but the loss: the same model (a language model with a 1-output score head read
at the end-of-context token, :func:`~selfalign.train.reward.load_seq_cls`), the same rendering of
(prompt, answer) (:class:`~selfalign.train.reward.PMEncoder`, padding with a token other than eos),
LoRA with the head trained in full, merged at the end. So the saved directory loads and scores as a
PM does (:class:`~selfalign.train.reward.PreferenceModel`, through the store with
:class:`~selfalign.train.reward.CachedPM`): its "reward" is the logit of ``label`` being True.

Rows in TRL's unpaired vocabulary (``KTOTrainer``'s): ``prompt``, ``completion``, ``label`` (a bool).
Loss: binary cross-entropy on the logit. ``balanced`` (default) weights each class to half of the
loss whatever its share (w = n / (2 n_class)), the usual choice when one class is rare (10-22% of a
source's answers are harmful in Liu et al.'s file).

Not a TRL trainer (TRL 1.16 has none for pointwise classification); a ``transformers.Trainer`` with
that loss, so checkpoints, resume and the step log are the ones every trainer here has
(:class:`~selfalign.train.base.TrainingRun`). Batches are grouped by length (transformers'
``group_by_length``) so a batch pads little.

    python -m selfalign.train.classifier --rows labelled.jsonl --base <hub id or path> --out runs/clf
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from selfalign.train.base import TrainingRun, TrainResult, fingerprint as _fingerprint, lora_config, script_main, trainer_args
from selfalign.train.reward import PMConfig, load_for_scoring_head

COLUMNS = ("prompt", "completion", "label")


@dataclass
class ClassifierConfig(PMConfig):
    balanced: bool = True  # each class weighs half of the loss, whatever its share of the rows


def fingerprint(base: str, rows: Sequence[dict[str, Any]], cfg: ClassifierConfig) -> str:
    return _fingerprint("classifier", base, rows, cfg, COLUMNS)


def class_weights(labels: Sequence[bool], balanced: bool) -> tuple[float, float]:
    """(weight of a False row, weight of a True row): n / (2 n_class) when balanced, else 1.

    >>> class_weights([True, False, False, False], True)
    (0.6666666666666666, 2.0)
    >>> class_weights([True, False], False)
    (1.0, 1.0)
    """
    n_true = sum(1 for v in labels if v)
    n_false = len(labels) - n_true
    if not balanced:
        return 1.0, 1.0
    if not n_true or not n_false:
        raise ValueError(f"balanced weights need both labels; the rows hold {n_true} True and {n_false} False")
    return len(labels) / (2 * n_false), len(labels) / (2 * n_true)


def check_labels(rows: Sequence[dict[str, Any]], source: str = "") -> list[bool]:
    """Each row's ``label`` as a bool; the first that is not true/false (or 1/0) is an error naming
    ``source`` (the file) and the row's line."""
    out = []
    for i, r in enumerate(rows):
        value = r.get("label")
        if not isinstance(value, bool) and value not in (0, 1):
            where = f"{source}:{i + 1}" if source else f"row {i + 1}"
            raise ValueError(f"{where}: field 'label' must be true/false (or 1/0), got {value!r}")
        out.append(bool(value))
    return out


def train_classifier(rows: Sequence[dict[str, Any]], base: str, out_dir: str | Path, cfg: ClassifierConfig | None = None,
                     base_id: str | None = None) -> TrainResult:
    """Train the score head (and LoRA) on labelled rows; the merged model lands in ``out_dir/model``."""
    cfg = cfg or ClassifierConfig()
    labels = check_labels(rows)
    w_false, w_true = class_weights(labels, cfg.balanced) if rows else (1.0, 1.0)
    run = TrainingRun(out_dir, fingerprint(base_id or base, rows, cfg))
    if (earlier := run.begin(len(rows), "labelled rows")) is not None:
        return earlier
    import torch
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    class ClassifierTrainer(Trainer):
        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            y = inputs.pop("labels")
            out = model(**inputs)
            logit = out.logits[:, 0].float()
            w = torch.where(y > 0.5, torch.tensor(w_true), torch.tensor(w_false))
            loss = (w * torch.nn.functional.binary_cross_entropy_with_logits(logit, y, reduction="none")).mean()
            return (loss, out) if return_outputs else loss

    precision, resume, model, tok, enc = load_for_scoring_head(cfg, run, base)
    data, truncated = [], 0
    for r, y in zip(rows, labels):
        ids, cut = enc.encode(r["prompt"], r["completion"])
        truncated += cut
        data.append({"input_ids": ids, "labels": 1.0 if y else 0.0})
    if cfg.lora:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(cfg, model.config.num_hidden_layers, task_type="SEQ_CLS"))

    def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), enc.pad_id, dtype=torch.long)
        att = torch.zeros((len(batch), width), dtype=torch.long)
        for k, b in enumerate(batch):
            ids[k, :len(b["input_ids"])] = torch.tensor(b["input_ids"])
            att[k, :len(b["input_ids"])] = 1
        return {"input_ids": ids, "attention_mask": att,
                "labels": torch.tensor([b["labels"] for b in batch], dtype=torch.float32)}

    args = TrainingArguments(**trainer_args(cfg, run.ckpt_dir, precision), remove_unused_columns=False,
                             train_sampling_strategy="group_by_length")
    trainer = ClassifierTrainer(model=model, args=args, train_dataset=Dataset.from_list(data), data_collator=collate)
    res = run.train(trainer, tok, resume, len(rows), base_id or base, cfg, precision,
                    extra=lambda _: {"truncated": truncated, "pad_token_id": enc.pad_id, "eoc_token_id": enc.eoc_id,
                                     "class_weights": [w_false, w_true]})
    return res


def main(argv: list[str] | None = None) -> None:
    """``python -m selfalign.train.classifier``: one entry point for a single process and ``accelerate launch``."""
    def bind(a: Any, rows: Sequence[dict[str, Any]]) -> Any:  # labels checked with the file's name, before loading
        check_labels(rows, a.rows)
        return train_classifier

    script_main(argv, "python -m selfalign.train.classifier", __doc__ or "", ClassifierConfig, COLUMNS,
                train_classifier, bind=bind)


if __name__ == "__main__":
    main()
