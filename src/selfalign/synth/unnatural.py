"""Unnatural Instructions: instructions generated from three examples, no pool, then rephrased.

Honovich, Scialom, Levy and Schick 2022, "Unnatural Instructions: Tuning Language Models with
(Almost) No Human Labor" (arXiv 2212.09689). Unlike Self-Instruct there is no growing task pool:
every request shows the model three examples drawn from a fixed seed set and asks for a fourth,
so the seeds alone steer the data. Then:

1. **Core generation**: each example is an *Instruction*, an *Input* and *Constraints* (the form
   of the output); the model writes ``Example 4`` in the same format (sampled: the paper uses
   nucleus sampling for diversity). A reply that does not parse is dropped (``unparsed``), so is an
   exact duplicate of an earlier (instruction, input) (``duplicate``): the paper filters duplicates
   and nothing else at this step.
2. **Outputs**: the model answers each example greedily, given the instruction, the input and the
   constraints. An empty answer is dropped (``empty_output``).
3. **Template expansion** (``rephrase``): the model rewrites each instruction as another
   formulation that keeps a ``{INPUT}`` placeholder where the input goes; a rewrite without the
   placeholder (``rephrase_no_placeholder``) or equal to the original (``rephrase_same``) is
   dropped. A kept rewrite becomes a second row with the same input and output (the paper's
   expanded set).

Seeds: Self-Instruct's seed tasks with an instance (``seed_tasks``); their constraints are written
here: for a classification task, "Answer with one of: <its labels>", else "None".

Rows: ``meta.method`` ``unnatural-core`` or ``unnatural-rephrased`` (with ``parent``, the core
row's index), the constraints, the seed ids that prompted it.

Deviations: the paper's 15 seeds are Super-NaturalInstructions tasks with written constraints and
its generator is text-davinci-002; ours are the project's seed tasks with derived constraints and
any ``model`` (the embedded 135M by default); the rephrasing prompt is one-shot, our wording.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from selfalign.models.base import StageModel
from selfalign.synth.tasks import SynthStats, Task, load_seed_tasks, row
from selfalign.types import GenParams, GenRequest, user

HEADER = "Here are examples of tasks, each with an instruction, an input and constraints on the output."
REPHRASE_TEMPLATE = (
    "Rewrite the instruction below in different words. Keep its meaning, and put the placeholder {{INPUT}} where the "
    "input goes.\n\nExample:\nInstruction: Translate the sentence into French.\nRewrite: What is {{INPUT}} in French?"
    "\n\nInstruction: {instruction}\nRewrite:")
EXAMPLE = re.compile(r"Instruction:\s*(?P<instruction>.+?)\s*\n\s*Input:\s*(?P<input>.*?)\s*\n\s*Constraints:\s*"
                     r"(?P<constraints>[^\n]*)", re.IGNORECASE | re.DOTALL)


@dataclass
class UnnaturalConfig:
    model: str = "smollm2-135m"
    seed_tasks: str = "bundled"
    requests: int = 24  # core examples asked for (one per request)
    shots: int = 3  # examples shown in each request (the paper: 3)
    temperature: float = 1.0
    top_p: float = 0.99  # the paper's nucleus
    max_tokens: int = 160
    output_max_tokens: int = 128
    rephrase: bool = True
    seed: int = 0
    out: str = "runs/unnatural"
    store: str = ""

    def __post_init__(self) -> None:
        if self.requests < 1 or self.shots < 1:
            raise ValueError(f"requests and shots must be >= 1, got {self.requests}, {self.shots}")


@dataclass
class UnnaturalResult:
    rows: list[dict[str, Any]]
    stats: SynthStats
    core: int  # core examples kept
    rephrased: int  # rows added by template expansion


def constraints(task: Task) -> str:
    """The constraints of a seed example: its labels for a classification task, else None.

    >>> constraints(Task("Is it spam?", (("win money", "spam"), ("hi mom", "not spam")), True))
    'Answer with one of: not spam, spam.'
    >>> constraints(Task("Write a haiku.", (("", "..."),)))
    'None.'
    """
    if task.is_classification:
        return "Answer with one of: " + ", ".join(sorted({o.strip() for _, o in task.instances})) + "."
    return "None."


def example_block(i: int, instruction: str, input: str, cons: str) -> str:
    return f"Example {i}\nInstruction: {instruction}\nInput: {input or 'None.'}\nConstraints: {cons}"


def request_prompt(shots: list[Task]) -> str:
    blocks = [example_block(i + 1, t.instruction, t.instances[0][0], constraints(t)) for i, t in enumerate(shots)]
    return f"{HEADER}\n\n" + "\n\n".join(blocks) + f"\n\nExample {len(shots) + 1}\n"


def parse_example(text: str) -> tuple[str, str, str] | None:
    """The generated example (instruction, input, constraints), or None when it does not parse.

    >>> parse_example("Instruction: Name the color.\\nInput: the sky\\nConstraints: One word.\\nExample 5")
    ('Name the color.', 'the sky', 'One word.')
    """
    m = EXAMPLE.search(text)
    if not m or not m.group("instruction").strip():
        return None
    inp = m.group("input").strip()
    return m.group("instruction").strip(), "" if inp.lower().rstrip(".") == "none" else inp, m.group("constraints").strip()


def answer_prompt(instruction: str, input: str, cons: str) -> str:
    return (f"{instruction}\n\n" + (f"Input: {input}\n" if input else "") +
            (f"Constraints: {cons}" if cons and cons.lower().rstrip(".") != "none" else "")).strip()


def run(cfg: UnnaturalConfig, model: StageModel, log: Any = print) -> UnnaturalResult:
    seeds = [t for t in load_seed_tasks(cfg.seed_tasks) if t.instances]
    if len(seeds) < cfg.shots:
        raise ValueError(f"seed_tasks: {len(seeds)} tasks with an instance, fewer than shots={cfg.shots}")
    rng = random.Random(cfg.seed)
    picks = [rng.sample(seeds, cfg.shots) for _ in range(cfg.requests)]
    params = GenParams(temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens)
    res = model.generate([GenRequest(request_prompt(p), params, seed=cfg.seed + i) for i, p in enumerate(picks)],
                         description="core examples")
    stats, seen, core = SynthStats(), set(), []
    for p, r in zip(picks, res):
        ex = parse_example(r.texts[0])
        if ex is None:
            stats.drop("unparsed")
            continue
        if (ex[0], ex[1]) in seen:
            stats.drop("duplicate")
            continue
        seen.add((ex[0], ex[1]))
        core.append((ex, [t.id for t in p]))
    outs = model.generate([GenRequest(user(answer_prompt(*ex)), GenParams(temperature=0.0, max_tokens=cfg.output_max_tokens),
                                      seed=cfg.seed) for ex, _ in core], description="core outputs")
    rows: list[dict[str, Any]] = []
    kept: list[tuple[tuple[str, str, str], str, int]] = []
    for (ex, ids), o in zip(core, outs):
        text = o.texts[0].strip()
        if not text:
            stats.drop("empty_output")
            continue
        kept.append((ex, text, len(rows)))
        rows.append(row(answer_prompt(*ex), text, "unnatural-core", constraints=ex[2], seeds=ids))
        stats.kept += 1
    n_core, added = len(rows), 0
    if cfg.rephrase and kept:
        rewrites = model.generate([GenRequest(user(REPHRASE_TEMPLATE.format(instruction=ex[0])),
                                              GenParams(temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=96),
                                              seed=cfg.seed) for ex, _, _ in kept], description="rephrasings")
        for (ex, text, parent), rw in zip(kept, rewrites):
            new = rw.texts[0].strip().split("\n")[0].strip()
            if "{INPUT}" not in new:
                stats.drop("rephrase_no_placeholder")
                continue
            if new.replace("{INPUT}", "").strip().lower() == ex[0].strip().lower():
                stats.drop("rephrase_same")
                continue
            prompt = new.replace("{INPUT}", ex[1] or "").strip()
            if ex[2] and ex[2].lower().rstrip(".") != "none":
                prompt += f"\nConstraints: {ex[2]}"
            rows.append(row(prompt, text, "unnatural-rephrased", parent=parent, constraints=ex[2]))
            added += 1
    log(f"[unnatural] {cfg.requests} requests -> {n_core} core rows + {added} rephrased; filtered {dict(stats.filtered)}")
    return UnnaturalResult(rows, stats, n_core, added)
