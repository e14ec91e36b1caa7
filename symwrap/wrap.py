"""The front door: :func:`wrap` a backbone, :func:`load` a saved wrapped model."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .actions import ActionSpec, get_action
from .backbones import adapt_backbone
from .errors import ConfigError, IncompatibleGroupError, ModelFileError
from .groups import Group, get_group
from .strategies import StrategyConfig, SymmetricModel, get_strategy
from .strategies.base import build_config


def wrap(
    model: nn.Module,
    group: str | Group | Sequence[str | Group] | Mapping[str, float],
    strategy: str,
    input: ActionSpec,
    output: ActionSpec = "invariant",
    config: StrategyConfig | None = None,
    *,
    example_input: Any = None,
    **kwargs: Any,
) -> SymmetricModel:
    """Make ``model`` equivariant (or approximately so) to ``group``.

    Args:
        model: any backbone: an ``nn.Module`` (timm, Hugging Face, PyG, your own) or a callable.
        group: a group name from :func:`symwrap.list_groups` (``"C4"``, ``"SO3"``, ``"E3xS"``) or a
            :class:`~symwrap.groups.Group`; for strategies that train several symmetries at once
            (``"remul"``) also a list of them, or a dict of groups and their weights.
        strategy: a name from :func:`symwrap.list_strategies` (``"averaging"``, ``"frames"``, ...).
        input: how the group acts on the input: an action name (``"image"``, ``"points"``,
            ``"graph"``...), an :class:`~symwrap.actions.Action`, or a dict of them for dict inputs.
        output: how it acts on the output (``"invariant"``, ``"vector"``, ``"points"``, ``"regular"``...).
        config: the strategy's config dataclass; or give its fields as keyword arguments.
        example_input: a batch like the ones the model will get (optional). The new model runs once on its
            first 2 samples (in eval mode, without gradients; every module's training flag is restored), so that an
            input, or a backbone output, that does not fit ``input``/``output`` raises here rather than at the
            first forward. Without it, the first forward raises (an :class:`~symwrap.errors.ActionError` for
            the input, a :class:`~symwrap.errors.BackboneOutputError` for the backbone's output).
        **kwargs: config fields, and the modules a strategy takes besides the backbone
            (``canonicalizer_network=`` for canonicalization, ...).

    Returns:
        a :class:`~symwrap.strategies.SymmetricModel` (an ``nn.Module``) whose ``backbone`` is ``model``; the
        strategy's own networks are built at once, on the backbone's device and in its floating-point dtype.

    Example::

        model = symwrap.wrap(vit, group="C4", strategy="averaging", input="image", output="invariant")
    """
    strategy_class = get_strategy(strategy)
    modules = {key: kwargs.pop(key) for key in strategy_class.module_arguments if key in kwargs}
    config_fields = kwargs
    resolved_group = _resolve_groups(group, strategy_class, kwargs)
    input_action, output_action = get_action(input), get_action(output)
    if config is None:
        config = build_config(strategy_class.config_class, config_fields)
    elif config_fields:
        raise ConfigError(f"pass either config= or config fields, not both; got config and {sorted(config_fields)}")
    elif not isinstance(config, strategy_class.config_class):
        raise ConfigError(
            f"strategy {strategy!r} takes a {strategy_class.config_class.__name__}; got {type(config).__name__}"
        )
    wrapped = strategy_class(adapt_backbone(model), resolved_group, input_action, output_action, config, **modules)
    _place_like_backbone(wrapped)
    if example_input is not None:
        _try_example(wrapped, example_input)
    return wrapped


def _place_like_backbone(model: SymmetricModel) -> None:
    """Move the strategy's own networks (canonicalizer, interface, ...) to the device and floating-point dtype
    of the backbone, so that ``wrap(vit.double())`` or ``wrap(vit.cuda())`` needs no second ``.to()``."""
    tensors = itertools.chain(model.backbone.parameters(), model.backbone.buffers())
    reference = next((t for t in tensors if t.is_floating_point()), None)
    if reference is None:
        return
    for child in model.children():
        if child is not model.backbone:
            child.to(device=reference.device, dtype=reference.dtype)


def _try_example(model: SymmetricModel, example_input: Any) -> None:
    """Run ``model`` once on the first 2 samples of ``example_input``, in eval mode and without gradients;
    every submodule gets its own training flag back (a backbone kept in eval mode stays there)."""
    model.input_action.validate(example_input)
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            model(model.input_action.take(example_input, 2))
    finally:
        for module, training in modes:
            module.training = training


def _resolve_groups(
    group: str | Group | Sequence[str | Group] | Mapping[str, float], strategy_class: type[SymmetricModel],
    config_fields: dict[str, Any],
) -> Group | list[Group]:
    """One group, or a list of them for strategies that train several symmetries at once; a dict
    ``{group: weight}`` also fills the strategy's per-group weight field (``beta`` for REMUL)."""
    if isinstance(group, (str, Group)):
        return get_group(group)
    field = strategy_class.group_weights_field
    if field is None:
        raise ConfigError(
            f"strategy {strategy_class.config_class.strategy!r} takes one group; got {group!r}. "
            "Several groups at once: strategy='remul'"
        )
    if isinstance(group, Mapping):
        if field in config_fields:
            raise ConfigError(f"give the per-group weights either in the group dict or as {field}=, not both")
        config_fields[field] = {get_group(name).name: weight for name, weight in group.items()}
    if not isinstance(group, (Mapping, Sequence)) or not group:
        raise ConfigError(f"group must be a name, a Group, or a non-empty list or dict of them; got {group!r}")
    return [get_group(name) for name in group]


def load(directory: str | Path, backbone: nn.Module, **modules: nn.Module) -> SymmetricModel:
    """Rebuild a model saved with ``save_pretrained(directory)`` around ``backbone``
    (an instance of the same architecture) and load its weights, bit for bit. Strategies that took
    modules besides the backbone (``canonicalizer_network=``) take them again here.

    Raises:
        ModelFileError: the folder, ``symwrap_config.json`` or ``model.safetensors`` is missing, empty,
            truncated, corrupt or incomplete; the config names a strategy, group or action that is not
            registered, or has invalid fields; or the two files come from different saves.
        WeightLoadingError: the weights do not fit the model built around ``backbone`` (the message lists
            the missing, unexpected and wrongly shaped keys).
        ConfigError: a module keyword this strategy does not take.
    """
    from .saving import CONFIG_FILE as SAVED_CONFIG
    from .saving import apply_weights, read_description, read_weights, rebuild_arguments

    description = read_description(directory)
    arguments = rebuild_arguments(description, directory)
    tensors = read_weights(directory, description)
    strategy_class = get_strategy(arguments["strategy"])
    unknown = sorted(set(modules) - set(strategy_class.module_arguments))
    if unknown:
        raise ConfigError(f"strategy {arguments['strategy']!r} takes the module(s) "
                          f"{list(strategy_class.module_arguments)} besides the backbone; got {unknown}")
    try:
        model = wrap(backbone, arguments["group"], arguments["strategy"], arguments["input"], arguments["output"],
                     arguments["config"], **modules)
    except (ConfigError, IncompatibleGroupError) as error:
        raise ModelFileError(f"the model described by {str(Path(directory) / SAVED_CONFIG)!r} cannot be rebuilt "
                             f"around the backbone given: {error}") from error
    apply_weights(model, tensors, directory, description)
    return model
