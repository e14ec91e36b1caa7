"""symwrap: make any pretrained PyTorch backbone equivariant or approximately equivariant.

::

    import symwrap
    model = symwrap.wrap(backbone, group="C4", strategy="averaging", input="image", output="invariant")
"""

from . import actions, backbones, groups, metrics, strategies
from .actions import get_action, list_actions, register_action
from .backbones import load_backbone
from .compare import compare
from .diagnosis import diagnose
from .errors import SymwrapError
from .export import export, export_onnx
from .groups import get_group, list_groups, register_group
from .registry import Registry
from .strategies import SymmetricModel, get_strategy, list_strategies, register_strategy
from .training import History, fit
from .wrap import load, wrap

__version__ = "0.1.0"

__all__ = [
    "History",
    "Registry",
    "SymmetricModel",
    "SymwrapError",
    "actions",
    "backbones",
    "compare",
    "diagnose",
    "export",
    "export_onnx",
    "fit",
    "get_action",
    "get_group",
    "get_strategy",
    "groups",
    "list_actions",
    "list_groups",
    "list_strategies",
    "load",
    "load_backbone",
    "metrics",
    "register_action",
    "register_group",
    "register_strategy",
    "strategies",
    "wrap",
]
