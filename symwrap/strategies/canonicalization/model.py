"""Learned canonicalization: the backbone sees the input in a canonical pose.

A canonicalizer picks, for every input x, a group element g_x with g_{h·x} = h·g_x; the
backbone sees g_x⁻¹·x, and its output is moved back by g_x. The prior (Mondal et al.
2023) pulls g_x towards the identity on upright training data, so a pretrained backbone
keeps seeing the poses it knows.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...actions import Copies, group_copies, mix_inverse_copies
from ...errors import ConfigError, IncompatibleGroupError
from ...groups import Group, select
from ...nn import NoDefaultNetworkError, default_network, find_default_network, image_channels
from ..approximation import warn_approximation
from ..base import SymmetricModel
from ..registry import register_strategy
from . import defaults as _defaults  # noqa: F401 - registers the default frames
from .canonicalizers import ContrastiveScorer, EquivariantScorer, PCAFrame, RegressedFrame, VectorNeuronFrame
from .config import DEFAULT_HIDDEN, DEFAULT_IMAGE_INPUT_SIZE, CanonicalizationConfig

#: finite groups up to this order are canonicalized by scoring every element
MAX_EXHAUSTIVE_ORDER = 1024
#: a learned (regressed) frame whose relative equivariance error ‖F(h·x) − h·F(x)‖ / ‖F(x)‖ on the first
#: evaluation batch is above this is reported with an :class:`~symwrap.errors.ApproximationWarning`
FRAME_WARNING_THRESHOLD = 0.1


@register_strategy("canonicalization")
class Canonicalization(SymmetricModel):
    """The backbone sees each input in a canonical pose picked by a learned canonicalizer; outputs are moved back.

    ``wrap(backbone, group="C8", strategy="canonicalization", input="image", output="invariant")``

    The default canonicalizer (``canonicalizer="auto"``) is exact where an exact one exists: the
    contrastive scorer for finite groups, Vector Neurons for rotations of 2-D and 3-D point sets, escnn
    for SO2 images (exact on quarter turns); elsewhere (O2 images) a regressed frame that is only
    approximately equivariant once trained, and the model warns (:class:`~symwrap.errors.ApproximationWarning`,
    once) when its first evaluation batch shows it far from equivariant. See
    :class:`CanonicalizationConfig`. Every network is built at ``wrap()``; image networks read the
    channel count from the backbone unless ``in_channels=`` is given.

    Pass your own canonicalizer network with ``canonicalizer_network=``: for the
    contrastive canonicalizer any module giving (N, embedding_dim) embeddings (finite
    groups) or (N, d·d) frame vectors (continuous groups); for the equivariant one a
    module giving regular-representation scores (B, |G|).
    """

    config_class = CanonicalizationConfig
    config: CanonicalizationConfig
    module_arguments = ("canonicalizer_network",)

    def __init__(
        self,
        backbone: nn.Module,
        group: Group,
        input_action,
        output_action,
        config: CanonicalizationConfig,
        canonicalizer_network: nn.Module | None = None,
    ) -> None:
        super().__init__(backbone, group, input_action, output_action, config)
        self.discrete = group.is_finite or group.needs_size
        if not self.discrete and not group.has_linear:
            raise IncompatibleGroupError(
                f"canonicalization of an infinite group needs rotations to build frames from; got {group.name}"
            )
        if isinstance(config.canonicalizer_input_size, int) and input_action.grid_axes == 0:
            raise ConfigError(f"canonicalizer_input_size resizes images (data on a grid); the input here is "
                              f"{input_action.spec()!r}, which has no grid")
        self.config = config = resolve_config(config, group, input_action, self.backbone, canonicalizer_network)
        self.canonicalizer = _build_canonicalizer(group, input_action, config, canonicalizer_network, self.discrete)
        self._last: dict[str, Any] = {}
        self._frame_checked = False

    # --- the canonical element ------------------------------------------------------------
    def forward(self, x: Any) -> Any:
        self._check_input(x)
        if self.discrete:
            group, g, canonical = self._canonicalize_discrete(x)
        else:
            group, g, canonical = self._canonicalize_continuous(x)
        return self.output_action.act(group, g, self.run_backbone(canonical))

    def _canonicalize_discrete(self, x: Any):
        action, config = self.input_action, self.config
        batch = action.batch_size(x)
        group, g_all, k, logits = self._score_discrete(x)
        choice_logits = logits
        if self.training and config.gradient == "gumbel":
            uniform = torch.rand(logits.shape, generator=self.generator_for(logits.device), device=logits.device,
                                 dtype=logits.dtype).clamp(1e-9, 1 - 1e-9)
            choice_logits = logits - torch.log(-torch.log(uniform))
        index = choice_logits.argmax(dim=1)
        self._last["index"] = index
        g = select(g_all, index * batch + torch.arange(batch, device=index.device))
        bound = action.bind(self.group, x)
        if self.training and config.gradient != "none" and isinstance(x, torch.Tensor):
            soft = torch.softmax(choice_logits, dim=1)
            weights = F.one_hot(index, k).to(soft) - soft.detach() + soft  # hard forward, soft backward
            canonical = mix_inverse_copies(action, Copies(group, action.repeat(x, k), g_all, k), weights)
        else:
            canonical = action.act(bound, bound.inverse(g), x)
        return bound, g, canonical

    def _score_discrete(self, x: Any):
        """Scores of every group element for ``x`` (one batched canonicalizer call); fills ``_last``."""
        action, config = self.input_action, self.config
        small = self._shrink(x)
        uses_copies = self.canonicalizer.uses_copies
        # an equivariant scorer looks at the small image once: enumerate the elements without copying it k times
        probe = small
        if not uses_copies and action.grid_axes > 0 and isinstance(small, torch.Tensor):
            probe = small[(slice(None),) + (slice(0, 1),) * (small.ndim - 1)]
        group, small_rep, g_all, k = group_copies(action, self.group, probe, samples=1,
                                                  max_exhaustive_order=MAX_EXHAUSTIVE_ORDER)
        if not group.is_finite or k != group.order:
            raise IncompatibleGroupError(
                f"{self.group.name} has more than {MAX_EXHAUSTIVE_ORDER} elements for this input: too many to score"
            )
        scored_copies = None
        if uses_copies:  # copy i of the canonicalizer's input is g_i⁻¹·x (turned at the small size)
            scored_copies = action.act(group, group.inverse(g_all), small_rep)
        scores, embeddings = self.canonicalizer(small, scored_copies, k)
        logits = scores / config.temperature
        keep_copies = self.training and config.artifact_weight > 0  # only the artifact term reads them again
        self._last = {"x": x, "logits": logits, "embeddings": embeddings, "group": group, "k": k,
                      "copies": scored_copies if keep_copies else None}
        return group, g_all, k, logits

    def _canonicalize_continuous(self, x: Any):
        bound, g = self._frame(x)
        if (not self.training and not self._frame_checked and isinstance(self.canonicalizer, RegressedFrame)
                and not torch.compiler.is_exporting()):
            self._frame_checked = True
            self._warn_if_frame_is_far_off(x, self._last["rotation"])
        return bound, g, self.input_action.act(bound, bound.inverse(g), x)

    @torch.no_grad()
    def _warn_if_frame_is_far_off(self, x: Any, rotation: torch.Tensor) -> None:
        """Measure ``‖F(h·x) − h·F(x)‖ / ‖F(x)‖`` once, for one random ``h`` per input (one more canonicalizer
        call), and warn when a regressed frame is far from equivariant: it is not trained (enough)."""
        error = self._frame_error(x, rotation)
        if error <= FRAME_WARNING_THRESHOLD:
            return
        warn_approximation(
            f"the canonicalizer of this {self.group.name} model regresses its frame with a network that is not "
            f"equivariant ({type(self.canonicalizer.network).__name__}), and on this batch it is far from "
            f"equivariant: ‖F(h·x) − h·F(x)‖ / ‖F(x)‖ = {error:.2g} for random h (warned above "
            f"{FRAME_WARNING_THRESHOLD}), so the model is too. Train the canonicalizer first "
            "(model.canonicalizer_loss(x) on upright inputs, or model.loss with contrastive_weight > 0), or use an "
            "exact canonicalizer: canonicalizer='equivariant' (Vector Neurons for 2-D/3-D point sets, escnn for "
            "SO2 images) or 'pca' (point sets)."
        )

    def _frame_error(self, x: Any, rotation: torch.Tensor) -> float:
        """Mean relative error ``‖F(h·x) − h·F(x)‖_F / ‖F(x)‖_F`` for one random ``h`` per input, drawn from
        a private generator (seed 0) so that measuring leaves torch's global random state alone."""
        action = self.input_action
        bound = action.bind(self.group, x)
        generator = torch.Generator(device=rotation.device).manual_seed(0)
        h = bound.sample(action.batch_size(x), generator=generator, device=rotation.device, dtype=rotation.dtype)
        moved = self.canonicalizer(self._frame_input(action.act(bound, h, x)))
        expected = bound.linear_part(h, dtype=rotation.dtype) @ rotation
        relative = (moved - expected).flatten(1).norm(dim=1) / rotation.flatten(1).norm(dim=1).clamp_min(1e-12)
        return float(relative.mean())

    def _frame(self, x: Any):
        """The canonical element of ``x`` for a continuous group (its frame); fills ``_last``."""
        action = self.input_action
        rotation = self.canonicalizer(self._frame_input(x))
        translation = None
        if self.group.has_translation:
            translation = action.positions(x).mean(dim=1)
        bound = action.bind(self.group, x)
        self._last = {"x": x, "rotation": rotation}
        return bound, bound.from_parts(linear=rotation, translation=translation)

    def _shrink(self, x: Any) -> Any:
        """Grid data (images) at the canonicalizer's input size (when one is set), never enlarged."""
        size = self.config.canonicalizer_input_size
        if size is None or x is None or max(x.shape[-self.input_action.grid_axes:]) <= size:
            return x
        return self.input_action.resize(x, size)

    def _frame_input(self, x: Any) -> torch.Tensor:
        if self.input_action.grid_axes > 0:
            return self._shrink(x)
        positions = self.input_action.positions(x)
        if positions is None:
            raise ConfigError(
                f"canonicalization under {self.group.name} builds a frame from point positions or an image; "
                f"input {self.input_action.spec()!r} has neither"
            )
        return positions

    def is_exact(self, x: Any) -> bool:
        """Exact for finite groups (the arg-max over scored elements is an equivariant choice) and for frames
        that turn exactly with the input (Vector Neurons and PCA, on point sets that give them a non-degenerate
        frame), when the group's elements move the input and the output exactly (not C8 on images, whose
        45° turns are interpolated)."""
        if self.discrete:
            bound = self.input_action.bind(self.group, x)
            return self.input_action.acts_exactly(bound) and self.output_action.acts_exactly(bound)
        if isinstance(self.canonicalizer, (VectorNeuronFrame, PCAFrame)):
            points = self.input_action.positions(x)
            return points is not None and not bool(self.canonicalizer.degenerate(points).any())
        return False

    # --- training terms ----------------------------------------------------------------------
    def auxiliary_loss(self, x: Any) -> dict[str, torch.Tensor]:
        """``prior`` and ``contrastive`` (and ``artifact``) terms, weighted by the config."""
        if self._last.get("x") is not x:
            self.forward(x)
        return self._canonicalizer_terms(x, target=None)

    def canonicalizer_loss(self, x: Any, augment: bool = True) -> dict[str, torch.Tensor]:
        """The canonicalizer's own training terms on upright ``x``, without running the backbone.

        With ``augment`` each input is first moved by a random group element h; since upright
        inputs are canonical, the prior then asks for h itself (cross-entropy towards h, or
        ‖R − h‖²). This teaches the equivariance that a network only approximates (an escnn
        network for rotations that are not quarter turns), and costs one canonicalizer call:
        use it to pre-train the canonicalizer before fine-tuning the backbone with :meth:`loss`.
        Returns the weighted ``prior``, ``contrastive`` (and ``artifact``) terms and their ``total``.
        """
        self._check_input(x)
        target = None
        if augment:
            bound = self.input_action.bind(self.group, x)
            probe = self.input_action.probe(x)
            dtype = probe.dtype if torch.is_floating_point(probe) else None
            target = bound.sample(self.input_action.batch_size(x), generator=self.generator_for(probe.device),
                                  device=probe.device, dtype=dtype)
            x = self.input_action.act(bound, target, x)
        if self.discrete:
            self._score_discrete(x)
        else:
            self._frame(x)
        terms = self._canonicalizer_terms(x, target)
        if not terms:
            raise ConfigError("canonicalizer_loss has nothing to train: prior_weight and contrastive_weight are 0")
        terms["total"] = sum(terms.values())
        return terms

    def _canonicalizer_terms(self, x: Any, target: Any) -> dict[str, torch.Tensor]:
        """The weighted terms from ``_last``; the prior pulls towards ``target`` (default: the identity)."""
        last, config = self._last, self.config
        terms: dict[str, torch.Tensor] = {}
        if self.discrete:
            group, logits = last["group"], last["logits"]
            if target is None:
                identity = group.index(group.identity(1, device=logits.device))
                target_index = identity.expand(logits.shape[0])
            else:
                target_index = group.index(target).to(logits.device)
            if config.prior_weight:
                terms["prior"] = config.prior_weight * F.cross_entropy(logits, target_index)
            embeddings = last["embeddings"]
            if embeddings is not None and config.contrastive_weight:
                unit = F.normalize(embeddings, dim=-1)
                similarity = unit @ unit.transpose(1, 2)
                off_diagonal = ~torch.eye(last["k"], dtype=torch.bool, device=similarity.device)
                terms["contrastive"] = config.contrastive_weight * similarity[:, off_diagonal].abs().mean()
            if embeddings is not None and config.artifact_weight and last["copies"] is not None:
                terms["artifact"] = config.artifact_weight * self._artifact_loss(last)
        else:
            rotation = last["rotation"]
            if target is None:
                goal = torch.eye(rotation.shape[-1], dtype=rotation.dtype, device=rotation.device)
            else:
                goal = self.input_action.bind(self.group, x).linear_part(target, dtype=rotation.dtype)
            if config.prior_weight:
                terms["prior"] = config.prior_weight * ((rotation - goal) ** 2).sum((1, 2)).mean()
            if isinstance(self.canonicalizer, RegressedFrame) and config.contrastive_weight:
                terms["contrastive"] = config.contrastive_weight * self._frame_regression_loss(x, rotation)
        return terms

    def _artifact_loss(self, last: dict[str, Any]) -> torch.Tensor:
        """Embeddings of each copy and of the copy turned by a random element and back agree."""
        group, copies = last["group"], last["copies"]
        h = group.sample(self.input_action.batch_size(copies), generator=self.generator_for(copies.device),
                         device=copies.device)
        round_trip = self.input_action.act(group, h, self.input_action.act(group, group.inverse(h), copies))
        embeddings = self.canonicalizer.network(round_trip)
        k = last["k"]
        return F.mse_loss(embeddings.reshape(k, -1, embeddings.shape[-1]).transpose(0, 1), last["embeddings"])

    def _frame_regression_loss(self, x: Any, rotation: torch.Tensor) -> torch.Tensor:
        """The frame of h·x should be h·(frame of x) for a random h per sample."""
        bound = self.input_action.bind(self.group, x)
        h = bound.sample(self.input_action.batch_size(x), generator=self.generator_for(rotation.device),
                         device=rotation.device, dtype=rotation.dtype)
        moved = self.canonicalizer(self._frame_input(self.input_action.act(bound, h, x)))
        return ((moved - bound.linear_part(h, dtype=rotation.dtype) @ rotation) ** 2).sum((1, 2)).mean()

    @torch.no_grad()
    def canonical_element(self, x: Any) -> Any:
        """The canonical element g_x of each input, batched (finite groups: the group's elements; continuous
        groups: the frame's group element), without running the backbone."""
        self._check_input(x)
        if self.discrete:
            _, g_all, _, logits = self._score_discrete(x)
            batch = logits.shape[0]
            return select(g_all, logits.argmax(dim=1) * batch + torch.arange(batch, device=logits.device))
        return self._frame(x)[1]

    @torch.no_grad()
    def identity_metric(self, x: Any, tolerance: float = 0.1) -> float:
        """Fraction of ``x`` canonicalized to the identity (continuous groups: ‖R − I‖_F < tolerance)."""
        self.forward(x)
        if self.discrete:
            group = self._last["group"]
            identity = group.index(group.identity(1, device=self._last["index"].device))
            return float((self._last["index"] == identity).double().mean())
        rotation = self._last["rotation"]
        eye = torch.eye(rotation.shape[-1], dtype=rotation.dtype, device=rotation.device)
        return float(((rotation - eye).flatten(1).norm(dim=1) < tolerance).double().mean())


