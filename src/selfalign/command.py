"""The one command runner: a sub-CLI command is a :class:`Command` registration, and
:func:`add_command` turns it into a typer command whose options are generated from the config
dataclass's fields (as TRL's ``TrlParser`` builds its argument parser from dataclasses).

Every generated command does the same steps, here and nowhere else:

1. the config: YAML (``--config``), then ``--set key=value`` overrides, then the generated
   ``--<field>`` options, built strictly (:func:`selfalign.config.load_config`: an unknown key names
   the nearest valid one, a bad value names its field);
2. the checks, before any model loads or input is scored: every model option names a model
   (:func:`selfalign.models.registry.check_spec`), every trained one can be fine-tuned here, and the
   command's own ``check`` reads its input files;
3. the models: each role (policy, teacher, judge, scorer) is the model named by one config field,
   wrapped in the store and loaded on first use (:class:`selfalign.stage.Models`), so a role the
   run never asks for is never loaded;
4. ``run(cfg, models, ctx) -> result``, a typed result;
5. the record: :func:`selfalign.store.runs.write_stage` writes the rows, the provenance, the
   report (the command's ``render``, which only renders) and the step record;
6. what is printed: the command's ``echo`` lines, then the report's path.

So a sub-CLI (``synth``, ``critique``, ``pm``, ``rlhf``, ``trust``) is a list of registrations
plus the few commands whose arguments are not a config (a sweep, a list of runs to compare).
:func:`config_command` alone (options from a config, then any body) serves commands that are not
one step with one record: ``honesty sample | build | train | eval | report | run``, the steps of
one resumable honesty run.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import time
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

import typer

from selfalign.config import apply_overrides, config_to_dict, load_config, read_yaml
from selfalign.models.base import StageModel
from selfalign.models.registry import check_spec, load_model, require_trainable
from selfalign.stage import ROLES, Models, StageContext
from selfalign.store.cache import CachedModel, Store
from selfalign.store.runs import StageResult, input_hashes, write_stage

#: the short flags the generated options keep from the hand-written CLIs
SHORT = {"model": "-m", "out": "-o"}
#: names a generated option may not take (the runner's own options)
RESERVED = ("config", "set")


@dataclass
class Record:
    """A further step record a command writes (see :attr:`Command.records`)."""

    out: str
    step: str
    config: dict[str, Any]
    rows: list[dict[str, Any]]
    render: Callable[[Path], Path] | None = None
    headline: dict[str, Any] | None = None


@dataclass
class Command:
    """One sub-CLI command.

    * ``name``: the command's name; ``step``: its step record's name (``steps/<step>.json``);
    * ``config``: the config dataclass; each scalar field becomes ``--<field-name>``;
    * ``run(cfg, models, ctx) -> result``;
    * ``models``: role -> the config field naming that role's model (``{"policy": "model"}``), or a
      function of the config giving its spec; an empty spec leaves the role to default to the
      policy (:meth:`Models.spec`);
    * ``trainable``: fields naming a model the command fine-tunes (checked before any work);
    * ``check(cfg)``: reads and checks every input before any model loads;
    * ``inputs(cfg)``: the files the outputs depend on (hashed into the step record);
    * ``rows(result)``: the rows written to ``rows.jsonl``; ``render(out_dir, result, conf)``: the
      report (returns its path); ``headline(result)``: the numbers in ``metrics.json``;
    * ``records(cfg, result)``: further step records the command writes (a command that runs two
      steps, as ``rlhf quick``), written before its own;
    * ``after(cfg, result, ctx)``: files written beside the rows (pairs, candidates, a PM's
      temperature), before the record;
    * ``echo(cfg, result)``: the lines printed before the report's path;
    * ``out(cfg)``: the output folder (default ``cfg.out``); ``record_config(cfg, result)``: the
      config its record and manifest keep, when it is not ``cfg`` (``rlhf quick`` records the
      frontier config it ran, with the PM folders filled in); ``defaults``: config values this command
      starts from, under the YAML (``rlhf bon`` writes to ``runs/rlhf-bon``, not the frontier's folder);
    * ``rename``: field -> option name where the CLI's name differs (llm2llm's ``--model`` is its
      ``student``); ``argument``: a field taken as the positional argument; ``hidden``: fields not
      made options (still settable with ``--set``); ``helps``: field -> help text;
    * ``descriptions``: role -> what the store's progress bar calls its work.
    """

    name: str
    step: str
    config: type
    run: Callable[[Any, Models, StageContext], Any]
    models: dict[str, str | Callable[[Any], str]] = field(default_factory=dict)
    trainable: tuple[str, ...] = ()
    check: Callable[[Any], Any] | None = None
    inputs: Callable[[Any], list[str]] | None = None
    rows: Callable[[Any], list[dict[str, Any]]] = lambda res: list(getattr(res, "rows", []))
    render: Callable[[Path, Any, dict[str, Any]], Path] | None = None
    headline: Callable[[Any], dict[str, Any]] | None = None
    stats: Callable[[Any], dict[str, Any] | None] | None = None
    extra: Callable[[Any, Any], dict[str, Any] | None] | None = None
    records: Callable[[Any, Any], list[Record]] | None = None
    after: Callable[[Any, Any, StageContext], None] | None = None
    echo: Callable[[Any, Any], list[str]] | None = None
    out: Callable[[Any], str] = lambda cfg: str(cfg.out)
    record_config: Callable[[Any, Any], dict[str, Any]] | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    rename: dict[str, str] = field(default_factory=dict)
    argument: str | None = None
    hidden: tuple[str, ...] = ()
    helps: dict[str, str] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    help: str = ""

    def __post_init__(self) -> None:
        if not dataclasses.is_dataclass(self.config):
            raise TypeError(f"command {self.name}: config must be a dataclass")
        names = {f.name for f in dataclasses.fields(self.config)}
        bad_roles = [r for r in self.models if r not in ROLES]
        unknown = [f for f in (*(v for v in self.models.values() if isinstance(v, str)), *self.trainable, *self.rename, *self.hidden,
                               *([self.argument] if self.argument else [])) if f not in names]
        if bad_roles or unknown:
            raise ValueError(f"command {self.name}: unknown role(s) {bad_roles} or field(s) {unknown} "
                             f"of {self.config.__name__}")
        taken = [self.rename.get(f, f) for f in names if self.rename.get(f, f) in RESERVED]
        if taken:
            raise ValueError(f"command {self.name}: option name(s) {taken} are the runner's own")


# ------------------------------------------------------------------ options from fields
def _scalar(tp: Any) -> type | None:
    """The option type of a field's type: str, int, float or bool (Optional and Literal unwrapped),
    ``list`` for a list of strings (given comma-separated); None for other lists, mappings and
    nested configs, which stay ``--set`` keys."""
    origin = typing.get_origin(tp)
    if origin in (list, tuple) and typing.get_args(tp)[:1] == (str,):
        return list
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _scalar(inner[0]) if len(inner) == 1 else None
    if origin is typing.Literal:
        kinds = {type(a) for a in typing.get_args(tp)}
        return kinds.pop() if len(kinds) == 1 and kinds <= {str, int} else None
    return tp if tp in (str, int, float, bool) else None


@functools.lru_cache(maxsize=None)
def _source_lines(path: str) -> tuple[str, ...]:
    try:
        return tuple(Path(path).read_text(encoding="utf-8").splitlines())
    except OSError:
        return ()


@functools.lru_cache(maxsize=None)
def field_comments(cls: type) -> dict[str, str]:
    """The comment beside each field in the config's source (``n: int = 2  # what n is``): the
    help of its generated option, as a field's ``metadata["help"]`` is in TRL's parser.

    Read from the class's lines in its file (the indented block after ``class Name``), each file
    read once: ``inspect.getsource`` parses the whole module per class, which made start-up slow
    with a few dozen generated commands."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            path = inspect.getsourcefile(klass)
        except TypeError:
            continue
        lines = _source_lines(path) if path else ()
        start = next((i for i, ln in enumerate(lines) if re.match(rf"class {klass.__name__}\b", ln)), None)
        if start is None:
            continue
        for line in lines[start + 1:]:
            if line.strip() and not line[0].isspace():
                break  # the class body ended
            m = re.match(r"\s+(\w+)\s*:[^#]*#\s*(.+)$", line)
            if m:
                out[m.group(1)] = m.group(2).strip()
    return out


