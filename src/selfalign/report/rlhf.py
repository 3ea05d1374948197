"""Report of Best-of-N vs RL: test-PM reward and gold accuracy against sqrt(KL). Renders only."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from selfalign.report.critique import _ci, _err, _page
from selfalign.report.header import pyplot, svg


def frontier_report(out_dir: str | Path, summary: dict[str, Any], config: dict[str, Any]) -> Path:
    pts = summary["points"]
    plt = pyplot()
    # the headline: HH's Fig. 13-style frontier, held-out reward and gold accuracy on one plot, so
    # over-optimisation (training reward up, test reward or gold down) shows where it happens
    fig, ax = plt.subplots(figsize=(6.2, 3.8))
    gold_ax = ax.twinx()
    for method, colour, name in (("bon", "#4c72b0", "best-of-N"), ("rl", "#dd8452", "RL (RLOO, KL penalty)")):
        ps = [p for p in pts if p["method"] == method]
        if not ps:
            continue
        xs = [math.sqrt(max(0.0, p["kl"])) for p in ps]
        ax.errorbar(xs, [p["test_reward"]["value"] for p in ps], yerr=_err([p["test_reward"] for p in ps]),
                    marker="o", capsize=3, color=colour, label=f"{name}: test-PM reward")
        ax.plot(xs, [p["train_reward"]["value"] for p in ps], marker=".", linestyle="--", color=colour, alpha=0.6,
                label=f"{name}: training-PM reward")
        gold_ax.errorbar(xs, [100 * p["gold"]["value"] for p in ps], yerr=_err([p["gold"] for p in ps], 100),
                         marker="s", capsize=3, linestyle=":", color=colour, alpha=0.8, label=f"{name}: gold accuracy")
    ax.set_xlabel("sqrt(KL from the initial policy)  [sqrt nats]")
    ax.set_ylabel("PM reward")
    gold_ax.set_ylabel("gold accuracy % (dotted)")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = gold_ax.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=6, loc="best")
    imgs = svg(fig)
    for key, label in (("test_reward", "test-PM reward"), ("train_reward", "training-PM reward"),
                       ("gold", "gold accuracy")):
        fig, ax = plt.subplots(figsize=(4.6, 3))
        for method, colour in (("bon", "#4c72b0"), ("rl", "#dd8452")):
            ps = [p for p in pts if p["method"] == method]
            if not ps:
                continue
            xs = [math.sqrt(max(0.0, p["kl"])) for p in ps]
            ys = [p[key]["value"] for p in ps]
            ax.errorbar(xs, ys, yerr=_err([p[key] for p in ps]), marker="o", capsize=3, color=colour,
                        label="best-of-N" if method == "bon" else "RL (RLOO, KL penalty)")
        ax.set_xlabel("sqrt(KL from the initial policy)  [sqrt nats]")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
        imgs += svg(fig)

    hist = [h for h in summary.get("rl_history") or [] if "step" in h]
    if hist:  # every RL step on its own training completions
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3))
        steps = [h["step"] for h in hist]
        for key, name in (("rewards/pm/mean", "training-PM reward"), ("test_reward", "test-PM reward")):
            if any(key in h for h in hist):
                a1.plot([h["step"] for h in hist if key in h], [h[key] for h in hist if key in h], marker=".",
                        label=name)
        if any("gold" in h for h in hist):
            g = a1.twinx()
            g.plot([h["step"] for h in hist if "gold" in h], [100 * h["gold"] for h in hist if "gold" in h], ":",
                   color="#55a868", marker="s", label="gold accuracy %")
            g.set_ylabel("gold accuracy % (dotted)")
        a1.set_xlabel("RL step")
        a1.set_ylabel("PM reward")
        a1.legend(fontsize=7)
        for key, name in (("kl_k3_seq", "k3 (non-negative), per sequence"), ("kl_seq", "log-ratio sum, per sequence")):
            if any(key in h for h in hist):
                a2.plot([h["step"] for h in hist if key in h], [h[key] for h in hist if key in h], marker=".",
                        label=name)
        if any("kl" in h for h in hist):
            a2.plot(steps, [h.get("kl", math.nan) for h in hist], marker=".", label="TRL's kl, per token")
        a2.set_xlabel("RL step")
        a2.set_ylabel("KL(policy || initial) on training samples")
        a2.legend(fontsize=7)
        imgs += "<h2>RL, step by step (training completions)</h2>" + svg(fig)

    def row(p: dict[str, Any]) -> str:
        what = f"N={p['n']}" if p["method"] == "bon" else f"step {p['step']}"
        return (f"<tr><td class=l>{p['method']}</td><td class=l>{what}</td><td>{p['kl']:.3f}</td>"
                f"<td>{_ci(p['train_reward'], False)}</td><td>{_ci(p['test_reward'], False)}</td>"
                f"<td>{_ci(p['gold'])}</td><td>{_ci((p.get('vs_initial') or {}).get('test_reward'), False)}</td>"
                f"<td>{_ci((p.get('vs_initial') or {}).get('gold'))}</td></tr>")

    fits = summary.get("sqrt_kl_fits") or {}

    def fit_cell(f: dict[str, float] | None) -> str:
        if not f or math.isnan(f["slope"]):
            return "-"
        return f"{f['intercept']:.3f} + {f['slope']:.3f} &radic;KL (R&sup2; {f['r2']:.2f}, {f['points']} points)"

    fit_rows = "".join(f"<tr><td class=l>{m}</td><td class=l>{fit_cell(fs.get('train_reward'))}</td>"
                       f"<td class=l>{fit_cell(fs.get('test_reward'))}</td></tr>" for m, fs in fits.items())
    fit_table = (f"<p>Least-squares lines reward = a + b &radic;KL (HH §4.3 find reward roughly linear in &radic;KL):"
                 f"</p><table><tr><th class=l>method</th><th class=l>training PM</th><th class=l>test PM</th></tr>"
                 f"{fit_rows}</table>") if fit_rows else ""
    note = "" if summary["held_out_test_pm"] else (
        "<p><b>The test PM is the training PM</b> (no second PM was given): the test reward is not held out.</p>")
    body = (f"<p class=sub>{summary['test_prompts']} held-out prompts, RL on {summary['rl_prompts']} prompts "
            f"({summary['rl_seconds']:.0f} s)</p>{note}<table><tr><th class=l>method</th><th class=l>point</th>"
            f"<th>KL (nats)</th><th>training-PM reward</th><th>test-PM reward</th><th>gold accuracy %</th>"
            f"<th>test-PM reward minus initial (paired)</th><th>gold minus initial, points (paired)</th></tr>"
            f"{''.join(row(p) for p in pts)}</table>{fit_table}{imgs}")
    return _page(out_dir, "Best-of-N vs RL at equal KL", body, {"summary": summary, "config": config})


def distill_report(out_dir: str | Path, summary: dict[str, Any], config: dict[str, Any]) -> Path:
    kl = summary["kl"]
    trs = "".join(f"<tr><td class=l>{n}</td><td>{_ci(v, False)}</td></tr>" for n, v in kl.items())
    plt = pyplot()
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
            f"{d['value']:.4f} [{d['lo']:.4f}, {d['hi']:.4f}]</p>{svg(fig)}")
    return _page(out_dir, "Context distillation", body, {"summary": summary, "config": config})


def online_report(out_dir: str | Path, summary: dict[str, Any], config: dict[str, Any]) -> Path:
    rs = summary["rounds"]
    trs = "".join(f"<tr><td>{r['round']}</td><td>{r.get('pairs_new', '-')}</td><td>{r.get('pairs_total', '-')}</td>"
                  f"<td>{_ci(r['gold'])}</td><td>{_ci(r['pm_reward'], False)}</td></tr>" for r in rs)
    plt = pyplot()
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
            f"<th>PM reward</th></tr>{trs}</table>{svg(fig)}")
    return _page(out_dir, "Iterated online RLHF", body, {"summary": summary, "config": config})
