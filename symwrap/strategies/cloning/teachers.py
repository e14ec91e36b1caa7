"""Equivariant teachers to clone: a random-initialised default from the network registry, and redrawing a teacher's
weights so that a student clones the symmetry of a family of teachers rather than one function."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...actions import ActionSpec, get_action
from ...errors import ConfigError
from ...groups import Group, get_group
from ...nn.default_entries import PARTICLE_FIELDS  # noqa: F401 - the name was defined here before
from ...nn.egnn import EGNNReadout  # noqa: F401 - the class was defined here before


def default_teacher(group: str | Group, input: ActionSpec, output: ActionSpec = "invariant",
                    **kwargs: Any) -> nn.Module:
    """A random-initialised network that is equivariant to ``group`` with these input and output actions.

    ===========================================================  ====================================
    input / output                                               teacher (``kwargs`` go to it)
    ===========================================================  ====================================
    ``"image"`` / ``"invariant"`` under C_n, D_n, SO2            :class:`~symwrap.nn.SteerableCNN`
                                                                 (``in_channels=``, ``num_classes=``)
    ``{"pos": "points", "vel": "vectors", "charge": "scalars"}``  :class:`~symwrap.nn.EGNNDynamics`
    / ``"points"``
    ``"points"`` / ``"points"``                                  :class:`~symwrap.nn.EGNN` (positions)
    ``"points"`` / ``"invariant"``                               :class:`EGNNReadout` (``out_features=``)
    ===========================================================  ====================================

    The EGNN teachers take groups acting by orthogonal maps, translations and permutations (E(n) and its
    subgroups, with or without permutations of the particles). These are the built-in ``"teacher"`` entries of
    :func:`symwrap.nn.register_default_network`, chosen by what the group and the data are made of; register
    your own there to give other data a default teacher.

    Raises:
        IncompatibleGroupError: the group is not a symmetry of the teacher for this input.
        ConfigError: there is no default teacher for this input and output; pass ``teacher=`` yourself.
    """
    from ...nn import NoDefaultNetworkError, default_network, list_default_networks

    group = get_group(group) if isinstance(group, str) else group
    input_action, output_action = get_action(input), get_action(output)
    try:
        return default_network("teacher", group, input_action, output_action, **kwargs)
    except NoDefaultNetworkError:
        known = "; ".join(needs for _, _, needs in list_default_networks("teacher"))
        raise ConfigError(
            f"no default teacher for input {input_action.spec()!r} and output {output_action.spec()!r} under "
            f"{group.name}; defaults exist for {known}. Pass teacher= (any equivariant module, e.g. a "
            "symwrap.wrap(..., strategy='averaging') model), or register a default with "
            "symwrap.nn.register_default_network('teacher', ...)."
        ) from None


def resample_parameters(module: nn.Module) -> int:
    """Draw new random weights: ``reset_parameters()`` of the outermost submodules that have it (a
    :class:`~symwrap.nn.SteerableCNN` resets its escnn convolutions itself). Keeps the training mode.

    Returns:
        the number of parameters reset.

    Raises:
        ConfigError: the module has parameters, but no submodule can reset them.
    """
    was_training = module.training
    module.train()  # escnn caches expanded filters in eval mode; eval() below rebuilds them
    reset = _reset(module)
    module.train(was_training)
    if reset == 0 and any(True for _ in module.parameters()):
        raise ConfigError(
            f"cannot resample the teacher {type(module).__name__}: none of its submodules has reset_parameters(); "
            "set resample_teacher_every=None"
        )
    return reset


@torch.no_grad()
def _reset(module: nn.Module) -> int:
    method = getattr(module, "reset_parameters", None)
    if callable(method):
        method()
        return sum(p.numel() for p in module.parameters())
    return sum(_reset(child) for child in module.children())
