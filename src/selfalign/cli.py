"""The ``selfalign`` command line. Each command builds a config and calls the same ``run()``
as the Python API; nothing here holds logic of its own.
"""

from __future__ import annotations

import re
import sys
from typing import List

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import selfalign
from selfalign import logs
from selfalign.config import ConfigError, load_config
from selfalign.data.io import DataError
from selfalign.models.base import ModelError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="Align a language model with as little human labelling as possible.")
console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        print(f"selfalign {selfalign.__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="Print results and errors only (no progress)."),
          verbose: bool = typer.Option(False, "--verbose", "-v", help="Also print details and the libraries' own logs."),
          track: str = typer.Option("", "--track", help="also log every training run's steps to a tracker: trackio "
                                    "(local; `trackio show`), tensorboard or wandb; a config's train.report_to wins")) -> None:
    logs.set_verbosity(0 if quiet else 2 if verbose else 1)
    logs.quiet_libraries()
    if track:
        import os

        from selfalign.train.base import TRACK_ENV, check_tracker

        os.environ[TRACK_ENV] = check_tracker(track)  # a bad name or a missing package: one error line


@app.command()
def generate(
    input: str = typer.Argument(..., help="prompts JSONL: rows with 'prompt' (string or messages) or 'messages'"),
    output: str = typer.Option("completions.jsonl", "--output", "-o",
                               help="output JSONL (missing folders are created; a directory is refused before generating)"),
    model: str = typer.Option("smollm2-135m", "--model", "-m", help="model spec (see `selfalign models`)"),
    n: int = typer.Option(1, "--n", help="samples per prompt"),
    temperature: float = typer.Option(0.0, help="0 = greedy"),
    top_p: float = typer.Option(1.0),
    max_tokens: int = typer.Option(128),
    stop: List[str] = typer.Option([], help="stop string (repeatable)"),
    seed: int = typer.Option(0),
    batch_size: int = typer.Option(256, help="rows per forward pass (hf)"),
    chunk_size: int = typer.Option(128, help="samples committed to the store at a time"),
    store: str = typer.Option("", help="store path (default: the user cache dir, or $SELFALIGN_STORE)"),
    base_url: str = typer.Option("", help="for openai:<model>: the server's base URL (or $SELFALIGN_OPENAI_BASE_URL)"),
    show: int = typer.Option(10, help="print this many completions"),
) -> None:
    """Sample completions for a prompts JSONL, through the cached store."""
    from selfalign.generate import GenerateConfig, run

    cfg = load_config(GenerateConfig, dict(input=input, output=output, model=model, n=n, temperature=temperature,
                                           top_p=top_p, max_tokens=max_tokens, stop=list(stop), seed=seed,
                                           batch_size=batch_size, chunk_size=chunk_size, store=store,
                                           base_url=base_url))
    rows = run(cfg)
    table = Table("prompt", "i", "completion", "cached")
    for r in rows[:show]:
        table.add_row(escape(r["prompt"][-1]["content"][:60]), str(r["meta"]["index"]), escape(r["completion"][0]["content"][:100]),
                      "yes" if r["meta"]["cached"] else "")
    Console().print(table)
    fresh = sum(not r["meta"]["cached"] for r in rows)
    console.print(f"{len(rows)} completions -> {cfg.output} ({fresh} generated, {len(rows) - fresh} from the store)",
                  soft_wrap=True, markup=False)


@app.command()
def models() -> None:
    """List the backends, the embedded model and where its cache and the store live."""
    from selfalign.models import embedded
    from selfalign.models.registry import BACKENDS, DEFAULT_MODEL
    from selfalign.store.cache import default_store_path

    table = Table("backend", "how to name it")
    for k, v in BACKENDS.items():
        table.add_row(k, escape(v))
    Console().print(table)
    try:
        gguf = str(embedded.gguf_path())
    except ModelError as e:
        gguf = f"not installed ({e})"
    conv = embedded.model_dir()
    print(f"default model: {DEFAULT_MODEL}")
    print(f"embedded GGUF: {gguf}")
    print(f"converted cache: {conv} ({'present' if (conv / 'model.safetensors').exists() else 'not yet converted'})")
    print(f"store: {default_store_path()}")


