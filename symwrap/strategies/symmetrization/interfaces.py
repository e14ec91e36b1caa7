"""Interface networks of probabilistic symmetrization: for an input x and noise ε, a group
element g = q(x, ε) with q(h·x, h·ε) = h·q(x, ε). With noise whose distribution is invariant,
the distribution p(g|x) is equivariant, and E_{g~p(g|x)} g·φ(g⁻¹·x) is equivariant for any φ.

One interface per group family, chosen from what the group is made of (never from the data's
modality): permutations (a GIN-style network over the action's members, sorted), rotations of
3-D space (Vector Neurons and Gram–Schmidt), their products (a frame, then an order of the
members seen in it), finite planar groups on images (escnn scores and Gumbel noise).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ...actions import Action
from ...errors import ConfigError, IncompatibleGroupError, ShapeError
from ...groups import Element, Group
from .config import DEFAULT_HIDDEN, SymmetrizationConfig


class Sample(NamedTuple):
    """Sampled elements for a (k·B) batch, and what the straight-through path needs."""

    elements: Element
    #: ``(k·B, N, N)`` matrices with the value of ``matrix(g⁻¹)`` and the gradient of their relaxation
    matrices: torch.Tensor | None = None
    #: ``(k·B, |G|)`` weights with one-hot value and softmax gradient over the group's elements
    weights: torch.Tensor | None = None
    #: mean squared gap between the relaxed and the hard choice (the penalty term)
    gap: torch.Tensor | None = None


class PermutationInterface(nn.Module):
    """S_n: node scores from a GIN-style network on the members and per-node Gaussian noise, sorted.

    The hard permutation is the argsort of the scores; the gradient flows through SoftSort and
    Sinkhorn (straight-through), and the gap between the two is penalised.
    """

    def __init__(self, config: SymmetrizationConfig, in_features: int | None = None,
                 input_spec: Any = "the input") -> None:
        super().__init__()
        self.config = config
        in_features = config.in_features if config.in_features is not None else in_features
        if in_features is None:
            raise ConfigError(
                f"the permutation interface is built at wrap() for a fixed number of features per member, and "
                f"input {input_spec!r} does not fix it (node features of a graph, scalar fields of any width): "
                "pass in_features= (the width of what action.members(x) gives: the node features, or the "
                "concatenated per-member fields), or your own interface_network="
            )
        self.network = self._build(in_features)

    def _build(self, in_features: int) -> nn.Module:
        from ...nn import GINInterface

        network = GINInterface(in_features, hidden=self.config.hidden, layers=self.config.layers,
                               noise_scale=self.config.noise_scale, noise_dim=self.config.noise_dim)
        last = network.head[-1]
        nn.init.zeros_(last.weight)  # start from the diffused-noise order; training adjusts it
        nn.init.zeros_(last.bias)
        return network

    def forward(self, action, group: Group, x: Any, generator: torch.Generator | None = None,
                noise: torch.Tensor | None = None, mode: bool = False) -> Sample:
        """Elements for the batch ``x``; ``noise`` (B, N, noise_dim) replaces the drawn noise; ``mode``: zero
        noise (the order of the noise-free scores)."""
        from ...nn import straight_through_permutation

        features, adjacency, mask = action.members(x)
        if features.shape[-1] != self.network.in_features:
            raise ShapeError(
                f"the permutation interface was built for {self.network.in_features} features per member "
                f"(in_features); input {action.spec()!r} gives {features.shape[-1]}"
            )
        if mode:
            noise = features.new_zeros(*features.shape[:2], self.network.noise_dim)
        if noise is None:
            noise = self.network.sample_noise(features.shape[0], features.shape[1], generator=generator,
                                              device=features.device, dtype=features.dtype)
        if adjacency is not None:
            noise = diffuse(noise, adjacency, self.config.noise_diffusion_steps)
        scores = noise[..., 0] + self.network(features, adjacency, mask=mask, noise=noise)
        hard, soft, elements = straight_through_permutation(scores, self.config.tau, self.config.sinkhorn_iterations,
                                                            mask=mask)
        return Sample(elements, matrices=hard, gap=((soft - hard.detach()) ** 2).mean())


def diffuse(noise: torch.Tensor, adjacency: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` steps of a lazy random walk, ``h ← (h + D⁻¹ A h) / 2``, applied to per-node noise.

    Smoothed over the graph, i.i.d. noise becomes a random field whose sorted order follows the
    graph (neighbours get nearby positions), so a backbone reading the permuted adjacency sees a
    structured, banded matrix instead of a random relabelling. It commutes with relabelling the
    nodes, so the sample stays equivariant.
    """
    adjacency = adjacency.to(noise.dtype)
    degree = adjacency.sum(-1, keepdim=True).clamp_min(1.0)
    for _ in range(steps):
        noise = 0.5 * noise + 0.5 * (adjacency @ noise) / degree
    return noise


