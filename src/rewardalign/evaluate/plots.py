"""PNG plots of several runs: training curves, the reward-KL frontier, likelihood drift.

matplotlib is an optional extra (``pip install 'rewardalign[plots]'``); :func:`have_matplotlib` says whether it
is there. Figures are drawn on the Agg canvas directly (``matplotlib.figure.Figure``, no ``pyplot``), so
plotting never switches the backend or touches global state of a caller's interactive session.
Readable with up to 16 methods: each gets its own colour and marker (:func:`style`), legends sit below the panels,
and metrics of different scales get panels of their own. Every function returns the path written (atomically), or
None when it had nothing to draw.
"""

from __future__ import annotations

import importlib.util
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..runs import atomic_path


def have_matplotlib() -> bool:
    try:
        return importlib.util.find_spec("matplotlib") is not None
    except ValueError:  # a module set to None in sys.modules
        return False


COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#000000")
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">", "p", "h", "d", "8", "H", "+")
"""16 colours and 16 markers: the i-th method of a plot gets both (up to 16 methods are told apart by either)."""
LINESTYLES = ("-", "--", ":", "-.")
SCALE_GAP = 10.0
"""Runs whose typical |value| of a metric differ by more than this factor are drawn on separate panels."""


def style(i: int) -> dict[str, str]:
    """Colour and marker of the i-th method or run of a plot."""
    return {"color": COLORS[i % len(COLORS)], "marker": MARKERS[i % len(MARKERS)]}


def _figure(width: float, height: float, nrows: int = 1, ncols: int = 1) -> tuple[Any, list[Any]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(nrows * ncols)]
    return fig, axes