@dataclass
class Option:
    field: str  # the config field it sets
    name: str  # the python parameter (and, with dashes, the option) name
    type: type
    help: str


def options(config: type, rename: dict[str, str] | None = None, hidden: Sequence[str] = (),
            helps: dict[str, str] | None = None, argument: str | None = None,
            defaults: dict[str, Any] | None = None) -> list[Option]:
    """The generated options of a config, one per scalar (or list-of-strings) field, in the
    config's order: ``rename`` gives a field another option name, ``hidden`` fields and the
    positional ``argument`` get none, ``helps`` overrides the help taken from the field's comment,
    ``defaults`` (the command's own) are the defaults shown."""
    rename, helps = rename or {}, helps or {}
    hints = typing.get_type_hints(config)
    comments = field_comments(config)
    out = []
    for f in dataclasses.fields(config):
        tp = _scalar(hints[f.name])
        if tp is None or f.name in hidden or f.name == argument:
            continue
        default = (defaults or {}).get(f.name, f.default if f.default is not dataclasses.MISSING else None)
        lit = typing.get_args(hints[f.name]) if typing.get_origin(hints[f.name]) is typing.Literal else ()
        what = helps.get(f.name) or comments.get(f.name) or (" | ".join(map(str, lit)) if lit else "")
        if tp is list:
            what = f"{what} (repeatable, or comma-separated)".strip()
        if default not in (None, "") and "default" not in what:
            what = f"{what} (default: {default})".strip()
        out.append(Option(f.name, rename.get(f.name, f.name), tp, what))
    return out


