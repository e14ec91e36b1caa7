"""Synthetic 1-D GP regression tasks with the switching Gibbs kernel (Ashman et al., 2024): layout,
determinism, the kernel, the exact posterior, the Gaussian NLL, shifts and argument errors."""

import math

import pytest
import torch

from symwrap.data import (
    CHANGEPOINTS,
    GP_JITTER,
    LONG_LENGTHSCALE,
    SHORT_LENGTHSCALE,
    GPTasks,
    gaussian_nll,
    gibbs_kernel,
    gp_log_likelihood,
    gp_posterior,
    sample_gp_tasks,
    switching_lengthscale,
)
from symwrap.errors import ConfigError, InputDtypeError, ShapeError, SymwrapError

SMALL = {"num_context": (3, 10), "num_targets": 20}


def test_shapes_masks_ranges_and_dtypes():
    tasks = sample_gp_tasks(16, generator=0, **SMALL)
    assert len(tasks) == 16
    assert tasks.x_context.shape == tasks.y_context.shape == (16, 10, 1)
    assert tasks.x_target.shape == tasks.y_target.shape == (16, 20, 1)
    assert tasks.context_mask.shape == (16, 10) and tasks.context_mask.dtype == torch.bool
    assert tasks.changepoint.shape == tasks.long_left.shape == (16,) and tasks.long_left.dtype == torch.bool
    assert all(t.dtype == torch.float32 for t in (tasks.x_context, tasks.y_context, tasks.x_target, tasks.y_target))
    counts = tasks.num_context
    assert counts.min() >= 3 and counts.max() <= 10 and len(counts.unique()) > 1
    torch.testing.assert_close(tasks.context_mask, torch.arange(10) < counts[:, None])  # real points first
    padded = ~tasks.context_mask
    assert (tasks.x_context[padded] == 0).all() and (tasks.y_context[padded] == 0).all()
    real = tasks.x_context[tasks.context_mask]
    assert real.min() >= -2 and real.max() <= 2
    assert tasks.x_target.min() >= -4 and tasks.x_target.max() <= 4 and tasks.x_target.abs().max() > 2
    assert set(tasks.changepoint.tolist()) <= set(CHANGEPOINTS) and tasks.noise == 0.1
    assert tasks.y_target.isfinite().all() and tasks.y_target.std() > 0.1

    fixed = sample_gp_tasks(4, generator=1, num_context=7, num_targets=5, dtype=torch.float64)
    assert fixed.context_mask.all() and fixed.x_context.shape == (4, 7, 1) and fixed.y_target.dtype == torch.float64
    empty = sample_gp_tasks(3, generator=1, num_context=0, num_targets=5)
    assert empty.x_context.shape == (3, 0, 1) and (empty.num_context == 0).all()


def test_changepoints_and_directions_are_all_drawn():
    tasks = sample_gp_tasks(200, generator=3, num_context=1, num_targets=1)
    assert set(tasks.changepoint.tolist()) == set(CHANGEPOINTS)
    assert 0 < tasks.long_left.sum() < 200


def test_the_same_seed_gives_the_same_tasks():
    a = sample_gp_tasks(8, generator=5, **SMALL)
    b = sample_gp_tasks(8, generator=torch.Generator().manual_seed(5), **SMALL)
    c = sample_gp_tasks(8, generator=6, **SMALL)
    for name in ("x_context", "y_context", "x_target", "y_target", "context_mask", "changepoint", "long_left"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.y_target, c.y_target)


def test_indexing_and_to():
    tasks = sample_gp_tasks(5, generator=0, **SMALL)
    one = tasks[2]
    assert len(one) == 1 and torch.equal(one.y_target[0], tasks.y_target[2]) and one.noise == tasks.noise
    assert len(tasks[1:4]) == 3 and len(tasks[torch.tensor([0, 4])]) == 2
    with pytest.raises(IndexError):
        tasks[5]
    doubled = tasks.to(dtype=torch.float64)
    assert doubled.x_context.dtype == torch.float64 and doubled.context_mask.dtype == torch.bool
    assert doubled.long_left.dtype == torch.bool


