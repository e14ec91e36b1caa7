"""equiadapt 0.1.2's image canonicalizers, built the way its examples build them, for side-by-side timing.

equiadapt is never a symwrap dependency: ``make equiadapt-env`` builds ``.venv-equiadapt``, which sees the main
environment and adds equiadapt (and kornia, e2cnn, omegaconf). Sizes are equiadapt's defaults
(``configs/canonicalization/group_equivariant.yaml`` and ``opt_group_equivariant.yaml`` of its classification
example); the canonicalizer sees the full-resolution image (``resize_shape`` = the image size,
``input_crop_ratio`` = 1) instead of the examples' 0.8 crop resized to 96 pixels.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from symwrap.errors import ConfigError

#: equiadapt's default canonicalizer sizes (its classification example's configs)
EQUIVARIANT_SIZES = {"out_channels": 32, "kernel_size": 5, "num_layers": 3}
CONTRASTIVE_SIZES = {"out_channels": 16, "kernel_size": 7, "num_layers": 3, "out_vector_size": 128}


def equiadapt_version() -> str | None:
    """equiadapt's version when it imports (with kornia, e2cnn and omegaconf), else ``None``."""
    try:
        from importlib.metadata import version

        import equiadapt  # noqa: F401
    except ImportError:
        return None
    return version("equiadapt")


class EquiadaptClassifier(nn.Module):
    """An equiadapt canonicalizer in front of a backbone with invariant outputs: ``backbone(canonicalize(x))``
    (logits need no inverse)."""

    def __init__(self, canonicalizer: nn.Module, backbone: nn.Module) -> None:
        super().__init__()
        self.canonicalizer = canonicalizer
        self.backbone = backbone

    def forward(self, x: Any) -> Any:
        return self.backbone(self.canonicalizer(x))


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
        network = ConvNetwork(in_shape, **CONTRASTIVE_SIZES)
        hyper = {**common, "group_type": "rotation", "num_rotations": rotations, "artifact_err_wt": 0.0,
                 "learn_ref_vec": False}
        canonicalizer = OptimizedGroupEquivariantImageCanonicalization(network, OmegaConf.create(hyper), in_shape)
    else:
        raise ConfigError(f"kind must be 'equivariant' or 'contrastive'; got {kind!r}")
    return EquiadaptClassifier(canonicalizer, backbone).eval()
