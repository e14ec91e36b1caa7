"""Backbones in, plain tensor-in, tensor-out callables out; pretrained backbones by name.

* :func:`adapt_backbone` (what :func:`symwrap.wrap` calls) puts an adapter around
  models that need one: :class:`OutputAdapter` for Hugging Face ``ModelOutput``,
  :class:`PyGAdapter` for torch_geometric models that take ``(x, edge_index, batch)``; a peft
  model is read through to the model it adapts (:func:`base_model`).
* :func:`load_backbone` builds a timm / Hugging Face / torchvision model and loads its
  weights from a local file or directory (or a hub when online).
"""

from .adapters import (
    GRAPH_FIELDS,
    OutputAdapter,
    PyGAdapter,
    adapt_backbone,
    base_model,
    is_pyg_model,
    needs_adapter,
    select_output,
)
from .loading import (
    BACKBONE_SOURCES,
    HF_TASKS,
    WEIGHT_FILE_NAMES,
    load_backbone,
    load_weights,
    read_state_dict,
)

__all__ = [
    "BACKBONE_SOURCES",
    "GRAPH_FIELDS",
    "HF_TASKS",
    "WEIGHT_FILE_NAMES",
    "OutputAdapter",
    "PyGAdapter",
    "adapt_backbone",
    "base_model",
    "is_pyg_model",
    "load_backbone",
    "load_weights",
    "needs_adapter",
    "read_state_dict",
    "select_output",
]
