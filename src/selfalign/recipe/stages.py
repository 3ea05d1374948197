"""The registered stages a recipe chains, each a thin wrapper that reuses a body of work's code:

* ``honesty``: k(x) of the current model on the training questions, the chosen method's training
  set, SFT (:class:`selfalign.honesty.pipeline.HonestyRun`'s ``sample``, ``build`` and ``train``
  steps, with their own freshness inside the stage's folder); its options are
  :class:`~selfalign.honesty.pipeline.HonestyConfig`'s, with exactly one trained method.
* ``synth-sft``: Self-Instruct instructions and instances written by the current model
  (:mod:`selfalign.synth.self_instruct`), IFD selection with the scorer role
  (:mod:`selfalign.synth.ifd`), SFT on the kept rows.
* ``trust-data``: the safety / misuse / fairness studies on the current model
  (:func:`selfalign.trust.run.run`), their failures turned into rows (:func:`selfalign.trust.to_data.to_data`,
  held-out keys never trained on), SFT. When the model fails nothing, it is handed on unchanged.

Each returns a typed result derived from :class:`selfalign.stage.Result`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from selfalign.config import ConfigError
from selfalign.data.io import read_jsonl
from selfalign.honesty import datasets as hds
from selfalign.honesty.pipeline import HonestyConfig, HonestyRun, load_splits
from selfalign.models.registry import require_trainable
from selfalign.stage import Models, Result, StageContext, Training, register_stage
from selfalign.store.runs import RunDir
from selfalign.synth import ifd
from selfalign.synth import self_instruct
from selfalign.synth.tasks import load_seed_tasks
from selfalign.train.base import TrainResult
from selfalign.train.sft import TrainConfig, train_sft
from selfalign.trust import run as trust_run
from selfalign.trust.holdout import KEYED
from selfalign.trust.to_data import to_data, write_data


def planned_steps(n_rows: int, cfg: TrainConfig) -> int:
    """Optimizer steps of an SFT run on ``n_rows`` (the schedule :func:`selfalign.train.base.check_rows` checks).

    >>> planned_steps(20, TrainConfig(epochs=2, batch_size=8))
    6
    """
    if cfg.max_steps > 0:
        return cfg.max_steps
    return math.ceil(cfg.epochs * max(1, math.ceil(n_rows / cfg.batch_size) // cfg.grad_accum))


def training(method: str, res: TrainResult, cfg: TrainConfig) -> Training:
    return Training(method, str(res.model_dir), res.n_rows, planned_steps(res.n_rows, cfg), res.seconds,
                    res.precision, res.losses[-1] if res.losses else None, res.skipped)


def sft(rows: Sequence[dict[str, Any]], models: Models, ctx: StageContext, cfg: TrainConfig) -> Training:
    """SFT of the policy on ``rows`` into ``<stage>/sft/model`` (reused when unchanged)."""
    policy = models.spec("policy")
    base = require_trainable(policy, role="policy")
    train_rows = [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows]
    res = train_sft(train_rows, base, ctx.out / "sft", cfg, base_id=models.policy.model_id)
    ctx.log(f"[{ctx.step}] SFT on {len(rows)} rows: {'reused' if res.skipped else f'{res.seconds:.0f}s'} "
            f"in {res.precision or '?'}")
    return training("sft", res, cfg)


# ------------------------------------------------------------------ honesty
@dataclass
class HonestyStageResult(Result):
    method: str = ""
    n_questions: int = 0
    greedy_accuracy: float = 0.0  # of the current model on the training questions (percent)
    expected_accuracy: float = 0.0  # mean k(x) (percent)
    idk_rows: int = 0


def _honesty_method(cfg: HonestyConfig) -> str:
    trained = [m for m in cfg.methods if m != "prompt"]
    if len(trained) != 1:
        raise ConfigError(f"methods: name exactly one trained method for a recipe stage, got {cfg.methods}")
    return trained[0]


def _honesty_check(cfg: HonestyConfig) -> None:
    _honesty_method(cfg)
    load_splits(cfg)


def _honesty_inputs(cfg: HonestyConfig) -> list[str]:
    return [p for p in (cfg.data, cfg.test_data) if p and p != "bundled"]


@register_stage("honesty", config=HonestyConfig, result=HonestyStageResult, roles=("policy",),
                owned=("model", "out", "store"), check=_honesty_check, inputs=_honesty_inputs)
def honesty(cfg: HonestyConfig, models: Models, ctx: StageContext) -> HonestyStageResult:
    """Alignment for Honesty on the current model: k(x), the method's training set, SFT."""
    method = _honesty_method(cfg)
    cfg = dataclasses.replace(cfg, model=models.spec("policy"), out=str(ctx.out / "honesty"), methods=[method])
    hr = HonestyRun(cfg, progress=ctx.progress, log=ctx.log, base_model=models.policy)
    hr.run(("sample", "build", "train"))
    d = hr.dir.path
    knowledge = read_jsonl(d / "knowledge" / "train.jsonl")
    rows = read_jsonl(d / "datasets" / f"{method}.jsonl", required=("prompt", "completion"))
    info = json.loads((d / "models" / method / "train.json").read_text())
    tcfg = hr.train_config(method)
    losses = info.get("losses") or []
    tr = Training(method, str(d / "models" / method / "model"), len(rows), planned_steps(len(rows), tcfg),
                  float(info.get("seconds") or 0.0), str(info.get("precision", "")), losses[-1] if losses else None)
    n = max(1, len(knowledge))
    return HonestyStageResult(
        model=tr.model_dir, rows=len(rows), training=tr, method=method, n_questions=len(knowledge),
        greedy_accuracy=100 * sum(k.get("greedy_label") == "correct" for k in knowledge) / n,
        expected_accuracy=100 * sum(float(k.get("expected_accuracy", 0.0)) for k in knowledge) / n,
        idk_rows=sum(r["completion"][0]["content"] == hds.IDK_RESPONSE for r in rows))


