"""Tampering: bugs inserted into working code automatically, CriticGPT's training data.

McAleese et al. 2024, "LLM Critics Help Catch LLM Bugs" (arXiv 2407.00215), §2: human
contractors insert subtle bugs into model-written code that passes its tests and write a
reference description of each bug; the critic is then asked to find them. This module makes
that data without people, from Python solutions that have tests:

1. the program (prompt + solution) is parsed and printed back with :func:`ast.unparse`, so the
   original and every mutant share one formatting and differ only where the bug is;
2. every site of eight AST mutation kinds is listed (:data:`KINDS`); a mutant is one change at
   one site;
3. the original must pass every test and the mutant must fail at least one (run by
   :mod:`selfalign.critique.sandbox` in a subprocess with a time limit; a mutant that hangs past
   the limit fails, as in HumanEval's harness); a mutant that still passes is *equivalent* (it
   survived) and is counted, not kept;
4. each kept bug gets a reference description naming the line and the change
   ("line 5: `<` became `<=`") and the changed line numbers, which the critic metrics use.

Optional, as in the paper: an adversarial filter keeps a bug only if a critic misses it in at
least one of three samples (:func:`selfalign.critique.critic.adversarial_filter`; `adversarial_critic` in
the config).

Deviations from the paper: the bugs are mechanical mutations (mutation testing's operators),
not human-written subtle bugs, so they are easier and less varied than CriticGPT's; the
reference description is generated from the change, not written by a person; comments of the
original are lost by the round trip through the AST.
"""

from __future__ import annotations

import ast
import copy
import difflib
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from selfalign.critique.sandbox import TestRun, run_many
from selfalign.data.io import DataError, iter_jsonl

#: the mutation kinds, in the order the issue lists them
KINDS = ("comparison_flip", "off_by_one", "operator_swap", "and_or_swap", "dropped_guard",
         "negated_return", "swapped_arguments", "wrong_variable")

_CMP_FLIP: dict[type, type] = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
                               ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In,
                               ast.Is: ast.IsNot, ast.IsNot: ast.Is}
_BIN_SWAP: dict[type, type] = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv,
                               ast.FloorDiv: ast.Mult, ast.Div: ast.Mult, ast.Mod: ast.FloorDiv}
_OP_TEXT: dict[type, str] = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
            ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not", ast.Add: "+", ast.Sub: "-",
            ast.Mult: "*", ast.FloorDiv: "//", ast.Div: "/", ast.Mod: "%", ast.And: "and", ast.Or: "or"}


@dataclass(frozen=True)
class CodeProblem:
    """A function with tests, in HumanEval's shape: ``prompt + solution`` is the program and
    ``test`` defines ``check(candidate)``."""
    task_id: str
    prompt: str
    solution: str
    test: str
    entry_point: str

    @property
    def program(self) -> str:
        return self.prompt + self.solution


@dataclass
class Mutant:
    task_id: str
    kind: str
    site: int  # which site of this kind (0-based, in AST walk order)
    original: str  # the normalised original program
    code: str  # the mutated program
    lines: list[int]  # 1-based lines of `code` that the change touches
    description: str  # "line 5: `<` became `<=`"
    before: str  # the changed text, before and after
    after: str
    outcome: str = ""  # test outcome of the mutant: fail or timeout (kept) | pass (equivalent) | error
    meta: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------ loaders
_FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


