"""Adapters that turn any backbone into a plain tensor-in, tensor-out callable.

Strategies only ever see what :func:`adapt_backbone` returns:

* a model that already maps tensors to tensors (timm, torchvision, your own
  ``nn.Module``) is returned as it is;
* a Hugging Face model returns a ``ModelOutput``: an :class:`OutputAdapter` reads its
  ``logits`` (or, for base models, its ``last_hidden_state``); so does a peft model
  (``get_peft_model(hf_model, LoraConfig(...))``) around one, which is read through to the
  model it adapts (:func:`base_model`);
* a torch_geometric model takes tensors (``x, edge_index, batch, ...``) while the
  ``"graph"`` action hands the backbone a PyG ``Data``/``Batch``: a :class:`PyGAdapter`
  unpacks the graph into the arguments the model's ``forward`` names.

So strategies never special-case a library.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..errors import ActionError, ConfigError, MissingDependencyError

__all__ = [
    "GRAPH_FIELDS",
    "OutputAdapter",
    "PyGAdapter",
    "adapt_backbone",
    "backbone_name",
    "base_model",
    "is_pyg_model",
    "needs_adapter",
    "select_output",
]

_OUTPUT_KEYS = ("logits", "last_hidden_state", "pooler_output")

#: Graph attributes a :class:`PyGAdapter` passes to a model whose ``forward`` has a parameter of that name.
GRAPH_FIELDS = ("x", "z", "pos", "edge_index", "edge_attr", "edge_weight", "batch")
_READOUTS = ("mean", "add", "max")


def select_output(output: Any, key: str | int | None = None) -> Any:
    """The tensor a strategy should use from a backbone's output.

    Tensors pass through. With ``key``, that entry or attribute is read (an integer ``key``: that item of
    a tuple or list). Otherwise
    objects with a ``logits`` / ``last_hidden_state`` / ``pooler_output`` entry or
    attribute (Hugging Face ``ModelOutput``) give the first of them that is a tensor;
    other dicts pass through; tuples and lists give their first entry.

    Raises:
        ActionError: nothing tensor-like could be read from ``output``.
    """
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(key, int) and not isinstance(key, bool):
        if isinstance(output, (tuple, list)) and -len(output) <= key < len(output):
            return output[key]
        raise ActionError(f"cannot read item {key} from a backbone output of type {type(output).__name__}"
                          + (f" with {len(output)} items" if isinstance(output, (tuple, list)) else ""))
    keys = (key,) if key else _OUTPUT_KEYS
    for name in keys:
        value = output.get(name) if isinstance(output, Mapping) else getattr(output, name, None)
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(output, Mapping) and not key:
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    available = list(output.keys()) if isinstance(output, Mapping) else None
    raise ActionError(
        f"cannot read a tensor from a backbone output of type {type(output).__name__}; "
        f"expected a tensor, a dict, a tuple or an object with one of {list(keys)}"
        + (f" (its entries: {available})" if available is not None else "")
    )


class OutputAdapter(nn.Module):
    """Calls ``model`` and returns :func:`select_output` of what it returns.

    :func:`adapt_backbone` puts one around every Hugging Face model. Build one yourself
    to choose the output: ``OutputAdapter(vit_model, key="pooler_output")``;
    :func:`symwrap.wrap` keeps it as it is.

    Args:
        model: the backbone.
        key: the entry or attribute of the output to return (an integer: that item of a tuple);
            ``None`` reads ``logits``, else ``last_hidden_state``, else ``pooler_output``.
    """


    @property
    def display_name(self) -> str:
        """The name of the user's model inside this adapter (what error messages call the backbone)."""
        return backbone_name(self)
    def __init__(self, model: nn.Module, key: str | int | None = None) -> None:
        super().__init__()
        self.model = model
        self.key = key

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return select_output(self.model(*args, **kwargs), self.key)

    def __getattr__(self, name: str) -> Any:
        return _forwarded(self, name)


def _forward_parameters(model: nn.Module) -> dict[str, inspect.Parameter]:
    """The named parameters of ``model.forward`` (no ``*args`` / ``**kwargs``); empty when it has no signature."""
    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return {}
    return {
        name: parameter
        for name, parameter in signature.parameters.items()
        if parameter.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }


def _is_required(parameter: inspect.Parameter) -> bool:
    return parameter.default is inspect.Parameter.empty


