"""Saved models on disk: what ``SymmetricModel.save_pretrained`` writes and :func:`symwrap.load` reads back.

A saved model is a folder with two files that belong together:

* ``symwrap_config.json``: the strategy, group, actions and config fields that rebuild the model around a
  backbone, the format version, the symwrap version, the backbone's class, and the size and SHA-256 of
  the weights file (so a config never silently pairs with the weights of another save);
* ``model.safetensors``: every tensor of the model's ``state_dict``, contiguous and un-shared; or, for a save
  with ``trainable_only=True`` (recorded in the config), only the tensors of :func:`trainable_keys`: the
  parameters that require gradients and the strategy's own modules, not the frozen backbone.

A save is atomic: both files are written into a temporary folder inside the target and moved into place
only once both are complete, so a save that fails part-way leaves a previous save untouched and no
temporary files behind. Reading checks every part and raises
:class:`~symwrap.errors.ModelFileError` (a file missing, empty, truncated, corrupt, or the two files from
different saves) or :class:`~symwrap.errors.WeightLoadingError` (weights that do not fit the model built
around the given backbone), each naming the file and what to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import struct
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ConfigError, DeviceError, ModelFileError, SaveError, SymwrapError, WeightLoadingError

__all__ = [
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "WEIGHTS_FILE",
    "apply_weights",
    "check_save_target",
    "describe_mismatches",
    "holds_model",
    "read_description",
    "read_weights",
    "save_model",
    "state_layout",
    "trainable_keys",
    "upgrade_config_fields",
]

CONFIG_FILE = "symwrap_config.json"
WEIGHTS_FILE = "model.safetensors"
#: version of the folder's layout; a save of a newer version is refused with a request to upgrade
FORMAT_VERSION = 1
#: the keys every ``symwrap_config.json`` has (older saves have exactly these)
REQUIRED_KEYS = ("strategy", "group", "input", "output", "config")
_STAGING_PREFIX = ".symwrap-save-"
_LISTED = 5  # key names shown per kind of mismatch


# --- saving -------------------------------------------------------------------------------------------------
def holds_model(directory: str | Path) -> bool:
    """Whether ``directory`` already holds a saved model (either of its two files)."""
    directory = Path(directory)
    return (directory / CONFIG_FILE).exists() or (directory / WEIGHTS_FILE).exists()


def check_save_target(directory: str | Path, overwrite: bool = False) -> Path:
    """``directory`` as a path a model may be saved to; raises :class:`SaveError` if it is a file, or holds a
    saved model and ``overwrite`` is false. Other files in it (a run's history) do not matter."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise SaveError(f"cannot save a model to {str(directory)!r}: it is a file, not a folder; choose a folder")
    if not overwrite and holds_model(directory):
        raise SaveError(
            f"{str(directory)!r} already holds a saved model ({CONFIG_FILE}, {WEIGHTS_FILE}); pass overwrite=True "
            "to replace it, or choose another folder"
        )
    return directory


def describe(model: nn.Module, trainable_only: bool = False) -> dict[str, Any]:
    """What ``symwrap_config.json`` holds besides the weights' fingerprint."""
    from . import __version__

    backbone = getattr(model, "backbone", None)
    description = {
        "format_version": FORMAT_VERSION,
        "symwrap_version": __version__,
        "strategy": model.config.strategy,
        "group": model.group_spec(),
        "input": model.input_action.spec(),
        "output": model.output_action.spec(),
        "config": model.config.to_dict(),
        "backbone": _class_name(backbone) if backbone is not None else None,
    }
    if trainable_only:  # the file holds trainable_keys() only: load() fills the rest from the backbone given
        description["trainable_only"] = True
        with training_mode(model):
            description["layout"] = state_layout(model.state_dict())
    return description


def state_layout(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The number of tensors of a ``state_dict`` and the SHA-256 of its names and shapes: what a
    ``trainable_only`` save records so that :func:`symwrap.load` can tell the model it fills is built the same
    way (the same base model, the same adapter) without holding the frozen tensors."""
    lines = "\n".join(f"{key}:{tuple(tensor.shape)}" for key, tensor in sorted(state.items()))
    return {"tensors": len(state), "sha256": hashlib.sha256(lines.encode()).hexdigest()}


def _class_name(module: Any) -> str:
    """The class of the user's backbone (under symwrap's adapter, if ``wrap`` put one around it)."""
    from .backbones.adapters import OutputAdapter, PyGAdapter

    target = module.model if isinstance(module, (OutputAdapter, PyGAdapter)) else module
    return f"{type(target).__module__}.{type(target).__qualname__}"


@contextlib.contextmanager
def training_mode(model: nn.Module) -> Iterator[None]:
    """``model`` in training mode for the duration, then every submodule back in its own mode.

    Weights are saved and loaded in training mode: some modules' ``state_dict`` depends on the mode (escnn's
    convolutions register their expanded filters as buffers in eval mode only), so one fixed mode makes the
    keys of a save independent of the mode the model was in.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.train(True)
    try:
        yield
    finally:
        restore_modes(modes)


