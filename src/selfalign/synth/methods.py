"""Every synthesis method as a :class:`selfalign.command.Command` registration, in one list
(:data:`COMMANDS`): ``selfalign synth <name>`` (:mod:`selfalign.synth.cli`) and the recipe stage
``synth`` (:mod:`selfalign.recipe.stages`) both read it.

The methods: self-instruct, evolve, backtranslate, llm2llm, redteam, ifd, udit, dynosaur, lamini,
unnatural, longform, dog-instruct, instructors, reflection, auto-evol, autodetect. Each command's
options are generated from its config's fields (``--config`` YAML and ``--set key=value`` overrides
as well), its models go through the store, so a killed run resumes, and the one command runner
writes ``<out>/rows.jsonl`` (TRL rows with ``meta``), ``<out>/report.html``/``report.json`` and the
step record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selfalign.command import Command
from selfalign.report import synth_eval as eval_report
from selfalign.report.synth import write_report
from selfalign.synth import (auto_evol, autodetect, backtranslation, dog_instruct, dynosaur, evaluate, evol_instruct,
                             ifd, instructors, lamini, llm2llm, longform, redteam, reflection, self_instruct, udit,
                             unnatural)


def _files(cfg: Any, *names: str) -> list[str]:
    """The input files named by ``names`` (a bundled set has none)."""
    return [v for v in (getattr(cfg, n) for n in names) if isinstance(v, str) and Path(v).is_file()]


def _report(title: str, extra: Any = None, similarities: bool = False):
    def render(out: Path, res: Any, conf: dict[str, Any]) -> Path:
        stats = res.stats.to_dict() if getattr(res, "stats", None) is not None else None
        return write_report(out, title, res.rows, stats, res.stats.similarities if similarities else (),
                            extra(res) if extra else None)
    return render


def _ifd_check(cfg: ifd.IFDConfig) -> None:
    """The run record goes beside the selected rows: refuse an ``out`` whose folder's rows.jsonl is the input."""
    if not cfg.input or not Path(cfg.input).is_file():
        raise ValueError(f"input: {cfg.input or '(none)'}: not a file of TRL rows")
    if (Path(cfg.out).parent / "rows.jsonl").resolve() == Path(cfg.input).resolve():
        raise ValueError(f"out: {cfg.out} would write its run record over the input {cfg.input} "
                         "(rows.jsonl in the same folder); choose another folder")


def _rows_line(cfg: Any, res: Any) -> list[str]:
    return [f"{len(res.rows)} rows -> {Path(cfg.out) / 'rows.jsonl'}"]


def _stats(res: Any) -> dict[str, Any] | None:
    return res.stats.to_dict() if getattr(res, "stats", None) is not None else None


