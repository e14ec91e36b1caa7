"""Fuzzing every public entry point: ``wrap`` with wild config values, wrapped models with wild inputs and
targets, the metrics, the registries, ``symwrap.load`` on corrupted files, ``fit`` on odd loaders and the
command line. Each call must give a correct result or raise a ``SymwrapError``; anything else (a raw torch
or Python exception, a NaN from finite data, a result with the wrong number of rows) fails the test.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from contract_cases import KINDS
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import symwrap
from symwrap.errors import SymwrapError
from symwrap.strategies import get_strategy

# sizes stay small: a config may legitimately ask for a huge network or many samples, and then runs out of memory
WILD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.integers(4, 40),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5),
    st.lists(st.integers(-2, 2), max_size=3), st.dictionaries(st.text(max_size=3), st.floats(-2, 2), max_size=2),
)
KIND_NAMES = [kind.name for kind in KINDS]
KIND = {kind.name: kind for kind in KINDS}
#: examples per test; ``SYMWRAP_FUZZ_EXAMPLES=1000 pytest tests/test_fuzz.py`` for a longer hunt
EXAMPLES = int(os.environ.get("SYMWRAP_FUZZ_EXAMPLES", "30"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None)


def _hints(strategy: str, kind) -> dict:
    fields = {field.name for field in dataclasses.fields(get_strategy(strategy).config_class)}
    return {key: value for key, value in kind.hints.items() if key in fields}


@functools.cache
def _model(strategy: str, kind_name: str) -> symwrap.SymmetricModel | None:
    """One wrapped model per (strategy, kind), ``None`` where the strategy refuses the kind."""
    kind = KIND[kind_name]
    if kind.needs:
        try:
            __import__(kind.needs)
        except ImportError:
            return None
    torch.manual_seed(0)
    try:
        return symwrap.wrap(kind.backbone(), group=kind.group, strategy=strategy, input=kind.input,
                            output=kind.output, **_hints(strategy, kind))
    except SymwrapError:
        return None


def _outcome(call):
    """``("ok", result)`` or ``("refused", error)`` for a SymwrapError; anything else propagates."""
    try:
        return "ok", call()
    except SymwrapError as error:
        assert str(error), "a SymwrapError must say what went wrong"
        return "refused", error


# --- wrap() with wild config values -------------------------------------------------------------------------
@SETTINGS
@given(strategy=st.sampled_from(symwrap.list_strategies()), kind_name=st.sampled_from(KIND_NAMES),
       data=st.data())
def test_wrap_with_wild_config_values(strategy, kind_name, data):
    kind = KIND[kind_name]
    if kind.needs:
        pytest.importorskip(kind.needs)
    fields = [f.name for f in dataclasses.fields(get_strategy(strategy).config_class)]
    name = data.draw(st.sampled_from(fields), label="field")
    value = data.draw(WILD_VALUES, label="value")
    kwargs = {**_hints(strategy, kind), name: value}
    status, model = _outcome(lambda: symwrap.wrap(kind.backbone(), group=kind.group, strategy=strategy,
                                                  input=kind.input, output=kind.output, **kwargs))
    if status == "refused":
        return
    status, pred = _outcome(lambda: model(kind.data(torch.float32)))
    if status == "ok":
        flat = model.output_action.flatten(pred)
        assert flat.shape[0] == model.input_action.batch_size(kind.data(torch.float32))


# --- wrapped models with wild inputs ---------------------------------------------------------------------------
TENSOR_DTYPES = [torch.float32, torch.float64, torch.float16, torch.int64, torch.bool, torch.complex64]


@st.composite
def wild_tensors(draw):
    shape = draw(st.lists(st.integers(0, 6), min_size=0, max_size=5))
    dtype = draw(st.sampled_from(TENSOR_DTYPES))
    tensor = torch.randn(*shape).to(dtype) if shape else torch.tensor(1.5).to(dtype)
    if torch.is_floating_point(tensor) and tensor.numel() and draw(st.booleans()):
        tensor.view(-1)[draw(st.integers(0, tensor.numel() - 1))] = draw(st.sampled_from([math.nan, math.inf]))
    if draw(st.booleans()) and tensor.numel():
        tensor = torch.zeros_like(tensor)  # degenerate: every point at the origin, an all-zero image
    return tensor


WILD_INPUTS = st.one_of(wild_tensors(), st.none(), st.integers(), st.lists(st.floats(), max_size=3),
                        st.dictionaries(st.sampled_from(["pos", "vel", "charge", "x"]), wild_tensors(), max_size=3))


@SETTINGS
@given(strategy=st.sampled_from(symwrap.list_strategies()), kind_name=st.sampled_from(KIND_NAMES),
       x=WILD_INPUTS, training=st.booleans())
def test_wrapped_models_with_wild_inputs(strategy, kind_name, x, training):
    model = _model(strategy, kind_name)
    assume(model is not None)
    model.train(training)
    status, pred = _outcome(lambda: model(x))
    if status == "ok":
        flat = model.output_action.flatten(pred)
        assert flat.shape[0] == model.input_action.batch_size(x)
        floating = [t for t in (x.values() if isinstance(x, dict) else [x]) if torch.is_floating_point(t)]
        if all(bool(torch.isfinite(t).all()) for t in floating):
            assert bool(torch.isfinite(flat).all()), "finite inputs gave a non-finite output"


@SETTINGS
@given(strategy=st.sampled_from(symwrap.list_strategies()), kind_name=st.sampled_from(KIND_NAMES),
       target=st.one_of(wild_tensors(), st.none(), st.integers(), st.text(max_size=2)))
def test_loss_with_wild_targets(strategy, kind_name, target):
    model = _model(strategy, kind_name)
    assume(model is not None)
    kind = KIND[kind_name]
    x = kind.data(torch.float32)
    model.train()
    pred = model(x)
    status, terms = _outcome(lambda: model.loss(pred, target, x))
    if status == "ok":
        assert terms["total"].ndim == 0


# --- metrics and registries -----------------------------------------------------------------------------------
GROUP_NAMES = ["C4", "D3", "SO2", "O2", "SO3", "O3", "E3", "SE3", "T3", "S", "S4", "SO3xS", "C0", "S0", "SO4", "",
               "c4", "E3xS", "S1"]


@SETTINGS
@given(kind_name=st.sampled_from(KIND_NAMES), group=st.sampled_from(GROUP_NAMES),
       output=st.sampled_from(["invariant", "vector", "points", "regular", "image", "scalars"]),
       n=st.one_of(st.none(), st.integers(-2, 20)), x=st.one_of(st.none(), wild_tensors()))
def test_metrics_with_wild_groups_outputs_and_inputs(kind_name, group, output, n, x):
    kind = KIND[kind_name]
    if kind.needs:
        pytest.importorskip(kind.needs)
    torch.manual_seed(0)
    backbone = kind.backbone().eval()
    data = kind.data(torch.float32) if x is None else x
    for metric in (symwrap.metrics.equivariance_error, symwrap.metrics.averaged_equivariance_error):
        status, value = _outcome(lambda metric=metric: metric(backbone, data, group, input=kind.input, output=output,
                                                              n=n))
        if status == "ok":
            assert math.isfinite(value) and value >= 0


@SETTINGS
@given(name=st.one_of(st.text(max_size=8), st.integers(), st.none(), st.sampled_from(GROUP_NAMES)))
def test_registry_lookups_with_wild_names(name):
    for lookup in (symwrap.get_group, symwrap.get_action, get_strategy):
        _outcome(lambda lookup=lookup: lookup(name))


# --- corrupted saves -------------------------------------------------------------------------------------------
@functools.cache
def _saved(strategy: str) -> tuple[Path, torch.Tensor]:
    model = _model(strategy, "points")
    folder = Path(tempfile.mkdtemp(prefix=f"symwrap-fuzz-{strategy}-"))
    model.eval().save_pretrained(folder / "model")
    torch.manual_seed(11)
    with torch.no_grad():
        expected = model(KIND["points"].data(torch.float32))
    return folder / "model", expected


@st.composite
def corruptions(draw):
    target = draw(st.sampled_from(["symwrap_config.json", "model.safetensors"]))
    how = draw(st.sampled_from(["truncate", "flip", "empty", "delete", "json"]))
    position = draw(st.floats(0, 1))
    payload = draw(st.one_of(st.none(), st.integers(), st.text(max_size=10), st.lists(st.integers(), max_size=2),
                             st.dictionaries(st.sampled_from(["strategy", "group", "input", "output", "config"]),
                                             st.one_of(st.text(max_size=6), st.integers(), st.none()), max_size=5)))
    return target, how, position, payload


@settings(max_examples=EXAMPLES + 10, deadline=None)
@given(strategy=st.sampled_from(symwrap.list_strategies()), corruption=corruptions())
def test_load_of_corrupted_files(strategy, corruption, tmp_path_factory):
    model = _model(strategy, "points")
    assume(model is not None)
    source, expected = _saved(strategy)
    folder = tmp_path_factory.mktemp("corrupt") / "model"
    shutil.copytree(source, folder)
    target, how, position, payload = corruption
    path = folder / target
    content = path.read_bytes()
    if how == "truncate":
        path.write_bytes(content[: int(position * len(content))])
    elif how == "flip":
        index = min(int(position * len(content)), len(content) - 1)
        path.write_bytes(content[:index] + bytes([content[index] ^ 0xFF]) + content[index + 1:])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "delete":
        path.unlink()
    else:
        path.write_text(json.dumps(payload))
    torch.manual_seed(0)
    status, loaded = _outcome(lambda: symwrap.load(folder, KIND["points"].backbone()))
    if status == "ok":  # a corruption that left the model intact (e.g. a flipped byte in JSON whitespace)
        torch.manual_seed(11)
        with torch.no_grad():
            assert torch.equal(loaded.eval()(KIND["points"].data(torch.float32)), expected)


# --- fit and the command line ------------------------------------------------------------------------------------
@SETTINGS
@given(loader=st.one_of(st.just([]), st.just([()]), st.just([(None, None)]), st.just([1, 2]),
                        st.just([(torch.randn(2, 6, 3), torch.randn(2, 3))] * 2),
                        st.just([(torch.randn(2, 6, 3), torch.randn(3, 3))]),
                        st.just([(torch.randn(2, 5, 3), torch.randn(2, 3))]),
                        st.just([(torch.randn(2, 6, 3), None)])),
       epochs=st.one_of(st.integers(-1, 2), st.floats(0, 2), st.text(max_size=2)))
def test_fit_with_odd_loaders_and_settings(loader, epochs):
    kind = KIND["points"]
    model = symwrap.wrap(kind.backbone(), group=kind.group, strategy="remul", input=kind.input, output=kind.output)
    status, _ = _outcome(lambda: symwrap.fit(model, loader, epochs=epochs, progress=False))
    assert status in ("ok", "refused")


# no word names a benchmark, and "demo" is left out: both would train for many seconds (test_cli runs them)
CLI_WORDS = ["train", "eval", "bench", "groups", "--quick", "--debug", "--data", "nope", "/nonexistent",
             "--output-dir", "--angles", "-3", "x.yaml", "--split", "val", "--max-elements", "0", "--strategy"]


@settings(max_examples=EXAMPLES + 10, deadline=None)
@given(argv=st.lists(st.sampled_from(CLI_WORDS), max_size=4))
def test_command_line_never_ends_in_a_traceback(argv):
    from symwrap.cli import main

    assume("--debug" not in argv)  # --debug re-raises on purpose
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    except SystemExit as exit_:  # argparse usage errors
        assert exit_.code == 2
        return
    if code != 0:
        lines = [line for line in err.getvalue().strip().splitlines() if line]
        assert len(lines) == 1 and lines[0].startswith("symwrap"), err.getvalue()
        assert "Traceback" not in err.getvalue()
