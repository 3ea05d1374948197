"""LongForm: corpus documents as gold outputs, with instructions written for them.

Köksal, Schick, Korhonen and Schütze 2023, "LongForm: Effective Instruction Tuning with Reverse
Instructions" (arXiv 2304.08460). Human-written documents make good long outputs; what is
missing is the instruction. A model reads each document and writes the instruction it could be
the answer to (*reverse instructions*), in one of several styles so the instructions vary (the
paper: a formal instruction, an informal chatbot request, a search-engine query), and the pair
(instruction, document) is a training row with the document unchanged as the output.

Here, for each text of the corpus (``corpus``):

1. **Length filter**: a document shorter than ``min_words`` or longer than ``max_words`` is
   skipped (``too_short`` / ``too_long``); the paper selects documents within a length range.
2. **Reverse instruction**: the model is shown the document and asked for an instruction in the
   style picked for it (seeded: ``instruction``, ``chatbot`` or ``query``; ``styles`` narrows the
   choice). The first non-empty line of the answer is the instruction, with a leading label
   ("Instruction:", "Query:") removed.
3. **Filters**: an empty instruction (``empty``); one that copies the document, ROUGE-L >=
   ``copy_threshold`` against it (``copies_document``); one longer than the document
   (``longer_than_document``).

Rows: the instruction as the prompt and the document, unchanged, as the completion;
``meta``: method ``longform``, the style, the text's index.

Deviations: the paper writes its instructions with an LLM over C4, Wikipedia and other corpora and
adds a length hint to some instructions; here the corpus is the one given (by default the bundled
encyclopedic paragraphs, short ones), the writer is ``model``, there is no length hint, and the
copy and length filters are ours.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

from selfalign.models.base import StageModel
from selfalign.synth.backtranslation import load_corpus
from selfalign.synth.rouge import rouge_l
from selfalign.synth.tasks import SynthStats, row
from selfalign.types import GenParams, GenRequest, user

STYLES = {
    "instruction": "Write the instruction that this text would be a good answer to. Reply with the instruction only.",
    "chatbot": "Write the casual message a user might send to a chatbot, to which this text would be the reply. "
               "Reply with the message only.",
    "query": "Write the short search-engine query for which this text would be the best result. "
             "Reply with the query only.",
}


@dataclass
class LongFormConfig:
    model: str = "smollm2-135m"
    corpus: str = "bundled"  # a .txt (texts separated by blank lines), a JSONL with 'text', or bundled
    styles: list[str] = field(default_factory=lambda: list(STYLES))
    max_texts: int = 60  # 0 = every text
    min_words: int = 8
    max_words: int = 800
    copy_threshold: float = 0.6
    temperature: float = 0.7
    max_tokens: int = 64
    seed: int = 0
    out: str = "runs/longform"
    store: str = ""

    def __post_init__(self) -> None:
        bad = [s for s in self.styles if s not in STYLES]
        if bad or not self.styles:
            raise ValueError(f"styles: unknown {bad or 'none given'}; known: {', '.join(STYLES)}")
        if not 0 < self.min_words <= self.max_words:
            raise ValueError(f"need 0 < min_words <= max_words, got {self.min_words}, {self.max_words}")


@dataclass
class LongFormResult:
    rows: list[dict[str, Any]]
    stats: SynthStats
    per_style: dict[str, int]


def clean(text: str) -> str:
    """The first non-empty line, a leading label and quotes removed.

    >>> clean('\\nInstruction: "Describe Peru\\'s capital."\\nMore text')
    "Describe Peru's capital."
    """
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = re.sub(r"^(instruction|message|query|question|user)\s*:\s*", "", line, flags=re.IGNORECASE)
    return line.strip().strip('"').strip()


def run(cfg: LongFormConfig, model: StageModel, log: Any = print) -> LongFormResult:
    texts = load_corpus(cfg.corpus, cfg.max_texts)
    stats, todo = SynthStats(), []
    for i, t in enumerate(texts):
        n = len(t.split())
        if n < cfg.min_words:
            stats.drop("too_short")
        elif n > cfg.max_words:
            stats.drop("too_long")
        else:
            todo.append((i, t, random.Random(f"{cfg.seed}:{i}").choice(cfg.styles)))
    params = GenParams(temperature=cfg.temperature, max_tokens=cfg.max_tokens)
    res = model.generate([GenRequest(user(f"{STYLES[s]}\n\nText:\n{t}"), params, seed=cfg.seed) for _, t, s in todo],
                         description="reverse instructions")
    rows, per_style = [], {s: 0 for s in cfg.styles}
    for (i, t, style), r in zip(todo, res):
        inst = clean(r.texts[0])
        reason = ("empty" if not inst else "copies_document" if rouge_l(t, inst) >= cfg.copy_threshold
                  else "longer_than_document" if len(inst.split()) > len(t.split()) else None)
        if reason:
            stats.drop(reason)
            continue
        rows.append(row(inst, t, "longform", style=style, text_index=i))
        stats.kept += 1
        per_style[style] += 1
    log(f"[longform] {len(texts)} texts -> {stats.kept} rows ({per_style}); filtered {dict(stats.filtered)}")
    return LongFormResult(rows, stats, per_style)