def resolve_config(
    config: CanonicalizationConfig, group: Group, input_action, backbone: nn.Module, network: nn.Module | None
) -> CanonicalizationConfig:
    """A copy of ``config`` with ``canonicalizer="auto"`` and ``in_channels=None`` made concrete for this model,
    so that ``save_pretrained`` records what was built."""
    kind = config.canonicalizer
    if kind == "auto":
        kind = "contrastive" if network is not None else default_canonicalizer(group, input_action)
    in_channels = config.in_channels
    channels_first_grid = input_action.grid_axes > 0 and input_action.channel_axis == 1
    if in_channels is None and network is None and kind != "pca" and channels_first_grid:
        in_channels = _channels_from_backbone(backbone, kind)
    size = config.canonicalizer_input_size
    if size == "auto":
        size = DEFAULT_IMAGE_INPUT_SIZE if input_action.grid_axes > 0 else None
    hidden = config.hidden
    if hidden is None:
        hidden = DEFAULT_HIDDEN[f"image-{kind}" if channels_first_grid and kind != "pca" else "other"]
    return dataclasses.replace(config, canonicalizer=kind, in_channels=in_channels, canonicalizer_input_size=size,
                               hidden=hidden)


def default_canonicalizer(group: Group, input_action) -> str:
    """What ``canonicalizer="auto"`` means for ``group`` acting on ``input_action``'s data: an exact
    canonicalizer where one exists (see :class:`CanonicalizationConfig`): the arg-max over scored copies for
    finite groups, else the registry's equivariant ``"frame"`` network when one applies and is installed."""
    if group.is_finite or group.needs_size:
        return "contrastive"
    frame = find_default_network("frame", group, input_action)
    return "equivariant" if frame is not None and frame.installed else "contrastive"


