"""Resuming :func:`symwrap.compare`: each finished row is kept as ``rows/<method>.json`` in the output folder,
with the settings it was trained with. A later run reads a stored row back instead of training it when every
setting is the same, and retrains it (saying which settings differ) when any is not."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError

__all__ = ["RowStore", "data_digest", "loader_size", "plain"]


def data_digest(value: Any) -> str:
    """A short SHA-1 of every tensor (dtype, shape, bytes) in ``value``: tensors, mappings, sequences, and objects
    with ``to_dict()`` (torch_geometric batches) or ``state_dict()`` (modules)."""
    digest = hashlib.sha1()
    _update(digest, value)
    return digest.hexdigest()[:16]


def _update(digest: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    elif isinstance(value, Mapping):
        for key in sorted(value, key=str):
            digest.update(str(key).encode())
            _update(digest, value[key])
    elif isinstance(value, (list, tuple)):
        for item in value:
            _update(digest, item)
    elif isinstance(value, nn.Module):
        _update(digest, value.state_dict())
    elif callable(getattr(value, "to_dict", None)):
        _update(digest, value.to_dict())
    else:
        digest.update(repr(value).encode())


def loader_size(loader: Iterable[Any]) -> dict[str, int | None]:
    """The samples and batches a loader has, where it tells (``len(loader.dataset)``, ``len(loader)``)."""
    dataset = getattr(loader, "dataset", None)
    try:
        samples = len(dataset) if dataset is not None else None
    except TypeError:
        samples = None
    try:
        batches = len(loader)  # type: ignore[arg-type]
    except TypeError:
        batches = None
    return {"samples": samples, "batches": batches, "batch_size": getattr(loader, "batch_size", None)}


def plain(value: Any) -> Any:
    """``value`` as JSON values (modules by their class and weight digest, other objects by ``repr``), so that
    settings compare equal after a round trip through a file."""
    if isinstance(value, nn.Module):
        return f"{type(value).__name__}(weights {data_digest(value)})"
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


class RowStore:
    """The ``rows/`` folder of an output directory."""

    def __init__(self, directory: str | Path) -> None:
        self.folder = Path(directory) / "rows"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(f"the compare output folder {str(directory)!r} cannot be created "
                              f"({error.strerror or error}); choose another output_dir") from error

    def path(self, method: str) -> Path:
        return self.folder / (re.sub(r"[^A-Za-z0-9_.-]+", "_", method).strip("_") + ".json")

    def load(self, method: str, settings: dict[str, Any], *, force: bool) -> dict[str, Any] | None:
        """The stored row of ``method`` if it was trained with ``settings``; ``None`` (after saying why on
        stderr) when there is none, ``force`` is set or a setting differs."""
        path = self.path(method)
        if not path.is_file():
            return None
        if force:
            print(f"{method}: retraining (force), replacing {path}", file=sys.stderr)
            return None
        try:
            stored = json.loads(path.read_text())
            stored_settings, row = stored["settings"], stored["row"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            print(f"{method}: {path} cannot be read back ({error}); retraining", file=sys.stderr)
            return None
        wanted = plain(settings)
        differ = sorted(key for key in set(wanted) | set(stored_settings)
                        if wanted.get(key) != stored_settings.get(key))
        if differ:
            shown = "; ".join(f"{key}: stored {stored_settings.get(key)!r}, now {wanted.get(key)!r}" for key in differ)
            print(f"{method}: the stored row was trained with other settings ({shown}); retraining", file=sys.stderr)
            return None
        print(f"{method}: read from {path}, not retrained (force=True / --force retrains it)", file=sys.stderr)
        return row

    def save(self, method: str, settings: dict[str, Any], row: dict[str, Any]) -> Path:
        path = self.path(method)
        path.write_text(json.dumps({"settings": plain(settings), "row": row}, indent=2) + "\n")
        return path
