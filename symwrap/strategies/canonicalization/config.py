"""Configuration of the canonicalization strategy."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from ...errors import ConfigError
from ..base import StrategyConfig

CANONICALIZERS = ("auto", "contrastive", "equivariant", "pca")
GRADIENTS = ("straight_through", "gumbel", "none")
#: what ``canonicalizer_input_size="auto"`` means for images: the canonicalizer looks at (at most) this many
#: pixels a side; picked from the accuracy/cost curve of ``symwrap_bench.canonicalization_curve``
#: (docs/strategies/canonicalization.md, "Cost")
DEFAULT_IMAGE_INPUT_SIZE = 32
#: what ``hidden=None`` means: the width of each default canonicalizer network (for images picked from the same
#: curve; escnn widths count regular fields, each |G| channels wide)
DEFAULT_HIDDEN = {"image-equivariant": 8, "image-contrastive": 8, "other": 16}


@dataclasses.dataclass
class CanonicalizationConfig(StrategyConfig):
    """Learned canonicalization.

    Attributes:
        canonicalizer: ``"auto"`` (the default: an exact canonicalizer where one exists, resolved at
            ``wrap()`` and recorded in the model's config as the concrete choice, see below),
            ``"contrastive"`` (any network scores every transformed copy, trained with a contrastive loss;
            arXiv 2405.14089; for continuous groups it regresses a frame), ``"equivariant"`` (an escnn
            steerable CNN for images, Vector Neurons for 2-D and 3-D point sets) or ``"pca"`` (principal
            axes, not learned; point sets only).

            ``"auto"`` picks, from what the group and the input are: finite groups and ``S``:
            ``"contrastive"`` (exact by construction: the arg-max over scored copies); rotations of 2-D or
            3-D positions (SO2, O2, SO3, O3, E3, SE3 on points; E3/SE3 translations by the centroid):
            ``"equivariant"`` (Vector Neurons, exact); SO2 on images: ``"equivariant"`` (escnn, exact on
            quarter turns, approximate for other angles, whose image rotation is interpolated) when escnn is
            installed; anything else (O2 images, SO2 images without escnn): ``"contrastive"``, a regressed
            frame that is only approximately equivariant, and only once trained (the model warns with
            :class:`~symwrap.errors.ApproximationWarning` on its first evaluation batch when it is far off).
            With ``canonicalizer_network=`` given, ``"auto"`` means ``"contrastive"``.
        prior_weight: weight of the prior that pulls the canonical element towards the
            identity, so a pretrained backbone keeps seeing the poses it was trained on.
        contrastive_weight: weight of the contrastive term (finite groups: embeddings of
            different copies pushed apart; continuous groups: the frame of an augmented
            copy regressed onto the transformed frame).
        artifact_weight: weight of the term that makes the contrastive network blind to
            interpolation artifacts (a copy and its rotated-and-back version embed alike).
        gradient: how gradients cross the discrete choice of element during training:
            ``"straight_through"`` (hard choice forward, softmax gradient backward),
            ``"gumbel"`` (Gumbel-softmax straight-through) or ``"none"``.
        temperature: softmax temperature of the group scores.
        embedding_dim: embedding size of the default contrastive network.
        hidden: width of the default canonicalizer networks. ``None`` (the default) picks one per network at
            ``wrap()`` and records it here: :data:`DEFAULT_HIDDEN` (image networks are narrow because they are
            the whole cost of canonicalization; see the "Cost" section of the docs).
        in_channels: image channels the default image canonicalizer networks are built for. ``None`` (the
            default) reads them from the backbone at ``wrap()`` (its first ``nn.Conv2d``, or a Hugging Face
            ``config.num_channels``) and records the number here; a backbone that does not tell (an MLP on
            flattened pixels) needs it given. Not needed with ``canonicalizer_network=`` or for point sets.
        canonicalizer_input_size: resize images to this side length (bilinear, antialiased)
            before the canonicalizer network sees them; the backbone still gets full
            resolution. Resizing a square image commutes with its quarter turns and flips,
            so finite-group canonicalization stays exact. ``"auto"`` (the default) is
            :data:`DEFAULT_IMAGE_INPUT_SIZE` for images, never enlarging a smaller image (resolved at
            ``wrap()`` and recorded here; nothing for data without a grid); ``None`` keeps the full size.
    """

    strategy: ClassVar[str] = "canonicalization"
    canonicalizer: str = "auto"
    prior_weight: float = 1.0
    contrastive_weight: float = 1.0
    artifact_weight: float = 0.0
    gradient: str = "straight_through"
    temperature: float = 1.0
    embedding_dim: int = 32
    hidden: int | None = None
    in_channels: int | None = None
    canonicalizer_input_size: int | str | None = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.canonicalizer not in CANONICALIZERS:
            raise ConfigError(f"canonicalizer must be one of {CANONICALIZERS}; got {self.canonicalizer!r}")
        if self.gradient not in GRADIENTS:
            raise ConfigError(f"gradient must be one of {GRADIENTS}; got {self.gradient!r}")
        for name in ("prior_weight", "contrastive_weight", "artifact_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0; got {getattr(self, name)}")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0; got {self.temperature}")
        size = self.canonicalizer_input_size
        if size is not None and size != "auto" and (isinstance(size, (bool, str)) or size < 4):
            raise ConfigError(f"canonicalizer_input_size must be 'auto', None or >= 4 pixels; got {size!r}")
        for name in ("embedding_dim", "hidden", "in_channels"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1; got {value}")
