"""Self-Instruct (Wang et al. 2022, "Self-Instruct: Aligning Language Models with Self-Generated
Instructions", arXiv 2212.10560).

A task pool starts from human-written seed tasks. Each request shows the model 8 instructions
from the pool -- 6 seed, 2 model-generated (8 seed while fewer than 2 have been generated) --
and lets it continue the numbered list. New instructions pass the paper's filters, in this
order, each counted by reason: empty; at most 3 or more than 150 words; a keyword a text model
cannot act on (image, graph, picture, file, map, draw, plot, go to, video, audio, music,
flowchart, diagram); starts with "Write a program"; starts with punctuation; starts with a
non-ASCII character; ROUGE-L >= 0.7 against any instruction already in the pool. Survivors join
the pool at once (the pool grows as it runs). Each kept instruction is then labelled as a
classification task or not by few-shot prompting (an answer that is not yes/no is unscored,
counted, and the task treated as not classification), and instances are generated output-first
(class label, then input) for classification tasks and input-first otherwise. Instances then
pass the paper's instance filters, each counted by reason (``instance_*`` in the stats): the
last instance of a response cut by the token limit; an output ending with ":"; an output equal
to its input; exact duplicates (one kept); the same input with different outputs (all dropped);
at most ``max_instances`` (5) per task.

Deviations: the prompt wording is ours (same structure as the paper's); ``prompt_style: chat``
can wrap the list in a chat turn for instruction-tuned models (the paper continues raw text,
which is the default); the last instruction of a response cut by the token limit is dropped
as in the reference code.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Callable

from selfalign.judges.verdict import parse_yes_no
from selfalign.models.base import StageModel
from selfalign.synth.rouge import RougeLIndex, rouge_tokenize
from selfalign.synth.tasks import SynthStats, Task, load_seed_tasks, row, task_prompt
from selfalign.types import GenParams, GenRequest, Message

BLACKLIST = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps", "draw",
             "plot", "go to", "video", "audio", "music", "flowchart", "diagram")
_BLACKLIST_RE = re.compile(r"\b(" + "|".join(re.escape(w) for w in BLACKLIST) + r")\b", re.IGNORECASE)
LIST_HEADER = "Here is a list of different tasks:"
CLASSIFY_HEADER = ("Is the task below a classification task, one whose answer is one of a fixed set of labels? "
                   "Answer Yes or No.")
INPUT_FIRST_HEADER = ("Write examples for each task below. Give several examples where you can. "
                      "When a task needs no extra input, write just the output.")
OUTPUT_FIRST_HEADER = ("For each classification task below, write its class labels and, for each label, an input "
                       "that belongs to it. When a task needs no input, write the possible labels only.")


@dataclass
class SelfInstructConfig:
    model: str = "smollm2-135m"
    seed_tasks: str = "bundled"
    target: int = 200  # new instructions to keep
    n_seed_in_prompt: int = 6
    n_generated_in_prompt: int = 2
    requests_per_round: int = 8
    max_rounds: int = 200
    prompt_style: str = "completion"  # completion (the paper) | chat
    temperature: float = 0.7
    top_p: float = 0.5
    max_tokens: int = 192
    rouge_threshold: float = 0.7
    min_words: int = 4
    max_words: int = 150
    instances: bool = True
    instance_max_tokens: int = 192
    max_instances: int = 5  # per task, as the paper
    seed: int = 0
    out: str = "runs/self_instruct"
    store: str = ""


def filter_instances(pairs: list[tuple[str, str]], cut: bool, max_instances: int = 5
                     ) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """The paper's instance filters; returns the kept (input, output) pairs and drops by reason.

    >>> kept, dropped = filter_instances([("a", "x"), ("a", "x"), ("b", "b"), ("c", "y:"), ("d", "1"), ("d", "2"),
    ...                                   ("e", "z"), ("f", "cut off")], cut=True)
    >>> kept, dict(sorted(dropped.items()))
    ([('a', 'x'), ('e', 'z')], {'instance_conflicting_outputs': 2, 'instance_duplicate': 1, 'instance_ends_with_colon': 1, 'instance_output_equals_input': 1, 'instance_truncated': 1})
    """
    dropped: dict[str, int] = {}

    def drop(reason: str, n: int = 1) -> None:
        dropped[f"instance_{reason}"] = dropped.get(f"instance_{reason}", 0) + n

    if cut and pairs:
        pairs = pairs[:-1]
        drop("truncated")
    kept: list[tuple[str, str]] = []
    for inp, out in pairs:
        if out.rstrip().endswith(":"):
            drop("ends_with_colon")
        elif inp.strip() and out.strip() == inp.strip():
            drop("output_equals_input")
        elif (inp, out) in kept:
            drop("duplicate")
        else:
            kept.append((inp, out))
    outputs: dict[str, set[str]] = {}
    for inp, out in kept:
        outputs.setdefault(inp, set()).add(out)
    conflicting = {inp for inp, outs in outputs.items() if len(outs) > 1}
    if conflicting:
        drop("conflicting_outputs", sum(inp in conflicting for inp, _ in kept))
        kept = [(i, o) for i, o in kept if i not in conflicting]
    if len(kept) > max_instances:
        drop("over_max_per_task", len(kept) - max_instances)
        kept = kept[:max_instances]
    return kept, dropped


def clean_instruction(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip().strip('"').strip()
    return text[:1].upper() + text[1:] if text else text


def filter_reason(inst: str, min_words: int = 4, max_words: int = 150) -> str | None:
    """The first filter (before ROUGE-L) that rejects ``inst``, or None."""
    if not inst:
        return "empty"
    n = len(inst.split())
    if n < min_words:
        return "too_short"
    if n > max_words:
        return "too_long"
    if _BLACKLIST_RE.search(inst):
        return "unsuitable_keyword"
    if inst.startswith("Write a program"):
        return "write_a_program"
    if inst[0] in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~":
        return "starts_with_punctuation"
    if not inst[0].isascii():
        return "non_english_start"
    return None


def parse_list(text: str, first_number: int, truncated: bool) -> list[str]:
    """Split a continued numbered list ("9. ..." already implied) into instructions."""
    parts = re.split(r"\n\s*\d+\s?[.)]\s*", "\n" + f"{first_number}. " + text.strip())
    items = [p.strip() for p in parts if p.strip()]
    if truncated and items:
        items = items[:-1]
    return [clean_instruction(i.split("\n")[0]) for i in items]


def list_prompt(instructions: list[str], style: str):
    body = "\n".join(f"{i + 1}. {t}" for i, t in enumerate(instructions))
    nxt = len(instructions) + 1
    if style == "chat":
        return (Message("user", f"{LIST_HEADER}\n{body}\nContinue the list with new tasks that differ from these, "
                                f"numbered from {nxt}."),)
    return f"{LIST_HEADER}\n{body}\n{nxt}."


def classify_prompt(seeds: list[Task], instruction: str) -> str:
    shots = [t for t in seeds if t.is_classification][:4] + [t for t in seeds if not t.is_classification][:4]
    random.Random(0).shuffle(shots)
    body = "".join(f"Task: {t.instruction}\nClassification: {'Yes' if t.is_classification else 'No'}\n\n" for t in shots)
    return f"{CLASSIFY_HEADER}\n\n{body}Task: {instruction}\nClassification:"


def instance_prompt(seeds: list[Task], instruction: str, classification: bool) -> str:
    pool = [t for t in seeds if t.is_classification == classification and t.instances] or [t for t in seeds if t.instances]
    shots = pool[:3]
    if classification:
        body = "".join(f"Task: {t.instruction}\nClass label: {t.instances[0][1]}\nInput: {t.instances[0][0]}\n\n" for t in shots)
        return f"{OUTPUT_FIRST_HEADER}\n\n{body}Task: {instruction}\nClass label:"
    body = "".join(f"Task: {t.instruction}\nInput: {t.instances[0][0]}\nOutput: {t.instances[0][1]}\n\n" for t in shots)
    return f"{INPUT_FIRST_HEADER}\n\n{body}Task: {instruction}\nInput:"


def parse_instances(text: str, classification: bool) -> list[tuple[str, str]]:
    r"""(input, output) pairs from the model's continuation; [] when nothing parses.

    >>> parse_instances(" Positive\nInput: I love it\nClass label: Negative\nInput: Awful", True)
    [('I love it', 'Positive'), ('Awful', 'Negative')]
    >>> parse_instances(" 2, 3\nOutput: 5", False)
    [('2, 3', '5')]
    """
    text = text.split("\nTask:")[0]
    if classification:
        full = "Class label:" + text
        pat = r"Class label:\s*(.+?)\s*\n\s*Input:\s*(.*?)(?=\n\s*Class label:|\Z)"
        pairs = [(m.group(2).strip(), m.group(1).strip()) for m in re.finditer(pat, full, re.S)]
        if not pairs:
            label = text.strip().split("\n")[0].strip()
            pairs = [("", label)] if label else []
    else:
        full = "Input:" + text
        pat = r"Input:\s*(.*?)\s*\n\s*Output:\s*(.*?)(?=\n\s*(?:Example \d+\s*\n\s*)?Input:|\Z)"
        pairs = [(m.group(1).strip(), m.group(2).strip()) for m in re.finditer(pat, full, re.S)]
    return [(i, o) for i, o in pairs if o]


@dataclass
class SelfInstructResult:
    """What a Self-Instruct run made: the rows, the kept instructions and the filter stats."""
    rows: list[dict[str, Any]]
    instructions: list[dict[str, Any]]
    stats: SynthStats


def run(cfg: SelfInstructConfig, model: StageModel, log: Callable[[str], None] = print) -> SelfInstructResult:
    """Grow the pool to ``cfg.target`` new instructions; returns rows, kept instructions and stats."""
    seeds = load_seed_tasks(cfg.seed_tasks)
    if len(seeds) < cfg.n_seed_in_prompt:
        raise ValueError(f"{cfg.seed_tasks}: {len(seeds)} seed tasks, need at least {cfg.n_seed_in_prompt}")
    pool = RougeLIndex([t.instruction for t in seeds], cfg.rouge_threshold)
    generated: list[dict[str, Any]] = []
    stats = SynthStats()
    params = GenParams(cfg.temperature, cfg.top_p, cfg.max_tokens)
    n_in_prompt = cfg.n_seed_in_prompt + cfg.n_generated_in_prompt
    for rnd in range(cfg.max_rounds):
        if len(generated) >= cfg.target:
            break
        prompts, shown = [], []
        for j in range(cfg.requests_per_round):
            rng = random.Random(f"{cfg.seed}:{rnd}:{j}")
            if len(generated) >= cfg.n_generated_in_prompt:
                chosen = [t.instruction for t in rng.sample(seeds, cfg.n_seed_in_prompt)]
                chosen += [g["instruction"] for g in rng.sample(generated, cfg.n_generated_in_prompt)]
            else:
                chosen = [t.instruction for t in rng.sample(seeds, n_in_prompt)]
            rng.shuffle(chosen)
            prompts.append(GenRequest(list_prompt(chosen, cfg.prompt_style), params, seed=cfg.seed * 100003 + rnd * 1009 + j))
            shown.append(chosen)
        results = model.generate(prompts, description=f"self-instruct round {rnd + 1}")
        for res in results:
            comp = res.completions[0]
            for inst in parse_list(comp.text, n_in_prompt + 1, comp.finish_reason == "length"):
                reason = filter_reason(inst, cfg.min_words, cfg.max_words)
                if reason:
                    stats.drop(reason)
                    continue
                toks = rouge_tokenize(inst)
                sim, nearest = pool.max_similarity(toks)
                stats.similarities.append(sim)
                if sim >= cfg.rouge_threshold:
                    stats.drop("rouge_similar")
                    continue
                pool.add_tokens(toks)
                generated.append({"instruction": inst, "round": rnd, "max_rouge": sim})
                stats.kept += 1
                if len(generated) >= cfg.target:
                    break
            if len(generated) >= cfg.target:
                break
        log(f"[self-instruct] round {rnd + 1}: pool {len(pool)}, kept {len(generated)}/{cfg.target}, "
            f"filtered {sum(stats.filtered.values())}")
    rows = _instances(cfg, model, seeds, generated, stats) if cfg.instances else [
        row(g["instruction"], "", "self-instruct", ok=False, reason="instances not generated", **g) for g in generated]
    return SelfInstructResult(rows=rows, instructions=generated, stats=stats)


def _instances(cfg: SelfInstructConfig, model: StageModel, seeds: list[Task], generated: list[dict],
               stats: SynthStats) -> list[dict[str, Any]]:
    greedy = GenParams(0.0, 1.0, 3)
    cls_res = model.generate([GenRequest(classify_prompt(seeds, g["instruction"]), greedy) for g in generated],
                             description="self-instruct: classification?")
    answers = [parse_yes_no(r.texts[0]) for r in cls_res]
    stats.classification_unscored = sum(a is None for a in answers)
    flags = [a == "yes" for a in answers]
    params = GenParams(0.0, 1.0, cfg.instance_max_tokens)
    inst_res = model.generate([GenRequest(instance_prompt(seeds, g["instruction"], f), params)
                               for g, f in zip(generated, flags)], description="self-instruct: instances")
    rows = []
    for g, f, a, res in zip(generated, flags, answers, inst_res):
        text = res.texts[0]
        pairs, dropped = filter_instances(parse_instances(text, f), res.completions[0].finish_reason == "length",
                                          cfg.max_instances)
        for reason, n in dropped.items():
            stats.instances_filtered[reason] += n
        meta = {"instruction": g["instruction"], "is_classification": f, "classification_answer": a,
                "round": g["round"], "max_rouge": g["max_rouge"]}
        if not pairs:
            rows.append(row(g["instruction"], text, "self-instruct", ok=False, reason="no instance passed", **meta))
        for inp, out in pairs:
            rows.append(row(task_prompt(g["instruction"], inp), out, "self-instruct", input=inp, **meta))
    return rows
