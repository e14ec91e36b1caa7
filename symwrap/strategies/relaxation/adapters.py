"""How each kind of equivariant layer is relaxed: a registry of adapters keyed by module type.

An adapter builds the unconstrained term R of a layer, adds θ·R(z) to the layer's output, and measures R's
regulariser on the layer's (detached) input z: the squared Lie derivative LD = Σ_k ‖dR(z)[A_k·z] − A_k·R(z)‖²
over the generators A_k of the group's Lie algebra (for finite groups the finite differences
‖R(g·z) − g·R(z)‖² over a few elements g), and the squared norm N = ‖R(z)‖². Both are means over the batch.

Built in: symwrap's Vector-Neuron layers (:class:`~symwrap.nn.VNLinear`, :class:`~symwrap.nn.VNLinearLeakyReLU`),
symwrap's :class:`~symwrap.nn.EGNNLayer`, and escnn's ``R2Conv`` (with escnn's own field transforms). Register
others with :func:`register_relaxation_adapter`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ...errors import ConfigError, IncompatibleGroupError
from ...groups import Group
from .config import RelaxationConfig

__all__ = ["RelaxationAdapter", "adapter_for", "group_directions", "list_relaxation_adapters",
           "register_relaxation_adapter"]

#: (key, adapter): a key is a module class, or "package.ClassName" for a class of an optional package (matched by
#: the class name and the top-level package of every class in the module's MRO, without importing the package)
_ADAPTERS: list[tuple[type | str, RelaxationAdapter]] = []


class RelaxationAdapter(ABC):
    """How one kind of equivariant layer gets its relaxation term."""

    @abstractmethod
    def build(self, layer: nn.Module, group: Group, config: RelaxationConfig) -> nn.Module:
        """The relaxation term R of ``layer`` (raise :class:`~symwrap.errors.IncompatibleGroupError` if the
        group cannot act on its features)."""

    @abstractmethod
    def relax(self, layer: nn.Module, inputs: tuple[Any, ...], output: Any, term: nn.Module, theta: float) -> Any:
        """The layer's output with θ·R(z) added."""

    @abstractmethod
    def regulariser(self, layer: nn.Module, inputs: tuple[Any, ...], term: nn.Module, group: Group,
                    config: RelaxationConfig) -> tuple[torch.Tensor, torch.Tensor]:
        """``(LD, N)`` of ``term`` on the detached ``inputs``: batch means of the squared Lie derivative and of
        the squared norm of R(z)."""


def register_relaxation_adapter(key: type | str) -> Callable[[type[RelaxationAdapter]], type[RelaxationAdapter]]:
    """Class decorator registering an adapter for layers of type ``key`` (a class, or ``"package.ClassName"``
    for a class of an optional package). Later registrations are asked first."""

    def decorator(cls: type[RelaxationAdapter]) -> type[RelaxationAdapter]:
        _ADAPTERS.append((key, cls()))
        return cls

    return decorator


def _matches(module: nn.Module, key: type | str) -> bool:
    if isinstance(key, type):
        return isinstance(module, key)
    package, _, name = key.rpartition(".")
    return any(cls.__name__ == name and cls.__module__.split(".")[0] == package for cls in type(module).__mro__)


def adapter_for(module: nn.Module) -> RelaxationAdapter | None:
    """The adapter of ``module``'s type, or ``None``."""
    for key, adapter in reversed(_ADAPTERS):
        if _matches(module, key):
            return adapter
    return None


def list_relaxation_adapters() -> list[str]:
    """The layer types that can be relaxed."""
    return [key if isinstance(key, str) else f"{key.__module__.split('.')[0]}.{key.__qualname__}"
            for key, _ in reversed(_ADAPTERS)]


def group_directions(group: Group, config: RelaxationConfig, *, dtype: torch.dtype,
                     device: torch.device) -> tuple[str, list[tuple[torch.Tensor, torch.Tensor | None]]]:
    """What LD differentiates along: ``("lie", [(L, t)])``, the linear and translation parts of a basis of the
    group's Lie algebra, or ``("finite", [(M, t)])``, the linear and translation parts of up to
    ``config.max_generators`` non-identity elements of a finite group."""
    if group.is_finite:
        elements = group.elements(device=device, dtype=dtype)
        index = group.index(elements)
        identity = group.index(group.identity(1, device=device, dtype=dtype))
        chosen = torch.nonzero(index != identity).flatten()[: config.max_generators]
        picked = elements[chosen] if isinstance(elements, torch.Tensor) else elements
        linear = group.linear_part(picked, dtype=dtype)
        translation = group.translation_part(picked, dtype=dtype)
        if linear is None:
            raise IncompatibleGroupError(f"relaxation measures LD through the group's linear part; {group.name} "
                                         "has none")
        return "finite", [(linear[i], None if translation is None else translation[i]) for i in range(len(linear))]
    if group.needs_size:
        raise IncompatibleGroupError(f"relaxation does not measure LD for {group.name}, whose size comes from the data")
    algebra = group.lie_algebra(device=device, dtype=dtype)
    d = group.dim
    if algebra.ndim == 2:  # translations: the basis vectors
        return "lie", [(torch.zeros(d, d, dtype=dtype, device=device), algebra[k]) for k in range(len(algebra))]
    if algebra.shape[-1] == d + 1:  # homogeneous coordinates: rotation block and translation column
        return "lie", [(a[:d, :d], a[:d, d]) for a in algebra]
    return "lie", [(a, None) for a in algebra]


