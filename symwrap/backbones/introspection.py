"""Moved to :mod:`symwrap.nn.introspection` (default networks read the backbone there); kept for imports."""

from ..nn.introspection import image_channels

__all__ = ["image_channels"]
