"""``plan`` and ``run`` of a recipe (:mod:`selfalign.recipe.spec`), resumable as one unit.

Every stage and every evaluation is one step of :func:`selfalign.stage.run_step` in the run folder
(``steps/<NN-stage>.json``, ``steps/eval-<NN>.json``). A stage's inputs are the hash of the step
before it (what that stage wrote, model included; the base model's spec for the first), the model
roles and its own input files; its config is its options. So a re-run reuses every finished stage
and every finished evaluation and loads no model; changing one stage's options redoes that stage
and, through the changed output hash, every stage after it, nothing before; a run killed inside a
stage records nothing for it and redoes it (the store and the trainers' own checkpoints make the
redo cheap) without touching the stages before.

With ``eval.pm: train``, one more step before the first evaluation, ``eval-pm``
(:func:`eval_pm`): the PM that scores every evaluation's answers, trained once on the base
model's verifiable pairs; its output hash is an input of every evaluation, so a new PM redoes
them, and nothing else.

After every stage (and on the base model) the evaluation suite (:mod:`selfalign.recipe.suite`)
answers the same items; :func:`run` then computes the stage x measure matrix and hands it, with
each stage's cost and data lineage, to :func:`selfalign.report.recipe.write_report`, which only
renders.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from selfalign.config import config_to_dict
from selfalign.models.base import StageModel
from selfalign.models.registry import load_model, require_trainable
from selfalign.recipe import estimate
from selfalign.recipe import stages as _registered  # noqa: F401  (registers the stages)
from selfalign.recipe.spec import PlannedStage, Recipe
from selfalign.recipe.stages import held_out_pm, train_questions
from selfalign.recipe.suite import HIGHER_IS_BETTER, MEASURES, PM_MEASURES, measure_matrix, run_suite, suite_items
from selfalign.reward.run import sample_verifiable_pairs
from selfalign.train.reward import CachedPM, PreferenceModel
from selfalign.report.recipe import write_report
from selfalign.stage import Models, Result, StageContext, Step, files_under, load_result, output_hash, run_step
from selfalign.store.cache import CachedModel, Store
from selfalign.store.runs import RunDir, input_hashes
from selfalign.types import stable_hash

Loader = Callable[[str], StageModel]


def model_loader(store: str | Store = "", batch_size: int = 256, progress: bool = False) -> Loader:
    """spec -> the registry's model wrapped in the store (the recipe's only way to load a model)."""
    st = store if isinstance(store, Store) else Store(store or None)

    def load(spec: str) -> StageModel:
        return CachedModel(load_model(spec, batch_size=batch_size), st, progress=progress)

    return load


def base_hash(recipe: Recipe) -> str:
    """The identity of the base model: its spec, and for a local directory the hashes of its files
    (a model replaced in place is a new base)."""
    base = Path(recipe.cfg.base)
    files = input_hashes(sorted(str(p) for p in base.rglob("*") if p.is_file())) if base.is_dir() else {}
    return stable_hash({"base": recipe.cfg.base, "files": files})


def stage_inputs(recipe: Recipe, p: PlannedStage, upstream: str) -> dict[str, str]:
    return {"upstream": upstream, "roles": stable_hash(recipe.cfg.models), **p.stage.input_files(p.cfg)}


def eval_config(recipe: Recipe) -> dict[str, Any]:
    return config_to_dict(recipe.cfg.eval)


@dataclass
class StageStatus:
    step: str
    stage: str
    cached: bool
    eval_cached: bool
    options: dict[str, Any]
    changed: dict[str, Any] = field(default_factory=dict)  # the options that differ from the stage's defaults
    seconds: float | None = None  # estimated, this machine's throughput (0 when cached; None: never measured here)
    eval_seconds: float | None = None


@dataclass
class Plan:
    recipe: Recipe
    base_eval_cached: bool
    stages: list[StageStatus]
    base_eval_seconds: float | None = None
    pm_cached: bool | None = None  # eval.pm: train: is the eval PM trained (None: the recipe trains none)
    pm_seconds: float | None = None

    @property
    def total_seconds(self) -> float | None:
        """The estimate of what is left to run, or None when a part of it was never measured here."""
        parts = [0.0 if self.base_eval_cached else self.base_eval_seconds]
        if self.pm_cached is False:
            parts.append(self.pm_seconds)
        parts += [p for s in self.stages for p in (s.seconds, s.eval_seconds)]
        return None if any(p is None for p in parts) else sum(p for p in parts if p is not None)


def changed_options(cfg: Any, defaults: Any) -> dict[str, Any]:
    """The options of ``cfg`` that differ from ``defaults`` (nested configs as dotted keys).

    >>> from selfalign.recipe.suite import SuiteConfig
    >>> changed_options(SuiteConfig(n_id=3), SuiteConfig())
    {'n_id': 3}
    """
    a, b = config_to_dict(cfg), config_to_dict(defaults)
    out: dict[str, Any] = {}

    def walk(x: dict[str, Any], y: dict[str, Any], prefix: str) -> None:
        for k, v in x.items():
            if isinstance(v, dict) and isinstance(y.get(k), dict):
                walk(v, y[k], f"{prefix}{k}.")
            elif y.get(k) != v:
                out[prefix + k] = v

    walk(a, b, "")
    return out


def plan(recipe: Recipe) -> Plan:
    """What :func:`run` would do: every stage (validated when the recipe loaded) and whether its
    outputs and its evaluation are cached. Loads no model."""
    run = RunDir(recipe.out)
    suite_items(recipe.cfg.eval)  # the suite's files, read before any model call
    tp = estimate.throughput_path(recipe.cfg.store)
    eval_secs = estimate.estimate(tp, "eval", estimate.eval_units(recipe.cfg.eval))
    upstream, fresh = base_hash(recipe), True
    pm: EvalPM | None = None
    pm_cached, pm_secs = None, None
    if recipe.cfg.eval.pm == "train":
        require_base(recipe.cfg.base, convert=False)
        pm_cached = run.step_is_fresh("eval-pm", pm_config(recipe), {"model": upstream})
        pm = EvalPM("", output_hash(run.step_record("eval-pm")) if pm_cached else "not yet")
        pm_secs = 0.0 if pm_cached else estimate.estimate(tp, "eval-pm", pm_units(recipe.cfg.eval))
    elif recipe.cfg.eval.pm:
        pm = saved_pm(recipe.cfg.eval.pm)
    base_eval = run.step_is_fresh("eval-00", eval_config(recipe), eval_inputs(upstream, pm))
    out = []
    for p in recipe.stages:
        cached = fresh and run.step_is_fresh(p.step, p.stage.config_key(p.cfg), stage_inputs(recipe, p, upstream))
        fresh = cached
        upstream = output_hash(run.step_record(p.step)) if cached else "not yet"
        ev = cached and run.step_is_fresh(f"eval-{p.index:02d}", eval_config(recipe), eval_inputs(upstream, pm))
        units = p.stage.units(p.cfg) if p.stage.units else None
        owned = {k: getattr(p.cfg, k) for k in p.stage.owned}
        out.append(StageStatus(p.step, p.stage.name, cached, ev, p.stage.config_key(p.cfg)["options"],
                               {k: v for k, v in changed_options(p.cfg, p.stage.build({}, "defaults", owned)).items()
                                if k not in p.stage.owned},
                               0.0 if cached else estimate.estimate(tp, p.stage.name, units),
                               0.0 if ev else eval_secs))
    return Plan(recipe, base_eval, out, eval_secs, pm_cached, pm_secs)


@dataclass
class RecipeResult:
    report: Path
    stages: list[Step[Any]]
    evals: list[Step[dict[str, Any]]]
    matrix: list[dict[str, Any]]
    loaded: list[str] = field(default_factory=list)  # every model spec loaded, in order


def _usage(store: Store, before: dict[str, dict[str, Any]]) -> dict[str, int]:
    """What went through the store since ``before`` (a copy of its tally): tokens generated and
    scored by the models (store hits cost none), and how many requests were computed or reused."""
    def delta(kind: str, key: str) -> int:
        return int(store.tally.get(kind, {}).get(key, 0)) - int(before.get(kind, {}).get(key, 0))

    kinds = set(store.tally) | set(before)
    return {"tokens_generated": delta("generate", "tokens"), "tokens_scored": delta("score", "tokens"),
            "store_misses": sum(delta(k, "misses") for k in kinds), "store_hits": sum(delta(k, "hits") for k in kinds)}


def _tally(store: Store) -> dict[str, dict[str, Any]]:
    return {k: dict(v) for k, v in store.tally.items()}


@dataclass
class EvalPM:
    """The PM every evaluation's answers are scored by: its directory, its identity (the input of
    every evaluation) and, when the recipe trained it, its training pairs and held-out accuracy."""

    pm_dir: str
    identity: str
    pairs: int = 0
    heldout_pairs: int = 0
    accuracy: dict[str, float] | None = None
    reused: bool = True
    seconds: float = 0.0


PM_CONFIG_KEYS = ("pm", "pm_questions", "pm_heldout_questions", "pm_samples", "pm_max_tokens", "pm_train",
                  "pm_known_over_idk", "seed")


def eval_pm(recipe: Recipe, run: RunDir, loader: Loader, loaded: list[str], store: Store,
            log: Callable[[str], None] = print) -> EvalPM | None:
    """None without ``eval.pm``; a saved PM directory as it is (its files' hashes are its identity);
    with ``eval.pm: train``, the step ``eval-pm``: the base model samples ``pm_samples`` answers to
    ``pm_questions`` train-split questions (QA prompt, through the store), gold answers make the
    pairs (:func:`selfalign.reward.run.sample_verifiable_pairs`), a PM is trained on them from the
    base model, and its accuracy is measured on pairs of ``pm_heldout_questions`` other questions."""
    cfg = recipe.cfg.eval
    if not cfg.pm:
        return None
    if cfg.pm != "train":
        return saved_pm(cfg.pm)
    require_base(recipe.cfg.base, convert=False)  # before the first sample
    path = "eval-pm/result.json"

    def work() -> tuple[dict[str, Any], list[str], dict[str, Any]]:
        before, t0 = _tally(store), time.time()
        models = Models({"policy": recipe.cfg.base}, loader)
        qs = train_questions(cfg.pm_questions + cfg.pm_heldout_questions, cfg.seed + 7919, data=cfg.data)
        def pairs(items: list[Any], what: str) -> list[dict[str, Any]]:
            return sample_verifiable_pairs(models.policy, items, cfg.pm_samples, 1.0, cfg.pm_max_tokens, cfg.seed, 1,
                                           what, cfg.pm_known_over_idk)

        train, held = pairs(qs[:cfg.pm_questions], "eval PM"), pairs(qs[cfg.pm_questions:], "eval PM held-out")
        loaded.extend(models.loaded)
        if not train or not held:
            raise ValueError(f"eval.pm: the base model's samples made {len(train)} training and {len(held)} held-out "
                             "pairs; the eval PM needs both (more pm_questions or pm_samples)")
        run.write_jsonl("eval-pm/pairs.jsonl", train)
        run.write_jsonl("eval-pm/heldout.jsonl", held)
        pm_dir, _, acc = held_out_pm(train, held, require_base(recipe.cfg.base), run.path / "eval-pm" / "pm",
                                     cfg.pm_train, f"eval-pm-on:{models.policy.model_id}", store, cfg.bootstrap, cfg.seed)
        log(f"[eval-pm] PM on {len(train)} pairs of the base model's samples: held-out accuracy "
            f"{100 * acc['value']:.1f} [{100 * acc['lo']:.1f}, {100 * acc['hi']:.1f}] on {len(held)} pairs")
        value = {"pm_dir": str(pm_dir.relative_to(run.path)), "pairs": len(train), "heldout_pairs": len(held),
                 "accuracy": {k: 100 * v for k, v in acc.items()}}
        run.write_json(path, value)
        estimate.record(estimate.throughput_path(recipe.cfg.store), "eval-pm", pm_units(cfg), time.time() - t0)
        return value, files_under(run.path / "eval-pm", run.path), _usage(store, before)

    step = run_step(run, "eval-pm", pm_config(recipe), {"model": base_hash(recipe)}, work,
                    lambda: json.loads((run.path / path).read_text()))
    v = step.value
    return EvalPM(str(run.path / v["pm_dir"]), step.output_hash, v["pairs"], v["heldout_pairs"], v["accuracy"],
                  step.reused, step.seconds)


def saved_pm(path: str) -> EvalPM:
    """A saved PM directory as the eval PM: its files' hashes are its identity."""
    files = input_hashes(sorted(str(p) for p in Path(path).rglob("*") if p.is_file()))
    return EvalPM(path, stable_hash({"pm": path, "files": files}))


def require_base(base: str, convert: bool = True) -> str:
    """The base model's trainable path (the eval PM starts from it); ``convert=False`` to check only."""
    return require_trainable(base, "eval.pm: train needs a base model that can be fine-tuned; base", convert=convert)


def pm_config(recipe: Recipe) -> dict[str, Any]:
    """The eval PM step's config: the eval options that make the PM."""
    return {k: v for k, v in config_to_dict(recipe.cfg.eval).items() if k in PM_CONFIG_KEYS}


def pm_units(cfg: Any) -> float:
    """The eval PM's work units: the tokens its pairs' samples take."""
    return float((cfg.pm_questions + cfg.pm_heldout_questions) * cfg.pm_samples * cfg.pm_max_tokens)


def _evaluate(recipe: Recipe, run: RunDir, index: int, spec: str, upstream: str, loader: Loader,
              loaded: list[str], store: Store, pm: EvalPM | None = None) -> Step[dict[str, Any]]:
    name = f"eval-{index:02d}"
    path = f"eval/{index:02d}/suite.json"

    def work() -> tuple[dict[str, Any], list[str], dict[str, Any]]:
        before, t0 = _tally(store), time.time()
        models = Models({"policy": spec}, loader)
        scorer = (CachedPM(PreferenceModel(pm.pm_dir, recipe.cfg.eval.pm_train.max_length,
                                           recipe.cfg.eval.pm_train.score_batch_tokens), store)
                  if pm is not None else None)
        suite = run_suite(recipe.cfg.eval, models.policy, scorer)
        loaded.extend(models.loaded)
        run.write_json(path, suite)
        estimate.record(estimate.throughput_path(recipe.cfg.store), "eval", estimate.eval_units(recipe.cfg.eval),
                        time.time() - t0)
        return suite, [path], {"model": suite["model"], **_usage(store, before)}

    return run_step(run, name, eval_config(recipe), eval_inputs(upstream, pm), work,
                    lambda: json.loads((run.path / path).read_text()))


def eval_inputs(upstream: str, pm: EvalPM | None) -> dict[str, str]:
    """An evaluation's inputs: the model, and the PM that scores it (when there is one)."""
    return {"model": upstream, **({"pm": pm.identity} if pm is not None else {})}


def _stage(recipe: Recipe, run: RunDir, p: PlannedStage, policy: str, upstream: str, loader: Loader,
           log: Callable[[str], None], progress: bool, loaded: list[str], store: Store) -> Step[Result]:
    out = recipe.stage_dir(p)
    result_path = out / "result.json"

    def work() -> tuple[Result, list[str], dict[str, Any]]:
        before, t0 = _tally(store), time.time()
        models = Models({"policy": policy, **recipe.cfg.models}, loader)
        out.mkdir(parents=True, exist_ok=True)
        try:
            res = p.stage(p.cfg, models, StageContext(out, p.step, log, progress, store))
        finally:
            loaded.extend(models.loaded)
        estimate.record(estimate.throughput_path(recipe.cfg.store), p.stage.name,
                        p.stage.units(p.cfg) if p.stage.units else None, time.time() - t0)
        run.write_json(str(result_path.relative_to(run.path)),
                       {"stage": p.stage.name, "type": p.stage.result.__name__, "result": config_to_dict(res)})
        return res, files_under(out, run.path), {"models_loaded": models.loaded, **_usage(store, before)}

    def load() -> Result:
        data = json.loads(result_path.read_text())
        return load_result(p.stage.result, data["result"], str(result_path))

    return run_step(run, p.step, p.stage.config_key(p.cfg), stage_inputs(recipe, p, upstream), work, load)


def run(recipe: Recipe, loader: Loader | None = None, log: Callable[[str], None] = print,
        progress: bool = False) -> RecipeResult:
    """Every stage in order, each followed by the suite; finished steps are reused."""
    cfg = recipe.cfg
    run_dir = RunDir(recipe.out)
    run_dir.write_manifest({"recipe": recipe.path, **config_to_dict(cfg)})
    store = Store(cfg.store or None)
    loader = loader or model_loader(store, cfg.batch_size, progress)
    loaded: list[str] = []
    upstream, policy = base_hash(recipe), cfg.base
    pm = eval_pm(recipe, run_dir, loader, loaded, store, log)
    if pm is not None and cfg.eval.pm == "train":
        log(f"[eval-pm] {'reused' if pm.reused else f'trained in {pm.seconds:.0f}s'}: {pm.pm_dir}")
    evals = [_evaluate(recipe, run_dir, 0, policy, upstream, loader, loaded, store, pm)]
    log(f"[00-base] evaluation {'reused' if evals[0].reused else f'done in {evals[0].seconds:.0f}s'}")
    steps: list[Step[Any]] = []
    for p in recipe.stages:
        step = _stage(recipe, run_dir, p, policy, upstream, loader, log, progress, loaded, store)
        steps.append(step)
        how = "unchanged: reused" if step.reused else f"done in {step.seconds:.0f}s"
        log(f"[{p.step}] {how}; model -> {step.value.model}")
        upstream, policy = step.output_hash, step.value.model
        ev = _evaluate(recipe, run_dir, p.index, policy, upstream, loader, loaded, store, pm)
        evals.append(ev)
        log(f"[{p.step}] evaluation {'reused' if ev.reused else f'done in {ev.seconds:.0f}s'}")
    matrix = measure_matrix([e.value for e in evals], cfg.eval.bootstrap, cfg.eval.seed)
    timing = {p.step: {"seconds": s.seconds, "this_invocation": not s.reused} for p, s in zip(recipe.stages, steps)}
    prov = run_dir.write_provenance(None, {"model": {"base": cfg.base, "final": policy}, "steps": timing})
    run_dir.write_metrics("recipe", {}, prov)
    report = write_report(run_dir.path, report_data(recipe, steps, evals, matrix, pm))
    log(f"[recipe] report: {report}")
    return RecipeResult(report, steps, evals, matrix, loaded)


def report_data(recipe: Recipe, steps: list[Step[Any]], evals: list[Step[dict[str, Any]]],
                matrix: list[dict[str, Any]], pm: EvalPM | None = None) -> dict[str, Any]:
    """Everything the report shows, computed here (the report renders it)."""
    def usage(st: Step[Any]) -> dict[str, Any]:
        stats = st.record.get("stats") or {}
        return {k: stats.get(k) for k in ("tokens_generated", "tokens_scored", "store_misses", "store_hits")}

    rows: list[dict[str, Any]] = [{"step": "00-base", "stage": "base", "model": recipe.cfg.base, "reused": evals[0].reused,
                                   "seconds": 0.0, "eval_seconds": evals[0].seconds, "rows": 0, "training": None,
                                   "result": {}, "options": {}, "usage": {}, "eval_usage": usage(evals[0])}]
    for p, st, ev in zip(recipe.stages, steps, evals[1:]):
        res = config_to_dict(st.value)
        rows.append({"step": p.step, "stage": p.stage.name, "model": st.value.model, "reused": st.reused,
                     "seconds": st.seconds, "eval_seconds": ev.seconds, "rows": st.value.rows,
                     "training": res.get("training"), "result": res, "options": p.stage.config_key(p.cfg)["options"],
                     "usage": usage(st), "eval_usage": usage(ev)})
    sizes = {name: len(items) for name, items in suite_items(recipe.cfg.eval).items()}
    sizes["pm"] = sizes["id"]
    measures = list(matrix[0]["measures"]) if matrix else list(MEASURES)
    eval_pm_info = None
    if pm is not None:
        eval_pm_info = {"pm_dir": pm.pm_dir, "trained": recipe.cfg.eval.pm == "train", "pairs": pm.pairs,
                        "heldout_pairs": pm.heldout_pairs, "accuracy": pm.accuracy}
    return {"recipe": recipe.path, "base": recipe.cfg.base, "measures": measures,
            "measure_sets": {**{m: s for m, (s, _) in MEASURES.items()}, **PM_MEASURES,
                             **{m: f"trust-{m[len('trust_'):]}" for m in measures if m.startswith("trust_")}},
            "units": {m: (matrix[0]["measures"][m].get("unit", "%") if matrix else "%") for m in measures},
            "higher_is_better": {**HIGHER_IS_BETTER, **{m: True for m in measures if m.startswith("trust_")}},
            "eval_pm": eval_pm_info,
            "eval_sizes": sizes, "eval": config_to_dict(recipe.cfg.eval), "stages": rows, "matrix": matrix}
