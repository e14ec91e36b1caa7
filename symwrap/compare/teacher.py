"""The cloning row of :func:`symwrap.compare`: a teacher from the default-network registry (role ``"teacher"``)
where it has one for the group and the actions, trained on the same data for the same step budget, then cloned.

Nothing here names a data kind or a group: the registry answers, and the teacher is built with the options it
reads from the data (``in_channels`` of grid data, the per-sample ``out_features`` of the bare backbone).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ..actions import Action
from ..errors import SymwrapError
from ..groups import Group
from ..nn import default_network, find_default_network
from ..steps import default_task_loss
from .measure import StepLoss, task_step_loss, train_steps

__all__ = ["NO_TEACHER", "clones", "cloning_step_loss", "data_options", "prepare_teacher"]

NO_TEACHER = "no teacher"


def clones(model: nn.Module) -> bool:
    """Whether ``model`` follows the cloning protocol (a teacher, and a cloning loss to match it)."""
    return callable(getattr(model, "cloning_loss", None)) and callable(getattr(model, "set_teacher", None))


def data_options(bare_output: Any, x: Any, input_action: Action, output_action: Action) -> dict[str, int]:
    """The options a teacher builder may read from the data: the channels of grid data and the per-sample size
    of the backbone's output."""
    options = {"out_features": int(output_action.flatten(bare_output).shape[1])}
    if getattr(input_action, "grid_axes", 0) > 0:
        options["in_channels"] = int(input_action.probe(x).shape[input_action.channel_axis])
    return options


def prepare_teacher(model: nn.Module, name: str, bare: nn.Module, loader: Iterable[Any], x: Any, steps: int,
                    lr: float, seed: int, group: Group, input_action: Action, output_action: Action,
                    teacher_options: dict[str, Any], progress: bool) -> dict[str, Any]:
    """Give ``model`` a teacher unless it has one: the registry's default, trained ``steps`` steps on the task.

    Returns the row's teacher columns: ``teacher`` (the registry entry's name, ``"given"`` or ``"no teacher"``),
    ``teacher_steps``, ``teacher_train_s`` and ``teacher_note`` (why there is none).
    """
    if model.teacher is not None:
        return {"teacher": "given", "teacher_steps": 0, "teacher_train_s": 0.0, "teacher_note": ""}
    none = {"teacher": NO_TEACHER, "teacher_steps": 0, "teacher_train_s": 0.0}
    entry = find_default_network("teacher", group, input_action, output_action)
    if entry is None:
        return {**none, "teacher_note": f"the registry has no default teacher for {group.name} with these actions"}
    with torch.no_grad():
        bare_output = bare(x)
    torch.manual_seed(seed)
    try:
        teacher = default_network("teacher", group, input_action, output_action,
                                  **{**data_options(bare_output, x, input_action, output_action), **teacher_options})
        with torch.no_grad():
            teacher_output = teacher.eval()(x)
    except SymwrapError as error:
        return {**none, "teacher_note": f"its default teacher {entry.name} cannot be built here: "
                                        f"{str(error).split('. ')[0]}"}
    got, wanted = output_action.flatten(teacher_output).shape, output_action.flatten(bare_output).shape
    if got != wanted:
        return {**none, "teacher_note": f"its default teacher {entry.name} predicts {got[1:].numel()} numbers per "
                                        f"sample, the backbone {wanted[1:].numel()}"}

    def step_loss(step: int, x: Any, y: Any) -> dict[str, torch.Tensor]:
        return {"total": default_task_loss(teacher(x), y)}

    seconds = train_steps(teacher, step_loss, loader, steps, lr, progress=progress, desc=f"{name} (teacher)")
    model.set_teacher(teacher)
    return {"teacher": entry.name, "teacher_steps": steps, "teacher_train_s": seconds, "teacher_note": ""}


def cloning_step_loss(model: nn.Module, cloning_steps: int) -> StepLoss:
    """Matching the teacher for the first ``cloning_steps`` steps, then the strategy's task loss."""
    task = task_step_loss(model)

    def step_loss(step: int, x: Any, y: Any) -> dict[str, torch.Tensor]:
        return model.cloning_loss(x) if step <= cloning_steps else task(step, x, y)

    return step_loss


