"""A first-class stage: a config dataclass, named model roles, ``run(cfg, models, ctx) -> Result``
with a typed result, a step record; registered by name with :func:`register_stage` (inspect's
``@task`` idiom), and one step runner, :func:`run_step`, that decides what is fresh.

A stage is a function::

    @register_stage("honesty", config=HonestyConfig, result=HonestyStageResult, roles=("policy",),
                    owned=("model", "out", "store"))
    def honesty(cfg: HonestyConfig, models: Models, ctx: StageContext) -> HonestyStageResult: ...

* ``config``: the dataclass its options build into (strictly, through :func:`selfalign.config.load_config`:
  an unknown key names the nearest valid one, a bad value names its field);
* ``owned``: fields of that config the caller sets (the model, the output folder, the store), refused
  in the options and left out of the freshness hash (the model's identity is part of the inputs);
* ``roles``: which of :data:`ROLES` it uses; :class:`Models` loads each on first use, so a stage that
  is reused, and ``plan``, load no model;
* ``check``: reads every input file and checks every option before any model call (``plan`` calls it);
* ``inputs``: the files its output depends on besides the model (hashed into the step record);
* ``units``: its work units from its config (about the tokens it generates), which ``plan`` turns
  into a time estimate with the throughput measured on this machine (:mod:`selfalign.recipe.estimate`);
* ``result``: a dataclass derived from :class:`Result` (the model it hands on, rows, training),
  written to ``result.json`` and read back typed by :func:`load_result`.

Freshness is one mechanism, :meth:`selfalign.store.runs.RunDir.step_is_fresh` (config hash + input
hashes + output hashes on disk): :func:`run_step` reuses a step whose record matches and redoes any
other, then records it. A chain of steps (a recipe) passes each step's :func:`output_hash` into the
next one's inputs, so a change redoes that step and every step after it, nothing before.
"""

from __future__ import annotations

import dataclasses
import difflib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generic, TypeVar

from selfalign.config import ConfigError, config_to_dict, load_config
from selfalign.models.base import StageModel
from selfalign.store.runs import RunDir, input_hashes
from selfalign.types import stable_hash

#: the named model roles a stage may ask for
ROLES = ("policy", "teacher", "judge", "scorer", "critic", "target")

T = TypeVar("T")


# ------------------------------------------------------------------ typed results
@dataclass
class Training:
    """One fine-tuning a stage ran (or reused)."""

    method: str
    model_dir: str
    n_rows: int
    steps: int
    seconds: float
    precision: str
    last_loss: float | None = None
    reused: bool = False


@dataclass
class Result:
    """What every stage returns (a stage's own result adds its fields): ``model`` is the model the
    next stage takes (a trained directory, or the model it was given when it trained nothing)."""

    model: str
    rows: int = 0  # training rows this stage made
    training: Training | None = None


def result_to_dict(result: Result) -> dict[str, Any]:
    return config_to_dict(result)


def load_result(cls: type[T], data: dict[str, Any], source: str = "result.json") -> T:
    """A result read back as its own dataclass (strictly: a stale or foreign file is an error)."""
    return load_config(cls, data, source)


# ------------------------------------------------------------------ model roles
class Models:
    """The model of each role, loaded on first use through ``loader`` (spec -> store-wrapped model).
    ``loaded`` lists the specs loaded, in order (what a fully reused run never fills)."""

    def __init__(self, specs: dict[str, str], loader: Callable[[str], StageModel]):
        bad = [r for r in specs if r not in ROLES]
        if bad:
            raise ConfigError(f"unknown model role(s) {bad}; roles: {', '.join(ROLES)}")
        self.specs = dict(specs)
        self._loader = loader
        self._cache: dict[str, StageModel] = {}
        self.loaded: list[str] = []

    def spec(self, role: str) -> str:
        """The spec of ``role``; every role but the policy defaults to the policy."""
        if role not in ROLES:
            raise KeyError(f"unknown model role {role!r}; roles: {', '.join(ROLES)}")
        spec = self.specs.get(role) or self.specs.get("policy")
        if not spec:
            raise KeyError(f"no model for role {role!r} (and no policy to default to)")
        return spec

    def get(self, role: str) -> StageModel:
        spec = self.spec(role)
        if spec not in self._cache:
            self._cache[spec] = self._loader(spec)
            self.loaded.append(spec)
        return self._cache[spec]

    @property
    def policy(self) -> StageModel:
        return self.get("policy")

    @property
    def teacher(self) -> StageModel:
        return self.get("teacher")

    @property
    def judge(self) -> StageModel:
        return self.get("judge")

    @property
    def scorer(self) -> StageModel:
        return self.get("scorer")

    @property
    def critic(self) -> StageModel:
        return self.get("critic")


@dataclass
class StageContext:
    """Where a stage writes (``out``, its own folder) and how it reports progress."""

    out: Path
    step: str
    log: Callable[[str], None] = print
    progress: bool = False
    store: Any = None  # the store the run's models go through (for scores made outside a model: a PM's)


