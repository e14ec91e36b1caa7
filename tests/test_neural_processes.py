"""symwrap.nn.neural_processes: the 1-D ConvCNP (SetConv encoder, CNN on a grid, SetConv decoder)."""

import math

import pytest
import torch

from symwrap.data.gp import gaussian_nll
from symwrap.errors import ConfigError, ShapeError
from symwrap.nn import ConvCNP1d

B, NC, NT = 3, 6, 7


def task(batch: int = B, nc: int = NC, nt: int = NT, dtype: torch.dtype = torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    xc = torch.rand(batch, nc, 1, generator=g, dtype=dtype) * 4 - 2
    yc = torch.randn(batch, nc, 1, generator=g, dtype=dtype)
    xt = torch.rand(batch, nt, 1, generator=g, dtype=dtype) * 4 - 2
    return xc, yc, xt


def test_shapes_and_positive_std():
    torch.manual_seed(0)
    model = ConvCNP1d(hidden=8, layers=2, kernel_size=5)
    xc, yc, xt = task()
    mask = torch.ones(B, NC, dtype=torch.bool)
    mask[0, :3] = False
    mean, std = model(xc, yc, xt, mask)
    assert mean.shape == std.shape == (B, NT, 1)
    assert torch.isfinite(mean).all() and (std > 0).all()
    grid = model.grid(xc, xt)
    assert grid.ndim == 1
    assert grid.min() <= min(xc.min(), xt.min()) - 0.5 and grid.max() >= max(xc.max(), xt.max()) + 0.5
    k = grid * model.points_per_unit
    assert torch.allclose(k, k.round()) and torch.allclose(k.diff(), torch.ones(()))
    # context without any real point, and no targets
    mean, std = model(xc, yc, xt, torch.zeros(B, NC, dtype=torch.bool))
    assert torch.isfinite(mean).all() and (std > 0).all()
    mean, std = model(xc, yc, xt[:, :0])
    assert mean.shape == (B, 0, 1)


def test_pieces_compose_to_forward_and_hook_is_used():
    torch.manual_seed(1)
    model = ConvCNP1d(hidden=8, layers=2, kernel_size=5)
    xc, yc, xt = task()
    grid, features = model.encode(xc, yc, xt)
    assert features.shape == (B, model.grid_channels, grid.shape[0])
    mean, std = model.decode(grid, model.cnn(features), xt)
    ref_mean, ref_std = model(xc, yc, xt)
    torch.testing.assert_close(mean, ref_mean)
    torch.testing.assert_close(std, ref_std)

    class Shifted(ConvCNP1d):
        def grid_features(self, grid, features):
            return features + torch.sin(grid)

    other = Shifted(hidden=8, layers=2, kernel_size=5)
    other.load_state_dict(model.state_dict())
    assert not torch.allclose(other(xc, yc, xt)[0], ref_mean)


def test_masked_context_points_have_no_effect():
    torch.manual_seed(2)
    model = ConvCNP1d(hidden=8, layers=2, kernel_size=5).double()
    xc, yc, xt = task(dtype=torch.float64)
    mask = torch.rand(B, NC, generator=torch.Generator().manual_seed(3)) < 0.5
    mask[:, 0] = True
    mean, std = model(xc, yc, xt, mask)
    xc2, yc2 = xc.clone(), yc.clone()
    xc2[~mask] = 50.0  # far outside: must not widen the grid either
    yc2[~mask] = -7.0
    mean2, std2 = model(xc2, yc2, xt, mask)
    torch.testing.assert_close(mean2, mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(std2, std, rtol=0, atol=1e-12)
    # dropping the masked points altogether (one task) gives the same prediction
    keep = mask[0]
    alone = model(xc[:1, keep], yc[:1, keep], xt[:1])
    assert torch.allclose(model(xc[:1], yc[:1], xt[:1], mask[:1])[0], alone[0], atol=1e-12)


def test_exact_translation_equivariance_on_grid_shifts():
    torch.manual_seed(3)
    ppu = 16
    model = ConvCNP1d(hidden=8, layers=3, kernel_size=5, points_per_unit=ppu).double()
    xc, yc, xt = task(dtype=torch.float64, seed=4)
    mask = torch.ones(B, NC, dtype=torch.bool)
    mask[1, -2:] = False
    mean, std = model(xc, yc, xt, mask)
    shift = 3 / ppu
    assert model.grid(xc + shift, xt + shift).shape == model.grid(xc, xt).shape
    torch.testing.assert_close(model.grid(xc + shift, xt + shift), model.grid(xc, xt) + shift)
    mean_s, std_s = model(xc + shift, yc, xt + shift, mask)
    assert (mean_s - mean).abs().max() < 1e-5 and (std_s - std).abs().max() < 1e-5
    # an off-grid shift is only approximately equivariant, but not far off
    mean_o, _ = model(xc + 0.37 / ppu, yc, xt + 0.37 / ppu, mask)
    assert (mean_o - mean).abs().max() < 0.5


def sine_tasks(g: torch.Generator, batch: int, nc: int = 12, nt: int = 16):
    x = torch.rand(batch, nc + nt, 1, generator=g) * 4 - 2
    phase = torch.rand(batch, 1, 1, generator=g) * 2 * math.pi
    y = torch.sin(2 * x + phase) + 0.1 * torch.randn(x.shape, generator=g)
    mask = torch.rand(batch, nc, generator=g) < 0.8
    return x[:, :nc], y[:, :nc], x[:, nc:], y[:, nc:], mask


def held_out_nll_before_and_after(model, steps: int) -> tuple[float, float]:
    """Held-out NLL on 64 sine tasks before and after ``steps`` Adam steps (lr 3e-3) on batches of 8 fresh ones."""
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xc, yc, xt, yt, mask = sine_tasks(torch.Generator().manual_seed(123), batch=64)

    def held_out_nll() -> float:
        with torch.no_grad():
            return gaussian_nll(*model(xc, yc, xt, mask), yt).item()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: one thread is several times faster than two
    try:
        before = held_out_nll()
        g = torch.Generator().manual_seed(1)
        for _ in range(steps):
            bxc, byc, bxt, byt, bmask = sine_tasks(g, batch=8)
            loss = gaussian_nll(*model(bxc, byc, bxt, bmask), byt)
            opt.zero_grad()
            loss.backward()
            opt.step()
        after = held_out_nll()
    finally:
        torch.set_num_threads(threads)
    print(f"{type(model).__name__} held-out NLL before {before:.3f}, after {after:.3f}")
    return before, after


def test_training_lowers_nll():
    torch.manual_seed(0)
    before, after = held_out_nll_before_and_after(ConvCNP1d(hidden=16, layers=3, kernel_size=9, points_per_unit=8),
                                                  200)
    assert before > 0.9 and after < before - 0.8


def test_bad_shapes_and_configs():
    model = ConvCNP1d(hidden=4, layers=1, kernel_size=3)
    xc, yc, xt = task()
    with pytest.raises(ShapeError, match=r"x_context of shape \(B, Nc, 1\).*got shape \(3, 6\)"):
        model(xc[..., 0], yc, xt)
    with pytest.raises(ShapeError, match="y_context"):
        model(xc, yc[:, :-1], xt)
    with pytest.raises(ShapeError, match=r"x_target .*\(3, \?, 1\)"):
        model(xc, yc, xt[:2])
    with pytest.raises(ShapeError, match="x_target"):
        model(xc, yc, xt.expand(B, NT, 2))
    with pytest.raises(ShapeError, match="context_mask"):
        model(xc, yc, xt, torch.ones(B, NC + 1, dtype=torch.bool))
    with pytest.raises(ConfigError, match="odd kernel_size"):
        ConvCNP1d(kernel_size=4)
    with pytest.raises(ConfigError, match="points_per_unit"):
        ConvCNP1d(points_per_unit=0)
    with pytest.raises(ConfigError, match="init_lengthscale"):
        ConvCNP1d(init_lengthscale=-1.0)


# --- TransformerNP1d: the translation-equivariant transformer NP (TE-TNP) ---------------------------------------


def test_transformer_np_shapes_positive_std_and_empty_contexts():
    from symwrap.nn import TransformerNP1d

    torch.manual_seed(0)
    model = TransformerNP1d(hidden=16, layers=2, heads=4)
    xc, yc, xt = task()
    mask = torch.ones(B, NC, dtype=torch.bool)
    mask[0, :3] = False
    mean, std = model(xc, yc, xt, mask)
    assert mean.shape == std.shape == (B, NT, 1)
    assert torch.isfinite(mean).all() and (std >= 1e-3).all()
    # a task without any real context point: finite, and the prior of the constant target token (same everywhere)
    mask[1] = False
    mean, std = model(xc, yc, xt, mask)
    assert torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()
    assert torch.allclose(mean[1], mean[1, :1].expand(NT, 1)) and torch.allclose(std[1], std[1, :1].expand(NT, 1))
    mean, std = model(xc[:, :0], yc[:, :0], xt)  # no context at all
    assert torch.isfinite(mean).all() and (std > 0).all()
    assert torch.allclose(mean[1], model(xc, yc, xt, mask)[0][1])
    mean, std = model(xc, yc, xt[:, :0])
    assert mean.shape == std.shape == (B, 0, 1)
    with pytest.raises(ShapeError, match="y_context"):
        model(xc, yc[:, :-1], xt)
    with pytest.raises(ShapeError, match="context_mask"):
        model(xc, yc, xt, torch.ones(B, NC + 1, dtype=torch.bool))
    with pytest.raises(ConfigError, match="multiple of heads"):
        TransformerNP1d(hidden=10, heads=4)


def test_transformer_np_is_exactly_translation_equivariant_for_any_shift():
    from symwrap.nn import TransformerNP1d

    torch.manual_seed(1)
    model = TransformerNP1d(hidden=16, layers=2, heads=4).double()
    xc, yc, xt = task(dtype=torch.float64, seed=5)
    mask = torch.ones(B, NC, dtype=torch.bool)
    mask[2, -3:] = False
    mean, std = model(xc, yc, xt, mask)
    for shift in (1.234, -0.0173, 17.5):
        mean_s, std_s = model(xc + shift, yc, xt + shift, mask)
        assert (mean_s - mean).abs().max() < 1e-6 and (std_s - std).abs().max() < 1e-6
    # it does see the relative positions: moving the targets alone changes the prediction
    assert (model(xc, yc, xt + 0.5, mask)[0] - mean).abs().max() > 1e-3


def test_transformer_np_masked_context_points_have_no_effect():
    from symwrap.nn import TransformerNP1d

    torch.manual_seed(2)
    model = TransformerNP1d(hidden=16, layers=2, heads=4).double()
    xc, yc, xt = task(dtype=torch.float64)
    mask = torch.rand(B, NC, generator=torch.Generator().manual_seed(3)) < 0.5
    mask[:, 0] = True
    mean, std = model(xc, yc, xt, mask)
    xc2, yc2 = xc.clone(), yc.clone()
    xc2[~mask] = 50.0
    yc2[~mask] = -7.0
    mean2, std2 = model(xc2, yc2, xt, mask)
    torch.testing.assert_close(mean2, mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(std2, std, rtol=0, atol=1e-12)
    keep = mask[0]
    alone_mean, alone_std = model(xc[:1, keep], yc[:1, keep], xt[:1])
    torch.testing.assert_close(alone_mean, mean[:1], rtol=0, atol=1e-12)
    torch.testing.assert_close(alone_std, std[:1], rtol=0, atol=1e-12)


def test_transformer_np_training_lowers_nll():
    from symwrap.nn import TransformerNP1d

    torch.manual_seed(0)
    before, after = held_out_nll_before_and_after(TransformerNP1d(hidden=16, layers=2, heads=4), 300)
    assert before > 0.9 and after < before - 0.5


def test_transformer_np_with_fixed_inputs_in_its_context_tokens():
    import symwrap
    from symwrap.data import sample_gp_tasks
    from symwrap.nn import TaskDictNP, TransformerNP1d

    hidden = 16
    spec = {"input": {"x_context": "points", "y_context": "scalars", "x_target": "points", "context_mask": "scalars"},
            "output": {"mean": "scalars", "std": "scalars"}}
    torch.manual_seed(4)
    model = symwrap.wrap(TaskDictNP(TransformerNP1d(hidden=hidden, layers=2, heads=4)), group="T1",
                         strategy="fixed_inputs", inject="model.context_tokens_hook", channels=hidden,
                         task_loss="gaussian_nll", **spec).double().eval()
    tasks = sample_gp_tasks(4, generator=0, num_context=(3, 10), num_targets=12, dtype=torch.float64)
    x = {"x_context": tasks.x_context, "y_context": tasks.y_context, "x_target": tasks.x_target,
         "context_mask": tasks.context_mask.to(torch.float64)}
    out = model(x)
    assert out["mean"].shape == out["std"].shape == (4, 12, 1) and (out["std"] > 0).all()
    with torch.no_grad():
        for parameter in [*model.positions_net.parameters(), *model.projection.parameters()]:
            parameter.normal_(0, 0.5)
    with model.equivariant_component() as strict:
        exact = symwrap.metrics.equivariance_error(strict, x, "T1", **spec, generator=torch.Generator().manual_seed(0))
    relaxed = symwrap.metrics.equivariance_error(model, x, "T1", **spec, generator=torch.Generator().manual_seed(0))
    print(f"TransformerNP1d + fixed inputs: equivariance error {exact:.2e} (component), {relaxed:.2e} (randomised)")
    assert exact <= 1e-5 and relaxed > 1e-3
    assert model.equivariance_deviation(x) > 1e-3
