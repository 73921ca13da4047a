"""Stage 9 of the demo: ``report.md`` (setup, table, observations, choices) from the rows of every policy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..evaluate.metrics import EOS_MISSING_WARN
from ..gym import Task, get_task
from ..runs import write_text
from .config import FEEDBACK_TEXT, METHODS, DemoConfig
from .learning import RM_MIN_ACCURACY, SFT_MIN_SHARE, quality_failures
from .stages import World

# ---- the report -------------------------------------------------------------------------------------------------


def _fmt(value: Any, ci: Any = None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    text = f"{value:.{digits}f}"
    if ci and all(isinstance(c, (int, float)) and math.isfinite(c) for c in ci):
        text += f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    return text


def results_table(rows: Sequence[dict[str, Any]], sharpened: dict[str, Any] | None = None) -> str:
    """The demo's Markdown table: one row per policy (the SFT policy first, then ``sharpened``, the SFT policy
    sampled at a lower temperature, when given)."""
    lines = ["| policy | feedback | lr | β | gold reward (95% CI) | win rate vs SFT (95% CI) | KL(π‖SFT) | "
             "Δ log p chosen | Δ log p rejected | no EOS |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in [*rows[:1], *([sharpened] if sharpened else []), *rows[1:]]:
        ev = r["eval"]
        beta = (r.get("objective_args") or {}).get("beta")
        lines.append(
            f"| {r['name']} | {FEEDBACK_TEXT.get(r.get('feedback'), r.get('feedback') or '–')} | "
            f"{r['learning_rate'] if r.get('learning_rate') is not None else '–'} | "
            f"{beta if beta is not None else '–'} | {_fmt(ev.get('reward_mean'), ev.get('reward_ci'))} | "
            f"{_fmt(ev.get('win_rate'), ev.get('win_rate_ci'))} | {_fmt(ev.get('kl'), ev.get('kl_ci'), 2)} | "
            f"{_fmt(ev.get('chosen_logp_shift'), None, 2)} | {_fmt(ev.get('rejected_logp_shift'), None, 2)} | "
            f"{_fmt(ev.get('eos_missing_fraction'), None, 2)} |")
    return "\n".join(lines)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in counts.items()) or "none"


PLOT_NAMES = {"training_curves": "training curves (loss, log p of the chosen responses)",
              "reward_kl_frontier": "gold reward against KL(π‖SFT), one point per policy",
              "likelihood_drift": "likelihood drift of the held-out chosen and rejected responses"}


def _above_below(methods: Sequence[dict[str, Any]], bar: dict[str, Any]) -> tuple[str, str]:
    """The methods whose gold reward's 95% CI lies wholly above, and wholly below, that of ``bar``."""
    lo, hi = bar.get("reward_ci") or (bar["reward_mean"], bar["reward_mean"])
    above = [r["name"] for r in methods if (r["eval"].get("reward_ci") or [0, 0])[0] > hi]
    below = [r["name"] for r in methods if (r["eval"].get("reward_ci") or [1, 1])[1] < lo]
    return tuple(", ".join(f"`{n}`" for n in names) or "none" for names in (above, below))


def observations(rows: Sequence[dict[str, Any]], sharpened: dict[str, Any] | None = None) -> list[str]:
    """A few facts read off the table (no judgement beyond the confidence intervals)."""
    sft, methods = rows[0]["eval"], [r for r in rows[1:] if r["eval"].get("reward_mean") is not None]
    if not methods:
        return []
    best = max(methods, key=lambda r: r["eval"]["reward_mean"])
    lowered = [r["name"] for r in methods if (r["eval"].get("chosen_logp_shift") or 0.0) < 0]
    out = [f"- Highest gold reward: `{best['name']}` ({best['eval']['reward_mean']:.3f}, KL "
           f"{best['eval']['kl']:.2f}); the SFT policy has {sft['reward_mean']:.3f}."]
    above, below = _above_below(methods, sft)
    out.append(f"- Above the SFT policy (95% CIs apart): {above}; below it: {below}.")
    if sharpened is not None:
        above, _ = _above_below(methods, sharpened["eval"])
        out.append(f"- Above `{sharpened['name']}`, the SFT policy sampled at that temperature with no training "
                   f"(gold reward {sharpened['eval']['reward_mean']:.3f}): {above}. Aligning also sharpens a "
                   "policy; a gain over SFT no larger than this one is what sharpening alone gives "
                   "(`benchmarks/by_temperature.py` compares every policy at lower temperatures).")
    out.append("- Lowered the held-out chosen responses' log-prob: " + (", ".join(f"`{n}`" for n in lowered)
                                                                       or "none") + ".")
    no_eos = [(r["name"], r["eval"].get("eos_missing_fraction") or 0.0) for r in rows]
    no_eos = [(n, f) for n, f in no_eos if f > EOS_MISSING_WARN]
    if no_eos:
        out.append(f"- **Warning**: more than {100 * EOS_MISSING_WARN:.0f}% of the samples never emit EOS (the policy "
                   "pushed the end of its responses down; their rewards are those of cut-off text): "
                   + ", ".join(f"`{n}` ({100 * f:.0f}%)" for n, f in no_eos) + ".")
    out.append("- One seed, one run per method: `python benchmarks/claims.py` measures the papers' claims over "
               "several seeds with beta sweeps.")
    return out