class RotationInterface(nn.Module):
    """O(3)/SO(3) (and E(3)/SE(3) with the centroid as translation): three vectors from a Vector-Neuron
    network on the centred points plus isotropic Gaussian noise, made orthonormal by Gram–Schmidt."""

    def __init__(self, group: Group, config: SymmetrizationConfig) -> None:
        super().__init__()
        from ...nn import VNFrameNet

        if group.dim != 3:
            raise IncompatibleGroupError(f"the rotation interface works in 3-D; {group.name} acts on R^{group.dim}")
        self.network = VNFrameNet(hidden=config.hidden, layers=config.layers)
        self.special = group.special
        self.noise_scale = config.frame_noise_scale

    def forward(self, action, group: Group, x: Any, generator: torch.Generator | None = None,
                noise: torch.Tensor | None = None, mode: bool = False) -> Sample:
        """Elements for the batch ``x``; ``noise`` (B, N, 3), in units of the cloud's radius, replaces
        the drawn noise (it rotates with the points: pass ``h·noise`` with ``h·x``); ``mode``: no noise."""
        from ...nn import gram_schmidt

        points = action.positions(x)
        if points is None:
            raise ConfigError(f"the rotation interface reads point positions; input {action.spec()!r} has none")
        centroid = points.mean(dim=1)
        centred = points - centroid.unsqueeze(1)
        scale = centred.pow(2).sum(-1).mean(1).sqrt().clamp_min(1e-6)[:, None, None]
        if mode:
            noise = torch.zeros_like(points)
        if noise is None:
            noise = torch.randn(points.shape, generator=generator, device=points.device, dtype=points.dtype)
        frame = gram_schmidt(self.network(centred + self.noise_scale * scale * noise), special=self.special)
        translation = centroid if group.has_translation else None
        return Sample(group.from_parts(linear=frame, translation=translation))


class ProductInterface(nn.Module):
    """Rotations (with translations) × permutations, such as E3xS for particle systems.

    The rotation interface gives a frame first; it does not depend on the members' order. The permutation
    interface then orders the members as they look in that frame (``g_E⁻¹·x`` is invariant to rotations
    and moves with permutations), so for ``h = (h_E, h_P)`` the sample for ``h·x`` is ``h`` times the
    sample for ``x``.
    """

    def __init__(self, group: Group, config: SymmetrizationConfig, in_features: int | None = None,
                 input_spec: Any = "the input") -> None:
        super().__init__()
        self.rotation = RotationInterface(group, config)
        self.permutation = PermutationInterface(config, in_features, input_spec)

    def forward(self, action, group: Group, x: Any, generator: torch.Generator | None = None,
                noise: tuple[torch.Tensor, torch.Tensor] | None = None, mode: bool = False) -> Sample:
        """Elements for the batch ``x``; ``noise`` is ``(rotation noise (B, N, 3), permutation noise
        (B, N, noise_dim))``, each moved with the input as its own interface expects; ``mode``: no noise."""
        rotation_noise, permutation_noise = (None, None) if noise is None else noise
        rigid = self.rotation(action, group, x, generator, noise=rotation_noise, mode=mode).elements
        in_frame = action.act(group, group.inverse(rigid), x)
        ordering = self.permutation(action, group, in_frame, generator, noise=permutation_noise, mode=mode)
        # the permutation interface's elements are the permutations themselves (index tensors)
        elements = group.from_parts(linear=group.linear_part(rigid), translation=group.translation_part(rigid),
                                    permutation=ordering.elements)
        return Sample(elements, matrices=ordering.matrices, gap=ordering.gap)


def rigid_part(group: Group, g: Element) -> Element:
    """The element with ``g``'s rotation and translation and no permutation."""
    return group.from_parts(linear=group.linear_part(g), translation=group.translation_part(g))


class FiniteInterface(nn.Module):
    """Finite groups: regular-representation scores (B, |G|) from ``network`` plus Gumbel noise; the element is
    the arg-max (straight-through softmax weights over the copies for the gradient).

    The default network is the registry's ``"regular_scores"`` entry for the group and data (see
    :func:`symwrap.nn.default_network`): an escnn CNN for C_n/D_n on images, otherwise any encoder scoring
    every transformed copy (:class:`~symwrap.nn.CopyScores`)."""

    #: the noise enters after the network, so the k copies of an image share one scoring:
    #: :meth:`Symmetrization.sample` passes the batch once with ``repeats=k``
    scores_each_input_once: ClassVar[bool] = True

    def __init__(self, group: Group, config: SymmetrizationConfig, network: nn.Module | None = None,
                 action: Action | None = None) -> None:
        super().__init__()
        if network is None:
            from ...nn import default_network

            if action is None:
                raise ConfigError("FiniteInterface needs the network or the input action to find its default")
            network = default_network("regular_scores", group, action, hidden=config.hidden,
                                      in_channels=config.in_channels)
        self.network = network
        self.temperature = config.temperature
        self.image_size = config.interface_image_size

    def forward(self, action, group: Group, x: Any, generator: torch.Generator | None = None,
                noise: torch.Tensor | None = None, repeats: int = 1, mode: bool = False) -> Sample:
        """Elements for ``repeats`` copies (copy-major) of the images ``x``; ``noise`` (repeats·B, |G|)
        Gumbel variables replace the drawn ones (they move by the regular action: pass ``h·noise`` with
        ``h·x``); ``mode``: no noise, the arg-max of the scores."""
        logits = self.network(self._small(action, x)) / self.temperature
        if repeats > 1:
            logits = logits.repeat(repeats, 1)
        if mode:
            noise = torch.zeros_like(logits)
        if noise is None:
            uniform = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
            noise = -torch.log(-torch.log(uniform.clamp(1e-9, 1 - 1e-9)))
        perturbed = logits + noise
        index = perturbed.argmax(dim=1)
        soft = torch.softmax(perturbed, dim=1)
        weights = F.one_hot(index, logits.shape[1]).to(soft) - soft.detach() + soft
        elements = group.elements(device=logits.device)[index]
        return Sample(elements, weights=weights)

    def _small(self, action: Action, x: Any) -> Any:
        """``x`` resized to ``interface_image_size`` when it is data on a larger grid (images); otherwise ``x``.
        Resizing commutes with the exact elements, so the scores still move by the regular action."""
        if self.image_size is None or action.grid_axes == 0 or not isinstance(x, torch.Tensor):
            return x
        if max(x.shape[-action.grid_axes:]) <= self.image_size:
            return x
        return action.resize(x, self.image_size)


