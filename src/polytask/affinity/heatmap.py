"""Heatmap PNG of one affinity matrix (matplotlib, imported lazily; no pyplot global state)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from polytask._core import require, write_with


def save_heatmap(
    path: str | os.PathLike[str],
    matrix: np.ndarray,
    task_names: Sequence[str],
    title: str = "",
    *,
    row_label: str = "source i",
    col_label: str = "target j",
) -> None:
    """Write ``matrix`` as an annotated heatmap PNG, atomically. NaN cells are left blank.

    The colour scale is symmetric around 0 and set by the largest off-diagonal magnitude, so a
    unit diagonal does not wash out the pairs (diagonal cells may saturate).
    """
    figure_mod = require("matplotlib.figure", extra="affinity")
    agg = require("matplotlib.backends.backend_agg", extra="affinity")
    a = np.asarray(matrix, dtype=np.float64)
    m = a.shape[0]
    size = max(3.5, 0.55 * m + 2.0)
    fig = figure_mod.Figure(figsize=(size, size * 0.85))
    agg.FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    off = a[
        ~np.eye(m, dtype=bool) & np.isfinite(a)
    ]  # the colour scale follows the pairs, not the diagonal
    lim = float(np.abs(off).max()) if off.size and np.abs(off).max() > 0 else 1.0
    im = ax.imshow(np.ma.masked_invalid(a), cmap="RdBu_r", vmin=-lim, vmax=lim)
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_xticks(range(m), labels=list(task_names), rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(m), labels=list(task_names), fontsize=8)
    ax.set_xlabel(col_label)
    ax.set_ylabel(row_label)
    exponent = int(np.floor(np.log10(lim))) if lim < 0.01 or lim >= 1000 else 0
    shown = a / 10.0**exponent
    if exponent:
        title = f"{title} (values x 1e{exponent})"
    if m <= 16:
        for i in range(m):
            for j in range(m):
                if np.isfinite(a[i, j]):
                    dark = abs(a[i, j]) > 0.6 * lim
                    ax.text(
                        j,
                        i,
                        f"{shown[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if dark else "black",
                    )
    ax.set_title(title)
    fig.tight_layout()
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
