import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.utils import scatter

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
    model = remul(PointMLP(), alpha=0.0, beta=1.0, seed=3, num_samples_train=2)
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
    # the task's gradients on the last layer stay the larger, so weight flows to the equivariance term (with the
    # update's sign flipped, β would sink to the floor of 0.001 instead)
    assert 1.5 < values[-1, 1] < 1.8 and values[:, 1].min() > 1.0


def test_shared_layer_can_be_named():
    model = remul(PointMLP(), weighting="gradnorm", shared_layer="net.1").train()
    x = torch.randn(8, 5, 3)
    model.loss(model(x), x, x)["total"].backward()
    with pytest.raises(ConfigError, match="not a submodule"):
        bad = remul(PointMLP(), weighting="gradnorm", shared_layer="nope").train()
        bad.loss(bad(x), x, x)


def test_both_equivariance_metrics_are_logged_and_agree_with_symwrap_metrics():
    model = remul(PointMLP(), seed=0, num_samples_train=4).train()
    x = torch.randn(16, 5, 3)
    model.loss(model(x), x, x)
    logged = model.last_metrics["SO3"]
    assert 0 < logged["averaged"] <= logged["relative"]
    measured = model.equivariance_errors(x, n=64)["SO3"]
    assert measured["averaged"] <= measured["relative"]
    assert abs(measured["relative"] - logged["relative"]) < 0.5 * measured["relative"]


