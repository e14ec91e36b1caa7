"""A plain ``nn.Module`` out of a wrapped model: what runs without symwrap installed.

:func:`export` gives the user's backbone itself for strategies whose prediction is the backbone's (REMUL,
cloning), and otherwise a :class:`torch.fx.GraphModule` from :func:`torch.export.export` of the model in
evaluation mode: the strategy's copies, group actions and averaging traced into ``torch.ops.aten`` calls.
:func:`export_onnx` writes the same graph as ONNX (the ``onnx`` extra).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ExportError, MissingDependencyError
from .strategies.base import SymmetricModel

#: outputs of the exported module must match the wrapped model's to this relative tolerance (float round-off of
#: traced ops that run in another order, interpolated rotations taken for exact angles)
_RTOL = 1e-4
_ATOL = 1e-5


def export(model: SymmetricModel, example_input: Any, *, check: bool = True) -> nn.Module:
    """A plain ``nn.Module`` computing ``model``'s evaluation-mode function, with no symwrap import at run time.

    REMUL and cloning predict with the bare backbone: their export is the user's backbone module itself, shared
    with the model, not a copy (call ``.eval()`` on it for inference, as on any module); under a Hugging Face output
    adapter the whole model is traced, so that the export returns the logits tensor as the model does.
    Every other strategy is traced by :func:`torch.export.export` on ``example_input``: the result is a
    :class:`torch.fx.GraphModule` for inputs of the example's shapes (any batch size, unless the backbone fixes
    it), which :func:`torch.export.save` can store.

    Args:
        model: a model built by :func:`symwrap.wrap`; it is traced in evaluation mode and its mode restored.
        example_input: a batch like those the exported module will see (its shapes are fixed in the graph, but for
            the batch size).
        check: run both on ``example_input`` and raise if the outputs differ beyond float round-off.

    Raises:
        ExportError: the model's evaluation is sampled (Monte Carlo averaging, symmetrization with
            ``eval_sampling="random"``), which no fixed module reproduces, and the message says what to set;
            ``torch.export`` cannot trace the model on this input; or the exported outputs differ.
    """
    if not isinstance(model, SymmetricModel):
        raise ExportError(f"export takes a model built by symwrap.wrap (a SymmetricModel); got {type(model).__name__}")
    was_training = model.training
    model.eval()
    try:
        obstacle = model.export_obstacle(example_input)
        if obstacle is not None:
            raise ExportError(f"cannot export this {model.config.strategy!r} model as a fixed module: {obstacle}")
        with torch.no_grad():
            expected = model(example_input)
        module = _plain_backbone(model, example_input, expected) if model.predicts_with_backbone else None
        if module is None:
            module = _traced(model, example_input)
        if check:
            with torch.no_grad():
                _compare(module(example_input), expected, model.config.strategy)
        return module
    finally:
        model.train(was_training)


def export_onnx(model: SymmetricModel, example_input: torch.Tensor, path: str | Path, *, check: bool = True) -> Path:
    """Write ``model``'s evaluation-mode function as an ONNX file (through :func:`export` and
    ``torch.onnx.export(..., dynamo=True)``), for inputs of the example's shape; returns the path.

    Raises:
        MissingDependencyError: ``onnx``/``onnxscript`` are not installed (``pip install symwrap[onnx]``).
        ExportError: as :func:`export`, or the input is not one tensor (ONNX takes tensors).
    """
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise MissingDependencyError(f"ONNX export needs onnx and onnxscript ({error.name} is missing); install "
                                     "them with pip install 'symwrap[onnx]'") from error
    if not isinstance(example_input, torch.Tensor):
        raise ExportError(f"ONNX export takes one input tensor; got {type(example_input).__name__}. Export the "
                          "model with symwrap.export and call torch.onnx.export on it with your input's layout")
    module = export(model, example_input, check=check)
    path = Path(path)
    try:
        torch.onnx.export(module, (example_input,), str(path), dynamo=True, external_data=False)
    except Exception as error:  # the exporter's own errors are many types; name the model and the cause
        raise ExportError(f"torch.onnx.export failed on the exported {model.config.strategy!r} model: "
                          f"{_cause(error)}") from error
    return path


def _cause(error: Exception) -> str:
    """The line of the ONNX exporter's long report that names what failed (an operator without an ONNX function)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    named = [line for line in lines if "No ONNX function" in line or "Unsupported" in line]
    return (named or lines or [type(error).__name__])[0]


