"""Running the trustworthiness studies and comparing two runs (Liu et al. 2023, arXiv 2308.05374).

:func:`run` validates every study's inputs first (files, options; nothing is generated before all
of them load), then runs each study on the shared task runner through the store, so a killed run
resumes without asking the model again. Each study writes ``<out>/<study>/rows.jsonl`` and
``summary.json``; the run's ``report.json`` gathers them with the 7 x 29 coverage grid and the
judges' validation.

:func:`compare` reads two runs' rows and puts them side by side on the items both scored: per
study, the paired difference of the good-outcome rate with a paired bootstrap interval and
McNemar's exact test; per sub-category, the same over every item that measures it. There is no
overall "trust score": the profile is the result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from selfalign.data.io import DataError, iter_jsonl, read_jsonl
from selfalign.evals.runner import EvalResult, Item, compare as compare_results, run_task
from selfalign.evals.stats import mcnemar, paired_bootstrap
from selfalign.judges.refusal import recorded_validation
from selfalign.judges.registry import judge_card
from selfalign.judges.verdict import Verdict, parse_choice, parse_yes_no
from selfalign.store.runs import RunDir
from selfalign.judges.refusal_phrases import cohen_kappa, is_refusal
from selfalign.trust.studies import STUDIES, Study, StudyConfig, bundled, make_study, parse_answer_confidence
from selfalign.trust.studies.safety import TRAINED_HARM_JUDGE
from selfalign.trust.taxonomy import STUDY_SUBCATEGORIES, coverage


@dataclass
class TrustConfig(StudyConfig):
    model: str = "smollm2-135m"  # the model under evaluation
    generator: str = ""  # writes the safety study's questions ("" = the model itself)
    judge: str = ""  # "" = rule judges (refusal-rule); a model spec = an LLM harm/refusal judge (safety, misuse, xstest)
    studies: list[str] = field(default_factory=lambda: list(STUDIES))
    out: str = "runs/trust"
    store: str = ""
    bootstrap: int = 1000

    def __post_init__(self) -> None:
        bad = [s for s in self.studies if s not in STUDIES]
        if bad:
            raise ValueError(f"studies: unknown {', '.join(bad)}; known: {', '.join(STUDIES)}")
        if not self.studies:
            raise ValueError("studies: name at least one study")
        if self.n_items < 2:
            raise ValueError(f"n_items must be >= 2, got {self.n_items}")
        if not 0 < self.typo_rate <= 1:
            raise ValueError(f"typo_rate must be in (0, 1], got {self.typo_rate}")
        if self.leak_chars < 1 or self.max_tokens < 1:
            raise ValueError("leak_chars and max_tokens must be >= 1")


def prepare_studies(cfg: TrustConfig) -> list[Study]:
    """Build every study and load its items (or, for safety, its keyword seeds): a bad file fails
    here, naming it, before any model is loaded."""
    studies = []
    for name in cfg.studies:
        st = make_study(name, cfg)
        if name == "safety":
            st.seeds()  # type: ignore[attr-defined]
            if cfg.harm_judge and not cfg.judge:
                st.load_harm_judge()  # type: ignore[attr-defined]
        elif not st.items():
            raise DataError(f"study {name}: no items (check its input file)")
        studies.append(st)
    return studies


def validate_refusal_detector() -> dict[str, Any]:
    """Accuracy and Cohen's kappa of the refusal detector on the project's labelled sets, in the
    order they were written: the development set (used while the first phrase list was written),
    two sets that were held out from one version of the list and then used to extend it (their
    misses became phrases), and the held-out set written after the current list was frozen and
    used only to measure it."""
    out: dict[str, Any] = {}
    for split, name in (("development", "refusal_labelled.jsonl"), ("tuning_1", "refusal_tuning1.jsonl"),
                        ("tuning_2", "refusal_tuning2.jsonl"), ("held_out", "refusal_heldout.jsonl")):
        rows = read_jsonl(bundled(name), required=("response", "refusal"))
        gold = [bool(r["refusal"]) for r in rows]
        pred = [is_refusal(r["response"]) for r in rows]
        out[split] = {"n": len(rows), "positives": sum(gold),
                      "accuracy": sum(g == p for g, p in zip(gold, pred)) / len(rows),
                      "kappa": cohen_kappa(gold, pred),
                      "errors": [r["response"] for r, g, p in zip(rows, gold, pred) if g != p][:10]}
    return out


def validate_parsers() -> dict[str, Any]:
    """The strict parsers on ``parser_labelled.jsonl`` (responses and the parse a reader expects,
    ``null`` = unscored; written from templates while the parsers existed, so it is a check of
    their specification rather than an independent estimate): exact-match accuracy, and Cohen's
    kappa of the scored/unscored decision."""

    def parse(r: dict[str, Any]) -> Any:
        if r["judge"] == "letter":
            return parse_choice(r["response"], r["options"])
        if r["judge"] == "yes_no":
            return parse_yes_no(r["response"])
        got = parse_answer_confidence(r["response"], r["options"])
        return list(got) if got else None

    rows = read_jsonl(bundled("parser_labelled.jsonl"), required=("judge", "response", "expected"))
    out: dict[str, Any] = {}
    for kind in sorted({r["judge"] for r in rows}):
        rs = [r for r in rows if r["judge"] == kind]
        got = [parse(r) for r in rs]
        gold_scored = [r["expected"] is not None for r in rs]
        out[kind] = {"n": len(rs), "positives": sum(gold_scored),
                     "accuracy": sum(g == r["expected"] for g, r in zip(got, rs)) / len(rs),
                     "kappa": cohen_kappa(gold_scored, [g is not None for g in got]),
                     "errors": [r["response"] for g, r in zip(got, rs) if g != r["expected"]][:10]}
    return out


REFUSAL_RULE_SOURCE = "data/bundled/judges/refusal_validation.json"
PARSER_SOURCE = "parser_labelled.jsonl (a specification set written with the parsers, not an independent sample)"


def refusal_rule_validation() -> tuple[dict[str, Any] | None, str]:
    """The rule refusal judge's recorded validation (``judges.refusal.recorded_validation``: its
    ``held_out`` part, the set it was not tuned on) and that set's source; (None, why) when none
    is recorded yet."""
    try:
        rec = recorded_validation("refusal-rule")
    except (OSError, DataError, ValueError, KeyError) as e:
        return None, f"no recorded validation ({e})"
    val = rec.get("held_out", rec) if isinstance(rec, dict) else None
    if not isinstance(val, dict) or "accuracy" not in val:
        return None, "no recorded validation (no held-out accuracy in the record)"
    return val, f"held out: {val.get('source') or val.get('file') or REFUSAL_RULE_SOURCE}"


def trained_harm_validation(judge: Any) -> tuple[dict[str, Any] | None, str, dict[str, Any]]:
    """(validation, source, per held-out source) of a trained harm judge: its ``validation`` dict
    when it has one, else what ``judge.json`` recorded (``meta['validation']['test_questions']``:
    per held-out source model n, accuracy, kappa, recall), pooled over sources by item count for
    n and accuracy (kappa and recall stay per source)."""
    val = getattr(judge, "validation", None)
    if isinstance(val, dict):
        return val, str(getattr(judge, "validation_source", "") or "the judge's own validation"), {}
    rec = (getattr(judge, "meta", None) or {}).get("validation") or {}
    table = rec.get("test_questions") or {}
    rows = {s: d for s, d in table.items() if isinstance(d, dict) and d.get("n")}
    if not rows:
        return None, "", {}
    n = sum(int(d["n"]) for d in rows.values())
    acc = sum(float(d.get("accuracy") or 0.0) * int(d["n"]) for d in rows.values()) / n
    per_source = {s: {"n": d["n"], "accuracy": d.get("accuracy"), "kappa": d.get("kappa"), "recall": d.get("recall")}
                  for s, d in rows.items()}
    source = f"{rec.get('protocol', 'held-out sources')}; test questions of each held-out source model"
    return {"n": n, "accuracy": acc, "kappa": None}, source, per_source


def judge_cards(st: Study, run_unscored_share: float, parsers: dict[str, Any], llm: str = "") -> list[dict[str, Any]]:
    """One card per judge that labelled a study's answers: which judge, what it was validated on
    (n, source, accuracy, kappa, per-class recall) or ``validated: False``, and the share of this
    run's answers it left unscored."""
    cards = []
    for name in st.judges_used():
        if name == "llm":
            card = judge_card(f"llm:{llm or 'judge'}", None)
            card["note"] = "an LLM judge; not validated on a labelled set in this project"
        elif name == "refusal-rule":
            val, source = refusal_rule_validation()
            card = judge_card(name, val, source)
            if val is None:
                card["note"] = source
        elif name.startswith("parser:"):
            d = parsers.get(name.split(":", 1)[1])
            card = judge_card(name, {"n": d["n"], "accuracy": d["accuracy"], "kappa": d["kappa"]} if d else None,
                              PARSER_SOURCE)
        elif name == TRAINED_HARM_JUDGE:
            val, source, per_source = trained_harm_validation(getattr(st, "harm_model", None))
            card = judge_card(f"{name}:{st.cfg.harm_judge}", val, source)
            if per_source:
                card["per_source"] = per_source
        else:
            card = judge_card(name, None)
            card["note"] = "a deterministic rule (string comparison), nothing to validate against"
        card["run_unscored_share"] = run_unscored_share
        cards.append(card)
    return cards


