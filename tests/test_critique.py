"""Tampering (AST mutants verified by their tests in a sandbox) and the critic metrics, proven on
controlled critics: an oracle that quotes the changed line, and one that quotes random lines."""

import gzip
import json
import random

import pytest

from selfalign.critique.highlights import parse_highlights, random_cbi, score_critique, summarise
from selfalign.critique.sandbox import run_tests
from selfalign.critique.tamper import KINDS, CodeProblem, bundled_problems, load_humaneval, mutants, normalise, tamper
from selfalign.data.io import DataError


@pytest.fixture(scope="module")
def tampered():
    return tamper(bundled_problems(), per_problem=4, timeout=3.0)


def test_every_kept_bug_fails_and_every_original_passes(tampered):
    """The invariant of the data: re-run independently, each original passes its tests and each
    kept mutant does not; equivalent mutants (still passing) were counted, not kept."""
    problems = {p.task_id: p for p in bundled_problems()}
    c = tampered.counts()
    assert c["broken_originals"] == 0
    assert c["kept"] >= 60 and c["kinds_kept"] >= 6
    for m in tampered.kept[::5]:
        p = problems[m.task_id]
        assert run_tests(m.original, p.test, p.entry_point, timeout=3.0).passed
        assert not run_tests(m.code, p.test, p.entry_point, timeout=3.0).passed, m.description
        assert m.original != m.code and m.lines
    for m in tampered.equivalent:
        p = problems[m.task_id]
        assert run_tests(m.code, p.test, p.entry_point, timeout=3.0).passed


def test_a_mutant_changes_one_site_and_describes_it():
    p = CodeProblem("t", "def clamp(x, lo, hi):\n    \"\"\"doc\"\"\"\n",
                    "    if x < lo:\n        return lo\n    return x\n", "def check(c):\n    assert c(1, 2, 3) == 2\n", "clamp")
    flips = [m for m in mutants(p, ("comparison_flip",))]
    assert len(flips) == 1
    m = flips[0]
    assert m.description == "line 3: `<` became `<=`"
    assert m.code.splitlines()[2].strip() == "if x <= lo:"
    assert m.original == normalise(p.program)
    drops = list(mutants(p, ("dropped_guard",)))
    assert drops and drops[0].description == "line 3: `if x < lo:` was removed"
    assert {m.kind for m in mutants(p)} >= {"comparison_flip", "dropped_guard", "wrong_variable"}
    with pytest.raises(ValueError, match="unknown mutation kind"):
        list(mutants(p, ("typo",)))


def test_an_equivalent_mutant_is_counted_not_kept():
    # `x >= 0` vs `x > 0` can't be told apart by tests that never use 0
    p = CodeProblem("eq", "def pos(x):\n", "    return x >= 0\n", "def check(c):\n    assert c(3) and not c(-2)\n", "pos")
    r = tamper([p], per_problem=10, kinds=("comparison_flip",), timeout=3.0)
    assert [m.after for m in r.equivalent] == [">"]
    assert r.kept == []


def test_a_broken_original_is_reported_not_mutated():
    p = CodeProblem("bad", "def f(x):\n", "    return x + 1\n", "def check(c):\n    assert c(1) == 3\n", "f")
    r = tamper([p], timeout=3.0)
    assert [t for t, _ in r.broken_originals] == ["bad"] and r.kept == []


def test_sandbox_stops_hangs_and_writes_outside(tmp_path):
    t = "def check(c):\n    assert c() == 1\n"
    assert run_tests("def f():\n    while True:\n        pass\n", t, "f", timeout=1.0).outcome == "timeout"
    target = tmp_path / "outside.txt"
    r = run_tests(f"def f():\n    open({str(target)!r}, 'w').write('x')\n    return 1\n", t, "f", timeout=5.0)
    assert r.outcome == "fail" and "outside the sandbox" in r.detail and not target.exists()
    assert run_tests("def f():\n    open('inside.txt', 'w').write('x')\n    return 1\n", t, "f").passed
    assert run_tests("def f(:\n", t, "f").outcome == "error"


def test_humaneval_loader_names_file_line_and_field(tmp_path):
    good = {"task_id": "HumanEval/0", "prompt": "def f(x):\n", "canonical_solution": "    return x\n",
            "test": "def check(c):\n    assert c(1) == 1\n", "entry_point": "f"}
    path = tmp_path / "he.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write(json.dumps(good) + "\n" + json.dumps({**good, "test": ""}) + "\n")
    with pytest.raises(DataError, match=r"he.jsonl.gz:2: field 'test'"):
        load_humaneval(path)


