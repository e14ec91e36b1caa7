"""Geometry of point sets shared by strategies (frames, canonicalization)."""

from __future__ import annotations

import torch

from .errors import ActionError, EmptyInputError


def principal_axes(
    points: torch.Tensor, degenerate_tol: float = 1e-4
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Principal axes of point sets (B, N, d), computed in float64.

    Returns:
        axes (B, d, d): orthonormal eigenvectors of the covariance as columns, largest
            variance first (signs arbitrary);
        centroids (B, d);
        degenerate (B,): samples with two eigenvalues closer than ``degenerate_tol`` times
            the largest (or all zero, or not finite), whose axes are not unique. Their axes are the
            coordinate axes, and gradients through them are zero rather than NaN.
    """
    _check_point_sets(points)
    d = points.shape[-1]
    work = points.to(torch.float64)
    centroid = work.mean(dim=1)
    centred = work - centroid.unsqueeze(1)
    covariance = centred.transpose(1, 2) @ centred / points.shape[1]
    with torch.no_grad():  # a non-finite covariance (NaN or inf points, given with validate=False) counts as zero
        finite = torch.isfinite(covariance).all(dim=(1, 2))[:, None, None]
        spectrum = torch.linalg.eigvalsh(torch.where(finite, covariance, 0.0)).flip(-1)
        scale = spectrum[:, :1].clamp_min(torch.finfo(torch.float64).tiny)
        gaps = (spectrum[:, :-1] - spectrum[:, 1:]) / scale
        degenerate = (gaps <= degenerate_tol).any(dim=1) | (spectrum[:, 0] <= 0)
    # a well-separated stand-in spectrum keeps eigh's gradient finite on degenerate samples
    stand_in = torch.diag(torch.arange(d, 0, -1, dtype=torch.float64, device=points.device))
    covariance = torch.where(degenerate[:, None, None], stand_in, covariance)
    _, axes = torch.linalg.eigh(covariance)
    return axes.flip(-1), centroid, degenerate


def _check_point_sets(points: torch.Tensor) -> None:
    """Raise unless ``points`` is a non-empty batch (B, N, d) of floating-point point sets: the covariance of
    zero points is 0/0, which ``linalg.eigh`` cannot take."""
    if not isinstance(points, torch.Tensor) or points.ndim != 3 or not torch.is_floating_point(points):
        given = f"a {points.dtype} tensor of shape {tuple(points.shape)}" if isinstance(points, torch.Tensor) \
            else type(points).__name__
        raise ActionError(f"principal axes need floating-point point sets (B, N, d); got {given}")
    if 0 in points.shape:
        raise EmptyInputError(f"principal axes need at least one set of at least one point with d >= 1 "
                              f"coordinates; got point sets of shape {tuple(points.shape)}")
