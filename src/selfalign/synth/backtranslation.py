"""Instruction backtranslation (Li et al. 2023, "Self-Alignment with Instruction
Backtranslation", Humpback, arXiv 2308.06259).

1. **Backward model** M_yx: fine-tuned (TRL SFT) on seed pairs turned around: the output is the
   prompt, the instruction the completion.
2. **Self-augmentation**: M_yx writes an instruction for every segment of an unlabelled corpus.
3. **Self-curation**: M0, the base fine-tuned on the seed pairs, rates each (instruction,
   segment) pair on the paper's 5-point scale, writing a brief reasoning and then "Score: n";
   pairs scoring >= ``threshold`` are kept (the paper's A_5 is score 5). A rating that does not
   parse is unscored and counted (never a low score).
4. **Iterate**: M_t, the base fine-tuned on seed + the pairs curated by M_{t-1}, rates again.
   When an iteration curates nothing, the next would rate with the same model and repeat it:
   the run says so and stops there instead.

Corpus: a ``.txt`` (segments separated by blank lines) or a JSONL with ``text``; the default is a
corpus this project writes from its bundled facts (one short paragraph per country or element).

Deviations: the rating prompt is our wording of the paper's criteria; ``train_backward: false``
replaces the trained backward model by few-shot prompting the base model, and
``train_forward: false`` curates with the untuned base model (both for quick looks; the paper
trains both).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from selfalign.data.io import DataError, read_jsonl
from selfalign.judges.verdict import parse_score as parse_rating
from selfalign.models.base import StageModel
from selfalign.synth.tasks import load_seed_tasks, row, task_prompt
from selfalign.train.sft import TrainConfig, train_sft
from selfalign.types import GenParams, GenRequest, user

BACKWARD_TEMPLATE = "Here is a response. Write the instruction a user most likely gave to get it.\n\nResponse:\n{output}"
RATING_TEMPLATE = (
    "Below is an instruction from a user and a candidate answer. Rate how well the answer serves as an AI "
    "assistant's response to the instruction, on a scale of 1 to 5:\n"
    "1: incomplete, vague, off-topic, or not written as an assistant's answer.\n"
    "2: addresses most of the request but does not answer it directly.\n"
    "3: helpful and complete, but reads like a web page or blog rather than an assistant.\n"
    "4: written from an assistant's perspective, clear and complete, with minor room to improve.\n"
    "5: a perfect assistant answer: focused, complete, accurate, well organised, with no irrelevant content.\n\n"
    "Instruction: {instruction}\n\nAnswer: {output}\n\n"
    "First write a brief reasoning, then the score on its own line as \"Score: <1-5>\"."
)


@dataclass
class BacktranslationConfig:
    model: str = "smollm2-135m"
    seed_tasks: str = "bundled"
    corpus: str = "bundled"
    max_segments: int = 100
    iterations: int = 2
    threshold: float = 4.0
    train_backward: bool = True
    train_forward: bool = True
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=2))
    max_tokens: int = 64
    rating_max_tokens: int = 96  # room for the brief reasoning before "Score: n"
    seed: int = 0
    out: str = "runs/backtranslation"
    store: str = ""


def bundled_corpus() -> list[str]:
    """Short encyclopedic paragraphs written from the bundled knowledge set, one per entity."""
    from selfalign.data.formats import bundled_path

    facts: dict[str, dict[str, str]] = defaultdict(dict)
    for line in bundled_path().read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        facts[r["entity"]][r["relation"]] = r["answers"][0]
    out = []
    for ent, f in facts.items():
        if "capital" in f:
            parts = [f"{ent} is a country" + (f" in {f['continent']}." if "continent" in f else ".")]
            parts.append(f"Its capital is {f['capital']}.")
            if "currency" in f:
                parts.append(f"The currency used there is the {f['currency']}.")
            if "demonym" in f:
                parts.append(f"A person from {ent} is called {f['demonym']}.")
        elif "element_symbol" in f:
            parts = [f"{ent} is a chemical element with the symbol {f['element_symbol']}",
                     f"and atomic number {f.get('atomic_number', '?')}."]
        else:
            continue
        out.append(" ".join(parts))
    return out


def load_corpus(path: str, limit: int = 0) -> list[str]:
    """The corpus's texts: the bundled one, a JSONL with ``text``, or a .txt of texts separated by
    blank lines; the first ``limit`` of them (0 = all)."""
    if path == "bundled":
        texts = bundled_corpus()
    else:
        p = Path(path)
        if not p.exists():
            raise DataError(f"{p}: corpus not found")
        if p.suffix == ".jsonl":
            texts = [str(r["text"]).strip() for r in read_jsonl(p, required=("text",)) if str(r["text"]).strip()]
        else:
            texts = [seg.strip() for seg in re.split(r"\n\s*\n", p.read_text(encoding="utf-8")) if seg.strip()]
    return texts[:limit] if limit else texts


def parse_score(text: str) -> float | None:
    """The 1-5 rating after the reasoning (the last "Score: n"), None when there is none.

    >>> parse_score("The answer is on topic but reads like a web page.\\nScore: 3")
    3.0
    >>> parse_score("Looks good to me") is None
    True
    """
    value = parse_rating(text, 1, 5)
    return float(value) if value is not None else None


def backward_rows(seeds) -> list[dict[str, Any]]:
    rows = []
    for t in seeds:
        for inp, out in t.instances:
            if out.strip():
                rows.append(row(BACKWARD_TEMPLATE.format(output=out), task_prompt(t.instruction, inp), "backward-seed"))
    return rows


def forward_rows(seeds) -> list[dict[str, Any]]:
    return [row(task_prompt(t.instruction, inp), out, "seed") for t in seeds for inp, out in t.instances if out.strip()]


@dataclass
class BacktranslationResult:
    """The last iteration's curated rows, every augmented pair, and one history entry per iteration."""
    rows: list[dict[str, Any]]
    augmented: list[dict[str, Any]]
    history: list[dict[str, Any]]


