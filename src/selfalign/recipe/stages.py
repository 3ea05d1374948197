"""The registered stages a recipe chains, each a thin wrapper that reuses a body of work's code:

* ``honesty``: k(x) of the current model on the training questions, the chosen method's training
  set, SFT (:class:`selfalign.honesty.pipeline.HonestyRun`'s ``sample``, ``build`` and ``train``
  steps, with their own freshness inside the stage's folder); its options are
  :class:`~selfalign.honesty.pipeline.HonestyConfig`'s, with exactly one trained method.
* ``synth-sft``: Self-Instruct instructions and instances written by the current model
  (:mod:`selfalign.synth.self_instruct`), IFD selection with the scorer role
  (:mod:`selfalign.synth.ifd`), SFT on the kept rows.
* ``synth``: any method of ``selfalign synth`` (:data:`selfalign.synth.methods.METHODS`: UDIT,
  DYNOSAUR, LaMini, Unnatural Instructions, LongForm, DoG-Instruct, LLMs-as-Instructors, Selective
  Reflection, Auto Evol-Instruct, AutoDetect, ...) run with the recipe's model roles and its own
  ``options``, optionally IFD-selected, then SFT on its rows.
* ``trust-data``: the safety / misuse / fairness studies on the current model
  (:func:`selfalign.trust.run.run`), their failures turned into rows (:func:`selfalign.trust.to_data.to_data`,
  held-out keys never trained on), SFT. When the model fails nothing, it is handed on unchanged.
* ``best-of-n``: Best-of-N with a scorer (:mod:`selfalign.critique.bon`: gold verifier, the
  policy's log-probability, or the judge role) on questions of the bundled QA set's *train*
  split; the best-vs-worst pairs -> DPO, or the best answers -> SFT.
* ``pm-rl``: a preference model on verifiable pairs of the current model's own samples
  (:func:`selfalign.reward.run.sample_verifiable_pairs`, :func:`selfalign.train.reward.train_pm`), its
  held-out accuracy, then the policy optimised against it: DPO on PM-ranked pairs (N samples per
  prompt, best vs worst by PM reward) or RLOO with a KL penalty (:func:`selfalign.train.rloo.train_rloo`).

Every stage that reads the bundled QA set reads its train split only: the evaluation suite's
questions (its test split) are never trained on.

Each returns a typed result derived from :class:`selfalign.stage.Result`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from selfalign.config import ConfigError, load_config
from selfalign.critique import bon
from selfalign.data.formats import QAItem, load_qa
from selfalign.data.io import read_jsonl
from selfalign.evals.stats import mean_ci
from selfalign.honesty import datasets as hds
from selfalign.honesty.pipeline import HonestyConfig, HonestyRun, load_splits
from selfalign.models.registry import require_trainable
from selfalign.reward.run import sample_verifiable_pairs
from selfalign.train.reward import CachedPM, PMConfig, PreferenceModel, train_pm
from selfalign.stage import Models, Result, StageContext, Training, register_stage
from selfalign.store.runs import RunDir
from selfalign.synth import ifd
from selfalign.synth import self_instruct
from selfalign.synth.methods import METHODS
from selfalign.synth.tasks import load_seed_tasks
from selfalign.train.base import TrainResult
from selfalign.train.dpo import DPOTrainConfig, train_dpo
from selfalign.train.rloo import RLOOTrainConfig, train_rloo
from selfalign.train.sft import TrainConfig, train_sft
from selfalign.types import GenParams, GenRequest
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
    if isinstance(cfg, RLOOTrainConfig):  # rows are prompts; a step takes batch_size completions
        n_rows *= cfg.num_generations
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


def dpo(rows: Sequence[dict[str, Any]], models: Models, ctx: StageContext, cfg: DPOTrainConfig) -> Training:
    """DPO of the policy on preference ``rows`` into ``<stage>/dpo/model`` (reused when unchanged)."""
    base = require_trainable(models.spec("policy"), role="policy")
    train_rows = [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows]
    res = train_dpo(train_rows, base, ctx.out / "dpo", cfg, base_id=models.policy.model_id)
    ctx.log(f"[{ctx.step}] DPO on {len(rows)} pairs: {'reused' if res.skipped else f'{res.seconds:.0f}s'} "
            f"in {res.precision or '?'}")
    return training("dpo", res, cfg)


def train_questions(n: int, seed: int, skip: int = 0, data: str = "bundled") -> list[QAItem]:
    """``n`` answerable questions of the QA set's *train* split after the first ``skip`` (a seeded
    order by id, so disjoint slices are disjoint questions); never its test split, which the
    evaluation suite asks."""
    items = sorted((it for it in load_qa(data, "auto", "train") if it.answerable), key=lambda it: it.id)
    random.Random(seed).shuffle(items)
    return items[skip:skip + n]


def _check_train_split(data: str, need: int) -> None:
    have = len([it for it in load_qa(data, "auto", "train") if it.answerable])
    if have < need:
        raise ConfigError(f"data: {data} has {have} answerable questions in its train split, the options ask for {need}")


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
                owned=("model", "out", "store"), check=_honesty_check, inputs=_honesty_inputs,
                units=lambda c: (c.n_train or 800) * (c.samples + 1) * c.max_tokens)
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
        idk_rows=hds.idk_rows(rows))


# ------------------------------------------------------------------ synthesis + IFD + SFT
def select_rows(rows: list[dict[str, Any]], use_ifd: bool, threshold: float, top_fraction: float, models: Models,
                ctx: StageContext) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, int]]:
    """The usable rows (parsed, with a non-empty completion), those kept by IFD selection (the
    scorer role; all of them when ``use_ifd`` is off) and the counts filtered by reason; both
    sets written under ``synth/`` in the stage's folder."""
    out = RunDir(ctx.out)
    out.write_jsonl("synth/rows.jsonl", rows)
    usable = [r for r in rows if r["meta"].get("ok", True) and "completion" in r
              and str(r["completion"][0]["content"]).strip()]
    counts: dict[str, int] = {"input": len(usable), "kept": len(usable)}
    kept = usable
    if use_ifd and usable:
        kept, counts = ifd.select(usable, ifd.score_rows(usable, models.scorer), threshold, top_fraction)
    out.write_jsonl("synth/selected.jsonl", kept)
    return usable, kept, {k: v for k, v in counts.items() if k not in ("input", "kept")}


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
                check=_synth_check, inputs=_synth_inputs,
                units=lambda c: c.self_instruct.target * (c.self_instruct.max_tokens + c.self_instruct.instance_max_tokens))
