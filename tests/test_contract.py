"""The contract every strategy honours, checked for every registered strategy over every input kind it
accepts, in float32 and float64 (see docs/contract.md):

1. ``wrap()`` with default settings builds every network at once (parameters countable, savable);
2. ``forward`` gives one row per input, finite, in the output's layout;
3. ``loss(pred, target, x)`` has a finite scalar ``total`` whose gradient reaches the backbone;
4. ``save_pretrained`` before and after the first forward, and ``symwrap.load`` gives the same outputs bit
   for bit;
5. a model that promises exactness (``model.is_exact(x)``) passes ``symwrap.metrics.assert_equivariant`` at
   the round-off of its dtype, while the bare backbone does not.

A strategy registered later gets these tests for free; it may refuse an input kind, but only with a
``SymwrapError`` at ``wrap()``.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from contract_cases import KINDS, InputKind

import symwrap
from symwrap.errors import SymwrapError
from symwrap.metrics import assert_equivariant, equivariance_error
from symwrap.strategies import get_strategy

DTYPES = [torch.float32, torch.float64]

#: the input kinds each built-in strategy must accept (a strategy refusing one of these is a regression)
ACCEPTS = {
    "averaging": {"image", "points", "dict", "adjacency", "graph"},
    "frames": {"points", "dict"},
    "canonicalization": {"image", "points", "dict"},
    "symmetrization": {"image", "points", "dict", "adjacency", "graph"},
    "cloning": {"image", "points", "dict", "adjacency", "graph"},
    "remul": {"image", "points", "dict", "adjacency", "graph"},
    "relaxation": {"image", "points", "dict"},  # with the kinds' equivariant backbones
    "fixed_inputs": {"image", "points"},
}
#: the (strategy, kind) pairs that must promise exactness on the contract data
EXACT = {
    ("averaging", "image"), ("averaging", "adjacency"), ("averaging", "graph"),
    ("frames", "points"), ("frames", "dict"),
    ("canonicalization", "image"), ("canonicalization", "points"), ("canonicalization", "dict"),
}


def _installed(package: str | None) -> bool:
    import importlib.util

    return package is None or importlib.util.find_spec(package) is not None


def _hints(strategy: str, kind: InputKind) -> dict:
    fields = {field.name for field in dataclasses.fields(get_strategy(strategy).config_class)}
    return {key: value for key, value in kind.hints.items() if key in fields}


def _backbone(kind: InputKind, dtype: torch.dtype, seed: int, strategy: str | None = None) -> torch.nn.Module:
    torch.manual_seed(seed)
    if strategy is not None and get_strategy(strategy).takes_equivariant_backbone:
        if kind.equivariant_backbone is None:
            pytest.skip(f"{strategy} takes an equivariant backbone, which the {kind.name} kind has none of")
        if kind.equivariant_needs:
            pytest.importorskip(kind.equivariant_needs)
        return kind.equivariant_backbone().to(dtype)
    return kind.backbone().to(dtype)


def _wrap(strategy: str, kind: InputKind, dtype: torch.dtype, seed: int = 0) -> symwrap.SymmetricModel:
    if kind.needs:
        pytest.importorskip(kind.needs)
    backbone = _backbone(kind, dtype, seed, strategy)
    try:
        return symwrap.wrap(backbone, group=kind.group, strategy=strategy, input=kind.input,
                            output=kind.output, **_hints(strategy, kind))
    except SymwrapError as error:
        if kind.name in ACCEPTS.get(strategy, set()):
            raise
        pytest.skip(f"{strategy} refuses {kind.name} inputs: {error}")


def _seeded_forward(model: symwrap.SymmetricModel, x) -> torch.Tensor:
    torch.manual_seed(11)  # strategies that sample (averaging over infinite groups, symmetrization) draw alike
    with torch.no_grad():
        return model(x)


CASES = [pytest.param(strategy, kind, dtype, id=f"{strategy}-{kind.name}-{str(dtype)[6:]}")
         for strategy in symwrap.list_strategies() for kind in KINDS for dtype in DTYPES]


# --- the checks, as functions so that the tests below can show each of them failing -----------------------
def check_wrap_forward_and_loss(model: symwrap.SymmetricModel, kind: InputKind, dtype: torch.dtype) -> None:
    assert all(not isinstance(p, torch.nn.parameter.UninitializedParameter) for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) >= sum(p.numel() for p in model.backbone.parameters())
    assert all(p.dtype == dtype for p in model.parameters() if p.is_floating_point())
    x = kind.data(dtype)
    model.train()
    pred = model(x)
    assert model.output_action.batch_size(pred) == model.input_action.batch_size(x)
    assert bool(torch.isfinite(model.output_action.flatten(pred)).all())
    terms = model.loss(pred, kind.target(pred), x)
    assert "task" in terms and "total" in terms
    total = terms["total"]
    assert total.ndim == 0 and bool(torch.isfinite(total))
    assert float(total) == pytest.approx(float(sum(v for k, v in terms.items() if k != "total")), rel=1e-6)
    total.backward()
    gradients = [p.grad for p in model.backbone.parameters() if p.grad is not None]
    assert gradients and all(bool(torch.isfinite(g).all()) for g in gradients)
    assert sum(float(g.abs().sum()) for g in gradients) > 0


def check_save_and_load(model: symwrap.SymmetricModel, kind: InputKind, dtype: torch.dtype, folder) -> None:
    model.eval()
    x = kind.data(dtype)
    model.save_pretrained(folder / "before")
    expected = _seeded_forward(model, x)
    model.save_pretrained(folder / "after")
    for name in ("before", "after"):
        fresh = _backbone(kind, dtype, seed=1, strategy=model.config.strategy)
        assert any(not torch.equal(a, b) for a, b in zip(fresh.state_dict().values(),
                                                         model.backbone.state_dict().values()))
        loaded = symwrap.load(folder / name, fresh).eval()
        assert type(loaded) is type(model)
        assert loaded.config == model.config
        got = _seeded_forward(loaded, x)
        assert torch.equal(model.output_action.flatten(got), model.output_action.flatten(expected)), name


def check_promised_exactness(model: symwrap.SymmetricModel, kind: InputKind, dtype: torch.dtype) -> bool:
    """Whether ``model`` promised exactness on the kind's data; if it did, it must keep the promise."""
    model.eval()
    x = kind.data(dtype)
    if not model.is_exact(x):
        error = equivariance_error(model, x, kind.group, input=kind.input, output=kind.output)
        assert math.isfinite(error)
        return False
    result = assert_equivariant(model, x, kind.group, input=kind.input, output=kind.output)
    assert result["max"] <= result["tolerance"]
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(model.backbone, x, kind.group, input=kind.input, output=kind.output)
    return True