def test_several_groups_share_one_backbone_call_and_report_their_weights():
    backbone = CountingLinear()
    model = remul(backbone, group={"SO2z": 1.0, "SO3": 0.1}, num_samples_train=2)
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
    model = remul(PointMLP(hidden=64), group=["SO2z", "SO3"], beta="auto", auto_warmup_steps=20, num_samples_train=2,
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
    with pytest.raises(ConfigError, match="^beta='auto' and weighting='gradnorm' both set the weights; choose one$"):
        remul(PointMLP(), beta="auto", weighting="gradnorm")
    with pytest.raises(ConfigError, match="takes one group"):
        symwrap.wrap(PointMLP(), group=["SO3", "SO2z"], strategy="averaging", input="points", output="points")
    with pytest.raises(ConfigError, match=r"^REMUL's loss needs the input for its equivariance term: call "
                                          r"model.loss\(pred, y, x\)$"):
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
        errors[beta] = model.eval().equivariance_errors(held_out.inputs(), n=4)["SO3"]["relative"]
    assert errors[1.0] < 0.7 * errors[0.0], errors


# --- the weights, by hand ------------------------------------------------------------------------------------------
def test_gradnorm_update_by_hand():
    """Shared parameters w1 = 1 and w2 = (1, 1); L0 = 3·w1 + 4·w2[0] + c0 has a gradient of norm 5 on them,
    L1 = w2[1] + c1 one of norm 1 (w1 unused). GradNorm (total 2, lr 0.1, asymmetry 2) moves each weight by
    lr·total·‖∇L_i‖/Σ‖∇L_j‖ against sign(w_i‖∇L_i‖ − mean_j w_j‖∇L_j‖·r_i²), r_i the loss's progress over the
    mean progress, then rescales the weights to their initial sum."""
    from symwrap.strategies.remul import GradNorm

    w1, w2 = torch.ones((), requires_grad=True), torch.ones(2, requires_grad=True)
    gradnorm = GradNorm([1.0, 1.0], asymmetry=2.0, lr=0.1)
    # step 1: equal losses (8, 8), so r = (1, 1); weighted norms (5, 1) against their mean 3: the first weight
    # falls by 0.2·5/6, the second rises by 0.2·1/6: (5/6, 31/30), rescaled by 2/(56/30) to (25/28, 31/28)
    gradnorm.update([3 * w1 + 4 * w2[0] + 1, w2[1] + 7], [w1, w2])
    assert gradnorm.weights.tolist() == pytest.approx([25 / 28, 31 / 28], rel=1e-12)
    assert gradnorm.initial_losses.tolist() == [8.0, 8.0] and int(gradnorm.steps) == 1
    # step 2: L0 = 2·w1 + 6 (norm 2, still 8: progress 1), L1 = w2[1] + 1 (norm 1, 2: progress 1/4); r = (8/5, 2/5)
    # weighted norms (50/28, 31/28), mean 81/56; targets 81/56·(64/25, 4/25) = (3.70, 0.23): the first is below its
    # target now (with r⁰ it would be above the mean), so it rises by 0.2·2/3 and the second falls by 0.2·1/3
    gradnorm.update([2 * w1 + 6, w2[1] + 1], [w1, w2])
    raised = [25 / 28 + 0.2 * 2 / 3, 31 / 28 - 0.2 * 1 / 3]
    assert gradnorm.weights.tolist() == pytest.approx([w * 2 / sum(raised) for w in raised], rel=1e-12)
    assert gradnorm.initial_losses.tolist() == [8.0, 8.0] and int(gradnorm.steps) == 2


def test_gradnorm_keeps_every_weight_above_a_floor():
    """A step too large for the first weight: it is clamped at 0.001·total/count, then both are rescaled to sum 2."""
    from symwrap.strategies.remul import GradNorm

    w = torch.ones(2, requires_grad=True)
    gradnorm = GradNorm([1.0, 1.0], lr=10.0)
    gradnorm.update([5 * w[0], w[1]], [w])  # 1 − 10·2·5/6 < 0, 1 + 10·2·1/6 = 13/3
    floor, second = 1e-3, 13 / 3
    assert gradnorm.weights.tolist() == pytest.approx([floor * 2 / (floor + second), second * 2 / (floor + second)],
                                                      rel=1e-12)


def test_symmetry_levels_by_hand():
    """β_i = β·(R_i / min_j R_j)^(−p) once the warm-up is over; R_i starts at the first losses, then moves by
    (1 − momentum) towards each new one."""
    from symwrap.strategies.remul import SymmetryLevels

    levels = SymmetryLevels(2, beta=0.5, warmup_steps=2, power=2.0, momentum=0.25)
    assert levels.weights().tolist() == [0.5, 0.5]
    levels.update([torch.tensor(1.0), torch.tensor(4.0)])
    assert levels.running.tolist() == [1.0, 4.0]
    assert levels.weights().tolist() == [0.5, 0.5]  # still warming up: 1 step of 2
    levels.update([torch.tensor(3.0), torch.tensor(8.0)])
    assert levels.running.tolist() == [0.25 * 1 + 0.75 * 3, 0.25 * 4 + 0.75 * 8]  # (2.5, 7)
    assert levels.weights().tolist() == pytest.approx([0.5, 0.5 * (7 / 2.5) ** -2], rel=1e-12)
    eager = SymmetryLevels(2, beta=0.5, warmup_steps=0, power=1.0, momentum=0.5)
    assert eager.weights().tolist() == [0.5, 0.5]  # before any loss, even without a warm-up
    eager.update([torch.tensor(6.0), torch.tensor(2.0)])
    assert eager.weights().tolist() == pytest.approx([0.5 / 3, 0.5], rel=1e-12)


def _mirror_losses(weight, x, y, groups, generator, num_samples=1):
    """mse(g·x·Aᵀ, g·y) per mirror group, with the elements drawn in the model's order from ``generator``."""
    losses = {}
    for name in groups:
        g = symwrap.get_group(name).sample(num_samples * x.shape[0], generator=generator)
        moved_x = x.repeat(num_samples, 1, 1) @ g.transpose(1, 2)
        moved_y = y.repeat(num_samples, 1, 1) @ g.transpose(1, 2)
        losses[name] = F.mse_loss(moved_x @ weight.T, moved_y)
    return losses


def test_gradnorm_weights_of_the_model_by_hand():
    """Training steps with GradNorm: the weights move as GradNorm's rule says for the gradient norms of the task
    and the equivariance loss on the last layer (A of f(x) = x·Aᵀ), and each step's terms use the moved weights."""
    from symwrap.strategies.remul import GradNorm

    backbone = CountingLinear()
    model = remul(backbone, group="Mz", alpha=1.0, beta=1.0, weighting="gradnorm", gradnorm_lr=0.1,
                  gradnorm_asymmetry=2.0, seed=5).train()
    x, y = torch.randn(6, 4, 3), torch.randn(6, 4, 3)
    reference = GradNorm([1.0, 1.0], asymmetry=2.0, lr=0.1)
    generator = torch.Generator().manual_seed(5)
    for y_step in (y, 0.5 * y):  # a second step whose losses progress differently
        terms = model.loss(model(x), y_step, x)
        weight = backbone.linear.weight.detach().clone().requires_grad_(True)
        task = F.mse_loss(x @ weight.T, y_step)
        equivariance = _mirror_losses(weight, x, y_step, ["Mz"], generator)["Mz"]
        norms = [float(torch.autograd.grad(loss, weight, retain_graph=True)[0].norm()) for loss in (task, equivariance)]
        before = reference.weights.tolist()
        reference.update([task, equivariance], [weight])
        if y_step is y:  # by hand from equal weights: the larger gradient norm loses lr·total·its share of the norms
            larger = int(norms[1] > norms[0])
            moved = [1.0 + (-0.2 if i == larger else 0.2) * norms[i] / sum(norms) for i in range(2)]
            assert before == [1.0, 1.0]
            assert reference.weights.tolist() == pytest.approx([m * 2 / sum(moved) for m in moved], rel=1e-9)
        weights = model.loss_weights()
        assert [weights["alpha"], weights["beta_Mz"]] == pytest.approx(reference.weights.tolist(), rel=1e-5)
        assert terms["task"].item() == pytest.approx(weights["alpha"] * task.item(), rel=1e-5)
        assert terms["equivariance"].item() == pytest.approx(weights["beta_Mz"] * equivariance.item(), rel=1e-5)
        assert terms["total"].item() == pytest.approx((terms["task"] + terms["equivariance"]).item(), rel=1e-6)
    # evaluation, or a loss without gradients, leaves the weights alone
    frozen = model.loss_weights()
    with torch.no_grad():
        model.loss(model(x), y, x)
    model.eval().loss(model(x), y, x)
    assert model.loss_weights() == frozen


def test_auto_weights_of_the_model_by_hand():
    """beta="auto": after the warm-up, β_i = auto_beta·(R_i / min_j R_j)^(−auto_power) with R_i the running mean of
    group i's equivariance loss, and each step's terms are weighted by the levels that include that step."""
    backbone = CountingLinear()
    model = remul(backbone, group=["Mz", "My"], alpha=0.7, beta="auto", auto_beta=0.5, auto_warmup_steps=1,
                  auto_power=2.0, auto_momentum=0.25, seed=5).train()
    assert model.loss_weights() == {"alpha": 0.7, "beta_Mz": 0.5, "beta_My": 0.5}  # before any step
    x, y = torch.randn(6, 4, 3), torch.randn(6, 4, 3)
    generator = torch.Generator().manual_seed(5)
    running = None
    for y_step in (y, y.flip(1)):
        terms = model.loss(model(x), y_step, x)
        losses = _mirror_losses(backbone.linear.weight.detach(), x, y_step, ["Mz", "My"], generator)
        values = torch.stack([losses["Mz"], losses["My"]]).double()
        running = values if running is None else 0.25 * running + 0.75 * values
        expected = 0.5 * (running / running.min()) ** -2.0
        assert expected.min() < 0.49  # the two groups are broken by different amounts
        weights = model.loss_weights()
        assert [weights["beta_Mz"], weights["beta_My"]] == pytest.approx(expected.tolist(), rel=1e-5)
        assert weights["alpha"] == 0.7
        assert terms["equivariance_Mz"].item() == pytest.approx(weights["beta_Mz"] * losses["Mz"].item(), rel=1e-5)
        assert terms["equivariance_My"].item() == pytest.approx(weights["beta_My"] * losses["My"].item(), rel=1e-5)
        task = F.mse_loss(backbone(x), y_step)
        assert terms["task"].item() == pytest.approx(0.7 * task.item(), rel=1e-5)


def test_several_groups_with_their_own_constant_weights_by_hand():
    backbone = CountingLinear()
    model = remul(backbone, group={"Mz": 0.5, "My": 0.25}, alpha=0.7, seed=5)
    x, y = torch.randn(6, 4, 3), torch.randn(6, 4, 3)
    terms = model.loss(model(x), y, x)
    losses = _mirror_losses(backbone.linear.weight.detach(), x, y, ["Mz", "My"], torch.Generator().manual_seed(5))
    task = F.mse_loss(backbone(x), y)
    assert set(terms) == {"task", "equivariance_Mz", "equivariance_My", "total"}
    assert terms["equivariance_Mz"].item() == pytest.approx(0.5 * losses["Mz"].item(), rel=1e-6)
    assert terms["equivariance_My"].item() == pytest.approx(0.25 * losses["My"].item(), rel=1e-6)
    assert terms["total"].item() == pytest.approx(0.7 * task.item() + 0.5 * losses["Mz"].item()
                                                  + 0.25 * losses["My"].item(), rel=1e-6)
    # a group whose weight is 0 is not transformed at all: My draws the first elements, nothing is logged for Mz
    backbone = CountingLinear()
    model = remul(backbone, group={"Mz": 0.0, "My": 1.0}, seed=5)
    terms = model.loss(model(x), y, x)
    only = _mirror_losses(backbone.linear.weight.detach(), x, y, ["My"], torch.Generator().manual_seed(5))["My"]
    assert set(terms) == {"task", "equivariance_My", "total"} and list(model.last_metrics) == ["My"]
    assert terms["equivariance_My"].item() == pytest.approx(only.item(), rel=1e-6)
    assert backbone.calls == 2
    # group names in a beta dict are looked up like any group name
    assert remul(CountingLinear(), group="SO3", beta={"so3": 0.5}).loss_weights() == {"alpha": 1.0, "beta_SO3": 0.5}
    assert remul(CountingLinear(), group="SO3").group_spec() == "SO3"


class PointClassifier(nn.Module):
    """(B, 4, 3) points -> (B, 3) logits."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(12, 3)

    def forward(self, x):
        return self.linear(x.flatten(1))


def test_label_target_uses_the_task_loss_and_prediction_target_the_squared_error():
    """Class labels are invariant: with target="label" the equivariance term is the cross-entropy of f(g·x) against
    y; with target="prediction" it is the mean squared distance of f(g·x) to f(x)."""
    x, labels = torch.randn(6, 4, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    for target in ("label", "prediction"):
        backbone = PointClassifier()
        model = symwrap.wrap(backbone, group="Mz", strategy="remul", input="points", output="invariant", beta=0.5,
                             target=target, seed=5)
        terms = model.loss(model(x), labels, x)
        g = symwrap.get_group("Mz").sample(6, generator=torch.Generator().manual_seed(5))
        with torch.no_grad():
            moved, plain = backbone(x @ g.transpose(1, 2)), backbone(x)
        expected = F.cross_entropy(moved, labels) if target == "label" else F.mse_loss(moved, plain)
        assert terms["task"].item() == pytest.approx(F.cross_entropy(plain, labels).item(), rel=1e-6)
        assert terms["equivariance"].item() == pytest.approx(0.5 * expected.item(), rel=1e-6)


def test_auxiliary_loss_is_the_weighted_self_consistency_by_hand():
    backbone = CountingLinear()
    model = remul(backbone, group="Mz", beta=0.5, seed=5, num_samples_train=2)
    x = torch.randn(5, 4, 3)
    terms = model.auxiliary_loss(x)
    g = symwrap.get_group("Mz").sample(10, generator=torch.Generator().manual_seed(5))
    a = backbone.linear.weight.detach()
    expected = F.mse_loss((x.repeat(2, 1, 1) @ g.transpose(1, 2)) @ a.T, (x.repeat(2, 1, 1) @ a.T) @ g.transpose(1, 2))
    assert list(terms) == ["equivariance"]
    assert terms["equivariance"].item() == pytest.approx(0.5 * expected.item(), rel=1e-6)


def test_logged_errors_by_hand():
    """E′ = mean over copies of ‖g⁻¹·f(g·x) − f(x)‖/‖f(x)‖ and E = ‖mean over copies of (g⁻¹·f(g·x) − f(x))‖/‖f(x)‖,
    from the two transformed copies per input the loss made (turns about z): the residuals of two turns partly
    cancel, so E < E′."""
    backbone = CountingLinear()
    model = remul(backbone, group="SO2z", seed=5, num_samples_train=2).train()
    x = torch.randn(6, 4, 3)
    model.loss(model(x), x, x)
    g = symwrap.get_group("SO2z").sample(12, generator=torch.Generator().manual_seed(5))
    a = backbone.linear.weight.detach()
    f = x @ a.T
    undone = ((x.repeat(2, 1, 1) @ g.transpose(1, 2)) @ a.T) @ g  # g⁻¹·y is y·g⁻ᵀ = y·g for a rotation
    residuals = (undone - f.repeat(2, 1, 1)).reshape(2, 6, 12)
    norms = f.reshape(6, 12).norm(dim=1)
    relative = (residuals.norm(dim=2) / norms).mean()
    averaged = (residuals.mean(0).norm(dim=1) / norms).mean()
    assert averaged < 0.9 * relative  # E computed as E′ would not pass
    assert model.last_metrics["SO2z"] == pytest.approx({"relative": relative.item(), "averaged": averaged.item()},
                                                       rel=1e-5)


@pytest.mark.parametrize("settings, match", [
    ({"weighting": "uncertainty"}, r"weighting must be one of \('constant', 'gradnorm'\); got 'uncertainty'"),
    ({"target": "labels"}, r"target must be one of \('label', 'prediction'\); got 'labels'"),
    ({"beta": "automatic"}, r"beta must be a number, a dict of numbers per group or 'auto'; got 'automatic'"),
    ({"beta": {"SO3": -1.0}}, r"beta\['SO3'\] must be a finite number >= 0; got -1.0"),
    ({"beta": -0.5}, r"^beta must be a finite number >= 0; got -0.5"),
    ({"beta": {"SO3": True}}, r"RemulConfig.beta must be a finite number .*got \{'SO3': True\}"),  # by type, first
    ({"alpha": -0.1}, r"alpha must be a finite number >= 0; got -0.1"),
    ({"alpha": float("nan")}, r"RemulConfig.alpha must be a finite number; got nan"),
    ({"num_samples_train": 0}, r"num_samples_train must be a positive integer; got 0"),
    ({"num_samples_train": -2}, r"num_samples_train must be a positive integer; got -2"),
    ({"auto_warmup_steps": -1}, r"auto_warmup_steps must be a non-negative integer; got -1"),
    ({"gradnorm_lr": -1.0}, r"gradnorm_lr must be a finite number >= 0; got -1.0"),
    ({"gradnorm_asymmetry": -1.5}, r"gradnorm_asymmetry must be a finite number >= 0; got -1.5"),
    ({"auto_power": -2}, r"auto_power must be a finite number >= 0; got -2"),
    ({"auto_beta": -1}, r"auto_beta must be a finite number >= 0; got -1"),
    ({"auto_momentum": 1.0}, r"auto_momentum must be in \[0, 1\); got 1.0"),
    ({"auto_momentum": -0.1}, r"auto_momentum must be in \[0, 1\); got -0.1"),
    ({"group": ["SO3", "so3"]}, r"each group may appear once; got \['SO3', 'SO3'\]"),
])
def test_every_setting_is_checked(settings, match):
    settings = {"group": "SO3", **settings}
    with pytest.raises(ConfigError, match=match):
        remul(PointMLP(), **settings)


def test_the_limits_of_the_settings_are_allowed():
    model = remul(PointMLP(), alpha=0, beta=0, num_samples_train=1, auto_warmup_steps=0, auto_momentum=0.0,
                  gradnorm_lr=0, auto_power=0, auto_beta=0)
    x = torch.randn(2, 5, 3)
    assert set(model.loss(model(x), x)) == {"task", "total"}  # no input needed when every β is 0


def test_every_group_must_fit_the_actions_and_one_is_needed():
    from symwrap.errors import IncompatibleGroupError
    from symwrap.strategies.remul import Remul, RemulConfig

    images = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with pytest.raises(IncompatibleGroupError, match="got SO3"):
        symwrap.wrap(images, group=["C4", "SO3"], strategy="remul", input="image", output="invariant")
    with pytest.raises(IncompatibleGroupError, match="got SO2"):
        symwrap.wrap(images, group=["C4", "SO2"], strategy="remul", input="image", output="regular")
    action = symwrap.get_action("points")
    with pytest.raises(ConfigError, match="^REMUL needs at least one group$"):
        Remul(CountingLinear(), [], action, action, RemulConfig())


def test_gradnorm_needs_trainable_parameters_in_its_shared_layer():
    x = torch.randn(4, 5, 3)
    expected = "^GradNorm needs a shared layer with trainable parameters; set shared_layer=$"
    with pytest.raises(ConfigError, match=expected):
        model = remul(PointMLP(), weighting="gradnorm", shared_layer="net.2").train()  # SiLU: no parameters
        model.loss(model(x), x, x)
    frozen = PointMLP()
    frozen.net[3].requires_grad_(False)  # the last layer is frozen: GradNorm measures the one before
    model = remul(frozen, weighting="gradnorm").train()
    model.loss(model(x), x, x)["total"].backward()
    assert model.loss_weights()["alpha"] != 1.0
    frozen.requires_grad_(False)
    with pytest.raises(ConfigError, match="GradNorm needs a shared layer"):
        model.loss(model(x), x, x)


# --- the transformed copies the equivariance losses are made of (symwrap.losses) ----------------------------------
class _Recording:
    """A model that records the batch size of every call."""

    def __init__(self, fn):
        self.fn, self.batches = fn, []

    def __call__(self, x):
        self.batches.append(x.num_graphs if hasattr(x, "num_graphs") else next(iter(x.values())).shape[0]
                            if isinstance(x, dict) else x.shape[0])
        return self.fn(x)


def _particles():
    return {"pos": torch.randn(3, 4, 3), "vel": torch.randn(3, 4, 3)}


def _graphs():
    edges = torch.tensor([[0, 1], [1, 0]])
    return Batch.from_data_list([Data(pos=torch.randn(n, 3), edge_index=edges, num_nodes=n) for n in (3, 4)])


def _graph_readout(batch):
    return scatter(batch.pos * (1 + torch.arange(batch.pos.shape[0]))[:, None], batch.batch, reduce="sum")


@pytest.mark.parametrize("kind", ["tensor", "dict", "graph"])
def test_several_groups_share_one_call_and_match_one_call_per_group(kind):
    """Tensors and dicts of tensors: the copies of every group go through the model in one call (a dict output is
    split field by field); graphs: one call per group. Either way each group gets what a call of its own gives."""
    from symwrap.losses import predict_transformed, predict_transformed_many

    if kind == "tensor":
        x, action, fn = torch.randn(3, 4, 3), symwrap.get_action("points"), lambda p: p[:, 0] * torch.tensor([1, 2, 3])
    elif kind == "dict":
        x, action = _particles(), symwrap.get_action({"pos": "points", "vel": "vectors"})
        fn = lambda d: {"first": d["pos"][:, 0], "speed": d["vel"].norm(dim=-1)}  # noqa: E731
    else:
        x, action, fn = _graphs(), symwrap.get_action("graph"), _graph_readout
    groups = [symwrap.get_group("Mz"), symwrap.get_group("SO3xS") if kind == "graph" else symwrap.get_group("SO3")]
    model = _Recording(fn)
    together = predict_transformed_many(model, x, groups, action, num_samples=2,
                                        generator=torch.Generator().manual_seed(4))
    assert model.batches == ([3 * 2 + 3 * 2] if kind != "graph" else [2 * 2, 2 * 2])
    generator = torch.Generator().manual_seed(4)
    for group, moved in zip(groups, together):
        alone = predict_transformed(fn, x, group, action, num_samples=2, generator=generator)
        assert moved.k == alone.k == 2
        assert moved.group.allclose(moved.elements, alone.elements, atol=0)
        if kind == "dict":
            assert list(moved.predictions) == ["first", "speed"]
            assert all(torch.allclose(moved.predictions[key], alone.predictions[key]) for key in alone.predictions)
        else:
            assert torch.allclose(moved.predictions, alone.predictions)


def test_transformed_copies_are_sampled_as_many_times_as_asked():
    """One copy by default, ``num_samples`` otherwise, even of a group with a single element (never every element)."""
    from symwrap.losses import predict_transformed, predict_transformed_many

    points, model = symwrap.get_action("points"), _Recording(lambda p: p[:, 0])
    x = torch.randn(3, 4, 2)
    trivial, turns = symwrap.get_group("C1"), symwrap.get_group("C4")
    assert predict_transformed(model, x, turns, points).k == 1
    assert [m.k for m in predict_transformed_many(model, x, [trivial, turns], points)] == [1, 1]
    assert predict_transformed(model, x, trivial, points, num_samples=3).k == 3
    assert [m.k for m in predict_transformed_many(model, x, [trivial, turns], points, num_samples=3)] == [3, 3]
    assert model.batches == [3, 3 + 3, 3 * 3, 3 * 3 + 3 * 3]


def test_dict_inputs_and_outputs_with_several_groups_by_hand():
    """Label-anchored REMUL on a dict of fields: each group's term is Σ_fields mse(f(g·x), g·y) (the task loss)."""
    class Fields(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 3, bias=False)

        def forward(self, x):
            return {"pos": self.linear(x["pos"]), "vel": x["vel"] * 2}

    spec = {"pos": "points", "vel": "vectors"}
    backbone = Fields()
    model = symwrap.wrap(backbone, group={"Mz": 0.5, "My": 0.25}, strategy="remul", input=spec, output=spec, seed=5)
    x, y = _particles(), _particles()
    terms = model.loss(model(x), y, x)
    generator, a = torch.Generator().manual_seed(5), backbone.linear.weight.detach()
    for name, beta in (("Mz", 0.5), ("My", 0.25)):
        g = symwrap.get_group(name).sample(3, generator=generator).transpose(1, 2)
        expected = F.mse_loss(x["pos"] @ g @ a.T, y["pos"] @ g) + F.mse_loss(2 * x["vel"] @ g, y["vel"] @ g)
        assert terms[f"equivariance_{name}"].item() == pytest.approx(beta * expected.item(), rel=1e-6)


def test_gradnorm_measures_progress_against_each_loss_s_own_first_value():
    """Step 1: equal gradient norms on equal weights are balanced, nothing moves. Step 2: L0 is back at its first
    value 0.5 (progress 1), L1 fell from 4 to 1 (progress 1/4): r = (1.6, 0.4). The weighted norms (0.3, 0.1)
    against the targets 0.2·r = (0.32, 0.08): the lagging L0 is below its target and gains weight, by
    lr·total·0.3/0.4, L1 loses lr·total·0.1/0.4."""
    from symwrap.strategies.remul import GradNorm

    w = torch.ones(2, requires_grad=True)
    gradnorm = GradNorm([1.0, 1.0], asymmetry=1.0, lr=0.1)
    gradnorm.update([w[0] - 0.5, w[1] + 3], [w])
    assert gradnorm.weights.tolist() == [1.0, 1.0] and gradnorm.initial_losses.tolist() == [0.5, 4.0]
    gradnorm.update([0.3 * w[0] + 0.2, 0.1 * w[1] + 0.9], [w])
    moved = [1 + 0.2 * 0.75, 1 - 0.2 * 0.25]
    assert gradnorm.weights.tolist() == pytest.approx([m * 2 / sum(moved) for m in moved], rel=1e-9)


def test_gradnorm_and_levels_keep_their_state_in_float64():
    """The state is float64 (the steps an integer), saved with the model; a loss that does not reach the shared
    parameters has a gradient norm of 0."""
    from symwrap.strategies.remul import GradNorm, RemulConfig, SymmetryLevels

    gradnorm, levels = GradNorm([1.0, 2.0, 0.5]), SymmetryLevels(2, 1.0, 0, 1.0, 0.5)
    assert [gradnorm.weights.dtype, gradnorm.initial_losses.dtype, gradnorm.steps.dtype] == [
        torch.float64, torch.float64, torch.long]
    assert [levels.running.dtype, levels.steps.dtype] == [torch.float64, torch.long]
    assert (gradnorm.asymmetry, gradnorm.lr) == (RemulConfig().gradnorm_asymmetry, RemulConfig().gradnorm_lr)
    w, elsewhere = torch.ones(2, requires_grad=True), torch.ones((), requires_grad=True)
    cpu = GradNorm([1.0, 1.0, 1.0], lr=0.3)
    # norms (2, 1, 0) against their mean 1: the first falls by 0.3·3·2/3; the second is on its target, and the third
    # has no gradient to move by; then all are rescaled to their sum 3
    cpu.update([2 * w[0], w[1], 3 * elsewhere], [w])
    assert cpu.weights.tolist() == pytest.approx([0.4 * 3 / 2.4, 3 / 2.4, 3 / 2.4], rel=1e-9)


def test_an_input_that_does_not_fit_the_first_group_is_refused():
    model = remul(PointMLP(), group=["SO3", "SO2z"])
    with pytest.raises(symwrap.errors.ActionError, match=r"\(B, N, 3\) for SO3; got shape \(2, 5, 2\)"):
        model(torch.randn(2, 5, 2))


def test_gradnorm_measures_a_group_whose_beta_starts_at_zero():
    model = remul(CountingLinear(), beta=0.0, weighting="gradnorm").train()
    x = torch.randn(3, 4, 3)
    assert "equivariance" in model.loss(model(x), x, x)


def test_auxiliary_loss_of_several_groups_and_automatic_levels():
    """Self-consistency terms per group, weighted by the current levels, which the unlabelled batch updates too."""
    backbone = CountingLinear()
    model = remul(backbone, group=["Mz", "My"], beta="auto", auto_warmup_steps=0, auto_beta=2.0, seed=5).train()
    x = torch.randn(5, 4, 3)
    terms = model.auxiliary_loss(x)
    generator, a = torch.Generator().manual_seed(5), backbone.linear.weight.detach()
    losses = {}
    for name in ("Mz", "My"):
        g = symwrap.get_group(name).sample(5, generator=generator).transpose(1, 2)
        losses[name] = F.mse_loss(x @ g @ a.T, x @ a.T @ g).item()
    assert int(model.levels.steps) == 1
    assert model.levels.running.tolist() == pytest.approx([losses["Mz"], losses["My"]], rel=1e-6)
    smallest = min(losses.values())
    assert list(terms) == ["equivariance_Mz", "equivariance_My"]
    for name in ("Mz", "My"):
        assert terms[f"equivariance_{name}"].item() == pytest.approx(2.0 * smallest / losses[name] * losses[name],
                                                                     rel=1e-5)


def test_equivariance_metrics_pass_their_samples_on():
    model = remul(PointMLP(), group=["SO2z", "SO3"])
    x = torch.randn(4, 5, 3)
    measured = model.equivariance_errors(x, n=3, generator=torch.Generator().manual_seed(1))
    generator = torch.Generator().manual_seed(1)
    for name in ("SO2z", "SO3"):
        expected = symwrap.metrics.equivariance_errors(model.backbone, x, name, input="points", output="points", n=3,
                                                       generator=generator)
        assert measured[name] == pytest.approx(expected, rel=1e-6)


def test_several_groups_are_measured_one_by_one_never_silently_the_first():
    model = remul(PointMLP(), group=["SO2z", "SO3"]).eval()
    assert list(model.groups) == ["SO2z", "SO3"]
    x = torch.randn(3, 5, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match=r"several groups \['SO2z', 'SO3'\]: pass group="):
        model.equivariance_error(x)
    with pytest.raises(ConfigError, match=r"group 'O3' is not one of this model's groups"):
        model.equivariance_error(x, group="O3")
    for name in model.groups:
        expected = symwrap.metrics.equivariance_error(model, x, name, input="points", output="points", n=4,
                                                      generator=torch.Generator().manual_seed(1))
        assert model.equivariance_error(x, n=4, generator=torch.Generator().manual_seed(1), group=name) == expected
    both = model.equivariance_errors(x, n=4)
    assert set(both) == {"SO2z", "SO3"} and set(both["SO3"]) == {"relative", "averaged"}
    assert both["SO2z"]["relative"] < both["SO3"]["relative"]  # SO2z is a subgroup: fewer ways to break it
    with pytest.warns(DeprecationWarning, match="use equivariance_errors"):
        assert model.equivariance_metrics(x, n=4).keys() == both.keys()


def test_a_single_group_model_lists_its_group_by_name():
    model = remul(PointMLP(), group="SO3")
    assert model.groups == {"SO3": model.group}
    x = torch.randn(2, 5, 3)
    assert model.equivariance_error(x, group="SO3", n=2, generator=torch.Generator().manual_seed(0)) == \
        model.equivariance_error(x, n=2, generator=torch.Generator().manual_seed(0))
