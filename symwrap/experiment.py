"""Training runs described by a YAML file: what ``symwrap train CONFIG.yaml`` does.

A configuration names the backbone, the data, the group, the strategy and the training
settings::

    backbone:
      name: timm:vit_tiny_patch16_224      # load_backbone spec, or package.module:ClassName
      kwargs: {img_size: 28, patch_size: 7, in_chans: 1, num_classes: 10}
      weights: null                        # optional local state dict (file or directory)
    data:
      name: mnist_digits                   # symwrap.data.list_datasets()
      n_train: 300
      batch_size: 50
    group: C4
    strategy: averaging
    input: image                           # optional when the data set suggests one
    output: invariant
    strategy_config: {}                    # fields of the strategy's config dataclass
    modules: {}                            # other modules the strategy takes (teacher: {name: ...})
    training:
      epochs: 1
      lr: 0.001
      optimizer: adam                      # or {name: sgd, momentum: 0.9}
      seed: 0

:func:`train_from_config` builds the model with :func:`symwrap.wrap`, trains it with
:func:`symwrap.fit` and writes the run directory: ``save_pretrained`` (``symwrap_config.json``,
``model.safetensors``), the configuration (``train_config.yaml``, which also tells
:func:`load_trained` how to rebuild the backbone) and ``history.json``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import math
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ConfigError, MissingDependencyError, SaveError
from .strategies import SymmetricModel
from .training import History

__all__ = [
    "BackboneSpec",
    "CONFIG_COPY",
    "HISTORY_FILE",
    "OPTIMIZERS",
    "TrainConfig",
    "TrainRun",
    "TrainingSettings",
    "build_backbone",
    "check_device",
    "load_trained",
    "read_config",
    "train_from_config",
]

#: the copy of the configuration in a run directory
CONFIG_COPY = "train_config.yaml"
#: the training history in a run directory
HISTORY_FILE = "history.json"
#: optimizers ``training.optimizer`` may name
OPTIMIZERS: dict[str, str] = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop"}
_SCHEDULERS = (None, "cosine")
_BACKBONE_EXAMPLES = ("'timm:<model>', 'hf:<directory>', 'torchvision:<model>' or 'package.module:ClassName' "
                      "(e.g. 'symwrap.nn:EGNNDynamics')")


# --- checks --------------------------------------------------------------------------------------------
def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping (key: value lines); got {type(value).__name__} {value!r}")
    return dict(value)


def _check_keys(values: Mapping[str, Any], valid: list[str], where: str, required: tuple[str, ...] = ()) -> None:
    unknown = sorted(set(values) - set(valid))
    if unknown:
        hints = [f"{key!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(key, valid, 1))
                 else repr(key) for key in unknown]
        raise ConfigError(f"{where} has unknown key(s) {', '.join(hints)}; expected keys: {', '.join(valid)}")
    missing = [key for key in required if key not in values]
    if missing:
        raise ConfigError(f"{where} is missing the required key(s) {missing}; expected keys: {', '.join(valid)}")


def _typed(where: str, value: Any, kind: str, *, optional: bool = False, low: float | None = None,
           strict_low: bool = False) -> Any:
    """``value`` checked against ``kind`` (``"int"``, ``"float"``, ``"bool"``, ``"str"``)."""
    if value is None and optional:
        return None
    checks = {
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
        "bool": lambda v: isinstance(v, bool),
        "str": lambda v: isinstance(v, str) and bool(v.strip()),
    }
    names = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a non-empty string"}
    ok = checks[kind](value)
    if ok and low is not None:
        ok = value > low if strict_low else value >= low
    if not ok:
        bound = f" {'>' if strict_low else '>='} {low:g}" if low is not None else ""
        raise ConfigError(f"{where} must be {names[kind]}{bound}{' or null' if optional else ''}; got {value!r}")
    return float(value) if kind == "float" else value


# --- the configuration ------------------------------------------------------------------------------------
@dataclasses.dataclass
class BackboneSpec:
    """A module to build: a :func:`symwrap.load_backbone` spec or a ``package.module:ClassName``.

    Attributes:
        name: ``"timm:<model>"``, ``"hf:<directory>"``, ``"torchvision:<model>"`` or
            ``"package.module:ClassName"`` (any importable ``nn.Module`` class, e.g. ``"symwrap.nn:EGNN"``).
        kwargs: keyword arguments of the library's constructor or of the class.
        weights: a local state dict (file or directory) loaded into the module, or ``None``.
        strict: whether every weight must fit (see :func:`symwrap.load_backbone`).
        task: ``"hf:"`` only: ``"classification"`` or ``"base"``.
    """

    name: str
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    weights: str | None = None
    strict: bool = True
    task: str | None = None

    @classmethod
    def from_value(cls, value: Any, where: str) -> BackboneSpec:
        """From a string (the name) or a mapping with the fields."""
        if isinstance(value, str):
            value = {"name": value}
        values = _mapping(value, where)
        _check_keys(values, [f.name for f in dataclasses.fields(cls)], where, required=("name",))
        spec = cls(
            name=_typed(f"{where}.name", values["name"], "str"),
            kwargs=_mapping(values.get("kwargs") or {}, f"{where}.kwargs"),
            weights=_typed(f"{where}.weights", values.get("weights"), "str", optional=True),
            strict=_typed(f"{where}.strict", values.get("strict", True), "bool"),
            task=_typed(f"{where}.task", values.get("task"), "str", optional=True),
        )
        source, colon, rest = spec.name.partition(":")
        if not colon or not source or not rest:
            raise ConfigError(f"{where}.name must be {_BACKBONE_EXAMPLES}; got {spec.name!r}")
        return spec


@dataclasses.dataclass
class TrainingSettings:
    """The ``training:`` section.

    Attributes:
        epochs: epochs of the whole run (a resumed run trains the missing ones).
        lr: learning rate.
        optimizer: ``adam``, ``adamw``, ``sgd`` or ``rmsprop``.
        optimizer_kwargs: further arguments of the optimizer (``momentum``, ``betas``, ...).
        weight_decay: the optimizer's weight decay.
        scheduler: ``null`` or ``cosine`` (cosine decay over all steps of the run).
        seed: seeds the weights, the data split and the batch order.
        device: torch device to train on.
        grad_clip: clip the global gradient norm to this value (``null``: no clipping).
        max_steps: stop after this many optimizer steps (``null``: no limit).
        log_every: record the running losses every this many steps.
        checkpoint: ``true`` writes ``checkpoints/last.pt`` in the run directory after every epoch,
            a path writes it there, ``false`` writes none.
        resume: ``false``, ``true`` (continue from the checkpoint), ``auto`` (continue when one exists)
            or the path of a checkpoint.
        progress: show progress bars.
    """

    epochs: int = 1
    lr: float = 1e-3
    optimizer: str = "adam"
    optimizer_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    weight_decay: float = 0.0
    scheduler: str | None = None
    seed: int = 0
    device: str = "cpu"
    grad_clip: float | None = None
    max_steps: int | None = None
    log_every: int | None = 50
    checkpoint: bool | str = True
    resume: bool | str = False
    progress: bool = True

    @classmethod
    def from_value(cls, value: Any, where: str = "training") -> TrainingSettings:
        """From the ``training:`` mapping; the optimizer may be a name or ``{name: ..., **kwargs}``."""
        values = _mapping(value if value is not None else {}, where)
        _check_keys(values, [f.name for f in dataclasses.fields(cls)], where)
        optimizer = values.get("optimizer", "adam")
        optimizer_kwargs = _mapping(values.get("optimizer_kwargs") or {}, f"{where}.optimizer_kwargs")
        if isinstance(optimizer, Mapping):
            optimizer_kwargs = {**{k: v for k, v in optimizer.items() if k != "name"}, **optimizer_kwargs}
            optimizer = optimizer.get("name")
        if not isinstance(optimizer, str) or optimizer.lower() not in OPTIMIZERS:
            raise ConfigError(f"{where}.optimizer must be one of {sorted(OPTIMIZERS)} (or {{name: ..., kwarg: ...}}); "
                              f"got {optimizer!r}")
        scheduler = values.get("scheduler")
        if scheduler not in _SCHEDULERS:
            raise ConfigError(f"{where}.scheduler must be null or 'cosine'; got {scheduler!r}")
        checkpoint, resume = values.get("checkpoint", True), values.get("resume", False)
        if not isinstance(checkpoint, (bool, str)):
            raise ConfigError(f"{where}.checkpoint must be true, false or a directory; got {checkpoint!r}")
        if not isinstance(resume, (bool, str)):
            raise ConfigError(f"{where}.resume must be true, false, 'auto' or a checkpoint path; got {resume!r}")
        return cls(
            epochs=_typed(f"{where}.epochs", values.get("epochs", 1), "int", low=1),
            lr=_typed(f"{where}.lr", values.get("lr", 1e-3), "float", low=0, strict_low=True),
            optimizer=optimizer.lower(),
            optimizer_kwargs=optimizer_kwargs,
            weight_decay=_typed(f"{where}.weight_decay", values.get("weight_decay", 0.0), "float", low=0),
            scheduler=scheduler,
            seed=_typed(f"{where}.seed", values.get("seed", 0), "int", low=0),
            device=_typed(f"{where}.device", values.get("device", "cpu"), "str"),
            grad_clip=_typed(f"{where}.grad_clip", values.get("grad_clip"), "float", optional=True, low=0,
                             strict_low=True),
            max_steps=_typed(f"{where}.max_steps", values.get("max_steps"), "int", optional=True, low=1),
            log_every=_typed(f"{where}.log_every", values.get("log_every", 50), "int", optional=True, low=1),
            checkpoint=checkpoint,
            resume=resume,
            progress=_typed(f"{where}.progress", values.get("progress", True), "bool"),
        )


@dataclasses.dataclass
class TrainConfig:
    """A whole training configuration (see the module docstring for the YAML layout).

    Attributes:
        backbone: the backbone to wrap.
        data: the data set's name and options (``{"name": "mnist_digits", "n_train": 300}``).
        group: a group name, or a list / dict of them (strategies that train several at once).
        strategy: a registered strategy name.
        input, output: action specs (``None``: the data set's suggestion).
        strategy_config: fields of the strategy's config dataclass.
        modules: other modules the strategy takes (``teacher``, ``canonicalizer_network``), as backbones.
        training: the :class:`TrainingSettings`.
        source: the YAML file it was read from, if any.
    """

    backbone: BackboneSpec
    data: dict[str, Any]
    group: Any
    strategy: str
    input: Any = None
    output: Any = None
    strategy_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    modules: dict[str, BackboneSpec] = dataclasses.field(default_factory=dict)
    training: TrainingSettings = dataclasses.field(default_factory=TrainingSettings)
    source: Path | None = None

    KEYS = ("backbone", "data", "group", "strategy", "input", "output", "strategy_config", "modules", "training")
    REQUIRED = ("backbone", "data", "group", "strategy")

    @classmethod
    def from_dict(cls, values: Any, source: Path | None = None) -> TrainConfig:
        """Validate a parsed configuration; every error names the key and what was expected."""
        where = f"config {str(source)!r}" if source is not None else "config"
        values = _mapping(values, where)
        _check_keys(values, list(cls.KEYS), where, required=cls.REQUIRED)
        data = values["data"]
        data = _mapping({"name": data} if isinstance(data, str) else data, "data")
        if not isinstance(data.get("name"), str):
            from .data import list_datasets

            raise ConfigError(f"data.name must name a data set, one of {list_datasets()}; got {data.get('name')!r}")
        group = values["group"]
        if not (isinstance(group, (str, list)) or isinstance(group, Mapping)) or not group:
            raise ConfigError(f"group must be a group name (C4, SO3, ...), or a list or mapping of them; got {group!r}")
        modules = _mapping(values.get("modules") or {}, "modules")
        return cls(
            backbone=BackboneSpec.from_value(values["backbone"], "backbone"),
            data=data,
            group=group,
            strategy=_typed("strategy", values["strategy"], "str"),
            input=values.get("input"),
            output=values.get("output"),
            strategy_config=_mapping(values.get("strategy_config") or {}, "strategy_config"),
            modules={name: BackboneSpec.from_value(spec, f"modules.{name}") for name, spec in modules.items()},
            training=TrainingSettings.from_value(values.get("training")),
            source=source,
        )

    @property
    def data_name(self) -> str:
        """The registered name of the data set."""
        return self.data["name"]

    @property
    def data_options(self) -> dict[str, Any]:
        """The options of the data set (everything under ``data:`` but its name)."""
        return {key: value for key, value in self.data.items() if key != "name"}


def read_config(path: str | Path) -> TrainConfig:
    """Read and validate a YAML training configuration.

    Raises:
        ConfigError: the file is missing, is not valid YAML, or its content does not validate.
    """
    try:
        import yaml
    except ImportError as error:
        raise MissingDependencyError("pyyaml", "dev", "reading YAML configurations") from error
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ConfigError(f"configuration file {str(path)!r} {what}; expected a YAML file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read the configuration file {str(path)!r}: {error}") from error
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{str(path)!r} is not valid YAML: {_yaml_problem(error)}") from error
    if values is None:
        raise ConfigError(f"configuration file {str(path)!r} is empty; expected the keys {', '.join(TrainConfig.KEYS)} "
                          "(see examples/configs/)")
    return TrainConfig.from_dict(values, source=path)


def _yaml_problem(error: Exception) -> str:
    """A YAML error in one line: what is wrong and where (line and column, counted from 1)."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return " ".join(f"{problem}{where}{f' ({context})' if context else ''}".split())


# --- building -------------------------------------------------------------------------------------------
def _import_class(name: str, where: str) -> Any:
    module_name, _, attribute = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"{where}: cannot import module {module_name!r} ({error}); expected {_BACKBONE_EXAMPLES}") \
            from error
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            public = [n for n in dir(target) if not n.startswith("_") and isinstance(getattr(target, n, None), type)]
            close = difflib.get_close_matches(part, public, 3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; classes there: {', '.join(public[:20])}"
            raise ConfigError(f"{where}: {module_name!r} has no attribute {attribute!r}{hint}")
        target = getattr(target, part)
    return target


def build_backbone(spec: BackboneSpec, *, load_weights: bool = True, where: str = "backbone") -> nn.Module:
    """The module ``spec`` describes; ``load_weights=False`` skips the pretrained weights (and timm's /
    torchvision's ``pretrained=True``), for a model whose weights are about to be loaded anyway."""
    from .backbones import BACKBONE_SOURCES, load_backbone
    from .backbones import load_weights as load_state

    source = spec.name.partition(":")[0]
    kwargs = dict(spec.kwargs)
    if not load_weights:
        kwargs.pop("pretrained", None)
    if source in BACKBONE_SOURCES:
        return load_backbone(spec.name, weights=spec.weights if load_weights else None, strict=spec.strict,
                             task=spec.task, **kwargs)
    if spec.task is not None:
        raise ConfigError(f"{where}.task selects a Hugging Face head; {spec.name!r} takes none")
    factory = _import_class(spec.name, where)
    if not callable(factory):
        raise ConfigError(f"{where}: {spec.name!r} is a {type(factory).__name__}, not a class")
    try:
        module = factory(**kwargs)
    except TypeError as error:
        raise ConfigError(f"{where}: {spec.name}(**kwargs) failed: {error}; check {where}.kwargs") from error
    if not isinstance(module, nn.Module):
        raise ConfigError(f"{where}: {spec.name!r} built a {type(module).__name__}; expected a torch nn.Module")
    if load_weights and spec.weights is not None:
        load_state(module, spec.weights, strict=spec.strict, description=spec.name)
    return module


def _actions(config: TrainConfig, data: Any) -> tuple[Any, Any]:
    input_action = config.input if config.input is not None else data.input
    output_action = config.output if config.output is not None else data.output
    for key, value in (("input", input_action), ("output", output_action)):
        if value is None:
            raise ConfigError(f"data set {config.data_name!r} suggests no {key} action; add '{key}:' to the "
                              "configuration (an action name such as image, points, invariant, or a mapping of them)")
    return input_action, output_action


def _build_modules(config: TrainConfig, *, load_weights: bool) -> tuple[nn.Module, dict[str, nn.Module]]:
    """The backbone and the strategy's other modules of ``config``."""
    backbone = build_backbone(config.backbone, load_weights=load_weights)
    modules = {name: build_backbone(spec, load_weights=load_weights, where=f"modules.{name}")
               for name, spec in config.modules.items()}
    return backbone, modules


def _data(config: TrainConfig) -> Any:
    from .data import dataset_options, load_dataset

    options = config.data_options
    if "seed" in dataset_options(config.data_name) and "seed" not in options:
        options["seed"] = config.training.seed
    return load_dataset(config.data_name, **options)


def _optimizer(settings: TrainingSettings) -> Callable[[Any], torch.optim.Optimizer]:
    optimizer_class = getattr(torch.optim, OPTIMIZERS[settings.optimizer])

    def build(parameters: Any) -> torch.optim.Optimizer:
        try:
            return optimizer_class(parameters, lr=settings.lr, weight_decay=settings.weight_decay,
                                   **settings.optimizer_kwargs)
        except TypeError as error:
            raise ConfigError(f"training.optimizer {settings.optimizer!r}: {error}; check its keyword "
                              f"arguments {sorted(settings.optimizer_kwargs)}") from error

    return build


@dataclasses.dataclass
class TrainRun:
    """What :func:`train_from_config` returns: the trained model, its history and where it was written."""

    model: SymmetricModel
    history: History
    directory: Path


def train_from_config(
    config: TrainConfig | str | Path, output_dir: str | Path, *, progress: bool | None = None,
    overwrite: bool = False,
) -> TrainRun:
    """Train the model a configuration describes and write the run directory.

    Args:
        config: a :class:`TrainConfig` or the path of its YAML file.
        output_dir: the run directory: ``symwrap_config.json`` and ``model.safetensors``
            (``save_pretrained``), ``train_config.yaml`` (the configuration) and ``history.json``.
        progress: override ``training.progress``.
        overwrite: replace the model of a run directory that already holds one.

    Returns:
        the :class:`TrainRun`.

    Raises:
        SaveError: ``output_dir`` already holds a trained model and ``overwrite`` is false (checked before
            anything is built or trained).
    """
    if not isinstance(config, TrainConfig):
        config = read_config(config)
    settings = config.training
    directory = _run_folder(output_dir, overwrite)
    check_device(settings.device, "training.device")
    torch.manual_seed(settings.seed)
    backbone, modules = _build_modules(config, load_weights=True)  # before the data: a bad spec fails fast
    data = _data(config)
    input_action, output_action = _actions(config, data)
    from .wrap import wrap

    clash = sorted(set(config.strategy_config) & set(modules))
    if clash:
        raise ConfigError(f"{clash} appear both in strategy_config and in modules; give each in one of them")
    model = wrap(backbone, config.group, config.strategy, input_action, output_action, **config.strategy_config,
                 **modules)
    train_loader = data.loader("train")
    val_loader = data.loader("val") if data.val is not None else None

    scheduler = None
    if settings.scheduler == "cosine":
        total = settings.max_steps or settings.epochs * len(train_loader)
        scheduler = functools.partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=max(total, 1))
    checkpoint_dir = None
    if settings.checkpoint is True:
        checkpoint_dir = directory / "checkpoints"
    elif isinstance(settings.checkpoint, str):
        checkpoint_dir = Path(settings.checkpoint)
    from .training import fit

    history = fit(
        model, train_loader, val_loader,
        epochs=settings.epochs, optimizer=_optimizer(settings), scheduler=scheduler,
        checkpoint_dir=checkpoint_dir, resume=settings.resume, log_every=settings.log_every,
        progress=settings.progress if progress is None else progress, device=settings.device,
        max_steps=settings.max_steps, grad_clip=settings.grad_clip, overwrite=overwrite,
    )
    model.save_pretrained(directory, overwrite=overwrite)
    _write_config(config, directory / CONFIG_COPY)
    history.save(directory / HISTORY_FILE)
    return TrainRun(model, history, directory)


