"""Time estimates for ``selfalign recipe plan``, from throughput measured on this machine.

Each registered stage declares its *work units* (:attr:`selfalign.stage.Stage.units`: roughly the
tokens it will generate, from its options), and so does the evaluation suite. Every stage and
evaluation a recipe runs (not reuses) appends ``seconds / units`` to ``throughput.json`` beside
the store, under this machine's key (CPU model, cores, native bf16 or not, GPU). ``plan`` multiplies
a stage's units by the median of the last :data:`KEEP` measurements of that stage on this machine;
a stage never run here has no estimate, and ``plan`` says so rather than guessing.

It is an estimate: the seconds of a stage also depend on how much the store already holds (a
re-run after a change costs less) and on the model (measured on one base, applied to another).
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any

from selfalign.recipe.suite import SuiteConfig
from selfalign.store.cache import default_store_path
from selfalign.store.runs import cpu_info

KEEP = 5  # measurements kept per stage and machine


def machine_key() -> str:
    c = cpu_info()
    return f"{c.get('cpu')}|{c.get('cores')} cores|{'bf16' if c.get('native_bf16') else 'no-bf16'}|{c.get('gpu')}"


def throughput_path(store: str = "") -> Path:
    """``throughput.json`` beside the store file (the recipe's ``store``, else the default one)."""
    return (Path(store) if store else default_store_path()).parent / "throughput.json"


def eval_units(cfg: SuiteConfig) -> float:
    """The evaluation's work units: about the tokens it generates (a trust study answers in up to 64)."""
    return float((2 * cfg.n_id + 2 * cfg.n_ood) * cfg.max_tokens + cfg.n_safety * cfg.safety_max_tokens
                 + cfg.n_if * cfg.if_max_tokens + len(cfg.trust_studies) * cfg.trust_items * 64
                 + (cfg.n_id * cfg.pm_max_tokens if cfg.pm else 0))


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record(path: Path, kind: str, units: float | None, seconds: float) -> None:
    """Append one measurement (``kind``: a stage name or ``eval``); a failed write loses only the estimate."""
    if not units or units <= 0 or seconds <= 0:
        return
    data = _read(path)
    runs = data.setdefault(machine_key(), {}).setdefault(kind, [])
    runs.append(seconds / units)
    del runs[:-KEEP]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(path)
    except OSError:
        pass


def estimate(path: Path, kind: str, units: float | None) -> float | None:
    """Seconds for ``units`` of ``kind`` on this machine, or None where it was never measured here."""
    runs = _read(path).get(machine_key(), {}).get(kind)
    if not units or not runs:
        return None
    return float(statistics.median(runs)) * units


def fmt(seconds: float | None) -> str:
    """
    >>> fmt(None), fmt(42), fmt(3720)
    ('not measured here', '~1 min', '~1 h 2 min')
    """
    if seconds is None:
        return "not measured here"
    m = max(1, round(seconds / 60))
    return f"~{m // 60} h {m % 60} min" if m >= 60 else f"~{m} min"