def restore_modes(modes: list[tuple[nn.Module, bool]]) -> None:
    """Put each module back in its recorded mode. ``modes`` lists parents before children (``modules()``
    order): a parent's ``train()`` also sets its children, which are set again after it."""
    for module, training in modes:
        if module.training != training:
            module.train(training)


def trainable_keys(model: nn.Module) -> set[str]:
    """The ``state_dict`` keys (in the model's current mode) that a ``trainable_only`` save holds: every
    parameter that requires gradients, and every tensor that is not the backbone's (the strategy's own
    networks, trained or not, and their buffers). Left out: the frozen parameters and the buffers of the backbone,
    which a fresh backbone of the same base gives back."""
    state = model.state_dict(keep_vars=True)
    backbone = getattr(model, "backbone", None)
    frozen = {id(t) for t in backbone.state_dict(keep_vars=True).values()} if isinstance(backbone, nn.Module) \
        else set()
    return {key for key, tensor in state.items()
            if id(tensor) not in frozen or (isinstance(tensor, nn.Parameter) and tensor.requires_grad)}


def tensors_to_save(model: nn.Module, trainable_only: bool = False) -> dict[str, torch.Tensor]:
    """The ``state_dict`` (in training mode; only :func:`trainable_keys` with ``trainable_only``) as independent
    contiguous CPU tensors (safetensors refuses tensors that share memory and views that span non-contiguous
    memory, which escnn's buffers are)."""
    with training_mode(model):
        state = model.state_dict()
        if trainable_only:
            keys = trainable_keys(model)
            state = {key: tensor for key, tensor in state.items() if key in keys}
    if trainable_only and not state:
        raise SaveError(f"save_pretrained(trainable_only=True): {type(model).__name__} has no trainable tensor and "
                        "no module of its own; save everything with save_pretrained(directory)")
    tensors = {}
    for name, tensor in state.items():
        if nn.parameter.is_lazy(tensor):
            raise SaveError(
                f"cannot save {type(model).__name__}: {name!r} is an uninitialised lazy parameter; run one "
                "forward pass on a batch of real inputs first (it fixes the parameter's shape), then save"
            )
        if tensor.is_meta:
            raise SaveError(
                f"cannot save {type(model).__name__}: {name!r} is on the meta device and holds no values; "
                "load or initialise the weights (module.to_empty(device='cpu') and an init) before saving"
            )
        tensors[name] = tensor.detach().to("cpu", copy=True, memory_format=torch.contiguous_format)
    return tensors


def _fingerprint(data: bytes) -> dict[str, Any]:
    return {"file": WEIGHTS_FILE, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _serialise(model: nn.Module, trainable_only: bool = False) -> tuple[bytes, str]:
    """The weights file's bytes and the config file's text, built before anything touches the disk."""
    from safetensors.torch import save

    data = save(tensors_to_save(model, trainable_only), metadata={"format": "pt"})
    description = {**describe(model, trainable_only), "weights": _fingerprint(data)}
    try:
        text = json.dumps(description, indent=2)
    except (TypeError, ValueError) as error:
        raise SaveError(
            f"cannot save {type(model).__name__}: its description does not fit in JSON ({error}); config fields "
            "and action specs must be strings, numbers, booleans, lists or dicts of them"
        ) from error
    return data, text + "\n"


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def save_model(model: nn.Module, directory: str | Path, *, overwrite: bool = False, trainable_only: bool = False,
               safe_serialization: bool = True) -> Path:
    """Write ``model``'s config and weights to ``directory`` atomically (see the module docstring); with
    ``trainable_only``, only the tensors of :func:`trainable_keys`.

    Raises:
        SaveError: ``directory`` holds a saved model and ``overwrite`` is false, is a file, cannot be
            written; the model has lazy or meta parameters; its config does not fit in JSON;
            ``trainable_only`` and nothing is trainable; ``safe_serialization=False``.
    """
    if not safe_serialization:
        raise SaveError("symwrap saves weights as safetensors only; safe_serialization=False (pickled "
                        "pytorch_model.bin) is not supported: leave safe_serialization=True")
    directory = check_save_target(directory, overwrite)
    data, text = _serialise(model, trainable_only)
    created = not directory.exists()
    staging: Path | None = None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=directory))
        _write(staging / WEIGHTS_FILE, data)
        _write(staging / CONFIG_FILE, text.encode())
        # config first: if anything stops between the two moves, the new config's fingerprint refuses the
        # old weights on load (an old config without a fingerprint could not)
        os.replace(staging / CONFIG_FILE, directory / CONFIG_FILE)
        os.replace(staging / WEIGHTS_FILE, directory / WEIGHTS_FILE)
    except OSError as error:
        raise SaveError(f"could not save the model to {str(directory)!r}: {error}; check that the folder is "
                        "writable and the disk has space") from error
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if created and directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()  # a failed save into a new folder leaves no empty folder either
    return directory


