"""One PNG of a search: every trial's reward curve, and the metric against each searched setting."""

import math
from pathlib import Path
from typing import List

from godot_rl_cli.search.results import TrialRow
from godot_rl_cli.search.space import SearchSpace

STATUS_MARKERS = {"finished": "o", "pruned": "x", "stopped": "s", "failed": "v"}


def plot_search(rows: List[TrialRow], space: SearchSpace, metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    names = list(space.dimensions)
    columns = min(3, len(names) + 1)
    lines = math.ceil((len(names) + 1) / columns)
    figure, axes = plt.subplots(lines, columns, figsize=(5 * columns, 3.6 * lines), squeeze=False)
    axes = axes.flatten()
    curves = axes[0]
    for row in rows:
        if row.curve:
            steps, rewards = zip(*row.curve)
            curves.plot(steps, rewards, label=f"{row.trial} ({row.status})", linewidth=1)
    curves.set(title="episode reward mean per iteration", xlabel="env steps", ylabel="reward")
    if any(row.curve for row in rows):
        curves.legend(fontsize="x-small")
    for axis, name in zip(axes[1:], names):
        dimension = space.dimensions[name]
        for status, marker in STATUS_MARKERS.items():
            points = [
                (row.settings[name], row.metric)
                for row in rows
                if row.status == status and name in row.settings and not math.isnan(row.metric)
            ]
            if points:
                values, metrics = zip(*points)
                shown = [str(value) for value in values] if dimension.distribution == "choice" else values
                axis.scatter(shown, metrics, marker=marker, label=status)
        if dimension.distribution == "loguniform":
            axis.set_xscale("log")
        axis.set(title=name, xlabel=name, ylabel=metric)
        if axis.collections:
            axis.legend(fontsize="x-small")
    for axis in axes[len(names) + 1 :]:
        axis.set_visible(False)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