def _run_folder(output_dir: str | Path, overwrite: bool) -> Path:
    """The run directory, refused before training when it is a file or already holds a trained model."""
    from .saving import holds_model

    directory = Path(output_dir)
    if directory.exists() and not directory.is_dir():
        raise SaveError(f"the run folder {str(directory)!r} is a file; choose a folder for --output-dir")
    if holds_model(directory) and not overwrite:
        raise SaveError(f"the run folder {str(directory)!r} already holds a trained model; pass --overwrite "
                        "(overwrite=True) to replace it, or choose another --output-dir")
    return directory


def check_device(device: str | torch.device, where: str = "device") -> torch.device:
    """``device`` as a ``torch.device`` that exists on this machine.

    Raises:
        ConfigError: not a device name, or a CUDA/MPS device this machine does not have.
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ConfigError(f"{where} must be a torch device such as 'cpu', 'cuda' or 'cuda:1'; got {device!r}") \
            from error
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (resolved.index is not None and resolved.index >= count):
            raise ConfigError(f"{where} is {device!r} but this machine has {count} CUDA device(s); use 'cpu'"
                              + (f" or 'cuda:0'..'cuda:{count - 1}'" if count else ""))
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{where} is {device!r} but MPS is not available on this machine; use 'cpu'")
    if resolved.type == "meta":
        raise ConfigError(f"{where} is 'meta', which holds no data; use 'cpu' or a GPU")
    return resolved


def _write_config(config: TrainConfig, path: Path) -> None:
    """The YAML file as the user wrote it (comments kept), or a dump of ``config`` without a file."""
    if config.source is not None:
        if config.source.resolve() != path.resolve():
            shutil.copyfile(config.source, path)
        return
    import yaml

    values = {
        "backbone": dataclasses.asdict(config.backbone), "data": config.data, "group": config.group,
        "strategy": config.strategy, "input": config.input, "output": config.output,
        "strategy_config": config.strategy_config,
        "modules": {name: dataclasses.asdict(spec) for name, spec in config.modules.items()},
        "training": dataclasses.asdict(config.training),
    }
    path.write_text(yaml.safe_dump(values, sort_keys=False))


def load_trained(directory: str | Path, *, device: str | torch.device = "cpu") -> tuple[SymmetricModel, TrainConfig]:
    """The model a ``symwrap train`` run wrote to ``directory`` (in eval mode), and its configuration.

    The backbone (and any other module) is rebuilt from ``train_config.yaml`` without its pretrained
    weights, then :func:`symwrap.load` fills in the trained ones.

    Raises:
        ModelFileError: ``directory`` does not exist, or its saved model is missing, corrupt or incomplete.
        ConfigError: ``directory`` holds no (valid) ``train_config.yaml``.
    """
    from .errors import ModelFileError
    from .saving import CONFIG_FILE, holds_model, read_description
    from .wrap import load

    directory = Path(directory)
    if not directory.is_dir():
        what = "is a file" if directory.exists() else "does not exist"
        raise ModelFileError(f"the run folder {str(directory)!r} {what}; give the --output-dir of a 'symwrap train' "
                             "run")
    if not (directory / CONFIG_COPY).is_file():
        raise ConfigError(f"{str(directory)!r} has no {CONFIG_COPY}; expected a directory written by "
                          "'symwrap train CONFIG.yaml --output-dir DIR'")
    config = read_config(directory / CONFIG_COPY)
    if not holds_model(directory):
        raise ModelFileError(f"{str(directory)!r} has no {CONFIG_FILE}: the training run did not finish; train "
                             "again with 'symwrap train'")
    description = read_description(directory)
    backbone, modules = _build_modules(config, load_weights=False)
    model = load(directory, backbone, **modules)
    model.to(check_device(device)).eval()
    # the actions as saved: they were resolved from the data set when the YAML left them out
    config.input, config.output = description["input"], description["output"]
    return model, config