@dataclass
class TrustResult:
    """The model evaluated, each study's summary, the 7 x 29 coverage grid and the judges' validation."""
    model: str
    studies: dict[str, Any]
    coverage: list[dict[str, Any]]
    judges: dict[str, Any]


def run(cfg: TrustConfig, model: Any, generator: Any = None, judge: Any = None, studies: list[Study] | None = None,
        progress: Callable[[str], None] | None = None) -> TrustResult:
    studies = studies if studies is not None else prepare_studies(cfg)
    out = Path(cfg.out)
    results: dict[str, Any] = {}
    measured: dict[str, list[str]] = {}
    parsers = validate_parsers()
    for st in studies:
        if progress:
            progress(st.name)
        st.judge_model = judge
        if st.name == "safety":
            st.prepare(generator or model)  # type: ignore[attr-defined]
        res = run_task(st, model, out / st.name, seed=cfg.seed, resamples=cfg.bootstrap)
        s = dict(res.summary)
        used = st.judges_used()
        cards = judge_cards(st, s["judge"]["unscored_share"], parsers, cfg.judge)
        s.update(st.extra_summary(res.items, res.verdicts))
        s.update(headline=st.headline_metric(), higher_is_better=st.higher_is_better, subcategories=st.covered(),
                 judge_kind="llm" if "llm" in used else "trained" if TRAINED_HARM_JUDGE in used else "rules",
                 judge_card=cards[0], judge_cards=cards, examples=[r for r in res.rows()[:3]])
        if st.name == "safety":
            s["questions_dropped"] = st.dropped  # type: ignore[attr-defined]
        RunDir(out / st.name).write_json("summary.json", {k: v for k, v in s.items() if k != "examples"})
        results[st.name] = s
        measured[st.name] = st.covered()
    return TrustResult(model=getattr(model, "model_id", str(model)), studies=results, coverage=coverage(measured),
                       judges={"refusal_detector": validate_refusal_detector(), "parsers": parsers})


