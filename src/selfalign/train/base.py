"""What every trainer shares, so that each TRL method (SFT now; reward, DPO, RLOO, distillation
next) is a short mapping from its rows and options to a TRL trainer:

* :class:`TrainConfig`: the options common to every method (LoRA, schedule, precision, speed);
* :func:`fingerprint` and :class:`TrainingRun`: a finished run is skipped when its inputs are
  unchanged; checkpoints of other inputs are never resumed; a killed run resumes from its last
  checkpoint; the final model is saved atomically (merged LoRA, or full weights);
* :func:`lora_config` and :func:`trainer_args`: one place where the speed and precision
  defaults meet TRL's argument names (TRL renames are absorbed here).

Speed defaults for a CPU: precision from the hardware (:mod:`selfalign.models.precision`);
gradient checkpointing off (TRL turns it on; it recomputes the forward pass to save memory a
135M model does not need on a 24 GiB machine); each batch's common prefix run once
(:mod:`selfalign.models.shared_prefix`). A config can override each.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from selfalign import logs
from selfalign.config import config_to_dict
from selfalign.models.base import MissingExtra, ModelError
from selfalign.train.cards import write_model_card
from selfalign.models.precision import PRECISIONS, Precision, choose_precision
from selfalign.models.shared_prefix import install as install_shared_prefix
from selfalign.store.runs import RunDir
from selfalign.types import stable_hash

log = logging.getLogger("selfalign.train")
logs.filter_known_warnings()  # the deprecation notice TRL triggers while building a trainer

DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
#: what ``train.attn_implementation`` takes: auto, or transformers' own kernel names
ATTN_IMPLEMENTATIONS = ("auto", "eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")


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
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (auto: from what the hardware does natively)
    gradient_checkpointing: bool = False
    # TRL's fused output layer scores only the labelled (completion) positions on a CPU too
    # (see completion_positions_only; 1.8x per step in bench/train.py, same loss)
    labelled_positions_only: bool = True
    # the attention kernel while training: auto = eager on a CPU (SDPA's CPU flash kernel took 14% of
    # an SFT step, mostly in its backward; eager 1.23x per step in bf16, 1.05x in fp32 with identical
    # losses, bench/train.py), the model's own default elsewhere; or a transformers attn_implementation
    attn_implementation: str = "auto"
    # run the tokens every row of a batch starts with once per step (the chat template and the task's
    # instruction: 64 of ~105 tokens of each honesty row), see selfalign.models.shared_prefix; same losses
    shared_prefix: bool = True
    # where the trainer's logged steps also go: "" = what `selfalign --track` (or $SELFALIGN_TRACK)
    # says, else nowhere; none | trackio | tensorboard | wandb. trackio is the documented choice
    # (local SQLite, offline, `trackio show`); each needs its package (pip install 'selfalign[track]')
    report_to: str = ""

    def __post_init__(self) -> None:
        # an int where a float is declared (epochs=2 from Python, 2.0 from YAML) is the same setting:
        # make it the same value, so both give the same training fingerprint
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.type in ("float", float) and isinstance(v, int) and not isinstance(v, bool):
                setattr(self, f.name, float(v))
        if self.report_to:
            check_tracker(self.report_to)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.attn_implementation not in ATTN_IMPLEMENTATIONS and "/" not in self.attn_implementation:
            raise ValueError(f"attn_implementation must be one of {', '.join(ATTN_IMPLEMENTATIONS)} (or a hub "
                             f"kernel 'org/name'), got {self.attn_implementation!r}")
        for name in ("batch_size", "grad_accum", "max_length", "save_steps", "logging_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        # checked as "not > 0" so that NaN fails too; a run that would train 0 steps is refused here,
        # before any model loads, instead of saving the untouched model with a fingerprint as trained
        if not (math.isfinite(self.epochs) and self.epochs > 0):
            raise ValueError(f"epochs must be > 0, got {self.epochs}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"max_steps must be >= 1, or -1 (train for epochs), got {self.max_steps}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.lora and self.lora_r < 1:
            raise ValueError(f"lora_r must be >= 1, got {self.lora_r}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")


def check_rows(rows: Sequence[Any], cfg: TrainConfig, source: str = "") -> None:
    """Refuse, before a model loads, rows that would train nothing: none at all (naming where they
    came from), or a schedule of zero optimizer steps."""
    where = f"{source}: " if source else ""
    if not rows:
        raise ValueError(f"{where}no training rows")
    steps = cfg.max_steps if cfg.max_steps > 0 else math.ceil(
        cfg.epochs * max(1, math.ceil(len(rows) / cfg.batch_size) // cfg.grad_accum))
    if steps < 1:
        raise ValueError(f"{where}{len(rows)} rows with batch_size={cfg.batch_size}, grad_accum={cfg.grad_accum} "
                         f"and epochs={cfg.epochs} give 0 training steps")


R = TypeVar("R", bound="TrainResult")


@dataclass
class TrainResult:
    model_dir: Path
    losses: list[float]
    seconds: float
    n_rows: int
    skipped: bool = False
    precision: str = ""


def require_trl() -> None:
    import importlib.util

    for pkg in ("trl", "peft", "datasets"):
        if importlib.util.find_spec(pkg) is None:
            raise MissingExtra(pkg, "train", "training")


#: where training is watched from (a tracker), not what it computes: not part of the fingerprint
WATCH_ONLY = ("report_to",)
#: options that change how fast training runs, not what it computes (identical losses measured):
#: not part of the fingerprint. ``precision`` is listed as asked ("auto") but enters the fingerprint
#: as resolved on this machine, see :func:`fingerprint`.
SPEED_ONLY = ("precision", "gradient_checkpointing", "labelled_positions_only", "attn_implementation", "shared_prefix")


def fingerprint(method: str, base: str, rows: Sequence[dict[str, Any]], cfg: Any, columns: Sequence[str]) -> str:
    """Hash of what decides the trained weights: method, base model id, the rows' training
    columns, the config without its speed-only options, and the precision training runs in here.

    The precision is part of it because it changes the weights, not only the speed: on an AVX-512
    BF16 EPYC the demo's 68 SFT steps ended at loss 0.713 in bf16 against 0.702 in fp32 on the same
    rows, with different scores (docs/RESULTS.md). So ``auto`` counts as what it resolves to (bf16
    on such a CPU, fp32 on one without native bf16): a model trained in bf16 is not reused when fp32
    is asked for, and a run moved to a machine that resolves ``auto`` differently retrains. fp32 adds
    nothing to the hash, so fingerprints made before this rule (fp32 machines) stay valid."""
    clean = [{k: r[k] for k in columns if k in r} for r in rows]
    conf = {k: v for k, v in config_to_dict(cfg).items() if k not in SPEED_ONLY + WATCH_ONLY}
    payload: dict[str, Any] = {"base": base, "rows": clean, "config": conf}
    if method != "sft":  # SFT's fingerprint predates the method key: keep trained SFT runs valid
        payload["method"] = method
    requested = getattr(cfg, "precision", None)
    if requested:
        resolved = choose_precision(requested).name
        if resolved != "fp32":
            payload["precision"] = resolved
    return stable_hash(payload)


def lora_config(cfg: TrainConfig, n_layers: int, task_type: str = "CAUSAL_LM", modules_to_save: list[str] | None = None):
    from peft import LoraConfig

    layers = list(range(n_layers - cfg.lora_layers, n_layers)) if 0 < cfg.lora_layers < n_layers else None
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.target_modules), layers_to_transform=layers, task_type=task_type,
                      modules_to_save=modules_to_save)


#: the trackers ``train.report_to`` and ``--track`` take, each with the package it needs
TRACKERS = {"none": "", "trackio": "trackio", "tensorboard": "tensorboard", "wandb": "wandb"}
TRACK_ENV = "SELFALIGN_TRACK"
TRACK_PROJECT_ENV = "SELFALIGN_TRACK_PROJECT"


def check_tracker(name: str) -> str:
    """``name`` when it is a tracker whose package is installed; a clear error before any model
    loads otherwise.

    >>> check_tracker("none")
    'none'
    >>> check_tracker("mlflw")
    Traceback (most recent call last):
    ...
    ValueError: train.report_to (or --track) must be one of none, trackio, tensorboard, wandb, got 'mlflw'
    """
    import importlib.util

    if name not in TRACKERS:
        raise ValueError(f"train.report_to (or --track) must be one of {', '.join(TRACKERS)}, got {name!r}")
    pkg = TRACKERS[name]
    if pkg and importlib.util.find_spec(pkg) is None:
        if name == "trackio":
            raise MissingExtra(pkg, "track", f"--track {name}")
        raise ModelError(f"--track {name} needs the Python package '{pkg}', which is not installed. "
                         f"Install it with: pip install {pkg}")
    return name


def tracker(cfg: Any) -> str:
    """The tracker a training run reports to: its config's ``report_to``, else ``$SELFALIGN_TRACK``
    (what ``selfalign --track`` sets), else none."""
    import os

    return check_tracker(getattr(cfg, "report_to", "") or os.environ.get(TRACK_ENV, "") or "none")


def tracker_args(name: str, output_dir: Path) -> dict[str, Any]:
    """TrainingArguments for one tracker: the run is named after its folder (``sft``,
    ``dpo-round1``) in the project ``$SELFALIGN_TRACK_PROJECT`` (default ``selfalign``); trackio
    stays local (no Space, no frozen copy pushed to the Hub)."""
    import os

    if name == "none":
        return {"report_to": []}
    out: dict[str, Any] = {"report_to": [name], "run_name": Path(output_dir).parent.name or "train",
           "project": os.environ.get(TRACK_PROJECT_ENV, "selfalign")}
    if name == "trackio":
        out.update(trackio_space_id=None, trackio_static_space_id=False)
    return out


def trainer_args(cfg: TrainConfig, output_dir: Path, precision: Precision) -> dict[str, Any]:
    """Keyword arguments every TRL config class takes (``transformers.TrainingArguments``)."""
    import torch

    return dict(
        output_dir=str(output_dir),
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
        **tracker_args(tracker(cfg), output_dir),
        seed=cfg.seed,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        **_checkpointing_kwarg(cfg.gradient_checkpointing),
        **precision.trainer_kwargs(),
    )


def _checkpointing_kwarg(on: bool) -> dict[str, bool]:
    """transformers 5.x renamed ``gradient_checkpointing`` to ``activation_checkpointing``
    (the old name warns); TRL's configs default it to True."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return {"activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing": on}


