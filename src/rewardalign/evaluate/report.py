"""``rewardalign compare RUN... [--output DIR]``: several run folders as one table, plots and JSON.

A run folder may hold ``summary.json``, ``config.yaml`` (``objective``, ``objective_args.beta``),
``metrics.jsonl`` (training logs: loss, rewards/chosen, logps/chosen, eval_ranking_accuracy, ... with step)
and ``eval.json`` (from ``rewardalign evaluate``: reward_mean, reward_ci, kl, win_rate, chosen_logp_shift,
rejected_logp_shift, eos_missing_fraction, length, ...); it needs at least one of them. The output folder gets:

- ``compare.md``: a Markdown table, one row per run (columns that no run has are left out), and the plots;
- ``compare.json``: every run's objective, beta, summary, eval and training curves, for machines;
- ``training_curves.png`` (loss and logps/chosen against step, one line per run),
  ``reward_kl_frontier.png`` (gold reward mean against KL, one curve per objective, points sorted by KL,
  one point per run of a beta sweep) and ``likelihood_drift.png`` (chosen / rejected log-prob shift per run),
  each where some run has its data, and only with matplotlib installed (``rewardalign[plots]``); without it
  the table and the JSON are still written and the report says why there are no plots.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import ConfigError
from . import plots

RUN_FILES = ("summary.json", "config.yaml", "metrics.jsonl", "eval.json")
CURVE_KEYS = ("loss", "logps/chosen")


@dataclass
class Run:
    """What a run folder holds; ``curves``: metric -> [(step, value)] from ``metrics.jsonl``."""

    name: str
    path: str
    objective: str | None = None
    beta: float | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] | None = None
    curves: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def read_curves(path: Path) -> dict[str, list[tuple[float, float]]]:
    """Each numeric key of the JSON lines against their ``step`` (the last value wins on a repeated step)."""
    curves: dict[str, dict[float, float]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}, line {n}: invalid JSON ({err})") from None
        step = _number(row.get("step")) if isinstance(row, dict) else None
        if step is None:
            continue
        for key, value in row.items():
            value = _number(value)
            if key != "step" and value is not None:
                curves.setdefault(key, {})[step] = value
    return {key: sorted(points.items()) for key, points in curves.items()}


def load_run(path: str | Path, name: str | None = None) -> Run:
    """Read a run folder; a folder with none of the run files is a ConfigError."""
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(f"run folder {folder} does not exist")
    if not any((folder / f).is_file() for f in RUN_FILES):
        raise ConfigError(f"{folder} is not a run folder: it has none of {', '.join(RUN_FILES)}")
    run = Run(name=name or folder.name, path=str(folder))
    if (folder / "summary.json").is_file():
        run.summary = json.loads((folder / "summary.json").read_text())
    if (folder / "config.yaml").is_file():
        run.config = yaml.safe_load((folder / "config.yaml").read_text()) or {}
    if (folder / "eval.json").is_file():
        run.eval = json.loads((folder / "eval.json").read_text())
    if (folder / "metrics.jsonl").is_file():
        run.curves = read_curves(folder / "metrics.jsonl")
    run.objective = run.config.get("objective") or run.summary.get("objective")
    args = run.config.get("objective_args") or {}
    run.beta = _number(args.get("beta")) if isinstance(args, dict) else None
    return run


def unique_names(paths: list[str | Path]) -> list[str]:
    """Folder names, with as many parent folders as it takes to tell them apart."""
    parts = [Path(p).resolve().parts for p in paths]
    depth = 1
    while True:
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names) or depth >= max(len(p) for p in parts):
            return names
        depth += 1


def _last(run: Run, key: str) -> float | None:
    points = run.curves.get(key)
    return points[-1][1] if points else None


def _either(value: Any, fallback: Any) -> Any:
    return value if value is not None else fallback


def table_row(run: Run) -> dict[str, Any]:
    """The table's values of a run (None where it lacks one)."""
    ev = run.eval or {}
    final_eval = run.summary.get("final_eval") or {}
    length = ev.get("length") or {}
    return {
        "run": run.name,
        "objective": run.objective,
        "beta": run.beta,
        "steps": run.summary.get("steps"),
        "train_loss": _either(_number(run.summary.get("train_loss")), _last(run, "loss")),
        "eval_ranking_accuracy": _either(_number(final_eval.get("eval_ranking_accuracy")),
                                         _last(run, "eval_ranking_accuracy")),
        "reward_mean": _number(ev.get("reward_mean")),
        "reward_ci": ev.get("reward_ci"),
        "kl": _number(ev.get("kl")),
        "kl_ci": ev.get("kl_ci"),
        "win_rate": _number(ev.get("win_rate")),
        "win_rate_ci": ev.get("win_rate_ci"),
        "chosen_logp_shift": _number(ev.get("chosen_logp_shift")),
        "rejected_logp_shift": _number(ev.get("rejected_logp_shift")),
        "tokens_mean": _number(length.get("tokens_mean")),
        "eos_missing_fraction": _number(ev.get("eos_missing_fraction")),
    }