@app.command()
def serve(
    model: str = typer.Option("smollm2-135m", "--model", "-m"),
    host: str = typer.Option("127.0.0.1", help="beyond loopback needs --api-key (or --insecure-no-key)"),
    port: int = typer.Option(8000),
    api_key: str = typer.Option("", envvar="SELFALIGN_API_KEY", show_default=False,
                                help="required as 'Authorization: Bearer KEY' (or $SELFALIGN_API_KEY)"),
    insecure_no_key: bool = typer.Option(False, help="serve beyond loopback with no API key"),
    max_body_bytes: int = typer.Option(1 << 20, min=1, help="request body size limit (413 above)"),
    max_n: int = typer.Option(16, min=1, help="choices per request"),
    default_max_tokens: int = typer.Option(256, min=1, help="max_tokens when a request gives none"),
    max_tokens: int = typer.Option(0, min=0, help="max_tokens limit (0: the model's context)"),
    context_length: int = typer.Option(0, min=0, help="prompt + max_tokens limit (0: the model's own)"),
    max_queue: int = typer.Option(64, min=1, help="requests waiting to generate (429 beyond)"),
    max_batch: int = typer.Option(8, min=1, help="queued requests sent to the backend together"),
    request_timeout: float = typer.Option(300.0, min=0.1, help="seconds per request, queue and generation (504)"),
    max_connections: int = typer.Option(256, min=1, help="open connections (503 beyond)"),
    store: bool = typer.Option(False, help="answer through the store: a request asked before comes from it"),
) -> None:
    """Serve a model over an OpenAI-compatible HTTP API (chat and text completions); see docs/serve.md."""
    try:
        from selfalign.models.serve import Limits, OpenAIServer, exposure_problem
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ConfigError("selfalign serve needs FastAPI and uvicorn: pip install 'selfalign[serve]'") from None
    from selfalign.models.registry import load_model

    problem, warning = exposure_problem(host, api_key, insecure_no_key)
    if problem:
        raise ConfigError(problem)
    limits = Limits(max_body_bytes=max_body_bytes, max_n=max_n, default_max_tokens=default_max_tokens,
                    max_tokens=max_tokens or None, context_length=context_length or None, max_queue=max_queue,
                    max_batch=max_batch, request_timeout=request_timeout, max_connections=max_connections)
    generator = load_model(model)
    if store:
        from selfalign.store.cache import CachedModel

        generator = CachedModel(generator, progress=False)
    srv = OpenAIServer(generator, host=host, port=port, api_key=api_key or None, limits=limits, log_level="info")
    if warning:
        console.print(f"[bold red]{escape(warning)}[/bold red]", soft_wrap=True)
    console.print(f"serving {model} at {srv.base_url}" + (" (API key required)" if api_key else ""))
    srv.serve_forever()


@app.command()
def export(path: str = typer.Argument(..., help="a trained model or dataset folder with its card, or a run folder holding one"),
           to_hub: str = typer.Option(..., "--to-hub", help="the Hub repository, ORG/NAME"),
           folder: str = typer.Option("", "--folder", help="inside PATH, the folder to push when it holds several"),
           dry_run: bool = typer.Option(False, "--dry-run", help="build and print the upload; push nothing"),
           private: bool = typer.Option(False, "--private", help="create the repository private"),
           token: str = typer.Option("", "--token", help="Hub token (default: $HF_TOKEN or `hf auth login`)")) -> None:
    """Push a trained model (model repository) or a produced dataset (dataset repository) to the Hub, card included."""
    from selfalign.train.export import build_upload, push

    up = build_upload(path, to_hub, folder)
    console.print(f"{up.repo_type} {up.repo_id} <- {up.folder}: {len(up.files)} files, {up.size / 1e6:.1f} MB",
                  markup=False, soft_wrap=True)
    for f in up.files:
        print(f"  {f}")
    if dry_run:
        console.print("dry run: nothing pushed", markup=False)
        return
    console.print(f"pushed: {push(up, private=private, token=token or None)}", markup=False, soft_wrap=True)


runs_app = typer.Typer(no_args_is_help=False, help="Every run under a folder, on one page; two runs side by side.")
app.add_typer(runs_app, name="runs")


@runs_app.callback(invoke_without_command=True)
def runs_list(ctx: typer.Context,
              root: str = typer.Option("runs", "--root", help="the folder holding run folders (searched recursively)"),
              as_json: bool = typer.Option(False, "--json", help="print the list as JSON")) -> None:
    """List every run under ROOT (kind, status, date, headline numbers) and write ROOT/index.html."""
    if ctx.invoked_subcommand is not None:
        return
    import json

    from selfalign.evals.runs import find_runs
    from selfalign.report.runs import write_index

    runs = find_runs(root)
    page = write_index(root, [r.to_dict() for r in runs])
    if as_json:
        print(json.dumps([r.to_dict() for r in runs], indent=2, default=str))
        return
    table = Table("run", "kind", "status", "date", "headline")
    for r in runs:
        heads = list(r.headline.items())[:3]
        nums = "; ".join(f"{n} {h['value']:.1f} [{h['lo']:.1f}, {h['hi']:.1f}]" if isinstance(h, dict) and
                         isinstance(h.get("value"), (int, float)) and isinstance(h.get("lo"), (int, float))
                         else f"{n} {h.get('value') if isinstance(h, dict) else h}" for n, h in heads)
        table.add_row(escape(str(r.path)), escape(r.kind), r.status, escape(r.date), escape(nums))
    Console(width=200).print(table)
    console.print(f"{len(runs)} runs; page: {page}", markup=False, soft_wrap=True)


