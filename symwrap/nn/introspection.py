"""What a backbone says about the inputs it takes, read from its modules without calling it.

Default helper networks (a canonicalizer, an interface) are built at ``wrap()`` time, before any data has
been seen; what they need to know about the data (how many channels an image has) they read here.
"""

from __future__ import annotations

from torch import nn

__all__ = ["image_channels"]


def image_channels(backbone: nn.Module) -> int | None:
    """The number of image channels ``backbone`` reads, or ``None`` when its modules do not say.

    The first of its modules (in ``backbone.modules()`` order, which is the order they were built in) that
    tells: an ``nn.Conv2d`` (the stem of a CNN, the patch embedding of a timm or Hugging Face ViT) by its
    ``in_channels``, or a Hugging Face model by ``config.num_channels``. A backbone without one (an MLP on
    flattened pixels, a function) or whose first convolution is lazy and not yet built gives ``None``.
    """
    if not isinstance(backbone, nn.Module):
        return None
    for module in backbone.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels if module.in_channels > 0 else None  # 0: a LazyConv2d not built yet
        declared = getattr(getattr(module, "config", None), "num_channels", None)
        if isinstance(declared, int) and not isinstance(declared, bool) and declared > 0:
            return declared
    return None
