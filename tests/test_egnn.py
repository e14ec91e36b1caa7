"""symwrap.nn.egnn: E(n)-equivariant graph networks on dense particle systems."""

import copy

import pytest
import torch
from torch import nn

import symwrap
from symwrap.errors import ConfigError, ShapeError
from symwrap.metrics import equivariance_error
from symwrap.nn import EGNN, EGNNDynamics, EGNNLayer

NBODY = {"pos": "points", "vel": "vectors", "charge": "scalars"}
B, N = 4, 5


def charged_system(batch: int = B, n: int = N, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """A batch shaped like the charged N-body data: pos, vel (B, N, 3) and charges ±1 (B, N, 1)."""
    return {
        "pos": torch.randn(batch, n, 3, dtype=dtype),
        "vel": torch.randn(batch, n, 3, dtype=dtype),
        "charge": (torch.randint(0, 2, (batch, n, 1)) * 2 - 1).to(dtype),
    }


def stirred(model: nn.Module) -> nn.Module:
    """Scale up the near-zero initial coordinate weights φ_x, so that the pairwise position update (not only
    the velocity term) visibly moves the particles and its equivariance is put to the test."""
    for module in model.modules():
        if isinstance(module, EGNNLayer):
            nn.init.normal_(module.coord_mlp[-1].weight, std=1.0)
    return model


def pairwise_share(model: EGNNDynamics, x: dict[str, torch.Tensor]) -> float:
    """How much the pairwise position update contributes: compare with the model whose φ_x is zero."""
    without_pairs = copy.deepcopy(model)
    for module in without_pairs.modules():
        if isinstance(module, EGNNLayer):
            nn.init.zeros_(module.coord_mlp[-1].weight)
    with torch.no_grad():
        return float((model(x) - without_pairs(x)).norm() / (model(x) - x["pos"]).norm())


# --- symmetry ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("group", ["E3", "O3", "SO3", "S", "E3xS"])
@pytest.mark.parametrize("options", [{}, {"attention": True, "tanh": True, "normalize": True}],
                         ids=["plain", "variants"])
def test_dynamics_is_equivariant_in_float32(group, options):
    model = stirred(EGNNDynamics(hidden=32, layers=4, **options))
    x = charged_system()
    assert pairwise_share(model, x) > 0.1
    assert equivariance_error(model, x, group, input=NBODY, output="points") < 1e-5


def test_dynamics_is_equivariant_in_float64_to_rounding():
    model = stirred(EGNNDynamics(hidden=32, layers=3)).double()
    x = charged_system(dtype=torch.float64)
    assert equivariance_error(model, x, "E3xS", input=NBODY, output="points") < 1e-12


def test_egnn_without_velocity_is_equivariant_with_node_features_and_edge_attributes():
    model = stirred(EGNN(in_node_features=2, hidden=16, layers=3, edge_features=2, velocity=False))
    x = {"pos": torch.randn(B, N, 3), "h": torch.randn(B, N, 2), "a": torch.randn(B, N, N, 2)}
    x["a"] = x["a"] + x["a"].transpose(1, 2)  # symmetric pair attributes, such as distances or charge products

    def run(inputs):
        return model(inputs["pos"], None, inputs["h"], inputs["a"])

    # permuting the particles permutes both axes of the edge attributes: not an action on a (B, N, ...) field,
    # so permutations are checked by hand
    assert equivariance_error(run, x, "O3", input={"pos": "points", "h": "scalars", "a": "invariant"},
                              output="points") < 1e-5
    order = torch.randperm(N)
    torch.testing.assert_close(model(x["pos"][:, order], None, x["h"][:, order], x["a"][:, order][:, :, order]),
                               run(x)[:, order], atol=1e-6, rtol=1e-5)


def test_a_translation_of_the_positions_translates_the_prediction():
    model = stirred(EGNNDynamics(hidden=16, layers=3))
    x = charged_system()
    shift = torch.randn(B, 1, 3) * 5
    predicted = model(x)
    assert (predicted - x["pos"]).norm() > 0.1 * x["pos"].norm()  # the model does move the particles
    torch.testing.assert_close(model({**x, "pos": x["pos"] + shift}), predicted + shift, atol=2e-5, rtol=1e-5)


def test_works_in_other_dimensions():
    model = stirred(EGNN(in_node_features=1, hidden=16, layers=2))
    pos, vel, h = torch.randn(B, N, 2), torch.randn(B, N, 2), torch.randn(B, N, 1)
    assert equivariance_error(lambda d: model(d["pos"], d["vel"], d["h"]), {"pos": pos, "vel": vel, "h": h},
                              "O2", input={"pos": "points", "vel": "vectors", "h": "scalars"},
                              output="points") < 1e-5


# --- the layer computes the paper's update ------------------------------------------------------------------


def test_dense_layer_matches_a_per_pair_reference():
    hidden, n = 8, 4
    layer = EGNNLayer(hidden, edge_features=1, velocity=True).double()
    nn.init.normal_(layer.coord_mlp[-1].weight, std=0.5)
    h, pos, vel = (torch.randn(1, n, hidden, dtype=torch.float64), torch.randn(1, n, 3, dtype=torch.float64),
                   torch.randn(1, n, 3, dtype=torch.float64))
    a = torch.randn(1, n, n, 1, dtype=torch.float64)
    new_h, new_pos = layer(h, pos, vel, a)

    for i in range(n):
        messages, step = [], torch.zeros(3, dtype=torch.float64)
        for j in range(n):
            if j == i:
                continue
            diff = pos[0, i] - pos[0, j]
            m = layer.edge_mlp(torch.cat([h[0, i], h[0, j], diff.pow(2).sum()[None], a[0, i, j]]))
            messages.append(m)
            step = step + diff * layer.coord_mlp(m) / (n - 1)
        v = layer.vel_mlp(h[0, i]) * vel[0, i] + step
        torch.testing.assert_close(new_pos[0, i], pos[0, i] + v)
        torch.testing.assert_close(new_h[0, i], h[0, i] + layer.node_mlp(torch.cat([h[0, i], sum(messages)])))


def test_padded_particles_change_nothing():
    model = stirred(EGNNDynamics(hidden=16, layers=3))
    x = charged_system(n=3)
    padded = {key: torch.cat([value, torch.randn(B, 2, *value.shape[2:])], dim=1) for key, value in x.items()}
    padded["mask"] = torch.tensor([True, True, True, False, False]).expand(B, 5)
    predicted = model(padded)
    torch.testing.assert_close(predicted[:, :3], model(x))
    torch.testing.assert_close(predicted[:, 3:], padded["pos"][:, 3:])


def test_a_lone_particle_moves_along_its_velocity_only():
    model = EGNNDynamics(hidden=8, layers=2)
    x = charged_system(n=1)
    out = model(x)
    assert torch.isfinite(out).all()
    direction = torch.linalg.cross(out - x["pos"], x["vel"], dim=-1)  # parallel to the velocity
    assert direction.norm() < 1e-5 * x["vel"].norm() * (out - x["pos"]).norm() + 1e-7


# --- training ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [{}, {"normalize": True, "attention": True}], ids=["plain", "variants"])
def test_gradients_flow_to_every_parameter_and_the_positions(options):
    model = EGNN(in_node_features=1, hidden=16, layers=3, edge_features=1, **options)
    pos = torch.randn(B, N, 3)
    pos[:, 1] = pos[:, 0]  # coincident particles: the distance has no gradient there, the model must cope
    pos.requires_grad_(True)
    vel, h, a = torch.randn(B, N, 3), torch.randn(B, N, 1), torch.randn(B, N, N, 1)
    predicted, features = model.forward_with_features(pos, vel, h, a)
    (predicted.square().sum() + features.square().sum()).backward()
    assert torch.isfinite(pos.grad).all() and pos.grad.abs().sum() > 0
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_parameter_count_of_the_nbody_model():
    model = EGNNDynamics(hidden=64, layers=4)
    count = sum(p.numel() for p in model.parameters())
    hidden = 64
    per_layer = (
        (2 * hidden + 2) * hidden + hidden + hidden * hidden + hidden  # φ_e on (h_i, h_j, |x_ij|^2, q_i q_j)
        + 2 * hidden * hidden + hidden + hidden * hidden + hidden  # φ_h
        + hidden * hidden + hidden + hidden  # φ_x, bias-free output
        + hidden * hidden + hidden + hidden + 1  # φ_v
    )
    assert count == 2 * hidden + 4 * per_layer == 133_764
    print(f"EGNNDynamics(hidden=64, layers=4): {count} parameters")


def test_learns_constant_velocity_motion():
    torch.manual_seed(0)
    model = EGNNDynamics(hidden=16, layers=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        x = charged_system(batch=16)
        loss = (model(x) - (x["pos"] + x["vel"])).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.02 * sum(losses[:10]) / 10


# --- errors --------------------------------------------------------------------------------------------------


def test_bad_shapes_say_what_was_given_and_what_was_expected():
    model = EGNN(in_node_features=1, hidden=8, layers=1, edge_features=1)
    pos, vel, h, a = torch.randn(2, 5, 3), torch.randn(2, 5, 3), torch.randn(2, 5, 1), torch.randn(2, 5, 5, 1)
    with pytest.raises(ShapeError, match=r"pos of shape \(B, N, D\); got shape \(5, 3\)"):
        model(pos[0], vel, h, a)
    with pytest.raises(ShapeError, match=r"vel of shape \(B, N, D\) = \(2, 5, 3\); got shape \(2, 4, 3\)"):
        model(pos, vel[:, :4], h, a)
    with pytest.raises(ShapeError, match=r"node_features of shape \(B, N, F\) = \(2, 5, 1\); got shape \(2, 5, 2\)"):
        model(pos, vel, torch.randn(2, 5, 2), a)
    with pytest.raises(ShapeError, match=r"needs node_features .* got None"):
        model(pos, vel, None, a)
    with pytest.raises(ShapeError, match=r"edge_attr of shape \(B, N, N, E\) = \(2, 5, 5, 1\); got shape \(2, 5, 1\)"):
        model(pos, vel, h, a[:, 0])
    with pytest.raises(ShapeError, match=r"needs edge_attr"):
        model(pos, vel, h)
    with pytest.raises(ShapeError, match=r"mask of shape \(B, N\) = \(2, 5\); got shape \(5,\)"):
        model(pos, vel, h, a, mask=torch.ones(5, dtype=torch.bool))
    with pytest.raises(ShapeError, match="velocity=False"):
        EGNN(in_node_features=1, hidden=8, layers=1, edge_features=1, velocity=False)(pos, vel, h, a)
    assert issubclass(ShapeError, symwrap.SymwrapError) and issubclass(ShapeError, ValueError)


def test_bad_dict_inputs_are_refused():
    model = EGNNDynamics(hidden=8, layers=1)
    x = charged_system()
    with pytest.raises(ShapeError, match=r"keys \['pos', 'vel', 'charge'\]; missing \['charge'\]"):
        model({"pos": x["pos"], "vel": x["vel"]})
    with pytest.raises(ShapeError, match=r"charge of shape \(B, N, 1\) = \(4, 5, 1\); got shape \(4, 5, 2\)"):
        model({**x, "charge": torch.randn(B, N, 2)})
    with pytest.raises(ShapeError, match="got Tensor"):
        model(x["pos"])
    assert model({**x, "charge": x["charge"][..., 0]}).shape == (B, N, 3)  # (B, N) charges are fine too


def test_bad_configurations_are_refused():
    with pytest.raises(ConfigError, match="layers >= 1.*layers=0"):
        EGNN(in_node_features=1, layers=0)
    with pytest.raises(ConfigError, match="hidden >= 1.*hidden=0"):
        EGNNLayer(0)