def _channels_from_backbone(backbone: nn.Module, kind: str) -> int:
    channels = image_channels(backbone)
    if channels is None:
        raise ConfigError(
            f"the default {kind!r} image canonicalizer is built at wrap() for a fixed number of image channels, "
            f"and the backbone {type(backbone).__name__} does not tell it (it has no nn.Conv2d and no "
            "config.num_channels): pass in_channels= (3 for RGB images, 1 for grey ones), or your own "
            "canonicalizer_network="
        )
    return channels


def _build_canonicalizer(
    group: Group, input_action, config: CanonicalizationConfig, network: nn.Module | None, discrete: bool
) -> nn.Module:
    kind = config.canonicalizer
    sizes = {"hidden": config.hidden, "in_channels": config.in_channels}
    if discrete:
        if kind == "pca":
            raise ConfigError(f"the 'pca' canonicalizer builds frames for continuous groups; {group.name} is finite")
        if kind == "contrastive":
            encoder = network or _default_encoder(group, input_action, config.embedding_dim, config)
            return ContrastiveScorer(encoder, config.embedding_dim)
        if network is not None:
            return EquivariantScorer(network)
        return EquivariantScorer(_default("regular_scores", group, input_action, **sizes))
    special = group.special
    if kind == "pca":
        if not input_action.has_positions:
            raise ConfigError(
                f"the 'pca' canonicalizer builds frames from point positions, and {input_action.spec()!r} data has "
                "none; use 'equivariant' or 'contrastive'"
            )
        return PCAFrame(special)
    if kind == "contrastive":
        encoder = network or _default_encoder(group, input_action, group.dim * group.dim, config)
        return RegressedFrame(encoder, group.dim, special)
    if network is not None:
        return RegressedFrame(network, group.dim, special)
    return _default("frame", group, input_action, **sizes)


def _default_encoder(group: Group, input_action, out_features: int, config: CanonicalizationConfig) -> nn.Module:
    return _default("encoder", group, input_action, out_features=out_features, hidden=config.hidden,
                    in_channels=config.in_channels)


def _default(role: str, group: Group, input_action, **options: Any) -> nn.Module:
    """The registry's default ``role`` network, or an error saying what to pass instead."""
    try:
        return default_network(role, group, input_action, **options)
    except NoDefaultNetworkError as error:
        advice = "pass canonicalizer_network="
        if role != "encoder" and find_default_network("encoder", group, input_action) is not None:
            advice += ", or use canonicalizer='contrastive'" + (
                " (a learned frame, approximately equivariant once trained)" if role == "frame" else "")
        raise NoDefaultNetworkError(f"{error}. For canonicalization: {advice}") from None


def __getattr__(name: str) -> Any:
    if name == "MAX_SCORED_ORDER":
        import warnings

        warnings.warn("MAX_SCORED_ORDER is deprecated; use MAX_EXHAUSTIVE_ORDER", DeprecationWarning, stacklevel=2)
        return MAX_EXHAUSTIVE_ORDER
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