def synth_sft(cfg: SynthSFTConfig, models: Models, ctx: StageContext) -> SynthSFTResult:
    """Self-Instruct rows written by the current model, IFD-selected, then SFT."""
    res = self_instruct.run(cfg.self_instruct, models.policy, log=ctx.log)
    usable, kept, filtered = select_rows(res.rows, cfg.ifd, cfg.threshold, cfg.top_fraction, models, ctx)
    ctx.log(f"[{ctx.step}] {len(res.instructions)} instructions, {len(usable)} usable rows, {len(kept)} kept")
    if not kept:
        return SynthSFTResult(model=models.spec("policy"), instructions=len(res.instructions), candidates=len(usable),
                              filtered=filtered)
    tr = sft(kept, models, ctx, cfg.train)
    return SynthSFTResult(model=tr.model_dir, rows=len(kept), training=tr, instructions=len(res.instructions),
                          candidates=len(usable), kept=len(kept), filtered=filtered)


# ------------------------------------------------------------------ any synthesis method + SFT
@dataclass
class SynthMethodConfig:
    method: str = "udit"  # any method of `selfalign synth` (selfalign.synth.methods)
    options: dict[str, Any] = field(default_factory=dict)  # the method's own options (its config's fields)
    ifd: bool = False  # select the method's rows by IFD (the scorer role) before training
    top_fraction: float = 0.5
    threshold: float = 0.0
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method: unknown {self.method!r}; known: {', '.join(METHODS)}")
        if not 0 <= self.top_fraction <= 1:
            raise ValueError(f"top_fraction must be in [0, 1], got {self.top_fraction}")