def task_line(task: Task) -> str:
    """The first line of the task class's own docstring, else its class name (a task need not have one)."""
    doc = (type(task).__doc__ or "").strip()
    return doc.splitlines()[0].replace("``", "`") if doc else type(task).__name__


def quality_lines(cfg: DemoConfig, stats: dict[str, Any], task: Task) -> list[str]:
    """Did SFT and the reward model learn? Their held-out figures against the quality gates (demo.learning)."""
    data, sft = stats["data"], stats["sft"]
    failures = quality_failures(stats, task.reward_range)
    passed = {True: "passed", False: "**FAILED**"}
    lines = [
        f"- **SFT**: gold reward of its samples on {data['sft_val_prompts']} held-out prompts "
        f"**{sft['heldout_gold']:.3f}** (best at step {sft['best_step']} of {sft['steps']}, cap {cfg.sft_steps}), "
        f"against the demonstrations' **{data['demonstration_gold_mean']:.3f}** and random responses' "
        f"**{data['random_gold_mean']:.3f}** (a response that ignores its prompt: `Task.random_response`, by default "
        f"a demonstration of another prompt); {sft['heldout_gold'] / max(data['demonstration_gold_mean'], 1e-9):.2f}"
        f"× the demonstrations. Gate (SFT gains at least {SFT_MIN_SHARE:g} of the demonstrations' advantage over "
        f"random): {passed[not any(f.startswith('SFT') for f in failures)]}.",
    ]
    if "annotation" in stats:
        rm, ann = stats["reward_model"], stats["annotation"]
        lines.append(
            f"- **Reward model**: {rm['steps']} steps (stopped when its accuracy on the held-out 10% of the pairs "
            f"stalled, at most {cfg.rm_epochs:g} epochs); held-out pair accuracy {_fmt(rm.get('heldout_accuracy'))} "
            f"against the noisy labels; it orders **{_fmt(ann['heldout_rm_gold_agreement'])}** of the held-out "
            f"groups' response pairs as the gold reward does (groups never used to train or select it). Gate (at "
            f"least {RM_MIN_ACCURACY:g}): {passed[not any(f.startswith('the reward model') for f in failures)]}.")
    lines.append(length_line(cfg, stats))
    return lines


def length_line(cfg: DemoConfig, stats: dict[str, Any]) -> str:
    """``max_length`` and what it cut of the SFT demonstrations and of the reward model's pairs."""
    parts = [f"{what}: {st['truncated_prompts']} prompts and {st['truncated_responses']} responses of "
             f"{st['groups']} cut" for what, st in (("SFT demonstrations", stats.get("sft", {})),
                                                      ("reward-model pairs", stats.get("reward_model", {})))
             if "truncated_prompts" in st]
    warning = cut_warning(cfg, stats)
    return (f"- **Sequence length**: `max_length` {cfg.max_length} tokens"
            + (f"; {'; '.join(parts)}." if parts else ".") + (f" **Warning: {warning}**" if warning else ""))


def cut_warning(cfg: DemoConfig, stats: dict[str, Any]) -> str | None:
    """A warning when ``max_length`` cut SFT demonstrations (a value given by hand: the fitted one cuts none)."""
    sft = stats.get("sft", {})
    prompts, responses = sft.get("truncated_prompts", 0), sft.get("truncated_responses", 0)
    if not prompts and not responses:
        return None
    return (f"max_length {cfg.max_length} cut {prompts} prompts and {responses} responses of the "
            f"{sft['groups']} SFT demonstrations; without --max_length it is fitted to hold them whole.")


