"""Reports of the trustworthiness studies: the 7 x 29 coverage grid, each study with its interval,
unscored share and examples, a card for every judge that labelled a study's answers (what it was
validated on, or that it was not), the XSTest per-type table, the judges' validation, and two
runs compared. Renders only: every number comes from the run's result."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from selfalign.report.critique import _err, _page
from selfalign.report.header import pyplot, svg

_PCT = {"ece", "overconfidence", "mean_confidence", "accuracy", "refusal_share", "harm_safe_share", "refusal_ratio",
        "verbatim_leak_rate", "both_correct", "consistency", "q1_accuracy", "q2_accuracy", "accuracy_clean",
        "accuracy_typo", "unsafe_any_refusal",
        *(f"{lab}_{c}" for lab in ("safe", "unsafe") for c in ("full_compliance", "full_refusal", "partial_refusal"))}
#: numbers a study adds over every item (unscored included), shown beside its metrics
_EXTRA = ("understood_rate", "q1_understood_rate", "q2_understood_rate", "q1_accuracy_all", "q2_accuracy_all",
          "consistency_all_pairs")


def _pct(x: Any) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _card(c: dict[str, Any]) -> str:
    """One judge card as table cells: judge, validated on, n, accuracy, kappa, per-class recall, unscored here."""
    run = _pct(c.get("run_unscored_share"))
    if not c.get("validated"):
        return (f"<td class=l>{html.escape(str(c['judge']))}</td><td class=l><b>not validated</b>"
                f"{'<br><small>' + html.escape(str(c['note'])) + '</small>' if c.get('note') else ''}</td>"
                f"<td>-</td><td>-</td><td>-</td><td class=l>-</td><td>{run}</td>")
    recall = ", ".join(f"{k} {_pct(v)}" for k, v in (c.get("per_class_recall") or {}).items()) or "-"
    kappa = c.get("kappa")
    return (f"<td class=l>{html.escape(str(c['judge']))}</td><td class=l>{html.escape(str(c.get('source', '')))}</td>"
            f"<td>{c.get('n', '-')}</td><td>{_pct(c.get('accuracy'))}</td>"
            f"<td>{'-' if kappa is None else f'{kappa:.3f}'}</td><td class=l>{html.escape(recall)}</td><td>{run}</td>")


def _per_type(per: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td class=l>{html.escape(t)}</td><td class=l>{d['label']}</td><td>{d['n']}</td><td>{d['scored']}</td>"
        f"<td>{_pct(d['full_compliance'])}</td><td>{_pct(d['full_refusal'])}</td><td>{_pct(d['partial_refusal'])}</td>"
        f"</tr>" for t, d in per.items())
    return ("<h2>Over-refusal (XSTest) per prompt type</h2><p class=sub>Shares of the scored answers, %. On safe "
            "prompts full compliance is good; on unsafe (contrast) prompts any refusal is good.</p>"
            "<table><tr><th class=l>type</th><th class=l>label</th><th>prompts</th><th>scored</th>"
            "<th>full compliance</th><th>full refusal</th><th>partial refusal</th></tr>" + rows + "</table>")


def _fmt(name: str, m: dict[str, Any]) -> str:
    v, lo, hi = m["value"], m["lo"], m["hi"]
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    k = 100 if name in _PCT else 1
    return f"{k * v:.1f} [{k * lo:.1f}, {k * hi:.1f}]"


def _grid(cov: list[dict[str, Any]]) -> str:
    """The taxonomy grid from the run's coverage rows (one per sub-category, in the taxonomy's
    order, each naming its category): the report renders them and imports no taxonomy."""
    by_cat: dict[str, list[dict[str, Any]]] = {}
    for r in cov:
        by_cat.setdefault(r["category"], []).append(r)
    rows = ""
    for cat, subs in by_cat.items():
        cells = "".join(
            f"<td class=l style='background:{'#cfe8cf' if r['studies'] else '#f3f3f3'}'>"
            f"{html.escape(r['subcategory'].replace('_', ' '))}"
            f"<br><small>{html.escape(', '.join(r['studies']) or 'not measured')}</small></td>" for r in subs)
        rows += f"<tr><th class=l>{html.escape(cat.replace('_', ' '))}</th>{cells}</tr>"
    n = sum(1 for r in cov if r["studies"])
    return (f"<h2>Coverage: {n} of {len(cov)} sub-categories measured</h2>"
            f"<table>{rows}</table>")


def trust_report(out_dir: str | Path, result: dict[str, Any], config: dict[str, Any]) -> Path:
    studies = result["studies"]
    trs, ex = "", ""
    for name, s in studies.items():
        head = s["headline"]
        j = s["judge"]
        value = (_fmt(head, s["metrics"][head]) if s["reliable"] else
                 f"<b>unreliable</b> ({100 * j['unscored_share']:.0f}% unscored)")
        others = "; ".join([f"{k} {_fmt(k, m)}" for k, m in s["metrics"].items() if k != head] +
                           [f"{k} {_pct(s[k])} (all items)" for k in _EXTRA if k in s])
        arrow = "higher is better" if s["higher_is_better"] else "lower is better"
        trs += (f"<tr><td class=l>{name}</td><td class=l>{head} ({arrow})</td><td>{value}</td><td>{j['n']}</td>"
                f"<td>{j['unscored']} ({100 * j['unscored_share']:.0f}%)</td><td class=l>{s['judge_kind']}</td>"
                f"<td class=l>{html.escape(others)}</td></tr>")
        ex += f"<h3>{name}</h3><ul>" + "".join(
            f"<li><code>{html.escape(str(r['input'])[:200])}</code> &rarr; <i>{html.escape(r['response'][:200])}</i> "
            f"[{html.escape(str(r['verdict']['label']))}]</li>" for r in s["examples"]) + "</ul>"
    plt = pyplot()
    names = [n for n, s in studies.items() if s["reliable"]]
    img = ""
    if names:
        fig, ax = plt.subplots(figsize=(6, 0.45 * len(names) + 1))
        vals = [studies[n]["metrics"][studies[n]["headline"]] for n in names]
        ax.barh([f"{n}: {studies[n]['headline']}" for n in names], [100 * v["value"] for v in vals],
                xerr=_err(vals, 100),
                color="#4c72b0", capsize=3)
        ax.set_xlim(0, 100)
        ax.set_xlabel("% (95% bootstrap interval)")
        img = svg(fig)
    judges = ""
    for split, d in result["judges"]["refusal_detector"].items():
        judges += (f"<tr><td class=l>refusal detector</td><td class=l>{split}</td><td>{d['n']} ({d['positives']} "
                   f"refusals)</td><td>{100 * d['accuracy']:.1f}</td><td>{d['kappa']:.3f}</td></tr>")
    cards = "".join(f"<tr><td class=l>{name}</td>{_card(c)}</tr>" for name, st in studies.items()
                    for c in st.get("judge_cards") or ([st["judge_card"]] if "judge_card" in st else []))
    per_type = "".join(_per_type(st["per_type"]) for st in studies.values() if st.get("per_type"))
    for kind, d in result["judges"].get("parsers", {}).items():
        judges += (f"<tr><td class=l>parser: {kind}</td><td class=l>specification set</td><td>{d['n']} "
                   f"({d['positives']} parseable)</td><td>{100 * d['accuracy']:.1f}</td><td>{d['kappa']:.3f}</td></tr>")
    body = (f"<p class=sub>model: {html.escape(result['model'])}. Liu et al. 2023, arXiv 2308.05374. No overall "
            f"score: each study is its own measurement.</p>"
            f"<h2>Studies</h2><table><tr><th class=l>study</th><th class=l>headline</th><th>value, 95% CI</th>"
            f"<th>items</th><th>unscored</th><th class=l>judge</th><th class=l>other metrics</th></tr>{trs}</table>"
            f"{img}<h2>Judge cards</h2><p class=sub>Which judge labelled each study's answers, what it was "
            f"validated on (n, source, accuracy %, Cohen's kappa, per-class recall %) and the share of this run's "
            f"answers it left unscored.</p><table><tr><th class=l>study</th><th class=l>judge</th>"
            f"<th class=l>validated on</th><th>n</th><th>accuracy %</th><th>kappa</th><th class=l>per-class recall</th>"
            f"<th>unscored here %</th></tr>{cards}</table>{per_type}{_grid(result['coverage'])}"
            f"<h2>Judges, validated on labelled sets the project wrote</h2><table><tr><th class=l>judge</th>"
            f"<th class=l>set</th><th>items</th><th>accuracy %</th><th>Cohen's kappa</th></tr>{judges}</table>"
            f"<h2>Examples</h2>{ex}")
    return _page(out_dir, "Trustworthiness studies", body, {"result": result, "config": config})


def compare_report(out_dir: str | Path, comp: dict[str, Any]) -> Path:
    def row(name: str, d: dict[str, Any], p: float) -> str:
        return (f"<tr><td class=l>{html.escape(name)}</td><td>{d['n_paired']}</td><td>{100 * d['a']:.1f}</td>"
                f"<td>{100 * d['b']:.1f}</td><td>{100 * d['diff']:+.1f} [{100 * d['diff_lo']:+.1f}, "
                f"{100 * d['diff_hi']:+.1f}]</td><td>{p:.3g}</td></tr>")

    head = ("<tr><th class=l>{}</th><th>paired items</th><th>A good %</th><th>B good %</th>"
            "<th>B - A (paired 95% CI)</th><th>McNemar p</th></tr>")
    studies = "".join(row(n, d, d["mcnemar"]["p_value"]) for n, d in comp["studies"].items())
    subs = "".join(row(n, d, d["mcnemar_p"]) for n, d in comp["subcategories"].items())
    plt = pyplot()
    names = list(comp["studies"])
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(names) + 1))
    ds = [comp["studies"][n] for n in names]
    ax.barh(names, [100 * d["diff"] for d in ds],
            xerr=_err(ds, 100, ("diff", "diff_lo", "diff_hi")),
            color="#dd8452", capsize=3)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("B - A, good-outcome rate, points")
    body = (f"<p class=sub>A = {html.escape(comp['a_model'])} ({html.escape(comp['a'])}); B = "
            f"{html.escape(comp['b_model'])} ({html.escape(comp['b'])}). Good outcome: correct (hallucination, "
            f"miscalibration, causal, typo), refused or judged not harmful (safety), refused (fairness, misuse), "
            f"not leaked (copyright), full compliance on a safe prompt and any refusal on an unsafe one (xstest). "
            f"The over_refusal row (XSTest's safe prompts) is outside Liu et al.'s 29 sub-categories.</p>"
            f"<h2>Per study</h2><table>{head.format('study')}{studies}</table>{svg(fig)}"
            f"<h2>Per sub-category</h2><table>{head.format('sub-category')}{subs}</table>")
    return _page(out_dir, "Trustworthiness: two models compared", body, {"compare": comp})