class TrainingRun:
    """One output directory: ``train.json`` when finished, ``checkpoints/`` while running,
    ``model/`` (the saved weights, renamed into place only when complete), and
    ``steps/training.json``, the step record by which a re-run with the same fingerprint reuses it
    (:meth:`is_finished`)."""

    def __init__(self, out_dir: str | Path, fp: str):
        self.out = Path(out_dir)
        self.fp = fp
        self.done = self.out / "train.json"
        self.ckpt_dir = self.out / "checkpoints"
        self.model_dir = self.out / "model"
        self.t0 = time.time()

    #: the step record of a finished training (``<out>/steps/training.json``)
    STEP = "training"

    def is_finished(self) -> bool:
        """Did this exact training (this fingerprint) finish, with its model and ``train.json``
        unchanged on disk? Decided by the one freshness check,
        :meth:`selfalign.store.runs.RunDir.step_is_fresh`, on the record :meth:`finish` writes.
        A training finished before step records were kept (``train.json`` with this fingerprint
        and a saved model, no record) gets its record now, once, rather than being retrained."""
        if not self.out.is_dir():
            return False
        run = RunDir(self.out)
        if run.step_record(self.STEP) is None and self.done.exists() and (self.model_dir / "config.json").exists():
            try:
                info = json.loads(self.done.read_text())
            except json.JSONDecodeError:
                return False
            if info.get("fingerprint") == self.fp:
                self._record(run, float(info.get("seconds") or 0.0), int(info.get("n_rows") or 0))
        return run.step_is_fresh(self.STEP, {"fingerprint": self.fp}, {})

    def _record(self, run: RunDir, seconds: float, n_rows: int) -> None:
        """The step record of a finished training: ``train.json`` and the model's files (its card
        left out: evaluation results are added to README.md later)."""
        outputs = ["train.json"] + sorted(str(p.relative_to(self.out)) for p in self.model_dir.rglob("*")
                                          if p.is_file() and p.name != "README.md")
        run.record_step(self.STEP, {"fingerprint": self.fp}, {}, outputs, seconds, {"n_rows": n_rows})

    def finished(self, n_rows: int, cls: type[R] = TrainResult, keys: Sequence[str] = ()) -> R | None:  # type: ignore[assignment]
        """The earlier result when this exact training already finished, else None: the one
        reuse check of every trainer. ``cls`` is the trainer's result type and ``keys`` its own
        fields, read back from ``train.json`` (where :meth:`train`'s ``extra`` wrote them)."""
        if not self.is_finished():
            return None
        info = json.loads(self.done.read_text())
        return cls(self.model_dir, info.get("losses", []), info.get("seconds", 0.0), n_rows, skipped=True,
                   precision=info.get("precision", ""), **{k: info[k] for k in keys if k in info})

    def begin(self, n_rows: int, what: str, cls: type[R] = TrainResult, keys: Sequence[str] = (),  # type: ignore[assignment]
              trl: bool = True) -> R | None:
        """The one preamble of every trainer: the earlier result when this exact training already
        finished (:meth:`finished`); else zero rows are refused (naming ``what`` they are), TRL is
        checked (``trl``), and None says: train."""
        earlier = self.finished(n_rows, cls, keys)
        if earlier is not None:
            return earlier
        if not n_rows:
            raise ValueError(f"no {what}")
        if trl:
            require_trl()
        return None

    def prepare(self) -> str | None:
        """Make the checkpoint folder; the checkpoint to resume from, if one of these inputs exists."""
        from transformers.trainer_utils import get_last_checkpoint

        marker = self.ckpt_dir / "fingerprint"
        if marker.exists() and marker.read_text() != self.fp:
            shutil.rmtree(self.ckpt_dir)  # checkpoints of other inputs: never resume from them
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(self.fp)
        return get_last_checkpoint(str(self.ckpt_dir))

    def save(self, model: Any, tokenizer: Any, merge_lora: bool, card: Callable[[Path], Any] | None = None) -> Path:
        """Save atomically: write ``model.tmp`` (and its model card, ``card(folder)``), then rename
        over ``model``."""
        if merge_lora:
            model = model.merge_and_unload()
        tmp = self.out / "model.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if card is not None:
            card(tmp)
        if self.model_dir.exists():
            shutil.rmtree(self.model_dir)
        tmp.rename(self.model_dir)
        return self.model_dir

    def train(self, trainer: Any, tok: Any, resume: str | None, n_rows: int, base: str, cfg: Any,
              precision: Precision, extra: Callable[[Any], dict[str, Any]] | None = None) -> TrainResult:
        """What every trainer ends with: run ``trainer`` (from ``resume``), then on process 0 save
        the model (LoRA merged when ``cfg.lora``) and write ``train.json`` with ``extra(trainer)``
        (read after training: histories from the trainer's log); every process waits for the save.
        Other processes get a result without timing."""
        use_step_log(trainer, self.out.name)
        resume_state = ResumeState(trainer, resume)
        trainer.add_callback(resume_state)
        trainer.train(resume_from_checkpoint=resume)
        resume_state.whole_run_loss()
        losses = losses_of(trainer)
        if trainer.accelerator.is_main_process:
            method = type(trainer).__name__.removesuffix("Trainer").lower() or "train"
            self.save(trainer.accelerator.unwrap_model(trainer.model), tok, merge_lora=cfg.lora,
                      card=lambda d: write_model_card(d, base=base, method=method, n_rows=n_rows,
                                                      config=config_to_dict(cfg), precision=precision.name,
                                                      pipeline_tag=("text-classification" if method in ("reward", "classifier")
                                                                    else "text-generation")))
            # keys sorted, as transformers writes them into a checkpoint's trainer_state.json: a
            # resumed training's history (read back from there) is then the same bytes as an
            # uninterrupted one's
            history = {"log_history": [dict(sorted(h.items())) for h in trainer.state.log_history]}
            res = self.finish(losses, n_rows, base, cfg, precision,
                              extra={**history, **(extra(trainer) if extra else {})})
        else:
            res = TrainResult(self.model_dir, losses, 0.0, n_rows, precision=precision.name)
        trainer.accelerator.wait_for_everyone()
        return res

    def finish(self, losses: list[float], n_rows: int, base: str, cfg: Any, precision: Precision,
               extra: dict[str, Any] | None = None) -> TrainResult:
        seconds = time.time() - self.t0
        self.done.write_text(json.dumps({"fingerprint": self.fp, "base": base, "losses": losses, "seconds": seconds,
                                         "n_rows": n_rows, "precision": precision.name,
                                         "precision_reason": precision.reason, "config": config_to_dict(cfg),
                                         **(extra or {})}, indent=2))
        self._record(RunDir(self.out), seconds, n_rows)  # before the checkpoints go: a kill here loses nothing
        shutil.rmtree(self.ckpt_dir, ignore_errors=True)
        return TrainResult(self.model_dir, losses, seconds, n_rows, precision=precision.name)


