"""The group registry: what a symmetry is, as batched torch operations."""

from .base import Element, Group, cat, element_batch_size, repeat_each, select, tile, tree_map
from .euclidean import EuclideanGroup, TranslationGroup
from .permutations import PermutationGroup
from .planar import O2, SO2, CyclicGroup, DihedralGroup
from .product import ProductGroup
from .registry import get_group, list_groups, register_group
from .rotations import O3, SO3, haar_rotations
from .subgroups import AxialO2, AxialRotations, PlaneReflection

register_group("C{n}")(CyclicGroup)
register_group("D{n}")(DihedralGroup)
register_group("SO2")(SO2)
register_group("O2")(O2)
register_group("SO3")(SO3)
register_group("O3")(O3)
register_group("S")(PermutationGroup)
register_group("S{n}")(PermutationGroup)
register_group("T1")(lambda: TranslationGroup(1))
register_group("T2")(lambda: TranslationGroup(2))
register_group("T3")(lambda: TranslationGroup(3))
register_group("E3")(lambda: EuclideanGroup(special=False))
register_group("SE3")(lambda: EuclideanGroup(special=True))
register_group("SO2z")(lambda: AxialRotations("z"))
register_group("SO2y")(lambda: AxialRotations("y"))
register_group("O2z")(lambda: AxialO2("z"))
register_group("O2y")(lambda: AxialO2("y"))
register_group("Mz")(lambda: PlaneReflection("z"))
register_group("My")(lambda: PlaneReflection("y"))

__all__ = [
    "Element",
    "Group",
    "CyclicGroup",
    "DihedralGroup",
    "SO2",
    "O2",
    "SO3",
    "O3",
    "AxialO2",
    "AxialRotations",
    "PlaneReflection",
    "PermutationGroup",
    "TranslationGroup",
    "EuclideanGroup",
    "ProductGroup",
    "get_group",
    "list_groups",
    "register_group",
    "haar_rotations",
    "cat",
    "repeat_each",
    "tile",
    "select",
    "tree_map",
    "element_batch_size",
]
