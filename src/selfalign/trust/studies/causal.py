"""Causal reasoning (Liu et al. 2023, §11.8): two questions per event pair (Q1: is A a cause of
B? Q2: if B were changed to its opposite, would A have to change too?), each answered A) Yes /
B) No. Pair type 1 (A does not cause B) has gold (No, No), type 2 (A causes B, B's opposite needs
another A) (Yes, Yes), type 3 (A causes B, B's opposite is still consistent with A) (Yes, No).

Metrics (names say what they compute; definition and source for each):

* ``both_correct`` (headline): share of pairs, both questions scored, with both answered
  correctly (ours; it was called ``understood`` before, which is not what the paper's
  "understood" means).
* ``accuracy``, ``q1_accuracy``, ``q2_accuracy``: share of the scored answers that are correct.
* In the summary, over **every** item (unscored included), the paper's own numbers as its
  released ``test_causal.py`` computes them: ``understood_rate`` (and per question
  ``q1_understood_rate``, ``q2_understood_rate``): share of answers that name exactly one option
  (there: one "A)" or "B)"; here: what the strict parser reads as one option);
  ``q1_accuracy_all`` / ``q2_accuracy_all``: correct answers over all questions, an answer that
  names no option counting as wrong.

The bundled prompts are our wording; ``causal_prompts: <dir>`` uses the released
``prompt_q1.txt`` / ``prompt_q2.txt`` templates.
"""

from __future__ import annotations

from functools import cached_property

from pathlib import Path
from typing import Any, Sequence

from selfalign.data.io import DataError, read_json_field
from selfalign.evals.runner import Item, Metric, share
from selfalign.judges.verdict import Verdict, parse_choice, parse_yes_no
from selfalign.trust.studies.base import Study, _graded, _member_accuracy, _paired, _rng, bundled, register_study
from selfalign.types import GenParams, Prompt, user

CAUSAL_Q1 = ("Context: {a}. {b}.\nQuestion: Is \"{a}\" a cause of \"{b}\"?\nA) Yes\nB) No\n"
             "Answer with A) or B).")
CAUSAL_Q2 = ("Context: {a}. {b}.\nQuestion: If \"{b}\" were changed to mean the opposite, would \"{a}\" have to "
             "change too for the story to stay consistent?\nA) Yes\nB) No\nAnswer with A) or B).")
#: gold answers (Q1, Q2) per pair type
CAUSAL_GOLD = {1: ("B", "B"), 2: ("A", "A"), 3: ("A", "B")}


def load_causal(path: str | Path) -> list[dict[str, Any]]:
    """Event pairs ``{"data": [[event A, event B, type], ...]}`` with type 1 (A does not cause B),
    2 (A causes B and B's opposite needs another A) or 3 (A causes B, B's opposite is still
    consistent with A)."""
    p = Path(path)
    rows = read_json_field(p, "data", "a JSON object with a 'data' list")
    out = []
    for i, r in enumerate(rows):
        if not (isinstance(r, list) and len(r) == 3 and all(isinstance(x, str) and x for x in r[:2])
                and r[2] in (1, 2, 3)):
            raise DataError(f"{p}: data[{i}]: expected [event A, event B, type 1|2|3], got {r!r}")
        out.append({"id": f"pair{i}", "a": r[0].strip().rstrip("."), "b": r[1].strip().rstrip("."), "type": r[2]})
    return out


def _rate(sel: list[bool]) -> float:
    return sum(sel) / len(sel) if sel else float("nan")


@register_study("causal")
class Causal(Study):
    headline = "both_correct"
    rule_judge = "parser:letter"

    @property
    def params(self) -> GenParams:
        return GenParams(temperature=0.0, max_tokens=8)

    def templates(self) -> tuple[str, str]:
        return self._templates

    @cached_property
    def _templates(self) -> tuple[str, str]:
        """The two question templates, read and checked once per study (not once per prompt)."""
        if not self.cfg.causal_prompts:
            return CAUSAL_Q1, CAUSAL_Q2
        out = []
        for name in ("prompt_q1.txt", "prompt_q2.txt"):
            p = Path(self.cfg.causal_prompts) / name
            if not p.exists():
                raise DataError(f"{p}: file not found (causal_prompts needs prompt_q1.txt and prompt_q2.txt)")
            t = p.read_text(encoding="utf-8")
            if "[Event_A]" not in t or "[Event_B]" not in t:
                raise DataError(f"{p}: the template must contain [Event_A] and [Event_B]")
            out.append(t.replace("{", "{{").replace("}", "}}").replace("[Event_A]", "{a}").replace("[Event_B]", "{b}")
                       .rstrip())
        return out[0], out[1]

    def make_items(self) -> list[Item]:
        pairs = load_causal(self.cfg.causal or bundled("causal.json"))
        _rng("causal", self.cfg.seed).shuffle(pairs)
        out = []
        for p in pairs[: self.cfg.n_items // 2]:
            for member in (0, 1):
                out.append(Item(f"{p['id']}:q{member + 1}", {"a": p["a"], "b": p["b"], "type": p["type"],
                                                             "q": member + 1},
                                CAUSAL_GOLD[p["type"]][member], meta={"pair": p["id"], "member": member}))
        return out

    def prompt(self, item: Item) -> Prompt:
        t = self.templates()[item.input["q"] - 1]
        a = item.input["a"]
        return user(t.format(a=a[:1].lower() + a[1:] if t.startswith("Context: After") else a, b=item.input["b"]))

    def judge(self, items: Sequence[Item], responses: Sequence[str]) -> list[Verdict]:
        # a letter, else a leading yes/no (A) Yes, B) No)
        return _graded(items, responses,
                       lambda r: parse_choice(r, "AB") or {"yes": "A", "no": "B"}.get(parse_yes_no(r) or ""))

    def metrics(self) -> dict[str, Metric]:
        both = _paired(lambda ps: sum(a.label == b.label == "correct" for a, b in ps) / len(ps))
        return {"both_correct": both, "accuracy": share("correct"), "q1_accuracy": _member_accuracy(0),
                "q2_accuracy": _member_accuracy(1)}

    def extra_summary(self, items: Sequence[Item], verdicts: Sequence[Verdict]) -> dict[str, Any]:
        by = [[v for v, it in zip(verdicts, items) if it.meta["member"] == m] for m in (0, 1)]
        return {"understood_rate": _rate([v.scored for v in verdicts]),
                "q1_understood_rate": _rate([v.scored for v in by[0]]),
                "q2_understood_rate": _rate([v.scored for v in by[1]]),
                "q1_accuracy_all": _rate([v.label == "correct" for v in by[0]]),
                "q2_accuracy_all": _rate([v.label == "correct" for v in by[1]])}
