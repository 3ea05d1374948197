"""The layers of the whole tree, asserted on every first-party import (module top and
function-local alike, found by an AST scan).

The rule: a module imports only from its own layer or the layers below it. Lowest first::

    0  selfalign (the package root), types, config, logs  plain data, strict configs, how we talk
    1  data                                             loaders, formats, bundled sets
    2  models                                           backends and their protocols
    3  store                                            the cache every model call goes through; run dirs
    4  train                                            thin trainers over TRL
    5  judges                                           one Verdict type, every judge
    6  evals                                            tasks, runner, statistics
    7  stage, generate                                  the Stage protocol and step runner; `selfalign generate`
    8  report                                           renderers (the bodies call them; they import no body)
    9  command                                          the one command runner: options from a config's fields
    10 honesty, synth, critique, reward, rlhf, trust    the bodies of work (they may use each other, with no circle)
    11 recipe                                           chains registered stages
    12 cli (selfalign/cli.py and every */cli.py)        the top: every command

On top of that, the package graph (``selfalign.X`` -> ``selfalign.Y``, command modules and the
listed exceptions left out) has no circle. :data:`EXCEPTIONS` lists each import that still runs back up, with its reason; a new one
fails :func:`test_no_import_runs_back_up`, and a listed one that is gone fails
:func:`test_every_exception_still_exists` (so the list only shrinks).
"""

from __future__ import annotations

import ast
from pathlib import Path

import selfalign

ROOT = Path(selfalign.__file__).parent

LAYERS: list[tuple[str, ...]] = [
    ("", "types", "config", "logs"),
    ("data",),
    ("models",),
    ("store",),
    ("train",),
    ("judges",),
    ("evals",),
    ("stage", "generate"),
    ("report",),
    ("command",),
    ("honesty", "synth", "critique", "reward", "rlhf", "trust"),
    ("recipe",),
    ("cli",),
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}

#: (importing module, imported module) -> why it is still allowed
EXCEPTIONS = {
}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def first_party(path: Path) -> list[tuple[int, str]]:
    """Every first-party import in the file, at any depth (function-local ones included); relative
    imports resolved against the file's package."""
    out = []
    package = module_name(path).split(".") if path.is_relative_to(ROOT) else []
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod == "selfalign" or mod.startswith("selfalign."):
                out.append((node.lineno, mod))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name == "selfalign" or a.name.startswith("selfalign.")]
    return out


def layer(module: str) -> str:
    """The layer name of a module: ``cli`` for every command module, else its top-level package."""
    parts = module.split(".")
    if parts[-1] == "cli":
        return "cli"
    return parts[1] if len(parts) > 1 else ""


def _modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if "bundled" not in p.parts)


def upward_imports() -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for path in _modules():
        src = module_name(path)
        for line, target in first_party(path):
            if RANK[layer(target)] > RANK[layer(src)]:
                out.setdefault((src, target), []).append(f"{path.relative_to(ROOT)}:{line}")
    return out


def test_every_package_has_a_layer():
    names = {layer(module_name(p)) for p in _modules()}
    assert not names - set(RANK), f"give these a layer in LAYERS: {sorted(names - set(RANK))}"


def test_no_import_runs_back_up():
    bad = {k: v for k, v in upward_imports().items() if k not in EXCEPTIONS}
    assert not bad, "imports from a higher layer:\n" + "\n".join(f"{'; '.join(v)}: {a} -> {b}" for (a, b), v in bad.items())


def test_every_exception_still_exists():
    gone = set(EXCEPTIONS) - set(upward_imports())
    assert not gone, f"fixed, remove from EXCEPTIONS: {sorted(gone)}"


def test_the_package_graph_has_no_circle():
    graph: dict[str, set[str]] = {}
    for path in _modules():
        src = module_name(path)
        if layer(src) == "cli":
            continue
        for _, target in first_party(path):
            a, b = layer(src), layer(target)
            if a != b and b != "cli" and (src, target) not in EXCEPTIONS:
                graph.setdefault(a, set()).add(b)

    def cycle_from(node: str, stack: list[str]) -> list[str] | None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in stack:
                return stack[stack.index(nxt):] + [nxt]
            found = cycle_from(nxt, stack + [nxt])
            if found:
                return found
        return None

    for start in sorted(graph):
        found = cycle_from(start, [start])
        assert found is None, f"a circle of packages: {' -> '.join(found)}"


def test_the_modules_of_trust_import_no_circle():
    """Within a package too: the studies and to_data once imported each other (issue 25)."""
    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT / "trust").rglob("*.py")):
        src = module_name(path)
        graph[src] = {t for _, t in first_party(path) if t.startswith("selfalign.trust") and t != src}
    for a, targets in graph.items():
        for b in targets:
            assert a not in graph.get(b, set()), f"{a} and {b} import each other"


def test_the_scan_sees_local_relative_and_upward_imports(tmp_path):
    pkg = ROOT / "models"
    f = tmp_path / "x.py"
    f.write_text("import selfalign.reward.pm\n\ndef f():\n    from selfalign.trust.run import run\n")
    assert [m for _, m in first_party(f)] == ["selfalign.reward.pm", "selfalign.trust.run"]
    assert layer("selfalign.trust.cli") == "cli" and layer("selfalign.cli") == "cli" and layer("selfalign") == ""
    assert RANK[layer("selfalign.trust.run")] > RANK[layer(module_name(pkg / "hf.py"))]
