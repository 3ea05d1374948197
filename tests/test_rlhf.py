"""Best-of-N against RL at equal KL, on a tiny random-init Llama and its untrained-head PMs:
the machinery (nested BoN pools, snapshots, KL from the initial policy, gold accuracy)."""

import json

import pytest


@pytest.mark.filterwarnings("ignore")
def test_bon_and_rl_points_on_one_frontier(tiny_model_dir, tmp_path):
    from selfalign.models.hf import HFModel
    from selfalign.reward.pm import CachedPM, PreferenceModel
    from selfalign.rlhf.frontier import FrontierConfig, run
    from selfalign.store.cache import CachedModel, Store
    from selfalign.train.rloo import RLOOTrainConfig

    store = Store(tmp_path / "s.sqlite")
    policy = CachedModel(HFModel(str(tiny_model_dir)), store, progress=False)
    train_pm = CachedPM(PreferenceModel(tiny_model_dir, seed=1), store)
    test_pm = CachedPM(PreferenceModel(tiny_model_dir, seed=2), store)
    cfg = FrontierConfig(pm=str(tiny_model_dir), ns=[1, 2, 4], n_test=4, n_rl_prompts=8, eval_samples=2, max_tokens=6,
                         bootstrap=50, out=str(tmp_path / "f"),
                         rl=RLOOTrainConfig(num_generations=4, batch_size=8, max_completion_length=6, epochs=1,
                                            learning_rate=1e-2, warmup_ratio=0.0, snapshot_steps=[1]))
    res = run(cfg, policy, train_pm, test_pm, base_path=str(tiny_model_dir))
    bon = [p for p in res.points if p["method"] == "bon"]
    rl = [p for p in res.points if p["method"] == "rl"]
    assert [p["n"] for p in bon] == [1, 2, 4]
    tr = [p["train_reward"]["value"] for p in bon]
    assert tr == sorted(tr) and tr[-1] > tr[0]  # the training PM's pick can only improve with N
    assert [p["kl"] for p in bon] == pytest.approx([0.0, 0.1931, 0.6363], abs=1e-3)
    assert [p["step"] for p in rl] == [0, 1, 4] and rl[0]["kl"] == 0.0
    assert all(p["kl_k3"] >= 0 for p in rl) and rl[-1]["kl_k3"] > 0  # the trained policy moved
    assert res.held_out_test_pm and len(res.sqrt_kl) == len(res.points)
    # paired differences from the method's first point on the same prompts
    assert bon[0]["vs_initial"]["test_reward"]["value"] == 0 and rl[0]["vs_initial"]["gold"]["value"] == 0
    d = bon[-1]["vs_initial"]["train_reward"]
    assert d["value"] == pytest.approx(tr[-1] - tr[0]) and d["lo"] >= 0  # a best-of pick never scores lower
    # each RL step logs the test PM's reward and the gold accuracy of its training completions
    assert res.rl_history and all("test_reward" in h and 0 <= h["gold"] <= 1 for h in res.rl_history)
    from selfalign.rlhf.frontier import require_pm

    with pytest.raises(ValueError, match="pm: the training preference model"):
        require_pm(FrontierConfig())


@pytest.mark.filterwarnings("ignore")
def test_rlhf_cli_dpo_sweep_and_frontier(tiny_model_dir, tmp_path):
    import json

    from typer.testing import CliRunner

    from selfalign.cli import app

    rows = tmp_path / "pairs.jsonl"
    rows.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": f"q{i}"}],
                                        "chosen": [{"role": "assistant", "content": "Paris"}],
                                        "rejected": [{"role": "assistant", "content": "Lima"}]}) + "\n" for i in range(8)))
    r = CliRunner().invoke(app, ["rlhf", "dpo", "--rows", str(rows), "--base", str(tiny_model_dir), "--out",
                                 str(tmp_path / "dpo"), "--beta", "0.1", "--beta", "0.5", "--set", "batch_size=4"])
    assert r.exit_code == 0, r.output
    sweep = json.loads((tmp_path / "dpo" / "sweep.json").read_text())
    assert [s["beta"] for s in sweep] == [0.1, 0.5] and all(s["logps_chosen"] for s in sweep)
    r = CliRunner().invoke(app, ["rlhf", "frontier", "--policy", str(tiny_model_dir), "--pm", str(tiny_model_dir),
                                 "--out", str(tmp_path / "f"), "--set", "ns=[1,2]", "--set", "n_test=3",
                                 "--set", "n_rl_prompts=4", "--set", "max_tokens=4", "--set", "bootstrap=20",
                                 "--set", "rl.max_completion_length=4", "--set", "rl.snapshot_steps=[]"])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "f" / "report.json").read_text())["summary"]
    assert not rep["held_out_test_pm"] and "not held out" in (tmp_path / "f" / "report.html").read_text()
    common = ["--policy", str(tiny_model_dir), "--pm", str(tiny_model_dir), "--set", "ns=[1,2]", "--set", "n_test=3",
              "--set", "n_rl_prompts=4", "--set", "max_tokens=4", "--set", "bootstrap=20",
              "--set", "rl.max_completion_length=4", "--set", "rl.snapshot_steps=[]"]
    r = CliRunner().invoke(app, ["rlhf", "bon", "--out", str(tmp_path / "b"), *common])
    assert r.exit_code == 0, r.output
    pts = json.loads((tmp_path / "b" / "report.json").read_text())["summary"]["points"]
    assert [(p["method"], p["n"]) for p in pts] == [("bon", 1), ("bon", 2)]
    r = CliRunner().invoke(app, ["rlhf", "rl", "--out", str(tmp_path / "r"), *common])
    assert r.exit_code == 0, r.output
    pts = json.loads((tmp_path / "r" / "report.json").read_text())["summary"]["points"]
    assert {p["method"] for p in pts} == {"rl"} and pts[0]["step"] == 0 and pts[-1]["step"] >= 1