class StepLog:
    """A trainer callback that prints one line per logging step, ``[train] <name> step 20/68
    (29%) loss 0.781 lr 1.7e-04 412 tok/s ETA 1:56``, instead of transformers' raw dict and its
    ``\r``-redrawn bar (which a log file keeps as one unreadable line). Tokens/s: the tokens
    trained since this process started over the time since. TRL's ``num_tokens`` is a running
    total that a resume restores (RLOO and GRPO by themselves, SFT, DPO and reward through
    :class:`ResumeState`): after a resume the rate is therefore measured from the first logging
    step of this process on (that step prints none)."""

    def __init__(self, name: str):
        self.name = name
        self.t0 = 0.0
        self.step0 = 0
        self.first: tuple[float, float] | None = None  # (time, num_tokens) at this process's first log

    def __getattr__(self, event: str) -> Callable[..., None]:
        if event.startswith("on_"):  # every other trainer event: nothing to do
            return lambda *a, **k: None
        raise AttributeError(event)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.t0, self.step0 = time.time(), state.global_step
        self.first = (self.t0, 0.0) if not state.global_step else None  # a fresh run counts from 0
        if state.is_local_process_zero:
            logs.say(f"[train] {self.name}: {state.max_steps} steps" +
                     (f", resuming at step {state.global_step}" if state.global_step else ""))

    def on_log(self, args: Any, state: Any, control: Any, logs_: dict[str, Any] | None = None, **kw: Any) -> None:
        record = kw.get("logs", logs_) or {}
        if "loss" not in record or not state.is_local_process_zero:
            return
        now = time.time()
        el = max(1e-6, now - self.t0)
        done = state.global_step - self.step0
        left = (state.max_steps - state.global_step) * el / max(1, done)
        total = float(record.get("num_tokens", 0) or 0)
        rate = ""
        if self.first is None:  # resumed: this step is the reference point
            self.first = (now, total)
        elif total > self.first[1] and now > self.first[0]:
            rate = f" {(total - self.first[1]) / (now - self.first[0]):.0f} tok/s"
        lr = record.get("learning_rate")
        lr_s = f" lr {float(lr):.1e}" if lr is not None else ""
        extra = "".join(f" {k} {float(record[k]):.3g}" for k in ("reward", "kl", "rewards/accuracies") if k in record)
        logs.say(f"[train] {self.name} step {state.global_step}/{state.max_steps} "
                 f"({100 * state.global_step / max(1, state.max_steps):.0f}%) loss {float(record['loss']):.3f}"
                 f"{lr_s}{extra}{rate} ETA {int(left) // 60}:{int(left) % 60:02d}")


