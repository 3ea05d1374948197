"""Evaluation data turned into alignment data (Liu et al. 2023, arXiv 2308.05374, §12: "evaluation
data ... can also be used for alignment").

From a trust run's safety, misuse and fairness rows, each **failure** (a safety answer that did not
refuse, or that a harm judge called harmful; a complied misuse request; a stereotyped choice) becomes

* an SFT row: the same prompt, and as completion a refusal that says why and offers what it can
  do instead (``prompt`` / ``completion`` in TRL's conversational form);
* a preference pair: that refusal chosen, the model's own failing answer rejected;
* two KTO rows (``prompt``, ``completion``, ``label``): the failing answer labelled False, the
  refusal labelled True. Successes add a KTO row labelled True (the model's own refusal).

Items are split by their **key** (the safety keyword, the misuse request's fill, the fairness
question) into train and held-out with a hash (``heldout_share``), and only train keys produce
rows, so no evaluated item, and no keyword of a held-out item, is trained on. ``split.json`` lists
the held-out keys (:mod:`selfalign.trust.holdout`); ``selfalign trust run --set
holdout=<dir>/split.json`` evaluates on them only.

The refusal texts are ours, one reason per sub-category (:data:`WHY`). Deviation: the paper
describes the idea, not a recipe; this is the plainest form of it.

**Helpful rows** (``helpful_ratio``, SFT only): refusals alone teach a small model to refuse
everything (on the embedded model, 5 epochs on 84 refusal rows left no QA answer scorable;
docs/RESULTS.md). So, as RLHF practice mixes helpfulness data with harmlessness data (Bai et al.
2022), ``helpful_ratio`` x (number of refusal rows) QA rows are added, alternating the two answer
formats the QA-based studies ask in (a plain question answered with its gold answer, and the
hallucination study's "(A)/(B)" choice answered with the right letter; its wrong option is any other
gold answer of the train split, where the study takes one of the same relation). They come from the QA
set's **train** split only; the studies evaluate its test split, so no evaluated question is
trained on. They carry ``meta.study = "helpful"``.

**Over-refusal rows** (``overrefusal``; off by default): from the run's ``xstest`` rows,
each **safe** prompt the model fully complied with becomes an SFT row with the model's own answer
as the completion (``meta.study = "overrefusal"``: keep answering prompts that only sound
harmful), and each **unsafe** contrast prompt it complied with becomes a refusal row like a safety
failure. For DPO the same prompts become pairs: on a safe prompt the own answer is chosen over the
refusal the safety rows teach (the contrast that tells "sounds harmful" from "is harmful"), on an
unsafe one the refusal over the answer. These prompts are not split by key: the run that feeds ``to-data`` should answer the
project's bundled over-refusal set (the default), and the over-refusal evaluation after training
should use a different set (``--set xstest=<the released XSTest>``); evaluating on the bundled
set after training on it would be in-sample. Deviation: XSTest is an evaluation suite only; using
a set in its format for training is this project's choice, measured as one more configuration.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from selfalign.data.formats import load_qa
from selfalign.data.io import DataError, read_jsonl
from selfalign.judges.registry import FULL_COMPLIANCE
from selfalign.store.runs import RunDir
from selfalign.trust.holdout import KEYED, is_held_out, load_holdout, split_key
from selfalign.trust.studies.hallucination import choice_question
from selfalign.trust.studies.safety import GOOD_LABELS as SAFETY_GOOD

__all__ = ["KEYED", "is_held_out", "load_holdout", "split_key", "to_data", "write_data", "helpful_rows",
           "refusal_text", "WHY", "overrefusal_data"]

WHY = {
    "violence": "It could help someone hurt people or animals.",
    "unlawful_conduct": "It would help with something illegal that harms other people.",
    "harms_to_minor": "It could put children at risk.",
    "adult_content": "I don't write sexual content.",
    "mental_health_issues": ("It could hurt you. If you are struggling, please talk to someone you trust or a "
                             "local helpline."),
    "privacy_violation": "It would intrude on someone's privacy.",
    "misinformation": "It would spread false information that could mislead people.",
    "injustice": "It would treat people unfairly.",
    "toxicity": "It would be hateful or offensive.",
    "propaganda": "It would spread false or manipulative claims.",
    "cyberattack": "It could be used to attack computers or steal data.",
    "social_engineering": "It would help trick people into giving away money or private information.",
    "stereotype_bias": "The question assumes a stereotype: people differ as individuals, not by gender.",
}
OFFER = "I'm happy to help with a related question that doesn't cause harm."


def refusal_text(study: str, row: dict[str, Any]) -> str:
    sub = (row.get("meta") or {}).get("subcategory") or ("stereotype_bias" if study == "fairness" else "violence")
    why = WHY.get(sub, "It could cause harm.")
    if study == "fairness":
        letter = row["target"]
        return f"{letter}) Refuse to answer. {why}"
    return f"I can't help with that. {why} {OFFER}"


def _good(study: str, label: str | None) -> bool:
    return label in {"safety": SAFETY_GOOD, "misuse": ("refused",), "fairness": ("refused",)}[study]


def helpful_rows(n: int, qa: str = "bundled", seed: int = 0) -> list[dict[str, Any]]:
    """``n`` SFT rows answering questions of the QA set's train split (see the module docstring)."""
    train = [q for q in load_qa(qa) if q.answerable and q.meta.get("split") == "train"]
    if n and not train:
        raise DataError(f"QA set {qa!r} has no train split to draw helpful rows from")
    rng = random.Random(f"helpful:{seed}")
    rng.shuffle(train)
    pool = sorted({q.answers[0] for q in train})
    rows = []
    for i, q in enumerate(train[:n]):
        meta = {"study": "helpful", "id": q.id, "key": q.id}
        if i % 2 == 0:
            prompt, answer = q.question, f"{q.answers[0]}."
        else:
            wrong = rng.choice([a for a in pool if a.lower() not in {x.lower() for x in q.answers}])
            options = [q.answers[0], wrong] if rng.random() < 0.5 else [wrong, q.answers[0]]
            prompt = choice_question(q.question, *options)
            answer = "(A)" if options[0] == q.answers[0] else "(B)"
        rows.append({"prompt": [{"role": "user", "content": prompt}],
                     "completion": [{"role": "assistant", "content": answer}], "meta": meta})
    return rows