# --- reading the config -------------------------------------------------------------------------------------
def _folder(directory: str | Path) -> Path:
    directory = Path(directory)
    if not directory.exists():
        raise ModelFileError(f"no saved model at {str(directory)!r}: the folder does not exist; give the folder "
                             "save_pretrained() wrote")
    if not directory.is_dir():
        raise ModelFileError(f"{str(directory)!r} is a file; give the folder save_pretrained() wrote (it holds "
                             f"{CONFIG_FILE} and {WEIGHTS_FILE})")
    return directory


def read_description(directory: str | Path) -> dict[str, Any]:
    """The parsed ``symwrap_config.json`` of ``directory``, with its required keys and format checked.

    Raises:
        ModelFileError: the folder or the file is missing, not JSON, not an object, lacks keys, or was
            written by a newer symwrap.
    """
    path = _folder(directory) / CONFIG_FILE
    if not path.is_file():
        found = " (it has the weights file: copy the config file of the same save beside it)" \
            if (path.parent / WEIGHTS_FILE).exists() else ""
        raise ModelFileError(f"{str(path.parent)!r} has no {CONFIG_FILE}{found}; expected a folder written by "
                             "save_pretrained()")
    try:
        description = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"{str(path)!r} is not valid JSON ({error}); the file is corrupt: save the model "
                             "again or restore the file") from error
    except OSError as error:
        raise ModelFileError(f"cannot read {str(path)!r}: {error}") from error
    if not isinstance(description, dict):
        raise ModelFileError(f"{str(path)!r} holds a JSON {type(description).__name__}; expected an object with "
                             f"the keys {list(REQUIRED_KEYS)}: the file is not a symwrap config")
    missing = [key for key in REQUIRED_KEYS if key not in description]
    if missing:
        raise ModelFileError(f"{str(path)!r} lacks the key(s) {missing}; expected {list(REQUIRED_KEYS)}: the file "
                             "is incomplete or not a symwrap config; save the model again")
    _check_format(description, path)
    return description


def _check_format(description: Mapping[str, Any], path: Path) -> None:
    version = description.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ModelFileError(f"{str(path)!r} has format_version {version!r}; expected an integer: the file is "
                             "corrupt")
    if version > FORMAT_VERSION:
        written = description.get("symwrap_version", "a newer version")
        raise ModelFileError(f"{str(path)!r} was written by symwrap {written} (format {version}); this symwrap "
                             f"reads formats up to {FORMAT_VERSION}: upgrade symwrap to load it")
    record = description.get("weights")
    if record is not None and not (isinstance(record, Mapping) and isinstance(record.get("bytes"), int)
                                   and isinstance(record.get("sha256"), str)):
        raise ModelFileError(f"{str(path)!r} has a malformed 'weights' record {record!r}; expected "
                             "{'bytes': int, 'sha256': str}: the file is corrupt; save the model again")