# ------------------------------------------------------------------ synthesis + IFD + SFT
@dataclass
class SynthSFTConfig:
    self_instruct: self_instruct.SelfInstructConfig = field(
        default_factory=lambda: self_instruct.SelfInstructConfig(target=20, max_tokens=96, instance_max_tokens=96))
    ifd: bool = True  # select by IFD (the scorer role; default: the current model)
    top_fraction: float = 0.5
    threshold: float = 0.0  # with top_fraction 0: keep IFD >= threshold
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if not 0 <= self.top_fraction <= 1:
            raise ValueError(f"top_fraction must be in [0, 1], got {self.top_fraction}")
        fixed = self_instruct.SelfInstructConfig()
        taken = [k for k in ("model", "out", "store") if getattr(self.self_instruct, k) != getattr(fixed, k)]
        if taken:
            raise ValueError(f"self_instruct: {', '.join(taken)} set by the recipe (the policy writes the instructions)")


@dataclass
class SynthSFTResult(Result):
    instructions: int = 0
    candidates: int = 0  # usable rows Self-Instruct wrote
    kept: int = 0  # after IFD selection
    filtered: dict[str, int] = field(default_factory=dict)


def _synth_check(cfg: SynthSFTConfig) -> None:
    seeds = load_seed_tasks(cfg.self_instruct.seed_tasks)
    if len(seeds) < cfg.self_instruct.n_seed_in_prompt:
        raise ConfigError(f"self_instruct.seed_tasks: {len(seeds)} seed tasks, need {cfg.self_instruct.n_seed_in_prompt}")


def _synth_inputs(cfg: SynthSFTConfig) -> list[str]:
    return [cfg.self_instruct.seed_tasks] if cfg.self_instruct.seed_tasks != "bundled" else []


@register_stage("synth-sft", config=SynthSFTConfig, result=SynthSFTResult, roles=("policy", "scorer"),
                check=_synth_check, inputs=_synth_inputs)