def test_switching_lengthscale():
    x = torch.tensor([[-3.0, -1.0, 0.5, 2.0], [-3.0, -1.0, 0.5, 2.0]])
    scale = switching_lengthscale(torch.tensor([-1.0, 1.0]), torch.tensor([True, False]))(x)
    long, short = LONG_LENGTHSCALE, SHORT_LENGTHSCALE
    assert (long, short) == (4.0, 0.1)
    torch.testing.assert_close(scale, torch.tensor([[long, short, short, short], [short, short, short, long]]))
    tasks = sample_gp_tasks(6, generator=0, **SMALL)
    values = tasks.lengthscale(tasks.x_target[..., 0])
    assert (values == torch.tensor(long)).any() and (values == torch.tensor(short)).any()
    assert ((values == torch.tensor(long)) | (values == torch.tensor(short))).all()


def test_gibbs_kernel_is_symmetric_psd_and_matches_the_formula():
    generator = torch.Generator().manual_seed(0)
    x = 8 * torch.rand(4, 50, generator=generator, dtype=torch.float64) - 4
    fn = switching_lengthscale(torch.tensor([-1.0, 0.0, 1.0, 0.0]), torch.tensor([True, False, True, True]))
    k = gibbs_kernel(x, x, fn, variance=2.0)
    assert k.shape == (4, 50, 50)
    torch.testing.assert_close(k, k.transpose(1, 2))
    assert torch.linalg.eigvalsh(k).min() > -1e-8
    torch.testing.assert_close(k.diagonal(dim1=1, dim2=2), torch.full((4, 50), 2.0, dtype=torch.float64))

    cross = gibbs_kernel(torch.tensor([[-0.5]]), torch.tensor([[0.3]]), switching_lengthscale(0.0, True), 1.5)
    l1, l2 = 4.0, 0.1  # x = -0.5 left of c = 0: long; x' = 0.3: short
    expected = 1.5 * math.sqrt(2 * l1 * l2 / (l1**2 + l2**2)) * math.exp(-(0.8**2) / (l1**2 + l2**2))
    assert cross.shape == (1, 1, 1) and cross.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("lengthscale", [0.1, 0.7, 4.0])
def test_gibbs_kernel_with_a_constant_lengthscale_is_the_rbf_kernel(lengthscale):
    x1 = torch.linspace(-3, 3, 17, dtype=torch.float64)[None]
    x2 = torch.linspace(-2, 4, 11, dtype=torch.float64)[None]
    rbf = torch.exp(-(x1[..., :, None] - x2[..., None, :]).square() / (2 * lengthscale**2))
    torch.testing.assert_close(gibbs_kernel(x1, x2, lengthscale), rbf)
    torch.testing.assert_close(gibbs_kernel(x1, x2, lambda x: torch.full_like(x, lengthscale), 3.0), 3 * rbf)


def test_posterior_at_a_context_point_with_tiny_noise_reproduces_the_observation():
    noise = 1e-3
    tasks = sample_gp_tasks(6, generator=2, num_context=6, num_targets=4, noise=noise, dtype=torch.float64)
    at_context = GPTasks(tasks.x_context, tasks.y_context, tasks.x_context, tasks.y_context, tasks.context_mask,
                         tasks.changepoint, tasks.long_left, noise=noise)
    mean, std = gp_posterior(at_context)
    assert mean.shape == std.shape == (6, 6, 1) and mean.dtype == torch.float64
    torch.testing.assert_close(mean, tasks.y_context, atol=5e-3, rtol=0)
    assert (std < 5e-3).all() and (std >= noise).all()