@dataclass
class SynthMethodResult(Result):
    method: str = ""
    candidates: int = 0  # usable rows the method wrote
    kept: int = 0  # after IFD selection (all when ifd is off)
    filtered: dict[str, int] = field(default_factory=dict)


def _method_fields(cfg: SynthMethodConfig) -> set[str]:
    """The method config's fields the recipe sets: its model fields, its output folder, its store."""
    cmd = METHODS[cfg.method]
    return {f for f in cmd.models.values() if isinstance(f, str)} | {"out", "store"}


def method_config(cfg: SynthMethodConfig) -> Any:
    """The method's own config from ``options`` (strictly; a field the recipe sets is refused)."""
    taken = sorted(k for k in cfg.options if k in _method_fields(cfg))
    if taken:
        raise ConfigError(f"options: {', '.join(taken)} set by the recipe (its model roles and the stage's folder)")
    return load_config(METHODS[cfg.method].config, dict(cfg.options), f"synth {cfg.method} options")


def _method_check(cfg: SynthMethodConfig) -> None:
    mcfg = method_config(cfg)
    cmd = METHODS[cfg.method]
    if cmd.check is not None:
        cmd.check(mcfg)


def _method_inputs(cfg: SynthMethodConfig) -> list[str]:
    cmd = METHODS[cfg.method]
    return cmd.inputs(method_config(cfg)) if cmd.inputs else []


@register_stage("synth", config=SynthMethodConfig, result=SynthMethodResult,
                roles=("policy", "teacher", "judge", "scorer", "critic", "target"), check=_method_check,
                inputs=_method_inputs)
def synth_method(cfg: SynthMethodConfig, models: Models, ctx: StageContext) -> SynthMethodResult:
    """Any synthesis method's rows, made with the recipe's model roles, optionally IFD-selected, then SFT."""
    cmd = METHODS[cfg.method]
    mcfg = method_config(cfg)
    fields = {f: models.spec(role) for role, f in cmd.models.items() if isinstance(f, str)}
    mcfg = dataclasses.replace(mcfg, **fields, **{k: v for k, v in (("out", str(ctx.out / cfg.method)), ("store", ""))
                                                  if hasattr(mcfg, k)})
    res = cmd.run(mcfg, models, ctx)
    usable, kept, filtered = select_rows(cmd.rows(res), cfg.ifd, cfg.threshold, cfg.top_fraction, models, ctx)
    ctx.log(f"[{ctx.step}] {cfg.method}: {len(usable)} usable rows, {len(kept)} kept")
    if not kept:
        return SynthMethodResult(model=models.spec("policy"), method=cfg.method, candidates=len(usable),
                                 filtered=filtered)
    tr = sft(kept, models, ctx, cfg.train)
    return SynthMethodResult(model=tr.model_dir, rows=len(kept), training=tr, method=cfg.method,
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


@register_stage("trust-data", config=TrustDataConfig, result=TrustDataResult, roles=("policy",), check=_trust_check,
                units=lambda c: c.n_items * len(c.studies) * c.max_tokens)
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


# ------------------------------------------------------------------ Best-of-N -> DPO or SFT
@dataclass
class BestOfNConfig:
    data: str = "bundled"  # a QA set with a 'train' split
    n_questions: int = 100
    n: int = 8  # candidates per question
    scorer: str = "gold"  # gold (a verifier) | logprob (the policy's own) | judge (the judge role's 1-5 rubric)
    temperature: float = 1.0
    max_tokens: int = 32
    seed: int = 0
    rows: str = "dpo"  # dpo: best vs worst pairs -> DPO; sft: the best answers -> SFT
    dpo: DPOTrainConfig = field(default_factory=lambda: DPOTrainConfig(epochs=1.0, lora_layers=8))
    sft: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1.0, lora_layers=8))

    def __post_init__(self) -> None:
        if self.scorer not in bon.SCORERS:
            raise ValueError(f"scorer must be one of {', '.join(bon.SCORERS)}, got {self.scorer!r}")
        if self.rows not in ("dpo", "sft"):
            raise ValueError(f"rows must be dpo or sft, got {self.rows!r}")
        if self.n < 2:
            raise ValueError(f"n must be >= 2 (best of one is the sample), got {self.n}")
        if self.n_questions < 1 or self.temperature <= 0:
            raise ValueError("n_questions must be >= 1 and temperature > 0")