COMMANDS = [
    Command("self-instruct", "self-instruct", self_instruct.SelfInstructConfig,
            lambda cfg, m, ctx: self_instruct.run(cfg, m.policy, ctx.log), {"policy": "model"},
            inputs=lambda cfg: _files(cfg, "seed_tasks"), stats=_stats,
            render=_report("Self-Instruct", lambda r: {"instructions": r.instructions[:50]}, similarities=True),
            echo=_rows_line, helps={"target": "new instructions to keep",
                                    "seed_tasks": "seed_tasks.jsonl (default: bundled)"},
            help="Self-Instruct: grow a task pool from seed tasks, with the paper's filters and ROUGE-L < 0.7."),
    Command("evolve", "evol-instruct", evol_instruct.EvolConfig,
            lambda cfg, m, ctx: evol_instruct.run(cfg, m.policy, ctx.log), {"policy": "model"},
            inputs=lambda cfg: _files(cfg, "seed_tasks", "instructions"), stats=_stats,
            render=_report("Evol-Instruct"), echo=_rows_line,
            help="Evol-Instruct: in-depth and in-breadth evolution with elimination."),
    Command("backtranslate", "instruction-backtranslation", backtranslation.BacktranslationConfig,
            lambda cfg, m, ctx: backtranslation.run(cfg, m.policy, ctx.log), {"policy": "model"},
            inputs=lambda cfg: _files(cfg, "corpus", "seed_tasks"),
            render=_report("Instruction backtranslation", lambda r: {
                "history": r.history,
                "judges": {f"curation {h['iteration']} (1-5 rating)": {"n": sum(h["score_counts"].values()) + h["unscored"],
                                                                       "unscored": h["unscored"]} for h in r.history}}),
            echo=_rows_line,
            help="Instruction backtranslation: backward model, self-augmentation, self-curation, iterations."),
    Command("llm2llm", "llm2llm", llm2llm.LLM2LLMConfig,
            lambda cfg, m, ctx: llm2llm.run(cfg, m.policy, m.teacher, ctx.log),
            {"policy": "student", "teacher": "teacher"}, rename={"student": "model"},
            inputs=lambda cfg: _files(cfg, "data"),
            render=_report("LLM2LLM", lambda r: {"history": r.history, "model_dir": r.model_dir, "test_split": r.test}),
            echo=lambda cfg, r: _rows_line(cfg, r) + ([f"test split ({r.test['n']}): M1 {100 * r.test['first_student']:.1f}% "
                                                        f"-> last {100 * r.test['last_student']:.1f}%"] if r.test else []),
            help="LLM2LLM: a teacher writes new pairs from the student's failures on the original data."),
    Command("redteam", "red-team-prompts", redteam.RedTeamConfig,
            lambda cfg, m, ctx: redteam.run(cfg, m.policy, m.get("target") if cfg.target else None,
                                            m.judge if cfg.judge else None, ctx.log),
            {"policy": "model", "target": "target", "judge": "judge"},
            render=_report("Red-team prompts", lambda r: {
                "archive": {f"{c}/{s}": v["question"] for (c, s), v in r.archive.items()},
                "replacements": r.replacements, "order_dependent_verdicts": r.order_dependent_verdicts,
                "too_close_to_parent": r.too_close_to_parent, "judges": r.judges}),
            echo=_rows_line, descriptions={"target": "answers", "judge": "judge"},
            help="Red-team prompts: keyword prompts and a Rainbow-Teaming-style archive."),
    Command("ifd", "ifd-selection", ifd.IFDConfig, lambda cfg, m, ctx: ifd.run(cfg, m.policy), {"policy": "model"},
            argument="input", inputs=lambda cfg: [cfg.input], out=lambda cfg: str(Path(cfg.out).parent),
            check=_ifd_check,
            render=lambda out, r, conf: write_report(out, "IFD selection", r.rows, {
                "candidates": r.counts["input"], "kept": r.counts["kept"],
                "filtered": {k: v for k, v in r.counts.items() if k not in ("input", "kept")}}, extra={"ifd": r.scores}),
            echo=lambda cfg, r: [f"{r.counts} -> {cfg.out}"], helps={"input": "TRL rows JSONL (prompt, completion)"},
            help="IFD selection: keep the rows whose instruction helps least (highest IFD <= 1)."),
]

COMMANDS.append(
    Command("udit", "udit", udit.UDITConfig, lambda cfg, m, ctx: udit.run(cfg, ctx.log),
            inputs=lambda cfg: _files(cfg, "corpus"), stats=_stats,
            render=_report("UDIT pseudo-labelled tasks", lambda r: {"per_task": r.per_task}), echo=_rows_line,
            help="UDIT: pseudo-labelled tasks (extractive summary, cloze, multiple choice) from unlabelled text, no model."))