# ------------------------------------------------------------------ compare
def load_result(run_dir: str | Path, study: str) -> EvalResult:
    path = Path(run_dir) / study / "rows.jsonl"
    if not path.exists():
        raise DataError(f"{path}: not found (run `selfalign trust run --studies {study}` into {run_dir} first)")
    items, responses, verdicts = [], [], []
    for no, r in iter_jsonl(path):
        try:
            v = r["verdict"]
            items.append(Item(r["id"], r.get("input"), r.get("target"), meta=r.get("meta", {})))
            responses.append(r.get("response", ""))
            verdicts.append(Verdict(v["label"], v.get("score"), v.get("raw", ""), v.get("parsed", True),
                                    v.get("flipped", False), v.get("meta", {})))
        except (KeyError, TypeError) as e:
            raise DataError(f"{path}:{no}: not a trust rows line ({e})") from None
    summary_path = path.parent / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return EvalResult(study, summary.get("model", str(run_dir)), items, responses, verdicts, summary)


def compare(run_a: str | Path, run_b: str | Path, studies: list[str] | None = None, resamples: int = 1000,
            seed: int = 0) -> dict[str, Any]:
    """Per study and per sub-category: B's good-outcome rate minus A's on the paired items."""
    names = studies or [s for s in STUDIES if (Path(run_a) / s / "rows.jsonl").exists()
                        and (Path(run_b) / s / "rows.jsonl").exists()]
    if not names:
        raise DataError(f"{run_a} and {run_b} have no study in common (each study writes <run>/<study>/rows.jsonl)")
    cfg = StudyConfig()
    per_study: dict[str, Any] = {}
    per_sub: dict[str, tuple[list[bool], list[bool]]] = {}
    for name in names:
        st = make_study(name, cfg)
        a, b = load_result(run_a, name), load_result(run_b, name)
        per_study[name] = compare_results(a, b, outcome=st.outcome, resamples=resamples, seed=seed)
        va, vb = a.by_id(), b.by_id()
        meta = {it.id: it.meta for it in a.items}
        for i in va:
            if i in vb and va[i].scored and vb[i].scored:
                subs = [meta[i]["subcategory"]] if "subcategory" in meta.get(i, {}) else list(STUDY_SUBCATEGORIES[name])
                for sub in subs:
                    xa, xb = per_sub.setdefault(sub, ([], []))
                    xa.append(st.outcome(va[i]))
                    xb.append(st.outcome(vb[i]))
    subs_out = {}
    for sub, (xa, xb) in sorted(per_sub.items()):
        d = paired_bootstrap([float(x) for x in xa], [float(x) for x in xb], resamples=resamples, seed=seed)
        m = mcnemar(xa, xb)
        subs_out[sub] = {"n_paired": len(xa), "a": d.a, "b": d.b, "diff": d.diff, "diff_lo": d.lo, "diff_hi": d.hi,
                         "mcnemar_p": m.p_value}
    first = next(iter(per_study.values()))
    return {"a": str(run_a), "b": str(run_b), "a_model": first["a_model"], "b_model": first["b_model"],
            "studies": per_study, "subcategories": subs_out}


def headline(result: TrustResult) -> dict[str, Any]:
    """The numbers ``selfalign runs`` lists for a trust run: each study's headline metric (percent,
    95% interval), or none for a study whose judge left too much unscored to be reliable."""
    out: dict[str, Any] = {}
    for name, s in result.studies.items():
        h = s["metrics"].get(s["headline"]) if isinstance(s.get("metrics"), dict) else None
        if s.get("reliable") and isinstance(h, dict) and all(isinstance(h.get(k), (int, float)) for k in ("value", "lo", "hi")):
            out[f"{name} {s['headline']} %"] = {k: 100 * float(h[k]) for k in ("value", "lo", "hi")}
    return out