def build_config(config: type, path: str | None, overrides: Sequence[str], flags: dict[str, Any],
                 defaults: dict[str, Any] | None = None) -> Any:
    """``defaults``, then the YAML at ``path``, then ``--set`` overrides, then the options given
    (``flags``: field -> value; None, or an empty list, for not given): later ones win. A list
    option's values are split at commas."""
    data = apply_overrides({**(defaults or {}), **(read_yaml(path) if path else {})}, list(overrides))
    for k, v in flags.items():
        if isinstance(v, (list, tuple)):
            if v:
                data[k] = [x.strip() for item in v for x in str(item).split(",") if x.strip()]
        elif v is not None:
            data[k] = v
    return load_config(config, data, str(path) if path else "<options>")


def config_command(app: typer.Typer, name: str, config: type, body: Callable[[Any], Any], *, help: str = "",
                   rename: dict[str, str] | None = None, hidden: Sequence[str] = (),
                   helps: dict[str, str] | None = None, argument: str | None = None,
                   defaults: dict[str, Any] | None = None) -> Callable[..., None]:
    """Register on ``app`` a command ``name`` whose options are generated from ``config``'s fields
    (:func:`options`), after ``--config`` and ``--set``; it builds the config
    (:func:`build_config`) and calls ``body(cfg)``. Returns the function typer calls."""
    opts = options(config, rename, hidden, helps, argument, defaults)
    params = []
    if argument:
        params.append(inspect.Parameter(argument, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str,
                                        default=typer.Argument(..., help=(helps or {}).get(argument))))
    params += [
        inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str],
                          default=typer.Option(None, "--config", "-c", help=f"YAML config (keys of {config.__name__})")),
        inspect.Parameter("set", inspect.Parameter.KEYWORD_ONLY, annotation=List[str],
                          default=typer.Option([], "--set", help="override a config key: --set key=value (repeatable)")),
    ]
    for o in opts:
        flag = o.name.replace("_", "-")
        decls = [f"--{flag}/--no-{flag}"] if o.type is bool else [f"--{flag}"] + ([SHORT[o.name]] if o.name in SHORT else [])
        kind: Any = Optional[List[str]] if o.type is list else Optional[o.type]
        params.append(inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, annotation=kind,
                                        default=typer.Option(None, *decls, help=o.help)))

    def command(**kw: Any) -> None:
        flags = {o.field: kw.get(o.name) for o in opts}
        if argument:
            flags[argument] = kw[argument]
        body(build_config(config, kw.get("config"), kw.get("set") or [], flags, defaults))

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = help
    command.__name__ = name.replace("-", "_")
    app.command(name)(command)
    return command


