"""What every report shows: the run header first (what produced it), the training curves of every
model trained under the run folder, and the one way plots are embedded (inline SVG, so an HTML
report stays one file).

The header renders ``provenance.json``, which the stage wrote (:func:`selfalign.store.runs.provenance`):
the command, config hash, selfalign version and git commit, model and precision, the machine,
library versions, seeds, start and finish, wall time per step, tokens generated and scored, and
store hits and misses. It computes nothing: a report without ``provenance.json`` (one written
before this existed) says so instead of guessing.

The training curves read what each trainer saved beside its model (``train.json``, written by
:class:`selfalign.train.base.TrainingRun`: the trainer's ``log_history``): loss for every SFT, DPO,
PM, RLOO and distillation run, and reward and KL where the trainer logged them. Older records
with only the losses are drawn against their logging index.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import re
import warnings
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
    """``page`` with the run header after its title (after ``<body>`` when it has no ``<h1>``) and
    the training curves of the run folder before ``</body>`` (unless the page placed them itself)."""
    hdr = run_header(run_dir)
    if CURVES_ID not in page:
        curves = training_curves(run_dir)
        i = page.rfind("</body>")
        page = page[:i] + curves + page[i:] if i >= 0 else page + curves
    m = _BODY_START.search(page)
    if m:
        return page[: m.end()] + hdr + page[m.end():]
    i = page.find("<body>")
    return page[: i + 6] + hdr + page[i + 6:] if i >= 0 else hdr + page


# what a trainer's log_history is plotted by, in this order: (key, axis label)
CURVE_KEYS = (("loss", "training loss"), ("reward", "reward (mean, training samples)"),
              ("kl", "KL to the initial policy (per token)"), ("rewards/margins", "DPO reward margin"))
CURVES_ID = "id=training-curves"
_NOT_RUNS = {"checkpoints", "model.tmp", "model"}


def training_histories(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Every training recorded under ``run_dir`` (a ``train.json`` with a fingerprint, outside
    checkpoint folders), by its folder relative to ``run_dir``: ``{"history": [records with a
    step], "rows", "seconds", "precision"}``."""
    root = Path(run_dir)
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(root.rglob("train.json")) if root.is_dir() else []:
        rel = path.parent.relative_to(root)
        if _NOT_RUNS & set(rel.parts):
            continue
        try:
            info = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(info, dict) or "fingerprint" not in info:
            continue  # some other file of that name, not a trainer's record
        hist = [h for h in info.get("log_history") or [] if isinstance(h, dict) and isinstance(h.get("step"), int)]
        if not any(k in h for h in hist for k, _ in CURVE_KEYS) and info.get("losses"):
            hist = [{"step": i + 1, "loss": v} for i, v in enumerate(info["losses"])]  # before histories were kept
        out[rel.as_posix()] = {"history": hist, "rows": info.get("n_rows"), "seconds": info.get("seconds"),
                               "precision": info.get("precision")}
    return out


def training_curves(run_dir: str | Path) -> str:
    """The "Training curves" section: one panel per logged quantity (:data:`CURVE_KEYS`), one line
    per training under ``run_dir``, and a table of the trainings; empty when nothing was trained."""
    runs = training_histories(run_dir)
    if not runs:
        return ""

    def points(hist: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
        return [(h["step"], float(h[key])) for h in hist if isinstance(h.get(key), (int, float))]

    panels = [(k, lab) for k, lab in CURVE_KEYS if any(points(r["history"], k) for r in runs.values())]
    fig_html = ""
    if panels:
        plt = pyplot()
        fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.0), squeeze=False)
        for ax, (key, label) in zip(axes[0], panels):
            for name, r in runs.items():
                pts = points(r["history"], key)
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=2.5, label=name)
            ax.set_xlabel("optimizer step")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=7 if len(runs) <= 6 else 5)
        fig_html = svg(fig)

    def last(hist: list[dict[str, Any]], key: str) -> str:
        pts = points(hist, key)
        return f"{pts[-1][1]:.4g}" if pts else "-"

    e = html.escape
    trs = "".join(f"<tr><td class=l>{e(n)}</td><td>{r['rows'] if r['rows'] is not None else '-'}</td>"
                  f"<td>{max((h['step'] for h in r['history']), default=0)}</td><td>{_secs(r['seconds'])}</td>"
                  f"<td>{e(str(r['precision'] or '-'))}</td><td>{last(r['history'], 'loss')}</td></tr>"
                  for n, r in runs.items())
    return (f"<h2 {CURVES_ID}>Training curves</h2>{fig_html}<table><tr><th class=l>training (folder)</th><th>rows</th>"
            f"<th>last logged step</th><th>time</th><th>precision</th><th>last loss</th></tr>{trs}</table>")


def with_provenance(data: dict[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """A report's JSON with ``provenance`` (the same as the header) added when the run has one."""
    p = read_provenance(run_dir)
    return {**data, "provenance": p} if p is not None else data


def svg(fig: Any) -> str:
    """A matplotlib figure as an inline ``<svg>`` element (closed after), ids made unique per figure."""
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    with warnings.catch_warnings():  # "tight layout not applied" on a crowded figure: drawn as it is
        warnings.simplefilter("ignore", UserWarning)
        fig.tight_layout()
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
