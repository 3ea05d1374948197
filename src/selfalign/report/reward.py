"""Report of the preference-model stage: accuracy against its baselines, calibration
(reliability diagram before and after temperature scaling), the training loss. Renders only."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from selfalign.report.critique import _ci, _page
from selfalign.report.header import pyplot, svg


def reliability_diagram(cals: dict[str, dict[str, Any]]) -> str:
    """Reliability diagram of one or more PMs (``{name: summary["calibration"]}``): the predicted
    P(first response is chosen) per bin against how often it was, before (raw) and after
    temperature scaling, with each curve's temperature and ECE in the legend."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4))
    ax.plot([0, 1], [0, 1], color="#999999", linestyle=":")
    colours = ("#dd8452", "#4c72b0", "#55a868", "#c44e52", "#8172b3", "#937860")
    i = 0
    for name, cal in cals.items():
        for key, style in (("raw", "--"), ("scaled", "-")):
            bins = [b for b in cal[key]["bins"] if b["count"] and not math.isnan(b["confidence"])]
            ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o", linestyle=style,
                    color=colours[i % len(colours)],
                    label=f"{name} {key} (T={cal[key]['temperature']:.2f}, ECE {cal[key]['ece']:.3f})")
            i += 1
    ax.set_xlabel("predicted P(first response is chosen)")
    ax.set_ylabel("observed frequency")
    ax.legend(fontsize=7)
    return svg(fig)


def pm_report(out_dir: str | Path, summary: dict[str, Any], config: dict[str, Any]) -> Path:
    s = summary
    rows = [("preference model", s["accuracy"]), ("shorter response wins", s["length_baseline"])]
    if s.get("untrained_head"):
        rows.append(("untrained score head", s["untrained_head"]))
    rows += [(f"preference model, {lab or 'unlabelled'} pairs (n={a['n']})", a)
             for lab, a in (s.get("by_label") or {}).items()]
    trs = "".join(f"<tr><td class=l>{html.escape(n)}</td><td>{_ci(a)}</td></tr>" for n, a in rows)
    diffs = f"<p>PM - length (paired): {_ci(s['vs_length'])} points"
    if s.get("vs_untrained"):
        diffs += f"; PM - untrained head: {_ci(s['vs_untrained'])} points"
    diffs += "</p>"
    cal = s["calibration"]
    imgs = reliability_diagram({"PM": cal})
    made = ", ".join(f"{k}: {v}" for k, v in s.get("made", {}).items())
    if cal.get("temperature_given"):
        fitted = f"temperature {cal['scaled']['temperature']:.2f} fitted earlier, ECE on all {cal['test_pairs']} pairs"
    elif cal.get("in_sample"):
        fitted = f"temperature fitted on these {cal['test_pairs']} pairs, ECE on the same pairs (in-sample)"
    else:
        fitted = f"temperature fitted on {cal['calibration_pairs']} pairs, ECE on the other {cal['test_pairs']}"
    body = (f"<p class=sub>{s['train_pairs']} training pairs, {s['test_pairs']} held-out pairs ({html.escape(made)}); "
            f"{s['truncated']} texts shortened to fit; training accuracy {_ci(s['train_accuracy'])}; mean reward gap "
            f"{s['mean_gap']:.3f} = {s['mean_gap_elo']:.0f} Elo</p>"
            f"<table><tr><th class=l>held-out pairwise accuracy</th><th>% [95% CI]</th></tr>{trs}</table>{diffs}"
            f"<h2>Calibration</h2><p>{fitted}: {cal['raw']['ece']:.3f} before, {cal['scaled']['ece']:.3f} "
            f"after.</p>{imgs}")
    return _page(out_dir, "Preference model", body, {"summary": summary, "config": config})