COMMANDS.append(
    Command("dynosaur", "dynosaur", dynosaur.DynosaurConfig, lambda cfg, m, ctx: dynosaur.run(cfg, m.policy, ctx.log),
            {"policy": "model"}, check=lambda cfg: [dynosaur.load_dataset(k) for k in cfg.data],
            inputs=lambda cfg: [k for k in cfg.data if Path(k).is_file()], stats=_stats,
            render=_report("DYNOSAUR: tasks from dataset metadata", lambda r: {"tasks": r.tasks}), echo=_rows_line,
            descriptions={"policy": "task proposals"},
            help="DYNOSAUR: a model proposes tasks from datasets' metadata; valid ones are applied to every row."))

COMMANDS.append(
    Command("lamini", "lamini-topic", lamini.LaMiniConfig,
            lambda cfg, m, ctx: lamini.run(cfg, m.policy, m.teacher, ctx.log), {"policy": "model", "teacher": "teacher"},
            check=lambda cfg: lamini.load_topics(cfg.topics), inputs=lambda cfg: _files(cfg, "topics", "seed_tasks"),
            stats=_stats, render=_report("LaMini topic-guided instructions", lambda r: {"topics": r.topics[:60]}),
            echo=_rows_line, descriptions={"policy": "topic-guided instructions", "teacher": "teacher responses"},
            help="LaMini-LM topic-guided generation: instructions about sampled topics, answered by a teacher."))

COMMANDS.append(
    Command("unnatural", "unnatural-instructions", unnatural.UnnaturalConfig,
            lambda cfg, m, ctx: unnatural.run(cfg, m.policy, ctx.log), {"policy": "model"},
            inputs=lambda cfg: _files(cfg, "seed_tasks"), stats=_stats,
            render=_report("Unnatural Instructions", lambda r: {"core": r.core, "rephrased": r.rephrased}),
            echo=_rows_line, descriptions={"policy": "examples"},
            help="Unnatural Instructions: a 4th example from 3 seeds (no pool), outputs, then rephrased templates."))

COMMANDS += [
    Command("longform", "longform", longform.LongFormConfig, lambda cfg, m, ctx: longform.run(cfg, m.policy, ctx.log),
            {"policy": "model"}, check=lambda cfg: backtranslation.load_corpus(cfg.corpus),
            inputs=lambda cfg: _files(cfg, "corpus"), stats=_stats,
            render=_report("LongForm reverse instructions", lambda r: {"per_style": r.per_style}), echo=_rows_line,
            descriptions={"policy": "reverse instructions"},
            help="LongForm: a model writes the instruction each corpus document answers; the document is the output."),
    Command("dog-instruct", "dog-instruct", dog_instruct.DogConfig,
            lambda cfg, m, ctx: dog_instruct.run(cfg, m.policy, ctx.log), {"policy": "model"},
            check=lambda cfg: backtranslation.load_corpus(cfg.corpus), inputs=lambda cfg: _files(cfg, "corpus"),
            stats=_stats, render=_report("DoG-Instruct dialogue wrapping"), echo=_rows_line,
            descriptions={"policy": "dialogue wrapping"},
            help="DoG-Instruct: each corpus text wrapped into a user question and a grounded assistant answer."),
    Command("instructors", "llms-as-instructors", instructors.InstructorsConfig,
            lambda cfg, m, ctx: instructors.run(cfg, m.policy, m.teacher, ctx.log),
            {"policy": "student", "teacher": "teacher"}, rename={"student": "model"}, inputs=lambda cfg: _files(cfg, "data"),
            stats=_stats, render=_report("LLMs-as-Instructors", lambda r: {"failures": r.failures,
                                                                           "student_accuracy": r.student_accuracy}),
            echo=_rows_line, descriptions={"policy": "student answers", "teacher": "instructor"},
            help="LLMs-as-Instructors: the teacher analyses each student error, then writes pairs aimed at it."),
    Command("reflection", "selective-reflection", reflection.ReflectionConfig,
            lambda cfg, m, ctx: reflection.run(cfg, m.policy, m.teacher, ctx.log), {"policy": "model", "teacher": "teacher"},
            check=reflection.load_rows, inputs=lambda cfg: _files(cfg, "input"),
            render=_report("Selective Reflection-Tuning", lambda r: {"counts": r.counts}), stats=lambda r: r.counts,
            echo=lambda cfg, r: _rows_line(cfg, r) + [f"{r.counts}"],
            descriptions={"policy": "student scores", "teacher": "reflection"},
            help="Selective Reflection-Tuning: a teacher rewrites instruction and response; the student keeps a rewrite "
                 "when its IFD rises (instruction) or its reverse IFD falls (response)."),
    Command("auto-evol", "auto-evol-instruct", auto_evol.AutoEvolConfig,
            lambda cfg, m, ctx: auto_evol.run(cfg, m.policy, m.get("teacher"), ctx.log),
            {"policy": "model", "teacher": "optimizer"}, inputs=lambda cfg: _files(cfg, "seed_tasks"), stats=_stats,
            render=_report("Auto Evol-Instruct", lambda r: {"best_method": r.best, "methods": r.methods,
                                                            "history": r.history}),
            echo=lambda cfg, r: _rows_line(cfg, r) + [f"best evolving method: {r.best} of {len(r.methods)}"],
            descriptions={"policy": "evolution", "teacher": "method optimiser"},
            help="Auto Evol-Instruct: an optimizer model rewrites the evolving method from its failures; the method "
                 "with the lowest dev failure rate evolves the data."),
    Command("autodetect", "autodetect", autodetect.AutoDetectConfig,
            lambda cfg, m, ctx: autodetect.run(cfg, m.policy, m.teacher, m.judge if cfg.assessor else None, ctx.log),
            {"policy": "model", "teacher": "examiner", "judge": "assessor"}, stats=_stats,
            render=_report("AutoDetect weaknesses", lambda r: {"weaknesses": r.weaknesses, "tree": r.tree}),
            echo=lambda cfg, r: _rows_line(cfg, r) + [f"weak: {w}" for w in r.weaknesses],
            descriptions={"policy": "student answers", "teacher": "examiner", "judge": "assessor"},
            help="AutoDetect: an examiner grows a tree of knowledge points where an assessor finds the student weak; "
                 "the failed questions become rows."),
]

