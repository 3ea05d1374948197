"""Reports of the critique stages: ``report.html`` (tables, plots) and ``report.json``.
Renders what the stage computed; computes nothing itself."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Sequence

from selfalign.report.header import pyplot, svg, with_header, with_provenance
from selfalign.report.honesty import CSS


def _page(out_dir: str | Path, title: str, body: str, data: dict[str, Any]) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>")
    path = out / "report.html"
    path.write_text(with_header(page, out), encoding="utf-8")
    (out / "report.json").write_text(json.dumps(with_provenance({"title": title, **data}, out), indent=2, default=str))
    return path


def _err(cis: Sequence[dict[str, Any]], scale: float = 1.0, keys: tuple[str, str, str] = ("value", "lo", "hi")
         ) -> list[list[float]]:
    """Matplotlib's asymmetric error bars ([below], [above]) of intervals given as dicts with a
    value and its bounds (``keys``), scaled (100 for percentages)."""
    v, lo, hi = keys
    return [[scale * (d[v] - d[lo]) for d in cis], [scale * (d[hi] - d[v]) for d in cis]]


def _ci(d: dict[str, Any] | None, pct: bool = True) -> str:
    if not d:
        return "-"
    k = 100 if pct else 1
    return f"{k * d['value']:.1f} [{k * d['lo']:.1f}, {k * d['hi']:.1f}]"


def tamper_report(out_dir: str | Path, counts: dict[str, Any], rows: Sequence[dict[str, Any]],
                  config: dict[str, Any]) -> Path:
    by = counts["by_kind"]
    trs = "".join(f"<tr><td class=l>{k}</td><td>{v['kept']}</td><td>{v['equivalent']}</td><td>{v['other']}</td></tr>"
                  for k, v in by.items())
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3))
    kinds = list(by)
    ax.barh(kinds, [by[k]["kept"] for k in kinds], color="#4c72b0", label="kept (fails a test)")
    ax.barh(kinds, [by[k]["equivalent"] for k in kinds], left=[by[k]["kept"] for k in kinds], color="#dd8452",
            label="equivalent (passes)")
    ax.legend(fontsize=8)
    ax.set_xlabel("mutants tested")
    ex = "".join(f"<li><b>{html.escape(r['task_id'])}</b> {html.escape(r['kind'])}: {html.escape(r['description'])}</li>"
                 for r in list(rows)[:20])
    body = (f"<p class=sub>{counts['kept']} kept bugs over {counts['kinds_kept']} kinds; {counts['equivalent']} "
            f"equivalent mutants (survived every test); {counts['load_errors']} did not load; "
            f"{counts['broken_originals']} originals failed their own tests (skipped); {counts['candidates']} "
            f"candidate sites</p><table><tr><th class=l>kind</th><th>kept</th><th>equivalent</th><th>load error</th></tr>"
            f"{trs}</table>{svg(fig)}<h2>Examples</h2><ul>{ex}</ul>")
    return _page(out_dir, "Tampering: bugs inserted into code with tests", body, {"counts": counts, "config": config})


def critic_report(out_dir: str | Path, summary: dict[str, Any], rows: Sequence[dict[str, Any]],
                  config: dict[str, Any]) -> Path:
    s = summary
    dc = s.get("dc") or {}
    table = (f"<table><tr><th class=l>metric</th><th>value [95% CI]</th></tr>"
             f"<tr><td class=l>critique-bug inclusion (CBI), {s.get('tampered', 0)} tampered</td><td>{_ci(s.get('cbi'))}</td></tr>"
             f"<tr><td class=l>random highlights, same count</td><td>{_ci(s.get('random_cbi'))}</td></tr>"
             f"<tr><td class=l>CBI - random (paired)</td><td>{_ci(s.get('cbi_minus_random'))}</td></tr>"
             f"<tr><td class=l>false alarms, {s.get('clean', 0)} clean</td><td>{_ci(s.get('false_alarm'))}</td></tr>"
             f"<tr><td class=l>spurious highlights / critique</td><td>{_ci(s.get('spurious_per_critique'), False)}</td></tr>"
             f"<tr><td class=l>highlights / critique (tampered)</td><td>{_ci(s.get('highlights_per_critique_tampered'), False)}</td></tr>"
             f"<tr><td class=l>unmatched (misquoted) highlights / critique</td><td>{_ci(s.get('unmatched_per_critique'), False)}</td></tr>"
             "</table>")
    if dc:
        table += (f"<h2>Discrimination vs critique (Saunders et al.)</h2><table><tr><th class=l>discrimination</th>"
                  f"<th>critique</th><th>gap</th><th>yes/no asked</th><th>unscored</th></tr><tr>"
                  f"<td class=l>{100 * dc['discrimination']:.1f}</td><td>{100 * dc['critique']:.1f}</td>"
                  f"<td>{100 * dc['gap']:.1f}</td><td>{dc['asked']}</td><td>{dc['unscored']}</td></tr></table>")
    by = s.get("by_kind", {})
    imgs = ""
    if by:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 3))
        ks = list(by)
        xs = range(len(ks))
        ax.bar([x - 0.2 for x in xs], [100 * by[k]["cbi"] for k in ks], 0.4, label="critic CBI", color="#4c72b0")
        ax.bar([x + 0.2 for x in xs], [100 * by[k]["random_cbi"] for k in ks], 0.4, label="random, same count",
               color="#999999")
        ax.set_xticks(list(xs), ks, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("% of bugs included")
        ax.legend(fontsize=8)
        imgs = svg(fig)
    ex = "".join(f"<li><b>{html.escape(r['item'])}</b> {html.escape(r.get('bug') or 'clean')} "
                 f"(caught: {r['caught']}, false alarm: {r['false_alarm']})<pre>{html.escape(r['critique'][:600])}</pre></li>"
                 for r in list(rows)[:12])
    body = f"<p class=sub>critic {html.escape(str(s.get('critic', '')))}</p>{table}<h2>By bug kind</h2>{imgs}<h2>Examples</h2><ul>{ex}</ul>"
    return _page(out_dir, "Critic evaluation on tampered and clean code", body, {"summary": summary, "config": config})


def bon_report(out_dir: str | Path, summary: dict[str, Any], config: dict[str, Any]) -> Path:
    t = summary["table"]
    def score(r: dict[str, Any]) -> str:
        return "" if r["mean_score"] is None else f"{r['mean_score']:.3f}"

    trs = "".join(f"<tr><td class=l>{r['n']}</td><td>{r['kl']:.3f}</td><td>{100 * r['accuracy']:.1f} "
                  f"[{100 * r['lo']:.1f}, {100 * r['hi']:.1f}]</td><td>{score(r)}</td></tr>" for r in t)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.errorbar([r["kl"] for r in t], [100 * r["accuracy"] for r in t],
                yerr=_err(t, 100, ("accuracy", "lo", "hi")),
                marker="o", capsize=3)
    for r in t:
        ax.annotate(f"N={r['n']}", (r["kl"], 100 * r["accuracy"]), fontsize=7, xytext=(3, -10), textcoords="offset points")
    ax.set_xlabel("KL(best-of-N || policy) = log N - (N-1)/N  [nats]")
    ax.set_ylabel("gold accuracy of the chosen answer (%)")
    body = (f"<p class=sub>scorer {html.escape(summary['scorer'])}, {summary['questions']} questions, "
            f"{summary['candidates']} candidates, {summary['unscored']} unscored, {summary['pairs']} preference pairs</p>"
            f"<table><tr><th class=l>N</th><th>KL (nats)</th><th>accuracy [95% CI]</th><th>mean chosen score</th></tr>"
            f"{trs}</table>{svg(fig)}")
    return _page(out_dir, "Best-of-N", body, {"summary": summary, "config": config})


def refine_report(out_dir: str | Path, summary: dict[str, Any], rows: Sequence[dict[str, Any]],
                  config: dict[str, Any]) -> Path:
    s = summary
    loops = s["loops"]
    trs = "".join(
        f"<tr><td class=l>{html.escape(lp['mode'])}</td><td class=l>{html.escape(lp['gating'])}</td>"
        f"<td>{_ci(lp['accuracy'])}</td><td>{_ci(lp['diff'])}</td><td>{lp['mcnemar_p']:.3g}</td>"
        f"<td>{lp['fixes']}</td><td>{lp['regressions']}</td><td>{100 * lp['idk']:.1f}</td>"
        f"<td>{lp['accepted']}/{lp['refinements']}</td><td>{lp['stopped']}</td><td>{lp['unscored']}</td></tr>"
        for lp in loops)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3))
    for lp in loops:
        ax.plot(range(len(lp["per_round"])), [100 * v for v in lp["per_round"]], marker="o",
                linestyle="-" if lp["gating"] == "gated" else "--", label=f"{lp['mode']}, {lp['gating']}")
    ax.set_xlabel("refinement round (0 = the first answer)")
    ax.set_ylabel("gold accuracy (%)")
    ax.set_xticks(range(s["rounds"] + 1))
    ax.legend(fontsize=7)
    crit = s.get("critiqueability")
    ctext = ""
    if crit:
        ctext = (f"<h2>Critiqueability</h2><p>P(\"Yes\", the answer has a mistake): AUROC {crit['auroc']:.3f} against "
                 f"the first answer being wrong ({crit['scored']} scored, {crit['unscored']} unscored); mean P(yes) "
                 f"{crit['mean_p_yes_wrong']:.3f} on wrong answers, {crit['mean_p_yes_right']:.3f} on right ones.</p>")
    changed = [r for r in rows if r["initial_correct"] != r["correct"]][:12]
    ex = "".join(f"<li><b>{html.escape(r['mode'])}/{html.escape(r['gating'])}</b> {html.escape(r['question'])}<br>"
                 f"first: {html.escape(r['initial'])} ({'right' if r['initial_correct'] else 'wrong'})<br>"
                 f"final: {html.escape(r['final'])} ({'right' if r['correct'] else 'wrong'})</li>" for r in changed)
    body = (f"<p class=sub>policy {html.escape(str(s.get('policy', '')))}, critic {html.escape(str(s.get('critic', '')))}, "
            f"gate: {html.escape(s['scorer'])} scorer, {s['questions']} questions, {s['rounds']} round(s); first answers "
            f"{_ci(s['initial'])}% right, {100 * s['initial_idk']:.1f}% \"I don't know\"; {s['pairs']} preference pairs</p>"
            f"<table><tr><th class=l>refinement</th><th class=l>loop</th><th>accuracy [95% CI]</th>"
            f"<th>vs first answer (paired)</th><th>McNemar p</th><th>fixes</th><th>regressions</th><th>idk %</th>"
            f"<th>accepted</th><th>stopped (no problems)</th><th>unscored</th></tr>{trs}</table>{svg(fig)}{ctext}"
            f"<h2>Answers that changed</h2><ul>{ex}</ul>")
    return _page(out_dir, "Critique -> refine", body, {"summary": summary, "config": config})


def fsbs_report(out_dir: str | Path, summary: dict[str, Any], rows: Sequence[dict[str, Any]],
                config: dict[str, Any]) -> Path:
    s = summary
    sts = s["settings"]

    def mod(st: dict[str, Any]) -> str:
        return "-" if st.get("modifier") is None else f"{st['modifier']:.3g}"

    def length(st: dict[str, Any]) -> str:
        return "-" if st.get("mean_length") is None else f"{st['mean_length']:.0f} (target {st['target_length']:.0f})"

    trs = "".join(f"<tr><td class=l>{html.escape(st['setting'])}</td><td>{mod(st)}</td><td>{length(st)}</td>"
                  f"<td>{_ci(st.get('cbi'))}</td><td>{_ci(st.get('random_cbi'))}</td><td>{_ci(st.get('cbi_minus_random'))}</td>"
                  f"<td>{_ci(st.get('false_alarm'))}</td><td>{_ci(st.get('highlights_per_critique_tampered'), False)}</td></tr>"
                  for st in sts)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for st in sts:
        if st.get("cbi") and st.get("false_alarm"):
            ax.plot(100 * st["false_alarm"]["value"], 100 * st["cbi"]["value"], "o", color="#4c72b0")
            ax.plot(100 * st["false_alarm"]["value"], 100 * st["random_cbi"]["value"], "x", color="#999999")
            ax.annotate(st["setting"], (100 * st["false_alarm"]["value"], 100 * st["cbi"]["value"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("false alarms on clean code (%)")
    ax.set_ylabel("critique-bug inclusion (%)  (x: random)")
    body = (f"<p class=sub>critic {html.escape(str(s.get('critic', '')))}; n={s['n']}, k={s['k']}, d={s['d']}: "
            f"{s['candidates_per_item']} candidates per item, {s['items']} items ({s['candidates']} candidates, "
            f"{s['unscored']} unscored); scorer {html.escape(s['scorer'])}</p>"
            f"<table><tr><th class=l>choice</th><th>LENGTH_MODIFIER</th><th>mean length, chars</th><th>CBI</th>"
            f"<th>random, same count</th><th>CBI - random</th><th>false alarms</th><th>highlights</th></tr>{trs}</table>"
            f"{svg(fig)}")
    return _page(out_dir, "Force Sampling Beam Search (CriticGPT App. 7.1)", body, {"summary": summary, "config": config})