def stop_message(cfg: DemoConfig, stats: dict[str, Any], failures: list[str]) -> str:
    """What the demo says when a stage did not learn, with the knobs that help that stage: SFT's steps when it
    stopped before the reward model (``stats`` has no annotation yet), else the reward model's."""
    if "annotation" not in stats:
        advice = "Give SFT more steps (--sft_steps)"
    elif cfg.rm_kind == "bt":
        advice = ("Start the reward model from the SFT model's own likelihood (--rm_kind likelihood, the default: on "
                  "keyword and reverse it ordered 0.84-1.00 of the held-out pairs as the gold reward does where a "
                  "score head ordered 0.57-0.66), or give it more pairs (--prompts) or members (--rm_members)")
    else:
        advice = "Give the reward model more pairs (--prompts) or members (--rm_members)"
    return ("The demo stopped: " + "; ".join(failures) + ". The methods are not ranked: a comparison of alignment "
            f"methods on a world where this stage did not learn would not mean anything. {advice}, or rerun with "
            "--force to continue anyway.")


def write_stopped_report(cfg: DemoConfig, stats: dict[str, Any], failures: list[str], seconds: float,
                         command: str) -> str:
    """``report.md`` of a demo stopped by a quality gate: why, and the figures of the stages it built."""
    task = get_task(cfg.task, **cfg.task_args)
    text = [f"# rewardalign demo: {cfg.task}, seed {cfg.seed} — stopped", "", f"`{command}` — {seconds:.0f} s wall "
            "time.", "", f"**{stop_message(cfg, stats, failures)}**", "", "## Did the stages learn?", "",
            *quality_lines(cfg, stats, task), ""]
    report = "\n".join(text)
    (Path(cfg.output) / "report.md").write_text(report)
    return report


RM_KIND_TEXT = {
    "bt": ("Bradley-Terry head", "Bradley-Terry heads", "logit"),
    "likelihood": ("likelihood reward model (beta / |y| * log pi(y|x), SimPO's reward, trained by Bradley-Terry)",
                   "likelihood reward models", "beta / |y| * log pi(y|x) - offset"),
}
"""Each ``rm_kind`` in words: one model, several, and what its reward is."""


def _rm_what(cfg: DemoConfig) -> str:
    """The reward model in words: one model of ``rm_kind``, or an ensemble of ``rm_members``."""
    one, many, _ = RM_KIND_TEXT[cfg.rm_kind]
    if cfg.rm_members > 1:
        return f"an ensemble of {cfg.rm_members} {many} (seeds {cfg.seed}-{cfg.seed + cfg.rm_members - 1})"
    return one


def _rm_reward(cfg: DemoConfig) -> str:
    reward = RM_KIND_TEXT[cfg.rm_kind][2]
    return f"the members' mean RM {reward}" if cfg.rm_members > 1 else f"RM {reward}"