def _plain_backbone(model: SymmetricModel, x: Any, expected: Any) -> nn.Module | None:
    """The user's own module among the backbone and the model inside its output adapter that gives the model's
    outputs on ``x`` bit for bit and holds no symwrap module (``None``: none does, so trace instead)."""
    candidates = [model.backbone]
    inner = model.backbone._modules.get("model")  # an output adapter keeps the user's model here
    if isinstance(inner, nn.Module):
        candidates.insert(0, inner)
    for candidate in candidates:
        if _uses_symwrap(candidate):
            continue
        try:
            with torch.no_grad():
                output = candidate(x)
        except Exception:  # noqa: BLE001 - a model the adapter calls with other arguments (a PyG GNN): not it
            continue
        if _equal(output, expected):
            return candidate
    return None


def _uses_symwrap(module: nn.Module) -> bool:
    return any(type(m).__module__.split(".")[0] == "symwrap" for m in module.modules())


def _traced(model: SymmetricModel, x: Any) -> nn.Module:
    try:
        with _identity_hashing(model):
            program = torch.export.export(model, (x,), strict=False, dynamic_shapes=(_free_batch(x),))
    except Exception as error:  # torch.export raises many kinds; say which model and input failed and why
        raise ExportError(
            f"torch.export could not trace the {model.config.strategy!r} model on this input "
            f"({type(x).__name__}): {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}. "
            "Backbones and networks torch.export cannot trace (escnn modules, data-dependent Python control "
            "flow, non-tensor inputs such as PyG batches) cannot be exported"
        ) from error
    return program.module()


def _free_batch(x: Any) -> Any:
    """The first axis of every tensor of ``x`` left free in the graph where the model allows it (``Dim.AUTO``: the
    batch size; where a backbone fixes it, the graph keeps the example's)."""
    return torch.utils._pytree.tree_map(lambda leaf: {0: torch.export.Dim.AUTO} if isinstance(leaf, torch.Tensor)
                                        else None, x)


@contextlib.contextmanager
def _identity_hashing(model: nn.Module) -> Iterator[None]:
    """Hash the model's modules by identity while tracing. Some classes hash by their tensors' values (escnn's
    basis expansions), which ``torch.export`` cannot read from the fake tensors it traces with; a module's hash
    only serves to visit it once, which identity does as well."""
    classes = {type(m) for m in model.modules() if type(m).__hash__ is not nn.Module.__hash__}
    own = {cls: cls.__dict__.get("__hash__") for cls in classes}
    for cls in classes:
        cls.__hash__ = object.__hash__
    try:
        yield
    finally:
        for cls, method in own.items():
            if method is None:
                del cls.__hash__
            else:
                cls.__hash__ = method


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)


def _compare(got: Any, expected: Any, strategy: str) -> None:
    if isinstance(expected, Mapping):
        if not isinstance(got, Mapping) or got.keys() != expected.keys():
            raise ExportError(f"the exported {strategy!r} model returns {type(got).__name__}, not the model's "
                              f"dict with keys {sorted(expected)}")
        for key in expected:
            _compare(got[key], expected[key], strategy)
        return
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        raise ExportError(f"the exported {strategy!r} model returns {shape}; the model {tuple(expected.shape)}")
    if not torch.allclose(got, expected, rtol=_RTOL, atol=_ATOL):
        difference = float((got - expected).abs().max())
        raise ExportError(f"the exported {strategy!r} model differs from the model by up to {difference:.3g} on the "
                          f"example input (tolerance rtol={_RTOL}, atol={_ATOL}); please report it")