def init_term(term: nn.Module, config: RelaxationConfig) -> nn.Module:
    """Zero the term's weights, or draw them from N(0, init_std²)."""
    with torch.no_grad():
        for parameter in term.parameters():
            if config.init == "zero":
                parameter.zero_()
            else:
                parameter.normal_(0.0, config.init_std)
    return term


def squared(x: torch.Tensor) -> torch.Tensor:
    """Batch mean of the squared norm (everything but dim 0 summed)."""
    return x.pow(2).flatten(1).sum(1).mean()


# --- Vector Neurons --------------------------------------------------------------------------------------------

class VectorNeuronTerm(nn.Module):
    """R for a Vector-Neuron layer: a plain linear map of the flattened ``(C_in, 3)`` vectors of every point to
    ``(C_out, 3)``, with a bias: ``(B, C_in, 3, ...) -> (B, C_out, 3, ...)``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.linear = nn.Linear(3 * in_channels, 3 * out_channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        flat = z.flatten(1, 2).movedim(1, -1)
        return self.linear(flat).movedim(-1, 1).unflatten(1, (self.out_channels, 3))


def _on_vectors(matrix: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """A 3 x 3 matrix applied to the vector axis (dim 2) of Vector-Neuron features."""
    return torch.einsum("ij,bcj...->bci...", matrix.to(z.dtype), z)


def _vector_regulariser(term: nn.Module, z: torch.Tensor, group: Group, config: RelaxationConfig,
                        act: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """LD and N of a term whose input and output both rotate by ``act`` (vectors: translations do nothing)."""
    out = term(z)
    norm = squared(out)
    if not config.lie_derivative:
        return out.new_zeros(()), norm
    kind, directions = group_directions(group, config, dtype=z.dtype, device=z.device)
    total = out.new_zeros(())
    for linear, _ in directions:
        if kind == "lie":
            _, derivative = torch.func.jvp(term, (z,), (act(linear, z),))
            total = total + squared(derivative - act(linear, out))
        else:
            total = total + squared(term(act(linear, z)) - act(linear, out))
    return total, norm


def _require_space(group: Group, dim: int, what: str) -> None:
    if not group.has_linear or group.dim != dim:
        raise IncompatibleGroupError(f"{what} carry {dim}-D vectors, which {group.name} does not rotate; use a group "
                                     f"acting on R^{dim}")


class _VectorNeuronAdapter(RelaxationAdapter):
    def build(self, layer: nn.Module, group: Group, config: RelaxationConfig) -> nn.Module:
        _require_space(group, 3, "Vector-Neuron layers")
        return init_term(VectorNeuronTerm(layer.map.in_features, layer.map.out_features), config)

    def relax(self, layer, inputs, output, term, theta):
        return output + theta * term(inputs[0])

    def regulariser(self, layer, inputs, term, group, config):
        return _vector_regulariser(term, inputs[0], group, config, _on_vectors)


def _register_builtin_adapters() -> None:
    from ...nn import EGNNLayer, VNLinear, VNLinearLeakyReLU

    register_relaxation_adapter(VNLinear)(_VectorNeuronAdapter)
    register_relaxation_adapter(VNLinearLeakyReLU)(_VectorNeuronAdapter)
    register_relaxation_adapter(EGNNLayer)(_EGNNAdapter)
    register_relaxation_adapter("escnn.R2Conv")(_EscnnConvAdapter)


# --- EGNN ------------------------------------------------------------------------------------------------------

class EGNNTerm(nn.Module):
    """R for an :class:`~symwrap.nn.EGNNLayer`: per node, a linear map of ``[h, pos, vel]`` to a position step
    (added to the new positions) and to a feature update (added to the new features). Reading raw positions
    and velocities, it is neither rotation- nor translation-equivariant."""

    def __init__(self, hidden: int, dim: int, velocity: bool) -> None:
        super().__init__()
        width = hidden + dim * (2 if velocity else 1)
        self.hidden, self.dim, self.velocity = hidden, dim, velocity
        self.position = nn.Linear(width, dim)
        self.features = nn.Linear(width, hidden)

    def forward(self, h: torch.Tensor, pos: torch.Tensor, vel: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [h, pos] + ([vel] if self.velocity and vel is not None else
                            [torch.zeros_like(pos)] if self.velocity else [])
        joined = torch.cat(parts, dim=-1)
        return self.features(joined), self.position(joined)


class _EGNNAdapter(RelaxationAdapter):
    def build(self, layer, group, config):
        if not group.has_linear and not group.has_translation:
            raise IncompatibleGroupError(f"EGNN layers are relaxed against rotations and translations; got "
                                         f"{group.name}")
        dim = group.dim if group.dim is not None else 3
        return init_term(EGNNTerm(layer.hidden, dim, layer.vel_mlp is not None), config)

    @staticmethod
    def _parts(inputs):
        h, pos = inputs[0], inputs[1]
        vel = inputs[2] if len(inputs) > 2 else None
        return h, pos, vel

    def relax(self, layer, inputs, output, term, theta):
        h, pos, vel = self._parts(inputs)
        features, step = term(h, pos, vel)
        return output[0] + theta * features, output[1] + theta * step

    def regulariser(self, layer, inputs, term, group, config):
        h, pos, vel = self._parts(inputs)
        features, step = term(h, pos, vel)
        norm = squared(features) + squared(step)
        if not config.lie_derivative:
            return norm.new_zeros(()), norm
        kind, directions = group_directions(group, config, dtype=pos.dtype, device=pos.device)
        rotate = lambda m, v: v @ m.to(v.dtype).T  # noqa: E731 - rows are points
        total = norm.new_zeros(())
        for linear, shift in directions:
            shift = torch.zeros(pos.shape[-1], dtype=pos.dtype, device=pos.device) if shift is None else shift
            if kind == "lie":
                tangents = (torch.zeros_like(h), rotate(linear, pos) + shift,
                            None if vel is None else rotate(linear, vel))
                if vel is None:
                    _, (d_features, d_step) = torch.func.jvp(lambda a, b: term(a, b), (h, pos), tangents[:2])
                else:
                    _, (d_features, d_step) = torch.func.jvp(term, (h, pos, vel), tangents)
                # features are invariant (the algebra acts as 0), the step is a vector (rotates, no shift)
                total = total + squared(d_features) + squared(d_step - rotate(linear, step))
            else:
                moved = term(h, rotate(linear, pos) + shift, None if vel is None else rotate(linear, vel))
                total = total + squared(moved[0] - features) + squared(moved[1] - rotate(linear, step))
        return total, norm


# --- escnn ------------------------------------------------------------------------------------------------------

def escnn_elements(fibergroup: Any, limit: int) -> list[Any]:
    """The escnn group elements LD sums over: the generators of a finite group; for SO(2) and O(2), whose
    generators are infinitesimal, the quarter turn (and a reflection), which move a grid without interpolation."""
    if not fibergroup.continuous:
        return list(fibergroup.generators)[:limit]
    try:
        return [fibergroup.element(math.pi / 2)][:limit]  # SO(2): an angle
    except (TypeError, ValueError, AssertionError):
        return [fibergroup.element((0, math.pi / 2)), fibergroup.element((1, 0.0))][:limit]  # O(2): (flip, angle)


class _EscnnConvAdapter(RelaxationAdapter):
    """escnn's R2Conv: R is a plain Conv2d on the fields' tensor; LD uses the field types' own transforms over the
    generators of the layer's group (:func:`escnn_elements`)."""

    def build(self, layer, group, config):
        conv = nn.Conv2d(layer.in_type.size, layer.out_type.size, layer.kernel_size, stride=layer.stride,
                         padding=layer.padding, dilation=layer.dilation)
        return init_term(conv, config)

    def relax(self, layer, inputs, output, term, theta):
        from escnn import nn as enn

        return enn.GeometricTensor(output.tensor + theta * term(inputs[0].tensor), output.type)

    def regulariser(self, layer, inputs, term, group, config):
        from escnn import nn as enn

        z = inputs[0].tensor
        out = term(z)
        norm = squared(out)
        if not config.lie_derivative:
            return norm.new_zeros(()), norm
        total = norm.new_zeros(())
        for element in escnn_elements(layer.in_type.gspace.fibergroup, config.max_generators):
            moved_in = enn.GeometricTensor(z, layer.in_type).transform(element).tensor
            moved_out = enn.GeometricTensor(out, layer.out_type).transform(element).tensor
            total = total + squared(term(moved_in) - moved_out)
        return total, norm


def check_adapter(module: nn.Module) -> RelaxationAdapter:
    adapter = adapter_for(module)
    if adapter is None:
        raise ConfigError(f"no relaxation adapter for {type(module).__name__}")
    return adapter


_register_builtin_adapters()
