import pytest
import torch
import torch.nn.functional as F
from torch import nn

import symwrap
from symwrap.errors import ConfigError


class PointMLP(nn.Module):
    """(B, N, 3) -> (B, N, 3), not equivariant to anything."""

    def __init__(self, n_points=5, hidden=32):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * n_points, hidden), nn.SiLU(),
                                 nn.Linear(hidden, 3 * n_points))

    def forward(self, x):
        return self.net(x).reshape(x.shape)


class CountingLinear(nn.Module):
    """x ↦ x·Aᵀ on (B, N, 3) points, counting its calls."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 3, bias=False)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.linear(x)


def remul(backbone, group="SO3", **config):
    return symwrap.wrap(backbone, group=group, strategy="remul", input="points", output="points", **config)


def test_loss_terms_match_a_hand_computation():
    """f(x) = x·Aᵀ under the mirror z ↦ −z: α·mse(f(x), y) + β·mse(f(g·x), g·y) with the same sampled g."""
    torch.manual_seed(0)
    backbone = CountingLinear()
    model = remul(backbone, group="Mz", alpha=0.7, beta=0.3, seed=5).train()
    x, y = torch.randn(6, 4, 3), torch.randn(6, 4, 3)
    terms = model.loss(model(x), y, x)
    g = symwrap.get_group("Mz").sample(6, generator=torch.Generator().manual_seed(5))
    a = backbone.linear.weight.detach()
    moved_x, moved_y = x @ g.transpose(1, 2), y @ g.transpose(1, 2)
    task = F.mse_loss(x @ a.T, y)
    equivariance = F.mse_loss(moved_x @ a.T, moved_y)
    assert torch.allclose(terms["task"], 0.7 * task)
    assert torch.allclose(terms["equivariance"], 0.3 * equivariance)
    assert torch.allclose(terms["total"], 0.7 * task + 0.3 * equivariance)
    assert backbone.calls == 2  # the prediction, then all transformed copies in one call


def test_self_consistency_target_compares_with_the_moved_prediction():
    backbone = CountingLinear()
    model = remul(backbone, group="Mz", beta=1.0, target="prediction", seed=1)
    x, y = torch.randn(5, 4, 3), torch.randn(5, 4, 3)
    terms = model.loss(model(x), y, x)
    g = symwrap.get_group("Mz").sample(5, generator=torch.Generator().manual_seed(1))
    a = backbone.linear.weight.detach()
    expected = F.mse_loss((x @ g.transpose(1, 2)) @ a.T, (x @ a.T) @ g.transpose(1, 2))
    assert torch.allclose(terms["equivariance"], expected)
    unlabelled = model.auxiliary_loss(x)  # works without labels
    assert set(unlabelled) == {"equivariance"} and unlabelled["equivariance"] >= 0


def test_beta_zero_is_the_plain_task_loss():
    backbone = CountingLinear()
    model = remul(backbone, beta=0.0)
    x, y = torch.randn(4, 5, 3), torch.randn(4, 5, 3)
    terms = model.loss(model(x), y, x)
    assert set(terms) == {"task", "total"}
    assert torch.equal(terms["total"], F.mse_loss(backbone(x), y))
    assert backbone.calls == 2  # the two forward calls above; no transformed copies


def test_alpha_zero_with_label_target_is_training_on_transformed_data():
    torch.manual_seed(1)
    model = remul(PointMLP(), alpha=0.0, beta=1.0, seed=3, num_samples=2)
    x, y = torch.randn(4, 5, 3), torch.randn(4, 5, 3)
    total = model.loss(model(x), y, x)["total"]
    gradient = torch.autograd.grad(total, list(model.parameters()))
    g = symwrap.get_group("SO3").sample(8, generator=torch.Generator().manual_seed(3))
    augmented = F.mse_loss(model.backbone(x.repeat(2, 1, 1) @ g.transpose(1, 2)), y.repeat(2, 1, 1) @ g.transpose(1, 2))
    expected = torch.autograd.grad(augmented, list(model.parameters()))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(gradient, expected))


def test_inference_is_the_bare_backbone():
    backbone = CountingLinear()
    model = remul(backbone, weighting="gradnorm").eval()
    x = torch.randn(3, 5, 3)
    with torch.no_grad():
        assert torch.equal(model(x), backbone(x))
    assert backbone.calls == 2  # one call each: nothing else runs at inference
    assert {name for name, _ in model.named_parameters()} == {"backbone.linear.weight"}


def test_gradnorm_weights_stay_positive_finite_and_keep_their_sum():
    torch.manual_seed(2)
    model = remul(PointMLP(), alpha=1.0, beta=1.0, weighting="gradnorm", gradnorm_lr=0.1).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.randn(32, 5, 3)
    y = x + torch.tensor([0.0, 0.0, 1.0])  # breaks SO3: the two losses pull apart
    seen = []
    for _ in range(60):
        terms = model.loss(model(x), y, x)
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
        seen.append(model.loss_weights())
    values = torch.tensor([[w["alpha"], w["beta_SO3"]] for w in seen])
    assert torch.isfinite(values).all() and (values > 0).all()
    assert torch.allclose(values.sum(1), torch.full((60,), 2.0, dtype=values.dtype))
    assert values.std(0).max() > 1e-3  # they do move


def test_shared_layer_can_be_named():
    model = remul(PointMLP(), weighting="gradnorm", shared_layer="net.1").train()
    x = torch.randn(8, 5, 3)
    model.loss(model(x), x, x)["total"].backward()
    with pytest.raises(ConfigError, match="not a submodule"):
        bad = remul(PointMLP(), weighting="gradnorm", shared_layer="nope").train()
        bad.loss(bad(x), x, x)


def test_both_equivariance_metrics_are_logged_and_agree_with_symwrap_metrics():
    model = remul(PointMLP(), seed=0, num_samples=4).train()
    x = torch.randn(16, 5, 3)
    model.loss(model(x), x, x)
    logged = model.last_metrics["SO3"]
    assert 0 < logged["averaged"] <= logged["relative"]
    measured = model.equivariance_metrics(x, n=64)["SO3"]
    assert measured["averaged"] <= measured["relative"]
    assert abs(measured["relative"] - logged["relative"]) < 0.5 * measured["relative"]


def test_several_groups_share_one_backbone_call_and_report_their_weights():
    backbone = CountingLinear()
    model = remul(backbone, group={"SO2z": 1.0, "SO3": 0.1}, num_samples=2)
    x = torch.randn(4, 5, 3)
    terms = model.loss(model(x), x, x)
    assert {"equivariance_SO2z", "equivariance_SO3"} <= set(terms)
    assert backbone.calls == 2
    assert model.loss_weights() == {"alpha": 1.0, "beta_SO2z": 1.0, "beta_SO3": 0.1}
    listed = remul(PointMLP(), group=["SO2z", "SO3"])
    assert listed.group_spec() == ["SO2z", "SO3"]


def test_auto_weights_favour_the_symmetry_the_data_keeps():
    """y = x + e_z for every point: exactly equivariant to rotations about z, not to all rotations.
    After training with beta="auto", the SO2z weight ends larger than the SO3 weight."""
    torch.manual_seed(3)
    model = remul(PointMLP(hidden=64), group=["SO2z", "SO3"], beta="auto", auto_warmup_steps=20, num_samples=2,
                  seed=0).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    shift = torch.tensor([0.0, 0.0, 1.0])
    for _ in range(120):
        x = torch.randn(64, 5, 3)
        terms = model.loss(model(x), x + shift, x)
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
    weights = model.loss_weights()
    assert weights["beta_SO2z"] > 2 * weights["beta_SO3"], weights
    assert model.levels.running[1] > model.levels.running[0]


def test_save_and_load_several_groups(tmp_path):
    model = remul(PointMLP(), group=["SO2z", "SO3"], weighting="gradnorm").train()
    x = torch.randn(4, 5, 3)
    model.loss(model(x), x, x)["total"].backward()
    model.save_pretrained(tmp_path)
    loaded = symwrap.load(tmp_path, PointMLP())
    assert list(loaded.groups) == ["SO2z", "SO3"]
    assert loaded.loss_weights() == pytest.approx(model.loss_weights())
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), model.eval()(x))


def test_configuration_errors():
    with pytest.raises(ConfigError, match="weighting"):
        remul(PointMLP(), weighting="uncertainty")
    with pytest.raises(ConfigError, match="one weight per group"):
        remul(PointMLP(), group=["SO2z", "SO3"], beta={"SO3": 1.0})
    with pytest.raises(ConfigError, match="choose one"):
        remul(PointMLP(), beta="auto", weighting="gradnorm")
    with pytest.raises(ConfigError, match="takes one group"):
        symwrap.wrap(PointMLP(), group=["SO3", "SO2z"], strategy="averaging", input="points", output="points")
    with pytest.raises(ConfigError, match="needs the input"):
        model = remul(PointMLP())
        x = torch.randn(2, 5, 3)
        model.loss(model(x), x)
    with pytest.raises(ConfigError, match="beta"):
        remul(PointMLP(), beta=-1.0)


def test_short_nbody_training_lowers_the_equivariance_error_against_the_unregularized_model():
    from symwrap.data import simulate
    from symwrap.nn import ParticleTransformer

    data, held_out = simulate(64, seed=0), simulate(64, seed=1)
    spec = {"input": {"pos": "points", "vel": "vectors", "charge": "scalars"}, "output": "points"}
    errors = {}
    for beta in (0.0, 1.0):
        torch.manual_seed(0)
        model = symwrap.wrap(ParticleTransformer(hidden=16, layers=1, heads=2), group="SO3", strategy="remul",
                             beta=beta, seed=0, **spec).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(150):
            terms = model.loss(model(data.inputs()), data.target, data.inputs())
            optimizer.zero_grad()
            terms["total"].backward()
            optimizer.step()
        errors[beta] = model.eval().equivariance_metrics(held_out.inputs(), n=4)["SO3"]["relative"]
    assert errors[1.0] < 0.7 * errors[0.0], errors