def load_humaneval(path: str | Path) -> list[CodeProblem]:
    """HumanEval's JSONL (optionally .gz): task_id, prompt, canonical_solution, test, entry_point."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file")
    out = []
    for n, row in iter_jsonl(p):
        for k in _FIELDS:
            if not isinstance(row.get(k), str) or not row[k]:
                raise DataError(f"{p}:{n}: field '{k}' must be a non-empty string")
        out.append(CodeProblem(row["task_id"], row["prompt"], row["canonical_solution"], row["test"],
                               row["entry_point"]))
    if not out:
        raise DataError(f"{p}: no problems")
    return out


def bundled_problems() -> list[CodeProblem]:
    """The project's own small functions with tests (for CI and the demo), in HumanEval's format."""
    return load_humaneval(Path(__file__).resolve().parents[1] / "data" / "bundled" / "code_problems.jsonl")


# ------------------------------------------------------------------ mutation sites
def _sites(tree: ast.AST, kind: str) -> list[tuple[Any, ...]]:
    """(node, detail...) for every place mutation ``kind`` applies, in walk order."""
    out: list[tuple[Any, ...]] = []
    funcs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for node in ast.walk(tree):
        if kind == "comparison_flip" and isinstance(node, ast.Compare):
            out.extend((node, i) for i, op in enumerate(node.ops) if type(op) in _CMP_FLIP)
        elif kind == "off_by_one" and isinstance(node, ast.Constant) and type(node.value) is int:
            out.extend([(node, +1), (node, -1)])
        elif kind == "operator_swap" and isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in _BIN_SWAP:
            out.append((node,))
        elif kind == "and_or_swap" and isinstance(node, ast.BoolOp):
            out.append((node,))
        elif kind == "dropped_guard":
            for name in ("body", "orelse"):
                stmts = getattr(node, name, None)
                if isinstance(stmts, list) and len(stmts) > 1:
                    for i, st in enumerate(stmts):
                        if isinstance(st, ast.If) and not st.orelse and isinstance(
                                st.body[-1], (ast.Return, ast.Continue, ast.Break, ast.Raise)):
                            out.append((node, name, i))
        elif kind == "negated_return" and isinstance(node, ast.Return) and node.value is not None:
            v = node.value
            if isinstance(v, (ast.Compare, ast.BoolOp)) or (isinstance(v, ast.Constant) and isinstance(v.value, bool)) \
                    or (isinstance(v, ast.UnaryOp) and isinstance(v.op, ast.Not)):
                out.append((node,))
        elif kind == "swapped_arguments" and isinstance(node, ast.Call) and len(node.args) >= 2 \
                and not any(isinstance(a, ast.Starred) for a in node.args[:2]) \
                and ast.dump(node.args[0]) != ast.dump(node.args[1]):
            out.append((node,))
    if kind == "wrong_variable":
        for fn in funcs:
            names = sorted({a.arg for a in fn.args.args + fn.args.kwonlyargs} |
                           {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)})
            for n in ast.walk(fn):
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id in names and len(names) > 1:
                    other = names[(names.index(n.id) + 1) % len(names)]
                    out.append((n, other))
    return out


def _apply(node_copy: Any, kind: str, detail: tuple[Any, ...]) -> tuple[str, str]:
    """Mutate ``node_copy`` in place; returns (before, after) texts."""
    if kind == "comparison_flip":
        i = detail[0]
        old = type(node_copy.ops[i])
        node_copy.ops[i] = _CMP_FLIP[old]()
        return _OP_TEXT[old], _OP_TEXT[_CMP_FLIP[old]]
    if kind == "off_by_one":
        before = repr(node_copy.value)
        node_copy.value = node_copy.value + detail[0]
        return before, repr(node_copy.value)
    if kind == "operator_swap":
        old = type(node_copy.op)
        node_copy.op = _BIN_SWAP[old]()
        return _OP_TEXT[old], _OP_TEXT[_BIN_SWAP[old]]
    if kind == "and_or_swap":
        old = type(node_copy.op)
        node_copy.op = ast.Or() if old is ast.And else ast.And()
        return _OP_TEXT[old], "or" if old is ast.And else "and"
    if kind == "dropped_guard":
        name, i = detail
        stmts = getattr(node_copy, name)
        before = ast.unparse(stmts[i]).splitlines()[0]
        del stmts[i]
        return before, "(removed)"
    if kind == "negated_return":
        before = ast.unparse(node_copy.value)
        v = node_copy.value
        if isinstance(v, ast.Constant):
            node_copy.value = ast.Constant(not v.value)
        elif isinstance(v, ast.UnaryOp) and isinstance(v.op, ast.Not):
            node_copy.value = v.operand
        else:
            node_copy.value = ast.UnaryOp(ast.Not(), v)
        return f"return {before}", f"return {ast.unparse(node_copy.value)}"
    if kind == "swapped_arguments":
        before = ast.unparse(node_copy)
        node_copy.args[0], node_copy.args[1] = node_copy.args[1], node_copy.args[0]
        return before, ast.unparse(node_copy)
    if kind == "wrong_variable":
        before = node_copy.id
        node_copy.id = detail[0]
        return before, detail[0]
    raise ValueError(f"unknown mutation kind {kind!r}; known: {', '.join(KINDS)}")


def _locate(tree: ast.AST, target: ast.AST) -> list[Any]:
    """The path of attribute names / indices from ``tree`` to ``target``."""
    def walk(node: Any, path: list[Any]) -> list[Any] | None:
        if node is target:
            return path
        for name, value in ast.iter_fields(node):
            if isinstance(value, ast.AST):
                p = walk(value, path + [name])
                if p is not None:
                    return p
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, ast.AST):
                        p = walk(item, path + [name, i])
                        if p is not None:
                            return p
        return None
    found = walk(tree, [])
    if found is None:
        raise ValueError("node not in tree")
    return found


def _follow(tree: Any, path: list[Any]) -> Any:
    node = tree
    for step in path:
        node = node[step] if isinstance(step, int) else getattr(node, step)
    return node


def _changed_lines(original: str, code: str) -> list[int]:
    """1-based lines of ``code`` that differ from ``original`` (for a deletion: the line that now
    stands where the removed code was)."""
    a, b = original.splitlines(), code.splitlines()
    lines: list[int] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag in ("replace", "insert"):
            lines.extend(range(j1 + 1, j2 + 1))
        elif tag == "delete":
            lines.append(min(j1 + 1, len(b)))
    return sorted(set(lines))


def _prompt_lines(prompt: str) -> int:
    """How many lines the prompt (signature, docstring) takes once normalised: the solution starts
    after them. A prompt that ends in a bare ``def ...:`` is parsed with a placeholder body."""
    if not prompt.strip():
        return 0
    try:
        return len(ast.unparse(ast.parse(prompt)).splitlines())
    except SyntaxError:
        return len(ast.unparse(ast.parse(prompt + "    pass\n")).splitlines()) - 1


def normalise(program: str) -> str:
    """The program as :func:`ast.unparse` prints it (the formatting every mutant shares)."""
    return ast.unparse(ast.parse(program)) + "\n"


def mutants(problem: CodeProblem, kinds: tuple[str, ...] = KINDS) -> Iterator[Mutant]:
    """Every single-site mutant of ``problem``'s program, kind by kind (not yet tested)."""
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"unknown mutation kind {kind!r}; known: {', '.join(KINDS)}")
    tree = ast.parse(problem.program)
    original = ast.unparse(tree) + "\n"
    body_start = _prompt_lines(problem.prompt)
    for kind in kinds:
        for site, (node, *detail) in enumerate(_sites(tree, kind)):
            path = _locate(tree, node)
            mutated = copy.deepcopy(tree)
            before, after = _apply(_follow(mutated, path), kind, tuple(detail))
            try:
                code = ast.unparse(ast.fix_missing_locations(mutated)) + "\n"
                compile(code, "<mutant>", "exec")
            except (SyntaxError, ValueError):
                continue
            if code == original:
                continue
            lines = _changed_lines(original, code)
            if not lines:
                continue
            where = f"line {lines[0]}" if len(lines) == 1 else f"lines {lines[0]}-{lines[-1]}"
            change = f"`{before}` was removed" if after == "(removed)" else f"`{before}` became `{after}`"
            yield Mutant(problem.task_id, kind, site, original, code, lines, f"{where}: {change}", before, after,
                         meta={"in_solution": all(ln > body_start for ln in lines),
                               "first_solution_line": body_start + 1})


