"""Report of Best-of-N vs RL: test-PM reward and gold accuracy against sqrt(KL). Renders only."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from selfalign.report.critique import _ci, _err, _img, _page, _plt


def frontier_report(out_dir: str | Path, summary: dict[str, Any], config: dict[str, Any]) -> Path:
    pts = summary["points"]
    plt = _plt()
    imgs = ""
    for key, label in (("test_reward", "test-PM reward"), ("train_reward", "training-PM reward"),
                       ("gold", "gold accuracy")):
        fig, ax = plt.subplots(figsize=(4.6, 3))
        for method, colour in (("bon", "#4c72b0"), ("rl", "#dd8452")):
            ps = [p for p in pts if p["method"] == method]
            xs = [math.sqrt(max(0.0, p["kl"])) for p in ps]
            ys = [p[key]["value"] for p in ps]
            ax.errorbar(xs, ys, yerr=_err([p[key] for p in ps]), marker="o", capsize=3, color=colour,
                        label="best-of-N" if method == "bon" else "RL (RLOO, KL penalty)")
        ax.set_xlabel("sqrt(KL from the initial policy)  [sqrt nats]")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
        imgs += _img(fig)

    def row(p: dict[str, Any]) -> str:
        what = f"N={p['n']}" if p["method"] == "bon" else f"step {p['step']}"
        return (f"<tr><td class=l>{p['method']}</td><td class=l>{what}</td><td>{p['kl']:.3f}</td>"
                f"<td>{_ci(p['train_reward'], False)}</td><td>{_ci(p['test_reward'], False)}</td>"
                f"<td>{_ci(p['gold'])}</td></tr>")

    note = "" if summary["held_out_test_pm"] else (
        "<p><b>The test PM is the training PM</b> (no second PM was given): the test reward is not held out.</p>")
    body = (f"<p class=sub>{summary['test_prompts']} held-out prompts, RL on {summary['rl_prompts']} prompts "
            f"({summary['rl_seconds']:.0f} s)</p>{note}<table><tr><th class=l>method</th><th class=l>point</th>"
            f"<th>KL (nats)</th><th>training-PM reward</th><th>test-PM reward</th><th>gold accuracy %</th></tr>"
            f"{''.join(row(p) for p in pts)}</table>{imgs}")
    return _page(out_dir, "Best-of-N vs RL at equal KL", body, {"summary": summary, "config": config})


def distill_report(out_dir: str | Path, summary: dict[str, Any], config: dict[str, Any]) -> Path:
    kl = summary["kl"]
    trs = "".join(f"<tr><td class=l>{n}</td><td>{_ci(v, False)}</td></tr>" for n, v in kl.items())
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 2.4))
    names = list(kl)
    ax.barh(names, [kl[n]["value"] for n in names],
            xerr=_err([kl[n] for n in names]),
            color="#4c72b0", capsize=3)
    ax.set_xlabel("KL(prompted || model without the prompt), nats per answer token")
    d = summary["token_minus_undistilled"]
    body = (f"<p class=sub>Askell et al. 2021 / HH App. A.1: {summary['train_prompts']} training prompts "
            f"({summary['answer_tokens_train']} answer tokens), {summary['test_prompts']} held-out prompts.</p>"
            f"<table><tr><th class=l>model (no system prompt)</th><th>held-out KL, 95% CI</th></tr>{trs}</table>"
            f"<p>token-level / undistilled: <b>{summary['ratio_token_to_undistilled']:.3f}</b>; difference (paired): "
            f"{d['value']:.4f} [{d['lo']:.4f}, {d['hi']:.4f}]</p>{_img(fig)}")
    return _page(out_dir, "Context distillation", body, {"summary": summary, "config": config})


def online_report(out_dir: str | Path, summary: dict[str, Any], config: dict[str, Any]) -> Path:
    rs = summary["rounds"]
    trs = "".join(f"<tr><td>{r['round']}</td><td>{r.get('pairs_new', '-')}</td><td>{r.get('pairs_total', '-')}</td>"
                  f"<td>{_ci(r['gold'])}</td><td>{_ci(r['pm_reward'], False)}</td></tr>" for r in rs)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 3))
    xs = [r["round"] for r in rs]
    ax.errorbar(xs, [100 * r["gold"]["value"] for r in rs],
                yerr=_err([r["gold"] for r in rs], 100), marker="o", capsize=3)
    ax.set_xlabel("online round (0 = initial policy)")
    ax.set_ylabel("held-out gold accuracy %")
    body = (f"<p class=sub>HH §4.5: each round samples from the current policy, labels new pairs by gold answers, "
            f"retrains the PM on every round's pairs and continues RL from the current policy. "
            f"{summary['test_questions']} held-out questions. PM rewards come from each round's own PM (round 0: the "
            f"round-1 PM), so compare them within a row, not across rows.</p>"
            f"<table><tr><th>round</th><th>new pairs</th><th>pairs in the PM</th><th>gold accuracy %</th>"
            f"<th>PM reward</th></tr>{trs}</table>{_img(fig)}")
    return _page(out_dir, "Iterated online RLHF", body, {"summary": summary, "config": config})