class ResumeState:
    """A trainer callback that makes a resumed training log what an uninterrupted one logs
    (issue 26: a killed and re-run training writes the same ``train.json``, wall times aside).

    A transformers checkpoint restores the weights, optimiser, scheduler, RNG and the step, but not
    the running sums the logs are made of: TRL's token count (``_total_train_tokens`` in SFT, DPO
    and the reward trainer; RLOO and GRPO count ``state.num_input_tokens_seen``, which is restored),
    TRL's per-step metrics not yet logged (``_metrics``: entropy, token accuracy, rewards...), the
    loss accumulated since the last logging step, and the loss summed over the run (transformers
    starts both at 0 in each ``train()`` call, and reports ``train_loss`` over that call's steps
    only). So a resumed run logged a ``num_tokens`` counted from the resume, a first loss and
    metrics averaged over the wrong steps when checkpoints and logging steps do not coincide, and
    another ``train_loss``. This writes them into each checkpoint (``selfalign_resume.json``), puts
    them back when training resumes from it, and reports ``train_loss`` over every step
    (:meth:`whole_run_loss`). It reads transformers' and TRL's private fields, named here; where
    one is missing it does nothing for that field. Data-parallel runs: process 0's sums are saved
    and every process gets them back, so a resumed multi-process run's first logged loss can differ
    from an uninterrupted one's (only the single-process case is tested)."""

    FILE = "selfalign_resume.json"

    def __init__(self, trainer: Any, resume: str | None):
        self.trainer = trainer
        saved = Path(resume) / self.FILE if resume else None
        self.saved: dict[str, Any] | None = json.loads(saved.read_text()) if saved and saved.exists() else None

    def __getattr__(self, event: str) -> Callable[..., None]:
        if event.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(event)

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

        t = self.trainer
        ckpt = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if state.is_world_process_zero and ckpt.is_dir():
            tr = getattr(t, "_tr_loss", None)
            (ckpt / self.FILE).write_text(json.dumps({
                "total_train_tokens": getattr(t, "_total_train_tokens", None),
                "tr_loss": None if tr is None else float(tr),
                "total_loss": getattr(t, "_total_loss_scalar", None),
                "last_logged": getattr(t, "_globalstep_last_logged", None),
                "metrics": {mode: {k: list(v) for k, v in m.items()}
                            for mode, m in (getattr(t, "_metrics", None) or {}).items()}}))

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        import torch

        t, saved = self.trainer, self.saved
        if saved is None:
            return
        if saved.get("total_train_tokens") is not None and hasattr(t, "_total_train_tokens"):
            t._total_train_tokens = saved["total_train_tokens"]
        if saved.get("tr_loss") is not None and hasattr(t, "_tr_loss"):
            t._tr_loss = torch.tensor(saved["tr_loss"], dtype=t._tr_loss.dtype, device=t._tr_loss.device)
        if saved.get("total_loss") is not None and hasattr(t, "_total_loss_scalar"):
            t._total_loss_scalar = saved["total_loss"]
        if saved.get("last_logged") is not None and hasattr(t, "_globalstep_last_logged"):
            t._globalstep_last_logged = saved["last_logged"]
        for mode, metrics in (saved.get("metrics") or {}).items():
            if mode in (getattr(t, "_metrics", None) or {}):
                for k, v in metrics.items():
                    t._metrics[mode][k] = list(v)

    def whole_run_loss(self) -> None:
        """After a resumed ``train()``: its last log's ``train_loss`` over every step of the run, as
        an uninterrupted run reports it (the loss sum was restored, the step count is the run's)."""
        t = self.trainer
        hist = t.state.log_history
        if self.saved is None or self.saved.get("total_loss") is None or not hist or "train_loss" not in hist[-1]:
            return
        hist[-1]["train_loss"] = t._total_loss_scalar / max(t.state.global_step, 0.001)