def rebuild_arguments(description: Mapping[str, Any], directory: str | Path) -> dict[str, Any]:
    """``wrap()``'s arguments (``strategy``, ``group``, ``input``, ``output``, ``config``) from a description,
    each resolved here so that an unknown name or an invalid field is blamed on the file."""
    from .actions import get_action
    from .groups import get_group
    from .strategies import get_strategy

    path = Path(directory) / CONFIG_FILE
    fix = "the file was edited, or the name was registered by code that is not imported now: import it first"
    try:
        strategy_class = get_strategy(description["strategy"])
        groups = description["group"]
        for name in groups if isinstance(groups, list) else [groups]:
            get_group(name)
        for key in ("input", "output"):
            get_action(description[key])
    except SymwrapError as error:
        raise ModelFileError(f"{str(path)!r}: {error} ({fix})") from error
    values = description["config"]
    if not isinstance(values, Mapping):
        raise ModelFileError(f"{str(path)!r}: 'config' is a {type(values).__name__}; expected an object of "
                             f"{strategy_class.config_class.__name__} fields: the file is corrupt")
    if values.get("strategy", description["strategy"]) != description["strategy"]:
        raise ModelFileError(f"{str(path)!r}: the config is for strategy {values['strategy']!r} but the model is "
                             f"{description['strategy']!r}: the file was edited; save the model again")
    try:
        config = strategy_class.config_class.from_dict(upgrade_config_fields(strategy_class.config_class, values))
    except SymwrapError as error:
        raise ModelFileError(f"{str(path)!r} has an invalid config: {error}") from error
    except TypeError as error:  # a value of the wrong kind that a config check did not expect
        raise ModelFileError(f"{str(path)!r} has an invalid config: {error}") from error
    return {"strategy": description["strategy"], "group": groups, "input": description["input"],
            "output": description["output"], "config": config}


def upgrade_config_fields(config_class: type, values: Mapping[str, Any], stacklevel: int = 3) -> dict[str, Any]:
    """``values`` (config fields by name) with the names a config no longer uses moved to their new names.

    A config class lists its renamed fields as ``renamed_fields = {old name: new name}``; an old name given
    (to ``wrap()``, in a YAML ``strategy_config``, in an older ``symwrap_config.json``) still works, with a
    :class:`DeprecationWarning`.

    Raises:
        ConfigError: both the old and the new name of a field are given.
    """
    values = dict(values)
    for old, new in getattr(config_class, "renamed_fields", {}).items():
        if old not in values:
            continue
        if new in values:
            raise ConfigError(f"{config_class.__name__} got both {old}= and {new}=; {old} is the deprecated name "
                              f"of {new}: give {new} only")
        warnings.warn(f"{config_class.__name__} field {old!r} is deprecated; use {new!r}", DeprecationWarning,
                      stacklevel=stacklevel)
        values[new] = values.pop(old)
    return values


