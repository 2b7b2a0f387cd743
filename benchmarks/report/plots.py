"""Seaborn figures for the report, returned as PNG bytes so the caller writes them atomically.

Every figure uses a legend (never free text labels near points, which overlap), labelled axes with
units, and fixed sizes and DPI; PNG metadata carries no software version or date, so the same
records give the same bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import ScalarFormatter  # noqa: E402

MARKERS = ("o", "s", "D", "^", "v", "P", "X", "<", ">", "p", "h", "*")


def png_bytes(figure: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def _png_with_legend(figure: plt.Figure, ax: plt.Axes) -> bytes:
    """One legend for all panels, right of them, taken from the first panel (every panel draws the same series)."""
    handles, labels = ax.get_legend_handles_labels()
    figure.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    figure.tight_layout()
    return png_bytes(figure)


def _style(methods: Sequence[str]) -> dict[str, tuple[tuple[float, float, float], str]]:
    """Colour and marker per method, keyed by its place among the registered methods (never by which methods a
    figure happens to show), so a method looks the same in every figure of every suite."""
    from methods import list_methods

    registered = sorted(list_methods())
    extra = sorted(set(methods) - set(registered))  # methods no longer registered: after the registered ones
    tab20 = sns.color_palette("tab20", n_colors=20)
    palette = tab20[0::2] + tab20[1::2]  # the ten strong colours first, then their light twins
    slot = {m: k for k, m in enumerate(registered + extra)}
    return {m: (palette[slot[m] % len(palette)], MARKERS[slot[m] % len(MARKERS)]) for m in set(methods)}


def _band(ax: plt.Axes, points: pd.DataFrame, x: str, y: str, color, label: str) -> None:
    """Mean over seeds as a line with markers every point, and mean ± std over seeds as a band."""
    grouped = points.groupby("step")
    mean, std = grouped[[x, y]].mean(), grouped[y].std(ddof=1).fillna(0.0)
    ax.plot(mean[x], mean[y], color=color, label=label, linewidth=1.4)
    ax.fill_between(mean[x], mean[y] - std, mean[y] + std, color=color, alpha=0.18, linewidth=0)


def pareto_front(points: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Points no other point beats on both axes (lower x is better, higher y is better), sorted by x."""
    ordered = points.dropna(subset=[x, y]).sort_values([x, y], ascending=[True, False])
    front, best = [], -math.inf
    for _, row in ordered.iterrows():
        if row[y] > best:
            front.append(row)
            best = row[y]
    return pd.DataFrame(front)


def accuracy_vs_cost(agg: pd.DataFrame, metric: str, metric_title: str,
                     costs: Sequence[tuple[str, str, bool]], references: Sequence[tuple[float, str]] = ()) -> bytes:
    """A ranking panel (methods sorted by the metric, readable however many sit at the same cost), then one
    panel per cost (column, axis title, log scale): mean metric with its seed std as error bars, the Pareto
    front as a dashed line, and reference levels (trivial baselines) as dotted lines. Error bars are the 95%
    interval (`METRIC:low`, `METRIC:high`) where the rows carry one."""
    style = _style(list(agg["method"]))
    with sns.axes_style("whitegrid"):
        figure, axes = plt.subplots(1, 1 + len(costs), figsize=(4.6 + 6.0 * len(costs), 0.3 * len(agg) + 3.4),
                                    squeeze=False, gridspec_kw={"width_ratios": [0.75] + [1.0] * len(costs)})
    _ranking(axes[0][0], agg, metric, metric_title, style, references)
    axes[0][0].set_title(f"ranking by {metric_title}")
    for ax, (column, title, log) in zip(axes[0][1:], costs, strict=True):
        for _, row in agg.iterrows():
            color, marker = style[row["method"]]
            ax.errorbar(row[column], row[metric], yerr=_error(row, metric), fmt=marker, color=color,
                        markersize=7, capsize=3, alpha=0.85, label=row["method"])
        front = pareto_front(agg, column, metric)
        if len(front) > 1:
            ax.plot(front[column], front[metric], "--", color="0.4", linewidth=1, label="Pareto front")
        for level, (value, label) in enumerate(references):
            ax.axhline(value, linestyle=":", color=str(0.2 + 0.3 * level), linewidth=1.2, label=label)
        if log:  # symmetric log: a method that adds nothing (full, frozen) sits at 0
            ax.set_xscale("symlog", linthresh=0.1, linscale=0.5)
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.set_xlim(-0.02, max(1.0, 1.5 * float(agg[column].max())))
        ax.set_xlabel(title)
        ax.set_ylabel(metric_title)
        ax.set_title(f"{metric_title} against {title.split(' (')[0]}")
    return _png_with_legend(figure, axes[0][1])


def _error(row: pd.Series, metric: str) -> list[list[float]] | float | None:
    """Asymmetric error bar from the row's interval, else its seed std, else none."""
    low, high = row.get(f"{metric}:low"), row.get(f"{metric}:high")
    if low is not None and high is not None and not (pd.isna(low) or pd.isna(high)):
        return [[max(0.0, row[metric] - low)], [max(0.0, high - row[metric])]]
    std = row.get(f"{metric}:std")
    return None if std is None or pd.isna(std) else std