def use_step_log(trainer: Any, name: str) -> None:
    """Replace transformers' printing and progress-bar callbacks of ``trainer`` with :class:`StepLog`."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    trainer.add_callback(StepLog(name))


def resolve_precision(cfg: TrainConfig) -> Precision:
    """The training precision for ``cfg`` on this hardware (logged), and the other speed options
    every trainer shares applied (:func:`completion_positions_only`)."""
    precision = choose_precision(cfg.precision)
    log.info("training precision: %s", precision)
    if completion_positions_only(bool(getattr(cfg, "labelled_positions_only", False))):
        log.info("output layer on labelled positions only (CPU too)")
    return precision


def losses_of(trainer: Any) -> list[float]:
    return [float(h["loss"]) for h in trainer.state.log_history if "loss" in h]


def completion_positions_only(on: bool = True) -> bool:
    """Make TRL's fused output layer score only the positions that carry a label on a CPU too
    (``on=False`` puts TRL's own rule back).

    TRL (1.16) computes per-token log-probabilities in vocabulary chunks without the full logits;
    on CUDA/XPU with Triton it first keeps only the positions whose label is not -100 (the
    completion), elsewhere it scores every position, prompt and padding included, so as not to
    change tile shapes under a compiler. Eager CPU training has no compiler to upset, and with
    short completions after long prompts most of that 49k-wide work is thrown away. TRL decides
    this with its private ``trl.trainer.utils._use_triton(device)``; this wraps that one name so
    the answer is also True for CPU tensors (the kernel module keeps its own copy, so the torch
    tile code still runs on the CPU). Returns whether the wrapper is in place; False, changing
    nothing, when TRL has no such name. The losses are the same (tested; ``bench/train.py``
    prints both variants)."""
    try:
        import trl.trainer.utils as tu
    except ImportError:
        return False
    current = getattr(tu, "_use_triton", None)
    if current is None or not callable(current):
        return False
    orig = getattr(current, "_selfalign_orig", current)
    if not on:
        tu._use_triton = orig
        return False
    if current is not orig:
        return True

    def use_compact(device: Any) -> bool:
        return getattr(device, "type", None) == "cpu" or bool(orig(device))

    use_compact._selfalign_orig = orig  # type: ignore[attr-defined]
    tu._use_triton = use_compact
    return True


def load_for_training(cfg: TrainConfig, run: TrainingRun, base: str) -> tuple[Precision, str | None, Any, Any]:
    """What every causal-LM trainer starts with: the precision (logged), the checkpoint to resume
    from, the tokenizer and the fp32 model (the trainer casts per its precision)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    precision = resolve_precision(cfg)
    resume = run.prepare()
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, **attn_kwargs(cfg))
    share_prefix(model, cfg)
    return precision, resume, tok, model


