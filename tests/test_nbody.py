"""The charged N-body simulator: settings, data layout, determinism, physics and E(3) equivariance."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from helpers import make_generator

import symwrap
from symwrap.data import NBodyConfig, NBodyData, integrate, load_nbody, simulate
from symwrap.errors import ActionError, ConfigError, InputDtypeError, SymwrapError

SHORT = NBodyConfig(steps=200)
FIELDS = {"pos": "points", "vel": "vectors", "charge": "scalars"}


def reference_forces(pos: torch.Tensor, charge: torch.Tensor, config: NBodyConfig) -> torch.Tensor:
    """Coulomb forces pair by pair, with each pair force's magnitude capped at ``config.max_force``."""
    forces = torch.zeros_like(pos)
    for b in range(pos.shape[0]):
        for i in range(pos.shape[1]):
            for j in range(pos.shape[1]):
                if i == j:
                    continue
                r = pos[b, i] - pos[b, j]
                force = config.interaction_strength * charge[b, i, 0] * charge[b, j, 0] * r / r.norm() ** 3
                if config.max_force is not None and force.norm() > config.max_force:
                    force = force * (config.max_force / force.norm())
                forces[b, i] += force
    return forces


def test_default_config_is_the_documented_nri_egnn_setting():
    config = NBodyConfig()
    assert (config.n_particles, config.dim, config.steps, config.dt) == (5, 3, 1000, 0.001)
    assert (config.loc_std, config.vel_norm, config.interaction_strength) == (1.0, 0.5, 1.0)
    assert config.box_size is None and config.max_force == pytest.approx(0.1 / config.dt) and config.burn_in == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.steps = 10


def test_shapes_dtypes_and_initial_state():
    data = simulate(500, NBodyConfig(steps=0))
    assert len(data) == 500
    assert data.pos.shape == data.vel.shape == data.target.shape == (500, 5, 3)
    assert data.charge.shape == (500, 5, 1)
    assert all(t.dtype == torch.float32 for t in (data.pos, data.vel, data.charge, data.target))
    assert set(data.charge.unique().tolist()) == {-1.0, 1.0}
    assert data.charge.mean().abs() < 0.1
    torch.testing.assert_close(data.vel.norm(dim=-1), torch.full((500, 5), 0.5))
    assert data.pos.std().item() == pytest.approx(1.0, abs=0.05)
    torch.testing.assert_close(data.target, data.pos)


@pytest.mark.slow
def test_full_size_set_is_finite_and_moves():
    data = simulate(3000)
    assert data.pos.shape == (3000, 5, 3) and data.charge.shape == (3000, 5, 1)
    assert all(torch.isfinite(t).all() for t in (data.pos, data.vel, data.target))
    displacement = (data.target - data.pos).norm(dim=-1)
    assert 0.2 < displacement.mean() < 2.0


def test_simulate_is_deterministic_and_seeded():
    a, b = simulate(8, SHORT, seed=3), simulate(8, SHORT, seed=3)
    for name in ("pos", "vel", "charge", "target"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.pos, simulate(8, SHORT, seed=4).pos)


def test_float64_output_and_target_is_integrate_of_the_inputs():
    data = simulate(6, SHORT, seed=1, dtype=torch.float64)
    assert data.pos.dtype == torch.float64
    pos, _ = integrate(data.pos, data.vel, data.charge, SHORT)
    assert torch.equal(pos, data.target)
    assert torch.equal(simulate(6, SHORT, seed=1).target, data.target.float())


def test_burn_in_moves_t0_along_the_same_trajectory():
    early = simulate(4, NBodyConfig(steps=50), seed=2, dtype=torch.float64)
    late = simulate(4, NBodyConfig(steps=30, burn_in=20), seed=2, dtype=torch.float64)
    _, vel = integrate(early.pos, early.vel, early.charge, NBodyConfig(), steps=20)
    torch.testing.assert_close(late.vel, vel, rtol=0, atol=1e-12)
    torch.testing.assert_close(late.target, early.target, rtol=0, atol=1e-12)


def test_load_nbody_splits_any_size_differ_and_are_reproducible():
    splits = load_nbody(7, 0, 3, SHORT, seed=5)
    assert list(splits) == ["train", "val", "test"]
    assert [len(s) for s in splits.values()] == [7, 0, 3]
    assert splits["val"].pos.shape == (0, 5, 3)
    again = load_nbody(7, 0, 3, SHORT, seed=5)
    assert torch.equal(splits["train"].target, again["train"].target)
    assert not torch.equal(splits["train"].pos[:3], splits["test"].pos)
    other = load_nbody(3, 3, 3, SHORT, seed=6)
    firsts = [s.pos[0] for s in (*splits.values(), *other.values()) if len(s)]
    assert all(not torch.equal(x, y) for i, x in enumerate(firsts) for y in firsts[i + 1 :])


def test_data_indexing_inputs_and_to():
    data = simulate(5, NBodyConfig(steps=0))
    one = data[-1]
    assert len(one) == 1 and torch.equal(one.pos[0], data.pos[4])
    assert len(data[1:4]) == 3 and len(data[torch.tensor([0, 2])]) == 2
    assert torch.equal(data[torch.tensor(2)].vel, data[np.int64(2)].vel) and len(data[np.int64(2)]) == 1
    with pytest.raises(IndexError):
        data[5]
    inputs = data.inputs()
    assert list(inputs) == ["pos", "vel", "charge"] and inputs["pos"] is data.pos
    symwrap.get_action(FIELDS).validate(inputs, symwrap.get_group("E3"))
    moved = data.to("cpu", torch.float64)
    assert isinstance(moved, NBodyData) and moved.target.dtype == torch.float64