def split_half_report(out_dir: str | Path, summary: dict[str, Any], config: dict[str, Any]) -> Path:
    s = summary
    def by_label(p: dict[str, Any]) -> str:
        return "; ".join(f"{html.escape(lab)} {_ci(a)} (n={a['n']})" for lab, a in (p.get("by_label") or {}).items())

    def ece(p: dict[str, Any]) -> str:
        c = p.get("calibration")
        return f"{c['raw']['ece']:.3f} &rarr; {c['scaled']['ece']:.3f} (T={c['scaled']['temperature']:.2f})" if c else "-"

    cals = {f"PM_{n.upper()}": p["calibration"] for n, p in s["pms"].items() if p.get("calibration")}
    trs = "".join(f"<tr><td class=l>PM_{n.upper()}</td><td>{p['train_pairs']}</td><td>{_ci(p['accuracy'])}</td>"
                  f"<td>{_ci(p['length_baseline'])}</td><td>{ece(p)}</td><td class=l>{by_label(p)}</td></tr>"
                  for n, p in s["pms"].items())
    rho = s["spearman_gaps"]
    body = (f"<p class=sub>HH (Bai et al. 2022) §4.2: two PMs on disjoint halves of the training pairs (by prompt; "
            f"{s['prompts_shared_between_halves']} prompts shared), both scored on the same {s['test_pairs']} held-out "
            f"pairs.</p><table><tr><th class=l>PM</th><th>training pairs</th><th>held-out accuracy %</th>"
            f"<th>shorter wins %</th><th>ECE raw &rarr; temperature-scaled</th><th class=l>by pair kind</th></tr>"
            f"{trs}</table>"
            f"<p>Agreement (same preferred response): {_ci(s['agreement'])}%; Spearman rank correlation of the reward "
            f"gaps: {'-' if math.isnan(rho) else f'{rho:.3f}'}.</p>"
            f"<p>Optimise against PM_A and score with PM_B: <code>selfalign rlhf frontier --pm "
            f"{html.escape(s['pms']['a']['pm_dir'])} --test-pm {html.escape(s['pms']['b']['pm_dir'])}</code></p>"
            + (f"<h2>Calibration</h2><p>Each PM on the held-out pairs, before and after temperature scaling."
               f"</p>{reliability_diagram(cals)}" if cals else ""))
    return _page(out_dir, "Split-half preference models", body, {"summary": s, "config": config})


def curve_report(out_dir: str | Path, summary: dict[str, Any], config: dict[str, Any]) -> Path:
    """PM accuracy against the comparisons it trained on (HH Figure 7's axes), with the floor."""
    s, pts = summary, summary["points"]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    xs = [p["train_pairs"] for p in pts]
    ax.errorbar(xs, [100 * p["accuracy"]["value"] for p in pts],
                yerr=[[100 * (p["accuracy"]["value"] - p["accuracy"]["lo"]) for p in pts],
                      [100 * (p["accuracy"]["hi"] - p["accuracy"]["value"]) for p in pts]],
                marker="o", capsize=3, color="#1f4e9c", label="trained PM")
    ax.axhline(100 * s["untrained_head"]["value"], color="#999", linestyle="--", label="untrained head")
    ax.axhline(100 * s["length_baseline"]["value"], color="#dd8452", linestyle=":", label="shorter wins")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training comparisons")
    ax.set_ylabel("held-out accuracy %")
    ax.legend(fontsize=8)
    trs = "".join(f"<tr><td>{100 * p['fraction']:g}%</td><td>{p['train_prompts']}</td><td>{p['train_pairs']}</td>"
                  f"<td>{_ci(p['accuracy'])}</td><td>{p['ece']:.3f}</td><td>{p['seconds']:.0f}</td></tr>" for p in pts)
    d = s.get("largest_vs_smallest")
    diff = (f"<p>Largest minus smallest training set, paired over the held-out pairs: {100 * d['value']:+.1f} points "
            f"[{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}].</p>" if d else "")
    body = (f"<p class=sub>HH (Bai et al. 2022) §3.3: held-out accuracy against the number of training comparisons. "
            f"Nested shares of {s['train_prompts']} training prompts ({s['train_pairs']} pairs), every PM scored on the "
            f"same {s['test_pairs']} held-out pairs. Untrained head {_ci(s['untrained_head'])}%, shorter wins "
            f"{_ci(s['length_baseline'])}%.</p>{svg(fig)}"
            "<table><tr><th>share</th><th>prompts</th><th>pairs</th><th>held-out accuracy % [95%]</th>"
            f"<th>ECE (raw)</th><th>training s</th></tr>{trs}</table>{diff}")
    return _page(out_dir, "Preference-model learning curve", body, {"summary": s, "config": config})
