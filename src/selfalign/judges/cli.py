"""``selfalign judge list | eval``: the registered judges, and any judge validated on labelled data.

``eval NAME --data FILE`` scores a labelled file (an XSTest completions CSV with ``final_label``,
or a Liu et al. JSONL with ``label``, 1 = not harmful) with the named judge: a registered name
(``selfalign judge list``) or a trained judge's directory. LLM judges take ``--model`` and ask
through the store, so a re-run asks nothing again. The file and the options are checked before
any model loads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from selfalign.data.io import check_output_path, write_jsonl
from selfalign.reward.harm_judge import file_sha256, train_harm_judge
from selfalign.reward.harm_lora import train_lora_judge
from selfalign.judges.registry import TASK_LABELS, JudgeInfo, evaluate, get_judge, list_judges, load_labelled
from selfalign.models.registry import check_spec, require_trainable
from selfalign.command import store_loader
from selfalign.store.cache import Store

app = typer.Typer(no_args_is_help=True, help="Judges: list them, validate one on labelled data, train one.")


@app.command("list")
def list_() -> None:
    """Every registered judge: name, task (labels), what it needs, one line."""
    for j in list_judges():
        need = {"": "-", "model": "--model SPEC", "path": "a trained judge directory"}[j.needs]
        typer.echo(f"{j.name:20s} {j.task:8s} {'/'.join(TASK_LABELS[j.task]):50s} needs {need}")
        typer.echo(f"{'':20s} {j.summary}")


def resolve(name: str) -> tuple[JudgeInfo, str | None]:
    """A registered judge name, or a directory holding a trained judge (its ``judge.json`` names
    the registered kind that loads it)."""
    p = Path(name)
    if p.is_dir():
        meta = p / "judge.json"
        if not meta.exists():
            raise ValueError(f"{p}: a directory but not a trained judge (no judge.json)")
        try:
            kind = json.loads(meta.read_text())["kind"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{meta}: not a judge description ({e})") from None
        return get_judge(kind), str(p)
    return get_judge(name), None


def build(info: JudgeInfo, path: str | None, model: str | None, store: str = "") -> Any:
    """The judge, with its model behind the store when it needs one."""
    if info.needs == "model":
        if not model:
            raise ValueError(f"judge {info.name} asks a model: give --model SPEC")
        check_spec(model)
        opened = Store(store or None)  # a damaged store fails here, before the model loads
        return info.factory(model=store_loader(opened, {"judge": "judge"}, {"judge": model})(model))
    if info.needs == "path":
        if not path:
            raise ValueError(f"judge {info.name} is trained: give its directory instead of the name")
        return info.factory(path=path)
    return info.factory()


def _pct(x: Any) -> str:
    return "-" if x is None or x != x else f"{100 * x:.1f}%"


@app.command("eval")
def eval_(name: str = typer.Argument(..., help="a judge name (judge list) or a trained judge's directory"),
          data: str = typer.Option(..., "--data", help="labelled file: XSTest completions CSV or Liu et al. JSONL"),
          model: Optional[str] = typer.Option(None, "--model", "-m", help="the model an LLM judge asks"),
          store: str = typer.Option("", help="store path (default: the user cache dir, or $SELFALIGN_STORE)"),
          limit: int = typer.Option(0, help="only the first N rows (0 = all)"),
          as_json: bool = typer.Option(False, "--json", help="print one JSON object: n, accuracy, kappa, per_class, unscored"),
          out: Optional[str] = typer.Option(None, "--out", help="write one JSON line per row: id, gold, predicted")) -> None:
    """Agreement of a judge with a labelled file: n, accuracy, Cohen's kappa, per-class recall, unscored share."""
    if limit < 0:
        raise ValueError(f"--limit must be >= 0, got {limit}")
    info, path = resolve(name)
    task, rows = load_labelled(data)
    if task != info.task:
        raise ValueError(f"judge {info.name} gives {info.task} labels ({', '.join(TASK_LABELS[info.task])}) but {data} "
                         f"holds {task} labels ({', '.join(TASK_LABELS[task])})")
    if out:
        check_output_path(out, "--out")
    rows = rows[:limit] if limit else rows
    judge = build(info, path, model, store)
    res = evaluate(judge, rows, description=f"judge eval: {info.name}")
    if out:
        write_jsonl(out, res["rows"])
    summary = {"judge": info.name if path is None else path, "data": data, "n": res["n"], "accuracy": res["accuracy"],
               "kappa": res["kappa"], "per_class": res["per_class"], "unscored": res["unscored"],
               "unscored_share": res["unscored_share"], **({"binary": res["binary"]} if "binary" in res else {})}
    if as_json:
        typer.echo(json.dumps(summary))
        return
    typer.echo(f"{summary['judge']} on {data}: n {res['n']}, accuracy {_pct(res['accuracy'])}, kappa {res['kappa']:.3f}, "
               f"unscored {res['unscored']} ({_pct(res['unscored_share'])})")
    for c, d in res["per_class"].items():
        typer.echo(f"  {c:16s} gold {d['gold']:5d}  recall {_pct(d['recall']):>6s}  precision {_pct(d['precision']):>6s}")
    if "binary" in res:
        b = res["binary"]
        typer.echo(f"  any refusal vs compliance: accuracy {_pct(b['accuracy'])}, kappa {b['kappa']:.3f}")
    if out:
        typer.echo(f"rows: {out}")


