"""Accuracy (or MSE) and equivariance error per group element: what ``symwrap eval DIR`` prints.

For a finite group every element is evaluated (a seeded sample of them above ``max_elements``);
for a continuous rotation group a grid of rotation angles, in the plane or about one axis; for
other infinite groups (translations, permutations of any size) a seeded sample of elements. A
finite group of rotations of the plane or of space is also evaluated on the grid of the
continuous group around it (SO2 or SO3), which shows what the model does between its elements.

Each element ``g`` gives, over the evaluation split:

* ``equivariance_error``: mean over samples of ``‖f(g·x) − g·f(x)‖ / ‖f(x)‖``;
* for classifiers with an invariant output, ``accuracy`` of ``f(g·x)`` against the labels and
  ``agreement`` (the predicted class equals the one predicted for ``x``);
* for regression, ``mse`` of ``f(g·x)`` against the transformed target ``g·y``.

Every batch is evaluated on all elements of a set in one model call.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from .actions import Action, get_action
from .errors import ConfigError, DataError, IncompatibleGroupError, SymwrapError
from .groups import Element, Group, element_batch_size, get_group, repeat_each, tree_map
from .groups.base import rotation_2d

__all__ = ["ElementSet", "EvalReport", "element_sets", "evaluate_model", "format_report", "plot_report"]

AXES = "xyz"
#: finite groups with more elements than this are evaluated on a seeded sample of them
MAX_ELEMENTS = 48


@dataclasses.dataclass
class ElementSet:
    """Group elements evaluated together (one table, one series of the plot).

    Attributes:
        title: what the set is (``"elements of C4"``, ``"rotations about z"``).
        group: the group whose elements they are (bound to the data before use).
        labels: a name per element.
        angles: the rotation angle of each element in degrees (``None`` where there is none).
        reflections: whether each element reverses orientation.
        make: ``(bound group, device, dtype) -> Element`` with ``len(labels)`` elements.
        in_group: whether the elements belong to the model's group (``False`` for the grid
            around a finite group, where equivariance is not promised).
        kind: ``"elements"`` (all elements of a finite group), ``"grid"`` (rotation angles) or
            ``"sample"`` (sampled elements).
    """

    title: str
    group: Group
    labels: list[str]
    angles: list[float | None]
    reflections: list[bool]
    make: Callable[[Group, torch.device, torch.dtype | None], Element]
    in_group: bool = True
    kind: str = "elements"


@dataclasses.dataclass
class EvalReport:
    """The result of :func:`evaluate_model`.

    Attributes:
        metric: ``"accuracy"`` (classification) or ``"mse"`` (regression).
        untransformed: the metric (and ``samples``) on the untransformed data.
        sets: per :class:`ElementSet` title, one row per element: ``element``, ``angle``,
            ``reflection``, ``equivariance_error``, the metric, ``agreement`` for classifiers.
        in_group: per title, whether the set's elements belong to the model's group.
        kinds: per title, the :attr:`ElementSet.kind`.
        description: a line saying what was evaluated.
        title: a short version of it, for the plot.
    """

    metric: str
    untransformed: dict[str, float]
    sets: dict[str, list[dict[str, Any]]]
    in_group: dict[str, bool]
    kinds: dict[str, str]
    description: str = ""
    title: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)


# --- which elements --------------------------------------------------------------------------------------
def _axis_rotation(angles: torch.Tensor, axis: int) -> torch.Tensor:
    """(K, 3, 3) counter-clockwise rotations about coordinate ``axis`` (right-hand rule)."""
    i, j = (axis + 1) % 3, (axis + 2) % 3
    matrix = torch.eye(3, dtype=angles.dtype).repeat(len(angles), 1, 1)
    cos, sin = torch.cos(angles), torch.sin(angles)
    matrix[:, i, i], matrix[:, j, j] = cos, cos
    matrix[:, i, j], matrix[:, j, i] = -sin, sin
    return matrix


def _grid(group: Group, count: int, axis: str, *, in_group: bool, mirrored: bool = False) -> ElementSet | None:
    """``count`` rotations by 360°·i/count of ``group`` (planar, or about ``axis``); ``None`` if it has none.

    ``mirrored``: each rotation after the mirror that negates the last coordinate in the plane (y) or the
    ``axis`` coordinate in space, so the set sweeps the orientation-reversing half of O(2) or O(3).
    """
    if not group.has_linear or group.dim not in (2, 3):
        return None
    degrees = [360.0 * i / count for i in range(count)]
    radians = torch.tensor([math.radians(d) for d in degrees], dtype=torch.float64)
    if group.dim == 2:
        matrices, what = rotation_2d(radians), "rotations in the plane"
    elif callable(getattr(group, "rotation", None)):  # rotations about the group's own axis (SO2z, SO2y)
        matrices, what = group.rotation(radians), "rotations"
    else:
        matrices, what = _axis_rotation(radians, AXES.index(axis)), f"rotations about {axis}"
    if mirrored:
        flipped = "y" if group.dim == 2 else axis
        mirror = torch.eye(group.dim, dtype=torch.float64)
        mirror[AXES.index(flipped), AXES.index(flipped)] = -1.0
        matrices = matrices @ mirror
        what += f" after the mirror {flipped} -> -{flipped}"
    title = f"rotations of {group.name}" if what == "rotations" else f"{what} ({group.name})"

    def make(bound: Group, device: torch.device, dtype: torch.dtype | None) -> Element:
        return bound.from_parts(linear=matrices.to(device=device, dtype=dtype or torch.get_default_dtype()))

    try:  # can the group build elements from a rotation (SO2, SO3, E3, SO3xS, ...)?
        make(group.sized(1) if group.needs_size else group, torch.device("cpu"), None)
    except (SymwrapError, IndexError, StopIteration, RuntimeError):
        return None
    labels = [f"{'mirror+' if mirrored else ''}{d:g}deg" for d in degrees]
    return ElementSet(title, group, labels, list(degrees), [mirrored] * count, make, in_group=in_group, kind="grid")


def _describe(group: Group, elements: Element) -> tuple[list[float | None], list[bool]]:
    """Rotation angle (degrees) and orientation reversal of each element, from its linear part."""
    count = element_batch_size(elements)
    linear = group.linear_part(elements, dtype=torch.float64) if group.has_linear else None
    if linear is None:
        return [None] * count, [False] * count
    determinant = torch.linalg.det(linear)
    reflections = [bool(d < 0) for d in determinant]
    if linear.shape[-1] == 2:
        angles = torch.rad2deg(torch.atan2(linear[:, 1, 0], linear[:, 0, 0])) % 360.0
        return [round(float(a), 6) % 360.0 for a in angles], reflections
    trace = linear.diagonal(dim1=-2, dim2=-1).sum(-1)
    angles = torch.rad2deg(torch.arccos(((trace - 1) / 2).clamp(-1, 1)))
    return [None if r else round(float(a), 6) for a, r in zip(angles, reflections)], reflections


def _sampled(group: Group, count: int, seed: int) -> ElementSet:
    """``count`` seeded Haar samples (the same for every batch)."""
    cache: dict[Any, Element] = {}

    def make(bound: Group, device: torch.device, dtype: torch.dtype | None) -> Element:
        key = (bound.name, getattr(bound, "n", None), device, dtype)
        if key not in cache:
            generator = torch.Generator().manual_seed(seed)
            sample = bound.sample(count, generator=generator, dtype=dtype)
            cache[key] = tree_map(lambda t: t.to(device), sample)
        return cache[key]

    labels = [f"sample{i}" for i in range(count)]
    return ElementSet(f"{count} sampled elements of {group.name}", group, labels, [None] * count, [False] * count,
                      make, kind="sample")


def element_sets(group: Group | str, input: Action, output: Action, *, angles: int = 16, axis: str = "z",
                 max_elements: int = MAX_ELEMENTS, seed: int = 0) -> list[ElementSet]:
    """What :func:`evaluate_model` evaluates for ``group``: its elements (finite groups, up to
    ``max_elements``), a grid of ``angles`` rotation angles (rotation groups), or a seeded sample.

    Args:
        group: the model's group.
        input: the model's input action (the grid around a finite group is only added when both actions
            take the continuous group).
        output: the model's output action.
        angles: rotation angles of the grid (0: no grid).
        axis: the axis of 3-D rotations (``"x"``, ``"y"`` or ``"z"``).
        max_elements: finite groups above this order are sampled.
        seed: seeds sampled elements.
    """
    group = get_group(group)
    if axis not in AXES:
        raise ConfigError(f"axis must be 'x', 'y' or 'z'; got {axis!r}")
    if isinstance(angles, bool) or not isinstance(angles, int) or angles < 0:
        raise ConfigError(f"angles must be an integer >= 0; got {angles!r}")
    sets: list[ElementSet] = []
    if group.is_finite and not group.needs_size and group.order <= max_elements:
        elements = group.elements()
        found_angles, reflections = _describe(group, elements)

        def make(bound: Group, device: torch.device, dtype: torch.dtype | None) -> Element:
            return bound.elements(device=device, dtype=dtype)

        labels = [f"{group.name}[{i}]" for i in range(group.order)]
        sets.append(ElementSet(f"elements of {group.name}", group, labels, found_angles, reflections, make))
        if angles and group.has_linear and group.dim in (2, 3) and not group.has_permutation:
            continuous = get_group("SO2" if group.dim == 2 else "SO3")
            try:
                input.check_group(continuous)
                output.check_group(continuous)
            except IncompatibleGroupError:
                return sets
            grid = _grid(continuous, angles, axis, in_group=False)
            if grid is not None:
                grid.title += f", between the elements of {group.name}"
                sets.append(grid)
        return sets
    grid = _grid(group, angles, axis, in_group=True) if angles else None
    if grid is not None:
        mirrored = None if group.special else _grid(group, angles, axis, in_group=True, mirrored=True)
        return [grid] if mirrored is None else [grid, mirrored]
    return [_sampled(group, max_elements if group.is_finite else (angles or max_elements), seed)]


# --- evaluating -------------------------------------------------------------------------------------------
def _is_classification(pred: Any, y: Any) -> bool:
    return (isinstance(pred, torch.Tensor) and isinstance(y, torch.Tensor) and not torch.is_floating_point(y)
            and torch.is_floating_point(pred) and pred.ndim == y.ndim + 1)


@torch.no_grad()
def evaluate_model(
    model: Any,
    batches: Iterable[Any],
    input: Any,
    output: Any,
    sets: list[ElementSet],
    *,
    device: str | torch.device = "cpu",
    eps: float = 1e-12,
    description: str = "",
) -> EvalReport:
    """The metric and the equivariance error of ``model`` on ``batches`` moved by every element of ``sets``.

    Args:
        model: the model (put in eval mode here).
        batches: ``(x, y)`` batches (a ``DataLoader``).
        input: its input action.
        output: its output action.
        sets: what to evaluate, from :func:`element_sets`.
        device: where to run.
        eps: floor of ``‖f(x)‖`` in the relative error.
        description: carried into the report.
    """
    from .training import move_to, split_batch

    input_action, output_action = get_action(input), get_action(output)
    device = torch.device(device)
    model.eval()
    sums: dict[str, dict[str, torch.Tensor]] = {s.title: {} for s in sets}
    base = {"metric": 0.0, "samples": 0}
    metric = None
    for batch in batches:
        x, y = split_batch(move_to(batch, device))
        pred = model(x)
        size = input_action.batch_size(x)
        if metric is None:
            metric = "accuracy" if _is_classification(pred, y) else "mse"
        if metric == "accuracy":
            base["metric"] += float((pred.argmax(-1) == y).sum())
        else:
            base["metric"] += float(((pred - y) ** 2).flatten(1).mean(1).sum())
        base["samples"] += size
        reference = output_action.flatten(pred).norm(dim=1).clamp_min(eps)
        probe = input_action.probe(x)
        dtype = probe.dtype if torch.is_floating_point(probe) else None
        for element_set in sets:
            bound = input_action.bind(element_set.group, x)
            elements = element_set.make(bound, device, dtype)
            k = element_batch_size(elements)
            x_rep = input_action.repeat(x, k)
            bound_rep = input_action.bind(element_set.group, x_rep)
            g = repeat_each(elements, size)
            moved = model(input_action.act(bound_rep, g, x_rep))
            expected = output_action.act(bound_rep, g, output_action.repeat(pred, k))
            difference = output_action.flatten(moved) - output_action.flatten(expected)
            terms = {"equivariance_error": (difference.norm(dim=1).reshape(k, size) / reference)}
            if metric == "accuracy":
                predicted = moved.argmax(-1).reshape(k, size)
                terms["agreement"] = (predicted == pred.argmax(-1)).to(torch.float64)
                if output_action.name == "invariant":
                    terms["accuracy"] = (predicted == y).to(torch.float64)
            else:
                target = output_action.act(bound_rep, g, output_action.repeat(y, k))
                squared = (output_action.flatten(moved) - output_action.flatten(target)) ** 2
                terms["mse"] = squared.mean(1).reshape(k, size)
            for name, value in terms.items():
                total = value.to(torch.float64).sum(1).cpu()
                sums[element_set.title][name] = sums[element_set.title].get(name, 0) + total
    if not base["samples"]:
        raise DataError("the evaluation data is empty; choose a split with samples")
    count = base["samples"]
    report_sets = {}
    for element_set in sets:
        means = {name: (total / count).tolist() for name, total in sums[element_set.title].items()}
        rows = []
        for i, label in enumerate(element_set.labels):
            row: dict[str, Any] = {"element": label, "angle": element_set.angles[i],
                                   "reflection": element_set.reflections[i]}
            row.update({name: values[i] for name, values in means.items()})
            rows.append(row)
        report_sets[element_set.title] = rows
    return EvalReport(
        metric=metric or "mse",
        untransformed={metric or "mse": base["metric"] / count, "samples": count},
        sets=report_sets,
        in_group={s.title: s.in_group for s in sets},
        kinds={s.title: s.kind for s in sets},
        description=description,
    )


# --- showing ------------------------------------------------------------------------------------------------
def _cell(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "angle":
        return f"{value:.1f}"
    if kind == "reflection":
        return "yes" if value else "no"
    if kind in ("accuracy", "agreement"):
        return f"{value:.4f}"
    return f"{value:.3e}"


def format_report(report: EvalReport) -> str:
    """The report as plain-text tables: one per element set, one row per element, then the mean.

    Cells hold no spaces (``-`` for no value), so every row splits into its columns on whitespace.
    """
    lines = [report.description] if report.description else []
    untransformed = report.untransformed[report.metric]
    value = f"{untransformed:.4f}" if report.metric == "accuracy" else f"{untransformed:.4e}"
    lines.append(f"untransformed {report.metric}: {value} ({report.untransformed['samples']} samples)")
    for title, rows in report.sets.items():
        columns = ["element", "angle", "reflection", "equivariance_error"]
        columns += [c for c in (report.metric, "agreement") if rows and c in rows[0]]
        headers = {"angle": "ANGLE_DEG", "equivariance_error": "EQUIV_ERROR"}
        table = [[headers.get(c, c.upper()) for c in columns]]
        table += [[row["element"], *(_cell(row.get(c), c) for c in columns[1:])] for row in rows]
        mean = ["mean", "-", "-", *(_cell(sum(r[c] for r in rows) / len(rows), c) for c in columns[3:])]
        widths = [max(len(line[i]) for line in [*table, mean]) for i in range(len(columns))]

        def render(cells: list[str], widths: list[int] = widths) -> str:
            return "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells,
                                                                                                        widths)))

        note = "" if report.in_group[title] else " (not elements of the model's group: no symmetry promised)"
        lines += ["", f"{title}{note}", render(table[0]), *map(render, table[1:]), render(mean)]
    return "\n".join(lines)


def plot_report(report: EvalReport, path: str | Path, title: str = "") -> Path:
    """A PNG of the equivariance error and the metric against the rotation angle (against the
    element's position where the elements have no angle)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.8))
    metric_label = {"accuracy": "accuracy", "mse": "MSE"}[report.metric]
    axes = figure.subplots(1, 2)
    for axis, key, label in zip(axes, ("equivariance_error", report.metric), ("equivariance error", metric_label)):
        for set_title, rows in report.sets.items():
            positions = [(row["angle"], row[key]) for row in rows if row["angle"] is not None and key in row]
            if not positions:  # no angles: plot against the element's index
                positions = [(float(i), row[key]) for i, row in enumerate(rows) if key in row]
            if not positions:
                continue
            if report.kinds[set_title] == "grid" and positions[0][0] == 0.0:
                positions.append((360.0, positions[0][1]))  # close the circle
            xs, ys = zip(*positions)
            if report.kinds[set_title] == "elements":
                axis.plot(xs, ys, linestyle="none", marker="o", markersize=7, label=set_title, zorder=3)
            else:
                axis.plot(xs, ys, marker=".", label=set_title)
        has_angles = any(row["angle"] is not None for rows in report.sets.values() for row in rows)
        axis.set_xlabel("rotation angle (degrees)" if has_angles else "element")
        if has_angles:
            axis.set_xticks(range(0, 361, 45))
        axis.set_ylabel(label)
        if key == "equivariance_error":  # round-off and zero at the bottom, errors above 1e-6 on a log scale
            axis.set_yscale("symlog", linthresh=1e-6)
            axis.set_ylim(bottom=0.0)
        axis.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=max(len(labels), 1), fontsize="small", frameon=False)
    if title:
        figure.suptitle(title, fontsize="medium")
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def evaluate_run(
    directory: str | Path,
    *,
    data: str | None = None,
    split: str = "test",
    angles: int = 16,
    axis: str = "z",
    max_elements: int = MAX_ELEMENTS,
    batch_size: int | None = None,
    device: str = "cpu",
) -> EvalReport:
    """Evaluate the model a ``symwrap train`` run wrote to ``directory`` (what ``symwrap eval`` does).

    Args:
        directory: the run directory.
        data: another registered data set to evaluate on (default: the training one); it gets the
            training data options it accepts.
        split: ``"test"``, ``"val"`` or ``"train"``.
        angles: rotation angles of the grid, see :func:`element_sets`.
        axis: the axis of 3-D rotations, see :func:`element_sets`.
        max_elements: finite groups above this order are sampled, see :func:`element_sets`.
        batch_size: override the data set's batch size.
        device: where to run.
    """
    from .data import dataset_options, load_dataset
    from .experiment import load_trained

    model, config = load_trained(directory, device=device)
    name = data if data is not None else config.data_name
    accepted = dataset_options(name)
    options = {key: value for key, value in config.data_options.items() if key in accepted}
    if "seed" in accepted and "seed" not in options:
        options["seed"] = config.training.seed
    if batch_size is not None:
        options["batch_size"] = batch_size
    splits = load_dataset(name, **options)
    loader = splits.loader(split) if split != "train" else torch.utils.data.DataLoader(
        splits.split("train"), batch_size=splits.batch_size)
    groups = list(model.groups.values())  # strategies that train several groups at once: each of them
    sets = [element_set for group in groups
            for element_set in element_sets(group, model.input_action, model.output_action, angles=angles, axis=axis,
                                            max_elements=max_elements, seed=config.training.seed)]
    group_names = "+".join(group.name for group in groups)
    description = (f"{config.strategy} on {group_names} ({_spec(config.input)} -> {_spec(config.output)}), "
                   f"backbone {config.backbone.name}; {split} split of {name}")
    report = evaluate_model(model, loader, model.input_action, model.output_action, sets, device=device,
                            description=description)
    report.title = f"{config.strategy} on {group_names}: {name}, {split} split"
    return report


def _spec(spec: Any) -> str:
    if isinstance(spec, dict):
        return "{" + ", ".join(f"{key}: {value}" for key, value in spec.items()) + "}"
    return str(spec)