# ------------------------------------------------------------------ the tampering pass
@dataclass
class TamperResult:
    kept: list[Mutant]
    equivalent: list[Mutant]  # still pass every test
    other: list[Mutant]  # the mutant program does not even load (error)
    broken_originals: list[tuple[str, TestRun]]  # problems whose original does not pass
    candidates: int

    def counts(self) -> dict[str, Any]:
        by_kind: dict[str, dict[str, int]] = {k: {"kept": 0, "equivalent": 0, "other": 0} for k in KINDS}
        for name, group in (("kept", self.kept), ("equivalent", self.equivalent), ("other", self.other)):
            for m in group:
                by_kind[m.kind][name] += 1
        return {"candidates": self.candidates, "kept": len(self.kept), "equivalent": len(self.equivalent),
                "load_errors": len(self.other), "broken_originals": len(self.broken_originals),
                "kinds_kept": sum(1 for v in by_kind.values() if v["kept"]), "by_kind": by_kind}


def tamper(problems: list[CodeProblem], per_problem: int = 4, kinds: tuple[str, ...] = KINDS, seed: int = 0,
           solution_only: bool = True, timeout: float = 5.0, workers: int = 2,
           progress: Callable[[int, int], None] | None = None) -> TamperResult:
    """Mutants of every problem, at most ``per_problem`` kept each (kinds spread round-robin, in
    a seeded order), each verified: original passes every test, mutant fails at least one.
    ``solution_only`` mutates only the solution's lines, never the given prompt/docstring."""
    rng = random.Random(seed)
    originals = run_many([(normalise(p.program), p.test, p.entry_point) for p in problems], timeout, workers)
    broken = [(p.task_id, r) for p, r in zip(problems, originals) if not r.passed]
    kept: list[Mutant] = []
    equivalent: list[Mutant] = []
    other: list[Mutant] = []
    candidates = 0
    for done, (p, orig) in enumerate(zip(problems, originals)):
        if not orig.passed:
            continue
        pool: dict[str, list[Mutant]] = {}
        for m in mutants(p, kinds):
            if solution_only and not m.meta["in_solution"]:
                continue
            pool.setdefault(m.kind, []).append(m)
        for ms in pool.values():
            rng.shuffle(ms)
        order = sorted(pool, key=lambda k: rng.random())
        candidates += sum(len(v) for v in pool.values())
        got = 0
        while got < per_problem and any(pool.values()):
            batch: list[Mutant] = []
            for k in order:  # one candidate of each kind still in the pool, round-robin
                if pool[k] and got + len(batch) < per_problem:
                    batch.append(pool[k].pop())
            for m, r in zip(batch, run_many([(m.code, p.test, p.entry_point) for m in batch], timeout, workers)):
                m.outcome = r.outcome
                m.meta["test_detail"] = r.detail
                if r.outcome in ("fail", "timeout"):  # a hang fails the tests too (as in HumanEval's harness)
                    kept.append(m)
                    got += 1
                elif r.outcome == "pass":
                    equivalent.append(m)
                else:
                    other.append(m)
        if progress:
            progress(done + 1, len(problems))
    return TamperResult(kept, equivalent, other, broken, candidates)