def test_posterior_respects_the_mask_and_is_the_prior_without_context():
    tasks = sample_gp_tasks(4, generator=4, num_context=(2, 8), num_targets=10, dtype=torch.float64)
    mean, std = gp_posterior(tasks)
    for b in range(4):  # the same as conditioning on the real points alone
        n = int(tasks.num_context[b])
        alone = GPTasks(tasks.x_context[b : b + 1, :n], tasks.y_context[b : b + 1, :n], tasks.x_target[b : b + 1],
                        tasks.y_target[b : b + 1], tasks.context_mask[b : b + 1, :n], tasks.changepoint[b : b + 1],
                        tasks.long_left[b : b + 1], noise=tasks.noise)
        m, s = gp_posterior(alone)
        torch.testing.assert_close(m[0], mean[b])
        torch.testing.assert_close(s[0], std[b])
    garbage = GPTasks(torch.where(tasks.context_mask[..., None], tasks.x_context, 1.23),
                      torch.where(tasks.context_mask[..., None], tasks.y_context, 9.0), tasks.x_target,
                      tasks.y_target, tasks.context_mask, tasks.changepoint, tasks.long_left, noise=tasks.noise)
    m, s = gp_posterior(garbage)
    torch.testing.assert_close(m, mean)
    torch.testing.assert_close(s, std)

    empty = sample_gp_tasks(3, generator=4, num_context=0, num_targets=10, noise=0.2)
    mean, std = gp_posterior(empty)
    assert (mean == 0).all()
    torch.testing.assert_close(std, torch.full_like(std, math.sqrt(1 + GP_JITTER + 0.2**2)))


def test_posterior_log_likelihood_beats_the_prior():
    tasks = sample_gp_tasks(64, generator=7, num_context=(8, 32), num_targets=32)
    ceiling = gp_log_likelihood(tasks)
    assert ceiling.shape == (64,) and ceiling.dtype == torch.float32
    prior = torch.distributions.Normal(0.0, math.sqrt(1.0 + 0.1**2)).log_prob(tasks.y_target).mean((1, 2))
    assert ceiling.mean() > prior.mean() + 0.2
    mean, std = gp_posterior(tasks)
    torch.testing.assert_close(-gaussian_nll(mean, std, tasks.y_target), ceiling.mean(), atol=1e-4, rtol=1e-4)
    # conditioning with the wrong noise level does worse on average
    assert gp_log_likelihood(tasks, noise=0.5).mean() < ceiling.mean()


def test_gaussian_nll_is_the_negated_mean_normal_log_prob():
    generator = torch.Generator().manual_seed(0)
    mean, y = torch.randn(3, 5, 1, generator=generator), torch.randn(3, 5, 1, generator=generator)
    std = torch.rand(3, 5, 1, generator=generator) + 0.1
    log_prob = torch.distributions.Normal(mean, std).log_prob(y)
    torch.testing.assert_close(gaussian_nll(mean, std, y), -log_prob.mean())
    mask = torch.rand(3, 5, generator=generator) > 0.4
    torch.testing.assert_close(gaussian_nll(mean, std, y, mask), -log_prob[mask].mean())
    torch.testing.assert_close(gaussian_nll(mean, torch.tensor(0.5), y),
                               -torch.distributions.Normal(mean, 0.5).log_prob(y).mean())
    std = std.clone().requires_grad_()
    gaussian_nll(mean, std, y).backward()
    assert std.grad is not None and std.grad.isfinite().all()


