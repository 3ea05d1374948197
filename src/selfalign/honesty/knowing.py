"""k(x): does the unaligned model know the answer to x? (Alignment for Honesty, Sec. 3.2)

For each question: one greedy answer (temperature 0) and M samples (default 10, temperature 1)
from the unaligned model, each judged idk / correct / wrong. Expected accuracy = correct
samples / M. Every generation goes through the store, so this step is cached and resumable.
The greedy answer and the samples are asked for in one call, so a backend that batches by
prompt (``hf``) prefills each question once for both.

Deviation: none in the method. The prompt frame ("Answer the question.\\nQ: ...\\nA: ") is ours;
the paper's code uses the same Q/A frame for its unaligned model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from selfalign.data.formats import QAItem
from selfalign.honesty.judging import Judge
from selfalign.honesty.prompts import plain_prompt
from selfalign.types import GenParams, GenRequest


@dataclass(frozen=True)
class KnowledgeRecord:
    """One question with the unaligned model's greedy answer, its M samples and their labels."""

    id: str
    question: str
    answers: tuple[str, ...]
    greedy: str
    greedy_label: str
    samples: tuple[str, ...]
    labels: tuple[str, ...]
    meta: dict[str, Any]

    @property
    def n_correct(self) -> int:
        return sum(label == "correct" for label in self.labels)

    @property
    def expected_accuracy(self) -> float:
        return self.n_correct / len(self.labels) if self.labels else float(self.greedy_label == "correct")

    def k10(self) -> int:
        """Correct samples scaled to 10 (the paper's confidence expressions count k of 10)."""
        return round(10 * self.expected_accuracy)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "question": self.question, "answers": list(self.answers), "greedy": self.greedy,
                "greedy_label": self.greedy_label, "samples": list(self.samples), "labels": list(self.labels),
                "expected_accuracy": self.expected_accuracy, "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "KnowledgeRecord":
        return cls(d["id"], d["question"], tuple(d["answers"]), d["greedy"], d["greedy_label"], tuple(d["samples"]),
                   tuple(d["labels"]), d.get("meta", {}))


def estimate_knowledge(
    model: Any,
    items: Sequence[QAItem],
    judge: Judge,
    samples: int = 10,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_tokens: int = 32,
    seed: int = 0,
) -> list[KnowledgeRecord]:
    """Greedy + ``samples`` sampled answers per item from ``model`` (a store-wrapped Generator)."""
    greedy_req = [GenRequest(plain_prompt(it.question), GenParams(0.0, 1.0, max_tokens), n=1, seed=seed) for it in items]
    sample_req = [GenRequest(plain_prompt(it.question), GenParams(temperature, top_p, max_tokens), n=samples, seed=seed)
                  for it in items] if samples > 0 else []
    # one call: the backend decodes a question's greedy answer beside its samples, one prefill for all
    res = model.generate(greedy_req + sample_req,
                         description=f"k(x): greedy + {samples} samples" if samples > 0 else "k(x): greedy")
    greedy_res, sample_res = res[:len(items)], res[len(items):]
    texts_g = [r.texts[0] for r in greedy_res]
    texts_s = [r.texts for r in sample_res] if sample_res else [[] for _ in items]
    flat_q, flat_r, flat_a = [], [], []
    for it, g, ss in zip(items, texts_g, texts_s):
        for t in [g, *ss]:
            flat_q.append(it.question)
            flat_r.append(t)
            flat_a.append(it.answers)
    labels = judge.label_many(flat_q, flat_r, flat_a)
    out, pos = [], 0
    for it, g, ss in zip(items, texts_g, texts_s):
        lab = labels[pos: pos + 1 + len(ss)]
        pos += 1 + len(ss)
        out.append(KnowledgeRecord(it.id, it.question, it.answers, g, lab[0], tuple(ss), tuple(lab[1:]), dict(it.meta)))
    return out
