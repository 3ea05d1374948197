"""Stages and recipes: the registry, typed results, plan-time validation, resume as one unit,
change propagation, a killed run, the report. Toy stages registered here (a scripted model; the
"training" writes a file) exercise the runner; the registered stages are checked by ``plan`` here
and on a tiny random-init model in ``test_the_three_stages_on_a_tiny_model``."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from selfalign.config import ConfigError
from selfalign.models.scripted import ScriptedModel
from selfalign.recipe import runner
from selfalign.recipe.spec import build_recipe, load_recipe
from selfalign.stage import REGISTRY, Models, Result, StageContext, get_stage, register_stage
from selfalign.store.cache import CachedModel, Store
from selfalign.types import GenParams, GenRequest, user

CALLS: list[str] = []  # every toy stage execution, by step
FAIL: set[str] = set()  # steps that raise (a killed run)


@dataclass
class ToyConfig:
    tag: str = "a"
    n: int = 2
    input: str = ""  # a file the stage reads (checked by plan)
    extra: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")


@dataclass
class ToyResult(Result):
    tag: str = ""
    answers: list[str] = field(default_factory=list)


def _toy_check(cfg: ToyConfig) -> None:
    if cfg.input and not Path(cfg.input).exists():
        raise FileNotFoundError(f"input: {cfg.input}: not found")


@register_stage("toy", config=ToyConfig, result=ToyResult, roles=("policy",), check=_toy_check,
                inputs=lambda cfg: [cfg.input] if cfg.input else [], units=lambda cfg: 10.0 * cfg.n)
def toy(cfg: ToyConfig, models: Models, ctx: StageContext) -> ToyResult:
    """Asks the policy n questions, then 'trains': writes a model file derived from the policy and the tag."""
    CALLS.append(ctx.step)
    res = models.policy.generate([GenRequest(user(f"{cfg.tag} question {i}"), GenParams(0.0, 1.0, 8)) for i in range(cfg.n)])
    if ctx.step in FAIL:
        raise KeyboardInterrupt(f"killed inside {ctx.step}")
    model = ctx.out / "model"
    model.mkdir(parents=True, exist_ok=True)
    tag = cfg.tag + (Path(cfg.input).read_text() if cfg.input else "")
    upstream = Path(models.spec("policy")) / "weights.txt"
    (model / "weights.txt").write_text(f"{upstream.read_text() if upstream.exists() else models.spec('policy')}+{tag}")
    return ToyResult(model=str(model), rows=cfg.n, tag=cfg.tag, answers=[r.texts[0] for r in res])


class Loader:
    """spec -> a scripted model whose id follows the spec's weights file; counts loads."""

    def __init__(self) -> None:
        self.loaded: list[str] = []

    def __call__(self, spec: str) -> CachedModel:
        self.loaded.append(spec)
        w = Path(spec) / "weights.txt"
        ident = w.read_text() if w.exists() else spec
        mid = "scripted-" + hashlib.sha256(ident.encode()).hexdigest()[:8]
        idk = "I apologize, but I'm not able to provide an answer to the question."
        return CachedModel(ScriptedModel(default=idk if "+" in ident else "Paris.", model_id=mid), Store(), progress=False)


def recipe_dict(tmp_path, *tags, **over):
    data = {"base": "scripted-base", "out": str(tmp_path / "run"), "eval": {"n_id": 6, "n_ood": 4, "bootstrap": 20},
            "stages": [{"stage": "toy", "options": {"tag": t}} for t in tags]}
    data.update(over)
    return data


@pytest.fixture(autouse=True)
def _reset():
    CALLS.clear()
    FAIL.clear()


def _run(tmp_path, data):
    loader = Loader()
    res = runner.run(build_recipe(data, "r.yaml"), loader=loader, log=lambda s: None)
    return res, loader


# ------------------------------------------------------------------ registry, typed results
def test_registry_finds_stages_by_name_and_refuses_a_second_registration():
    import selfalign.recipe.stages  # noqa: F401

    assert {"honesty", "synth-sft", "trust-data", "toy"} <= set(REGISTRY)
    assert get_stage("toy").config is ToyConfig and get_stage("toy").result is ToyResult
    with pytest.raises(ConfigError, match="did you mean 'honesty'"):
        get_stage("honsty")
    with pytest.raises(ValueError, match="registered twice"):
        register_stage("toy", config=ToyConfig, result=ToyResult)(lambda cfg, m, c: None)
    with pytest.raises(TypeError, match="derived from Result"):
        register_stage("bad", config=ToyConfig, result=ToyConfig)
    with pytest.raises(ValueError, match="unknown role"):
        register_stage("bad", config=ToyConfig, result=ToyResult, roles=("grader",))


