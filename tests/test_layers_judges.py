"""judges/ sits below the bodies of work: its modules import only the layers under it (types,
config, data, models, store) and each other; a judge that needs a body's machinery (the trained
harm judge reuses the preference-model encoder) lives in that body and registers itself. The CLI
module is the top layer and is exempt."""

import ast
from pathlib import Path

import selfalign

ALLOWED = {"types", "config", "data", "models", "store", "judges"}


def _first_party(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("selfalign."):
            out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("selfalign.")]
    return out


def test_judges_import_nothing_above_them():
    root = Path(selfalign.__file__).parent / "judges"
    bad = [f"{p.name}:{line}: {mod}" for p in sorted(root.glob("*.py")) if p.name != "cli.py"
           for line, mod in _first_party(p) if mod.split(".")[1] not in ALLOWED]
    assert not bad, "judges/ imports from above it:\n" + "\n".join(bad)


def test_the_check_sees_an_upward_import(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("from selfalign.trust.run import run\nimport selfalign.reward.pm\n")
    assert [m for _, m in _first_party(f)] == ["selfalign.trust.run", "selfalign.reward.pm"]
