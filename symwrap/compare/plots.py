"""The PNGs of a :class:`~symwrap.compare.CompareReport` (matplotlib's Agg canvas; matplotlib is optional: it
comes with ``pip install 'symwrap[data]'``).

* ``compare_tradeoff.png``: the metric under random group elements against the inference-time ratio (log x),
  one labelled point per row;
* ``compare_equivariance.png``: E′ per row, log bars (an exact zero is drawn at the floor and labelled 0);
* ``compare_elements.png`` (finite groups): E′ under each group element, one series of points per row.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MissingDependencyError

if TYPE_CHECKING:
    from .report import CompareReport

__all__ = ["write_plots"]

#: errors below this (exact zeros, round-off) are drawn at it on the log axes
FLOOR = 1e-9


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise MissingDependencyError("matplotlib", "data", "the plots of symwrap.compare") from error
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def write_plots(report: CompareReport, folder: str | Path) -> list[Path]:
    """Write the report's PNGs into ``folder``; returns their paths.

    Raises:
        MissingDependencyError: matplotlib is not installed.
    """
    folder = Path(folder)
    paths = [_tradeoff(report, folder / "compare_tradeoff.png"),
             _equivariance(report, folder / "compare_equivariance.png")]
    if report.elements:
        paths.append(_per_element(report, folder / "compare_elements.png"))
    return paths


def _tradeoff(report: CompareReport, path: Path) -> Path:
    key = f"{report.metric} (moved)"
    figure = _figure(6.4, 4.4)
    axis = figure.subplots()
    for i, row in enumerate(report.rows):
        axis.scatter(row["inference_ratio"], row[key], zorder=3)
        # labels alternate above and below their points, so that rows with close values stay readable
        axis.annotate(row["method"], (row["inference_ratio"], row[key]), textcoords="offset points",
                      xytext=(5, 4 if i % 2 == 0 else -12), fontsize="small")
    axis.set_xscale("log")
    axis.set_xlabel("inference time / bare backbone's (log)")
    axis.set_ylabel(f"{'accuracy' if report.metric == 'accuracy' else 'MSE'} under random group elements")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def _equivariance(report: CompareReport, path: Path) -> Path:
    figure = _figure(6.4, 0.9 + 0.4 * len(report.rows))
    axis = figure.subplots()
    methods = [row["method"] for row in report.rows][::-1]
    values = [row["equivariance_error"] for row in report.rows][::-1]
    axis.barh(methods, [max(v, FLOOR) for v in values], left=FLOOR * 0.1)
    for position, value in enumerate(values):
        axis.annotate(f"{value:.2g}", (max(value, FLOOR), position), textcoords="offset points", xytext=(4, -3),
                      fontsize="small")
    axis.set_xscale("log")
    axis.set_xlabel(f"equivariance error E′ (log; below {FLOOR:g} drawn at {FLOOR:g})")
    axis.grid(alpha=0.3, axis="x")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def _per_element(report: CompareReport, path: Path) -> Path:
    figure = _figure(6.4, 4.4)
    axis = figure.subplots()
    positions = range(len(report.elements or []))
    spread = 0.5 / max(len(report.rows), 1)
    for j, row in enumerate(report.rows):  # side by side around each element, so that equal errors stay visible
        shift = (j - (len(report.rows) - 1) / 2) * spread
        axis.plot([p + shift for p in positions], [max(v, FLOOR) for v in row["per_element_error"]], marker="o",
                  linestyle="none", label=row["method"])
    axis.set_xticks(list(positions), report.elements, rotation=45 if len(positions) > 8 else 0, fontsize="small")
    axis.set_yscale("log")
    axis.set_xlabel("group element")
    axis.set_ylabel(f"E′ under the element (log; floor {FLOOR:g})")
    axis.legend(fontsize="x-small", ncol=2)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path