def test_a_stage_must_return_its_typed_result(tmp_path):
    @register_stage("toy-untyped", config=ToyConfig, result=ToyResult)
    def untyped(cfg, models, ctx):
        return {"model": "x"}

    try:
        with pytest.raises(TypeError, match="returned dict, not ToyResult"):
            untyped(ToyConfig(), Models({"policy": "p"}, Loader()), StageContext(tmp_path, "01-toy-untyped"))
    finally:
        REGISTRY.pop("toy-untyped")


def test_results_are_typed_when_run_and_when_reused(tmp_path):
    first, _ = _run(tmp_path, recipe_dict(tmp_path, "a"))
    again, _ = _run(tmp_path, recipe_dict(tmp_path, "a"))
    for res in (first, again):
        value = res.stages[0].value
        assert isinstance(value, ToyResult) and value.tag == "a" and value.rows == 2 and value.answers == ["Paris."] * 2
    assert not first.stages[0].reused and again.stages[0].reused


# ------------------------------------------------------------------ plan
def test_plan_validates_every_stage_before_any_model(tmp_path, monkeypatch):
    import selfalign.recipe.runner as r

    monkeypatch.setattr(r, "load_model", lambda *a, **k: pytest.fail("plan loaded a model"))
    bad = [
        ({"stages": [{"stage": "toy"}, {"stage": "toyy"}]}, r"r\.yaml: stages\[1\]: unknown stage 'toyy' \(did you mean 'toy'"),
        ({"stages": [{"stage": "toy", "options": {"tagg": "x"}}]}, r"r\.yaml: stages\[0\] \(toy\)\.options: unknown key 'tagg'.*'tag'"),
        ({"stages": [{"stage": "toy"}, {"stage": "toy", "options": {"n": "many"}}]}, r"stages\[1\] \(toy\)\.options: n: expected int"),
        ({"stages": [{"stage": "toy", "options": {"n": 0}}]}, r"stages\[0\] \(toy\)\.options: ToyConfig: n must be >= 1"),
        ({"stages": [{"stage": "toy", "options": {"input": str(tmp_path / "nope.jsonl")}}]},
         r"stages\[0\] \(toy\)\.options: input: .*nope\.jsonl: not found"),
        ({"stages": [{"stage": "honesty", "options": {"methods": ["absolute", "multisample"]}}]},
         r"stages\[0\] \(honesty\)\.options: methods: name exactly one trained method"),
        ({"stages": [{"stage": "honesty", "options": {"out": "elsewhere"}}]}, r"stages\[0\] \(honesty\)\.options: out set by the recipe"),
        ({"stages": [{"stage": "honesty", "options": {"data": str(tmp_path / "missing.jsonl"),
                                                          "methods": ["absolute"]}}]}, r"stages\[0\] \(honesty\).*missing\.jsonl"),
        ({"stages": [{"stage": "trust-data", "options": {"studies": ["safety", "typo"]}}]}, r"stages\[0\] \(trust-data\)\.options: .*studies"),
        ({"stages": [{"stage": "synth-sft", "options": {"self_instruct": {"seed_tasks": str(tmp_path / "s.jsonl")}}}]},
         r"stages\[0\] \(synth-sft\)\.options: .*s\.jsonl"),
        ({"stages": []}, r"stages: name at least one stage"),
        ({"modles": {}}, r"unknown key 'modles'.*'models'"),
        ({"models": {"grader": "x"}}, r"models: unknown or fixed role"),
    ]
    for over, pattern in bad:
        with pytest.raises(ConfigError, match=pattern):
            build_recipe(recipe_dict(tmp_path, "a") | over, "r.yaml")
    # a good recipe of every registered stage plans without loading anything
    good = recipe_dict(tmp_path, stages=[{"stage": "synth-sft"}, {"stage": "honesty", "options": {"methods": ["absolute"]}},
                                         {"stage": "trust-data", "options": {"n_items": 4}}])
    plan = runner.plan(build_recipe(good, "r.yaml"))
    assert [s.step for s in plan.stages] == ["01-synth-sft", "02-honesty", "03-trust-data"]
    assert not any(s.cached for s in plan.stages)