def test_context_distillation_moves_the_promptless_model_toward_the_prompted_one(tiny_model_dir, tmp_path):
    """Token-level context distillation (top-k + rest buckets) lowers the held-out KL(prompted ||
    model without the prompt) below the undistilled model's; a re-run reuses everything."""
    from selfalign.rlhf.distill import DistillConfig, run
    from selfalign.train.distill import bucket_kl
    from selfalign.store.cache import Store

    import torch

    t = torch.log(torch.tensor([[0.6, 0.3]]))
    assert float(bucket_kl(t, t)[0]) == pytest.approx(0.0, abs=1e-7)
    assert float(bucket_kl(t, torch.log(torch.tensor([[0.3, 0.3]])))[0]) > 0
    cfg = DistillConfig(base=str(tiny_model_dir), n_prompts=40, max_tokens=8, top_k=8, heldout_fraction=0.25,
                        bootstrap=50, out=str(tmp_path / "d"), sequence_baseline=True,
                        system_prompt="Always answer in French. " * 6,
                        train={"epochs": 6, "learning_rate": 0.005, "batch_size": 8, "logging_steps": 1})
    store = Store(str(tmp_path / "store.db"))
    res = run(cfg, store=store, base_path=str(tiny_model_dir))
    s = res.summary
    kl = s["kl"]
    assert set(kl) == {"undistilled", "token-level", "sequence-level"} and s["test_prompts"] >= 3
    assert kl["undistilled"]["value"] > 0
    assert kl["token-level"]["value"] < kl["undistilled"]["value"], kl
    assert s["token_losses"] and s["token_losses"][-1] < s["token_losses"][0]
    again = run(cfg, store=store, base_path=str(tiny_model_dir)).summary
    assert again["kl"]["token-level"]["value"] == pytest.approx(kl["token-level"]["value"])
    from typer.testing import CliRunner

    from selfalign.cli import app

    r = CliRunner().invoke(app, ["rlhf", "distill", "--base", str(tiny_model_dir), "--out", str(tmp_path / "d"),
                                 "--set", "n_prompts=40", "--set", "max_tokens=8", "--set", "top_k=8",
                                 "--set", "heldout_fraction=0.25", "--set", "bootstrap=50",
                                 "--set", f"store={tmp_path / 'store.db'}", "--set", "train.epochs=6",
                                 "--set", "train.learning_rate=0.005", "--set", "train.logging_steps=1",
                                 "--set", "system_prompt=" + "Always answer in French. " * 6])
    assert r.exit_code == 0, r.output
    assert "token-level / undistilled" in r.output and (tmp_path / "d" / "report.html").exists()