def synth_sft(cfg: SynthSFTConfig, models: Models, ctx: StageContext) -> SynthSFTResult:
    """Self-Instruct rows written by the current model, IFD-selected, then SFT."""
    res = self_instruct.run(cfg.self_instruct, models.policy, log=ctx.log)
    out = RunDir(ctx.out)
    out.write_jsonl("synth/rows.jsonl", res["rows"])
    usable = [r for r in res["rows"] if r["meta"].get("ok", True) and str(r["completion"][0]["content"]).strip()]
    counts: dict[str, int] = {"input": len(usable), "kept": len(usable)}
    kept = usable
    if cfg.ifd and usable:
        kept, counts = ifd.select(usable, ifd.score_rows(usable, models.scorer), cfg.threshold, cfg.top_fraction)
    out.write_jsonl("synth/selected.jsonl", kept)
    filtered = {k: v for k, v in counts.items() if k not in ("input", "kept")}
    ctx.log(f"[{ctx.step}] {len(res['instructions'])} instructions, {len(usable)} usable rows, {len(kept)} kept")
    if not kept:
        return SynthSFTResult(model=models.spec("policy"), instructions=len(res["instructions"]), candidates=len(usable),
                              filtered=filtered)
    tr = sft(kept, models, ctx, cfg.train)
    return SynthSFTResult(model=tr.model_dir, rows=len(kept), training=tr, instructions=len(res["instructions"]),
                          candidates=len(usable), kept=len(kept), filtered=filtered)


# ------------------------------------------------------------------ trust failures -> data -> SFT
@dataclass
class TrustDataConfig:
    studies: list[str] = field(default_factory=lambda: list(KEYED))
    n_items: int = 20  # per study
    max_tokens: int = 48
    heldout_share: float = 0.5
    helpful_ratio: float = 1.0  # QA rows per refusal row (refusals alone teach refusing everything)
    qa: str = "bundled"
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        bad = [s for s in self.studies if s not in KEYED]
        if bad or not self.studies:
            raise ValueError(f"studies: each one of {', '.join(KEYED)} (the studies whose failures become rows), got {bad}")
        if not 0 < self.heldout_share < 1:
            raise ValueError(f"heldout_share must be in (0, 1), got {self.heldout_share}")
        if self.helpful_ratio < 0:
            raise ValueError(f"helpful_ratio must be >= 0, got {self.helpful_ratio}")

    def trust_config(self, model: str = "", out: str = "") -> trust_run.TrustConfig:
        return trust_run.TrustConfig(model=model, studies=list(self.studies), n_items=self.n_items,
                                     max_tokens=self.max_tokens, qa=self.qa, seed=self.seed, out=out,
                                     bootstrap=200)


@dataclass
class TrustDataResult(Result):
    failures: dict[str, int] = field(default_factory=dict)  # per study, the failures turned into rows
    evaluated: dict[str, int] = field(default_factory=dict)  # per study, items answered
    held_out: int = 0
    helpful_rows: int = 0


def _trust_check(cfg: TrustDataConfig) -> None:
    trust_run.prepare_studies(cfg.trust_config())


@register_stage("trust-data", config=TrustDataConfig, result=TrustDataResult, roles=("policy",), check=_trust_check)
def trust_data(cfg: TrustDataConfig, models: Models, ctx: StageContext) -> TrustDataResult:
    """The trust studies' failures on the current model turned into SFT rows, then SFT."""
    tc = cfg.trust_config(models.spec("policy"), str(ctx.out / "trust"))
    trust_run.run(tc, models.policy, progress=lambda name: ctx.log(f"[{ctx.step}] study {name}"))
    data = to_data(ctx.out / "trust", cfg.heldout_share, cfg.seed, cfg.helpful_ratio, cfg.qa)
    write_data(ctx.out / "data", data)
    counts = data["counts"]
    failures = {s: c["failures_used"] for s, c in counts.items() if s in KEYED}
    common = dict(failures=failures, evaluated={s: c["items"] for s, c in counts.items() if s in KEYED},
                  held_out=sum(c["held_out"] for c in counts.values()), helpful_rows=counts["helpful"]["items"])
    ctx.log(f"[{ctx.step}] failures used {failures}, {len(data['sft'])} SFT rows")
    if not sum(failures.values()):
        return TrustDataResult(model=models.spec("policy"), **common)
    tr = sft(data["sft"], models, ctx, cfg.train)
    return TrustDataResult(model=tr.model_dir, rows=len(data["sft"]), training=tr, **common)
