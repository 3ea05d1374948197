"""DYNOSAUR: instruction data from existing labelled datasets, by their metadata.

Yin et al. 2023, "Dynosaur: A Dynamic Growth Paradigm for Instruction-Tuning Data Curation"
(EMNLP 2023, arXiv 2305.14327). A labelled dataset already holds inputs and outputs; what it
lacks is the instruction. A model reads the dataset's **metadata** (its name, its description and
its fields, each with an example value) and proposes tasks, each an instruction plus which fields
are its input and which one is its output. Invalid tasks are filtered, and every remaining task
is applied to the dataset's rows, so each task yields many instances at the cost of one generation.

Steps:

1. **Metadata**: per dataset, name, description and the fields of its first row with an example
   value (long values cut to 120 characters).
2. **Task proposals**: ``samples`` generations of the proposal prompt per dataset, each asked for
   ``tasks_per_sample`` tasks in a fixed format (``Task:``, ``Input fields:``, ``Output field:``).
3. **Filters** (the paper's validity checks): a block that does not parse (``unparsed``); an
   output field the dataset lacks (``unknown_output_field``); an input field it lacks
   (``unknown_input_field``); an output field that is also an input (``output_in_inputs``); an
   instruction within ROUGE-L 0.7 of a kept one of the same dataset (``duplicate_instruction``).
4. **Instances**: each kept task applied to up to ``instances_per_task`` rows (a seeded sample);
   the prompt is the instruction then ``field: value`` lines of the input fields, the completion
   the output field's value (a list joined with ", "). Rows whose input or output value is empty
   are skipped.

Datasets (``data``): ``bundled-qa`` (the knowledge QA set) and ``bundled-code`` (the code
problems) with metadata this project writes, or any JSONL file; its metadata is read from a
``<file>.meta.json`` beside it (``{"name": ..., "description": ...}``), else the name is the file's
stem and the description empty.

Deviations: the paper reads Hugging Face dataset cards and proposes with ChatGPT, and also makes
description-free and input-free variants; here the metadata comes from the files named (no hub),
the proposer is the ``model`` option (the embedded 135M model by default: expect few valid tasks;
a strong ``openai:``/``vllm:`` model is the intended use), and one prompt variant is used.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfalign.data.formats import bundled_path
from selfalign.data.io import DataError, read_jsonl
from selfalign.models.base import StageModel
from selfalign.synth.rouge import rouge_l
from selfalign.synth.tasks import SynthStats, row, task_prompt
from selfalign.types import GenParams, GenRequest, user

BUNDLED = {
    "bundled-qa": ("knowledge_qa.jsonl", "selfalign knowledge QA",
                   "Short factual questions about countries and chemical elements. Each row has the question, the "
                   "list of accepted answers, the entity asked about and the relation (capital, currency, symbol...)."),
    "bundled-code": ("code_problems.jsonl", "selfalign code problems",
                     "Small Python programming problems in HumanEval's format: a function signature with a "
                     "docstring (prompt), a reference body (canonical_solution), unit tests (test) and the "
                     "function's name (entry_point)."),
}

PROPOSAL_TEMPLATE = (
    "Here is the description of a dataset.\n\nDataset name: {name}\nDescription: {description}\nFields:\n{fields}\n\n"
    "Propose {k} different tasks a model could learn from this dataset. For each task, write an instruction, the "
    "fields used as input and the one field that is the output, exactly in this format:\n\n"
    "Task: <instruction>\nInput fields: <field>, <field>\nOutput field: <field>\n"
)

BLOCK = re.compile(r"Task:\s*(?P<task>.+?)\s*\n\s*Inputs?(?: fields?)?:\s*(?P<inputs>.*?)\s*\n\s*"
                   r"Outputs?(?: fields?)?:\s*(?P<output>[^\n]+)", re.IGNORECASE | re.DOTALL)


@dataclass
class DynosaurConfig:
    model: str = "smollm2-135m"  # the model that proposes tasks from the metadata
    data: list[str] = field(default_factory=lambda: list(BUNDLED))  # bundled-qa, bundled-code, or JSONL files
    samples: int = 4  # proposal generations per dataset
    tasks_per_sample: int = 3
    instances_per_task: int = 20
    temperature: float = 0.8
    max_tokens: int = 256
    rouge_threshold: float = 0.7
    seed: int = 0
    out: str = "runs/dynosaur"
    store: str = ""

    def __post_init__(self) -> None:
        if not self.data:
            raise ValueError("data: name at least one dataset (bundled-qa, bundled-code or a JSONL file)")
        for name in ("samples", "tasks_per_sample", "instances_per_task", "max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class Dataset:
    key: str  # what ``data`` named
    name: str
    description: str
    rows: list[dict[str, Any]]

    @property
    def fields(self) -> list[str]:
        return list(self.rows[0]) if self.rows else []


@dataclass
class DynosaurResult:
    """The instances, the counts, and every proposed task with its verdict (``kept`` or the filter)."""

    rows: list[dict[str, Any]]
    stats: SynthStats
    tasks: list[dict[str, Any]]


def load_dataset(key: str) -> Dataset:
    """A dataset ``data`` names, with its metadata; a missing or empty file is an error naming it."""
    if key in BUNDLED:
        file, name, description = BUNDLED[key]
        return Dataset(key, name, description, read_jsonl(bundled_path(file)))
    path = Path(key)
    if not path.is_file():
        raise DataError(f"data: {key}: not bundled-qa, bundled-code or a JSONL file")
    rows = read_jsonl(path)
    if not rows or not all(isinstance(r, dict) for r in rows):
        raise DataError(f"{path}: no rows (a JSONL of objects)")
    meta_path = path.with_name(path.name + ".meta.json")
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return Dataset(key, str(meta.get("name") or path.stem), str(meta.get("description") or ""), rows)


def value_text(v: Any) -> str:
    """A field's value as text: a list joined with ", ", a mapping as JSON."""
    if isinstance(v, list):
        return ", ".join(value_text(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, ensure_ascii=False)
    return "" if v is None else str(v)


def metadata_prompt(ds: Dataset, k: int) -> str:
    fields = "\n".join(f"- {f} (example: {value_text(ds.rows[0][f])[:120]!r})" for f in ds.fields)
    return PROPOSAL_TEMPLATE.format(name=ds.name, description=ds.description or "(none)", fields=fields, k=k)


def parse_tasks(text: str) -> list[tuple[str, list[str], str]]:
    """Every (instruction, input fields, output field) block in a proposal ("Inputs:" and
    "Output:" are read as the field lines too; the validity filters then judge the fields).

    >>> parse_tasks("Task: Answer the question.\\nInput fields: question\\nOutput field: answers\\n"
    ...             "Task: Name the relation.\\nInput fields: question, entity\\nOutput field: relation")
    [('Answer the question.', ['question'], 'answers'), ('Name the relation.', ['question', 'entity'], 'relation')]
    """
    out = []
    for m in BLOCK.finditer(text):
        inputs = [f.strip().strip("`'\"<>") for f in re.split(r"[,;]", m.group("inputs")) if f.strip()]
        output = m.group("output").strip().strip("`'\"<>.").split(",")[0].strip()
        out.append((m.group("task").strip(), inputs, output))
    return out


def check_task(ds: Dataset, inputs: list[str], output: str) -> str | None:
    """The filter a task fails (None: valid)."""
    if output not in ds.fields:
        return "unknown_output_field"
    if not inputs or any(f not in ds.fields for f in inputs):
        return "unknown_input_field"
    if output in inputs:
        return "output_in_inputs"
    return None


def instances(ds: Dataset, instruction: str, inputs: list[str], output: str, n: int, seed: int) -> list[tuple[str, str]]:
    """The task applied to up to ``n`` rows (seeded sample): (prompt, completion) pairs."""
    idx = list(range(len(ds.rows)))
    random.Random(f"{seed}:{ds.key}:{instruction}").shuffle(idx)
    out = []
    for i in idx:
        r = ds.rows[i]
        values = [(f, value_text(r.get(f)).strip()) for f in inputs]
        target = value_text(r.get(output)).strip()
        if not target or any(not v for _, v in values):
            continue
        out.append((task_prompt(instruction, "\n".join(f"{f}: {v}" for f, v in values)), target))
        if len(out) == n:
            break
    return out


def run(cfg: DynosaurConfig, model: StageModel, log: Any = print) -> DynosaurResult:
    datasets = [load_dataset(k) for k in cfg.data]  # every file read before the model is asked
    stats, rows = SynthStats(), []
    tasks: list[dict[str, Any]] = []
    for ds in datasets:
        params = GenParams(temperature=cfg.temperature, max_tokens=cfg.max_tokens)
        res = model.generate([GenRequest(user(metadata_prompt(ds, cfg.tasks_per_sample)), params, n=cfg.samples,
                                         seed=cfg.seed)], description=f"task proposals for {ds.name}")[0]
        kept: list[str] = []
        for text in res.texts:
            found = parse_tasks(text)
            if not found:
                stats.drop("unparsed")
                tasks.append({"dataset": ds.key, "raw": text[:300], "verdict": "unparsed"})
            for instruction, inputs, output in found:
                reason = check_task(ds, inputs, output)
                if reason is None and any(rouge_l(k, instruction) >= cfg.rouge_threshold for k in kept):
                    reason = "duplicate_instruction"
                made = [] if reason else instances(ds, instruction, inputs, output, cfg.instances_per_task, cfg.seed)
                if reason is None and not made:
                    reason = "no_instances"
                tasks.append({"dataset": ds.key, "instruction": instruction, "inputs": inputs, "output": output,
                              "verdict": reason or "kept", "instances": len(made)})
                if reason:
                    stats.drop(reason)
                    continue
                kept.append(instruction)
                stats.kept += 1
                t = len(kept) - 1
                rows += [row(p, c, "dynosaur", dataset=ds.key, task=t, inputs=inputs, output=output) for p, c in made]
        log(f"[dynosaur] {ds.name}: {len(kept)} tasks kept")
    log(f"[dynosaur] {stats.kept} tasks -> {len(rows)} rows; filtered {dict(stats.filtered)}")
    return DynosaurResult(rows, stats, tasks)
