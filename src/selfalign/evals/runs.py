"""Every run on one page: find the run folders under a root, read what each wrote (``metrics.json``,
``provenance.json``, ``manifest.json``, ``steps/``), and compare two runs' headline numbers.

A run folder is one with a ``manifest.json`` (every stage writes one). Its kind is ``metrics.json``'s
``kind`` (else its step names), its command and dates come from its provenance (else its manifest),
and its status is ``finished`` when it has a report, ``incomplete`` when steps were recorded but no
report was written (a killed run), ``started`` when nothing was recorded yet.

``compare`` pairs two runs' headline numbers by name. Where both name a per-item file with the
same key column (``items: {file, key, value}``), the items the two runs share are paired and the
difference gets a paired bootstrap interval (:func:`selfalign.evals.stats.paired_bootstrap`);
otherwise the difference of the two headline values is shown without an interval (two unpaired
estimates; their own intervals are beside them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfalign.data.io import read_jsonl
from selfalign.evals.stats import paired_bootstrap

STATUSES = ("finished", "incomplete", "started")


@dataclass
class RunInfo:
    path: Path
    kind: str
    command: str
    date: str
    status: str
    headline: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float | None = None
    machine: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "kind": self.kind, "command": self.command, "date": self.date,
                "status": self.status, "headline": self.headline, "wall_seconds": self.wall_seconds,
                "machine": self.machine}


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def read_run(path: str | Path) -> RunInfo:
    """What one run folder says about itself (missing or broken files leave fields empty)."""
    p = Path(path)
    manifest = _json(p / "manifest.json")
    metrics = _json(p / "metrics.json")
    prov = metrics.get("provenance") or _json(p / "provenance.json")
    inv = (manifest.get("invocations") or [manifest])[-1] if manifest else {}
    steps = sorted(f.stem for f in (p / "steps").glob("*.json")) if (p / "steps").is_dir() else []
    kind = str(metrics.get("kind") or (steps[0] if len(steps) == 1 else "+".join(steps)) or "unknown")
    status = "finished" if (p / "report.html").exists() else "incomplete" if steps else "started"
    machine = prov.get("machine") or {}
    return RunInfo(p, kind, str(prov.get("command") or inv.get("command") or ""),
                   str(prov.get("finished_at") or inv.get("created_at") or ""), status,
                   dict(metrics.get("headline") or {}), prov.get("wall_seconds"),
                   str(machine.get("cpu", "")) if isinstance(machine, dict) else "")


def find_runs(root: str | Path = "runs") -> list[RunInfo]:
    """Every run folder under ``root`` (itself included), newest first."""
    base = Path(root)
    if not base.is_dir():
        return []
    found = sorted({m.parent for m in base.rglob("manifest.json")})
    runs = [read_run(p) for p in found]
    return sorted(runs, key=lambda r: r.date, reverse=True)


def _items(run: Path, spec: dict[str, Any]) -> dict[str, float]:
    """``{key: value}`` of a headline's per-item file (a bool counts as 0/1; rows without a number skipped)."""
    path = run / str(spec.get("file", ""))
    if not path.is_file():
        return {}
    out = {}
    for row in read_jsonl(path):
        v = row.get(spec.get("value", ""))
        k = row.get(spec.get("key", "id"))
        if k is not None and isinstance(v, (bool, int, float)):
            out[str(k)] = float(v)
    return out


def compare(a: str | Path, b: str | Path, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Two runs' headline numbers side by side: ``rows`` of ``{name, a, b, diff, paired}`` where
    ``paired`` (or None) is ``{n, diff, lo, hi}`` on the items both runs scored, in the headline's
    units (the per-item mean times ``items.scale``: 100 where the headline is a percentage)."""
    ra, rb = read_run(a), read_run(b)
    rows = []
    for name in [n for n in ra.headline if n in rb.headline] + [n for n in rb.headline if n not in ra.headline]:
        ha, hb = ra.headline.get(name), rb.headline.get(name)
        va = ha.get("value") if isinstance(ha, dict) else None
        vb = hb.get("value") if isinstance(hb, dict) else None
        diff = vb - va if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else None
        paired = None
        ia, ib = (ha or {}).get("items"), (hb or {}).get("items")
        if ia and ib and ia.get("key") == ib.get("key") and ia.get("value") == ib.get("value"):
            xa, xb = _items(ra.path, ia), _items(rb.path, ib)
            common = sorted(set(xa) & set(xb))
            if common:
                d = paired_bootstrap([xa[k] for k in common], [xb[k] for k in common], resamples=resamples, seed=seed)
                scale = float(ia.get("scale", 1.0))
                paired = {"n": len(common), "diff": scale * d.diff, "lo": scale * d.lo, "hi": scale * d.hi}
        rows.append({"name": name, "a": ha, "b": hb, "diff": diff, "paired": paired})
    return {"a": ra.to_dict(), "b": rb.to_dict(), "rows": rows}