def share_prefix(model: Any, cfg: Any, pack: bool = True) -> Any:
    """Install the shared-prefix forward (:mod:`selfalign.models.shared_prefix`) on ``model``'s backbone
    when ``cfg.shared_prefix`` (default on; it applies only where it is exact), packing tails where it
    pays unless ``pack`` is off (``bench/train.py``'s ``ours-nopack``). Returns its counters (None when
    off or where the model has no separate backbone)."""
    if not getattr(cfg, "shared_prefix", False):
        return None
    backbone = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if backbone is None or backbone is model:
        return None
    log.info("shared-prefix forward: each batch's common prefix runs once")
    return install_shared_prefix(backbone, pack=pack)


def attn_kwargs(cfg: Any) -> dict[str, str]:
    """``from_pretrained``'s ``attn_implementation`` for ``cfg.attn_implementation`` on this machine:
    ``auto`` is eager attention on a CPU (the SDPA CPU kernel's backward is slow for the short rows
    these trainers see: 3.69 against 3.18 s per SFT step of the demo's rows, losses equal to three
    decimals) and the model's default on a GPU; any other value is passed through (checked by
    :class:`TrainConfig`)."""
    import torch

    want = getattr(cfg, "attn_implementation", "auto") or "auto"
    if want == "auto":
        return {} if torch.cuda.is_available() else {"attn_implementation": "eager"}
    return {"attn_implementation": want}