# (key, header, has a CI column)
COLUMNS = (
    ("run", "run", False), ("objective", "objective", False), ("beta", "β", False), ("steps", "steps", False),
    ("train_loss", "train loss", False), ("eval_ranking_accuracy", "eval ranking acc.", False),
    ("reward_mean", "reward (95% CI)", True), ("kl", "KL", True), ("win_rate", "win rate", True),
    ("chosen_logp_shift", "Δ log p chosen", False), ("rejected_logp_shift", "Δ log p rejected", False),
    ("tokens_mean", "tokens", False), ("eos_missing_fraction", "no EOS", False),
)


def _cell(row: dict[str, Any], key: str, with_ci: bool) -> str:
    value = row.get(key)
    if value is None:
        return "–"
    if not isinstance(value, float):
        return str(value)
    text = f"{value:.4g}"
    ci = row.get(f"{key.removesuffix('_mean')}_ci") if with_ci else None
    if ci and all(_number(c) is not None for c in ci):
        text += f" [{ci[0]:.3g}, {ci[1]:.3g}]"
    return text


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of ``rows`` (from :func:`table_row`); columns no row has are left out."""
    columns = [c for c in COLUMNS if c[0] == "run" or any(r.get(c[0]) is not None for r in rows)]
    lines = ["| " + " | ".join(header for _, header, _ in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row, key, ci).replace("|", "\\|") for key, _, ci in columns) + " |")
    return "\n".join(lines)


def frontier_points(runs: list[Run]) -> list[dict[str, Any]]:
    return [{"name": r.name, "objective": r.objective or r.name, "beta": r.beta,
             "kl": _number(r.eval.get("kl")), "kl_ci": r.eval.get("kl_ci"),
             "reward": _number(r.eval.get("reward_mean")), "reward_ci": r.eval.get("reward_ci")}
            for r in runs if r.eval]


def make_plots(runs: list[Run], output: Path) -> tuple[dict[str, str], list[str]]:
    """Write the plots that have data; returns ({plot: file name}, notes)."""
    if not plots.have_matplotlib():
        return {}, ["matplotlib is not installed, so there are no plots: pip install 'rewardalign[plots]'"]
    written, notes = {}, []
    judges = {r.eval.get("judge") for r in runs if r.eval and r.eval.get("judge")}
    label = f"reward ({judges.pop()})" if len(judges) == 1 else "reward"
    rows = [table_row(r) for r in runs]
    makers = {
        "training_curves": lambda p: plots.training_curves({r.name: r.curves for r in runs}, CURVE_KEYS, p),
        "reward_kl_frontier": lambda p: plots.reward_kl_frontier(frontier_points(runs), p, label),
        "likelihood_drift": lambda p: plots.likelihood_drift(
            [{"name": r["run"], **{k: r[k] for k in ("chosen_logp_shift", "rejected_logp_shift")}} for r in rows], p),
    }
    why = {"training_curves": "no run has loss or logps/chosen in metrics.jsonl",
           "reward_kl_frontier": "no run has kl and reward_mean in eval.json (evaluate with a judge and a reference)",
           "likelihood_drift": "no run has chosen/rejected_logp_shift in eval.json (evaluate with pairs)"}
    for plot, make in makers.items():
        path = make(output / f"{plot}.png")
        if path is None:
            notes.append(f"no {plot.replace('_', ' ')} plot: {why[plot]}")
        else:
            written[plot] = path.name
    return written, notes


def compare_runs(paths: list[str | Path], output: str | Path) -> dict[str, Any]:
    """Load the runs, write ``compare.md``, ``compare.json`` and the plots into ``output``; returns the JSON."""
    if not paths:
        raise ConfigError("compare needs at least one run folder")
    runs = [load_run(p, n) for p, n in zip(paths, unique_names(list(paths)))]
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    rows = [table_row(r) for r in runs]
    written, notes = make_plots(runs, out)
    table = markdown_table(rows)
    md = ["# Run comparison", "", table, ""]
    md += [f"![{plot.replace('_', ' ')}]({name})" for plot, name in written.items()]
    md += [""] + [f"- {note}" for note in notes]
    (out / "compare.md").write_text("\n".join(md).rstrip() + "\n")
    report = {"runs": [asdict(r) | {"table": row} for r, row in zip(runs, rows)], "table": table,
              "plots": written, "notes": notes}
    (out / "compare.json").write_text(json.dumps(report, indent=2, default=str))
    return report
