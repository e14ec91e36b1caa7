"""``symwrap.export``: a plain module computing the wrapped model's evaluation-mode function, with no symwrap import at
run time — the backbone itself for REMUL and cloning, a ``torch.export`` graph otherwise; exact strategies stay exact;
sampled evaluations and inputs ``torch.export`` cannot take are refused with an ``ExportError``."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap

import pytest
import torch
from contract_cases import KINDS, TinyCNN

import symwrap
from symwrap.errors import ExportError, SymwrapError
from symwrap.metrics import equivariance_error
from symwrap.strategies import get_strategy

BY_NAME = {kind.name: kind for kind in KINDS}
#: what every strategy exports, by input kind (the contract kinds it accepts; PyG graphs cannot be traced)
EXPORTS = {
    "averaging": ["image", "adjacency"],
    "frames": ["points", "dict"],
    "canonicalization": ["image", "points", "dict"],
    "symmetrization": ["image", "points", "dict", "adjacency"],
    "remul": ["image", "points", "dict", "adjacency"],
    "cloning": ["image", "points", "dict", "adjacency"],
    "relaxation": ["image", "points", "dict"],
    "fixed_inputs": ["image", "points"],
}
#: (strategy, kind) pairs that are exact: their exported modules must be too
EXACT = {("averaging", "image"), ("averaging", "adjacency"), ("frames", "points"), ("frames", "dict"),
         ("canonicalization", "image"), ("canonicalization", "points"), ("canonicalization", "dict")}
#: settings an exported strategy needs: symmetrization evaluates its most likely element, not a sample
SETTINGS = {"symmetrization": {"eval_sampling": "mode", "num_samples_eval": 1}}


def _wrap(strategy: str, kind_name: str, dtype: torch.dtype = torch.float32, **settings) -> symwrap.SymmetricModel:
    kind = BY_NAME[kind_name]
    torch.manual_seed(0)
    if get_strategy(strategy).takes_equivariant_backbone:
        if kind.equivariant_needs:
            pytest.importorskip(kind.equivariant_needs)
        backbone = kind.equivariant_backbone()
    else:
        backbone = kind.backbone()
    fields = {field.name for field in dataclasses.fields(get_strategy(strategy).config_class)}
    hints = {key: value for key, value in kind.hints.items() if key in fields}
    return symwrap.wrap(backbone.to(dtype), group=kind.group, strategy=strategy, input=kind.input,
                        output=kind.output, **hints, **{**SETTINGS.get(strategy, {}), **settings})


def _flat(y) -> torch.Tensor:
    if isinstance(y, dict):
        return torch.cat([_flat(y[key]) for key in sorted(y)], dim=-1)
    return y.reshape(y.shape[0], -1)


def _twice(x):
    """The batch followed by itself, reversed: another batch size, rows in another order."""
    if isinstance(x, dict):
        return {key: _twice(value) for key, value in x.items()}
    return torch.cat([x, x.flip(0)])


def _uses_symwrap(module: torch.nn.Module) -> bool:
    return any(type(m).__module__.startswith("symwrap") for m in module.modules())


CASES = [pytest.param(strategy, kind, id=f"{strategy}-{kind}") for strategy, kinds in EXPORTS.items()
         for kind in kinds]


@pytest.mark.parametrize(("strategy", "kind_name"), CASES)
def test_exported_module_computes_the_models_function_without_symwrap(strategy, kind_name):
    model = _wrap(strategy, kind_name).train()  # export evaluates in eval mode and gives the mode back
    x = BY_NAME[kind_name].data(torch.float32)
    exported = model.export(x)
    assert model.training
    assert isinstance(exported, torch.nn.Module) and not _uses_symwrap(exported)
    model.eval()
    with torch.no_grad():
        expected, got = model(x), exported(x)
    torch.testing.assert_close(_flat(got), _flat(expected), rtol=1e-4, atol=1e-5)
    if isinstance(exported, torch.fx.GraphModule):
        assert "symwrap" not in exported.code
        bigger = _twice(x)  # the graph leaves the batch size free
        with torch.no_grad():
            torch.testing.assert_close(_flat(exported(bigger)), _flat(model(bigger)), rtol=1e-4, atol=1e-5)
    if (strategy, kind_name) in EXACT:
        kind = BY_NAME[kind_name]
        with torch.no_grad():
            error = equivariance_error(exported, x, kind.group, input=kind.input, output=kind.output,
                                       generator=torch.Generator().manual_seed(0))
        assert error <= 1e-5, f"exported {strategy} on {kind_name}: equivariance error {error:.2e}"


def test_an_exact_model_whose_exported_copy_breaks_exactness_is_caught():
    """The exactness check above can fail: the plain backbone is far from equivariant on the same data."""
    kind = BY_NAME["image"]
    x = kind.data(torch.float32)
    with torch.no_grad():
        error = equivariance_error(_wrap("remul", "image").export(x), x, kind.group, input=kind.input,
                                   output=kind.output)
    assert error > 1e-3


@pytest.mark.parametrize("strategy", ["remul", "cloning"])
def test_remul_and_cloning_give_the_users_backbone_itself(strategy):
    model = _wrap(strategy, "image")
    assert model.export(BY_NAME["image"].data(torch.float32)) is model.backbone
    assert type(model.backbone) is TinyCNN


def test_symwrap_export_is_the_method():
    model = _wrap("averaging", "image")
    x = BY_NAME["image"].data(torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(symwrap.export(model, x)(x), model.export(x)(x))


def test_an_interpolated_group_exports_too():
    """C8 rotates images by 45°: the traced action interpolates every element (eager mode moves the quarter turns'
    whole pixels), which agrees with eager mode to interpolation round-off."""
    torch.manual_seed(0)
    model = symwrap.wrap(TinyCNN(), group="C8", strategy="averaging", input="image", output="invariant").eval()
    x = BY_NAME["image"].data(torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(model.export(x)(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_exported_program_runs_in_a_process_that_cannot_import_symwrap(tmp_path):
    model = _wrap("canonicalization", "image").eval()
    x = BY_NAME["image"].data(torch.float32)
    program = torch.export.export(model.export(x), (x,))
    torch.export.save(program, tmp_path / "model.pt2")
    with torch.no_grad():
        torch.save({"x": x, "y": model(x)}, tmp_path / "io.pt")
    script = textwrap.dedent(f"""
        import sys
        sys.modules["symwrap"] = None  # any import of symwrap fails
        import torch
        program = torch.export.load({str(tmp_path / "model.pt2")!r})
        io = torch.load({str(tmp_path / "io.pt")!r})
        torch.testing.assert_close(program.module()(io["x"]), io["y"], rtol=1e-4, atol=1e-5)
        assert not any(name == "symwrap" or name.startswith("symwrap.") for name in sys.modules if sys.modules[name])
        print("ran without symwrap")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ran without symwrap" in result.stdout