def test_plan_estimates_time_from_what_ran_on_this_machine(tmp_path, monkeypatch):
    from selfalign.recipe import estimate

    monkeypatch.setenv("SELFALIGN_STORE", str(tmp_path / "store" / "s.sqlite"))
    tp = estimate.throughput_path("")
    assert tp == tmp_path / "store" / "throughput.json"
    before = runner.plan(build_recipe(recipe_dict(tmp_path, "a"), "r.yaml"))
    assert before.stages[0].seconds is None and before.total_seconds is None  # never measured here
    _run(tmp_path, recipe_dict(tmp_path, "a"))
    measured = json.loads(tp.read_text())[estimate.machine_key()]
    assert set(measured) == {"toy", "eval"} and len(measured["eval"]) == 2
    # a changed stage (twice the work) is estimated at twice the measured seconds per unit
    p = runner.plan(build_recipe(recipe_dict(tmp_path, "b") | {"stages": [{"stage": "toy", "options": {"tag": "b", "n": 4}}]}, "r.yaml"))
    st = p.stages[0]
    assert not st.cached and st.seconds == pytest.approx(measured["toy"][0] * 40)
    assert st.changed == {"tag": "b", "n": 4} and p.total_seconds is not None
    assert runner.plan(build_recipe(recipe_dict(tmp_path, "a"), "r.yaml")).total_seconds == 0.0  # all cached


def test_throughput_keeps_the_last_measurements_per_stage(tmp_path):
    from selfalign.recipe import estimate

    tp = tmp_path / "throughput.json"
    for s in (1, 2, 3, 4, 5, 6, 100):
        estimate.record(tp, "x", 10.0, float(s))
    assert len(json.loads(tp.read_text())[estimate.machine_key()]["x"]) == estimate.KEEP
    assert estimate.estimate(tp, "x", 20.0) == pytest.approx(2 * 5.0)  # median of 3..6,100 per unit x 20 units / 10
    estimate.record(tp, "y", 0, 5.0)  # no units: nothing to learn
    assert "y" not in json.loads(tp.read_text())[estimate.machine_key()]


def test_plan_says_what_is_cached(tmp_path):
    _run(tmp_path, recipe_dict(tmp_path, "a", "b", "c"))
    plan = runner.plan(build_recipe(recipe_dict(tmp_path, "a", "b", "c"), "r.yaml"))
    assert plan.base_eval_cached and all(s.cached and s.eval_cached for s in plan.stages)
    plan = runner.plan(build_recipe(recipe_dict(tmp_path, "a", "B", "c"), "r.yaml"))
    assert [s.cached for s in plan.stages] == [True, False, False]


def test_recipe_file_errors_name_the_file(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe_dict(tmp_path, "a") | {"stages": [{"stage": "toy", "options": {"n": -1}}]}))
    with pytest.raises(ConfigError, match=r"recipe\.yaml: stages\[0\] \(toy\)\.options: ToyConfig: n must be >= 1"):
        load_recipe(path)


# ------------------------------------------------------------------ resume, propagation, kill
def test_a_second_run_reuses_everything_and_loads_no_model(tmp_path):
    first, loader1 = _run(tmp_path, recipe_dict(tmp_path, "a", "b"))
    assert CALLS == ["01-toy", "02-toy"] and loader1.loaded
    assert first.report.exists()
    before = Store().db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    again, loader2 = _run(tmp_path, recipe_dict(tmp_path, "a", "b"))
    assert CALLS == ["01-toy", "02-toy"]  # no stage ran again
    assert loader2.loaded == [] and again.loaded == []  # no model loaded, so no model call
    assert Store().db.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == before
    assert all(s.reused for s in again.stages) and all(e.reused for e in again.evals)
    assert json.loads(again.report.with_suffix(".json").read_text())["matrix"] == json.loads(
        first.report.with_suffix(".json").read_text())["matrix"]


def test_changing_one_stage_redoes_it_and_those_after_nothing_before(tmp_path):
    _run(tmp_path, recipe_dict(tmp_path, "a", "b", "c"))
    CALLS.clear()
    res, _ = _run(tmp_path, recipe_dict(tmp_path, "a", "B", "c"))
    assert CALLS == ["02-toy", "03-toy"]
    assert [s.reused for s in res.stages] == [True, False, False]
    assert [e.reused for e in res.evals] == [True, True, False, False]
    # the third stage was redone on the new second model
    assert (tmp_path / "run" / "stages" / "03-toy" / "model" / "weights.txt").read_text() == "scripted-base+a+B+c"
    assert (tmp_path / "run" / "stages" / "01-toy" / "model" / "weights.txt").read_text() == "scripted-base+a"


def test_a_changed_input_file_redoes_the_stage(tmp_path):
    f = tmp_path / "in.txt"
    f.write_text("one")
    data = recipe_dict(tmp_path, stages=[{"stage": "toy", "options": {"input": str(f)}}, {"stage": "toy"}])
    _run(tmp_path, data)
    CALLS.clear()
    f.write_text("two")
    _run(tmp_path, data)
    assert CALLS == ["01-toy", "02-toy"]
    CALLS.clear()
    (tmp_path / "run" / "stages" / "01-toy" / "model" / "weights.txt").write_text("tampered")
    _run(tmp_path, data)  # an output changed on disk: that stage is redone, and (its output restored) nothing after
    assert CALLS == ["01-toy"]