def test_shift_moves_every_input_and_the_changepoint():
    base = sample_gp_tasks(6, generator=9, **SMALL)
    moved = sample_gp_tasks(6, generator=9, shift=10.0, **SMALL)
    mask = base.context_mask
    assert torch.equal(moved.context_mask, mask) and torch.equal(moved.long_left, base.long_left)
    torch.testing.assert_close(moved.x_context[mask], base.x_context[mask] + 10)
    torch.testing.assert_close(moved.x_target, base.x_target + 10)
    torch.testing.assert_close(moved.changepoint, base.changepoint + 10)
    assert torch.equal(moved.y_context, base.y_context) and torch.equal(moved.y_target, base.y_target)
    for a, b in zip(gp_posterior(moved), gp_posterior(base)):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kwargs", [
    {"batch_size": 0}, {"batch_size": 2.0}, {"batch_size": True}, {"num_context": (5, 2)}, {"num_context": -1},
    {"num_context": (1.0, 4)}, {"num_context": (1, 2, 3)}, {"num_targets": 0}, {"context_range": (2.0, -2.0)},
    {"target_range": (0.0, float("inf"))}, {"noise": -0.1}, {"noise": float("nan")}, {"shift": float("nan")},
    {"dtype": torch.int64}, {"generator": "seed"},
])
def test_sample_gp_tasks_rejects_bad_arguments(kwargs):
    kwargs = {"batch_size": 2, **kwargs}
    with pytest.raises(ConfigError) as info:
        sample_gp_tasks(**kwargs)
    name = next(iter(kwargs if len(kwargs) == 1 else set(kwargs) - {"batch_size"}))
    assert name in str(info.value)


def test_other_functions_reject_bad_arguments():
    x = torch.zeros(2, 3)
    with pytest.raises(InputDtypeError):
        gibbs_kernel(torch.zeros(2, 3, dtype=torch.int64), x, 1.0)
    with pytest.raises(ShapeError):
        gibbs_kernel(torch.tensor(1.0), x, 1.0)
    with pytest.raises(ConfigError, match="variance"):
        gibbs_kernel(x, x, 1.0, variance=0.0)
    with pytest.raises(ConfigError, match="lengthscale"):
        gibbs_kernel(x, x, -1.0)
    with pytest.raises(ConfigError, match="length scales"):
        gibbs_kernel(x, x, lambda t: torch.zeros_like(t))
    with pytest.raises(ShapeError, match="lengthscale_fn"):
        gibbs_kernel(x, x, lambda t: t[..., :1] + 1)
    with pytest.raises(ConfigError):
        switching_lengthscale(0.0, True, short=0.0)

    mean, std, y = torch.zeros(2, 3, 1), torch.ones(2, 3, 1), torch.zeros(2, 3, 1)
    for bad in (torch.zeros(2, 3, 1), -std, torch.full_like(std, float("nan"))):
        with pytest.raises(ConfigError, match="std"):
            gaussian_nll(mean, bad, y)
    with pytest.raises(ShapeError):
        gaussian_nll(torch.zeros(2, 3), std, y)
    with pytest.raises(ShapeError):
        gaussian_nll(mean, torch.ones(2, 4, 1), y)
    with pytest.raises(ShapeError):
        gaussian_nll(mean, std, y, torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ShapeError, match="no entries"):
        gaussian_nll(mean, std, y, torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(InputDtypeError):
        gaussian_nll(mean, std, y, torch.ones(2, 3))

    tasks = sample_gp_tasks(2, generator=0, **SMALL)
    with pytest.raises(ConfigError, match="GPTasks"):
        gp_posterior({"x_context": tasks.x_context})
    with pytest.raises(ConfigError, match="noise"):
        gp_log_likelihood(tasks, noise=-1.0)
    with pytest.raises(ShapeError, match="y_target"):
        GPTasks(tasks.x_context, tasks.y_context, tasks.x_target, tasks.y_target[:, :3], tasks.context_mask,
                tasks.changepoint, tasks.long_left)
    with pytest.raises(InputDtypeError, match="context_mask"):
        GPTasks(tasks.x_context, tasks.y_context, tasks.x_target, tasks.y_target, tasks.context_mask.float(),
                tasks.changepoint, tasks.long_left)
    assert issubclass(ConfigError, SymwrapError) and issubclass(ShapeError, SymwrapError)
