"""The front door: :func:`wrap` a backbone, :func:`load` a saved wrapped model."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from .actions import ActionSpec, get_action
from .backbones import adapt_backbone
from .errors import ConfigError
from .groups import Group, get_group
from .strategies import StrategyConfig, SymmetricModel, get_strategy
from .strategies.base import CONFIG_FILE, WEIGHTS_FILE, build_config


def wrap(
    model: nn.Module,
    group: str | Group | Sequence[str | Group] | Mapping[str, float],
    strategy: str,
    input: ActionSpec,
    output: ActionSpec = "invariant",
    config: StrategyConfig | None = None,
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
        **kwargs: config fields, and the modules a strategy takes besides the backbone
            (``canonicalizer_network=`` for canonicalization, ...).

    Returns:
        a :class:`~symwrap.strategies.SymmetricModel` (an ``nn.Module``) whose ``backbone`` is ``model``.

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
    return strategy_class(adapt_backbone(model), resolved_group, input_action, output_action, config, **modules)


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
    (an instance of the same architecture) and load its weights. Strategies that took
    modules besides the backbone (``canonicalizer_network=``) take them again here."""
    from safetensors.torch import load_model

    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise ConfigError(f"{directory} has no {CONFIG_FILE}; expected a directory written by save_pretrained()")
    description = json.loads(config_path.read_text())
    strategy_class = get_strategy(description["strategy"])
    config = strategy_class.config_class.from_dict(description["config"])
    model = wrap(
        backbone,
        description["group"],
        description["strategy"],
        description["input"],
        description["output"],
        config,
        **modules,
    )
    load_model(model, str(directory / WEIGHTS_FILE))
    return model
