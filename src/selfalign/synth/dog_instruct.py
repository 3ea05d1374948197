"""DoG-Instruct: raw text wrapped into a dialogue before it becomes an instruction pair.

Chen et al. 2023, "DoG-Instruct: Towards Premium Instruction-Tuning Data via Text-Grounded
Instruction Wrapping" (arXiv 2309.05447). Backtranslation pairs a raw document with an instruction
but keeps the document as the response, which rarely reads like an assistant's answer. DoG
instead asks a model to *wrap* the document into a dialogue: a user turn that asks for what the
text contains, and an assistant turn that answers **from the text** (grounded in it, not from the
model's own knowledge), so the response has the assistant's style and the document's facts.

Here, for each text of the corpus (``corpus``):

1. **Wrapping**: the model is shown the text and asked for a dialogue in a fixed format,
   ``User: ...`` then ``Assistant: ...``; a reply without both turns is dropped (``unparsed``).
2. **Grounding filter**: the share of the assistant turn's content words that occur in the text
   must be at least ``min_grounding`` (``not_grounded``): a wrap that invents its answer is not
   kept. An answer shorter than ``min_answer_words`` (``answer_too_short``) or a user turn that
   copies the text, ROUGE-L >= 0.6 (``question_copies_text``), is dropped too.

Rows: the user turn as the prompt (the text is *not* in it: the model must learn the answer), the
assistant turn as the completion; ``meta``: method ``dog-instruct``, the grounding share, the
text's index.

Deviations: the paper trains a dedicated wrapper model on seed wrappings and uses more elaborate
prompting; here the ``model`` option wraps by prompting alone, and the grounding filter (a
content-word overlap) is our stand-in for the paper's text-grounded constraint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from selfalign.models.base import StageModel
from selfalign.synth.backtranslation import load_corpus
from selfalign.synth.rouge import rouge_l
from selfalign.synth.tasks import SynthStats, row
from selfalign.synth.udit import STOP
from selfalign.types import GenParams, GenRequest, user

WRAP_TEMPLATE = (
    "Turn the text below into a short conversation. The user asks a question that the text answers; the assistant "
    "answers it helpfully using only facts from the text. Write exactly:\nUser: <question>\nAssistant: <answer>\n\n"
    "Text:\n{text}")
DIALOGUE = re.compile(r"User:\s*(?P<user>.+?)\s*\n\s*Assistant:\s*(?P<assistant>.+)", re.IGNORECASE | re.DOTALL)


@dataclass
class DogConfig:
    model: str = "smollm2-135m"
    corpus: str = "bundled"  # a .txt (texts separated by blank lines), a JSONL with 'text', or bundled
    max_texts: int = 60  # 0 = every text
    min_grounding: float = 0.6
    min_answer_words: int = 3
    temperature: float = 0.7
    max_tokens: int = 160
    seed: int = 0
    out: str = "runs/dog-instruct"
    store: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.min_grounding <= 1:
            raise ValueError(f"min_grounding must be in [0, 1], got {self.min_grounding}")


@dataclass
class DogResult:
    rows: list[dict[str, Any]]
    stats: SynthStats


def words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOP and len(w) > 1]


def grounding(answer: str, text: str) -> float:
    """The share of the answer's content words that occur in the text (1.0 for none).

    >>> grounding("Its capital is Lima.", "Peru is a country. Its capital is Lima.")
    1.0
    >>> round(grounding("The capital is Cusco, in the Andes.", "Peru is a country. Its capital is Lima."), 3)
    0.333
    """
    ws = words(answer)
    if not ws:
        return 1.0
    have = set(words(text))
    return sum(w in have for w in ws) / len(ws)


def parse_dialogue(reply: str) -> tuple[str, str] | None:
    """(user turn, assistant turn), each cut at the next turn label; None without both.

    >>> parse_dialogue("User: What is Peru's capital?\\nAssistant: It is Lima.\\nUser: thanks")
    ("What is Peru's capital?", 'It is Lima.')
    """
    m = DIALOGUE.search(reply)
    if not m:
        return None
    assistant = re.split(r"\n\s*(?:User|Assistant)\s*:", m.group("assistant"), flags=re.IGNORECASE)[0].strip()
    question = m.group("user").strip()
    return (question, assistant) if question and assistant else None


def run(cfg: DogConfig, model: StageModel, log: Any = print) -> DogResult:
    texts = load_corpus(cfg.corpus, cfg.max_texts)
    params = GenParams(temperature=cfg.temperature, max_tokens=cfg.max_tokens)
    res = model.generate([GenRequest(user(WRAP_TEMPLATE.format(text=t)), params, seed=cfg.seed) for t in texts],
                         description="dialogue wrapping")
    stats, rows = SynthStats(), []
    for i, (t, r) in enumerate(zip(texts, res)):
        d = parse_dialogue(r.texts[0])
        if d is None:
            stats.drop("unparsed")
            continue
        question, answer = d
        g = grounding(answer, t)
        reason = ("answer_too_short" if len(answer.split()) < cfg.min_answer_words
                  else "not_grounded" if g < cfg.min_grounding
                  else "question_copies_text" if rouge_l(t, question) >= 0.6 else None)
        if reason:
            stats.drop(reason)
            continue
        rows.append(row(question, answer, "dog-instruct", grounding=round(g, 3), text_index=i))
        stats.kept += 1
    log(f"[dog-instruct] {len(texts)} texts -> {stats.kept} rows; filtered {dict(stats.filtered)}")
    return DogResult(rows, stats)