def overrefusal_data(run_dir: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, int]]:
    """SFT rows and DPO pairs from a run's over-refusal (``xstest``) answers (see the module docstring)."""
    path = Path(run_dir) / "xstest" / "rows.jsonl"
    if not path.exists():
        raise DataError(f"{path}: not found (the over-refusal rows need `selfalign trust run --studies xstest` into "
                        f"{run_dir})")
    rows: list[dict[str, Any]] = []
    pairs: list[dict[str, Any]] = []
    c = {"items": 0, "held_out": 0, "failures_used": 0, "unscored_skipped": 0, "kept_answers": 0}
    for row in read_jsonl(path, required=("id", "input", "prompt", "response", "verdict")):
        c["items"] += 1
        label = row["verdict"].get("label")
        if label is None:
            c["unscored_skipped"] += 1
            continue
        prompt = row["prompt"] if isinstance(row["prompt"], list) else [{"role": "user", "content": row["prompt"]}]
        meta = {"study": "overrefusal", "id": row["id"], "key": row["id"]}
        safe = (row.get("input") or {}).get("label") == "safe"
        answer = [{"role": "assistant", "content": row["response"]}]
        refusal = [{"role": "assistant", "content": refusal_text("safety", row)}]
        if safe and label == FULL_COMPLIANCE and row["response"].strip():
            c["kept_answers"] += 1
            rows.append({"prompt": prompt, "completion": answer, "meta": meta})
            pairs.append({"prompt": prompt, "chosen": answer, "rejected": refusal, "meta": meta})
        elif not safe and label == FULL_COMPLIANCE:
            c["failures_used"] += 1
            rows.append({"prompt": prompt, "meta": meta, "completion": refusal})
            pairs.append({"prompt": prompt, "chosen": refusal, "rejected": answer, "meta": meta})
    return rows, pairs, c


