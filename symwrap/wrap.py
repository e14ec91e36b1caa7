"""The front door: :func:`wrap` a backbone, :func:`load` a saved wrapped model."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .actions import ActionSpec, get_action
from .backbones import adapt_backbone
from .errors import ConfigError, IncompatibleGroupError, ModelFileError, SymwrapError
from .groups import Group, get_group
from .saving import upgrade_config_fields
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
        config: the strategy's config dataclass; or give its fields as keyword arguments. With a dict of
            groups and their weights, the weights fill the config's per-group weight field (``beta``), which
            must then be left at its default.
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
    for key in strategy_class.adapted_module_arguments:
        if modules.get(key) is not None:
            modules[key] = adapt_backbone(modules[key])
    config_fields = upgrade_config_fields(strategy_class.config_class, kwargs)
    resolved_group, weights = _resolve_groups(group, strategy_class)
    input_action, output_action = get_action(input), get_action(output)
    if config is None:
        if weights is not None:
            config_fields = _with_group_weights(config_fields, strategy_class, weights)
        config = build_config(strategy_class.config_class, config_fields)
    elif config_fields:
        raise ConfigError(f"pass either config= or config fields, not both; got config and {sorted(config_fields)}")
    elif not isinstance(config, strategy_class.config_class):
        raise ConfigError(
            f"strategy {strategy!r} takes a {strategy_class.config_class.__name__}; got {type(config).__name__}"
        )
    elif weights is not None:
        config = _config_with_group_weights(config, strategy_class, weights)
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
) -> tuple[Group | list[Group], dict[str, float] | None]:
    """One group, or a list of them for strategies that train several symmetries at once; with the per-group
    weights ``{group name: weight}`` of a dict ``{group: weight}`` (``None`` for a name, a group or a list)."""
    if isinstance(group, (str, Group)):
        return get_group(group), None
    field = strategy_class.group_weights_field
    if field is None:
        raise ConfigError(
            f"strategy {strategy_class.config_class.strategy!r} takes one group; got {group!r}. "
            "Several groups at once: strategy='remul'"
        )
    weights = None
    if isinstance(group, Mapping):
        weights = {get_group(name).name: weight for name, weight in group.items()}
    if not isinstance(group, (Mapping, Sequence)) or not group:
        raise ConfigError(f"group must be a name, a Group, or a non-empty list or dict of them; got {group!r}")
    return [get_group(name) for name in group], weights


def _with_group_weights(config_fields: dict[str, Any], strategy_class: type[SymmetricModel],
                        weights: dict[str, float]) -> dict[str, Any]:
    """The config fields given to ``wrap()`` with the group dict's weights in the per-group weight field."""
    field = strategy_class.group_weights_field
    if field in config_fields:
        raise ConfigError(f"give the per-group weights either in the group dict or as {field}=, not both")
    return {**config_fields, field: weights}


def _config_with_group_weights(config: StrategyConfig, strategy_class: type[SymmetricModel],
                               weights: dict[str, float]) -> StrategyConfig:
    """A copy of ``config`` whose per-group weight field holds the group dict's weights; the field must be at
    its default, so that weights given in the config are never silently replaced."""
    field = strategy_class.group_weights_field
    default = next(f for f in dataclasses.fields(config) if f.name == field).default
    if getattr(config, field) != default:
        raise ConfigError(
            f"per-group weights were given both in the group dict and as config.{field}="
            f"{getattr(config, field)!r}; give them in one place: a list of groups with config.{field}, or the "
            f"dict with config.{field} left at its default ({default!r})"
        )
    return dataclasses.replace(config, **{field: weights})


def load(directory: str | Path, backbone: nn.Module | None = None, **modules: nn.Module) -> SymmetricModel:
    """Rebuild a model saved with ``save_pretrained(directory)`` around ``backbone``
    (an instance of the same architecture) and load its weights, bit for bit. Strategies that took
    modules besides the backbone (``canonicalizer_network=``) take them again here.
    ``SymmetricModel.from_pretrained(backbone, directory)`` is the same in peft's argument order.

    Without ``backbone``, the run folder of ``symwrap train`` rebuilds it (and the other modules not given) from
    the spec its ``train_config.yaml`` records (a timm / Hugging Face / torchvision name or a class, with its
    options; its pretrained weights only for a ``trainable_only`` save, whose file lacks the frozen backbone).
    A save made with ``save_pretrained(directory, trainable_only=True)`` fills only the tensors it holds; the
    rest come from ``backbone``, which must be the same base model made trainable the same way.

    Raises:
        ModelFileError: the folder, ``symwrap_config.json`` or ``model.safetensors`` is missing, empty,
            truncated, corrupt or incomplete; the config names a strategy, group or action that is not
            registered, or has invalid fields; or the two files come from different saves; or, without
            ``backbone``, the one ``train_config.yaml`` records cannot be rebuilt (a library or a weights file
            missing, an unknown model name).
        WeightLoadingError: the weights do not fit the model built around ``backbone`` (the message lists
            the missing, unexpected and wrongly shaped keys).
        ConfigError: a module keyword this strategy does not take; no ``backbone`` and no ``train_config.yaml``
            in ``directory`` (or one that does not validate).
    """
    from .saving import CONFIG_FILE as SAVED_CONFIG
    from .saving import apply_weights, read_description, read_weights, rebuild_arguments

    if isinstance(directory, nn.Module) and isinstance(backbone, (str, Path)):
        raise ConfigError("symwrap.load takes (directory, backbone); got the backbone first. Use "
                          "symwrap.load(directory, backbone) or SymmetricModel.from_pretrained(backbone, directory)")
    description = read_description(directory)
    if backbone is None:
        backbone, modules = _recorded_modules(Path(directory), modules, bool(description.get("trainable_only")))
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


def _recorded_modules(directory: Path, modules: dict[str, nn.Module],
                      pretrained: bool) -> tuple[nn.Module, dict[str, nn.Module]]:
    """The backbone, and the modules not in ``modules``, built from the specs the ``train_config.yaml`` of a
    ``symwrap train`` run folder records; their pretrained weights only when ``pretrained``."""
    from .experiment import CONFIG_COPY, build_backbone, read_config

    path = directory / CONFIG_COPY
    if not path.is_file():
        raise ConfigError(
            f"symwrap.load({str(directory)!r}) needs the backbone the model was saved around, and the folder records "
            f"none (no {CONFIG_COPY}, which 'symwrap train' writes): pass backbone= (an instance of the same "
            "architecture; its weights are overwritten)"
        )
    config = read_config(path)
    try:
        backbone = build_backbone(config.backbone, load_weights=pretrained)
        built = {name: build_backbone(spec, load_weights=pretrained, where=f"modules.{name}")
                 for name, spec in config.modules.items() if name not in modules}
    except (SymwrapError, ImportError, OSError, TypeError, ValueError) as error:
        raise ModelFileError(
            f"cannot rebuild the backbone that {str(path)!r} records ({config.backbone.name!r}): "
            f"{type(error).__name__}: {error}. Install what it needs or restore its files, or build it yourself and "
            f"pass it: symwrap.load({str(directory)!r}, backbone)"
        ) from error
    return backbone, {**built, **modules}