def script_main(argv: list[str] | None, prog: str, doc: str, cfg_cls: type, columns: Sequence[str],
                train: Callable[..., Any], extra: Callable[[Any], dict[str, Any]] | None = None,
                options: Sequence[tuple[str, dict[str, Any]]] = (),
                bind: Callable[[Any, Sequence[Any]], Callable[..., Any]] | None = None) -> None:
    """``python -m selfalign.<module>``: one entry point for a single process and ``accelerate
    launch``. Every input is checked before the model loads (a bad one is one line and exit 2, as
    in the CLI); every process prints one ``selfalign-train: {json}`` line with its rank.
    ``options``: more command-line options (``(flag, argparse keywords)``); ``bind(args, rows)`` checks
    them and the rows (``ValueError`` = a one-line error) and returns the training function to call instead of
    ``train(rows, base, out, cfg)``, loading nothing yet."""
    import argparse
    import os
    import sys

    from selfalign.config import ConfigError, config_from_yaml
    from selfalign.data.io import DataError, read_jsonl

    ap = argparse.ArgumentParser(prog=prog, description=doc.split("\n")[0])
    ap.add_argument("--rows", required=True, help=f"JSONL of TRL rows ({', '.join(columns)})")
    ap.add_argument("--base", required=True, help="hub id or local path of the model to fine-tune")
    ap.add_argument("--out", required=True, help="output directory (the model lands in OUT/model)")
    ap.add_argument("--config", default="", help=f"YAML of {cfg_cls.__name__} options")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one option")
    for flag, kw in options:
        ap.add_argument(flag, **kw)
    a = ap.parse_args(argv)
    try:
        cfg: Any = config_from_yaml(cfg_cls, a.config or None, a.set)
        rows = read_jsonl(a.rows, required=columns)
        check_rows(rows, cfg, a.rows)
        fn = bind(a, rows) if bind is not None else train
    except (DataError, ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    res = fn(rows, a.base, a.out, cfg)
    line = "selfalign-train: " + json.dumps({"process": int(os.environ.get("RANK", "0")),
                                             "world_size": int(os.environ.get("WORLD_SIZE", "1")),
                                             "model_dir": str(res.model_dir), "skipped": res.skipped,
                                             "precision": res.precision, "n_rows": res.n_rows,
                                             "last_loss": res.losses[-1] if res.losses else None,
                                             **(extra(res) if extra else {})})
    sys.stdout.write(line + "\n")  # one write: several ranks share the same stdout
    sys.stdout.flush()
