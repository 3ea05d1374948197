"""``selfalign synth self-instruct | evolve | backtranslate | llm2llm | redteam | ifd``.

Every command: ``--config`` YAML and ``--set key=value`` overrides, ``--model``, ``--seed``,
``--out``; all generations go through the store, so a killed run resumes. Each writes
``<out>/rows.jsonl`` (TRL rows with ``meta``), ``<out>/report.html`` and ``report.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

from selfalign.config import config_from_yaml, config_to_dict

app = typer.Typer(no_args_is_help=True, help="Self-alignment data synthesis.")

CONFIG = typer.Option(None, "--config", "-c", help="YAML config")
SET = typer.Option([], "--set", help="override a config key (repeatable)")
MODEL = typer.Option(None, "--model", "-m", help="model spec (default: the embedded smollm2-135m)")
SEED = typer.Option(None, "--seed")
OUT = typer.Option(None, "--out", "-o", help="output directory")


def _cfg(cls, config, overrides, **flags):
    ovs = list(overrides) + [f"{k}={v}" for k, v in flags.items() if v is not None]
    return config_from_yaml(cls, config, ovs)


def _model(spec: str, store: str, batch_size: int = 256):
    from selfalign.models.registry import load_model
    from selfalign.store.cache import CachedModel, Store

    return CachedModel(load_model(spec, batch_size=batch_size), Store(store or None))


def _finish(out: str, title: str, rows: list[dict[str, Any]], cfg: Any, stats: Any = None,
            similarities=(), extra: dict[str, Any] | None = None) -> None:
    from selfalign.report.synth import write_report
    from selfalign.store.runs import input_hashes, write_stage

    conf = config_to_dict(cfg)
    files = [conf[k] for k in ("seed_tasks", "corpus", "data", "instructions", "input") if isinstance(conf.get(k), str)]
    stage_stats = stats.to_dict() if stats is not None else None
    stage = "-".join(title.lower().replace("-", " ").split())
    res = write_stage(out, stage, conf, input_hashes(files), rows,
                      lambda d: write_report(d, title, rows, stage_stats, similarities, extra), stage_stats)
    typer.echo(f"{res.n_rows} rows -> {res.rows_path}\nreport: {res.report_path}")


@app.command("self-instruct")
def self_instruct(config: Optional[str] = CONFIG, set: List[str] = SET, model: Optional[str] = MODEL,
                  seed: Optional[int] = SEED, out: Optional[str] = OUT,
                  target: Optional[int] = typer.Option(None, help="new instructions to keep"),
                  seed_tasks: Optional[str] = typer.Option(None, help="seed_tasks.jsonl (default: bundled)")) -> None:
    """Self-Instruct: grow a task pool from seed tasks, with the paper's filters and ROUGE-L < 0.7."""
    from selfalign.synth.self_instruct import SelfInstructConfig, run

    cfg = _cfg(SelfInstructConfig, config, set, model=model, seed=seed, out=out, target=target, seed_tasks=seed_tasks)
    res = run(cfg, _model(cfg.model, cfg.store))
    _finish(cfg.out, "Self-Instruct", res.rows, cfg, res.stats, res.stats.similarities,
            {"instructions": res.instructions[:50]})


@app.command()
def evolve(config: Optional[str] = CONFIG, set: List[str] = SET, model: Optional[str] = MODEL,
           seed: Optional[int] = SEED, out: Optional[str] = OUT,
           rounds: Optional[int] = typer.Option(None), instructions: Optional[str] = typer.Option(None)) -> None:
    """Evol-Instruct: in-depth and in-breadth evolution with elimination."""
    from selfalign.synth.evol_instruct import EvolConfig, run

    cfg = _cfg(EvolConfig, config, set, model=model, seed=seed, out=out, rounds=rounds, instructions=instructions)
    res = run(cfg, _model(cfg.model, cfg.store))
    _finish(cfg.out, "Evol-Instruct", res.rows, cfg, res.stats)