def test_forces_match_pairwise_coulomb_with_clipping():
    config = NBodyConfig(steps=1)
    data = simulate(3, config, seed=7, dtype=torch.float64)
    pos = data.pos.clone()
    pos[0, 1] = pos[0, 0] + torch.tensor([0.03, 0.0, 0.04], dtype=torch.float64)  # closer than 0.1: clipped
    _, vel = integrate(pos, data.vel, data.charge, config)
    expected = data.vel + config.dt * reference_forces(pos, data.charge, config)
    torch.testing.assert_close(vel, expected, rtol=1e-12, atol=1e-12)
    unclipped = dataclasses.replace(config, max_force=None)
    _, vel = integrate(pos, data.vel, data.charge, unclipped)
    torch.testing.assert_close(vel, data.vel + config.dt * reference_forces(pos, data.charge, unclipped))


@pytest.mark.parametrize("sign, closer", [(1.0, False), (-1.0, True)])
def test_like_charges_repel_and_opposite_charges_attract(sign, closer):
    pos = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]], dtype=torch.float64)
    charge = torch.tensor([[[1.0], [sign]]], dtype=torch.float64)
    config = NBodyConfig(n_particles=2)
    end, _ = integrate(pos, torch.zeros_like(pos), charge, config, steps=100)
    assert ((end[0, 1] - end[0, 0]).norm() < 1.0) == closer


def test_momentum_is_conserved():
    data = simulate(64, NBodyConfig(steps=0), seed=11, dtype=torch.float64)
    start = data.vel.sum(1)
    _, vel = integrate(data.pos, data.vel, data.charge, NBodyConfig())
    assert (vel.sum(1) - start).abs().max() < 1e-12
    assert (vel - data.vel).abs().max() > 0.1


def test_walls_keep_particles_in_the_box_and_are_off_by_default():
    box = dataclasses.replace(SHORT, box_size=1.0, loc_std=0.5)
    data = simulate(32, box, seed=2)
    assert data.pos.abs().max() <= 1.0 and data.target.abs().max() <= 1.0
    free = simulate(32, dataclasses.replace(box, box_size=None), seed=2)
    assert free.target.abs().max() > 1.0


@pytest.mark.parametrize("group_name", ["O3", "E3", "E3xS"])
def test_dynamics_are_equivariant(group_name):
    config = NBodyConfig()
    data = simulate(32, dataclasses.replace(config, steps=0), seed=13, dtype=torch.float64)
    group = symwrap.get_group(group_name)
    group = group.sized(config.n_particles) if group.needs_size else group
    g = group.sample(32, generator=make_generator(0), dtype=torch.float64)
    inputs = symwrap.get_action(FIELDS).act(group, g, data.inputs())
    points = symwrap.get_action("points")
    end, _ = integrate(data.pos, data.vel, data.charge, config)
    moved_end, _ = integrate(inputs["pos"], inputs["vel"], inputs["charge"], config)
    torch.testing.assert_close(moved_end, points.act(group, g, end), rtol=1e-8, atol=1e-8)


def test_rotation_and_translation_commute_with_integration():
    config = NBodyConfig()
    data = simulate(32, dataclasses.replace(config, steps=0), seed=17, dtype=torch.float64)
    rotation = symwrap.get_group("SO3").sample(32, generator=make_generator(1), dtype=torch.float64)
    shift = 10.0 * torch.randn(32, 1, 3, generator=make_generator(2), dtype=torch.float64)
    end, end_vel = integrate(data.pos, data.vel, data.charge, config)
    moved, moved_vel = integrate(data.pos @ rotation.mT + shift, data.vel @ rotation.mT, data.charge, config)
    torch.testing.assert_close(moved, end @ rotation.mT + shift, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(moved_vel, end_vel @ rotation.mT, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize(
    "changes",
    [{"n_particles": 0}, {"steps": -1}, {"steps": 1.5}, {"dt": 0.0}, {"dt": math.inf}, {"loc_std": -1.0},
     {"box_size": 0.0}, {"max_force": -1.0}, {"burn_in": True}, {"vel_norm": "fast"}],
)
def test_bad_config_values_raise_config_error(changes):
    with pytest.raises(ConfigError, match=f"NBodyConfig.{next(iter(changes))} must be"):
        NBodyConfig(**changes)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ConfigError, match="n must be an integer >= 0.*got -1"):
        simulate(-1)
    with pytest.raises(ConfigError, match="n_val"):
        load_nbody(1, -2, 1)
    with pytest.raises(ConfigError, match="dtype"):
        simulate(1, dtype=torch.int64)
    pos = torch.zeros(2, 5, 3)
    charge = torch.ones(2, 5, 1)
    with pytest.raises(ActionError, match=r"pos must be \(B, 5, 3\).*got shape \(2, 4, 3\)"):
        integrate(torch.zeros(2, 4, 3), pos, charge)
    with pytest.raises(ActionError, match=r"charge must have shape \(2, 5, 1\).*got \(2, 5\)"):
        integrate(pos, pos, charge[..., 0])
    with pytest.raises(InputDtypeError, match="floating-point"):
        integrate(pos, pos, charge.long())
    with pytest.raises(ConfigError, match="steps"):
        integrate(pos, pos, charge, steps=-3)
    with pytest.raises(SymwrapError, match=r"vel must have shape \(1, 5, 3\)"):
        NBodyData(pos[:1], pos, charge[:1], pos[:1])