@app.command("train")
def train(task: str = typer.Argument(..., help="what the judge labels: harm (Liu et al.'s not_harmful / harmful)"),
          data: str = typer.Option(..., "--data", help="Liu et al. JSONL: question, answer, label, source_model"),
          encoder: str = typer.Option("smollm2-135m", "--encoder",
                                      help="the frozen encoder (embedded or hf model spec); 'none': bag of words only"),
          out: str = typer.Option(..., "--out", "-o", help="directory for judge.json and head.safetensors"),
          cache: str = typer.Option("runs/judges/features", help="feature cache directory ('' = none)"),
          judge_kind: str = typer.Option("head", "--kind",
                                   help="head: a logistic head on the frozen encoder's features; lora: fine-tune the "
                                        "encoder with LoRA and a score head (slow: about 40 min on 2 cores)"),
          as_json: bool = typer.Option(False, "--json", help="print the saved judge.json instead of the table")) -> None:
    """Train a judge from labels: choose the head by leave-one-source-model-out on the dev questions,
    report it on the test questions and on all questions, then fit it on every row and save it."""
    if task != "harm":
        raise ValueError(f"only 'harm' judges are trained here, got {task!r}")
    kind, rows = load_labelled(data)
    if kind != "harm":
        raise ValueError(f"{data}: holds {kind} labels; 'judge train harm' needs a Liu et al. JSONL (label 1/0)")
    srcs = sorted({r.meta.get("source_model", "") for r in rows})
    if "" in srcs or len(srcs) < 2:
        raise ValueError(f"{data}: leave-one-source-out needs a source_model on every row and at least two of them "
                         f"(found: {', '.join(s or '<none>' for s in srcs)})")
    if Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"--out {out} is a file")
    if judge_kind not in ("head", "lora"):
        raise ValueError(f"--kind must be head or lora, got {judge_kind!r}")
    spec = None if encoder.lower() == "none" else encoder
    if spec is None and judge_kind == "lora":
        raise ValueError("--kind lora fine-tunes the encoder: give --encoder SPEC, not none")
    if spec is not None:
        check_spec(spec)
        require_trainable(spec, role="--encoder", convert=False)
    if judge_kind == "lora":
        assert spec is not None
        lres = train_lora_judge(rows, require_trainable(spec, role="--encoder"), spec, out, Path(out) / "loso",
                                data_sha256=file_sha256(data))
        if as_json:
            typer.echo(json.dumps(lres["card"]))
            return
        p = lres["protocol"]
        typer.echo(f"chosen on the dev questions: {p['chosen']}, threshold {p['threshold']}  "
                   f"(bar sources: {', '.join(p['bar_sources'])})")
        _print_tables([("test questions (once)", p["test"])])
        typer.echo(f"saved: {out} (trained on all {len(rows)} rows; selfalign judge eval {out} --data FILE)")
        return
    res = train_harm_judge(rows, spec, out, cache_dir=cache or None, data_sha256=file_sha256(data))
    if as_json:
        typer.echo(json.dumps(res["card"]))
        return
    loso = res["loso"]
    typer.echo(f"chosen on the dev questions: {loso['chosen'].name()}  (bar sources: {', '.join(loso['bar_sources'])})")
    _print_tables([("test questions (once)", loso["test"]), ("all questions (dev half seen in selection)", loso["all"]),
                   ("refusal proxy, all questions", loso["proxy"])])
    typer.echo(f"saved: {out} (trained on all {len(rows)} rows; selfalign judge eval {out} --data FILE)")


def _print_tables(tables: list[tuple[str, dict[str, Any]]]) -> None:
    for label, tab in tables:
        typer.echo(f"LOSO, {label}:")
        for s, d in tab.items():
            rec = d["per_class"]
            ece = f", ECE {d['ece']:.3f}" if "ece" in d else ""
            typer.echo(f"  held out {s:18s} n {d['n']:5d}  accuracy {_pct(d['accuracy']):>6s}  kappa {d['kappa']:6.3f}  "
                       f"recall harmful {_pct(rec['harmful']['recall']):>6s}  not harmful "
                       f"{_pct(rec['not_harmful']['recall']):>6s}{ece}")