# ------------------------------------------------------------------ the stage
@dataclass
class TamperConfig:
    data: str = "bundled"  # bundled | a HumanEval-format JSONL(.gz)
    per_problem: int = 4  # kept bugs per problem at most
    kinds: list[str] = field(default_factory=lambda: list(KINDS))
    n_problems: int = 0  # 0 = all
    timeout: float = 5.0  # seconds per test run
    workers: int = 2
    seed: int = 0
    out: str = "runs/critique-tamper"
    adversarial_critic: str = ""  # a critic: keep a bug only if it misses it in 1 of adversarial_samples
    adversarial_samples: int = 3

    def __post_init__(self) -> None:
        bad = [k for k in self.kinds if k not in KINDS]
        if bad:
            raise ValueError(f"unknown mutation kind(s) {bad}; known: {', '.join(KINDS)}")
        if self.per_problem < 1 or self.workers < 1 or self.n_problems < 0:
            raise ValueError("per_problem and workers must be >= 1, n_problems >= 0")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {self.timeout}")
        if self.adversarial_samples < 1:
            raise ValueError(f"adversarial_samples must be >= 1, got {self.adversarial_samples}")


def load_problems(data: str) -> list[CodeProblem]:
    return bundled_problems() if data == "bundled" else load_humaneval(data)


def mutant_from_row(row: dict[str, Any], where: str = "") -> Mutant:
    """A kept mutant back from a tamper stage's ``rows.jsonl``."""
    try:
        return Mutant(**{k: row[k] for k in ("task_id", "kind", "site", "original", "code", "lines", "description",
                                             "before", "after")}, outcome=row.get("outcome", ""),
                      meta=row.get("meta", {}))
    except KeyError as e:
        raise DataError(f"{where}: field {e} missing (not a tamper stage's rows.jsonl?)") from None


def run(cfg: TamperConfig, progress: Callable[[int, int], None] | None = None) -> TamperResult:
    problems = load_problems(cfg.data)
    if cfg.n_problems:
        problems = problems[:cfg.n_problems]
    return tamper(problems, cfg.per_problem, tuple(cfg.kinds), cfg.seed, timeout=cfg.timeout, workers=cfg.workers,
                  progress=progress)
