"""Moved to :mod:`symwrap.nn.encoders`; kept for imports."""

from ...nn.encoders import ImageEncoder, PointEncoder

__all__ = ["ImageEncoder", "PointEncoder"]
