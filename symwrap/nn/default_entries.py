"""The default networks :mod:`symwrap.nn` registers (see :mod:`symwrap.nn.defaults`): encoders, regular
scores and teachers. Each entry asks what the group and the data are made of."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import ConfigError
from .defaults import image_grid, needs_in_channels, planar_linear, register_default_network

#: the particle systems :class:`~symwrap.nn.EGNNDynamics` reads
PARTICLE_FIELDS = {"pos": "points", "vel": "vectors", "charge": "scalars"}


# --- encoder: any input to (N, out_features) -----------------------------------------------------------------

@register_default_network("encoder", "image-encoder", applies=lambda group, input, output: image_grid(input),
                          needs="channels-first images (B, C, H, W)")
def _image_encoder(group: Any, input: Any, output: Any, *, out_features: int, hidden: int = 16,
                   **options: Any) -> nn.Module:
    from .encoders import ImageEncoder

    return ImageEncoder(needs_in_channels(options, "image encoder"), out_features, hidden=hidden)


@register_default_network("encoder", "point-encoder",
                          applies=lambda group, input, output: input.has_positions and group.dim is not None,
                          needs="point positions (B, N, d) under a group acting on R^d")
def _point_encoder(group: Any, input: Any, output: Any, *, out_features: int, hidden: int = 16,
                   **options: Any) -> nn.Module:
    from .encoders import PointEncoder

    return PointEncoder(group.dim, out_features, hidden=4 * hidden)


# --- regular_scores: (B, |G|) scores moving in the regular representation ----------------------------------

@register_default_network("regular_scores", "copy-scores",
                          applies=lambda group, input, output: group.is_finite and _has_encoder(group, input),
                          needs="a finite group, on data with a default encoder")
def _copy_scores(group: Any, input: Any, output: Any, *, hidden: int = 16, **options: Any) -> nn.Module:
    from .defaults import default_network
    from .scoring import CopyScores

    return CopyScores(default_network("encoder", group, input, out_features=1, hidden=hidden, **options), group, input)


@register_default_network("regular_scores", "escnn-regular-cnn",
                          applies=lambda group, input, output: (group.is_finite and planar_linear(group)
                                                                and image_grid(input)),
                          needs="images under C_n or D_n (escnn)", requires="escnn")
def _escnn_scores(group: Any, input: Any, output: Any, *, hidden: int = 16, **options: Any) -> nn.Module:
    from .escnn_canonicalizers import RegularCanonicalizerCNN

    return RegularCanonicalizerCNN(group, needs_in_channels(options, "escnn scoring network"), hidden=hidden)


def _has_encoder(group: Any, input: Any) -> bool:
    from .defaults import find_default_network

    return find_default_network("encoder", group, input) is not None


# --- teacher: a random-initialised equivariant network ------------------------------------------------------
#: options read from the data that a caller may pass to every teacher builder (``symwrap.compare`` does): the
#: input's channels (grid data) and the per-sample output size; each builder uses those its network needs
DATA_OPTIONS = ("in_channels", "out_features")


def _without(kwargs: dict[str, Any], *names: str) -> dict[str, Any]:
    return {key: value for key, value in kwargs.items() if key not in names}


@register_default_network("teacher", "egnn-readout",
                          applies=lambda group, input, output: (output is not None and output.trivial
                                                                and _isometric_points(group, input)),
                          needs="points (B, N, d) to invariant outputs, under isometries and permutations")
def _egnn_readout(group: Any, input: Any, output: Any, **kwargs: Any) -> nn.Module:
    from .egnn import EGNNReadout

    require_isometries(group)
    return EGNNReadout(**_without(kwargs, "in_channels"))


@register_default_network("teacher", "egnn",
                          applies=lambda group, input, output: (output is not None and output.spec() == "points"
                                                                and _isometric_points(group, input)),
                          needs="points (B, N, d) to points, under isometries and permutations")
def _egnn(group: Any, input: Any, output: Any, **kwargs: Any) -> nn.Module:
    from .egnn import EGNN

    require_isometries(group)
    return EGNN(0, velocity=False, **_without(kwargs, *DATA_OPTIONS))


@register_default_network("teacher", "egnn-dynamics",
                          applies=lambda group, input, output: (input.spec() == PARTICLE_FIELDS and output is not None
                                                                and output.spec() == "points"),
                          needs=f"particles {PARTICLE_FIELDS} to points, under isometries and permutations")
def _egnn_dynamics(group: Any, input: Any, output: Any, **kwargs: Any) -> nn.Module:
    from .egnn import EGNNDynamics

    require_isometries(group)
    return EGNNDynamics(**_without(kwargs, *DATA_OPTIONS))


@register_default_network("teacher", "steerable-cnn",
                          applies=lambda group, input, output: (image_grid(input) and output is not None
                                                                and output.trivial),
                          needs="images to invariant outputs under C_n, D_n or SO2 (escnn)", requires="escnn")
def _steerable_cnn(group: Any, input: Any, output: Any, **kwargs: Any) -> nn.Module:
    from ..errors import IncompatibleGroupError
    from .steerable import SteerableCNN

    if not planar_linear(group) or not (group.is_finite or group.special):
        raise IncompatibleGroupError(
            f"the default image teacher (an escnn SteerableCNN) is invariant to C{{n}}, D{{n}} or SO2; got {group.name}"
        )
    if "num_classes" not in kwargs and "out_features" in kwargs:
        kwargs["num_classes"] = kwargs["out_features"]
    kwargs = _without(kwargs, "out_features")
    missing = [name for name in ("in_channels", "num_classes") if name not in kwargs]
    if missing:
        raise ConfigError(f"the default image teacher needs {missing}, e.g. in_channels=1, num_classes=10")
    return SteerableCNN(group, **kwargs)


def _isometric_points(group: Any, input: Any) -> bool:
    """Positions that isometries move: EGNNs read points, not vectors without positions."""
    return input.grid_axes == 0 and input.has_positions and input.spec() == "points"


def require_isometries(group: Any) -> None:
    """EGNNs commute with orthogonal maps, translations and permutations; reject any other linear part."""
    import torch

    from ..errors import IncompatibleGroupError

    bound = group.sized(4) if group.needs_size else group
    if not bound.has_linear:
        return
    linear = bound.linear_part(bound.sample(8), dtype=torch.float64)
    identity = torch.eye(linear.shape[-1], dtype=linear.dtype)
    if not torch.allclose(linear.transpose(-1, -2) @ linear, identity.expand_as(linear), atol=1e-6):
        raise IncompatibleGroupError(
            f"EGNN teachers are equivariant to orthogonal maps, translations and permutations; the elements of "
            f"{group.name} are not orthogonal"
        )