# ------------------------------------------------------------------ registry
@dataclass
class Stage:
    name: str
    config: type
    result: type
    fn: Callable[[Any, Models, StageContext], Any]
    roles: tuple[str, ...] = ("policy",)
    owned: tuple[str, ...] = ()
    check: Callable[[Any], None] | None = None
    inputs: Callable[[Any], list[str]] | None = None
    doc: str = ""
    units: Callable[[Any], float] | None = None

    def build(self, options: dict[str, Any] | None, source: str, owned: dict[str, Any] | None = None) -> Any:
        """The config from ``options``; a key the caller owns is refused, naming where it came from."""
        options = dict(options or {})
        taken = sorted(k for k in options if k in self.owned)
        if taken:
            raise ConfigError(f"{source}: {', '.join(taken)} set by the recipe, not in a stage's options")
        return load_config(self.config, {**options, **(owned or {})}, source)

    def config_key(self, cfg: Any) -> dict[str, Any]:
        """What decides the outputs: the options without the owned keys."""
        return {"stage": self.name, "options": {k: v for k, v in config_to_dict(cfg).items() if k not in self.owned}}

    def input_files(self, cfg: Any) -> dict[str, str]:
        return input_hashes(self.inputs(cfg)) if self.inputs else {}

    def __call__(self, cfg: Any, models: Models, ctx: StageContext) -> Result:
        res = self.fn(cfg, models, ctx)
        if not isinstance(res, self.result) or not isinstance(res, Result):
            raise TypeError(f"stage {self.name} returned {type(res).__name__}, not {self.result.__name__}")
        return res


REGISTRY: dict[str, Stage] = {}


def register_stage(name: str, *, config: type, result: type, roles: tuple[str, ...] = ("policy",),
                   owned: tuple[str, ...] = (), check: Callable[[Any], None] | None = None,
                   inputs: Callable[[Any], list[str]] | None = None,
                   units: Callable[[Any], float] | None = None) -> Callable[[Callable[..., Any]], Stage]:
    """Register ``fn(cfg, models, ctx) -> result`` as the stage ``name`` (a name is taken once)."""
    if not (dataclasses.is_dataclass(config) and dataclasses.is_dataclass(result) and issubclass(result, Result)):
        raise TypeError(f"stage {name}: config must be a dataclass and result a dataclass derived from Result")
    bad = [r for r in roles if r not in ROLES]
    if bad:
        raise ValueError(f"stage {name}: unknown role(s) {bad}; roles: {', '.join(ROLES)}")

    def deco(fn: Callable[..., Any]) -> Stage:
        if name in REGISTRY and REGISTRY[name].fn is not fn:
            raise ValueError(f"stage {name!r} is registered twice")
        stage = Stage(name, config, result, fn, tuple(roles), tuple(owned), check, inputs,
                      (fn.__doc__ or "").strip().split("\n")[0], units)
        REGISTRY[name] = stage
        return stage

    return deco


def get_stage(name: str) -> Stage:
    if name not in REGISTRY:
        close = difflib.get_close_matches(name, list(REGISTRY), n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(sorted(REGISTRY))})"
        raise ConfigError(f"unknown stage '{name}'{hint}")
    return REGISTRY[name]


# ------------------------------------------------------------------ the step runner
@dataclass
class Step(Generic[T]):
    """A step's value, whether it was reused, and its record (``steps/<name>.json``)."""

    name: str
    value: T
    reused: bool
    seconds: float
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def output_hash(self) -> str:
        return output_hash(self.record)


def output_hash(record: dict[str, Any] | None) -> str:
    """The hash of what a step wrote (its recorded output hashes): the input of the step after it."""
    return stable_hash((record or {}).get("outputs", {})) if record else "missing"


def files_under(root: Path, base: Path) -> list[str]:
    """Every file under ``root`` as a path relative to ``base``, checkpoints and temporaries left out."""
    if not root.exists():
        return []
    skip = ("checkpoints", "model.tmp")
    return sorted(str(p.relative_to(base)) for p in root.rglob("*")
                  if p.is_file() and not any(s in p.relative_to(root).parts for s in skip))


def is_fresh(run: RunDir, name: str, config: Any, inputs: dict[str, str]) -> bool:
    return run.step_is_fresh(name, config, inputs)


def run_step(run: RunDir, name: str, config: Any, inputs: dict[str, str],
             work: Callable[[], tuple[T, list[str], dict[str, Any]]], load: Callable[[], T]) -> Step[T]:
    """Reuse step ``name`` when its record matches ``config`` and ``inputs`` and its outputs are
    unchanged on disk (``load()`` reads them back); else ``work()`` -> (value, outputs relative to
    the run folder, stats), then record it. A step that raises records nothing: it is redone."""
    if run.step_is_fresh(name, config, inputs):
        rec = run.step_record(name) or {}
        return Step(name, load(), True, float(rec.get("seconds") or 0.0), rec)
    t0 = time.time()
    value, outputs, stats = work()
    seconds = time.time() - t0
    run.record_step(name, config, inputs, outputs, seconds, stats)
    return Step(name, value, False, seconds, run.step_record(name) or {})