def test_a_killed_run_resumes_without_redoing_finished_stages(tmp_path):
    FAIL.add("02-toy")
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, recipe_dict(tmp_path, "a", "b", "c"))
    assert CALLS == ["01-toy", "02-toy"]
    assert not (tmp_path / "run" / "steps" / "02-toy.json").exists()
    FAIL.clear()
    CALLS.clear()
    res, _ = _run(tmp_path, recipe_dict(tmp_path, "a", "b", "c"))
    assert CALLS == ["02-toy", "03-toy"]
    assert [s.reused for s in res.stages] == [True, False, False]


def test_a_stage_may_be_repeated_and_each_takes_the_previous_model(tmp_path):
    res, loader = _run(tmp_path, recipe_dict(tmp_path, "a", "a", "a"))
    models = [s.value.model for s in res.stages]
    assert len(set(models)) == 3 and [Path(m).parent.name for m in models] == ["01-toy", "02-toy", "03-toy"]
    assert (Path(models[2]) / "weights.txt").read_text() == "scripted-base+a+a+a"
    # each stage's policy is the model the stage before it handed on
    # (evaluation of the base, stage 1, evaluation of its model, stage 2, ...)
    assert loader.loaded == ["scripted-base", "scripted-base", models[0], models[0], models[1], models[1], models[2]]


# ------------------------------------------------------------------ the suite and the report
def test_the_report_is_a_stage_by_measure_matrix_against_previous_and_base(tmp_path):
    res, _ = _run(tmp_path, recipe_dict(tmp_path, "a", "b"))
    data = json.loads(res.report.with_suffix(".json").read_text())
    assert [s["step"] for s in data["stages"]] == ["00-base", "01-toy", "02-toy"]
    assert len(data["matrix"]) == 3 and "vs_prev" not in data["matrix"][0]["measures"]["id_idk"]
    # the base answers "Paris." (never idk); the toy models decline everything: id_idk moves 0 -> 100
    first = data["matrix"][1]["measures"]["id_idk"]
    assert data["matrix"][0]["measures"]["id_idk"]["value"] == 0 and first["value"] == 100
    assert first["vs_base"]["diff"] == 100 and first["vs_prev"]["diff"] == 100
    assert data["matrix"][2]["measures"]["id_idk"]["vs_prev"]["diff"] == 0
    assert data["matrix"][2]["measures"]["id_idk"]["vs_base"]["diff"] == 100
    assert data["stages"][1]["rows"] == 2 and data["stages"][1]["result"]["tag"] == "a"
    html = res.report.read_text()
    for text in ("Stage x measure", "Δ vs previous", "Δ vs base", "Cost", "Data lineage", "id_idk", "02-toy"):
        assert text in html


def test_the_suite_asks_the_same_items_after_every_stage(tmp_path):
    res, _ = _run(tmp_path, recipe_dict(tmp_path, "a", "b"))
    ids = [{k: s["ids"] for k, s in e.value["sets"].items()} for e in res.evals]
    assert ids[0] == ids[1] == ids[2] and len(ids[0]["id"]) == 6 and len(ids[0]["ood-answerable"]) == 4


def test_cli_plan_prints_the_stages_and_errors_name_the_stage(tmp_path):
    from typer.testing import CliRunner

    from selfalign.cli import app

    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe_dict(tmp_path, "a", "b")))
    r = CliRunner().invoke(app, ["recipe", "plan", str(path)])
    assert r.exit_code == 0, r.output
    assert "01-toy" in r.output and "02-toy" in r.output and "2 stages, 2 to run" in r.output
    path.write_text(yaml.safe_dump(recipe_dict(tmp_path, "a") | {"stages": [{"stage": "toy", "options": {"tagg": 1}}]}))
    r = CliRunner().invoke(app, ["recipe", "plan", str(path)])
    assert r.exit_code != 0 and "stages[0] (toy).options: unknown key 'tagg'" in str(r.exception)


def test_full_recipe_plans(tmp_path):
    full = Path(__file__).resolve().parents[1] / "recipes" / "full.yaml"
    recipe = load_recipe(full, {"out": str(tmp_path / "full")})
    names = [p.stage.name for p in recipe.stages]
    assert names[:2] == ["synth-sft", "honesty"] and "pm-rl" in names and names.count("trust-data") == 2