def test_humaneval_shared_data_tampers(shared_data):
    problems = load_humaneval(shared_data / "humaneval" / "HumanEval.jsonl.gz")[:12]
    r = tamper(problems, per_problem=3, timeout=5.0)
    assert r.counts()["broken_originals"] == 0 and len(r.kept) >= 20


# ------------------------------------------------------------------ critic metrics
def _oracle(m) -> str:
    line = m.code.splitlines()[m.lines[0] - 1].strip()
    return f"The bug:\n```python\n{line}\n```\nThis line was changed ({m.description})."


def test_an_oracle_critic_scores_full_cbi_and_no_false_alarms(tampered):
    scores = [score_critique(_oracle(m), m.code, m.lines, m.after) for m in tampered.kept]
    scores += [score_critique("Looks correct; no bugs.", m.original) for m in tampered.kept[:30]]
    s = summarise(scores, resamples=200)
    assert s["cbi"]["value"] == 1.0 and s["false_alarm"]["value"] == 0.0
    assert s["cbi_minus_random"]["lo"] > 0.5  # far above chance


def test_a_random_critic_matches_the_random_baseline(tampered):
    rng = random.Random(0)
    scores = []
    for m in tampered.kept * 3:
        lines = [ln.strip() for ln in m.code.splitlines()[m.meta.get("first_solution_line", 1) - 1:] if ln.strip()]
        body = [ln for ln in lines if not ln.startswith(("def ", '"""', "from ", "import "))]
        picks = rng.sample(body, k=min(2, len(body)))
        crit = "".join(f"```\n{q}\n```\nsuspicious\n" for q in picks)
        scores.append(score_critique(crit, m.code, m.lines, "", first_solution_line=m.meta["first_solution_line"]))
    s = summarise(scores, resamples=300)
    d = s["cbi_minus_random"]
    assert d["lo"] <= 0.0 <= d["hi"], s  # no better than chance, within the interval
    assert s["spurious_per_critique"]["value"] > 0.5


def test_highlight_parsing_and_matching():
    hs = parse_highlights("x\n```\nreturn a\n```\nwrong\n```py\nif b:\n```\nalso\n```\nunclosed")
    assert [h.quote for h in hs] == ["return a", "if b:", "unclosed"]
    prog = "def f(a, b):\n    if b:\n        return a\n    return b\n"
    s = score_critique("```\nreturn a\n```\nbad", prog, bug_lines=[3])
    assert s.caught and s.spurious == 0 and s.n_highlights == 1
    s = score_critique("```\nreturn b\n```\nbad\n```\nnot in the code\n```\n?", prog, bug_lines=[3])
    assert not s.caught and s.spurious == 1 and s.unmatched == 1
    assert score_critique("no highlights", prog).false_alarm is False
    assert random_cbi(4, 1, 2) == pytest.approx(0.5)
    assert set(KINDS) >= {"comparison_flip", "wrong_variable"}


# ------------------------------------------------------------------ stages on scripted models
def test_critic_eval_with_an_oracle_and_a_silent_critic(tampered):
    from selfalign.critique.critic import CriticConfig, evaluate_critic, items_from
    from selfalign.models.scripted import ScriptedModel
    from selfalign.store.cache import CachedModel, Store

    items = items_from(tampered.kept[:20], bundled_problems())
    by_code = {it.code.rstrip(): it for it in items}

    def oracle(text, index, seed):
        it = next(v for k, v in by_code.items() if k in text)
        if "Answer Yes or No" in text:
            return "Yes" if it.tampered else "No"
        if not it.tampered:
            return "No bugs found."
        line = it.code.splitlines()[it.bug_lines[0] - 1].strip()
        return f"```python\n{line}\n```\n{it.description}"

    store = Store(":memory:")
    rows, s = evaluate_critic(CachedModel(ScriptedModel(default=oracle), store, progress=False), items,
                              CriticConfig(bootstrap=200))
    assert s["cbi"]["value"] == 1.0 and s["false_alarm"]["value"] == 0.0 and s["clean"] >= 5
    assert s["dc"]["discrimination"] == 1.0 and s["dc"]["gap"] == 0.0 and s["dc"]["unscored"] == 0
    assert len(rows) == len(items)
    # a critic that never quotes anything: CBI 0 = the random baseline with 0 highlights; unparsed yes/no counted
    rows, s = evaluate_critic(CachedModel(ScriptedModel(default="Hmm, maybe.", model_id="silent"), store, progress=False), items,
                              CriticConfig(bootstrap=200))
    assert s["cbi"]["value"] == 0.0 and s["random_cbi"]["value"] == 0.0
    assert s["dc"]["unscored"] == len(items)


