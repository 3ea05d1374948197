"""What every report shows first: the run header (what produced it), and the one way plots are
embedded (inline SVG, so an HTML report stays one file).

The header renders ``provenance.json``, which the stage wrote (:func:`selfalign.store.runs.provenance`):
the command, config hash, selfalign version and git commit, model and precision, the machine,
library versions, seeds, start and finish, wall time per step, tokens generated and scored, and
store hits and misses. It computes nothing: a report without ``provenance.json`` (one written
before this existed) says so instead of guessing.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import re
from pathlib import Path
from typing import Any

HEADER_CSS = (".runhdr{font-size:.85em;color:#444;border:1px solid #ddd;background:#fafafa;padding:.4rem .8rem;margin:.6rem 0}"
              ".runhdr table{margin:.3rem 0}.runhdr td,.runhdr th{border:none;padding:.1rem .6rem .1rem 0;text-align:left}"
              ".runhdr summary{cursor:pointer;font-weight:600}")

VERSION_KEYS = ("python", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "vllm")


def read_provenance(run_dir: str | Path) -> dict[str, Any] | None:
    path = Path(run_dir) / "provenance.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _secs(v: Any) -> str:
    if not isinstance(v, (int, float)):
        return "n/a"
    v = float(v)
    return f"{v:.0f} s" if v < 120 else f"{v / 60:.1f} min"


def run_header(run_dir: str | Path) -> str:
    """The run header as an HTML fragment (a ``<details open>`` block with class ``runhdr``)."""
    p = read_provenance(run_dir)
    if p is None:
        return ("<div class=runhdr id=run-header>Run header: no provenance.json in this run folder "
                "(written by an older selfalign); see manifest.json.</div>")
    e = html.escape
    m = p.get("machine") or {}
    commit = p.get("git_commit") or "not a git checkout"
    if p.get("git_commit") and p.get("git_dirty"):
        commit += " (uncommitted changes)"
    model = p.get("model")
    model_s = ", ".join(f"{k}: {v}" for k, v in model.items()) if isinstance(model, dict) else (model or "n/a")
    versions = p.get("versions") or {}
    vers = ", ".join(f"{k} {versions[k]}" for k in VERSION_KEYS if k in versions)
    machine = f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores"
    machine += ", native bf16" if m.get("native_bf16") else ", no native bf16"
    machine += f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU"
    seeds = ", ".join(f"{k}={v}" for k, v in (p.get("seeds") or {}).items()) or "n/a"
    steps = p.get("steps") or {}
    step_s = ", ".join(f"{k} {_secs(v.get('seconds'))}" + ("" if v.get("this_invocation", True) else " (reused)")
                       for k, v in steps.items()) or "n/a"
    store = (f"{p.get('tokens_generated', 0):,} tokens generated, {p.get('tokens_scored', 0):,} scored; "
             f"store {p.get('store_hits', 0):,} hits, {p.get('store_misses', 0):,} misses")
    rows = [
        ("command", f"<code>{e(str(p.get('command', '')))}</code>"),
        ("config", e(f"hash {p.get('config_hash') or 'n/a'}")),
        ("selfalign", e(f"{p.get('selfalign', '?')}, commit {commit}")),
        ("model", e(str(model_s))),
        ("precision", e(str(p.get("precision") or "n/a"))),
        ("machine", e(machine)),
        ("libraries", e(vers)),
        ("seeds", e(seeds)),
        ("time", e(f"started {p.get('started_at') or '?'}, finished {p.get('finished_at') or '?'}, "
                   f"wall {_secs(p.get('wall_seconds'))}")),
        ("steps", e(step_s)),
        ("model calls", e(store)),
    ]
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return (f"<style>{HEADER_CSS}</style><details open class=runhdr id=run-header><summary>What produced this report"
            f"</summary><table>{body}</table></details>")


_BODY_START = re.compile(r"(<h1[^>]*>.*?</h1>(\s*<p class=sub>.*?</p>)?)", re.S)


def with_header(page: str, run_dir: str | Path) -> str:
    """``page`` with the run header after its title (after ``<body>`` when it has no ``<h1>``)."""
    hdr = run_header(run_dir)
    m = _BODY_START.search(page)
    if m:
        return page[: m.end()] + hdr + page[m.end():]
    i = page.find("<body>")
    return page[: i + 6] + hdr + page[i + 6:] if i >= 0 else hdr + page


def with_provenance(data: dict[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """A report's JSON with ``provenance`` (the same as the header) added when the run has one."""
    p = read_provenance(run_dir)
    return {**data, "provenance": p} if p is not None else data


def svg(fig: Any) -> str:
    """A matplotlib figure as an inline ``<svg>`` element (closed after), ids made unique per figure."""
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.find("<svg"):]
    # two inline SVGs from matplotlib share element ids (clip paths, glyphs): prefix them
    tag = "f" + hashlib.sha1(text.encode()).hexdigest()[:8]
    text = re.sub(r'id="([^"]+)"', lambda m_: f'id="{tag}-{m_.group(1)}"', text)
    text = re.sub(r'(url\(#|xlink:href="#|href="#)([^")]+)', lambda m_: f"{m_.group(1)}{tag}-{m_.group(2)}", text)
    return f"<figure class=plot>{text}</figure>"


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # text as text: smaller, and searchable in the page
    return plt