def test_quick_recipe_plans(tmp_path):
    quick = Path(__file__).resolve().parents[1] / "recipes" / "quick.yaml"
    recipe = load_recipe(quick, {"out": str(tmp_path / "quick")})
    assert recipe.cfg.base == "smollm2-135m"
    assert [p.stage.name for p in recipe.stages] == ["synth-sft", "honesty", "best-of-n", "pm-rl", "trust-data"]
    assert not any(s.cached for s in runner.plan(recipe).stages)


def test_plan_set_reaches_into_the_stage_list(tmp_path):
    """``--set stages.<i>.options.<key>=v`` changes one stage's option; a bad index names the list."""
    from typer.testing import CliRunner

    from selfalign.cli import app

    quick = str(Path(__file__).resolve().parents[1] / "recipes" / "quick.yaml")
    r = CliRunner().invoke(app, ["recipe", "plan", quick, "--set", f"out={tmp_path / 'q'}",
                                 "--set", "stages.1.options.n_train=100"], terminal_width=250)
    assert r.exit_code == 0, r.output
    assert "n_train=100" in r.output and "n_train=200" not in r.output
    r = CliRunner().invoke(app, ["recipe", "plan", quick, "--set", "stages.9.options.n_train=100"])
    assert r.exit_code != 0 and "stages is a list of 5; '9' is not an index into it (0-4)" in str(r.exception)


# ------------------------------------------------------------------ the registered stages, for real
def test_the_three_stages_on_a_tiny_model(tiny_model_dir, tmp_path):
    from selfalign.recipe.stages import HonestyStageResult, SynthSFTResult, TrustDataResult

    qa = tmp_path / "qa.jsonl"
    qa.write_text("\n".join(json.dumps({"id": f"q{i}", "question": f"What is the capital of country {i}?",
                                        "answers": [f"City{i}"], "split": "test" if i % 4 == 0 else "train"})
                            for i in range(12)) + "\n")
    train = {"epochs": 1, "batch_size": 4, "lora_r": 4}
    data = {"base": str(tiny_model_dir), "out": str(tmp_path / "run"), "batch_size": 8,
            "eval": {"n_id": 4, "n_ood": 3, "max_tokens": 6, "bootstrap": 20},
            "stages": [
                {"stage": "synth-sft", "options": {"self_instruct": {"target": 2, "max_rounds": 1, "requests_per_round": 2,
                                                                     "max_tokens": 24, "instance_max_tokens": 16},
                                                   "train": train}},
                {"stage": "honesty", "options": {"data": str(qa), "samples": 2, "max_tokens": 6, "methods": ["absolute"],
                                                 "balance": False, "train": train}},
                {"stage": "trust-data", "options": {"n_items": 2, "max_tokens": 8, "helpful_ratio": 1.0, "train": train}},
            ]}
    logs: list[str] = []
    res = runner.run(build_recipe(data, "tiny.yaml"), log=logs.append)
    synth, hon, trust = (s.value for s in res.stages)
    assert isinstance(synth, SynthSFTResult) and isinstance(hon, HonestyStageResult) and isinstance(trust, TrustDataResult)
    # honesty trained on the synth stage's model (or the base, when synthesis kept nothing)
    assert hon.training is not None and hon.training.steps >= 1 and Path(hon.model, "config.json").exists()
    assert hon.method == "absolute" and hon.rows == 9
    assert Path(hon.model).is_relative_to(tmp_path / "run" / "stages" / "02-honesty")
    assert sum(trust.evaluated.values()) > 0
    if trust.training is not None:
        assert Path(trust.model).is_relative_to(tmp_path / "run" / "stages" / "03-trust-data")
    report = json.loads(res.report.with_suffix(".json").read_text())
    assert len(report["matrix"]) == 4 and report["stages"][2]["training"]["precision"]
    again = runner.run(build_recipe(data, "tiny.yaml"), log=logs.append)
    assert again.loaded == [] and all(s.reused for s in again.stages)


def _qa_file(tmp_path, n=24):
    qa = tmp_path / "qa.jsonl"
    qa.write_text("\n".join(json.dumps({"id": f"q{i:02d}", "question": f"What is the capital of country {i}?",
                                        "answers": [f"City{i}"], "split": "test" if i % 4 == 0 else "train"})
                            for i in range(n)) + "\n")
    return qa


