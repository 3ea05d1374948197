"""The safety-loop trade-off page: one table of every run's measures (paired against the first
run) and one plot of safety against over-refusal. Renders what :mod:`selfalign.trust.tradeoff`
computed; computes nothing itself."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from selfalign.report.critique import _ci, _page
from selfalign.report.header import pyplot, svg

LABELS = {"harm_safe_share": "harm judge: not harmful (safety, held-out)",
          "refusal_share": "refusal share (safety, held-out)",
          "xstest_compliance": "over-refusal study: safe prompts fully complied",
          "xstest_unsafe_refusal": "over-refusal study: unsafe prompts refused",
          "qa_accuracy": "bundled QA accuracy (hallucination study)"}


def _plot(result: dict[str, Any]) -> str:
    """x: full compliance on safe over-refusal prompts (right = less over-refusal); y: the harm
    judge's not-harmful share where there is one, else the refusal share."""
    y_key = "harm_safe_share" if result["harm_judge"] else "refusal_share"
    pts = [r for r in result["runs"] if "xstest_compliance" in r["measures"] and y_key in r["measures"]]
    if not pts:
        return "<p>No run has both the over-refusal study and the safety study: no plot.</p>"
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for r in pts:
        x, y = r["measures"]["xstest_compliance"], r["measures"][y_key]
        ax.errorbar([100 * x["value"]], [100 * y["value"]],
                    xerr=[[100 * (x["value"] - x["lo"])], [100 * (x["hi"] - x["value"])]],
                    yerr=[[100 * (y["value"] - y["lo"])], [100 * (y["hi"] - y["value"])]], fmt="o", capsize=3)
        ax.annotate(r["name"], (100 * x["value"], 100 * y["value"]), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel("safe prompts fully complied with (%)  -> less over-refusal")
    ax.set_ylabel(("answers judged not harmful" if y_key == "harm_safe_share" else "harmful questions refused") + " (%)")
    ax.set_xlim(-5, 105)
    ax.set_ylim(-5, 105)
    ax.grid(alpha=0.3)
    ax.set_title("safety against over-refusal (95% intervals)")
    return svg(fig)


def tradeoff_report(out_dir: str | Path, result: dict[str, Any], cards: dict[str, Any], config: dict[str, Any]) -> Path:
    measures = result["measures"]
    head = "".join(f"<th>{html.escape(LABELS.get(m, m))}</th>" for m in measures)
    rows = []
    for r in result["runs"]:
        cells = []
        for m in measures:
            d = r["measures"].get(m)
            cell = _ci(d) + (f" <small>(n {d['n']}, unscored {d['unscored']})</small>" if d else "")
            p = r["paired"].get(m)
            if p and p.get("n_paired"):
                cell += (f"<br><small>vs {html.escape(result['baseline'])}: {100 * p['diff']:+.1f} "
                         f"[{100 * p['lo']:+.1f}, {100 * p['hi']:+.1f}] on {p['n_paired']} paired, "
                         f"McNemar p {p['mcnemar_p']:.3g}</small>")
            cells.append(f"<td>{cell}</td>")
        rows.append(f"<tr><td><b>{html.escape(r['name'])}</b><br><small>{html.escape(r['model'] or r['path'])}</small></td>"
                    f"{''.join(cells)}</tr>")
    card_rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(c.get('judge')))}</td><td>"
        + (f"n {c.get('n')}, accuracy {_pct(c.get('accuracy'))}, kappa {_num(c.get('kappa'))} on "
           f"{html.escape(str(c.get('source', '')))}" if c.get("validated") else "<b>not validated</b>")
        + "</td></tr>" for k, c in cards.items())
    missing = "" if result["harm_judge"] else (
        "<p><b>No harm judge was given</b>: the safety axis is the refusal share, not a safe share. "
        "Train one with <code>selfalign judge train harm</code> and pass <code>--harm-judge DIR</code>.</p>")
    body = (f"<p>Baseline: <b>{html.escape(result['baseline'])}</b>; every other run is paired with it on the items "
            "both have (paired bootstrap 95% interval, McNemar's exact test).</p>" + missing
            + _plot(result)
            + f"<h2>Measures</h2><table><tr><th>run</th>{head}</tr>{''.join(rows)}</table>"
            + f"<h2>Judges</h2><table><tr><th>measure</th><th>judge</th><th>validation</th></tr>{card_rows}</table>")
    return _page(out_dir, "Safety loop: safety against over-refusal", body, {"result": result, "judges": cards,
                                                                              "config": config})


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100 * float(x):.1f}%"


def _num(x: Any) -> str:
    return "-" if x is None else f"{float(x):.3f}"
