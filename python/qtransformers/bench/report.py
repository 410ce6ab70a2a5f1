"""Benchmark output: a printed table, ``results.csv`` and PNG plots."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np


def _cell(v) -> str:
    """A table cell: floats to 4 significant digits (NaN as "-"), everything else as ``str``."""
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)


def format_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """Fixed-width text table of ``rows`` (dicts) over ``columns``."""
    body = [[_cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


def format_markdown(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """The same table as GitHub Markdown (cells may hold spaces; ``|`` is escaped)."""

    def line(cells) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [line(columns), "|" + "---|" * len(columns)]
    out += [line([_cell(r.get(c, "")) for c in columns]) for r in rows]
    return "\n".join(out)


def write_csv(rows: Iterable[dict], columns: Sequence[str], path: Path) -> None:
    """Write ``rows`` to ``path`` as CSV with a header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: Path) -> tuple[list[dict], list[str]]:
    """(rows, columns) of a CSV file with a header; cells that parse as int or float become numbers."""

    def number(text: str):
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return text

    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = [{k: number(v) for k, v in row.items()} for row in reader]
        return rows, list(reader.fieldnames or [])


def plot_lines(
    rows: Sequence[dict],
    *,
    x: str,
    y: str,
    series: str,
    path: Path,
    title: str,
    panels: str | None = None,
    logx: bool = True,
    logy: bool = True,
    ylim: tuple[float, float] | None = None,
) -> None:
    """Line plot of ``y`` against ``x``, one line per ``series`` value, one panel per ``panels`` value
    (``ylim``: fixed y range, e.g. (0, 1) for an accuracy)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panel_keys = sorted({r[panels] for r in rows}, key=str) if panels else [None]
    fig, axes = plt.subplots(1, len(panel_keys), figsize=(6 * len(panel_keys), 4.5), squeeze=False)
    for ax, key in zip(axes[0], panel_keys):
        subset = [r for r in rows if panels is None or r[panels] == key]
        for name in sorted({r[series] for r in subset}, key=str):
            pts = sorted((r[x], r[y]) for r in subset if r[series] == name and not _missing(r[y]))
            if pts:
                ax.plot(*zip(*pts), marker="o", label=str(name))
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(title if key is None else f"{title} ({panels}={key})")
        if logx:
            ax.set_xscale("log", base=2)
        if logy:
            ax.set_yscale("log")
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of log(y) against log(x) (NaN with fewer than two positive points)."""
    pts = np.array([(a, b) for a, b in zip(xs, ys) if a > 0 and not _missing(b) and b > 0], dtype=float)
    if len(pts) < 2:
        return float("nan")
    return float(np.polyfit(np.log(pts[:, 0]), np.log(pts[:, 1]), 1)[0])
