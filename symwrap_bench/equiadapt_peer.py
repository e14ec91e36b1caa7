"""equiadapt 0.1.2's image canonicalizers, built the way its examples build them, for side-by-side timing and
training (``equiadapt_training_loss``: the loss of its classification example).

equiadapt is never a symwrap dependency: ``make equiadapt-env`` builds ``.venv-equiadapt``, which sees the main
environment and adds equiadapt (and kornia, e2cnn, omegaconf). Sizes are equiadapt's defaults
(``configs/canonicalization/group_equivariant.yaml`` and ``opt_group_equivariant.yaml`` of its classification
example); the canonicalizer sees the full-resolution image (``resize_shape`` = the image size,
``input_crop_ratio`` = 1) instead of the examples' 0.8 crop resized to 96 pixels.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import nn

from symwrap.errors import ConfigError, SymwrapError

#: equiadapt's default canonicalizer sizes (its classification example's configs)
EQUIVARIANT_SIZES = {"out_channels": 32, "kernel_size": 5, "num_layers": 3}
CONTRASTIVE_SIZES = {"out_channels": 16, "kernel_size": 7, "num_layers": 3, "out_vector_size": 128}
#: weight of the optimization canonicalizer's group-contrast loss in equiadapt's classification example
#: (``experiment.training.loss.group_contrast_weight``, "0.0001 for opt_equivariant" in its config)
GROUP_CONTRAST_WEIGHT = 1e-4


class PeerUnavailableError(SymwrapError, ImportError):
    """A comparison with equiadapt was asked for in a Python where equiadapt does not import."""

    def __init__(self, what: str) -> None:
        super().__init__(
            f"{what} needs equiadapt 0.1.2 (with kornia, e2cnn and omegaconf), which does not import in "
            f"{sys.executable}. equiadapt is never a symwrap dependency: build its separate environment with "
            "`make equiadapt-env` and run with .venv-equiadapt/bin/python"
        )


def equiadapt_version() -> str | None:
    """equiadapt's version when it imports (with kornia, e2cnn and omegaconf), else ``None``."""
    try:
        from importlib.metadata import version

        import equiadapt  # noqa: F401
    except ImportError:
        return None
    return version("equiadapt")


def require_equiadapt(what: str) -> str:
    """equiadapt's version; :class:`PeerUnavailableError` naming ``what`` when it does not import."""
    found = equiadapt_version()
    if found is None:
        raise PeerUnavailableError(what)
    return found


class EquiadaptClassifier(nn.Module):
    """An equiadapt canonicalizer in front of a backbone with invariant outputs: ``backbone(canonicalize(x))``
    (logits need no inverse)."""

    def __init__(self, canonicalizer: nn.Module, backbone: nn.Module) -> None:
        super().__init__()
        self.canonicalizer = canonicalizer
        self.backbone = backbone

    def forward(self, x: Any) -> Any:
        return self.backbone(self.canonicalizer(x))


def _conv_network(network_class: type[nn.Module], in_shape: tuple[int, int, int]) -> nn.Module:
    """equiadapt's ``ConvNetwork`` with :data:`CONTRASTIVE_SIZES`. Its constructor probes its output shape on one
    zero image in training mode, which batch norm refuses when the image shrinks to 1x1 pixel (40x40 images do);
    the probe is let through and the batch-norm statistics it touched are reset."""
    check = nn.functional._verify_batch_size
    nn.functional._verify_batch_size = lambda size: None
    try:
        network = network_class(in_shape, **CONTRASTIVE_SIZES)
    finally:
        nn.functional._verify_batch_size = check
    for module in network.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
    return network


def equiadapt_classifier(backbone: nn.Module, kind: str, rotations: int, in_shape: tuple[int, int, int]) -> nn.Module:
    """equiadapt's ``"equivariant"`` (an e2cnn C_n CNN) or ``"contrastive"`` (its optimization canonicalizer,
    a plain CNN scoring every rotated copy) canonicalizer for C_n, in front of ``backbone``, in eval mode."""
    from equiadapt.images.canonicalization.discrete_group import (
        GroupEquivariantImageCanonicalization,
        OptimizedGroupEquivariantImageCanonicalization,
    )
    from equiadapt.images.canonicalization_networks import ConvNetwork, ESCNNEquivariantNetwork
    from omegaconf import OmegaConf

    common = {"beta": 1.0, "input_crop_ratio": 1.0, "resize_shape": in_shape[-1]}
    if kind == "equivariant":
        network = ESCNNEquivariantNetwork(in_shape, group_type="rotation", num_rotations=rotations,
                                          **EQUIVARIANT_SIZES)
        canonicalizer = GroupEquivariantImageCanonicalization(network, OmegaConf.create(common), in_shape)
    elif kind == "contrastive":
        network = _conv_network(ConvNetwork, in_shape)
        hyper = {**common, "group_type": "rotation", "num_rotations": rotations, "artifact_err_wt": 0.0,
                 "learn_ref_vec": False}
        canonicalizer = OptimizedGroupEquivariantImageCanonicalization(network, OmegaConf.create(hyper), in_shape)
    else:
        raise ConfigError(f"kind must be 'equivariant' or 'contrastive'; got {kind!r}")
    return EquiadaptClassifier(canonicalizer, backbone).eval()


def equiadapt_training_loss(
    model: EquiadaptClassifier,
    x: torch.Tensor,
    y: torch.Tensor | None,
    prior_weight: float,
    group_contrast_weight: float = GROUP_CONTRAST_WEIGHT,
) -> torch.Tensor:
    """The loss of ``ImageClassifierPipeline.training_step`` in equiadapt's classification example:
    ``task + prior_weight · get_prior_regularization_loss()`` (+ the optimization canonicalizer's
    ``get_optimization_specific_loss()``, which that step adds twice, each time weighted by
    ``group_contrast_weight``; mirrored here). ``y=None`` leaves out the task term (the example's
    ``task_weight: 0``) and runs only the canonicalizer, not the backbone.
    """
    canonicalizer = model.canonicalizer
    if y is None:
        canonicalizer.device = x.device  # set by canonicalize(), which this path does not call
        canonicalizer.get_groupelement(x)
        loss = torch.zeros((), device=x.device)
    else:
        loss = nn.functional.cross_entropy(model.backbone(canonicalizer(x)), y)
    if hasattr(canonicalizer, "get_optimization_specific_loss"):
        loss = loss + 2 * group_contrast_weight * canonicalizer.get_optimization_specific_loss()
    if prior_weight:
        loss = loss + prior_weight * canonicalizer.get_prior_regularization_loss()
    return loss