@dataclass
class BestOfNResult(Result):
    questions: int = 0
    pairs: int = 0  # best-vs-worst pairs with a score gap
    unscored: int = 0  # candidates the scorer could not score (ranked last)
    accuracy_n1: float = 0.0  # gold accuracy of one sample (percent)
    accuracy_best: float = 0.0  # gold accuracy of the chosen best-of-n answer (percent)


def _bon_check(cfg: BestOfNConfig) -> None:
    _check_train_split(cfg.data, cfg.n_questions)


def _bon_inputs(cfg: BestOfNConfig) -> list[str]:
    return [cfg.data] if cfg.data != "bundled" else []


@register_stage("best-of-n", config=BestOfNConfig, result=BestOfNResult, roles=("policy", "judge"),
                check=_bon_check, inputs=_bon_inputs, units=lambda c: c.n_questions * c.n * c.max_tokens)
def best_of_n(cfg: BestOfNConfig, models: Models, ctx: StageContext) -> BestOfNResult:
    """Best-of-N on train-split questions; best-vs-worst pairs -> DPO (or the best answers -> SFT)."""
    items = train_questions(cfg.n_questions, cfg.seed, data=cfg.data)
    bcfg = bon.BonConfig(ns=[1, cfg.n], scorer=cfg.scorer, temperature=cfg.temperature, max_tokens=cfg.max_tokens,
                         seed=cfg.seed, bootstrap=100)
    scorer = (bon.gold_scorer if cfg.scorer == "gold" else bon.logprob_scorer(models.policy)
              if cfg.scorer == "logprob" else bon.judge_scorer(models.judge))
    sft_rows, pairs, summary = bon.best_of_n(models.policy, items, scorer, bcfg)
    out = RunDir(ctx.out)
    out.write_jsonl("bon/sft.jsonl", sft_rows)
    out.write_jsonl("bon/pairs.jsonl", pairs)
    acc = {row["n"]: 100 * row["accuracy"] for row in summary["table"]}
    ctx.log(f"[{ctx.step}] best-of-{cfg.n} ({cfg.scorer}): accuracy {acc[1]:.1f} -> {acc[cfg.n]:.1f}, "
            f"{len(pairs)} pairs, {summary['unscored']} unscored")
    common = dict(questions=len(items), pairs=len(pairs), unscored=summary["unscored"], accuracy_n1=acc[1],
                  accuracy_best=acc[cfg.n])
    rows = pairs if cfg.rows == "dpo" else sft_rows
    if not rows:
        return BestOfNResult(model=models.spec("policy"), **common)
    tr = dpo(rows, models, ctx, cfg.dpo) if cfg.rows == "dpo" else sft(rows, models, ctx, cfg.sft)
    return BestOfNResult(model=tr.model_dir, rows=len(rows), training=tr, **common)


