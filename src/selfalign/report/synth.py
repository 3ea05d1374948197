"""The synthesis report: ``report.html`` (counts kept/filtered by reason, the ROUGE-L histogram
against the pool, length distributions, the most common root verbs, example rows) and
``report.json``.

Root verb: Self-Instruct parses instructions with a constituency parser; we take the first
word of the instruction (lower-cased) when it is a verb-like imperative, else the first word
after a leading question word or "please". That is close for imperative instructions and
costs no parser dependency.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from selfalign.report.header import pyplot, svg, with_header, with_provenance
from selfalign.report.honesty import CSS

QUESTION_WORDS = {"what", "which", "who", "how", "why", "when", "where", "is", "are", "can", "do", "does", "please"}


def root_verb(instruction: str) -> str:
    words = [w.strip(".,:;!?\"'()").lower() for w in instruction.split()]
    words = [w for w in words if w]
    if not words:
        return ""
    if words[0] in QUESTION_WORDS:
        return f"({words[0]} ...)"
    return words[0]


def _charts(similarities: Sequence[float], prompt_lens: Sequence[int], completion_lens: Sequence[int]) -> list[str]:
    plt = pyplot()
    out = []
    if similarities:
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.hist(similarities, bins=[i / 20 for i in range(21)], color="#4c72b0")
        ax.axvline(0.7, color="#c44e52", linestyle="--", label="threshold 0.7")
        ax.set_xlabel("max ROUGE-L against the pool")
        ax.set_ylabel("candidates")
        ax.legend()
        out.append(svg(fig))
    if prompt_lens:
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.hist(prompt_lens, bins=20, alpha=0.7, label="prompt words")
        if any(completion_lens):
            ax.hist(completion_lens, bins=20, alpha=0.7, label="completion words")
        ax.set_xlabel("words")
        ax.legend()
        out.append(svg(fig))
    return out


def _content(msgs: Any) -> str:
    if isinstance(msgs, str):
        return msgs
    return str(msgs[-1]["content"]) if msgs else ""


def summarize(rows: Sequence[dict[str, Any]], stats: dict[str, Any] | None = None,
              similarities: Sequence[float] = ()) -> dict[str, Any]:
    prompts = [_content(r["prompt"]) for r in rows]
    completions = [_content(r["completion"]) for r in rows]
    verbs = Counter(root_verb(p) for p in prompts if p)
    return {
        "rows": len(rows),
        "ok_rows": sum(r.get("meta", {}).get("ok", True) for r in rows),
        "stats": stats or {},
        "root_verbs": verbs.most_common(20),
        "prompt_words": [len(p.split()) for p in prompts],
        "completion_words": [len(c.split()) for c in completions],
        "similarities": list(similarities),
    }


def _judge_rows(stats: dict[str, Any], extra: dict[str, Any]) -> str:
    """One table row per judge: from a stage's ``stats.unscored`` counts and ``extra.judges`` tallies."""
    out = []
    for name, n in (stats.get("unscored") or {}).items():
        asked = stats.get("judge_asked", "") if name == "equality judge" else ""
        out.append((name, asked, n, ""))
    for name, t in (extra.get("judges") or {}).items():
        out.append((name, t.get("n", ""), t.get("unscored", 0), t.get("flipped", "")))
    return "".join(f"<tr><td class=l>{html.escape(str(a))}</td><td>{b}</td><td>{c}</td><td>{d}</td></tr>"
                   for a, b, c, d in out)


def write_report(out_dir: str | Path, title: str, rows: Sequence[dict[str, Any]], stats: dict[str, Any] | None = None,
                 similarities: Sequence[float] = (), extra: dict[str, Any] | None = None, examples: int = 12) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    s = summarize(rows, stats, similarities)
    charts = _charts(s["similarities"], s["prompt_words"], s["completion_words"])
    st = s["stats"]
    filt = "".join(f"<tr><td class=l>{html.escape(k)}</td><td>{v}</td><td>{100 * st.get('filtered_share', {}).get(k, 0):.1f}%</td></tr>"
                   for k, v in sorted(st.get("filtered", {}).items(), key=lambda kv: -kv[1]))
    counts = (f"<table><tr><th class=l>candidates</th><td>{st.get('candidates', len(rows))}</td></tr>"
              f"<tr><th class=l>kept</th><td>{st.get('kept', len(rows))}</td></tr></table>"
              + (f"<table><tr><th class=l>filtered by</th><th>count</th><th>share of candidates</th></tr>{filt}</table>" if filt else ""))
    inst = "".join(f"<tr><td class=l>{html.escape(k)}</td><td>{v}</td></tr>"
                   for k, v in sorted(st.get("instances_filtered", {}).items(), key=lambda kv: -kv[1]))
    if inst:
        counts += f"<table><tr><th class=l>instances filtered by</th><th>count</th></tr>{inst}</table>"
    judges = _judge_rows(st, extra or {})
    if judges:
        counts += ("<h2>Judges</h2><p class=sub>unscored: the judge's answer did not parse (never counted as a "
                   "verdict); flipped: a both-orders comparison whose answer followed the position</p>"
                   "<table><tr><th class=l>judge</th><th>asked</th><th>unscored</th><th>flipped</th></tr>"
                   f"{judges}</table>")
    verbs = "".join(f"<tr><td class=l>{html.escape(v)}</td><td>{n}</td></tr>" for v, n in s["root_verbs"])
    ex = "".join(
        f"<li><b>{html.escape(_content(r['prompt'])[:300])}</b><br><code>{html.escape(_content(r['completion'])[:300])}</code>"
        f" <span class=ci>{html.escape(json.dumps({k: v for k, v in r.get('meta', {}).items() if k in ('method', 'ok', 'reason', 'round', 'operation', 'ifd', 'score', 'category', 'style')}))}</span></li>"
        for r in list(rows)[:examples])
    imgs = "".join(charts)
    more = f"<h2>Details</h2><pre>{html.escape(json.dumps(extra, indent=2, default=str))}</pre>" if extra else ""
    page = f"""<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title><style>{CSS}</style></head><body>
<h1>{html.escape(title)}</h1><p class=sub>{s['rows']} rows, {s['ok_rows']} parsed</p>
<h2>Kept and filtered</h2>{counts}
<h2>Distributions</h2>{imgs}
<h2>Most common root verbs</h2><table><tr><th class=l>verb</th><th>rows</th></tr>{verbs}</table>
<h2>Examples</h2><ul>{ex}</ul>{more}</body></html>"""
    path = out_dir / "report.html"
    path.write_text(with_header(page, out_dir), encoding="utf-8")
    (out_dir / "report.json").write_text(json.dumps(with_provenance({"title": title, **s, "extra": extra or {}}, out_dir),
                                                    indent=2, default=str))
    return path