def test_monte_carlo_averaging_is_refused_with_what_to_use():
    model = _wrap("averaging", "points")
    with pytest.raises(ExportError, match="Haar-sampled.*strategy='frames'"):
        model.export(BY_NAME["points"].data(torch.float32))


def test_sampled_symmetrization_is_refused_with_what_to_set():
    model = _wrap("symmetrization", "points", eval_sampling="random", num_samples_eval=4)
    with pytest.raises(ExportError, match="eval_sampling='mode', num_samples_eval=1"):
        model.export(BY_NAME["points"].data(torch.float32))


def test_an_input_torch_export_cannot_take_is_refused():
    pytest.importorskip("torch_geometric")
    model = _wrap("averaging", "graph")
    with pytest.raises(ExportError, match="torch.export could not trace the 'averaging' model.*DataBatch"):
        model.export(BY_NAME["graph"].data(torch.float32))


def test_only_wrapped_models_export():
    with pytest.raises(SymwrapError, match=r"a SymmetricModel\); got TinyCNN"):
        symwrap.export(TinyCNN(), torch.zeros(1, 1, 8, 8))


def test_torch_export_traces_the_wrapped_model_directly():
    """No data-dependent branch is left on the forward path: the input checks and the image action's choice of
    whole-pixel moves are made without reading tensor values while tracing."""
    model = _wrap("averaging", "image").eval()
    x = BY_NAME["image"].data(torch.float32)
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x), rtol=1e-5, atol=1e-6)


def test_validation_still_runs_in_eager_mode():
    model = _wrap("averaging", "image").eval()
    x = BY_NAME["image"].data(torch.float32)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(SymwrapError, match="NaN"):
        model(x)


@pytest.mark.slow
def test_a_hugging_face_backbone_exports_to_its_logits():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=64, num_labels=4)
    vit = transformers.ViTForImageClassification(config)
    model = symwrap.wrap(vit, group="C4", strategy="remul", input="image", output="invariant").eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    exported = model.export(x)
    assert not _uses_symwrap(exported)
    with torch.no_grad():
        torch.testing.assert_close(exported(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("strategy", ["averaging", "canonicalization"])
def test_onnx_export_runs_in_onnxruntime(strategy, tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    model = _wrap(strategy, "image").eval()
    x = BY_NAME["image"].data(torch.float32)
    path = symwrap.export_onnx(model, x, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path))
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), model(x), rtol=1e-4, atol=1e-5)


def test_onnx_export_says_what_it_cannot_convert(tmp_path):
    pytest.importorskip("onnxscript")
    model = _wrap("frames", "points")
    with pytest.raises(ExportError, match="eigh"):
        symwrap.export_onnx(model, BY_NAME["points"].data(torch.float32), tmp_path / "model.onnx")