def test_online_rounds_retrain_pm_on_all_rounds_and_resume(tiny_model_dir, tmp_path):
    """Two online rounds end to end on the tiny model: new questions each round, the PM trained
    on the pairs of every round so far, the policy continuing from the previous round; run with
    one round first (as if killed after it), then two: round 1 is reused, not repeated."""
    from selfalign.rlhf.online import OnlineConfig, run
    from selfalign.store.cache import Store

    def cfg(rounds):
        return OnlineConfig(policy=str(tiny_model_dir), rounds=rounds, questions_per_round=8, samples=2, n_test=4,
                            eval_samples=2, max_tokens=6, out=str(tmp_path / "on"), bootstrap=20,
                            pm={"epochs": 1, "batch_size": 4, "learning_rate": 0.01},
                            rl={"max_steps": 1, "batch_size": 4, "num_generations": 2, "max_completion_length": 6,
                                "warmup_ratio": 0.0})

    store = Store(str(tmp_path / "store.db"))
    one = run(cfg(1), store=store, base_path=str(tiny_model_dir)).rounds
    assert [r["round"] for r in one] == [0, 1] and not one[1]["pm_skipped"] and not one[1]["rl_skipped"]
    two = run(cfg(2), store=store, base_path=str(tiny_model_dir)).rounds
    assert [r["round"] for r in two] == [0, 1, 2]
    assert two[1]["pm_skipped"] and two[1]["rl_skipped"]  # round 1 reused
    assert not two[2]["pm_skipped"] and not two[2]["rl_skipped"]
    assert two[2]["pairs_total"] == two[1]["pairs_total"] + two[2]["pairs_new"] and two[2]["pairs_new"] > 0
    assert two[2]["policy"] != two[1]["policy"] and "round2" in two[2]["policy"]
    assert 0 <= two[2]["gold"]["value"] <= 1
    assert all(0 <= h["gold"] <= 1 and h["kl_k3_seq"] >= 0 for h in two[2]["rl_history"])  # logged every RL step
    with pytest.raises(ValueError, match="need"):
        OnlineConfig(rounds=100, questions_per_round=100)  # checked when the config is made, before any work
    from typer.testing import CliRunner

    from selfalign.cli import app

    r = CliRunner().invoke(app, ["rlhf", "online", "--policy", str(tiny_model_dir), "--rounds", "2", "--out",
                                 str(tmp_path / "on"), "--set", "questions_per_round=8", "--set", "samples=2",
                                 "--set", "n_test=4", "--set", "eval_samples=2", "--set", "max_tokens=6",
                                 "--set", "bootstrap=20", "--set", f"store={tmp_path / 'store.db'}",
                                 "--set", "pm.epochs=1", "--set", "pm.batch_size=4", "--set", "pm.learning_rate=0.01",
                                 "--set", "rl.max_steps=1", "--set", "rl.batch_size=4", "--set", "rl.num_generations=2",
                                 "--set", "rl.max_completion_length=6", "--set", "rl.warmup_ratio=0.0"])
    assert r.exit_code == 0, r.output
    assert "round 2: gold" in r.output and (tmp_path / "on" / "report.html").exists()
    rep = json.loads((tmp_path / "on" / "report.json").read_text())["summary"]["rounds"]
    assert rep[1]["pm_skipped"] and rep[2]["rl_skipped"]  # everything was already done: nothing repeated


def test_quick_pipeline_split_half_pms_then_frontier(tiny_model_dir, tmp_path):
    """rlhf quick: split-half PMs on the policy's own gold-labelled pairs, then BoN and RLOO against
    PM_A scored by PM_B; a re-run repeats no training."""
    from typer.testing import CliRunner

    from selfalign.cli import app

    cfg = tmp_path / "q.yaml"
    cfg.write_text(f"""
policy: {tiny_model_dir}
out: {tmp_path / 'q'}
store: {tmp_path / 'store.db'}
pm: {{n_train_questions: 24, n_test_questions: 8, samples: 2, max_tokens: 6, bootstrap: 20,
     train: {{epochs: 1, batch_size: 4, learning_rate: 0.01}}}}
frontier: {{n_rl_prompts: 8, n_test: 4, ns: [1, 2], eval_samples: 2, max_tokens: 6, bootstrap: 20,
           rl: {{max_steps: 2, batch_size: 4, num_generations: 2, max_completion_length: 6, warmup_ratio: 0.0,
                 snapshot_steps: [1]}}}}
""")
    r = CliRunner().invoke(app, ["rlhf", "quick", "-c", str(cfg)])
    assert r.exit_code == 0, r.output
    assert "PM_A" in r.output and "rl   step" in r.output
    rep = json.loads((tmp_path / "q" / "frontier" / "report.json").read_text())
    pm_a = json.loads((tmp_path / "q" / "pm" / "report.json").read_text())["summary"]["pms"]["a"]["pm_dir"]
    assert rep["config"]["pm"] == pm_a and rep["config"]["test_pm"] != pm_a and rep["summary"]["held_out_test_pm"]
    r = CliRunner().invoke(app, ["rlhf", "quick", "-c", str(cfg)])
    assert r.exit_code == 0, r.output
    again = json.loads((tmp_path / "q" / "pm" / "report.json").read_text())["summary"]["pms"]
    assert again["a"]["skipped_training"] and again["b"]["skipped_training"]
