"""LaMini-LM's topic-guided instruction generation.

Wu et al. 2023, "LaMini-LM: A Diverse Herd of Distilled Models from Large-Scale Instructions"
(arXiv 2304.14402), §2. Besides example-guided generation (Self-Instruct's), LaMini asks the
generator for instructions *about given topics*: each request shows a few example instructions
and a few topics (the paper draws them from Wikipedia categories) and asks for new instructions
related to those topics, which widens what the data covers. A teacher then answers every
instruction (the paper: gpt-3.5-turbo), and the student is distilled on the pairs.

Here:

1. **Topics**: ``topics``: a text file with one topic per line, or ``bundled``, a list of 60 broad
   topics this project writes (:data:`BUNDLED_TOPICS`; not the paper's Wikipedia categories).
2. **Requests**: ``requests`` prompts, each with ``n_examples`` seed instructions and
   ``topics_per_request`` topics, both drawn with the seed; the model continues a numbered list of
   ``per_request`` instructions.
3. **Filters**, each counted: Self-Instruct's instruction filters (empty, too short or long, a
   keyword a text model cannot act on, punctuation or non-ASCII start), then ``duplicate``:
   ROUGE-L >= ``rouge_threshold`` against a seed example or any instruction kept so far (a guard
   the paper does not name; topic prompts repeat themselves on a small model).
4. **Responses**: the ``teacher`` (default: the same model) answers each kept instruction greedily;
   an empty answer is dropped (``empty_response``).

Rows are TRL rows with ``meta`` (method ``lamini-topic``, the request's topics, the request index).

Deviations: topics from a project-written list or the user's file rather than Wikipedia
categories; the paper's example-guided half is :mod:`selfalign.synth.self_instruct`; the ROUGE
guard is ours; one response per instruction.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfalign.data.io import DataError
from selfalign.models.base import StageModel
from selfalign.synth.rouge import RougeLIndex
from selfalign.synth.self_instruct import filter_reason, parse_list
from selfalign.synth.tasks import SynthStats, load_seed_tasks, row
from selfalign.types import GenParams, GenRequest, user

BUNDLED_TOPICS = (
    "astronomy", "cooking", "gardening", "personal finance", "world history", "chemistry", "basketball",
    "climate", "music theory", "software testing", "first aid", "photography", "geography", "mathematics",
    "poetry", "travel planning", "nutrition", "architecture", "economics", "law", "biology", "linguistics",
    "film", "painting", "psychology", "job interviews", "email writing", "time management", "marine life",
    "renewable energy", "ancient Rome", "chess", "cycling", "public speaking", "statistics", "philosophy",
    "home repair", "birds", "volcanoes", "medicine", "programming languages", "databases", "cryptography",
    "mythology", "fashion", "agriculture", "space exploration", "board games", "languages of Europe",
    "climate policy", "sleep", "parenting", "urban planning", "insects", "oceans", "coffee", "tea",
    "electric cars", "museums", "sign language",
)

REQUEST_TEMPLATE = ("Here are some examples of instructions:\n{examples}\n\n"
                    "Write {n} new, diverse instructions that are related to the following topics: {topics}. "
                    "Each instruction should be self-contained. Number them.\n1.")


@dataclass
class LaMiniConfig:
    model: str = "smollm2-135m"  # writes the instructions
    teacher: str = ""  # answers them (default: the same model)
    topics: str = "bundled"  # a text file, one topic per line, or bundled
    seed_tasks: str = "bundled"
    requests: int = 8
    per_request: int = 5
    n_examples: int = 3
    topics_per_request: int = 3
    temperature: float = 0.9
    max_tokens: int = 256
    response_max_tokens: int = 160
    rouge_threshold: float = 0.7
    min_words: int = 4
    max_words: int = 150
    seed: int = 0
    out: str = "runs/lamini"
    store: str = ""

    def __post_init__(self) -> None:
        for name in ("requests", "per_request", "n_examples", "topics_per_request"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class LaMiniResult:
    rows: list[dict[str, Any]]
    stats: SynthStats
    topics: list[str]


def load_topics(path: str) -> list[str]:
    """The topics: bundled, or one per line of a text file (blank lines and # comments skipped)."""
    if path == "bundled":
        return list(BUNDLED_TOPICS)
    p = Path(path)
    if not p.is_file():
        raise DataError(f"topics: {path}: not a file (one topic per line) or bundled")
    topics = [t.strip() for t in p.read_text(encoding="utf-8").splitlines() if t.strip() and not t.startswith("#")]
    if not topics:
        raise DataError(f"{path}: no topics")
    return topics


def request_prompt(examples: list[str], topics: list[str], n: int) -> str:
    """One topic-guided request.

    >>> print(request_prompt(["Name a prime number."], ["tea", "chess"], 2))
    Here are some examples of instructions:
    - Name a prime number.
    <BLANKLINE>
    Write 2 new, diverse instructions that are related to the following topics: tea, chess. Each instruction should be self-contained. Number them.
    1.
    """
    return REQUEST_TEMPLATE.format(examples="\n".join(f"- {e}" for e in examples), n=n, topics=", ".join(topics))


def run(cfg: LaMiniConfig, model: StageModel, teacher: StageModel | None = None, log: Any = print) -> LaMiniResult:
    topics = load_topics(cfg.topics)
    seeds = [t.instruction for t in load_seed_tasks(cfg.seed_tasks)]
    rng = random.Random(cfg.seed)
    plan = [(rng.sample(seeds, min(cfg.n_examples, len(seeds))), rng.sample(topics, min(cfg.topics_per_request, len(topics))))
            for _ in range(cfg.requests)]
    params = GenParams(temperature=cfg.temperature, max_tokens=cfg.max_tokens)
    res = model.generate([GenRequest(request_prompt(ex, tp, cfg.per_request), params, seed=cfg.seed + i)
                          for i, (ex, tp) in enumerate(plan)], description="topic-guided instructions")
    stats, index = SynthStats(), RougeLIndex(seeds, cfg.rouge_threshold)
    kept: list[tuple[str, int]] = []
    for i, r in enumerate(res):
        truncated = r.completions[0].finish_reason == "length" if r.completions else False
        for inst in parse_list(r.texts[0], 1, truncated)[:cfg.per_request]:
            reason = filter_reason(inst, cfg.min_words, cfg.max_words)
            if reason is None and not index.is_novel(inst):
                reason = "duplicate"
            if reason:
                stats.drop(reason)
                continue
            index.add(inst)
            kept.append((inst, i))
    answers = (teacher or model).generate(
        [GenRequest(user(inst), GenParams(temperature=0.0, max_tokens=cfg.response_max_tokens), seed=cfg.seed)
         for inst, _ in kept], description="teacher responses")
    rows = []
    for (inst, i), a in zip(kept, answers):
        text = a.texts[0].strip()
        if not text:
            stats.drop("empty_response")
            continue
        rows.append(row(inst, text, "lamini-topic", topics=plan[i][1], request=i))
        stats.kept += 1
    log(f"[lamini] {cfg.requests} requests -> {stats.kept} rows; filtered {dict(stats.filtered)}")
    return LaMiniResult(rows, stats, topics)
