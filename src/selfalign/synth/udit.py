"""UDIT: instruction data from unlabelled text with pseudo-labels made by deterministic tools.

Gu, Ke, Zhu and Huang 2022, "Learning Instructions with Unlabeled Data for Zero-Shot Cross-Task
Generalization" (EMNLP 2022, arXiv 2210.09175). Where labelled instruction data is scarce, UDIT
builds pseudo-labelled training tasks from plain text with simple rules (no labeller, no model),
renders each in several instruction templates, and trains on the mixture. No model call is
made here: the labels come from the text itself.

Tasks made from each text of the corpus (``tasks``):

* ``summary``: an extractive one-sentence summary: the sentence that shares the most content
  words with the rest of the text (ties: the earlier one). Texts of one sentence are skipped
  (filter ``summary_one_sentence``).
* ``cloze``: the text with one sentence's most salient word blanked (a number, else the longest
  capitalised word that does not start the sentence; the sentence is picked with the seed); the
  answer is the word. A sentence with no such word gives nothing (``no_blank``).
* ``multiple_choice``: the same blank with four options: the answer and three distractors of
  the same kind (numbers for a number, capitalised words for a word) drawn from *other* texts of
  the corpus, shuffled with the seed; the answer is the letter and the word. Too few distractors
  of that kind: ``no_distractors``.

Each item is written in one of three instruction templates per task, picked by a seeded hash of
the text and task (the paper's many-templates-per-task, in miniature). Duplicate prompts are
dropped (``duplicate``). Rows are TRL prompt-completion rows with ``meta`` (method ``udit``, the
task, the template index, the source text's index).

Deviations: the paper draws its pseudo-tasks from large web corpora and covers more task types
(e.g. sentence ordering, next-sentence selection, title generation from document structure); here
three task types over the corpus given (by default the bundled encyclopedic paragraphs), and the
extractive-summary rule (content-word overlap) and the salience rule for blanks are ours.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from selfalign.synth.backtranslation import load_corpus
from selfalign.synth.tasks import SynthStats, row, task_prompt

TASKS = ("summary", "cloze", "multiple_choice")

TEMPLATES: dict[str, tuple[str, ...]] = {
    "summary": ("Summarize the following text in one sentence.",
                "Which single sentence of this passage best sums it up? Copy it.",
                "Give a one-sentence summary of the passage below, using a sentence from it."),
    "cloze": ("Fill in the blank (___) in the passage below with the missing word.",
              "One word is missing from this passage, marked ___. What is it?",
              "Complete the passage by supplying the word that replaces ___."),
    "multiple_choice": ("Choose the word that best fills the blank (___). Answer with the letter and the word.",
                        "Which option completes the passage? Reply with its letter and the word.",
                        "Pick the correct option for the blank ___ in the passage."),
}

STOP = frozenset("a an the is are was were of in on at to for and or by with from as it its this that there "
                 "be been has have had which who whom called used".split())


@dataclass
class UDITConfig:
    corpus: str = "bundled"  # a .txt (texts separated by blank lines), a JSONL with 'text', or bundled
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    max_texts: int = 0  # 0 = every text of the corpus
    seed: int = 0
    out: str = "runs/udit"

    def __post_init__(self) -> None:
        bad = [t for t in self.tasks if t not in TASKS]
        if bad or not self.tasks:
            raise ValueError(f"tasks: unknown {bad or 'none given'}; known: {', '.join(TASKS)}")
        if self.max_texts < 0:
            raise ValueError(f"max_texts must be >= 0, got {self.max_texts}")


@dataclass
class UDITResult:
    """The pseudo-labelled rows and the counts (kept, filtered by reason, rows per task)."""

    rows: list[dict[str, Any]]
    stats: SynthStats
    per_task: dict[str, int]


def sentences(text: str) -> list[str]:
    """Split at sentence ends (., ! or ? followed by a space and a capital or digit).

    >>> sentences("Peru is a country. Its capital is Lima! Atomic number 3.5 is odd.")
    ['Peru is a country.', 'Its capital is Lima!', 'Atomic number 3.5 is odd.']
    """
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9])", text.strip()) if s.strip()]


def _content(sentence: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", sentence.lower()) if w not in STOP and len(w) > 1}


def extractive_summary(sents: list[str]) -> int:
    """The index of the sentence sharing the most content words with the other sentences.

    >>> extractive_summary(["Lima is big.", "Peru has Lima as its capital city.", "Peru is in South America."])
    1
    """
    words = [_content(s) for s in sents]
    overlap = [sum(len(w & other) for j, other in enumerate(words) if j != i) for i, w in enumerate(words)]
    return max(range(len(sents)), key=lambda i: (overlap[i], -i))


def blank_word(sentence: str) -> str | None:
    """The word a cloze item blanks: a number, else the longest capitalised word that does not
    start the sentence; None when there is neither.

    >>> blank_word("Its capital is Lima."), blank_word("It has atomic number 26."), blank_word("it is so.")
    ('Lima', '26', None)
    """
    tokens = re.findall(r"[A-Za-z][\w'-]*|\d+(?:\.\d+)?", sentence)
    numbers = [t for t in tokens if t[0].isdigit()]
    if numbers:
        return numbers[0]
    caps = [t for i, t in enumerate(tokens) if i > 0 and t[0].isupper()]
    return max(caps, key=lambda t: (len(t), -caps.index(t))) if caps else None


def _kind(word: str) -> str:
    return "number" if word[0].isdigit() else "word"


def _pick(seed: int, *parts: Any) -> random.Random:
    return random.Random(int(hashlib.sha256(repr((seed, *parts)).encode()).hexdigest()[:12], 16))


def run(cfg: UDITConfig, log: Any = print) -> UDITResult:
    """Every requested task on every text; deterministic in ``cfg.seed``."""
    texts = load_corpus(cfg.corpus, cfg.max_texts)
    if not texts:
        raise ValueError(f"corpus: {cfg.corpus}: no texts")
    split = [sentences(t) for t in texts]
    # distractor pools by kind, remembering which text each word came from
    pool: dict[str, list[tuple[int, str]]] = {"number": [], "word": []}
    for i, sents in enumerate(split):
        for s in sents:
            w = blank_word(s)
            if w is not None:
                pool[_kind(w)].append((i, w))
    stats, rows, seen = SynthStats(), [], set()
    per_task: Counter[str] = Counter()

    def keep(task: str, i: int, body: str, target: str, **meta: Any) -> None:
        t = _pick(cfg.seed, "template", i, task).randrange(len(TEMPLATES[task]))
        prompt = task_prompt(TEMPLATES[task][t], body)
        if prompt in seen:
            stats.drop("duplicate")
            return
        seen.add(prompt)
        rows.append(row(prompt, target, "udit", task=task, template=t, text_index=i, **meta))
        stats.kept += 1
        per_task[task] += 1

    for i, (text, sents) in enumerate(zip(texts, split)):
        if "summary" in cfg.tasks:
            if len(sents) < 2:
                stats.drop("summary_one_sentence")
            else:
                keep("summary", i, text, sents[extractive_summary(sents)])
        if not {"cloze", "multiple_choice"} & set(cfg.tasks):
            continue
        s = sents[_pick(cfg.seed, "sentence", i).randrange(len(sents))]
        word = blank_word(s)
        if word is None:
            for task in ("cloze", "multiple_choice"):
                if task in cfg.tasks:
                    stats.drop("no_blank")
            continue
        blanked = text.replace(s, re.sub(rf"(?<![\w.]){re.escape(word)}(?![\w]|\.\d)", "___", s, count=1), 1)
        if "cloze" in cfg.tasks:
            keep("cloze", i, blanked, word, answer=word)
        if "multiple_choice" in cfg.tasks:
            others = sorted({w for j, w in pool[_kind(word)] if j != i and w != word})
            if len(others) < 3:
                stats.drop("no_distractors")
                continue
            rng = _pick(cfg.seed, "options", i)
            options = rng.sample(others, 3) + [word]
            rng.shuffle(options)
            letter = "ABCD"[options.index(word)]
            listing = "\n".join(f"{'ABCD'[k]}. {o}" for k, o in enumerate(options))
            keep("multiple_choice", i, f"{blanked}\n{listing}", f"{letter}. {word}", answer=word, options=options)
    log(f"[udit] {len(texts)} texts -> {stats.kept} rows ({dict(per_task)}), filtered {dict(stats.filtered)}")
    return UDITResult(rows, stats, dict(per_task))