@app.command()
def backtranslate(config: Optional[str] = CONFIG, set: List[str] = SET, model: Optional[str] = MODEL,
                  seed: Optional[int] = SEED, out: Optional[str] = OUT,
                  corpus: Optional[str] = typer.Option(None), threshold: Optional[float] = typer.Option(None)) -> None:
    """Instruction backtranslation: backward model, self-augmentation, self-curation, iterations."""
    from selfalign.synth.backtranslation import BacktranslationConfig, run

    cfg = _cfg(BacktranslationConfig, config, set, model=model, seed=seed, out=out, corpus=corpus, threshold=threshold)
    res = run(cfg, _model(cfg.model, cfg.store))
    judges = {f"curation {h['iteration']} (1-5 rating)": {"n": sum(h["score_counts"].values()) + h["unscored"],
                                                          "unscored": h["unscored"]} for h in res.history}
    _finish(cfg.out, "Instruction backtranslation", res.rows, cfg, extra={"history": res.history, "judges": judges})


@app.command()
def llm2llm(config: Optional[str] = CONFIG, set: List[str] = SET, model: Optional[str] = MODEL,
            seed: Optional[int] = SEED, out: Optional[str] = OUT,
            teacher: Optional[str] = typer.Option(None), data: Optional[str] = typer.Option(None)) -> None:
    """LLM2LLM: a teacher writes new pairs from the student's failures on the original data."""
    from selfalign.synth.llm2llm import LLM2LLMConfig, run

    cfg = _cfg(LLM2LLMConfig, config, set, student=model, seed=seed, out=out, teacher=teacher, data=data)
    student = _model(cfg.student, cfg.store)
    teacher_m = student if cfg.teacher == cfg.student else _model(cfg.teacher, cfg.store)
    res = run(cfg, student, teacher_m)
    _finish(cfg.out, "LLM2LLM", res.rows, cfg, extra={"history": res.history, "model_dir": res.model_dir})


@app.command()
def redteam(config: Optional[str] = CONFIG, set: List[str] = SET, model: Optional[str] = MODEL,
            seed: Optional[int] = SEED, out: Optional[str] = OUT,
            steps: Optional[int] = typer.Option(None), target: Optional[str] = typer.Option(None)) -> None:
    """Red-team prompts: keyword prompts and a Rainbow-Teaming-style archive."""
    from selfalign.synth.redteam import RedTeamConfig, run

    cfg = _cfg(RedTeamConfig, config, set, model=model, seed=seed, out=out, steps=steps, target=target)
    gen = _model(cfg.model, cfg.store)
    tgt = _model(cfg.target, cfg.store) if cfg.target else None
    jdg = _model(cfg.judge, cfg.store) if cfg.judge else None
    res = run(cfg, gen, tgt, jdg)
    cells = {f"{c}/{s}": v["question"] for (c, s), v in res.archive.items()}
    _finish(cfg.out, "Red-team prompts", res.rows, cfg, extra={"archive": cells, "replacements": res.replacements,
                                                           "order_dependent_verdicts": res.order_dependent_verdicts,
                                                           "too_close_to_parent": res.too_close_to_parent,
                                                           "judges": res.judges})


@app.command()
def ifd(input: str = typer.Argument(..., help="TRL rows JSONL (prompt, completion)"),
        config: Optional[str] = CONFIG, set: List[str] = SET, model: Optional[str] = MODEL, out: Optional[str] = OUT,
        top_fraction: Optional[float] = typer.Option(None), threshold: Optional[float] = typer.Option(None)) -> None:
    """IFD selection: keep the rows whose instruction helps least (highest IFD <= 1)."""
    from selfalign.synth.ifd import IFDConfig, run

    cfg = _cfg(IFDConfig, config, set, model=model, out=out, input=input, top_fraction=top_fraction, threshold=threshold)
    res = run(cfg, _model(cfg.model, cfg.store))
    out_dir = str(Path(cfg.out).parent)
    from selfalign.report.synth import write_report

    report = write_report(out_dir, "IFD selection", res.rows, {"candidates": res.counts["input"],
                          "kept": res.counts["kept"],
                          "filtered": {k: v for k, v in res.counts.items() if k not in ("input", "kept")}},
                          extra={"ifd": res.scores})
    typer.echo(f"{res.counts} -> {cfg.out}\nreport: {report}")