def test_best_of_n_with_the_gold_scorer_never_falls_and_makes_pairs():
    from selfalign.critique.bon import BonConfig, best_of_n, bon_kl, gold_scorer
    from selfalign.data.formats import QAItem
    from selfalign.models.scripted import ScriptedModel

    items = [QAItem(f"q{k}", f"Question {k}?", (f"ans{k}",)) for k in range(6)]

    def policy(text, index, seed):  # question k is answered right only by sample k+1
        k = int(text.split("Question ")[1].split("?")[0])
        return f"It is ans{k}." if index == k + 1 else "No idea, perhaps zzz."

    from selfalign.store.cache import CachedModel, Store

    model = CachedModel(ScriptedModel(default=policy), Store(":memory:"), progress=False)
    sft, pairs, s = best_of_n(model, items, gold_scorer, BonConfig(ns=[1, 2, 4, 8], bootstrap=100))
    acc = [r["accuracy"] for r in s["table"]]
    assert acc == sorted(acc) and acc[0] == 0.0 and acc[-1] == 1.0
    assert acc == [0.0, 1 / 6, 3 / 6, 6 / 6]  # sample k+1 lies inside the first N for k+1 < N
    assert [r["kl"] for r in s["table"]] == [bon_kl(n) for n in (1, 2, 4, 8)]
    assert len(pairs) == 6 and all(p["margin"] == 1.0 for p in pairs)
    assert all("ans" in r["completion"][0]["content"] for r in sft)
    with pytest.raises(ValueError, match="scorer must be one of"):
        BonConfig(scorer="vibes")


