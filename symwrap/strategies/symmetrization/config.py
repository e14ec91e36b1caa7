"""Configuration of probabilistic symmetrization."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from ...errors import ConfigError
from ..base import StrategyConfig

GRADIENTS = ("straight_through", "none")
EVAL_SAMPLING = ("random", "mode")
#: ``hidden=None``: the width of each default interface network (the image interface's is in regular fields,
#: |G| channels each, and it reads small images: a few percent of a tiny ViT's cost)
DEFAULT_HIDDEN = {"permutation": 64, "rotation": 64, "finite": 8}


@dataclasses.dataclass
class SymmetrizationConfig(StrategyConfig):
    """Probabilistic symmetrization (Kim et al., NeurIPS 2023, arXiv 2306.02866).

    The model is equivariant in distribution: each of its k-sample estimates is only approximately
    equivariant, closer as ``num_samples_eval`` grows (exactly, for rotations, with ``frame_noise_scale=0``).
    ``num_samples_eval=1, eval_sampling="mode"`` gives a deterministic prediction at the cost of one backbone
    call: the interface's most likely element, without noise.

    Attributes:
        num_samples_train: group elements sampled per input while training; all copies are one
            backbone call on a ``num_samples_train``-times bigger batch.
        num_samples_eval: the same at evaluation; the estimate's variance falls as it grows.
        eval_sampling: ``"random"``: at evaluation the elements are sampled from p(g|x) like in training;
            ``"mode"``: the interface's noise is set to zero, which gives its most likely element (the
            arg-max of the C_n/D_n scores, the noise-free frame or order): a deterministic prediction from
            one backbone call (needs ``num_samples_eval=1``), exactly equivariant wherever that element is
            unique (no tied scores, no degenerate frame).
        noise_scale: standard deviation of the per-member noise of the permutation interface.
        frame_noise_scale: standard deviation of the Gaussian noise added to each centred point
            before the rotation interface builds a frame, relative to the cloud's RMS radius; it
            keeps symmetric and degenerate clouds from collapsing the frame.
        noise_dim: noise channels per member for permutation groups.
        noise_diffusion_steps: lazy random-walk steps that smooth the per-node noise over the
            graph before it is scored (graphs only), so that the sampled node order follows the
            graph's structure; the first noise channel is also the starting score.
        hidden: width of the default interface network; ``None`` (the default) gives each interface its own
            (``DEFAULT_HIDDEN``: 64 for permutations and rotations, 8 regular fields for C_n/D_n on images) and
            records the number at ``wrap()``.
        interface_image_size: images larger than this (side, pixels) are resized to it (bilinear,
            antialiased: it commutes with quarter turns and flips) before the C_n/D_n interface scores them,
            so its cost does not grow with the backbone's resolution; ``None``: full resolution.
        layers: layers of the default interface network.
        in_features: member features the permutation interface reads. Needed when the input's layout
            does not fix it (graphs with node features, scalar fields of any width) and the interface
            is trained; otherwise read from the action (points: d, adjacency: 2).
        in_channels: image channels the C_n/D_n interface network is built for. ``None`` (the default) reads
            them from the backbone at ``wrap()`` (its first ``nn.Conv2d``, or a Hugging Face
            ``config.num_channels``) and records the number here; a backbone that does not tell (an MLP on
            flattened pixels) needs it given. Not needed with ``interface_network=``.
        tau: SoftSort temperature of the permutation relaxation.
        sinkhorn_iterations: Sinkhorn iterations applied to the SoftSort matrix.
        temperature: softmax temperature of the C_n/D_n scores.
        gradient: ``"straight_through"``: the backbone's loss trains the interface through the
            relaxed permutation (or softmax over elements); ``"none"``: the interface gets no
            gradient from the backbone.
        penalty_weight: weight of the term that keeps the relaxed and the hard permutation close.
    """

    strategy: ClassVar[str] = "symmetrization"
    num_samples_train: int = 1
    num_samples_eval: int = 8
    eval_sampling: str = "random"
    noise_scale: float = 1.0
    frame_noise_scale: float = 0.01
    noise_dim: int = 1
    noise_diffusion_steps: int = 30
    hidden: int | None = None
    interface_image_size: int | None = 16
    layers: int = 3
    in_features: int | None = None
    in_channels: int | None = None
    tau: float = 0.1
    sinkhorn_iterations: int = 20
    temperature: float = 1.0
    gradient: str = "straight_through"
    penalty_weight: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gradient not in GRADIENTS:
            raise ConfigError(f"gradient must be one of {GRADIENTS}; got {self.gradient!r}")
        if self.eval_sampling not in EVAL_SAMPLING:
            raise ConfigError(f"eval_sampling must be one of {EVAL_SAMPLING}; got {self.eval_sampling!r}")
        if self.eval_sampling == "mode" and self.num_samples_eval != 1:
            raise ConfigError(
                f"eval_sampling='mode' evaluates the interface's one most likely element, so it needs "
                f"num_samples_eval=1; got num_samples_eval={self.num_samples_eval} (more copies of the same "
                "element would only repeat the backbone call)"
            )
        if self.interface_image_size is not None and self.interface_image_size < 4:
            raise ConfigError(f"interface_image_size must be >= 4 pixels or None; got {self.interface_image_size}")
        for name in ("num_samples_train", "num_samples_eval", "hidden", "layers", "in_channels"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1; got {value}")
        for name in ("noise_scale", "frame_noise_scale", "penalty_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0; got {getattr(self, name)}")
        for name in ("tau", "temperature"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0; got {getattr(self, name)}")
        if self.noise_diffusion_steps < 0:
            raise ConfigError(f"noise_diffusion_steps must be >= 0; got {self.noise_diffusion_steps}")
        if self.in_features is not None and self.in_features < 0:
            raise ConfigError(f"in_features must be >= 0; got {self.in_features}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> StrategyConfig:
        """A saved config; one saved before ``interface_image_size`` existed was built reading full-resolution
        images, so it is read with ``interface_image_size=None`` (its interface keeps the input it was trained
        on)."""
        return super().from_dict({"interface_image_size": None, **values})

    def samples_for(self, training: bool) -> int:
        """The group elements sampled per input in training mode (``training``) or in evaluation mode."""
        return self.num_samples_train if training else self.num_samples_eval