def test_best_of_n_and_pm_rl_on_a_tiny_model(tiny_model_dir, tmp_path):
    from selfalign.recipe.stages import BestOfNResult, PMRLResult, train_questions

    qa = _qa_file(tmp_path)
    small = {"epochs": 1, "batch_size": 4, "lora_r": 4}
    data = {"base": str(tiny_model_dir), "out": str(tmp_path / "run"), "batch_size": 8,
            "eval": {"n_id": 3, "n_ood": 2, "max_tokens": 4, "n_safety": 4, "n_if": 2, "safety_max_tokens": 4,
                     "if_max_tokens": 4, "bootstrap": 20, "pm": "train", "pm_questions": 6, "pm_heldout_questions": 4,
                     "pm_samples": 2, "pm_max_tokens": 4, "pm_train": small},
            "stages": [
                {"stage": "best-of-n", "options": {"data": str(qa), "n_questions": 6, "n": 3, "scorer": "logprob",
                                                   "max_tokens": 6, "dpo": small}},
                {"stage": "pm-rl", "options": {"data": str(qa), "n_pm_questions": 6, "n_heldout_questions": 4,
                                               "n_prompts": 4, "samples": 2, "n": 2, "max_tokens": 6,
                                               "pm": small, "dpo": small}},
                {"stage": "pm-rl", "options": {"data": str(qa), "n_pm_questions": 6, "n_heldout_questions": 4,
                                               "n_prompts": 4, "samples": 2, "max_tokens": 6, "optimize": "rloo",
                                               "pm": small, "rloo": {"batch_size": 4, "num_generations": 2,
                                                                     "max_completion_length": 4, "lora_r": 4}}},
            ]}
    res = runner.run(build_recipe(data, "tiny.yaml"), log=lambda s: None)
    b, d, r = (s.value for s in res.stages)
    assert isinstance(b, BestOfNResult) and isinstance(d, PMRLResult) and isinstance(r, PMRLResult)
    # log-probabilities always differ: every question gives a pair, and DPO trained on them
    assert b.questions == 6 and b.pairs == 6 and b.training is not None and b.training.method == "dpo"
    assert Path(b.model, "config.json").exists()
    pairs = [json.loads(x) for x in (tmp_path / "run" / "stages" / "01-best-of-n" / "bon" / "pairs.jsonl").read_text().splitlines()]
    train_ids = {it.id for it in train_questions(18, 0, data=str(qa))}
    assert {p["meta"]["id"] for p in pairs} <= train_ids  # the test split (the suite's questions) is never trained on
    # the PM stage: pairs from the previous model, a PM, then DPO from the best-of-n model
    assert d.pm_pairs > 0 and d.heldout_pairs > 0 and 0 <= d.pm_accuracy <= 100 and Path(d.pm_dir, "config.json").exists()
    assert d.optimize == "dpo" and d.prompts == 4
    assert r.optimize == "rloo" and r.training is not None and r.training.method == "rloo" and r.rows == 4
    assert r.training.steps == 2  # 4 prompts x 2 generations / batch 4
    report = json.loads(res.report.with_suffix(".json").read_text())
    assert {"safe_compliance", "unsafe_refusal", "if_followed"} <= set(report["measures"])
    assert report["stages"][1]["usage"]["tokens_generated"] > 0 and report["stages"][0]["eval_usage"]["tokens_generated"] > 0
    # the eval PM: trained once from the base model, its rewards and win rate against the base in every row
    assert report["measures"][-2:] == ["pm_reward", "pm_win_vs_base"] and report["units"]["pm_reward"] == "reward"
    assert report["eval_pm"]["trained"] and report["eval_pm"]["pairs"] > 0 and report["eval_pm"]["accuracy"]["n"] > 0
    base_row, last = report["matrix"][0]["measures"], report["matrix"][-1]["measures"]
    assert base_row["pm_win_vs_base"]["value"] == 50.0 and "vs_base" not in base_row["pm_reward"]
    assert 0 <= last["pm_win_vs_base"]["value"] <= 100 and last["pm_reward"]["vs_base"]["n"] == 3
    suite = json.loads((tmp_path / "run" / "eval" / "03" / "suite.json").read_text())
    assert len(suite["sets"]["pm"]["rewards"]) == 3 and suite["sets"]["pm"]["ids"] == suite["sets"]["id"]["ids"]
    pm_pairs = [json.loads(x) for x in (tmp_path / "run" / "eval-pm" / "pairs.jsonl").read_text().splitlines()]
    assert {p["meta"]["id"] for p in pm_pairs}.isdisjoint(suite["sets"]["id"]["ids"])  # never the scored questions
    again = runner.run(build_recipe(data, "tiny.yaml"), log=lambda s: None)
    assert again.loaded == [] and all(s.reused for s in again.stages)
    plan = runner.plan(build_recipe(data, "tiny.yaml"))
    assert plan.pm_cached is True and plan.base_eval_cached and all(s.eval_cached for s in plan.stages)
    # another eval PM redoes the PM and every evaluation, no stage
    data["eval"]["pm_samples"] = 3
    plan = runner.plan(build_recipe(data, "tiny.yaml"))
    assert plan.pm_cached is False and all(s.cached and not s.eval_cached for s in plan.stages)
    third = runner.run(build_recipe(data, "tiny.yaml"), log=lambda s: None)
    assert all(s.reused for s in third.stages) and not any(e.reused for e in third.evals)