def test_critique_cli_end_to_end(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from selfalign.cli import app

    monkeypatch.setenv("SELFALIGN_STORE", str(tmp_path / "store.sqlite"))
    r = CliRunner().invoke(app, ["critique", "tamper", "--out", str(tmp_path / "t"), "--set", "per_problem=2",
                                 "--set", "n_problems=6", "--set", "timeout=3"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "t" / "report.html").exists() and (tmp_path / "t" / "steps" / "critique-tamper.json").exists()
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"rules": {"Answer Yes or No": "Yes"}, "default": "```\nreturn n\n```\nwrong"}))
    r = CliRunner().invoke(app, ["critique", "eval", "--critic", f"scripted:{rules}", "--tampered",
                                 str(tmp_path / "t" / "rows.jsonl"), "--out", str(tmp_path / "e")])
    assert r.exit_code == 0, r.output
    assert "CBI" in r.output and (tmp_path / "e" / "report.html").exists()
    rep = json.loads((tmp_path / "e" / "report.json").read_text())
    assert rep["summary"]["tampered"] >= 6 and rep["summary"]["dc"]["discrimination"] == 0.5
    r = CliRunner().invoke(app, ["critique", "bon", "--model", f"scripted:{rules}", "--out", str(tmp_path / "b"),
                                 "--set", "n_questions=5", "--set", "ns=[1,2,4]"])
    assert r.exit_code == 0, r.output
    assert "N=4" in r.output and (tmp_path / "b" / "pairs.jsonl").exists()
    r = CliRunner().invoke(app, ["critique", "refine", "--model", f"scripted:{rules}", "--out", str(tmp_path / "r"),
                                 "--set", "n_questions=5", "--rounds", "2"])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    assert len(rep["summary"]["loops"]) == 4 and rep["summary"]["questions"] == 5
    assert (tmp_path / "r" / "report.html").read_text().count("<tr>") >= 5
    r = CliRunner().invoke(app, ["critique", "fsbs", "--critic", f"scripted:{rules}", "--tampered",
                                 str(tmp_path / "t" / "rows.jsonl"), "--out", str(tmp_path / "f"),
                                 "--set", "n_tampered=3", "--set", "n_clean=2", "--set", "d=2"])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "f" / "report.json").read_text())
    assert rep["summary"]["candidates"] == 5 * (4 + 2 * 4) and "p75" in r.output
    # bad input: one line, exit 2, before anything runs
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "selfalign.cli", "critique", "eval", "--tampered",
                        str(tmp_path / "missing.jsonl")], capture_output=True, text=True)
    assert p.returncode == 2 and "no such file" in p.stderr and "Traceback" not in p.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"task_id": "selfalign/0"}) + "\n")
    p = subprocess.run([sys.executable, "-m", "selfalign.cli", "critique", "eval", "--tampered", str(bad)],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "bad.jsonl:1: field 'kind' missing" in p.stderr, p.stderr
    p = subprocess.run([sys.executable, "-m", "selfalign.cli", "critique", "refine", "--critic", "gpt5"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "unknown model 'gpt5'" in p.stderr and "Traceback" not in p.stderr, p.stderr


def _refine_policy(text, index, seed):
    """q1's first answer is wrong and a critique-led refinement fixes it; q2's is right (the critic
    says so; a direct refinement breaks it); q3 stays wrong."""
    q = "q1" if "Question one" in text else "q2" if "Question two" in text else "q3"
    if "Answer the question briefly" in text:
        return {"q1": "It is 5.", "q2": "Paris.", "q3": "Blue."}[q]
    if "Point out what is wrong" in text:
        return "No problems." if q == "q2" else "The number is wrong."
    if "Critique:" in text:
        return {"q1": "It is 4.", "q2": "Paris.", "q3": "Teal."}[q]
    if "Write an improved answer." in text:  # direct refinement, no critique
        return {"q1": "It is 4.", "q2": "London.", "q3": "Blue."}[q]
    if "Answer Yes or No" in text:
        return "Yes" if q != "q2" else "No"
    return "?"


def _refine_items():
    from selfalign.data.formats import QAItem

    return [QAItem("q1", "Question one: 2+2?", ("4",)), QAItem("q2", "Question two: capital of France?", ("Paris",)),
            QAItem("q3", "Question three: colour of grass?", ("green",))]


def test_refine_gated_loop_keeps_only_improvements_and_counts_fixes_and_regressions():
    from selfalign.critique.refine import RefineConfig, refine
    from selfalign.models.scripted import ScriptedModel
    from selfalign.store.cache import CachedModel, Store

    class NoScore(ScriptedModel):
        can_score = False  # critiqueability then comes from the parsed yes/no answer

    model = CachedModel(NoScore(default=_refine_policy), Store(":memory:"), progress=False)
    rows, pairs, s = refine(model, _refine_items(), RefineConfig(rounds=2, bootstrap=100))
    by = {(lp["mode"], lp["gating"]): lp for lp in s["loops"]}
    assert s["initial"]["value"] == 1 / 3
    # critique: q1 fixed, q2 stopped by "No problems.", q3 refined to another wrong answer
    for g in ("gated", "ungated"):
        assert (by["critique", g]["fixes"], by["critique", g]["regressions"]) == (1, 0)
        assert by["critique", g]["stopped"] == 1  # q2, once: a stopped question is not asked again
    # direct refinement breaks q2 (Paris -> London): the ungated loop keeps the regression, the gate refuses it
    assert (by["direct", "ungated"]["fixes"], by["direct", "ungated"]["regressions"]) == (1, 1)
    assert (by["direct", "gated"]["fixes"], by["direct", "gated"]["regressions"]) == (1, 0)
    assert by["direct", "gated"]["accuracy"]["value"] == 2 / 3 and by["direct", "ungated"]["accuracy"]["value"] == 1 / 3
    assert all(lp["per_round"][0] == 1 / 3 for lp in s["loops"])
    # one preference pair per accepted gated refinement: q1 in each mode, chosen = the fix
    assert sorted(p["meta"]["mode"] for p in pairs) == ["critique", "direct"]
    assert all(p["chosen"][0]["content"] == "It is 4." and p["rejected"][0]["content"] == "It is 5." and p["margin"] == 1.0
               for p in pairs)
    assert s["critiqueability"]["auroc"] == 1.0 and s["critiqueability"]["unscored"] == 0
    assert len(rows) == 3 * 4


def test_refine_unscored_gate_keeps_the_answer_and_helpful_critique_is_chosen():
    from selfalign.critique.refine import RefineConfig, refine
    from selfalign.models.scripted import ScriptedModel
    from selfalign.store.cache import CachedModel, Store

    class NoScore(ScriptedModel):
        can_score = False

    def critic(text, index, seed):  # sample 0 is useless; sample 1 names the problem
        if "Does the critique point out a real problem" in text:
            return "Yes" if "number is wrong" in text else "No"
        if "Point out what is wrong" in text:
            return ["Nice weather today.", "The number is wrong."][index % 2]
        return "?"

    def policy(text, index, seed):
        if "Critique:" in text:
            return "It is 4." if "number is wrong" in text else "It is 7."
        return _refine_policy(text, index, seed)

    store = Store(":memory:")
    pol = CachedModel(NoScore(default=policy), store, progress=False)
    crit = CachedModel(NoScore(default=critic, model_id="critic"), store, progress=False)
    items = _refine_items()[:1]
    _, _, s = refine(pol, items, RefineConfig(modes=["critique"], critiques=2, temperature=1.0, critiqueability=False,
                                              bootstrap=50), critic=crit)
    assert [lp["fixes"] for lp in s["loops"]] == [1, 1]  # the helpful critique was the one used
    # a judge whose replies never parse: every gated comparison is unscored and nothing is accepted
    judge = CachedModel(NoScore(default="Great answer!", model_id="judge"), store, progress=False)
    _, pairs, s = refine(pol, items, RefineConfig(modes=["direct"], scorer="judge", critiqueability=False, bootstrap=50),
                         judge=judge)
    gated = [lp for lp in s["loops"] if lp["gating"] == "gated"][0]
    assert gated["unscored"] == 1 and gated["accepted"] == 0 and gated["fixes"] == 0 and pairs == []
    with pytest.raises(ValueError, match="modes must be"):
        RefineConfig(modes=["think harder"])
    with pytest.raises(ValueError, match="critiques > 1 needs temperature"):
        RefineConfig(critiques=3)


def _fsbs_items():
    from selfalign.critique.critic import CriticItem

    code = "def f(n):\n    if n < 0:\n        return 0\n    total = n * 2\n    return total\n"
    return [CriticItem("bug", "t", code, (2,), "<", "line 2: `<=` became `<`", "comparison_flip", 2),
            CriticItem("clean", "t", code, first_solution_line=2)]


def _fsbs_critic(text, index, seed):
    """Continuations of a forced ``` : sample 0 quotes the bug line, 1 a clean line, 2 misquotes,
    3 quotes the bug line and then adds a paragraph without a highlight."""
    return ["\nif n < 0:\n```\nthe comparison is wrong.", "\ntotal = n * 2\n```\nshould be n * 3.",
            "\nnothing real\n```\nhmm.", "\nif n < 0:\n```\nwrong bound.\n\nOtherwise it looks fine."][index % 4]


def test_fsbs_samples_28_candidates_keeps_the_top_k_and_continues_their_kept_text():
    from selfalign.critique.fsbs import FsbsConfig, candidates_per_item, choose, search, strip_last_paragraph
    from selfalign.models.scripted import ScriptedModel
    from selfalign.store.cache import CachedModel, Store

    backend = ScriptedModel(default=_fsbs_critic)
    critic = CachedModel(backend, Store(":memory:"), progress=False)
    items = _fsbs_items()

    def by_bug(items_, cands):  # a reward that likes quoting the bug line, less each extra highlight
        return [float("if n < 0" in c.text) - 0.01 * c.highlights + 0.001 * (c.n_tokens % 7) for c in cands]

    cfg = FsbsConfig(bootstrap=50)
    cands = search(critic, items, cfg, by_bug)
    assert candidates_per_item(cfg) == 28 and [len(cs) for cs in cands] == [28, 28]
    assert [sum(c.round == r for c in cands[0]) for r in (1, 2, 3, 4)] == [4, 8, 8, 8]
    for cs in cands:
        r1 = [c for c in cs if c.round == 1]
        top = sorted(range(4), key=lambda j: (-r1[j].score, j))[:2]
        assert sorted({c.parent for c in cs if c.round == 2}) == sorted(top)
        for c in cs:
            if c.parent is not None:  # it continues its parent's text minus a last paragraph without code
                parent = strip_last_paragraph(cs[c.parent].text)
                assert c.text.startswith(parent + "\n\n```") and "Otherwise it looks fine" not in c.text[:len(parent)]
        assert max(c.highlights for c in cs) == 4  # d forced highlights
        most, fewest = choose(cs, 100.0), choose(cs, -100.0)
        assert most.highlights == 4 and fewest.highlights == 1
    # the prompt of a later round carries the kept critique as the assistant's prefill
    later = [r for r in backend.calls if hasattr(r, "prompt") and r.prompt[-1].content.count("```") > 1]
    assert later and all(r.prompt[-1].role == "assistant" and r.prompt[-1].content.endswith("\n\n```") for r in later)


def test_fsbs_metrics_and_the_length_modifier_curve():
    from selfalign.critique.fsbs import FsbsConfig, evaluate
    from selfalign.models.scripted import ScriptedModel
    from selfalign.store.cache import CachedModel, Store

    items = _fsbs_items()
    oracle = CachedModel(ScriptedModel(default="\nif n < 0:\n```\nshould be <=."), Store(":memory:"), progress=False)
    rows, cand_rows, s = evaluate(oracle, items, FsbsConfig(bootstrap=50))
    assert [st["setting"] for st in s["settings"]] == ["first sample", "p10", "p25", "p50", "p75"]
    assert all(st["cbi"]["value"] == 1.0 and st["false_alarm"]["value"] == 1.0 for st in s["settings"])
    assert len(cand_rows) == 56 and s["candidates"] == 56 and s["unscored"] == 0
    critic = CachedModel(ScriptedModel(default=_fsbs_critic), Store(":memory:"), progress=False)
    _, _, s = evaluate(critic, items, FsbsConfig(bootstrap=50))
    lengths = [st["mean_length"] for st in s["settings"][1:]]
    assert lengths == sorted(lengths) and lengths[-1] > lengths[0]  # a larger percentile, longer critiques
    hl = [st["highlights_per_critique_tampered"]["value"] for st in s["settings"][1:]]
    assert hl[-1] >= hl[0]
    with pytest.raises(ValueError, match="cannot exceed n"):
        FsbsConfig(k=5)


def test_elo_between_critics_from_a_pairwise_judge():
    from selfalign.critique.critic import compare_critics
    from selfalign.models.scripted import ScriptedModel
    from selfalign.store.cache import CachedModel, Store

    rows = {name: [{"item": f"i{k}", "sample": 0, "code": f"x = {k}", "critique": f"{name} critique {k}"}
                   for k in range(6)] for name in ("good", "bad", "meh")}

    def judge(text, index, seed):  # prefers "good" over anything, and is position-bound on bad vs meh
        a = text.split("Critique A:\n")[1].split(" critique")[0]
        b = text.split("Critique B:\n")[1].split(" critique")[0]
        if "good" in (a, b):
            return "A" if a == "good" else "B"
        if "x = 5" in text:
            return "maybe"
        return "A"

    res = compare_critics(rows, CachedModel(ScriptedModel(default=judge), Store(":memory:"), progress=False))
    elo = res["elo"]
    assert elo["good"] > elo["bad"] and elo["good"] > elo["meh"] and abs(elo["bad"] - elo["meh"]) < 1
    bm = [p for p in res["pairs"] if {p["a"], p["b"]} == {"bad", "meh"}][0]
    assert (bm["ties"], bm["unscored"]) == (5, 1) and res["judge_flipped"] == 5 and res["judge_unscored"] == 1
    with pytest.raises(ValueError, match="at least two"):
        compare_critics({"good": rows["good"]}, None)


def test_adversarial_filter_keeps_bugs_the_critic_misses_at_least_once(tampered):
    from selfalign.critique.critic import adversarial_filter
    from selfalign.models.scripted import ScriptedModel
    from selfalign.store.cache import CachedModel, Store

    muts = tampered.kept[:10]
    by_code = {m.code.rstrip(): (k, m) for k, m in enumerate(muts)}

    def critic(text, index, seed):  # quotes the changed line; for odd mutants, sample 2 quotes nothing
        code = text.split("```python\n")[1].split("\n```")[0]
        k, m = by_code[code]
        if k % 2 and index == 2:
            return "No bugs found."
        return "```\n" + m.code.splitlines()[m.lines[0] - 1].strip() + "\n```\nthis is wrong."

    kept, counts = adversarial_filter(CachedModel(ScriptedModel(default=critic), Store(":memory:"), progress=False),
                                      muts, bundled_problems(), samples=3)
    assert [by_code[m.code.rstrip()][0] for m in kept] == [1, 3, 5, 7, 9]
    assert counts["adversarial_dropped"] == 5 and all(m.meta["adversarial_caught"] == 2 for m in kept)