# ------------------------------------------------------------------ PM on verifiable pairs -> DPO or RLOO
@dataclass
class PMRLConfig:
    data: str = "bundled"  # a QA set with a 'train' split
    n_pm_questions: int = 150  # the PM's training pairs come from the policy's samples on these
    n_heldout_questions: int = 50  # held-out pairs (other questions) for the PM's accuracy
    n_prompts: int = 60  # the prompts the policy is optimised on (questions the PM never saw)
    samples: int = 6  # samples per question for the PM's pairs
    temperature: float = 1.0
    max_tokens: int = 32
    seed: int = 0
    pm: PMConfig = field(default_factory=lambda: PMConfig(epochs=1.0, lora_layers=8))
    optimize: str = "dpo"  # dpo: N samples per prompt, best vs worst by PM reward -> DPO; rloo: RLOO against the PM
    n: int = 4  # dpo: candidates per prompt
    dpo: DPOTrainConfig = field(default_factory=lambda: DPOTrainConfig(epochs=1.0, lora_layers=8))
    rloo: RLOOTrainConfig = field(default_factory=lambda: RLOOTrainConfig(epochs=1.0, lora_layers=8))

    def __post_init__(self) -> None:
        if self.optimize not in ("dpo", "rloo"):
            raise ValueError(f"optimize must be dpo or rloo, got {self.optimize!r}")
        if self.samples < 2 or self.n < 2:
            raise ValueError(f"samples and n must be >= 2 (a pair needs two answers), got {self.samples}, {self.n}")
        for name in ("n_pm_questions", "n_heldout_questions", "n_prompts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class PMRLResult(Result):
    pm_dir: str = ""
    pm_pairs: int = 0
    heldout_pairs: int = 0
    pm_accuracy: float = 0.0  # held-out pairs the PM orders right (percent)
    pm_accuracy_lo: float = 0.0
    pm_accuracy_hi: float = 0.0
    optimize: str = ""
    prompts: int = 0
    mean_kl: float | None = None  # rloo: the last logged KL to the start


def _pmrl_check(cfg: PMRLConfig) -> None:
    _check_train_split(cfg.data, cfg.n_pm_questions + cfg.n_heldout_questions + cfg.n_prompts)


def _pmrl_inputs(cfg: PMRLConfig) -> list[str]:
    return [cfg.data] if cfg.data != "bundled" else []


def _pairs(policy: Any, items: list[QAItem], cfg: PMRLConfig, what: str) -> list[dict[str, Any]]:
    return sample_verifiable_pairs(policy, items, cfg.samples, cfg.temperature, cfg.max_tokens, cfg.seed, 1, what)


def held_out_pm(train: list[dict[str, Any]], held: list[dict[str, Any]], base: str, out: Path, cfg: PMConfig,
                base_id: str, store: Any, resamples: int, seed: int) -> tuple[Path, CachedPM, dict[str, float]]:
    """A PM trained on ``train`` pairs into ``out`` (reused when unchanged), its rewards through
    the store, and its accuracy on the ``held`` pairs (share of pairs whose chosen side it rewards
    higher, with a bootstrap interval): the pm-rl stage's PM and the recipe's eval PM."""
    res = train_pm(train, base, out, cfg, base_id=base_id)
    pm = CachedPM(PreferenceModel(res.model_dir, cfg.max_length, cfg.score_batch_tokens), store)
    chosen = pm.rewards([r["prompt"] for r in held], [r["chosen"] for r in held])
    rejected = pm.rewards([r["prompt"] for r in held], [r["rejected"] for r in held])
    return res.model_dir, pm, mean_ci([float(c > r) for c, r in zip(chosen, rejected)], resamples, seed)


def _pm_ranked_pairs(policy: Any, pm: CachedPM, items: list[QAItem], cfg: PMRLConfig) -> list[dict[str, Any]]:
    """For each prompt, ``n`` samples ranked by PM reward: best vs worst where the PM prefers one."""
    prompts = [bon.qa_prompt(it.question) for it in items]
    params = GenParams(temperature=cfg.temperature, max_tokens=cfg.max_tokens)
    res = policy.generate([GenRequest(p, params, n=cfg.n, seed=cfg.seed + 1) for p in prompts],
                          description=f"{cfg.n} samples per prompt for PM-ranked pairs")
    flat_p = [p for p, r in zip(prompts, res) for _ in r.texts]
    flat_t = [t for r in res for t in r.texts]
    rewards = pm.rewards(flat_p, flat_t)
    out, k = [], 0
    for it, p, r in zip(items, prompts, res):
        scores = rewards[k:k + len(r.texts)]
        k += len(r.texts)
        best, worst = bon.best_and_worst(scores)
        if scores[best] > scores[worst] and r.texts[best].strip() != r.texts[worst].strip():
            out.append({"prompt": [m.to_dict() for m in p], "chosen": [{"role": "assistant", "content": r.texts[best]}],
                        "rejected": [{"role": "assistant", "content": r.texts[worst]}],
                        "margin": scores[best] - scores[worst], "meta": {"id": it.id, "pm": pm.model_id}})
    return out


def _pmrl_units(c: PMRLConfig) -> float:
    sampled = (c.n_pm_questions + c.n_heldout_questions) * c.samples * c.max_tokens
    if c.optimize == "dpo":
        return sampled + c.n_prompts * c.n * c.max_tokens
    return sampled + 3 * c.n_prompts * c.rloo.num_generations * c.rloo.max_completion_length * c.rloo.epochs


@register_stage("pm-rl", config=PMRLConfig, result=PMRLResult, roles=("policy",), check=_pmrl_check,
                inputs=_pmrl_inputs, units=_pmrl_units)
def pm_rl(cfg: PMRLConfig, models: Models, ctx: StageContext) -> PMRLResult:
    """A PM on verifiable pairs of the current model's samples, then DPO on PM-ranked pairs or RLOO against it."""
    base = require_trainable(models.spec("policy"), role="policy")
    qs = train_questions(cfg.n_pm_questions + cfg.n_heldout_questions + cfg.n_prompts, cfg.seed, data=cfg.data)
    pm_q, held_q = qs[:cfg.n_pm_questions], qs[cfg.n_pm_questions:cfg.n_pm_questions + cfg.n_heldout_questions]
    opt_q = qs[cfg.n_pm_questions + cfg.n_heldout_questions:]
    train_pairs, held_pairs = _pairs(models.policy, pm_q, cfg, "PM"), _pairs(models.policy, held_q, cfg, "held-out")
    if not train_pairs or not held_pairs:
        raise ConfigError(f"{ctx.step}: the policy's samples made {len(train_pairs)} training and {len(held_pairs)} "
                          "held-out pairs; a PM needs both (more questions or samples)")
    out = RunDir(ctx.out)
    out.write_jsonl("pm/pairs.jsonl", train_pairs)
    out.write_jsonl("pm/heldout.jsonl", held_pairs)
    pm_dir, pm, acc = held_out_pm(train_pairs, held_pairs, base, ctx.out / "pm", cfg.pm,
                                  f"pm-on:{models.policy.model_id}", ctx.store, 200, cfg.seed)
    ctx.log(f"[{ctx.step}] PM on {len(train_pairs)} pairs: held-out accuracy {100 * acc['value']:.1f} "
            f"[{100 * acc['lo']:.1f}, {100 * acc['hi']:.1f}] on {len(held_pairs)} pairs")
    common: dict[str, Any] = dict(pm_dir=str(pm_dir), pm_pairs=len(train_pairs), heldout_pairs=len(held_pairs),
                                  pm_accuracy=100 * acc["value"], pm_accuracy_lo=100 * acc["lo"],
                                  pm_accuracy_hi=100 * acc["hi"], optimize=cfg.optimize, prompts=len(opt_q))
    if cfg.optimize == "dpo":
        rows = _pm_ranked_pairs(models.policy, pm, opt_q, cfg)
        out.write_jsonl("dpo_rows.jsonl", rows)
        if not rows:
            return PMRLResult(model=models.spec("policy"), **common)
        tr = dpo(rows, models, ctx, cfg.dpo)
        return PMRLResult(model=tr.model_dir, rows=len(rows), training=tr, **common)
    prompts = [[m.to_dict() for m in bon.qa_prompt(it.question)] for it in opt_q]
    res = train_rloo(prompts, pm.rewards, pm.model_id, base, ctx.out / "rloo", cfg.rloo, base_id=models.policy.model_id)
    kls = [h["kl"] for h in (res.history or []) if "kl" in h]
    ctx.log(f"[{ctx.step}] RLOO on {len(prompts)} prompts: {'reused' if res.skipped else f'{res.seconds:.0f}s'}")
    tr = training("rloo", res, cfg.rloo)
    return PMRLResult(model=tr.model_dir, rows=len(prompts), training=tr, mean_kl=kls[-1] if kls else None, **common)
