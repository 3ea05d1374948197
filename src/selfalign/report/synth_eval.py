"""The ``synth eval`` report: each comparison's pairwise win rate with its interval (a plot and a
table), instruction following beside it where the held-out items have constraints, the models and
the rows they trained on, what was dropped, the judge's unscored and flipped counts, and example
verdicts. It renders :class:`selfalign.synth.evaluate.SynthEvalResult`; it computes nothing."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from selfalign.report.header import pyplot, svg, with_header, with_provenance
from selfalign.report.honesty import CSS

DEVIATIONS = [
    "The papers judge with people or GPT-4 on their own test sets; here the held-out set is the run's "
    "(default: the project's 40 bundled instruction-following prompts) and the judge is the run's --judge.",
    "Rows repeating a held-out instruction exactly (case and spacing aside) were dropped; near-duplicates were not searched for.",
    "IFD top and random shares are trained alone, without the seed rows, as the IFD paper trains on its selection.",
    "LLM2LLM's test-split evaluation is not part of this command.",
]


def _plot(comparisons: list[dict[str, Any]]) -> str:
    scored = [c for c in comparisons if c.get("win_rate")]
    if not scored:
        return ""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 0.6 + 0.5 * len(scored)))
    ys = list(range(len(scored)))
    vals = [c["win_rate"]["value"] for c in scored]
    err = [[v - c["win_rate"]["lo"] for v, c in zip(vals, scored)], [c["win_rate"]["hi"] - v for v, c in zip(vals, scored)]]
    ax.errorbar(vals, ys, xerr=err, fmt="o", capsize=3, color="#1f4e9c")
    ax.axvline(0.5, color="#999", linestyle="--", linewidth=1)
    ax.set_yticks(ys)
    ax.set_yticklabels([f"{c['name']} vs {c['baseline']}" for c in scored])
    ax.set_xlim(0, 1)
    ax.set_xlabel("win rate (tie = 0.5), 95% bootstrap interval")
    return svg(fig)


def _pct(k: int, n: int, iv: Any) -> str:
    return f"{100 * k / n:.1f}% [{100 * iv[0]:.1f}, {100 * iv[1]:.1f}]" if n else "-"


def write_report(out_dir: str | Path, res: Any, config: dict[str, Any]) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    trs = []
    for c in res.comparisons:
        wr = c.get("win_rate")
        trs.append(f"<tr><td class=l>{html.escape(c['name'])} vs {html.escape(c['baseline'])}</td><td>{c['n']}</td>"
                   f"<td>{c['wins']}</td><td>{c['ties']}</td><td>{c['losses']}</td><td>{c['unscored']}</td>"
                   f"<td>{c['flipped']}</td><td>" + (f"{wr['value']:.2f} [{wr['lo']:.2f}, {wr['hi']:.2f}]" if wr else "-")
                   + "</td></tr>")
    ift = []
    for c in res.comparisons:
        f = c.get("instruction_following")
        if f:
            a, b = f[c["name"]], f[c["baseline"]]
            ift.append(f"<tr><td class=l>{html.escape(c['name'])} vs {html.escape(c['baseline'])}</td>"
                       f"<td>{_pct(a['k'], a['n'], a['interval'])}</td><td>{_pct(b['k'], b['n'], b['interval'])}</td>"
                       f"<td>{f['mcnemar_p']:.3f}</td></tr>")
    if_html = ("<h2>Instruction following (strict, every constraint met; no judge)</h2><table><tr><th class=l>comparison"
               "</th><th>model</th><th>baseline</th><th>McNemar p</th></tr>" + "".join(ift) + "</table>") if ift else ""
    models = "".join(f"<tr><td class=l>{html.escape(n)}</td><td>{m['rows']}</td><td class=l><code>{html.escape(m['model'])}"
                     "</code></td></tr>" for n, m in res.models.items())
    dropped = ", ".join(f"{html.escape(k)} {v}" for k, v in res.dropped.items())
    ifd = (f"<p>IFD pool: {json.dumps(res.ifd_counts)}</p>" if res.ifd_counts else "")
    ex = "".join(f"<li><b>{html.escape(r['comparison'])}</b>: {html.escape(r['instruction'][:200])}<br>"
                 f"A: <code>{html.escape(r['a'][:200])}</code><br>B: <code>{html.escape(r['b'][:200])}</code><br>"
                 f"verdict {html.escape(str(r['verdict']))}{' (flipped)' if r['flipped'] else ''}</li>" for r in res.rows[:12])
    devs = "".join(f"<li>{html.escape(d)}</li>" for d in DEVIATIONS)
    page = f"""<!doctype html><html><head><meta charset=utf-8><title>synth eval</title><style>{CSS}</style></head><body>
<h1>Synthetic data, judged by what training on it does</h1>
<p class=sub>judge: <code>{html.escape(res.judge)}</code>; win: the judge prefers the first model's answer in both
orders; tie: the two orders disagree (flipped); unscored: a reply that did not parse, never a loss</p>
{_plot(res.comparisons)}
<table><tr><th class=l>comparison</th><th>instructions</th><th>wins</th><th>ties</th><th>losses</th><th>unscored</th>
<th>flipped</th><th>win rate [95%]</th></tr>{''.join(trs)}</table>
{if_html}
<h2>Models</h2><table><tr><th class=l>model</th><th>training rows</th><th class=l>folder</th></tr>{models}</table>
<p>Rows dropped for repeating a held-out instruction: {dropped or 'none'}</p>{ifd}
<h2>Deviations from the papers</h2><ul>{devs}</ul>
<h2>Examples</h2><ul>{ex}</ul></body></html>"""
    path = out / "report.html"
    path.write_text(with_header(page, out), encoding="utf-8")
    data = {"comparisons": res.comparisons, "models": res.models, "dropped": res.dropped, "ifd": res.ifd_counts,
            "judge": res.judge, "deviations": DEVIATIONS, "config": config}
    (out / "report.json").write_text(json.dumps(with_provenance(data, out), indent=2, default=str))
    return path