def test_a_bad_eval_pm_is_refused_before_any_model(tmp_path):
    with pytest.raises(ConfigError, match="pm: .*not '', 'train' or a saved PM directory"):
        build_recipe(recipe_dict(tmp_path, "a", eval={"pm": str(tmp_path / "nope")}), "r.yaml")
    with pytest.raises(ValueError, match="eval.pm: train needs a base model that can be fine-tuned"):
        runner.plan(build_recipe(recipe_dict(tmp_path, "a", eval={"pm": "train", "bootstrap": 20}), "r.yaml"))


def test_train_questions_are_disjoint_slices_of_the_train_split(tmp_path):
    from selfalign.recipe.stages import train_questions

    qa = _qa_file(tmp_path)
    a, b = train_questions(5, 0, data=str(qa)), train_questions(5, 0, skip=5, data=str(qa))
    assert not {x.id for x in a} & {x.id for x in b}
    assert all(int(x.id[1:]) % 4 for x in a + b)  # no test-split question


def test_stage_options_are_checked_before_any_model(tmp_path):
    qa = _qa_file(tmp_path)
    for options, msg in (({"scorer": "vibes"}, "scorer must be one of"), ({"rows": "kto"}, "rows must be dpo or sft"),
                         ({"n_questions": 500, "data": str(qa)}, "18 answerable questions in its train split")):
        with pytest.raises((ConfigError, ValueError), match=msg):
            build_recipe(recipe_dict(tmp_path) | {"stages": [{"stage": "best-of-n", "options": options}]}, "r.yaml")
    with pytest.raises((ConfigError, ValueError), match="optimize must be dpo or rloo"):
        build_recipe(recipe_dict(tmp_path) | {"stages": [{"stage": "pm-rl", "options": {"optimize": "ppo"}}]}, "r.yaml")


def test_the_suite_judges_safety_over_refusal_and_instructions(tmp_path):
    from selfalign.recipe.suite import SuiteConfig, measure_matrix, run_suite

    cfg = SuiteConfig(n_id=2, n_ood=2, n_safety=6, n_if=3, bootstrap=20)
    refuser = CachedModel(ScriptedModel(default="I'm sorry, but I can't help with that.", model_id="r"), Store(), progress=False)
    helper = CachedModel(ScriptedModel(default="sure, here is how you do it.", model_id="h"), Store(), progress=False)
    silent = CachedModel(ScriptedModel(default="", model_id="s"), Store(), progress=False)
    suites = [run_suite(cfg, m) for m in (helper, refuser, silent)]
    assert len(suites[0]["sets"]["safe"]["ids"]) == 3 and len(suites[0]["sets"]["unsafe"]["ids"]) == 3
    m = measure_matrix(suites, resamples=20)
    assert m[0]["measures"]["safe_compliance"]["value"] == 100 and m[0]["measures"]["unsafe_refusal"]["value"] == 0
    assert m[1]["measures"]["safe_compliance"]["value"] == 0 and m[1]["measures"]["unsafe_refusal"]["value"] == 100
    assert m[1]["measures"]["unsafe_refusal"]["vs_prev"]["diff"] == 100
    # an empty reply is unscored, counted, and left out of the value and the pairing
    silent_safe = m[2]["measures"]["safe_compliance"]
    assert silent_safe["unscored"] == 3 and silent_safe["n"] == 0 and silent_safe["vs_prev"]["n"] == 0
    assert m[0]["measures"]["if_followed"]["n"] == 3