def _finite(group: Group, action: Action) -> bool:
    from ...nn import find_default_network

    return (group.is_finite and not group.has_permutation
            and find_default_network("regular_scores", group, action) is not None)


def _register_default_interfaces() -> None:
    """The built-in ``"interface"`` entries of :func:`symwrap.nn.register_default_network`, asked from the last
    one up; each tests what the group and the data are made of."""
    from ...nn import register_default_network

    @register_default_network("interface", "rotation",
                              applies=lambda group, action, output: (group.has_linear and not group.has_permutation
                                                                     and not group.is_finite),
                              needs="rotations of 3-D point positions (with translations)")
    def _rotation(group: Group, action: Action, output: Any, *, config: SymmetrizationConfig) -> nn.Module:
        return RotationInterface(group, config)

    @register_default_network("interface", "product",
                              applies=lambda group, action, output: (group.has_linear and group.has_permutation
                                                                     and group.dim == 3),
                              needs="rotations (with translations) x permutations of 3-D point sets")
    def _product(group: Group, action: Action, output: Any, *, config: SymmetrizationConfig) -> nn.Module:
        return ProductInterface(group, config, action.member_feature_count(group), action.spec())

    @register_default_network("interface", "finite", applies=lambda group, action, output: _finite(group, action),
                              needs="finite groups without a permutation part, on data with regular scores")
    def _finite_interface(group: Group, action: Action, output: Any, *, config: SymmetrizationConfig) -> nn.Module:
        return FiniteInterface(group, config, action=action)

    @register_default_network("interface", "permutation",
                              applies=lambda group, action, output: (group.has_permutation and not group.has_linear
                                                                     and not group.has_translation),
                              needs="permutations of the members of sets and graphs")
    def _permutation(group: Group, action: Action, output: Any, *, config: SymmetrizationConfig) -> nn.Module:
        return PermutationInterface(config, action.member_feature_count(group), action.spec())


_register_default_interfaces()


def resolve_config(config: SymmetrizationConfig, group: Group, action: Action,
                   backbone: nn.Module) -> SymmetrizationConfig:
    """The model's own copy of ``config``, with the channels of a finite group's default network on
    channels-first grids (images) read from the backbone when not given, and the width of the default
    interface (``hidden=None``) filled in, so that ``save_pretrained`` records what was built."""
    from ...nn import image_channels

    in_channels = config.in_channels
    if in_channels is None and group.is_finite and action.grid_axes > 0 and action.channel_axis == 1:
        in_channels = image_channels(backbone)
        if in_channels is None:
            raise ConfigError(
                f"the default {group.name} interface network is built at wrap() for a fixed number "
                f"of image channels, and the backbone {type(backbone).__name__} does not tell it (it has no "
                "nn.Conv2d and no config.num_channels): pass in_channels= (3 for RGB images, 1 for grey ones), "
                "or your own interface_network="
            )
    hidden = config.hidden
    if hidden is None:
        hidden = DEFAULT_HIDDEN["finite" if _finite(group, action) else
                                "permutation" if group.has_permutation and not group.has_linear else "rotation"]
    return dataclasses.replace(config, in_channels=in_channels, hidden=hidden)


def build_interface(group: Group, config: SymmetrizationConfig, action: Action) -> nn.Module:
    """The default interface network for ``group`` on ``action``'s data: the registry's ``"interface"`` entry
    (:func:`symwrap.nn.default_network`), chosen by what the group and the data are made of."""
    from ...nn import NoDefaultNetworkError, default_network

    try:
        return default_network("interface", group, action, config=config)
    except NoDefaultNetworkError as error:
        raise IncompatibleGroupError(f"{error}; or pass interface_network= (a module mapping (action, group, x, "
                                     "generator) to a Sample)") from None
