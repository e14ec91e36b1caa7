"""Configuration of probabilistic symmetrization."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from ...errors import ConfigError
from ..base import StrategyConfig

GRADIENTS = ("straight_through", "none")


@dataclasses.dataclass
class SymmetrizationConfig(StrategyConfig):
    """Probabilistic symmetrization (Kim et al., NeurIPS 2023, arXiv 2306.02866).

    The model is equivariant in distribution: each of its k-sample estimates is only approximately
    equivariant, closer as ``num_samples_eval`` grows (exactly, for rotations, with ``frame_noise_scale=0``).

    Attributes:
        num_samples_train: group elements sampled per input while training; all copies are one
            backbone call on a ``num_samples_train``-times bigger batch.
        num_samples_eval: the same at evaluation; the estimate's variance falls as it grows.
        noise_scale: standard deviation of the per-member noise of the permutation interface.
        frame_noise_scale: standard deviation of the Gaussian noise added to each centred point
            before the rotation interface builds a frame, relative to the cloud's RMS radius; it
            keeps symmetric and degenerate clouds from collapsing the frame.
        noise_dim: noise channels per member for permutation groups.
        noise_diffusion_steps: lazy random-walk steps that smooth the per-node noise over the
            graph before it is scored (graphs only), so that the sampled node order follows the
            graph's structure; the first noise channel is also the starting score.
        hidden: width of the default interface network.
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
    noise_scale: float = 1.0
    frame_noise_scale: float = 0.01
    noise_dim: int = 1
    noise_diffusion_steps: int = 30
    hidden: int = 64
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

    def samples_for(self, training: bool) -> int:
        """The group elements sampled per input in training mode (``training``) or in evaluation mode."""
        return self.num_samples_train if training else self.num_samples_eval