def run(cfg: BacktranslationConfig, base: StageModel, log: Callable[[str], None] = print) -> BacktranslationResult:
    """``base``: the store-wrapped base model; every fine-tuned model is loaded through the registry
    into the same store."""
    if (cfg.train_backward or cfg.train_forward) and not base.can_train:
        raise ValueError(f"backtranslation trains the backward and forward models, and '{base.model_id}' cannot be "
                         "fine-tuned here; use an hf model or set train_backward: false and train_forward: false")
    seeds = load_seed_tasks(cfg.seed_tasks)
    corpus = load_corpus(cfg.corpus)[: cfg.max_segments]
    out_dir = Path(cfg.out)
    base_path = base.train_path or ""
    if cfg.train_backward:
        res = train_sft(backward_rows(seeds), base_path, out_dir / "backward", cfg.train, base_id=base.model_id)
        backward = base.sibling(res.model_dir)
        prompts = [user(BACKWARD_TEMPLATE.format(output=seg)) for seg in corpus]
    else:
        backward = base
        shots = "".join(f"Response:\n{t.first_output()}\nInstruction: {t.instruction}\n\n" for t in seeds[:4] if t.instances)
        prompts = [user(f"Write the instruction that each response answers.\n\n{shots}Response:\n{seg}\nInstruction:")
                   for seg in corpus]
    instructions = [r.texts[0].strip().split("\n")[0] for r in backward.generate(
        [GenRequest(p, GenParams(0.0, 1.0, cfg.max_tokens)) for p in prompts], description="backtranslate: augment")]
    if cfg.train_forward:  # M0: the base fine-tuned on the seed pairs curates the first iteration
        res = train_sft(forward_rows(seeds), base_path, out_dir / "forward-0", cfg.train, base_id=base.model_id)
        forward = base.sibling(res.model_dir)
    else:
        forward = base
    history: list[dict[str, Any]] = []
    curated: list[dict[str, Any]] = []
    for it in range(cfg.iterations):
        ratings = forward.generate([GenRequest(user(RATING_TEMPLATE.format(instruction=i, output=s)),
                                               GenParams(0.0, 1.0, cfg.rating_max_tokens))
                                    for i, s in zip(instructions, corpus)],
                                   description=f"backtranslate: curate {it + 1}")
        scores = [parse_score(r.texts[0]) for r in ratings]
        curated = [row(i, s, "backtranslation", score=sc, iteration=it + 1, curator=forward.model_id)
                   for i, s, sc in zip(instructions, corpus, scores) if sc is not None and sc >= cfg.threshold and i]
        unparsable = sum(sc is None for sc in scores)
        history.append({"iteration": it + 1, "curator": forward.model_id, "curated": len(curated),
                        "unscored": unparsable, "unparsable_scores": unparsable,
                        "score_counts": {str(k): scores.count(float(k)) for k in range(1, 6)}})
        log(f"[backtranslate] iteration {it + 1}: {len(curated)}/{len(corpus)} pairs scored >= {cfg.threshold} "
            f"({unparsable} unscored ratings)")
        if it == cfg.iterations - 1:
            break
        if not curated or not cfg.train_forward:
            why = "nothing was curated" if not curated else "train_forward is false"
            log(f"[backtranslate] stopping after iteration {it + 1}: {why}, so iteration {it + 2} would rate with "
                "the same model and repeat this one")
            history[-1]["stopped"] = why
            break
        res = train_sft(forward_rows(seeds) + curated, base_path, out_dir / f"forward-{it + 1}", cfg.train,
                        base_id=base.model_id)
        forward = base.sibling(res.model_dir)
    augmented = [row(i, s, "backtranslation", ok=bool(i), stage="augmented") for i, s in zip(instructions, corpus)]
    return BacktranslationResult(rows=curated, augmented=augmented, history=history)