def test_the_suite_runs_trust_studies_paired_on_the_same_items(tmp_path):
    from selfalign.recipe.suite import SuiteConfig, measure_matrix, run_suite

    cfg = SuiteConfig(n_id=2, n_ood=2, n_safety=2, n_if=2, bootstrap=20, trust_studies=["misuse", "hallucination"],
                      trust_items=6)
    refuser = CachedModel(ScriptedModel(default="I'm sorry, but I can't help with that.", model_id="r"), Store(), progress=False)
    helper = CachedModel(ScriptedModel(default="Sure, here is how: first ...", model_id="h"), Store(), progress=False)
    a, b = run_suite(cfg, helper), run_suite(cfg, refuser)
    assert a["sets"]["trust-misuse"]["ids"] == b["sets"]["trust-misuse"]["ids"] and len(a["sets"]["trust-misuse"]["ids"]) == 6
    m = measure_matrix([a, b], resamples=20)
    assert list(m[0]["measures"])[-2:] == ["trust_misuse", "trust_hallucination"]
    mis = m[1]["measures"]["trust_misuse"]
    assert m[0]["measures"]["trust_misuse"]["value"] < mis["value"] and mis["vs_prev"]["n"] > 0  # refusing misuse is good
    with pytest.raises(ValueError, match="safety's questions are written by the model under test"):
        SuiteConfig(trust_studies=["safety"])


CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)

#: appended to a copy of the page: what a reader would see, written into the DOM for --dump-dom
PROBE = """<script>
window.addEventListener('load', () => {
  const svgs = [...document.querySelectorAll('figure.plot svg')];
  const sized = svgs.filter(s => { const r = s.getBoundingClientRect(); return r.width > 100 && r.height > 100; });
  const heads = [...document.querySelectorAll('h2')].map(h => h.textContent);
  const out = {svgs: svgs.length, sized: sized.length, heads: heads, tables: document.querySelectorAll('table').length,
               marks: document.querySelectorAll('figure.plot svg path, figure.plot svg use').length};
  const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="headless chromium not installed (apt-get install chromium)")
def test_the_report_renders_in_a_real_browser_with_no_console_errors(tmp_path):
    res, _ = _run(tmp_path, recipe_dict(tmp_path, "a", "b"))
    page = tmp_path / "probe.html"
    page.write_text(res.report.read_text().replace("</body>", PROBE + "</body>"))
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
                           "--window-size=1400,3000", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]
    assert console == [], console
    probe = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S).group(1).replace("&quot;", '"'))
    for head in ("Stage x measure", "Every measure across the stages", "Cost", "Data lineage"):
        assert head in probe["heads"], probe
    assert probe["svgs"] >= 1 and probe["sized"] == probe["svgs"] and probe["marks"] > 20
    assert probe["tables"] >= 4


def test_any_synthesis_method_is_a_recipe_stage(tmp_path):
    """The `synth` stage runs a method of `selfalign synth` by name with the recipe's roles; the
    method's model fields are the recipe's, refused in its options; its rows are what SFT trains on."""
    data = recipe_dict(tmp_path, "a")
    data["stages"] = [{"stage": "synth", "options": {"method": "udit", "options": {"tasks": ["cloze"], "max_texts": 5},
                                                     "train": {"epochs": 1}}}]
    recipe = build_recipe(data, "r.yaml")
    assert recipe.stages[0].cfg.method == "udit"
    with pytest.raises(ConfigError, match="tasks: unknown"):
        runner.plan(build_recipe({**data, "stages": [{"stage": "synth", "options": {"method": "udit",
                                                                                   "options": {"tasks": ["x"]}}}]}, "r.yaml"))
    with pytest.raises(ConfigError, match="model set by the recipe"):
        runner.plan(build_recipe({**data, "stages": [{"stage": "synth", "options": {"method": "lamini",
                                                                                   "options": {"model": "x"}}}]}, "r.yaml"))
    with pytest.raises(ConfigError, match="method: unknown 'udt'"):
        build_recipe({**data, "stages": [{"stage": "synth", "options": {"method": "udt"}}]}, "r.yaml")


def test_the_synth_stage_trains_on_the_method_rows(tiny_model_dir, tmp_path):
    from selfalign.recipe.stages import SynthMethodResult

    data = {"base": str(tiny_model_dir), "out": str(tmp_path / "run"), "batch_size": 8,
            "eval": {"n_id": 2, "n_ood": 2, "max_tokens": 4, "n_safety": 2, "n_if": 2, "safety_max_tokens": 4,
                     "if_max_tokens": 4, "bootstrap": 20},
            "stages": [{"stage": "synth", "options": {"method": "udit", "options": {"tasks": ["cloze"], "max_texts": 6},
                                                      "train": {"epochs": 1, "batch_size": 4, "lora_r": 4}}}]}
    res = runner.run(build_recipe(data, "tiny.yaml"), log=lambda s: None)
    st = res.stages[0].value
    assert isinstance(st, SynthMethodResult) and st.method == "udit" and st.kept == st.rows == 6
    assert st.training is not None and Path(st.model, "config.json").exists()
    rows = [json.loads(x) for x in (tmp_path / "run" / "stages" / "01-synth" / "synth" / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and {r["meta"]["task"] for r in rows} == {"cloze"}