#: every synthesis method by its command name (``selfalign synth <name>``, recipe stage ``synth``)
METHODS = {c.name: c for c in COMMANDS}


def _eval_inputs(cfg: evaluate.SynthEvalConfig) -> list[str]:
    return [p for p in [cfg.seed_rows, cfg.ifd, *(path for _, path in evaluate.parse_sets(cfg.sets))]
            if p and Path(p).is_file()]


def _eval_headline(res: evaluate.SynthEvalResult) -> dict[str, Any]:
    return {f"{c['name']} vs {c['baseline']} win rate": c["win_rate"]["value"] for c in res.comparisons if c["win_rate"]}


#: ``selfalign synth eval``: not a method (it makes no rows to train on), so not in METHODS
EVAL = Command(
    "eval", "synth-eval", evaluate.SynthEvalConfig,
    lambda cfg, m, ctx: evaluate.run(cfg, m.policy, m.judge, ctx.log), {"policy": "model", "judge": "judge"},
    trainable=("model",), check=evaluate.read_inputs, inputs=_eval_inputs, rows=lambda res: res.rows,
    render=lambda out, res, conf: eval_report.write_report(out, res, conf), headline=_eval_headline,
    echo=lambda cfg, res: [f"{c['name']} vs {c['baseline']}: {c['wins']}-{c['ties']}-{c['losses']} "
                           f"(wins-ties-losses), {c['unscored']} unscored" for c in res.comparisons],
    descriptions={"judge": "judge"},
    helps={"sets": "NAME=rows.jsonl (repeatable): seed + these rows against seed only",
           "ifd": "a rows JSONL: IFD top share against a random share of equal size"},
    help="Synthetic data judged by what SFT on it does: seed vs seed + each method's rows, IFD top vs random, "
         "pairwise on held-out instructions (both orders), with intervals.")