def store_loader(store: Store, descriptions: dict[str, str] | None = None,
                 roles: dict[str, str] | None = None) -> Callable[[str], StageModel]:
    """spec -> the registry's model in the store; the progress bar says what the role does."""
    label: dict[str, str] = {}
    for role, spec in (roles or {}).items():  # a model two roles share keeps the first role's label
        label.setdefault(spec, (descriptions or {}).get(role, "generating"))

    def load(spec: str) -> StageModel:
        return CachedModel(load_model(spec), store, description=label.get(spec, "generating"))

    return load


def execute(cmd: Command, cfg: Any) -> StageResult:
    """Steps 2-6 of the module docstring on a built config."""
    named = {role: (fld(cfg) if callable(fld) else getattr(cfg, fld)) for role, fld in cmd.models.items()}
    specs = {role: spec for role, spec in named.items() if spec}
    for spec in specs.values():
        check_spec(spec)
    for fld in cmd.trainable:
        check_spec(getattr(cfg, fld))
        require_trainable(getattr(cfg, fld), fld, convert=False)
    if cmd.check is not None:
        cmd.check(cfg)
    store = Store(getattr(cfg, "store", "") or None)
    models = Models(specs, store_loader(store, cmd.descriptions, specs))
    out = cmd.out(cfg)
    ctx = StageContext(Path(out), cmd.step, lambda m: typer.echo(f"[{cmd.name}] {m}", err=True), True, store)
    t0 = time.time()
    res = cmd.run(cfg, models, ctx)
    seconds = time.time() - t0
    for r in cmd.records(cfg, res) if cmd.records else ():
        write_stage(r.out, r.step, r.config, {}, r.rows, r.render, None, None, store.tally, headline=r.headline)
    conf = cmd.record_config(cfg, res) if cmd.record_config else config_to_dict(cfg)
    if cmd.after is not None:  # files beside the rows, written before the record says the step finished
        cmd.after(cfg, res, ctx)
    render = cmd.render
    stage = write_stage(out, cmd.step, conf, input_hashes(cmd.inputs(cfg) if cmd.inputs else []), cmd.rows(res),
                        (lambda d: render(d, res, conf)) if render is not None else None,
                        cmd.stats(res) if cmd.stats else None, seconds, store.tally,
                        cmd.extra(cfg, res) if cmd.extra else None, cmd.headline(res) if cmd.headline else None)
    for line in cmd.echo(cfg, res) if cmd.echo else ():
        typer.echo(line)
    if stage.report_path is not None:
        typer.echo(f"report: {stage.report_path}")
    return stage


def add_command(app: typer.Typer, cmd: Command) -> Callable[..., None]:
    """Register ``cmd`` on ``app``: :func:`config_command` with :func:`execute` as its body."""
    return config_command(app, cmd.name, cmd.config, lambda cfg: execute(cmd, cfg),
                          help=cmd.help or (cmd.run.__doc__ or "").strip(), rename=cmd.rename, hidden=cmd.hidden,
                          helps=cmd.helps, argument=cmd.argument, defaults=cmd.defaults)


def add_commands(app: typer.Typer, commands: list[Command]) -> None:
    for cmd in commands:
        add_command(app, cmd)
