"""One page of all runs (``runs/index.html``) and a side-by-side page of two runs. Renders what
:mod:`selfalign.evals.runs` read and compared; computes nothing."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from selfalign.report.honesty import CSS

#: headline numbers shown per run on the index (the rest are in the run's own report)
SHOWN = 4


def _num(h: Any) -> str:
    if not isinstance(h, dict) or not isinstance(h.get("value"), (int, float)):
        return "n/a"
    s = f"{h['value']:.1f}"
    if isinstance(h.get("lo"), (int, float)) and isinstance(h.get("hi"), (int, float)):
        s += f" <span class=ci>[{h['lo']:.1f}, {h['hi']:.1f}]</span>"
    return s


def _secs(v: Any) -> str:
    return "" if not isinstance(v, (int, float)) else f"{v:.0f} s" if v < 120 else f"{v / 60:.1f} min"


def write_index(root: str | Path, runs: list[dict[str, Any]]) -> Path:
    """``root/index.html``: one row per run (kind, status, date, wall time, command, headline
    numbers with intervals), each linking its report; and ``root/index.json`` with the same."""
    out = Path(root)
    out.mkdir(parents=True, exist_ok=True)
    e = html.escape
    body = []
    for r in runs:
        rel = os.path.relpath(r["path"], out)
        report = Path(r["path"]) / "report.html"
        link = f"<a href=\"{e(rel)}/report.html\">{e(rel)}</a>" if report.exists() else e(rel)
        heads = list(r["headline"].items())[:SHOWN]
        nums = "<br>".join(f"{e(n)}: {_num(h)}" for n, h in heads) or "<span class=ci>none recorded</span>"
        more = len(r["headline"]) - len(heads)
        nums += f"<br><span class=ci>+{more} more in its report</span>" if more > 0 else ""
        body.append(f"<tr><td class=l>{link}</td><td class=l>{e(r['kind'])}</td><td class=l>{e(r['status'])}</td>"
                    f"<td class=l>{e(r['date'])}</td><td>{_secs(r.get('wall_seconds'))}</td>"
                    f"<td class=l><code>{e(r['command'])}</code></td><td class=l>{nums}</td></tr>")
    table = ("<table id=runs><tr><th class=l>run</th><th class=l>kind</th><th class=l>status</th><th class=l>date</th>"
             "<th>wall</th><th class=l>command</th><th class=l>headline (95% intervals)</th></tr>"
             + "".join(body) + "</table>") if runs else "<p id=runs>No runs yet.</p>"
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>selfalign runs</title><style>{CSS}</style></head>"
            f"<body><h1>Runs</h1><p class=sub>{len(runs)} run folders under <code>{e(str(out))}</code>, newest first. "
            "<code>selfalign runs compare A B</code> sets two side by side.</p>"
            f"{table}</body></html>")
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    (out / "index.json").write_text(json.dumps({"runs": runs}, indent=2, default=str))
    return path


def write_compare(path: str | Path, comp: dict[str, Any]) -> Path:
    """An HTML page with two runs' headline numbers and their differences."""
    e = html.escape
    rows = []
    for r in comp["rows"]:
        d = "n/a" if r["diff"] is None else f"{r['diff']:+.1f}"
        p = r["paired"]
        paired = (f"{p['diff']:+.1f} <span class=ci>[{p['lo']:+.1f}, {p['hi']:+.1f}], {p['n']} items</span>"
                  if p else "<span class=ci>not paired</span>")
        rows.append(f"<tr><td class=l>{e(r['name'])}</td><td>{_num(r['a'])}</td><td>{_num(r['b'])}</td>"
                    f"<td>{d}</td><td>{paired}</td></tr>")
    a, b = comp["a"], comp["b"]
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>selfalign: two runs</title><style>{CSS}</style>"
            f"</head><body><h1>Two runs compared</h1><p class=sub>A: <code>{e(a['path'])}</code> ({e(a['kind'])}, "
            f"{e(a['date'])})<br>B: <code>{e(b['path'])}</code> ({e(b['kind'])}, {e(b['date'])})</p>"
            "<table id=compare><tr><th class=l>headline</th><th>A</th><th>B</th><th>B - A</th>"
            "<th>B - A paired (95%)</th></tr>" + "".join(rows) + "</table></body></html>")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