class PyGAdapter(nn.Module):
    """Lets a torch_geometric model that takes tensors (``x, edge_index, batch, ...``) take a PyG graph.

    ``forward(data)`` calls ``model(x=data.x, edge_index=data.edge_index, batch=data.batch, ...)``
    with exactly the graph fields the model's ``forward`` names (any of
    :data:`GRAPH_FIELDS`: ``x``, ``z``, ``pos``, ``edge_index``, ``edge_attr``,
    ``edge_weight``, ``batch``). A field the model requires and the graph lacks is an
    error; an optional one the graph lacks is left out. A single ``Data`` (no ``batch``
    vector) is one graph.

    Args:
        model: the graph network, e.g. ``torch_geometric.nn.models.GCN(...)``.
        arguments: which graph attribute feeds which parameter, ``{"h": "x"}``, for
            parameters not named after a graph field. Default: read from the signature.
        readout: pool the model's node outputs into one row per graph: ``"mean"``,
            ``"add"`` or ``"max"`` (``global_*_pool`` over ``data.batch``). ``None``
            returns what the model returns (models with their own pooling).

    Example::

        gcn = torch_geometric.nn.models.GCN(in_channels=4, hidden_channels=16, num_layers=2, out_channels=3)
        model = symwrap.wrap(PyGAdapter(gcn, readout="mean"), group="S", strategy="averaging",
                             input="graph", output="invariant")

    Raises:
        ConfigError: a required parameter of ``model.forward`` is not a graph field and
            not in ``arguments``; an unknown ``readout``.
    """


    @property
    def display_name(self) -> str:
        """The name of the user's model inside this adapter (what error messages call the backbone)."""
        return backbone_name(self)
    def __init__(self, model: nn.Module, arguments: Mapping[str, str] | None = None,
                 readout: str | None = None) -> None:
        super().__init__()
        if readout is not None and readout not in _READOUTS:
            raise ConfigError(f"readout must be None or one of {list(_READOUTS)}; got {readout!r}")
        self.model = model
        self.readout = readout
        self.arguments: dict[str, str] = {}
        self.required: set[str] = set()
        parameters = _forward_parameters(base_model(model))
        given = dict(arguments or {})
        unknown = sorted(set(given) - set(parameters))
        if unknown and parameters:
            raise ConfigError(
                f"arguments names {unknown}, which {type(model).__name__}.forward does not take; "
                f"its parameters: {list(parameters)}"
            )
        for name, parameter in parameters.items():
            if name in given:
                self.arguments[name] = given[name]
            elif name in GRAPH_FIELDS:
                self.arguments[name] = name
            elif _is_required(parameter):
                raise ConfigError(
                    f"{type(model).__name__}.forward requires {name!r}, which is not a graph field "
                    f"({', '.join(GRAPH_FIELDS)}); say which attribute of the graph feeds it: "
                    f"PyGAdapter(model, arguments={{{name!r}: 'x'}})"
                )
            else:
                continue
            if _is_required(parameter):
                self.required.add(name)
        if not parameters:  # no signature to read: the usual (x, edge_index, batch)
            self.arguments = given or {"x": "x", "edge_index": "edge_index", "batch": "batch"}
            self.required = set(self.arguments) - {"batch"}

    def graph_arguments(self, data: Any) -> dict[str, Any]:
        """The keyword arguments ``forward`` passes to the model for the graph ``data``."""
        if not hasattr(data, "edge_index") or not hasattr(data, "num_nodes"):
            raise ActionError(
                f"{type(self.model).__name__} is a graph network: it takes a torch_geometric Data or Batch; "
                f"got {type(data).__name__}. Wrap it with input='graph'"
            )
        values: dict[str, Any] = {}
        for name, field in self.arguments.items():
            value = getattr(data, field, None)
            if value is None and field == "batch":
                value = _single_graph_batch(data)
            if value is None:
                if name in self.required:
                    raise ActionError(
                        f"{type(self.model).__name__}.forward requires {name!r}, but the graph has no "
                        f"data.{field}; set it, or map another attribute with PyGAdapter(arguments=...)"
                    )
                continue
            values[name] = value
        return values

    def forward(self, data: Any) -> Any:
        values = self.graph_arguments(data)
        output = select_output(self.model(**values))
        if self.readout is None:
            return output
        batch = getattr(data, "batch", None)
        if batch is None:
            batch = _single_graph_batch(data)
        num_graphs = int(getattr(data, "num_graphs", 1) or 1)
        return _pool(self.readout)(output, batch, num_graphs)

    def extra_repr(self) -> str:
        fields = ", ".join(f"{name}=data.{field}" for name, field in self.arguments.items())
        return f"arguments=({fields}), readout={self.readout!r}"

    def __getattr__(self, name: str) -> Any:
        return _forwarded(self, name)


