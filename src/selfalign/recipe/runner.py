"""``plan`` and ``run`` of a recipe (:mod:`selfalign.recipe.spec`), resumable as one unit.

Every stage and every evaluation is one step of :func:`selfalign.stage.run_step` in the run folder
(``steps/<NN-stage>.json``, ``steps/eval-<NN>.json``). A stage's inputs are the hash of the step
before it (what that stage wrote, model included; the base model's spec for the first), the model
roles and its own input files; its config is its options. So a re-run reuses every finished stage
and every finished evaluation and loads no model; changing one stage's options redoes that stage
and, through the changed output hash, every stage after it, nothing before; a run killed inside a
stage records nothing for it and redoes it (the store and the trainers' own checkpoints make the
redo cheap) without touching the stages before.

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
from selfalign.models.registry import load_model
from selfalign.recipe import estimate
from selfalign.recipe import stages as _registered  # noqa: F401  (registers the stages)
from selfalign.recipe.spec import PlannedStage, Recipe
from selfalign.recipe.suite import HIGHER_IS_BETTER, MEASURES, measure_matrix, run_suite, suite_items
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

    @property
    def total_seconds(self) -> float | None:
        """The estimate of what is left to run, or None when a part of it was never measured here."""
        parts = [0.0 if self.base_eval_cached else self.base_eval_seconds]
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
    base_eval = run.step_is_fresh("eval-00", eval_config(recipe), {"model": upstream})
    out = []
    for p in recipe.stages:
        cached = fresh and run.step_is_fresh(p.step, p.stage.config_key(p.cfg), stage_inputs(recipe, p, upstream))
        fresh = cached
        upstream = output_hash(run.step_record(p.step)) if cached else "not yet"
        ev = cached and run.step_is_fresh(f"eval-{p.index:02d}", eval_config(recipe), {"model": upstream})
        units = p.stage.units(p.cfg) if p.stage.units else None
        owned = {k: getattr(p.cfg, k) for k in p.stage.owned}
        out.append(StageStatus(p.step, p.stage.name, cached, ev, p.stage.config_key(p.cfg)["options"],
                               {k: v for k, v in changed_options(p.cfg, p.stage.build({}, "defaults", owned)).items()
                                if k not in p.stage.owned},
                               0.0 if cached else estimate.estimate(tp, p.stage.name, units),
                               0.0 if ev else eval_secs))
    return Plan(recipe, base_eval, out, eval_secs)


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


def _evaluate(recipe: Recipe, run: RunDir, index: int, spec: str, upstream: str, loader: Loader,
              loaded: list[str], store: Store) -> Step[dict[str, Any]]:
    name = f"eval-{index:02d}"
    path = f"eval/{index:02d}/suite.json"

    def work() -> tuple[dict[str, Any], list[str], dict[str, Any]]:
        before, t0 = _tally(store), time.time()
        models = Models({"policy": spec}, loader)
        suite = run_suite(recipe.cfg.eval, models.policy)
        loaded.extend(models.loaded)
        run.write_json(path, suite)
        estimate.record(estimate.throughput_path(recipe.cfg.store), "eval", estimate.eval_units(recipe.cfg.eval),
                        time.time() - t0)
        return suite, [path], {"model": suite["model"], **_usage(store, before)}

    return run_step(run, name, eval_config(recipe), {"model": upstream}, work,
                    lambda: json.loads((run.path / path).read_text()))


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
    evals = [_evaluate(recipe, run_dir, 0, policy, upstream, loader, loaded, store)]
    log(f"[00-base] evaluation {'reused' if evals[0].reused else f'done in {evals[0].seconds:.0f}s'}")
    steps: list[Step[Any]] = []
    for p in recipe.stages:
        step = _stage(recipe, run_dir, p, policy, upstream, loader, log, progress, loaded, store)
        steps.append(step)
        how = "unchanged: reused" if step.reused else f"done in {step.seconds:.0f}s"
        log(f"[{p.step}] {how}; model -> {step.value.model}")
        upstream, policy = step.output_hash, step.value.model
        ev = _evaluate(recipe, run_dir, p.index, policy, upstream, loader, loaded, store)
        evals.append(ev)
        log(f"[{p.step}] evaluation {'reused' if ev.reused else f'done in {ev.seconds:.0f}s'}")
    matrix = measure_matrix([e.value for e in evals], cfg.eval.bootstrap, cfg.eval.seed)
    timing = {p.step: {"seconds": s.seconds, "this_invocation": not s.reused} for p, s in zip(recipe.stages, steps)}
    prov = run_dir.write_provenance(None, {"model": {"base": cfg.base, "final": policy}, "steps": timing})
    run_dir.write_metrics("recipe", {}, prov)
    report = write_report(run_dir.path, report_data(recipe, steps, evals, matrix))
    log(f"[recipe] report: {report}")
    return RecipeResult(report, steps, evals, matrix, loaded)


def report_data(recipe: Recipe, steps: list[Step[Any]], evals: list[Step[dict[str, Any]]],
                matrix: list[dict[str, Any]]) -> dict[str, Any]:
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
    return {"recipe": recipe.path, "base": recipe.cfg.base, "measures": list(MEASURES),
            "measure_sets": {m: s for m, (s, _) in MEASURES.items()}, "higher_is_better": HIGHER_IS_BETTER,
            "eval_sizes": sizes, "eval": config_to_dict(recipe.cfg.eval), "stages": rows, "matrix": matrix}