# --- reading the weights ------------------------------------------------------------------------------------
def read_weights(directory: str | Path, description: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors of ``model.safetensors``, checked against the fingerprint the config records (saves
    written before the fingerprint existed are only parsed).

    Raises:
        ModelFileError: the file is missing, empty, truncated, corrupt, not safetensors, or from another save.
    """
    from safetensors.torch import load

    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise ModelFileError(f"{str(path.parent)!r} has {CONFIG_FILE} but no {WEIGHTS_FILE}: the save did not "
                             "finish or the file was not copied; copy the weights file of the same save beside it")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ModelFileError(f"cannot read {str(path)!r}: {error}") from error
    if not data:
        raise ModelFileError(f"{str(path)!r} is empty (0 bytes): the save did not finish or the copy failed; save "
                             "the model again or copy the file again")
    _check_fingerprint(data, description.get("weights"), path)
    try:
        tensors = load(data)
    except Exception as error:  # safetensors raises its own error types, and torch errors for bad dtypes
        raise ModelFileError(f"{str(path)!r} is not a valid safetensors file ({type(error).__name__}: {error}): it "
                             "is truncated, corrupt or of another format; save the model again") from error
    return _restore_aliases(tensors, _metadata(data))


def _check_fingerprint(data: bytes, record: Mapping[str, Any] | None, path: Path) -> None:
    if record is None:
        return
    pair = f"{CONFIG_FILE} and {WEIGHTS_FILE} of one save"
    if len(data) != record["bytes"]:
        raise ModelFileError(f"{str(path)!r} is {len(data)} bytes but {CONFIG_FILE} records {record['bytes']}: the "
                             f"file is truncated or comes from another save; copy both {pair}")
    if hashlib.sha256(data).hexdigest() != record["sha256"]:
        raise ModelFileError(f"{str(path)!r} does not match the SHA-256 recorded in {CONFIG_FILE}: the weights "
                             f"were modified or come from another save; copy both {pair}")


def _metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors header (already validated by the parser)."""
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    return header.get("__metadata__") or {}


def _restore_aliases(tensors: dict[str, torch.Tensor], metadata: Mapping[str, str]) -> dict[str, torch.Tensor]:
    """Saves written by ``safetensors.torch.save_model`` drop all but one name of tensors that share memory
    and record ``dropped name -> kept name`` in the metadata: give the dropped names back."""
    for dropped, kept in metadata.items():
        if dropped not in tensors and kept in tensors:
            tensors[dropped] = tensors[kept]
    return tensors


def apply_weights(model: nn.Module, tensors: Mapping[str, torch.Tensor], directory: str | Path,
                  description: Mapping[str, Any]) -> None:
    """Load ``tensors`` into ``model`` (bit for bit), after checking that they fit it.

    Raises:
        WeightLoadingError: keys missing, unexpected or of another shape; the message lists a few of each.
        DeviceError: the model has tensors on the meta device.
    """
    meta = [name for name, tensor in model.state_dict().items() if tensor.is_meta]
    if meta:
        raise DeviceError(f"the model built around the backbone has {len(meta)} tensor(s) on the meta device "
                          f"({', '.join(meta[:_LISTED])}); build the backbone on a real device (or call "
                          "backbone.to_empty(device='cpu')) before symwrap.load")
    file = str(Path(directory) / WEIGHTS_FILE)
    partial = bool(description.get("trainable_only"))
    modes = [(module, module.training) for module in model.modules()]
    try:
        problems = _fit_partial(model, tensors, description.get("layout")) if partial else _fit_mode(model, tensors)
        if problems:
            saved = description.get("backbone")
            given = _class_name(getattr(model, "backbone", model))
            around = f"The save was made around a {saved}, the backbone given is a {given}" if saved else \
                f"The backbone given is a {given}"
            hint = " (a trainable_only save: the same base model, made trainable the same way, e.g. the same " \
                "peft LoraConfig)" if partial else ""
            raise WeightLoadingError(
                f"the weights in {file!r} do not fit the model built around the backbone given: "
                f"{'; '.join(problems)}. {around}: build the backbone (and any module passed to symwrap.load) with "
                f"the same architecture and settings as when the model was saved{hint}"
            )
        try:
            model.load_state_dict(dict(tensors), strict=not partial)
        except RuntimeError as error:
            raise WeightLoadingError(f"the weights in {file!r} could not be copied into the model: {error}") \
                from error
    finally:
        restore_modes(modes)


def _fit_mode(model: nn.Module, tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """Put ``model`` in the mode whose ``state_dict`` keys and shapes ``tensors`` fit: training mode (how
    saves are written), or eval mode (saves of older versions, taken in whatever mode the model was in).
    Returns the mismatches in training mode when neither fits."""
    model.train(True)
    problems = describe_mismatches(model.state_dict(), tensors)
    if problems:
        model.train(False)
        if not describe_mismatches(model.state_dict(), tensors):
            return []
        model.train(True)
    return problems


def _fit_partial(model: nn.Module, tensors: Mapping[str, torch.Tensor], layout: Any) -> list[str]:
    """The mismatches of a ``trainable_only`` save against ``model`` (in training mode, as it was saved): the
    model must have the recorded :func:`state_layout` (the same tensors, frozen or not), and every tensor of the
    file must fit one of it. When the layout differs, the problems name the trainable tensors of ``model`` the file
    lacks and the file's tensors ``model`` lacks or shapes otherwise."""
    model.train(True)
    state = model.state_dict()
    problems = describe_mismatches({key: state[key] for key in tensors if key in state}, tensors)
    if isinstance(layout, Mapping) and state_layout(state) != dict(layout):
        keys = trainable_keys(model)
        problems = describe_mismatches({k: v for k, v in state.items() if k in keys or k in tensors}, tensors)
        problems.append(f"the model built has {len(state)} tensors and the saved one had {layout.get('tensors')} "
                        "(their names and shapes differ)")
    return problems


def describe_mismatches(expected: Mapping[str, torch.Tensor], tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """Phrases naming missing, unexpected and wrongly shaped keys, a few of each with their counts."""
    missing = [key for key in expected if key not in tensors]
    unexpected = sorted(key for key in tensors if key not in expected)
    shapes = [f"{key} {tuple(tensors[key].shape)} in the file, {tuple(expected[key].shape)} in the model"
              for key in expected if key in tensors and not nn.parameter.is_lazy(expected[key])
              and tensors[key].shape != expected[key].shape]
    problems = []
    for what, items in (("missing from the file", missing), ("unexpected (not in the model)", unexpected),
                        ("of another shape", shapes)):
        if items:
            more = f", and {len(items) - _LISTED} more" if len(items) > _LISTED else ""
            problems.append(f"{len(items)} key(s) {what}: {', '.join(items[:_LISTED])}{more}")
    return problems