def _forwarded(adapter: nn.Module, name: str) -> Any:
    """An attribute of the adapter, else of the user's model inside it (as peft's ``PeftModel`` forwards to the
    model it adapts): ``model.backbone.save_pretrained(...)``, ``model.backbone.config`` reach the user's model."""
    try:
        return nn.Module.__getattr__(adapter, name)
    except AttributeError:
        if name == "model":  # not built yet (inside __init__, or while unpickling)
            raise
    return getattr(nn.Module.__getattr__(adapter, "model"), name)


def _single_graph_batch(data: Any) -> torch.Tensor:
    """The ``batch`` vector of a single graph (all zeros), on the device of its ``edge_index``."""
    return torch.zeros(int(data.num_nodes), dtype=torch.long, device=data.edge_index.device)


def _pool(readout: str) -> Any:
    try:
        from torch_geometric import nn as pyg_nn
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("torch_geometric", "pyg", "PyGAdapter(readout=...)") from error
    pool = {"mean": pyg_nn.global_mean_pool, "add": pyg_nn.global_add_pool, "max": pyg_nn.global_max_pool}[readout]
    return lambda values, batch, size: pool(values, batch, size=size)


def base_model(model: Any) -> Any:
    """The model a peft wrapper adapts (``PeftModel.get_base_model()``, the ``model`` of a tuner such as
    ``LoraModel``), through any number of them; any other model as it is. peft is never imported here: a peft
    model is recognised by the module its class comes from."""
    while isinstance(model, nn.Module) and type(model).__module__.startswith("peft."):
        if callable(getattr(model, "get_base_model", None)):
            inner = model.get_base_model()
        else:
            inner = model.__dict__.get("_modules", {}).get("model")
        if not isinstance(inner, nn.Module) or inner is model:
            break
        model = inner
    return model


def needs_adapter(model: nn.Module) -> bool:
    """Whether a model returns something other than plain tensors (Hugging Face models return ``ModelOutput``;
    so does a peft model around one)."""
    model = base_model(model)
    if type(model).__module__.startswith("transformers."):
        return True
    transformers = sys.modules.get("transformers")  # a user's subclass lives in their module; never import it here
    pretrained = getattr(transformers, "PreTrainedModel", None) if transformers is not None else None
    return isinstance(pretrained, type) and isinstance(model, pretrained)


def is_pyg_model(model: nn.Module) -> bool:
    """Whether ``model`` is a graph network that takes tensors (``x, edge_index, ...``) rather than a graph.

    True when its ``forward`` has an ``edge_index`` parameter, or when it comes from
    ``torch_geometric`` and its ``forward`` has a ``pos`` parameter (SchNet, DimeNet).
    A model whose ``forward`` takes the ``Data``/``Batch`` itself is not one.
    """
    model = base_model(model)
    names = set(_forward_parameters(model))
    if "edge_index" in names:
        return True
    return type(model).__module__.startswith("torch_geometric.") and "pos" in names


def backbone_name(module: Any) -> str:
    """The class name of the user's model, under the adapter :func:`adapt_backbone` may have put around it."""
    if isinstance(module, (OutputAdapter, PyGAdapter)):
        module = module.model
    elif isinstance(module, _CallableModule):
        module = module.fn
    if isinstance(module, nn.Module):
        inner = base_model(module)
        return type(module).__name__ + (f"({type(inner).__name__})" if inner is not module else "")
    return getattr(module, "__name__", type(module).__name__)


def adapt_backbone(model: nn.Module | Any, output_key: str | None = None) -> nn.Module:
    """What strategies call: ``model`` itself if it maps tensors to tensors, else an adapter around it.

    * :class:`OutputAdapter` and :class:`PyGAdapter` instances: returned as they are.
    * torch_geometric models taking ``(x, edge_index, ...)`` (see :func:`is_pyg_model`):
      a :class:`PyGAdapter`.
    * Hugging Face models (``ModelOutput``), or any model when ``output_key`` is given:
      an :class:`OutputAdapter`.
    * any other ``nn.Module``: ``model`` itself, untouched.
    * a plain function: a parameterless module calling it.

    Raises:
        ActionError: ``model`` is neither an ``nn.Module`` nor callable.
    """
    if isinstance(model, (OutputAdapter, PyGAdapter)):
        return model
    if not isinstance(model, nn.Module):
        if not callable(model):
            raise ActionError(f"a backbone must be an nn.Module or a callable; got {type(model).__name__}")
        return _CallableModule(model)
    if is_pyg_model(model):
        return PyGAdapter(model)
    if needs_adapter(model) or output_key is not None:
        return OutputAdapter(model, output_key)
    return model


class _CallableModule(nn.Module):
    """Lets a plain function be a backbone (no parameters)."""


    @property
    def display_name(self) -> str:
        """The name of the user's model inside this adapter (what error messages call the backbone)."""
        return backbone_name(self)
    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Any) -> Any:
        return select_output(self.fn(x))
