"""Steerable CNNs (escnn) that score or orient images equivariantly: the networks of an equivariant
image canonicalizer.

escnn is optional and imported when a network is built; without it the constructors raise
:class:`~symwrap.errors.MissingDependencyError`. Both networks are stride-1 "same" convolutions with
odd kernels, a parameter-free :func:`symmetric_downsample` between layers, and a mean over space at the end.
Every step commutes exactly with quarter turns and flips of a square image of **any** size, so the
C4/D4 equivariance (``symwrap.metrics.equivariance_error``) is exact up to float rounding; other angles
of C_n/SO(2) act on the image by interpolation, so they are only approximately equivariant.

Index conventions, checked in ``tests/test_nn.py`` against :class:`symwrap.actions.image.ImageAction`:
escnn's ``rot2dOnR2(N=n)`` element ``k`` turns an image counter-clockwise by ``2πk/n`` in symwrap's
coordinates (x right, y up), like symwrap's ``C{n}`` element ``k``; ``flipRot2dOnR2(N=n, axis=0.0)``
element ``(f, k)`` at position ``f*n + k`` of ``fibergroup.elements`` is ``r^k s^f`` with ``s`` the flip
across the x axis, symwrap's ``D{n}`` element ``f*n + k``; and basis vector ``i`` of escnn's regular
representation is element ``i`` (``ρ(g) e_id = e_g``), the action ``(g·y)[h] = y[g⁻¹h]`` of symwrap's
``"regular"`` outputs. So with the flip axis at 0 no reindexing is needed. (escnn's default axis π/2
flips across the y axis: its ``(1, k)`` would be symwrap's ``n + (k + n/2) mod n``.) The frequency-1
irrep of ``rot2dOnR2`` is ``[[cos, -sin], [sin, cos]]`` in the same (x, y) basis, so a frequency-1
field is a symwrap ``"vector"`` as it stands.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, IncompatibleGroupError, MissingDependencyError, ShapeError
from ..groups import CyclicGroup, DihedralGroup, Group, get_group

__all__ = [
    "RegularCanonicalizerCNN",
    "VectorCanonicalizerCNN",
    "ExportedCanonicalizerCNN",
    "check_image_channels",
    "symmetric_downsample",
]

#: escnn's flip axis for D_n; 0 makes escnn's element order symwrap's (see the module docstring)
FLIP_AXIS = 0.0


def _escnn() -> tuple[Any, Any]:
    """``(escnn.gspaces, escnn.nn)``, or :class:`MissingDependencyError`."""
    try:
        from escnn import gspaces
        from escnn import nn as enn
    except ImportError as error:
        raise MissingDependencyError("escnn", "escnn", "the equivariant image canonicalizer") from error
    _accept_matrices_in_escnn_svd()
    return gspaces, enn


def _accept_matrices_in_escnn_svd() -> None:
    """escnn 1.0.11 passes ``np.matrix`` to scikit-learn's ``randomized_svd`` when it solves for the D_n kernel
    bases, which recent scikit-learn rejects (QUVA-Lab/escnn#112); hand it plain arrays instead. Idempotent."""
    from escnn.group import _numerical

    svd = getattr(_numerical, "randomized_svd", None)
    if svd is None or getattr(svd, "_symwrap_accepts_matrices", False):
        return

    def randomized_svd(matrix: Any, *args: Any, **kwargs: Any) -> Any:
        return svd(np.asarray(matrix), *args, **kwargs)

    randomized_svd._symwrap_accepts_matrices = True  # type: ignore[attr-defined]
    _numerical.randomized_svd = randomized_svd


def symmetric_downsample(x: torch.Tensor) -> torch.Tensor:
    """Halve the spatial size of ``(B, C, H, W)`` by averaging, commuting exactly with quarter turns and flips.

    An even side is pooled with 2-wide windows ``{0,1}, {2,3}, ...``; an odd side with 3-wide windows centred
    on ``0, 2, ..., H-1`` (one pixel of padding, not counted). Either way the windows are mirror-symmetric
    about the centre, so every side length is exact.
    """
    kernel = tuple(2 if size % 2 == 0 else 3 for size in x.shape[-2:])
    padding = tuple(k - 2 for k in kernel)
    return F.avg_pool2d(x, kernel, stride=2, padding=padding, count_include_pad=False)


def check_image_channels(x: torch.Tensor, in_channels: int, network: str) -> None:
    """Raise :class:`ShapeError` unless ``x`` is a batch of images ``(B, in_channels, H, W)``.

    The image networks are built for a fixed channel count; a batch with another one would otherwise fail
    deep inside escnn or a convolution, without saying which numbers disagree.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ShapeError(f"{network} takes images (B, C, H, W); got {shape}")
    if x.shape[1] != in_channels:
        raise ShapeError(
            f"{network} was built for images with {in_channels} channel(s); got {x.shape[1]} channel(s), "
            f"shape {tuple(x.shape)}. Build it for these images with in_channels={x.shape[1]} "
            f"(symwrap.wrap(..., in_channels={x.shape[1]}) for the default networks)"
        )


def _check_sizes(in_channels: int, hidden: int, layers: int, kernel_size: int) -> None:
    for name, value in (("in_channels", in_channels), ("hidden", hidden), ("layers", layers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"the canonicalizer CNN needs an integer {name} >= 1; got {value!r}")
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ConfigError(
            f"the canonicalizer CNN needs an odd kernel_size, to keep the grid centred; got {kernel_size!r}"
        )


def _run(blocks: nn.ModuleList, x: torch.Tensor, downsample: bool, geometric: bool, in_channels: int,
         network: str) -> torch.Tensor:
    """The shared forward pass: blocks with downsampling between them, then the mean over space."""
    check_image_channels(x, in_channels, network)
    if geometric:
        from escnn.nn import GeometricTensor
    h = x
    for i, block in enumerate(blocks):
        if i > 0 and downsample:
            h = symmetric_downsample(h)
        h = block(GeometricTensor(h, block.in_type)).tensor if geometric else block(h)
    return h.mean(dim=(-2, -1))


class ExportedCanonicalizerCNN(nn.Module):
    """The plain-torch copy of a canonicalizer CNN made by ``.export()``: the same outputs, no escnn, faster.

    It holds copies of the weights: training it does not change the escnn network, nor the reverse.
    """

    def __init__(self, blocks: list[nn.Module], downsample: bool, in_channels: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _run(self.blocks, x, self.downsample, False, self.in_channels, type(self).__name__)


class _SteerableCNN(nn.Module):
    def _build(self, gspace: Any, in_channels: int, hidden: int, layers: int, kernel_size: int,
               out_reprs: list[Any], downsample: bool) -> None:
        _check_sizes(in_channels, hidden, layers, kernel_size)
        _, enn = _escnn()
        self.downsample = downsample
        self.in_channels = in_channels
        field = enn.FieldType(gspace, in_channels * [gspace.trivial_repr])
        hidden_field = enn.FieldType(gspace, hidden * [gspace.regular_repr])
        # recompute=True: escnn otherwise shares one cached filter-basis module between every convolution of
        # the same field types in the process, so ``.double()`` or ``.to(device)`` on one network would
        # convert the basis of all the others.
        blocks = []
        for _ in range(layers - 1):
            blocks.append(enn.SequentialModule(
                enn.R2Conv(field, hidden_field, kernel_size, padding=kernel_size // 2, recompute=True),
                enn.ReLU(hidden_field, inplace=True),
            ))
            field = hidden_field
        out_field = enn.FieldType(gspace, out_reprs)
        blocks.append(enn.SequentialModule(
            enn.R2Conv(field, out_field, kernel_size, padding=kernel_size // 2, recompute=True)))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _run(self.blocks, x, self.downsample, True, self.in_channels, type(self).__name__)

    def export(self) -> ExportedCanonicalizerCNN:
        """A plain-torch module (escnn's ``export()`` of every layer) with the same outputs, in eval mode.

        The convolution filters are expanded once, so it is faster than this module; this module keeps its
        training mode.
        """
        was_training = self.training
        blocks = [copy.deepcopy(block.export()) for block in self.blocks]
        self.train(was_training)
        return ExportedCanonicalizerCNN(blocks, self.downsample, self.in_channels).eval()


def _planar_group(group: str | Group) -> Group:
    group = get_group(group) if isinstance(group, str) else group
    if not isinstance(group, (CyclicGroup, DihedralGroup)):
        raise IncompatibleGroupError(
            f"RegularCanonicalizerCNN scores the elements of C{{n}} or D{{n}}; got {group.name}. "
            "For continuous rotations use VectorCanonicalizerCNN."
        )
    return group


class RegularCanonicalizerCNN(_SteerableCNN):
    """A C_n/D_n-steerable CNN giving one score per group element: ``(B, C, H, W) -> (B, |G|)``.

    Regular feature fields throughout (escnn ``rot2dOnR2(N=n)`` or ``flipRot2dOnR2(N=n, axis=0)``),
    ``layers`` convolutions of odd ``kernel_size`` with ReLUs, :func:`symmetric_downsample` between them
    (``downsample=True``) and a mean over space of a last regular field, with no group pooling. The scores
    are in symwrap's element order and transform by the regular action, ``f(g·x)[h] = f(x)[g⁻¹h]``
    (``output="regular"``): exactly for quarter turns and flips of square images of any size, approximately
    (interpolation) for other angles.

    ``group`` is a name such as ``"C4"``/``"D8"`` or a :class:`~symwrap.groups.CyclicGroup`/
    :class:`~symwrap.groups.DihedralGroup`. Needs escnn; :meth:`export` gives a faster plain-torch copy.
    """

    def __init__(self, group: str | Group, in_channels: int, hidden: int = 16, layers: int = 3,
                 kernel_size: int = 5, downsample: bool = True) -> None:
        super().__init__()
        gspaces, _ = _escnn()
        self.group = _planar_group(group)
        n = self.group.n
        if isinstance(self.group, DihedralGroup):
            gspace = gspaces.flipRot2dOnR2(N=n, axis=FLIP_AXIS)
        else:
            gspace = gspaces.rot2dOnR2(N=n)
        self._build(gspace, in_channels, hidden, layers, kernel_size, [gspace.regular_repr], downsample)


class VectorCanonicalizerCNN(_SteerableCNN):
    """A CNN giving a 2-D vector that turns with the image: ``(B, C, H, W) -> (B, 2)``.

    SO(2) is approximated by C_N with ``N = n_sampled`` sampled rotations: regular C_N fields
    (escnn ``rot2dOnR2(N=n_sampled)``), ``layers`` convolutions with ReLUs, :func:`symmetric_downsample`
    between them, and a last frequency-1 field averaged over space. The vector is in symwrap's coordinates
    (x right, y up) and satisfies ``v(g·x) = R(g) v(x)`` (``output="vector"``): exactly for quarter turns
    of square images when ``n_sampled`` is a multiple of 4, approximately for other angles, whose image
    rotation is interpolated. Not reflection-equivariant. Needs escnn; :meth:`export` gives a faster
    plain-torch copy.
    """

    def __init__(self, in_channels: int, hidden: int = 16, layers: int = 3, kernel_size: int = 5,
                 n_sampled: int = 8, downsample: bool = True) -> None:
        super().__init__()
        gspaces, _ = _escnn()
        if isinstance(n_sampled, bool) or not isinstance(n_sampled, int) or n_sampled < 3:
            raise ConfigError(
                f"VectorCanonicalizerCNN needs n_sampled >= 3 for a 2-D frequency-1 field; got {n_sampled}"
            )
        self.n_sampled = n_sampled
        gspace = gspaces.rot2dOnR2(N=n_sampled)
        self._build(gspace, in_channels, hidden, layers, kernel_size, [gspace.irrep(1)], downsample)
