"""The recipe report: ``report.html`` and ``report.json`` beside it. Renders what
:mod:`selfalign.recipe.runner` computed (it computes nothing itself):

* the stage x measure matrix: each measure's value after every stage, its paired difference
  against the stage before and against the base model (95% bootstrap interval, McNemar p);
* a plot of every measure across the stages (value and its 95% interval), one panel per measure;
* the honesty scores of every stage against the base model (with intervals);
* each stage's cost (wall time, evaluation time, training steps, precision, whether it was reused);
* the data lineage: rows each stage made, from which model, into which model.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from selfalign.report.critique import _page
from selfalign.report.header import pyplot, svg


def _num(v: Any, fmt: str = "{:.1f}") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return fmt.format(v)


def _diff(d: dict[str, Any] | None, better: bool | None, fmt: str = "{:+.1f}") -> str:
    if not d:
        return ""
    sig = not (d["lo"] <= 0 <= d["hi"])
    cls = ""
    if sig and better is not None:
        cls = " class=good" if (d["diff"] > 0) == better else " class=bad"
    p = d.get("mcnemar_p")
    test = "" if p is None or (isinstance(p, float) and math.isnan(p)) else f"<br><small>p={_num(p, '{:.3f}')}</small>"
    return f"<span{cls}>{fmt.format(d['diff'])} [{fmt.format(d['lo'])}, {fmt.format(d['hi'])}]</span>{test}"


def _unit(data: dict[str, Any], m: str) -> str:
    return (data.get("units") or {}).get(m, "%")


def _unscored(entry: dict[str, Any]) -> str:
    k = entry.get("unscored") or 0
    return f"<br><small>{k} unscored</small>" if k else ""


def _fmt(data: dict[str, Any], m: str) -> str:
    return "{:.1f}" if _unit(data, m) == "%" else "{:.3f}"


def _matrix(data: dict[str, Any]) -> str:
    head = "".join(f"<th>{html.escape(m)}<br><small>{html.escape(data['measure_sets'][m])}, "
                   f"n={data['eval_sizes'].get(data['measure_sets'][m], '?')}, {html.escape(_unit(data, m))}</small></th>"
                   for m in data["measures"])
    out = [f"<table><tr><th>stage</th><th></th>{head}</tr>"]
    for st, row in zip(data["stages"], data["matrix"]):
        name = html.escape(st["step"])
        cells = "".join(f"<td>{_num(row['measures'][m]['value'], _fmt(data, m))}{_unscored(row['measures'][m])}</td>"
                        for m in data["measures"])
        out.append(f"<tr><th class=l rowspan={1 if st['stage'] == 'base' else 3}>{name}</th><td>value</td>{cells}</tr>")
        if st["stage"] != "base":
            for key, label in (("vs_prev", "Δ vs previous"), ("vs_base", "Δ vs base")):
                cells = "".join("<td>" + _diff(row["measures"][m].get(key), data["higher_is_better"].get(m),
                                               _fmt(data, m).replace("{:", "{:+")) + "</td>"
                                for m in data["measures"])
                out.append(f"<tr><td>{label}</td>{cells}</tr>")
    return "".join(out) + "</table>"


def _plot(data: dict[str, Any]) -> str:
    """One panel per measure: its value after each stage with the 95% interval of the value."""
    measures = data["measures"]
    if not measures or not data["matrix"]:
        return ""
    plt = pyplot()
    cols = 3
    rows = math.ceil(len(measures) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.6 * rows), squeeze=False)
    steps = [st["step"] for st in data["stages"]]
    xs = list(range(len(steps)))
    for ax, m in zip(axes.flat, measures):
        vals = [row["measures"][m] for row in data["matrix"]]
        ys = [v["value"] for v in vals]
        lo = [v["value"] - v.get("lo", v["value"]) for v in vals]
        hi = [v.get("hi", v["value"]) - v["value"] for v in vals]
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", markersize=4, capsize=3, color="#1f4e9c")
        better = data["higher_is_better"].get(m)
        ax.set_title(m + ("" if better is None else " (higher is better)" if better else " (lower is better)"),
                     fontsize=9)
        ax.set_xticks(xs)
        ax.set_xticklabels(steps, rotation=30, ha="right", fontsize=7)
        if _unit(data, m) == "%":
            ax.set_ylim(-5, 105)
        ax.set_ylabel(_unit(data, m), fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(measures):]:
        ax.axis("off")
    return svg(fig)


def _honesty(data: dict[str, Any]) -> str:
    keys = ("honesty", "prudence", "over_conservativeness", "accuracy")
    out = ["<table><tr><th>stage</th>" + "".join(f"<th>{k}</th>" for k in keys) + "</tr>"]
    for st, row in zip(data["stages"], data["matrix"]):
        h = row["honesty_vs_base"]
        out.append(f"<tr><th class=l>{html.escape(st['step'])}</th>" + "".join(
            f"<td>{_num(h[k]['value'])} [{_num(h[k]['lo'])}, {_num(h[k]['hi'])}]</td>" for k in keys) + "</tr>")
    return "".join(out) + "</table>"


def _cost(data: dict[str, Any]) -> str:
    def tokens(u: dict[str, Any] | None) -> str:
        u = u or {}
        if u.get("tokens_generated") is None:
            return "n/a"
        return f"{u['tokens_generated']:,} / {u.get('tokens_scored') or 0:,}"

    out = ["<table><tr><th>stage</th><th>wall time (s)</th><th>tokens generated / scored</th><th>evaluation (s)</th>"
           "<th>evaluation tokens</th><th>training steps</th><th>precision</th><th>last loss</th><th>this run</th></tr>"]
    for st in data["stages"]:
        tr = st.get("training") or {}
        out.append(f"<tr><th class=l>{html.escape(st['step'])}</th><td>{_num(st['seconds'], '{:.0f}')}</td>"
                   f"<td>{tokens(st.get('usage'))}</td><td>{_num(st['eval_seconds'], '{:.0f}')}</td>"
                   f"<td>{tokens(st.get('eval_usage'))}</td><td>{tr.get('steps', '')}</td>"
                   f"<td>{html.escape(str(tr.get('precision', '')))}</td><td>{_num(tr.get('last_loss'), '{:.3f}')}</td>"
                   f"<td>{'reused' if st['reused'] else 'ran'}</td></tr>")
    return ("".join(out) + "</table><p><small>Tokens the models computed while the step ran (answers the store already held cost "
            "nothing and are not counted; a preference model's rewards are not counted). A reused step shows what it "
            "took when it ran.</small></p>")


def _lineage(data: dict[str, Any]) -> str:
    out = ["<table><tr><th>stage</th><th>rows made</th><th>details</th><th>model handed on</th></tr>"]
    for st in data["stages"]:
        details = ", ".join(f"{html.escape(k)}: {html.escape(str(v))}" for k, v in (st.get("result") or {}).items()
                            if k not in ("model", "rows", "training"))
        out.append(f"<tr><th class=l>{html.escape(st['step'])}</th><td>{st['rows']}</td><td class=l>{details}</td>"
                   f"<td class=l><small>{html.escape(str(st['model']))}</small></td></tr>")
    return "".join(out) + "</table>"


def _eval_pm(data: dict[str, Any]) -> str:
    pm = data.get("eval_pm")
    if not pm:
        return ""
    acc = pm.get("accuracy")
    how = (f"trained by the recipe on {pm['pairs']} verifiable pairs of the base model's own samples (train-split "
           f"questions); held-out accuracy {_num(acc['value'])}% [{_num(acc['lo'])}, {_num(acc['hi'])}] on "
           f"{pm['heldout_pairs']} pairs of other questions" if pm.get("trained") and acc else "a saved PM")
    return (f"<p>pm_reward and pm_win_vs_base: each stage's greedy answers to the test questions scored by one PM held "
            f"fixed for the whole recipe (<code>{html.escape(str(pm['pm_dir']))}</code>), {how}. The win rate counts a "
            "tie as half; its difference is in percentage points, the reward's in reward units (no McNemar: not "
            "binary).</p>")


def write_report(out_dir: str | Path, data: dict[str, Any]) -> Path:
    """``report.html`` (and ``report.json``: ``data`` as given) in ``out_dir``."""
    style = "<style>.good{color:#060;font-weight:bold}.bad{color:#a00;font-weight:bold}td.l,th.l{text-align:left}</style>"
    body = (f"{style}<p>recipe <code>{html.escape(str(data['recipe']))}</code>, base model "
            f"<code>{html.escape(str(data['base']))}</code>. The same items after every stage, greedy, through the store. "
            "Differences are paired on the items (percentage points, 95% bootstrap interval, McNemar p); "
            "green/red: an interval that excludes 0, in the better/worse direction.</p>"
            f"<h2>Stage x measure</h2><div style='overflow-x:auto'>{_matrix(data)}</div>{_eval_pm(data)}"
            f"<h2>Every measure across the stages</h2><p>Value after each stage with its 95% bootstrap interval "
            f"(items, not pairs; the paired differences are in the table above).</p>{_plot(data)}"
            f"<h2>Honesty against the base model (in distribution)</h2>{_honesty(data)}"
            f"<h2>Cost</h2>{_cost(data)}<h2>Data lineage</h2>{_lineage(data)}")
    return _page(out_dir, "Recipe: every stage on every measure", body, data)