def _ranking(ax: plt.Axes, agg: pd.DataFrame, metric: str, metric_title: str,
             style: dict[str, tuple[tuple[float, float, float], str]], references: Sequence[tuple[float, str]]) -> None:
    """Methods top to bottom from best to worst mean, with the interval (or seed std) as error bars."""
    ranked = agg.sort_values(metric, ascending=True, kind="stable").reset_index(drop=True)
    for position, row in ranked.iterrows():
        color, marker = style[row["method"]]
        ax.errorbar(row[metric], position, xerr=_error(row, metric), fmt=marker, color=color, markersize=7, capsize=3)
    for level, (value, _) in enumerate(references):
        ax.axvline(value, linestyle=":", color=str(0.2 + 0.3 * level), linewidth=1.2)
    ax.set_yticks(range(len(ranked)), ranked["method"])
    ax.set_ylim(-0.6, len(ranked) - 0.4)
    ax.set_xlabel(metric_title)
    ax.set_ylabel("method (best at the top)")


def training_curves(curves: pd.DataFrame) -> bytes:
    """Training loss against step per method (columns method, seed, step, loss; mean over seeds, band ± std):
    the whole run, and its second half where the methods separate. The legend lists methods by final loss,
    highest first, the order in which the lines end."""
    methods = sorted(curves["method"].unique())
    style = _style(methods)
    final = {m: curves[curves["method"] == m].groupby("step")["loss"].mean().iloc[-1] for m in methods}
    order = sorted(methods, key=lambda m: -final[m])
    last = int(curves["step"].max())
    with sns.axes_style("whitegrid"):
        figure, axes = plt.subplots(1, 2, figsize=(13.0, 4.8))
    for ax, start in zip(axes, (0, last // 2), strict=True):
        for method in order:
            points = curves[(curves["method"] == method) & (curves["step"] >= start)].assign(x=lambda f: f["step"])
            _band(ax, points, "x", "loss", style[method][0], method)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(ScalarFormatter())
        ax.set_xlabel("training step" if start == 0 else f"training step (from {start})")
        ax.set_ylabel("training loss (BCE, log scale)")
        ax.set_title("training loss, whole run" if start == 0 else "training loss, second half")
    return _png_with_legend(figure, axes[0])


def anytime_curves(points: pd.DataFrame, split: str) -> bytes:
    """Evaluation mIoU during training (columns method, seed, step, train_gflops, train_seconds, mIoU) against
    cumulative training compute and against training time: mean over seeds, band ± std."""
    methods = sorted(points["method"].unique())
    style = _style(methods)
    panels = [("train_gflops", "cumulative training GFLOPs (log scale)", True),
              ("train_seconds", "training time (s, mean over seeds)", False)]
    with sns.axes_style("whitegrid"):
        figure, axes = plt.subplots(1, 2, figsize=(13.0, 4.8))
    for ax, (x, title, log) in zip(axes, panels, strict=True):
        for method in methods:
            mine = points[points["method"] == method].dropna(subset=[x])
            if len(mine):
                _band(ax, mine, x, "mIoU", style[method][0], method)
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(title)
        ax.set_ylabel(f"{split} mIoU (%, anytime subset)")
        ax.set_title(f"{split} mIoU against training {'compute' if log else 'time'}")
    return _png_with_legend(figure, axes[0])


def kind_heatmap(table: pd.DataFrame, title: str) -> bytes:
    """Methods (rows) x expression kinds (columns), cell = mIoU; annotated so values read without a legend."""
    with sns.axes_style("white"):
        figure, ax = plt.subplots(figsize=(1.3 * len(table.columns) + 3.0, 0.42 * len(table) + 1.6))
    sns.heatmap(table, annot=True, fmt=".1f", cmap="viridis", ax=ax, cbar_kws={"label": "mIoU (%)"})
    ax.set_xlabel("expression kind")
    ax.set_ylabel("method")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=0)
    ax.tick_params(axis="y", rotation=0)
    figure.tight_layout()
    return png_bytes(figure)


def scaling_curves(rows: pd.DataFrame, x: str, x_title: str, panels: Sequence[tuple[str, str]]) -> bytes:
    """Cost against input size (or batch size) per method, one panel per cost column."""
    methods = sorted(rows["method"].unique())
    style = _style(methods)
    with sns.axes_style("whitegrid"):
        figure, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 4.4), squeeze=False)
    for ax, (column, title) in zip(axes[0], panels, strict=True):
        for method in methods:
            points = rows[rows["method"] == method].dropna(subset=[column]).sort_values(x)
            color, marker = style[method]
            ax.plot(points[x], points[column], marker=marker, color=color, label=method)
        ax.set_xlabel(x_title)
        ax.set_ylabel(title)
        ax.set_title(f"{title} against {x_title.split(' (')[0]}")
    return _png_with_legend(figure, axes[0][0])