def write_report(cfg: DemoConfig, world: World, rows: list[dict[str, Any]], plots: dict[str, str],
                 seconds: float, command: str, sharpened: dict[str, Any] | None = None) -> str:
    """``report.md`` in the output folder: the setup, whether the stages learned, the table, the choices and where
    the plots are."""
    s = world.stats
    smp, pref, rm, ann, sft = s["samples"], s["preferences"], s["reward_model"], s["annotation"], s["sft"]
    task = get_task(cfg.task, **cfg.task_args)
    failures = quality_failures(s, task.reward_range)
    warning = (["**Warning: " + "; ".join(failures) + ". The run continued because of --force: the ranking below "
                "does not mean much.**", ""] if failures else [])
    text = [
        f"# rewardalign demo: {cfg.task}, seed {cfg.seed}",
        "",
        f"`{command}` — {seconds:.0f} s wall time.",
        "",
        *warning,
        "## Setup",
        "",
        f"- **Task** `{cfg.task}` ({type(task).__name__}): gold reward in {list(task.reward_range)}, {task_line(task)}",
        f"- **SFT**: a tiny Llama {cfg.model_init} and a BPE tokenizer built from the data, "
        f"{sft['steps']} steps × {cfg.sft_batch_size} (at most {cfg.sft_steps}; the best of its evaluations every "
        f"{cfg.sft_eval_every} steps is kept) on {s['data']['sft_examples']} imperfect demonstrations "
        f"(their gold reward: {s['data']['demonstration_gold_mean']:.3f}).",
        f"- **Samples**: K = {cfg.k} responses per prompt from the SFT policy (temperature "
        f"{cfg.sample_temperature}) on {smp['prompts']} prompts; gold reward of the samples "
        f"{smp['sample_gold_mean']:.3f} ± {smp['sample_gold_std']:.3f} (std). Samples removed from their group: "
        f"{_counts(smp['samples_removed'])}; groups by K {smp['groups_by_k']}; "
        f"**{smp['groups_k_below_2_filtered']} groups with K < 2 filtered** for every method; "
        f"{smp['train_groups']} training and {smp['heldout_groups']} held-out groups.",
        f"- **Human preferences**: every pair of each training group, labelled by a Bradley-Terry draw on the "
        f"gold reward (temperature {cfg.annotator.get('temperature', 0.1)}, flip probability "
        f"{cfg.annotator.get('flip_prob', 0.0)}): {pref['pairs']} pairs ({pref['ties_skipped']} exact ties "
        f"skipped), {100 * pref['agree_with_gold']:.1f}% agree with the gold reward.",
        f"- **Reward model**: {_rm_what(cfg)} on the SFT model, {rm['steps']} steps on those pairs (at most "
        f"{cfg.rm_epochs:g} epochs{' each' if cfg.rm_members > 1 else ''}; the best of its evaluations every "
        f"{cfg.rm_eval_every} steps is kept); its held-out accuracy: below.",
        f"- **Annotation** of the K responses: rewards = {_rm_reward(cfg)} (mean {ann['rm_reward_mean']:.2f}, std "
        f"{ann['rm_reward_std']:.2f}); scores = {cfg.score_transform}(reward); labels = reward above the group's "
        f"mean ({100 * ann['train_label_share']:.0f}% desirable).",
        f"- **Alignment**: every method {cfg.align_steps} steps × {cfg.align_batch_size} groups (constant "
        f"learning rate, Adam), from the SFT policy, reference = the SFT policy. Learning rate and β per method "
        f"as `rewardalign.demo.config.METHODS` sets them (the table's columns), never tuned on this seed: for "
        f"every method the best of one grid, learning rate {{3e-5, 1e-4, 3e-4}} × (its paper's β × {{1/3, 1, "
        f"3}}), by held-out gold reward on the tuning seed 1000 of arithmetic, sort and count at the `--quick` "
        f"sizes (`python benchmarks/claims.py --tune`), on worlds whose reward model was a score head (bt); for "
        f"runs nearer 200 steps than 40, the learning rate tuned again at 200 (`FULL_BUDGET_LEARNING_RATES`, "
        f"`python benchmarks/tune_budget.py`)." + ("" if cfg.rm_kind == "bt" else
                                                   " With a likelihood reward model DRO, DRDO, UNA-score, UNA-binary, "
                                                   "DPO and KTO do best at other settings on that seed "
                                                   "(docs/demo/tune_likelihood.md): their rows are not tuned for it."),
        f"- **Evaluation**: {len(world.eval_prompts)} prompts × {cfg.eval_samples} samples (temperature "
        f"{cfg.eval_temperature}, the same sampling seed for every policy); "
        f"{s['data'].get('eval_prompts_seen_in_training', 0)} of these prompts occur in the SFT or preference "
        f"data, the others are new. Win rate against the "
        f"SFT policy's samples paired by prompt and sample index (ties count ½); KL(π‖SFT) is the Monte-Carlo "
        f"estimate on the policy's own samples; Δ log p: mean log-prob change of the held-out groups' chosen "
        f"(best by RM) and rejected (worst by RM) responses.",
        "",
        "## Did the stages learn?",
        "",
        *quality_lines(cfg, s, task),
        "",
        "## Results",
        "",
        results_table(rows, sharpened),
        "",
        *observations(rows, sharpened),
        "",
        "Which feedback each method reads (all from the same reward model on the same groups):",
        "",
    ]
    for r in rows[1:]:
        spec = METHODS.get(r["name"])
        text.append(f"- `{r['name']}` ({spec.source if spec else r['objective']}): "
                    f"{FEEDBACK_TEXT.get(r['feedback'], r['feedback'])}")
    text += ["", "## Plots and files", ""]
    if plots:
        for plot, name in plots.items():
            text.append(f"- {PLOT_NAMES.get(plot, plot)}: [`{name}`]({name})")
    else:
        text.append("- no plots (matplotlib missing or plots: false)")
    text += [
        "- `compare.md` / `compare.json`: the same runs through `rewardalign compare` (training loss, eval "
        "ranking accuracy, …)",
        "- `demo.json`: this table and every statistic above, for machines",
        "- `runs/<policy>/`: each aligned model (`save_pretrained`), its config, metrics, eval.json and samples",
        "- `data/`, `sft/`, `rm/`: the data sets, the SFT policy and the reward model; `.stages/` records the "
        "settings of each stage, and a rerun with the same settings reuses them (`--reuse false` rebuilds all)",
        "",
    ]
    report = "\n".join(text)
    write_text(Path(cfg.output) / "report.md", report)
    return report
