"""The recipe file: a base model, named model roles, the evaluation suite's options and an ordered
list of stages, each naming a registered stage and its options::

    base: smollm2-135m          # the raw model (a spec: embedded name, hub id or local path)
    out: runs/recipe-quick      # the run folder: stages/<NN-name>/, eval/<NN>/, steps/, report.html
    store: ""                   # the store ("" = the default one)
    models: {}                  # other roles (teacher, judge, scorer); default: the current policy
    eval: {n_id: 40, n_ood: 40} # the suite run after every stage (recipe.suite.SuiteConfig)
    stages:
      - stage: synth-sft        # a name registered with @register_stage
        options: {...}          # that stage's config fields
      - stage: honesty
        options: {...}

:func:`load_recipe` builds every stage's config before anything else happens: an unknown stage,
key or value is an error naming the file, the stage index and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfalign.config import ConfigError, load_config, read_yaml
from selfalign.recipe.suite import SuiteConfig
from selfalign.stage import ROLES, Stage, get_stage


@dataclass
class StageSpec:
    stage: str = ""
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class RecipeConfig:
    base: str = "smollm2-135m"
    out: str = "runs/recipe"
    store: str = ""
    batch_size: int = 256
    models: dict[str, str] = field(default_factory=dict)
    eval: SuiteConfig = field(default_factory=SuiteConfig)
    stages: list[StageSpec] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.base:
            raise ValueError("base: name the model the recipe starts from")
        bad = [r for r in self.models if r not in ROLES or r == "policy"]
        if bad:
            raise ValueError(f"models: unknown or fixed role(s) {bad} (the policy is the base, then each stage's "
                             f"output; set {', '.join(r for r in ROLES if r != 'policy')})")
        if not self.stages:
            raise ValueError("stages: name at least one stage")


@dataclass
class PlannedStage:
    index: int  # 1-based
    stage: Stage
    cfg: Any

    @property
    def step(self) -> str:
        return f"{self.index:02d}-{self.stage.name}"

    @property
    def where(self) -> str:
        return f"stages[{self.index - 1}] ({self.stage.name})"


@dataclass
class Recipe:
    path: str
    cfg: RecipeConfig
    stages: list[PlannedStage]

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)

    def stage_dir(self, p: PlannedStage) -> Path:
        return self.out / "stages" / p.step


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read and validate a recipe: every stage's options built into its config and its ``check``
    run (input files read, options checked); no model is loaded."""
    data = read_yaml(path)
    data.update(overrides or {})
    return build_recipe(data, str(path))


def build_recipe(data: dict[str, Any], source: str = "<recipe>") -> Recipe:
    cfg = load_config(RecipeConfig, data, source)
    planned = []
    for i, spec in enumerate(cfg.stages):
        where = f"{source}: stages[{i}]"
        if not spec.stage:
            raise ConfigError(f"{where}: 'stage' names a registered stage")
        try:
            stage = get_stage(spec.stage)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        p = PlannedStage(i + 1, stage, None)
        p.cfg = stage.build(spec.options, f"{where} ({spec.stage}).options",
                            {k: v for k, v in (("out", str(Path(cfg.out) / "stages" / p.step)), ("store", cfg.store))
                             if k in stage.owned})
        if stage.check is not None:
            try:
                stage.check(p.cfg)
            except (ValueError, OSError) as e:  # DataError and ConfigError are ValueErrors
                raise ConfigError(f"{where} ({spec.stage}).options: {e}") from None
        planned.append(p)
    return Recipe(source, cfg, planned)