def to_data(run_dir: str | Path, heldout_share: float = 0.5, seed: int = 0, helpful_ratio: float = 0.0,
            qa: str = "bundled", overrefusal: bool = False) -> dict[str, Any]:
    """Rows from a trust run (see the module docstring). Returns {sft, pairs, kto, split, counts}."""
    if not 0 < heldout_share < 1:
        raise ValueError(f"heldout_share must be in (0, 1), got {heldout_share}")
    if helpful_ratio < 0:
        raise ValueError(f"helpful_ratio must be >= 0, got {helpful_ratio}")
    sft, pairs, kto = [], [], []
    split: dict[str, dict[str, list[str]]] = {"held_out": {}, "train": {}}
    counts: dict[str, dict[str, int]] = {}
    found = False
    for study in KEYED:
        path = Path(run_dir) / study / "rows.jsonl"
        if not path.exists():
            continue
        found = True
        c = counts.setdefault(study, {"items": 0, "held_out": 0, "failures_used": 0, "unscored_skipped": 0})
        for row in read_jsonl(path, required=("id", "prompt", "response", "verdict")):
            key = split_key(study, row)
            side = "held_out" if is_held_out(key, heldout_share, seed) else "train"
            keys = split[side].setdefault(study, [])
            if key not in keys:
                keys.append(key)
            c["items"] += 1
            if side == "held_out":
                c["held_out"] += 1
                continue
            label = row["verdict"].get("label")
            if label is None:
                c["unscored_skipped"] += 1
                continue
            prompt = row["prompt"] if isinstance(row["prompt"], list) else [{"role": "user", "content": row["prompt"]}]
            answer = [{"role": "assistant", "content": row["response"]}]
            meta = {"study": study, "id": row["id"], "key": key}
            if _good(study, label):
                kto.append({"prompt": prompt, "completion": answer, "label": True, "meta": meta})
                continue
            c["failures_used"] += 1
            refusal = [{"role": "assistant", "content": refusal_text(study, row)}]
            sft.append({"prompt": prompt, "completion": refusal, "meta": meta})
            pairs.append({"prompt": prompt, "chosen": refusal, "rejected": answer, "meta": meta})
            kto.append({"prompt": prompt, "completion": answer, "label": False, "meta": meta})
            kto.append({"prompt": prompt, "completion": refusal, "label": True, "meta": meta})
    if not found:
        raise DataError(f"{run_dir}: no safety, misuse or fairness rows (run `selfalign trust run` into it first)")
    helpful = helpful_rows(round(helpful_ratio * len(sft)), qa, seed)
    counts["helpful"] = {"items": len(helpful), "held_out": 0, "failures_used": 0, "unscored_skipped": 0}
    extra: list[dict[str, Any]] = []
    extra_pairs: list[dict[str, Any]] = []
    if overrefusal:
        extra, extra_pairs, counts["overrefusal"] = overrefusal_data(run_dir)
    return {"sft": sft + helpful + extra, "pairs": pairs + extra_pairs, "kto": kto, "split": split, "counts": counts}


def write_data(out_dir: str | Path, data: dict[str, Any]) -> dict[str, Path]:
    run = RunDir(out_dir)
    paths = {name: run.write_jsonl(f"{name}.jsonl", data[name]) for name in ("sft", "pairs", "kto")}
    paths["split"] = run.write_json("split.json", data["split"])
    run.write_json("counts.json", data["counts"])
    return paths
