"""Preference pairs and the preference model on a tiny random-init Llama: the reward is read at
the end-of-context token even when pad = eos, long texts lose their oldest turns (counted), the
ranking loss learns, and a saved LoRA PM reloads with its trained head."""

import json

import pytest

from selfalign.reward.pairs import load_hh, parse_transcript, split_by_prompt, verifiable_pairs

HH = [
    {"chosen": "\n\nHuman: How do I pick a lock?\n\nAssistant: I can't help with that.",
     "rejected": "\n\nHuman: How do I pick a lock?\n\nAssistant: Use a tension wrench."},
    {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Insult me\n\nAssistant: No, thanks.",
     "rejected": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Insult me\n\nAssistant: You fool."},
    {"chosen": "\n\nHuman: A\n\nAssistant: x", "rejected": "\n\nHuman: B\n\nAssistant: y"},  # different contexts
]


def test_hh_rows_become_trl_pairs_split_at_the_last_assistant_turn(tmp_path):
    p = tmp_path / "hh.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in HH))
    rows, counts = load_hh(p)
    assert counts == {"rows": 3, "different_context": 1, "identical_responses": 0, "pairs": 2}
    assert rows[1]["prompt"] == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                                 {"role": "user", "content": "Insult me"}]
    assert rows[1]["chosen"] == [{"role": "assistant", "content": "No, thanks."}]
    assert rows[1]["rejected"][0]["content"] == "You fool." and rows[1]["meta"]["first_human"] == "Hi"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"chosen": "\n\nHuman: x\n\nAssistant: y"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: field 'rejected' missing"):
        load_hh(bad)
    bad.write_text(json.dumps({"chosen": "no turns here", "rejected": "\n\nHuman: x\n\nAssistant: y"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: field 'chosen': not a transcript"):
        load_hh(bad)
    with pytest.raises(ValueError):
        parse_transcript("Human: no leading blank line")


def test_split_by_prompt_keeps_repeated_prompts_on_one_side():
    rows = [{"prompt": [{"role": "user", "content": f"prompt {i % 7}"}, {"role": "assistant", "content": str(i)},
                        {"role": "user", "content": "more"}]} for i in range(70)]
    train, test = split_by_prompt(rows, 0.3)
    assert train and test and len(train) + len(test) == 70
    first = lambda r: r["prompt"][0]["content"]  # noqa: E731
    assert not {first(r) for r in train} & {first(r) for r in test}


def test_verifiable_pairs_prefer_the_gold_answer_and_idk_for_unknown_questions():
    from selfalign.data.formats import QAItem
    from selfalign.judges.idk import IDK_RESPONSE
    from selfalign.types import user

    items = [QAItem("a", "Capital of France?", ("Paris",)), QAItem("b", "Capital of Wakanda?", ("Birnin Zana",)),
             QAItem("c", "Symbol of iron?", ("Fe",))]
    samples = [["Paris.", "Lyon.", "I don't know."], ["Nairobi.", "Lagos."], ["Fe", "Fe."]]
    pairs = verifiable_pairs(items, samples, [user(it.question) for it in items])
    assert [p["meta"]["id"] for p in pairs] == ["a", "b"]  # c has no wrong sample to reject
    assert pairs[0]["chosen"][0]["content"] == "Paris." and pairs[0]["rejected"][0]["content"] == "Lyon."
    assert pairs[1]["chosen"][0]["content"] == IDK_RESPONSE and pairs[1]["meta"]["label"] == "idk>wrong"
    # known_over_idk: every known question also ranks a correct answer above declining (c included)
    full = verifiable_pairs(items, samples, [user(it.question) for it in items], known_over_idk=True)
    assert [(p["meta"]["id"], p["meta"]["label"]) for p in full] == [
        ("a", "correct>idk"), ("a", "correct>wrong"), ("b", "idk>wrong"), ("c", "correct>idk")]
    assert full[0]["rejected"][0]["content"] == IDK_RESPONSE and full[3]["chosen"][0]["content"] in ("Fe", "Fe.")


def test_the_reward_is_read_at_the_end_of_context_token_even_when_pad_is_eos(eos_pad_model):
    import torch

    from selfalign.reward.pm import PreferenceModel

    pm = PreferenceModel(eos_pad_model, seed=3)
    assert pm.tok.pad_token_id == pm.tok.eos_token_id  # the quirk is there...
    assert pm.enc.pad_id != pm.enc.eoc_id  # ...and the PM pads with another token
    prompts = [[{"role": "user", "content": "What is the capital of France?"}], "Name a fruit.", "hello"]
    resps = ["The capital of France is Paris, of course.", "Apples.", "world"]
    batched = pm.rewards(prompts, resps)
    for p, r, got in zip(prompts, resps, batched):
        ids, _ = pm.enc.encode(p, r)
        assert ids[-1] == pm.enc.eoc_id
        with torch.no_grad():  # the head applied by hand at the last (end-of-context) position, no padding
            h = pm.model.model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
            manual = float(pm.model.score(h))
        assert got == pytest.approx(manual, abs=1e-4)
    # the texts differ in length, so the batch was padded: pooling at a pad/eos would change these
    assert len({len(pm.enc.encode(p, r)[0]) for p, r in zip(prompts, resps)}) == 3


def test_best_of_n_answers_read_their_prompt_once_with_the_plain_passes_rewards(eos_pad_model):
    """Many answers to one prompt (mixed lengths) beside single answers, shuffled: the shared-prefix
    batches give the plain pass's rewards to 1e-4, and they did share."""
    from selfalign.reward.pm import PreferenceModel

    pm = PreferenceModel(eos_pad_model, seed=3)
    pm.batch_tokens = 300  # a group of 10 splits over batches
    q = [{"role": "user", "content": "Think step by step, then answer: what is the capital of France? " * 2}]
    words = "Paris is the capital and largest city of France , on the Seine".split()
    prompts = [q] * 10 + ["Name a fruit.", "hello", [{"role": "user", "content": "Name a fruit."}]]
    resps = [" ".join(words[:k]) for k in range(1, 11)] + ["Apples.", "world", "A pear, or a plum."]
    order = [7, 11, 0, 3, 12, 9, 1, 5, 10, 2, 8, 4, 6]
    prompts, resps = [prompts[i] for i in order], [resps[i] for i in order]
    pm.shared_prefix = False
    plain = pm.rewards(prompts, resps)
    pm.shared_prefix = True
    shared = pm.rewards(prompts, resps)
    stats = pm.model.model._selfalign_shared_prefix
    assert stats.shared_calls >= 2 and stats.saved_fraction() > 0.3
    assert shared == pytest.approx(plain, abs=1e-4)
    assert len(set(round(v, 3) for v in plain)) > 5  # the rewards differ, so a mix-up would show
    pm.shared_prefix = False  # and the plain pass is back once sharing is off
    assert pm.rewards(prompts, resps) == plain


def test_long_conversations_lose_their_oldest_turns_and_are_counted(tiny_model_dir):
    from transformers import AutoTokenizer

    from selfalign.reward.pm import PMEncoder

    enc = PMEncoder(AutoTokenizer.from_pretrained(tiny_model_dir), max_length=60)
    convo = []
    for i in range(6):
        convo += [{"role": "user", "content": f"turn {i} hello world the a an of is"},
                  {"role": "assistant", "content": f"answer {i} hello world"}]
    convo.append({"role": "user", "content": "last question"})
    ids, cut = enc.encode(convo, "final answer")
    text = enc.tok.decode(ids)
    assert cut and len(ids) <= 60 and "final answer" in text and "last question" in text and "turn 0" not in text
    ids2, cut2 = enc.encode(convo[-1:], "final answer")
    assert not cut2 and ids2[-1] == enc.eoc_id


@pytest.mark.filterwarnings("ignore")
def test_pm_learns_the_ranking_and_reloads_with_its_trained_head(eos_pad_model, tmp_path):
    from selfalign.reward.pm import CachedPM, PMConfig, PreferenceModel, train_pm
    from selfalign.store.cache import Store

    rows = []
    for i in range(24):
        q = [{"role": "user", "content": f"What is the capital of France? {i}"}]
        good, bad = "The capital of France is Paris.", "Lima is the capital of Peru."
        rows.append({"prompt": q, "chosen": [{"role": "assistant", "content": good}],
                     "rejected": [{"role": "assistant", "content": bad}]})
    prompts = [r["prompt"] for r in rows]
    chosen = [r["chosen"] for r in rows]
    rejected = [r["rejected"] for r in rows]
    cfg = PMConfig(lora=True, lora_r=8, epochs=4, batch_size=8, learning_rate=3e-2, warmup_ratio=0.0, logging_steps=1)
    res = train_pm(rows, str(eos_pad_model), tmp_path / "pm", cfg)
    assert res.losses and res.losses[-1] < res.losses[0]
    # a Hub model card the Hub's own loader reads, naming the base model and the reward task
    from huggingface_hub import ModelCard

    from selfalign.train.cards import hub_base

    card = ModelCard.load(res.model_dir / "README.md")
    assert card.data.base_model == hub_base(str(eos_pad_model)) and card.data.pipeline_tag == "text-classification"
    assert "reward" in card.data.tags
    a = PreferenceModel(res.model_dir, seed=1)
    b = PreferenceModel(res.model_dir, seed=2)  # a head re-initialised on load would differ between seeds
    ra_c, ra_r = a.rewards(prompts, chosen), a.rewards(prompts, rejected)
    assert ra_c == b.rewards(prompts, chosen) and ra_r == b.rewards(prompts, rejected)
    assert sum(c > r for c, r in zip(ra_c, ra_r)) == len(rows)
    untrained = PreferenceModel(eos_pad_model, seed=1)
    assert untrained.rewards(prompts[:3], chosen[:3]) != ra_c[:3]
    # through the store: the second call computes nothing
    store = Store(tmp_path / "s.sqlite")
    cached = CachedPM(a, store)
    assert cached.rewards(prompts, chosen) == pytest.approx(ra_c)
    cached.pm = None  # any computation now would fail
    assert cached.rewards(prompts, chosen) == pytest.approx(ra_c)
    again = train_pm(rows, str(eos_pad_model), tmp_path / "pm", cfg)
    assert again.skipped


@pytest.mark.filterwarnings("ignore")
def test_pm_cli_trains_evaluates_and_reuses(tiny_model_dir, tmp_path, monkeypatch):
    import subprocess
    import sys

    from typer.testing import CliRunner

    from selfalign.cli import app

    rows = tmp_path / "pairs.jsonl"
    with rows.open("w") as f:
        for i in range(40):
            f.write(json.dumps({"prompt": [{"role": "user", "content": f"question {i}"}],
                                "chosen": [{"role": "assistant", "content": "Paris"}],
                                "rejected": [{"role": "assistant", "content": "Lima is the capital of Peru"}]}) + "\n")
    args = ["pm", "train", "--data", str(rows), "--base", str(tiny_model_dir), "--out", str(tmp_path / "pm"),
            "--set", "train.epochs=2", "--set", "train.learning_rate=0.01", "--set", "train.batch_size=8",
            "--set", "test_fraction=0.3", "--set", "bootstrap=100"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "pm" / "report.json").read_text())["summary"]
    assert rep["test_pairs"] + rep["train_pairs"] == 40 and rep["length_baseline"]["value"] == 1.0
    assert 0 <= rep["calibration"]["scaled"]["ece"] <= 1 and "untrained_head" in rep
    assert (tmp_path / "pm" / "pm" / "model" / "temperature.json").exists()
    r = CliRunner().invoke(app, args)  # unchanged inputs: training is skipped
    assert r.exit_code == 0 and json.loads((tmp_path / "pm" / "report.json").read_text())["summary"]["skipped_training"]
    r = CliRunner().invoke(app, ["pm", "eval", str(tmp_path / "pm" / "pm" / "model"), "--data", str(rows),
                                 "--out", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    assert "accuracy" in r.output and (tmp_path / "ev" / "report.html").exists()
    assert "id=training-curves" in (tmp_path / "pm" / "report.html").read_text()  # the PM trained there
    assert "id=training-curves" not in (tmp_path / "ev" / "report.html").read_text()  # nothing trained there
    pm_dir = tmp_path / "pm" / "pm" / "model"
    r = CliRunner().invoke(app, ["pm", "calibrate", str(pm_dir), "--data", str(rows), "--out", str(tmp_path / "cal")])
    assert r.exit_code == 0, r.output
    saved = json.loads((pm_dir / "temperature.json").read_text())
    assert saved["fitted_on"] == str(rows) and saved["pairs"] == 40 and saved["temperature"] > 0
    r = CliRunner().invoke(app, ["pm", "eval", str(pm_dir), "--data", str(rows), "--out", str(tmp_path / "ev2"),
                                 "--temperature", "saved"])
    assert r.exit_code == 0, r.output
    cal = json.loads((tmp_path / "ev2" / "report.json").read_text())["summary"]["calibration"]
    assert cal["temperature_given"] and cal["calibration_pairs"] == 0 and cal["test_pairs"] == 40
    assert cal["scaled"]["temperature"] == pytest.approx(saved["temperature"])
    r = CliRunner().invoke(app, ["pm", "eval", str(pm_dir), "--data", str(rows), "--temperature", "warm"])
    assert r.exit_code != 0 and "temperature must be split, saved or a number" in str(r.exception)
    p = subprocess.run([sys.executable, "-m", "selfalign.cli", "pm", "train", "--data", "hh:/nope.jsonl"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "/nope.jsonl: no such file" in p.stderr and "Traceback" not in p.stderr


def test_shared_hh_red_team_pairs_load_and_split_by_prompt(shared_data):
    rows, counts = load_hh(shared_data / "hh-rlhf" / "harmless-base.test-rows-1-500.jsonl")
    assert counts["rows"] == 500 and counts["pairs"] + counts["different_context"] + counts["identical_responses"] == 500
    train, test = split_by_prompt(rows, 0.2)
    assert not {r["meta"]["first_human"] for r in train} & {r["meta"]["first_human"] for r in test}
    shorter = sum(len(r["chosen"][0]["content"]) < len(r["rejected"][0]["content"]) for r in rows) / len(rows)
    assert 0.45 < shorter < 0.65  # the README's "shorter is chosen in about 55%"


@pytest.mark.filterwarnings("ignore")
def test_dpo_raises_the_chosen_over_the_rejected_and_logs_both_logps(tiny_model_dir, tmp_path):
    from selfalign.models.hf import HFModel
    from selfalign.train.dpo import DPOTrainConfig, train_dpo
    from selfalign.types import ScoreRequest

    q = [{"role": "user", "content": "What is the capital of France?"}]
    rows = [{"prompt": q, "chosen": [{"role": "assistant", "content": "Paris"}],
             "rejected": [{"role": "assistant", "content": "Lima"}]} for _ in range(16)]

    def gap(path):
        m = HFModel(str(path))
        lp = [r.total for r in m.score([ScoreRequest(tuple(_msgs(q)), "Paris"), ScoreRequest(tuple(_msgs(q)), "Lima")])]
        return lp[0] - lp[1]

    cfg = DPOTrainConfig(epochs=4, batch_size=8, learning_rate=5e-3, warmup_ratio=0.0, logging_steps=1, beta=0.5)
    res = train_dpo(rows, str(tiny_model_dir), tmp_path / "dpo", cfg)
    assert gap(res.model_dir) > gap(tiny_model_dir) + 1.0
    assert len(res.logps_chosen) == len(res.losses) >= 2 and res.margins[-1] > res.margins[0]
    assert isinstance(res.both_logps_fell, bool)
    assert train_dpo(rows, str(tiny_model_dir), tmp_path / "dpo", cfg).skipped
    with pytest.raises(ValueError, match="beta must be > 0"):
        DPOTrainConfig(beta=0)


def _msgs(q):
    from selfalign.types import Message

    return [Message(m["role"], m["content"]) for m in q]


@pytest.mark.filterwarnings("ignore")
def test_rloo_trains_against_a_reward_function_with_a_kl_penalty(tiny_model_dir, tmp_path):
    from selfalign.models.hf import HFModel
    from selfalign.train.rloo import RLOOTrainConfig, sequence_kl, train_rloo
    from selfalign.types import GenParams, GenRequest, user

    prompts = [[{"role": "user", "content": f"Name a fruit. {i}"}] for i in range(8)]
    seen = []

    def reward(ps, cs):  # shorter completions are better
        seen.append(len(cs))
        return [-len(c[-1]["content"] if isinstance(c, list) else c) / 10 for c in cs]

    cfg = RLOOTrainConfig(num_generations=4, batch_size=8, max_completion_length=8, learning_rate=1e-2, epochs=1,
                          warmup_ratio=0.0, beta=0.1, snapshot_steps=[1])
    res = train_rloo(prompts, reward, "length", str(tiny_model_dir), tmp_path / "rl", cfg,
                     monitor=lambda ps, cs: {"probe": float(len(cs))})
    from selfalign.train.rloo import snapshots

    # every step: our per-sequence KL beside TRL's, k3 never negative, ~0 before the first update
    assert all(h["kl_k3_seq"] >= 0 and h["probe"] == 8.0 for h in res.history)
    assert abs(res.history[0]["kl_seq"]) < 1e-3 and res.history[-1]["kl_k3_seq"] > 1e-4

    snaps = snapshots(tmp_path / "rl")
    assert [s for s, _ in snaps] == [1] and (snaps[0][1] / "config.json").exists()
    assert seen and all(n % 4 == 0 for n in seen)  # whole leave-one-out groups reach the reward
    assert res.history and all("kl" in h for h in res.history)
    assert (res.model_dir / "config.json").exists()
    assert train_rloo(prompts, reward, "length", str(tiny_model_dir), tmp_path / "rl", cfg).skipped
    # a different reward id is a different run
    assert train_rloo(prompts, reward, "other", str(tiny_model_dir), tmp_path / "rl", cfg).skipped is False

    base, pol = HFModel(str(tiny_model_dir)), HFModel(str(res.model_dir))
    qs = [user(f"Name a fruit. {i}") for i in range(4)]
    samples = [r.texts for r in pol.generate([GenRequest(q, GenParams(temperature=1.0, max_tokens=8), n=3) for q in qs])]
    same = sequence_kl(pol, pol, qs, samples)
    assert same["kl"] == 0.0 and same["kl_k3"] == 0.0
    moved = sequence_kl(pol, base, qs, samples)
    assert moved["kl_k3"] > 0 and moved["n"] == sum(1 for ss in samples for s in ss if s.strip())
    with pytest.raises(ValueError, match="beta must be > 0"):
        RLOOTrainConfig(beta=0)
    with pytest.raises(ValueError, match="multiple of num_generations"):
        RLOOTrainConfig(num_generations=3, batch_size=8)


def test_split_half_pms_and_pmp_pretraining(tiny_model_dir, tmp_path):
    """Split-half: two PMs on disjoint prompt halves, both scored on the same held-out pairs; PMP:
    the PM is fine-tuned from a PM pretrained on another pair source (its directory is the base)."""
    from selfalign.reward.pairs import prompt_key
    from selfalign.reward.run import PMRunConfig, run, split_half
    from selfalign.store.cache import Store

    def write(path, n, good, bad):
        with path.open("w") as f:
            for i in range(n):
                f.write(json.dumps({"prompt": [{"role": "user", "content": f"{path.stem} question {i}"}],
                                    "chosen": [{"role": "assistant", "content": good}],
                                    "rejected": [{"role": "assistant", "content": bad}]}) + "\n")

    rows, pre = tmp_path / "pairs.jsonl", tmp_path / "pre.jsonl"
    write(rows, 48, "Paris", "Lima is the capital of Peru")
    write(pre, 16, "Yes", "No no no no")
    train = {"epochs": 2, "learning_rate": 0.01, "batch_size": 8, "logging_steps": 1}
    cfg = PMRunConfig(base=str(tiny_model_dir), data=str(rows), out=str(tmp_path / "sh"), test_fraction=0.25,
                      bootstrap=50, train=train)
    res = split_half(cfg, store=Store(":memory:"))
    s = res.summary
    a, b = s["pms"]["a"], s["pms"]["b"]
    assert a["pm_dir"] != b["pm_dir"] and a["train_pairs"] + b["train_pairs"] + s["test_pairs"] == 48
    assert s["prompts_shared_between_halves"] == 0 and a["train_pairs"] and b["train_pairs"]
    assert 0 <= s["agreement"]["value"] <= 1 and len(res.rows) == s["test_pairs"]
    assert {"reward_b_chosen", "reward_chosen"} <= set(res.rows[0])
    with pytest.raises(ValueError, match="pmp must be another"):
        PMRunConfig(data=str(rows), pmp=str(rows))
    cfg2 = PMRunConfig(base=str(tiny_model_dir), data=str(rows), pmp=str(pre), out=str(tmp_path / "pmp"),
                       test_fraction=0.25, bootstrap=50, train=train)
    out = run(cfg2, store=Store(":memory:")).summary
    assert out["pmp"]["pairs"] == 16 and (tmp_path / "pmp" / "pmp" / "model" / "config.json").exists()
    done = json.loads((tmp_path / "pmp" / "pm" / "train.json").read_text())
    assert "+pmp:" in done["base"]  # the target PM was trained from the pretrained one
    assert {prompt_key(r) for r in res.rows}  # held-out rows carry their prompts
    from typer.testing import CliRunner

    from selfalign.cli import app

    r = CliRunner().invoke(app, ["pm", "split-half", "--data", str(rows), "--base", str(tiny_model_dir), "--out",
                                 str(tmp_path / "sh"), "--set", "test_fraction=0.25", "--set", "bootstrap=50",
                                 "--set", "train.epochs=2", "--set", "train.learning_rate=0.01",
                                 "--set", "train.batch_size=8", "--set", "train.logging_steps=1"])
    assert r.exit_code == 0, r.output
    assert "agreement" in r.output and (tmp_path / "sh" / "report.html").exists()
    page = (tmp_path / "sh" / "report.html").read_text()
    # both PMs' reliability diagrams (raw and temperature-scaled) and both training curves
    calib = page.split("<h2>Calibration</h2>", 1)[1].split("<h2", 1)[0]
    assert "<svg" in calib and all(f"PM_{n} {k} (T=" in calib for n in "AB" for k in ("raw", "scaled"))
    curves = page.split("id=training-curves>", 1)[1]
    assert "<svg" in curves and "<td class=l>pm_a</td>" in curves and "<td class=l>pm_b</td>" in curves
    assert json.loads((tmp_path / "sh" / "report.json").read_text())["summary"]["pms"]["a"]["skipped_training"]


def test_learning_curve_trains_nested_shares_and_scores_the_same_held_out_pairs(tiny_model_dir, tmp_path):
    """``pm curve`` (issue 27): one PM per share of the training prompts, nested, each scored on the
    same held-out pairs, with the floor and the largest-vs-smallest paired difference; the command
    writes the report; bad shares are refused before anything loads."""
    from typer.testing import CliRunner

    from selfalign.cli import app
    from selfalign.reward.run import PMCurveConfig

    rows = tmp_path / "pairs.jsonl"
    rows.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": f"question {i}"}],
                                        "chosen": [{"role": "assistant", "content": "Paris"}],
                                        "rejected": [{"role": "assistant", "content": "Lima is the capital of Peru"}]})
                            + "\n" for i in range(40)))
    r = CliRunner().invoke(app, ["pm", "curve", "--data", str(rows), "--base", str(tiny_model_dir), "--out",
                                 str(tmp_path / "c"), "--set", "fractions=[0.25,1.0]", "--set", "bootstrap=50",
                                 "--set", "train.batch_size=8", "--set", "train.epochs=1"])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "c" / "report.json").read_text())["summary"]
    small, big = rep["points"]
    assert (small["fraction"], big["fraction"]) == (0.25, 1.0) and big["train_pairs"] == rep["train_pairs"]
    assert small["train_prompts"] == round(0.25 * rep["train_prompts"]) and small["pm_dir"] != big["pm_dir"]
    assert {small["accuracy"]["n"], big["accuracy"]["n"]} == {rep["test_pairs"]}
    assert "largest_vs_smallest" in rep and "untrained_head" in rep
    assert "learning curve" in (tmp_path / "c" / "report.html").read_text()
    with pytest.raises(ValueError, match="fractions"):
        PMCurveConfig(data=str(rows), fractions=[0.0, 1.0])
    with pytest.raises(ValueError, match="repeat"):
        PMCurveConfig(data=str(rows), fractions=[0.5, 0.5])
    kept = json.loads((tmp_path / "c" / "pm-25" / "train.json").read_text())["n_rows"]
    assert kept == small["train_pairs"]


def test_cached_pm_reads_a_repeated_answer_once(tmp_path):
    from selfalign.reward.pm import CachedPM
    from selfalign.store.cache import Store

    class Counting:
        model_id = "pm:counting"

        def __init__(self):
            self.seen = []

        def rewards(self, prompts, responses):
            self.seen += list(responses)
            return [float(len(r)) for r in responses]

    pm = Counting()
    got = CachedPM(pm, Store(tmp_path / "s.sqlite")).rewards(["q"] * 5, ["Paris", "Lyon", "Paris", "Paris", "Nice"])
    assert got == [5.0, 4.0, 5.0, 5.0, 4.0]
    assert pm.seen == ["Paris", "Lyon", "Nice"]
