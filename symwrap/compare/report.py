"""The table :func:`symwrap.compare` returns: printing it, the recommendation computed from it, and writing it
(CSV, JSON and the plots of :mod:`symwrap.compare.plots`)."""

from __future__ import annotations

import csv
import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError

__all__ = ["CompareReport", "recommend"]

COLUMNS = ("{metric}", "{metric} (moved)", "equivariance_error", "train_s", "inference_ratio", "parameters")


@dataclasses.dataclass
class CompareReport:
    """The table of :func:`~symwrap.compare.compare`.

    Attributes:
        rows: one dict per trained model: ``method``, the metric as given and ``(moved)``, ``equivariance_error``
            (E′), ``per_element_error`` (finite groups: E′ under each element of ``elements``), ``train_s``
            (with a teacher's training), ``steps``, ``inference_ratio``, ``parameters``; a cloning row adds
            ``teacher`` (the registry entry, ``"given"`` or ``"no teacher"``), ``teacher_steps``,
            ``teacher_train_s``, the teacher's test metric (``teacher_accuracy`` or ``teacher_mse``),
            ``cloning_steps`` and ``teacher_note``.
        skipped: strategy -> why it does not apply.
        metric: ``"accuracy"`` or ``"mse"``.
        recommendation: the line computed by :func:`recommend`.
        elements: the labels of the group elements of ``per_element_error`` (``None`` for infinite groups).
        resumed: the rows read from an earlier run's output folder instead of trained.
        settings: what the rows were trained with (steps, lr, seed, group, actions, data and weight digests).
    """

    rows: list[dict[str, Any]]
    skipped: dict[str, str]
    metric: str
    recommendation: str
    elements: list[str] | None = None
    resumed: list[str] = dataclasses.field(default_factory=list)
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)

    def columns(self) -> list[str]:
        return ["method", *(column.format(metric=self.metric) for column in COLUMNS)]

    def notes(self) -> list[str]:
        """One line per row with a teacher (or without the one it could have had)."""
        lines = []
        for row in self.rows:
            teacher = row.get("teacher")
            if teacher is None:
                continue
            score = row.get(f"teacher_{self.metric}")
            shown = "" if score is None else f", test {self.metric} {score:.3g}"
            if row.get("teacher_steps"):
                lines.append(f"{row['method']}: teacher {teacher} trained {row['teacher_steps']} steps "
                             f"({row['teacher_train_s']:.3g} s, counted in train_s{shown}), then cloned "
                             f"{row['cloning_steps']} steps and fine-tuned {row['steps'] - row['cloning_steps']}")
            elif teacher == "no teacher":
                lines.append(f"{row['method']}: no teacher ({row['teacher_note']}); trained on the task loss alone")
            else:
                lines.append(f"{row['method']}: teacher {teacher} (given, not trained here{shown}), cloned "
                             f"{row['cloning_steps']} steps and fine-tuned {row['steps'] - row['cloning_steps']}")
        return lines

    def table(self) -> str:
        """The rows as aligned text, then the strategies that do not apply, the notes and the recommendation."""
        columns = self.columns()
        cells = [[_cell(row.get(c)) for c in columns] for row in self.rows]
        widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
        lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
        lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells]
        lines += [f"not applicable: {name} ({reason})" for name, reason in self.skipped.items()]
        lines += self.notes()
        if self.resumed:
            lines.append(f"read from the output folder, not retrained: {', '.join(self.resumed)}")
        lines.append(self.recommendation)
        return "\n".join(lines)

    def save(self, directory: str | Path, *, plots: bool = True) -> Path:
        """``compare.csv``, ``compare.json`` and (with ``plots`` and matplotlib installed) the PNGs of
        :func:`~symwrap.compare.plots.write_plots` in ``directory``. Without matplotlib the tables are written
        and a warning says how to install it."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        fields = list(dict.fromkeys(key for row in self.rows for key in row))
        with open(folder / "compare.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows({key: json.dumps(value) if isinstance(value, list) else value
                              for key, value in row.items()} for row in self.rows)
        (folder / "compare.json").write_text(json.dumps(dataclasses.asdict(self), indent=2, default=str) + "\n")
        if plots:
            from .plots import write_plots

            try:
                write_plots(self, folder)
            except MissingDependencyError as error:
                warnings.warn(f"{error}; wrote the tables without the plots", stacklevel=2)
        return folder


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "-" if value is None else str(value)


def recommend(rows: list[dict[str, Any]], metric: str, max_ratio: float | None) -> str:
    """The row with the best metric under moved inputs among those at most ``max_ratio`` times slower than the
    bare backbone at inference, as a sentence."""
    key = f"{metric} (moved)"
    eligible = [r for r in rows if max_ratio is None or r["inference_ratio"] <= max_ratio]
    if not eligible:
        return f"recommendation: none of the rows is within an inference ratio of {max_ratio}"
    best = (max if metric == "accuracy" else min)(eligible, key=lambda r: r[key])
    limit = "" if max_ratio is None else f" within {max_ratio}x the bare backbone's inference time"
    return (f"recommendation: {best['method']} — the best {key} ({best[key]:.3g}){limit}, inference ratio "
            f"{best['inference_ratio']:.2f}, E′ {best['equivariance_error']:.2g}")