@runs_app.command("compare")
def runs_compare(a: str = typer.Argument(..., help="run folder A"), b: str = typer.Argument(..., help="run folder B"),
                 html_out: str = typer.Option("", "--html", help="also write the comparison as an HTML page here"),
                 resamples: int = typer.Option(1000, min=0, help="bootstrap resamples for the paired intervals")) -> None:
    """Two runs' headline numbers side by side, paired item by item where both scored the same items."""
    from pathlib import Path

    from selfalign.evals.runs import compare
    from selfalign.report.runs import write_compare

    for p in (a, b):
        if not (Path(p) / "manifest.json").is_file():
            raise DataError(f"{p}: not a run folder (no manifest.json)")
    comp = compare(a, b, resamples=resamples)
    table = Table("headline", "A", "B", "B - A", "paired B - A [95%]")
    for r in comp["rows"]:
        def v(h: object) -> str:
            return f"{h['value']:.1f}" if isinstance(h, dict) and isinstance(h.get("value"), (int, float)) else "n/a"
        p = r["paired"]
        table.add_row(escape(r["name"]), v(r["a"]), v(r["b"]), "n/a" if r["diff"] is None else f"{r['diff']:+.1f}",
                      f"{p['diff']:+.1f} [{p['lo']:+.1f}, {p['hi']:+.1f}] n={p['n']}" if p else "not paired")
    Console(width=200).print(table)
    if html_out:
        console.print(f"page: {write_compare(html_out, comp)}", markup=False)


def _register_subcommands() -> None:
    import importlib

    for name, module in (("honesty", "selfalign.honesty.cli"), ("synth", "selfalign.synth.cli"),
                         ("critique", "selfalign.critique.cli"), ("pm", "selfalign.reward.cli"),
                         ("rlhf", "selfalign.rlhf.cli"), ("trust", "selfalign.trust.cli"),
                         ("judge", "selfalign.judges.cli"), ("store", "selfalign.store.cli"),
                         ("recipe", "selfalign.recipe.cli")):
        try:
            app.add_typer(importlib.import_module(module).app, name=name)
        except ImportError as e:  # a broken optional piece never breaks the CLI
            console.print(f"[yellow]{name} commands unavailable: {e}[/yellow]")


_register_subcommands()


#: environment variables whose values never appear in an error message
SECRET_ENV = ("OPENAI_API_KEY", "SELFALIGN_API_KEY")
_SECRET_TOKEN = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s'\",;]+")


def redact(text: str) -> str:
    """``text`` with the values of :data:`SECRET_ENV`, ``sk-...``-looking tokens and ``Bearer`` tokens replaced by ``***``.

    >>> redact("401 for key sk-abcdefgh12345678, header 'Authorization: Bearer abc.def'")
    "401 for key sk-***, header 'Authorization: Bearer ***'"
    """
    import os

    for name in SECRET_ENV:
        value = os.environ.get(name, "")
        if len(value) >= 4:
            text = text.replace(value, "***")
    return _BEARER.sub(r"\1***", _SECRET_TOKEN.sub("sk-***", text))


def error_message(e: BaseException) -> str:
    """One line for an error that ends a command: what failed, with the file it concerns."""
    import json
    import sqlite3

    if isinstance(e, OSError):
        what = e.strerror or str(e) or type(e).__name__
        where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
        msg = f"{where}: {what}" if where else what
    elif isinstance(e, json.JSONDecodeError):
        msg = f"invalid JSON ({e.msg} at line {e.lineno} column {e.colno})"
    elif isinstance(e, KeyError):
        msg = (f"missing key {e.args[0]!r}" if e.args else "missing key") + " (SELFALIGN_DEBUG=1 shows where)"
    elif isinstance(e, sqlite3.Error):
        msg = f"store (SQLite): {e}; check it with `selfalign store check` (and `selfalign store repair`)"
    else:
        msg = str(e) or type(e).__name__
    return redact(" ".join(msg.split()))


def main() -> None:
    """Every bad input (config, data file, model spec, an option a stage rejects, a file that
    cannot be read or written, a broken store) ends in one line, ``error: ...``, and exit status 2;
    secrets (API keys) are redacted from it. ``SELFALIGN_DEBUG=1`` shows the traceback instead."""
    import json
    import os
    import sqlite3

    try:
        app()
    except (DataError, ConfigError, ModelError, ValueError, OSError, sqlite3.Error, KeyError,
            json.JSONDecodeError) as e:
        if os.environ.get("SELFALIGN_DEBUG"):
            raise
        console.print(f"[red]error:[/red] {escape(error_message(e))}", soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
