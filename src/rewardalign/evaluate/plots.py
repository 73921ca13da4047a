"""PNG plots of several runs: training curves, the reward-KL frontier, likelihood drift.

matplotlib is an optional extra (``pip install 'rewardalign[plots]'``); :func:`have_matplotlib` says whether it
is there. Figures are drawn on the Agg canvas directly (``matplotlib.figure.Figure``, no ``pyplot``), so
plotting never switches the backend or touches global state of a caller's interactive session.
Every function returns the path written, or None when it had nothing to draw.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def have_matplotlib() -> bool:
    try:
        return importlib.util.find_spec("matplotlib") is not None
    except ValueError:  # a module set to None in sys.modules
        return False


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Any, list[Any]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def training_curves(curves: dict[str, dict[str, list[tuple[float, float]]]], keys: Sequence[str],
                    path: str | Path) -> Path | None:
    """One panel per metric in ``keys`` (value against step), one line per run.

    ``curves``: run name -> metric name -> [(step, value), ...].
    """
    keys = [k for k in keys if any(c.get(k) for c in curves.values())]
    if not keys:
        return None
    fig, axes = _figure(5.0 * len(keys), 3.8, ncols=len(keys))
    for ax, key in zip(axes, keys):
        for name, run in curves.items():
            points = run.get(key)
            if points:
                ax.plot([s for s, _ in points], [v for _, v in points], label=name, linewidth=1.5)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.set_title(key)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def reward_kl_frontier(points: Sequence[dict[str, Any]], path: str | Path, reward_label: str = "reward") -> Path | None:
    """Reward against KL(pi || pi_ref), one curve per objective through its runs sorted by KL.

    ``points``: dicts with ``objective``, ``kl``, ``reward`` and optionally ``beta``, ``kl_ci``, ``reward_ci``
    (each [lo, hi]); each point is annotated with its beta.
    """
    curves = frontier_curves(points)
    if not curves:
        return None
    fig, (ax,) = _figure(6.0, 4.5)
    for objective, mine in curves.items():
        xs, ys = [p["kl"] for p in mine], [p["reward"] for p in mine]
        xerr = [_err(p, "kl", p["kl"]) for p in mine]
        yerr = [_err(p, "reward", p["reward"]) for p in mine]
        ax.errorbar(xs, ys, xerr=list(zip(*xerr)), yerr=list(zip(*yerr)), marker="o", capsize=3, label=objective)
        for p in mine:
            if p.get("beta") is not None:
                ax.annotate(f"β={p['beta']:g}", (p["kl"], p["reward"]), textcoords="offset points", xytext=(4, 4),
                            fontsize=7)
    ax.set_xlabel("KL(π || π_ref) (sampled estimate)")
    ax.set_ylabel(reward_label)
    ax.set_title("reward-KL frontier")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def frontier_curves(points: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Objective -> its points that have both kl and reward, sorted by kl (objectives in name order)."""
    points = [p for p in points if p.get("kl") is not None and p.get("reward") is not None]
    return {objective: sorted((p for p in points if str(p.get("objective")) == objective), key=lambda p: p["kl"])
            for objective in sorted({str(p.get("objective")) for p in points})}


def _err(point: dict[str, Any], key: str, center: float) -> tuple[float, float]:
    """(below, above) error bar lengths from ``point[key + '_ci']``; zero when absent or undefined."""
    ci = point.get(f"{key}_ci")
    if not ci or ci[0] is None or ci[1] is None or ci[0] != ci[0]:
        return (0.0, 0.0)
    return (max(center - ci[0], 0.0), max(ci[1] - center, 0.0))


def likelihood_drift(items: Sequence[dict[str, Any]], path: str | Path) -> Path | None:
    """Grouped bars per run: the chosen and the rejected responses' mean log-prob shift from the reference.

    ``items``: dicts with ``name`` and ``chosen_logp_shift`` and / or ``rejected_logp_shift``.
    """
    items = [i for i in items if i.get("chosen_logp_shift") is not None or i.get("rejected_logp_shift") is not None]
    if not items:
        return None
    fig, (ax,) = _figure(max(5.0, 1.2 * len(items) + 2), 4.0)
    xs = list(range(len(items)))
    width = 0.38
    for offset, side, color in ((-width / 2, "chosen", "tab:green"), (width / 2, "rejected", "tab:red")):
        values = [i.get(f"{side}_logp_shift") for i in items]
        ax.bar([x + offset for x, v in zip(xs, values) if v is not None], [v for v in values if v is not None],
               width, label=side, color=color)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(xs)
    ax.set_xticklabels([str(i["name"]) for i in items], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("log π(y|x) − log π_ref(y|x)")
    ax.set_title("likelihood drift of given responses")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return _save(fig, path)
