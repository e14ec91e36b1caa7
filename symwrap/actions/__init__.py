"""The action registry: how group elements act on each kind of data."""

from .adjacency import AdjacencyAction
from .base import Action, permute_members
from .batching import Copies, group_copies, mix_inverse_copies
from .geometric import (
    InvariantAction,
    PointAction,
    PointsAction,
    RegularAction,
    ScalarsAction,
    SetAction,
    VectorAction,
    VectorsAction,
)
from .graph import GraphAction
from .image import ImageAction, disc_mask
from .neighbourhoods import knn_graph, radius_graph
from .registry import ActionSpec, get_action, list_actions, register_action
from .structured import DictAction
from .tensors import TensorAction

for _name, _cls in [
    ("image", ImageAction),
    ("points", PointsAction),
    ("vectors", VectorsAction),
    ("scalars", ScalarsAction),
    ("set", SetAction),
    ("vector", VectorAction),
    ("tensor", TensorAction),
    ("point", PointAction),
    ("graph", GraphAction),
    ("adjacency", AdjacencyAction),
    ("invariant", InvariantAction),
    ("regular", RegularAction),
]:
    register_action(_name)(_cls)

__all__ = [
    "Action",
    "AdjacencyAction",
    "ActionSpec",
    "Copies",
    "group_copies",
    "mix_inverse_copies",
    "DictAction",
    "GraphAction",
    "ImageAction",
    "InvariantAction",
    "PointAction",
    "PointsAction",
    "RegularAction",
    "ScalarsAction",
    "SetAction",
    "TensorAction",
    "VectorAction",
    "VectorsAction",
    "disc_mask",
    "get_action",
    "knn_graph",
    "radius_graph",
    "list_actions",
    "permute_members",
    "register_action",
]