def _save(fig: Any, path: str | Path, legend: tuple[list[Any], list[str]] | None = None, ncol: int = 4,
          spare: Any = None) -> Path:
    """Save ``fig`` atomically with one ``legend`` (handles, labels): in the ``spare`` (unused) axes where there is
    one, else below the panels in ``ncol`` columns."""
    bottom = 0.0
    if legend is not None and spare is not None:
        spare.axis("off")
        spare.legend(*legend, loc="center", ncol=max(1, min(ncol, len(legend[1]) // 6)), fontsize=8, frameon=False)
    elif legend is not None:
        rows = -(-len(legend[1]) // ncol)
        bottom = min(0.45, (0.2 * rows + 0.1) / fig.get_figheight())
        fig.legend(*legend, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def scale_groups(series: dict[str, list[float]]) -> list[list[str]]:
    """Names of ``series`` grouped by scale (median |value|): a new group wherever the scale passes
    :data:`SCALE_GAP` times the smallest of the current group; groups ordered by scale."""
    scale = {name: statistics.median(abs(v) for v in values) for name, values in series.items() if values}
    groups: list[list[str]] = []
    for name in sorted(scale, key=scale.get):
        if groups and scale[name] <= SCALE_GAP * max(scale[groups[-1][0]], 1e-12):
            groups[-1].append(name)
        else:
            groups.append([name])
    return groups


def run_styles(methods: dict[str, str]) -> dict[str, dict[str, str]]:
    """Run name -> its method's :func:`style` (methods in name order, as in the frontier), and a line style telling
    the runs of one method (a beta sweep) apart."""
    index = {m: i for i, m in enumerate(sorted(set(methods.values())))}
    seen: dict[str, int] = {}
    out = {}
    for name, method in methods.items():
        k = seen[method] = seen.get(method, -1) + 1
        out[name] = style(index[method]) | {"linestyle": LINESTYLES[k % len(LINESTYLES)]}
    return out


def training_curves(curves: dict[str, dict[str, list[tuple[float, float]]]], keys: Sequence[str],
                    path: str | Path, methods: dict[str, str] | None = None) -> Path | None:
    """Metrics in ``keys`` against step, one line per run (:func:`run_styles` by its method in ``methods``, run
    name -> method; one legend); runs whose values of a metric differ in scale (:func:`scale_groups`) get a panel
    each, so IPO's loss does not flatten the others'.

    ``curves``: run name -> metric name -> [(step, value), ...].
    """
    styles = run_styles({name: (methods or {}).get(name) or name for name in curves})
    panels = []
    for key in keys:
        groups = scale_groups({name: [v for _, v in run.get(key) or []] for name, run in curves.items()})
        panels += [(key, group, len(groups) > 1) for group in groups]
    if not panels:
        return None
    ncols = min(3, len(panels) + 1)
    nrows = -(-(len(panels) + 1) // ncols)  # one more slot: the legend
    fig, axes = _figure(5.0 * ncols, 3.6 * nrows, nrows, ncols)
    handles: dict[str, Any] = {}
    for ax, (key, names, split) in zip(axes, panels):
        names = [n for n in curves if n in names]
        for name in names:
            points = curves[name][key]
            (line,) = ax.plot([s for s, _ in points], [v for _, v in points], linewidth=1.4,
                              markevery=max(1, len(points) // 8), markersize=5, **styles[name])
            handles.setdefault(name, line)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        title = key
        if split:
            title += f": {', '.join(names)}" if len(names) <= 3 else f": {len(names)} runs of this scale"
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes[len(panels) + 1:]:
        ax.set_visible(False)
    names = [n for n in curves if n in handles]
    return _save(fig, path, ([handles[n] for n in names], names), spare=axes[len(panels)])


def reward_kl_frontier(points: Sequence[dict[str, Any]], path: str | Path, reward_label: str = "reward") -> Path | None:
    """Reward against KL(pi || pi_ref), one curve per objective through its runs sorted by KL, each objective in its
    own colour and marker.

    ``points``: dicts with ``objective``, ``kl``, ``reward`` and optionally ``beta``, ``kl_ci``, ``reward_ci``
    (each [lo, hi]). The betas go in the legend, in the curve's order (no labels on the points to collide).
    """
    curves = frontier_curves(points)
    if not curves:
        return None
    fig, (ax,) = _figure(7.0, 5.0 + 0.28 * (len(curves) // 2 + 1))
    handles, labels = [], []
    for i, (objective, mine) in enumerate(curves.items()):
        xs, ys = [p["kl"] for p in mine], [p["reward"] for p in mine]
        xerr = [_err(p, "kl", p["kl"]) for p in mine]
        yerr = [_err(p, "reward", p["reward"]) for p in mine]
        bars = ax.errorbar(xs, ys, xerr=list(zip(*xerr)), yerr=list(zip(*yerr)), capsize=3, markersize=6,
                           linewidth=1.4, elinewidth=0.8, alpha=0.9, **style(i))
        betas = [f"{p['beta']:g}" for p in mine if p.get("beta") is not None]
        handles.append(bars)
        labels.append(f"{objective} (β {', '.join(betas)})" if betas else objective)
    ax.set_xlabel("KL(π || π_ref) (sampled estimate)")
    ax.set_ylabel(reward_label)
    ax.set_title("reward-KL frontier (β in the legend in order of KL)")
    ax.grid(alpha=0.3)
    return _save(fig, path, (handles, labels), ncol=2)


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
    fig, (ax,) = _figure(max(5.0, 0.7 * len(items) + 2), 4.5)
    xs = list(range(len(items)))
    width = 0.38
    for offset, side, color in ((-width / 2, "chosen", "tab:green"), (width / 2, "rejected", "tab:red")):
        values = [i.get(f"{side}_logp_shift") for i in items]
        ax.bar([x + offset for x, v in zip(xs, values) if v is not None], [v for v in values if v is not None],
               width, label=side, color=color)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(xs)
    ax.set_xticklabels([str(i["name"]) for i in items], rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("log π(y|x) − log π_ref(y|x)")
    ax.set_title("likelihood drift of given responses")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return _save(fig, path)