# --- every registered strategy x every input kind x float32/float64 ----------------------------------------
@pytest.mark.parametrize("strategy,kind,dtype", CASES)
def test_wrap_forward_and_loss(strategy, kind, dtype):
    check_wrap_forward_and_loss(_wrap(strategy, kind, dtype), kind, dtype)


@pytest.mark.parametrize("strategy,kind,dtype", CASES)
def test_save_and_load_are_bit_exact_before_and_after_the_first_forward(strategy, kind, dtype, tmp_path):
    check_save_and_load(_wrap(strategy, kind, dtype), kind, dtype, tmp_path)


@pytest.mark.parametrize("strategy,kind,dtype", CASES)
def test_promised_exactness_holds_to_round_off(strategy, kind, dtype):
    promised = check_promised_exactness(_wrap(strategy, kind, dtype), kind, dtype)
    if strategy in ACCEPTS:
        assert promised == ((strategy, kind.name) in EXACT)


def test_every_strategy_accepts_some_input_kind():
    for strategy in symwrap.list_strategies():
        accepted = []
        for kind in KINDS:
            if get_strategy(strategy).takes_equivariant_backbone:
                if kind.equivariant_backbone is None or not _installed(kind.equivariant_needs):
                    continue
                backbone = kind.equivariant_backbone()
            else:
                backbone = kind.backbone()
            try:
                symwrap.wrap(backbone, group=kind.group, strategy=strategy, input=kind.input,
                             output=kind.output, **_hints(strategy, kind))
                accepted.append(kind.name)
            except SymwrapError:
                continue
        assert accepted, f"{strategy} refuses every input kind of the contract suite"
        if strategy in ACCEPTS:
            assert set(accepted) >= ACCEPTS[strategy], strategy


# --- the checks catch strategies that break the contract ---------------------------------------------------
@dataclasses.dataclass
class _PlainConfig(symwrap.strategies.StrategyConfig):
    strategy = "contract_probe"


class _Plain(symwrap.SymmetricModel):
    config_class = _PlainConfig

    def forward(self, x):
        self._check_input(x)
        return self.run_backbone(x)


class _BrokenPromise(_Plain):
    """The bare backbone, claiming to be exact."""

    def is_exact(self, x):
        return True


class _LazyHelper(_Plain):
    """A helper network built lazily, at the first forward."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = torch.nn.LazyLinear(1)


class _UnsavedState(_Plain):
    """State outside the state dict that changes the outputs: a load cannot restore it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.offset = torch.randn(())

    def forward(self, x):
        return super().forward(x) + self.offset


@pytest.mark.parametrize("broken,check", [(_BrokenPromise, "exactness"), (_LazyHelper, "wrap"),
                                          (_UnsavedState, "save")])
def test_the_checks_fail_for_a_strategy_that_breaks_the_contract(broken, check, tmp_path):
    symwrap.register_strategy("contract_probe")(broken)
    kind = next(k for k in KINDS if k.name == "points")
    model = symwrap.wrap(_backbone(kind, torch.float32, 0), group=kind.group, strategy="contract_probe",
                         input=kind.input, output=kind.output)
    run = {"exactness": lambda: check_promised_exactness(model, kind, torch.float32),
           "wrap": lambda: check_wrap_forward_and_loss(model, kind, torch.float32),
           "save": lambda: check_save_and_load(model, kind, torch.float32, tmp_path)}[check]
    with pytest.raises((AssertionError, ValueError, RuntimeError)):
        run()
    symwrap.register_strategy("contract_probe", override=True)(_Plain)
    plain = symwrap.wrap(_backbone(kind, torch.float32, 0), group=kind.group, strategy="contract_probe",
                         input=kind.input, output=kind.output)
    check_wrap_forward_and_loss(plain, kind, torch.float32)
    check_save_and_load(plain, kind, torch.float32, tmp_path / "plain")
    assert not check_promised_exactness(plain, kind, torch.float32)
