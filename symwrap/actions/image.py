"""Planar groups acting on images (B, C, H, W) by rotating and reflecting them.

Coordinates: x to the right, y up, origin at the image centre; a rotation by θ
turns the picture counter-clockwise. Elements that are multiples of 90° (with or
without a reflection) move whole pixels and are exact, the same pixel
permutation that ``torch.rot90``/``torch.flip`` perform; other angles are
interpolated with ``grid_sample`` (bilinear, zero padding). With
``mask="circle"`` every output is multiplied by the inscribed disc, so the
corners, which rotations by other angles move out of the picture, are zero for
every element alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ActionError, IncompatibleGroupError
from ..groups import Group
from .base import Action
from .tracing import is_tracing, outside_trace

_EXACT_TOLERANCE = 1e-6


class ImageAction(Action):
    """Rotations and reflections of images (B, C, H, W); dense outputs (segmentation maps) too."""

    name = "image"
    layout = "(B, C, H, W): batch, channels, height, width"
    grid_axes = 2
    channel_axis = 1

    def __init__(self, interpolation: str = "bilinear", mask: str | None = None, exact: bool = True) -> None:
        if mask not in (None, "circle"):
            raise ActionError(f"image mask must be None or 'circle'; got {mask!r}")
        self.interpolation = interpolation
        self.mask = mask
        self.exact = exact

    def check_group(self, group: Group) -> None:
        if not group.has_linear or group.dim != 2 or group.has_translation or group.has_permutation:
            raise IncompatibleGroupError(
                f"images are rotated and reflected in the plane, so they take C{{n}}, D{{n}}, SO2 or O2; "
                f"got {group.name}. Rotate 3-D data with input='points'."
            )

    def validate(self, x, group=None, *, check_finite=False):
        x = self._require_tensor(x)
        hint = "Add a channel dimension with x.unsqueeze(1)." if x.ndim == 3 else ""
        self._require_ndim(x, (4,), hint)
        self._require_float(x)
        if x.shape[-1] != x.shape[-2]:
            raise ActionError(
                f"image rotations need square images; got H={x.shape[-2]}, W={x.shape[-1]}. "
                "Pad or crop to a square first."
            )
        self.check_nonempty(x)
        if check_finite:
            self._require_finite(x)

    def resize(self, x: torch.Tensor, size: int) -> torch.Tensor:
        """Bilinear, antialiased resizing to ``size`` x ``size``: it commutes with quarter turns and flips of
        square images, so an exact finite-group choice made on the small image holds for the large one."""
        if x.shape[-1] == size and x.shape[-2] == size:
            return x
        return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)

    def acts_exactly(self, group: Group) -> bool:
        """Only quarter turns and flips move whole pixels; every other angle is interpolated."""
        if not self.exact or not group.is_finite:
            return False
        matrices = group.linear_part(group.elements(dtype=torch.float64), dtype=torch.float64)
        rounded = matrices.round()
        integral = bool(((matrices - rounded).abs() < _EXACT_TOLERANCE).all())
        return integral and bool((rounded.abs().sum(-1) == 1).all())

    def differentiable(self) -> ImageAction:
        return ImageAction(self.interpolation, self.mask, exact=False)

    def act(self, group, g, x):
        self._check_element_count(g, group, x.shape[0])
        matrix = group.linear_part(g, dtype=x.dtype)
        if is_tracing():
            out = self._act_traced(group, matrix, x)
        else:
            out = self._act_eager(matrix, x)
        if self.mask == "circle":
            out = out * disc_mask(x.shape[-1], dtype=x.dtype, device=x.device)
        return out

    def _act_eager(self, matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Whole-pixel moves for the elements that are signed permutations, interpolation for the others."""
        if self.exact:
            rounded = matrix.round()
            integral = ((matrix - rounded).abs() < _EXACT_TOLERANCE).flatten(1).all(1)
            exact = integral & (rounded.abs().sum(-1) == 1).all(-1)  # signed permutation matrices
        else:
            exact = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        if bool(exact.all()):
            out = _move_pixels(x, rounded)
        elif not bool(exact.any()):
            out = self._interpolate(x, matrix)
        else:
            out = torch.empty_like(x)
            out[exact] = _move_pixels(x[exact], rounded[exact])
            out[~exact] = self._interpolate(x[~exact], matrix[~exact])
        return out

    def _act_traced(self, group: Group, matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The same moves with the choice made from the group, not from the element values, which a traced graph
        cannot branch on: whole pixels when every element of ``group`` moves them exactly (the same gather as in
        eager mode), interpolation otherwise (an exact angle of an interpolated group then differs from eager mode
        by the interpolation's round-off only)."""
        if outside_trace(lambda: self.acts_exactly(group)):
            return _move_pixels(x, matrix.round(), distinct=False)
        return self._interpolate(x, matrix)

    def _interpolate(self, x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        grid = _sampling_grid(x, matrix)
        if self.exact or self.interpolation != "bilinear":
            return F.grid_sample(x, grid, mode=self.interpolation, padding_mode="zeros", align_corners=False)
        # grid_sample has no forward-mode derivative, which lie_derivative needs
        return bilinear_sample(x, grid)


def disc_mask(size: int, *, dtype=None, device=None) -> torch.Tensor:
    """(size, size) mask that is 1 on pixels whose centre lies in the inscribed disc."""
    centre = (size - 1) / 2
    coords = torch.arange(size, device=device, dtype=torch.float64) - centre
    radius2 = coords[:, None] ** 2 + coords[None, :] ** 2
    return (radius2 <= (size / 2) ** 2).to(dtype or torch.get_default_dtype())


def _move_pixels(x: torch.Tensor, matrix: torch.Tensor, *, distinct: bool = True) -> torch.Tensor:
    """Exact action of signed permutation matrices: a gather of whole pixels. ``distinct``: build each distinct
    matrix's index once (a data-dependent size, so not while tracing; the index is the same either way)."""
    b, c, h, w = x.shape
    centre = (h - 1) / 2
    rows = torch.arange(h, device=x.device, dtype=torch.float64)
    cols = torch.arange(w, device=x.device, dtype=torch.float64)
    ys = (centre - rows)[:, None].expand(h, w)
    xs = (cols - centre)[None, :].expand(h, w)
    target = torch.stack([xs.reshape(-1), ys.reshape(-1)], 0)  # (2, HW)
    # a batch of k copies holds at most |G| distinct matrices: build each one's pixel index once
    if distinct:
        matrices, which = torch.unique(matrix.to(torch.float64).flatten(1), dim=0, return_inverse=True)
    else:
        matrices, which = matrix.to(torch.float64).flatten(1), torch.arange(b, device=x.device)
    source = matrices.reshape(-1, 2, 2).transpose(-1, -2) @ target  # output p takes input M⁻¹p
    src_col = (source[:, 0] + centre).round().long()
    src_row = (centre - source[:, 1]).round().long()
    index = (src_row * w + src_col)[which].unsqueeze(1).expand(b, c, h * w)
    return torch.gather(x.reshape(b, c, h * w), 2, index).reshape(b, c, h, w)


def _sampling_grid(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    inverse = matrix.transpose(-1, -2)  # output p takes input M⁻¹p; grid_sample's y axis points down
    theta = torch.zeros(x.shape[0], 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = inverse[:, 0, 0]
    theta[:, 0, 1] = -inverse[:, 0, 1]
    theta[:, 1, 0] = -inverse[:, 1, 0]
    theta[:, 1, 1] = inverse[:, 1, 1]
    return F.affine_grid(theta, list(x.shape), align_corners=False)


def bilinear_sample(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``grid_sample(x, grid, "bilinear", "zeros", align_corners=False)`` from gathers,
    differentiable in ``grid`` in forward mode as well as reverse mode."""
    b, c, h, w = x.shape
    col = ((grid[..., 0] + 1) * w - 1) / 2
    row = ((grid[..., 1] + 1) * h - 1) / 2
    col0, row0 = col.detach().floor(), row.detach().floor()
    col_frac, row_frac = col - col0, row - row0  # carry the derivative
    flat = x.reshape(b, c, h * w)
    out = 0
    for d_row, d_col in ((0, 0), (0, 1), (1, 0), (1, 1)):
        r, q = row0 + d_row, col0 + d_col
        weight = (row_frac if d_row else 1 - row_frac) * (col_frac if d_col else 1 - col_frac)
        inside = (r >= 0) & (r < h) & (q >= 0) & (q < w)
        index = (r.clamp(0, h - 1) * w + q.clamp(0, w - 1)).long().reshape(b, 1, -1).expand(b, c, -1)
        values = torch.gather(flat, 2, index).reshape(b, c, *grid.shape[1:3])
        out = out + values * (weight * inside).unsqueeze(1)
    return out
