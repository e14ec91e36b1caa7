import dataclasses
import re
import typing
import warnings

import pytest
import torch
from torch import nn

import symwrap
from symwrap.errors import (
    ApproximationWarning,
    ConfigError,
    IncompatibleGroupError,
    NonFiniteInputError,
    UnknownStrategyError,
)
from symwrap.metrics import equivariance_error, invariance_error
from symwrap.strategies import AveragingConfig


def tiny_timm_vit(in_chans=3, num_classes=5):
    timm = pytest.importorskip("timm")
    return timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=16, patch_size=4, in_chans=in_chans,
        num_classes=num_classes, embed_dim=32, depth=2, num_heads=2,
    ).eval()


def tiny_hf_vit(num_labels=5):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, num_labels=num_labels,
    )
    return transformers.ViTForImageClassification(config).eval()


def point_mlp(n_points=8, out=3, dtype=torch.float32):
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * n_points, 64), nn.Tanh(), nn.Linear(64, out)).to(dtype)


def point_backbone(strategy):
    """(B, 8, 3) points to a 3-vector: an MLP, or a Vector-Neuron network for strategies that take an
    equivariant backbone (relaxation)."""
    if not symwrap.get_strategy(strategy).takes_equivariant_backbone:
        return point_mlp()
    from contract_cases import VNPointNet

    return VNPointNet()


@pytest.mark.parametrize("group", ["C4", "D4"])
@pytest.mark.parametrize("make", [tiny_timm_vit, tiny_hf_vit], ids=["timm", "hf"])
def test_averaged_vits_are_invariant_to_round_off(make, group):
    backbone = make()
    x = torch.randn(3, 3, 16, 16)
    model = symwrap.wrap(backbone, group=group, strategy="averaging", input="image", output="invariant")
    bare = invariance_error(model.backbone, x, group, input="image")
    wrapped = invariance_error(model, x, group, input="image")
    assert bare > 1e-2
    assert wrapped <= 1e-5
    assert model(x).shape == (3, 5)


def test_regular_outputs_are_equivariant():
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(64, 8))
    model = symwrap.wrap(backbone, group="D4", strategy="averaging", input="image", output="regular")
    x = torch.randn(4, 1, 8, 8)
    assert model.equivariance_error(x) <= 1e-5


@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("group,output", [("O3", "invariant"), ("E3", "invariant"), ("SO3", "vector"),
                                          ("O3", "vector"), ("SE3", "point"), ("E3", "point")])
def test_frames_make_a_point_mlp_exactly_equivariant(group, output, dtype, tolerance):
    mlp = point_mlp(dtype=dtype)
    x = torch.randn(6, 8, 3, dtype=dtype)
    model = symwrap.wrap(mlp, group=group, strategy="frames", input="points", output=output)
    assert equivariance_error(mlp, x, group, input="points", output=output) > 1e-2
    assert equivariance_error(model, x, group, input="points", output=output, n=32) <= tolerance


def test_frames_on_dict_inputs_rotate_velocities_too():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.mlp = point_mlp(n_points=16, out=3)

        def forward(self, x):
            return self.mlp(torch.cat([x["pos"], x["vel"]], dim=1))

    x = {"pos": torch.randn(4, 8, 3), "vel": torch.randn(4, 8, 3), "charge": torch.randn(4, 8)}
    spec = {"pos": "points", "vel": "vectors", "charge": "scalars"}
    model = symwrap.wrap(Net(), group="E3", strategy="frames", input=spec, output="vector")
    assert equivariance_error(model, x, "E3", input=spec, output="vector", n=16) <= 1e-5


def test_frames_survive_degenerate_point_sets():
    mlp = point_mlp(out=3)
    model = symwrap.wrap(mlp, group="SO3", strategy="frames", input="points", output="vector")
    x = torch.zeros(3, 8, 3)
    x[1, :, 0] = torch.arange(8.0)  # collinear
    x[2, :4, :2] = torch.tensor([[1.0, 0], [0, 1], [-1, 0], [0, -1]])  # planar square: two equal eigenvalues
    x = x.requires_grad_(True)
    y = model(x)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()


def test_frames_refuse_finite_groups():
    with pytest.raises(IncompatibleGroupError, match="averaging"):
        symwrap.wrap(point_mlp(), group="C4", strategy="frames", input="points")


def test_set_mlp_averaged_over_permutations_is_invariant():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(5 * 4, 32), nn.ReLU(), nn.Linear(32, 2))
    x = torch.randn(6, 5, 4)
    model = symwrap.wrap(mlp, group="S", strategy="averaging", input="set")
    assert invariance_error(mlp, x, "S", input="set") > 1e-2
    assert invariance_error(model, x, "S", input="set") <= 1e-5


def test_monte_carlo_averaging_reduces_the_error_of_an_so3_backbone():
    mlp = point_mlp(out=1)
    x = torch.randn(16, 8, 3)
    g = torch.Generator().manual_seed(0)
    model = symwrap.wrap(mlp, group="SO3", strategy="averaging", input="points", num_samples_train=256, seed=0).eval()
    bare = invariance_error(mlp, x, "SO3", input="points", n=8, generator=g)
    averaged = invariance_error(model, x, "SO3", input="points", n=8, generator=g)
    assert averaged < bare / 4


def test_the_same_seed_gives_the_same_output():
    mlp = point_mlp(out=1)
    x = torch.randn(4, 8, 3)
    a = symwrap.wrap(mlp, group="SO3", strategy="averaging", input="points", num_samples_train=4, seed=3)
    b = symwrap.wrap(mlp, group="SO3", strategy="averaging", input="points", num_samples_train=4, seed=3)
    assert torch.equal(a(x), b(x))


def test_one_backbone_call_on_a_bigger_batch():
    calls = []

    class Recorder(nn.Module):
        def forward(self, x):
            calls.append(x.shape[0])
            return x.flatten(1).sum(1, keepdim=True)

    model = symwrap.wrap(Recorder(), group="D4", strategy="averaging", input="image")
    model(torch.randn(3, 1, 4, 4))
    assert calls == [8 * 3]


def test_loss_returns_named_terms():
    model = symwrap.wrap(point_mlp(out=4), group="O3", strategy="frames", input="points")
    x, y = torch.randn(5, 8, 3), torch.randint(4, (5,))
    terms = model.loss(model(x), y, x)
    assert set(terms) == {"task", "total"}
    terms["total"].backward()
    assert torch.allclose(terms["task"], nn.functional.cross_entropy(model(x), y))
    target = torch.randn(5, 4)
    regression = model.loss(model(x), target)
    assert torch.allclose(regression["total"], nn.functional.mse_loss(model(x), target))


def test_save_and_load_round_trip_is_bit_identical(tmp_path):
    backbone = tiny_timm_vit()
    model = symwrap.wrap(backbone, group="C4", strategy="averaging", input="image")
    x = torch.randn(2, 3, 16, 16)
    model.save_pretrained(tmp_path)
    fresh = tiny_timm_vit()
    restored = symwrap.load(tmp_path, backbone=fresh)
    assert isinstance(restored.config, AveragingConfig)
    assert torch.equal(model(x), restored(x))


def test_wrap_errors_name_what_was_given_and_what_is_valid():
    with pytest.raises(UnknownStrategyError, match="'remulx'.*averaging"):
        symwrap.wrap(point_mlp(), group="SO3", strategy="remulx", input="points")
    with pytest.raises(ConfigError, match="num_sample.*valid fields"):
        symwrap.wrap(point_mlp(), group="SO3", strategy="averaging", input="points", num_sample=3)
    with pytest.raises(ConfigError, match="num_samples_train must be >= 1"):
        symwrap.wrap(point_mlp(), group="SO3", strategy="averaging", input="points", num_samples_train=0)
    with pytest.raises(IncompatibleGroupError, match="got SO3"):
        symwrap.wrap(tiny_timm_vit(), group="SO3", strategy="averaging", input="image")


def test_validation_catches_nan_and_bad_shapes_before_the_backbone():
    model = symwrap.wrap(point_mlp(), group="SO3", strategy="frames", input="points")
    x = torch.randn(2, 8, 3)
    x[0, 0, 0] = float("inf")
    with pytest.raises(NonFiniteInputError):
        model(x)
    with pytest.raises(symwrap.SymwrapError, match="transpose"):
        model(torch.randn(2, 3, 8))
    unchecked = symwrap.wrap(point_mlp(), group="SO3", strategy="averaging", input="points", validate=False)
    assert unchecked(torch.randn(2, 8, 3)).shape == (2, 3)


def test_graph_backbone_averaged_over_node_permutations():
    pyg = pytest.importorskip("torch_geometric.data")

    class FirstNodeReadout(nn.Module):
        """Reads each graph's first node: as far from permutation-invariant as it gets."""

        def forward(self, batch):
            first = torch.cumsum(torch.bincount(batch.batch), 0) - torch.bincount(batch.batch)
            return batch.x[first]

    graphs = [
        pyg.Data(x=torch.randn(n, 2), edge_index=torch.randint(n, (2, 2 * n)), pos=torch.randn(n, 3))
        for n in (3, 5, 4, 6)
    ]
    batch = pyg.Batch.from_data_list(graphs)
    model = symwrap.wrap(FirstNodeReadout(), group="S", strategy="averaging", input="graph", num_samples_train=512,
                         seed=0)
    g = torch.Generator().manual_seed(1)
    bare = invariance_error(FirstNodeReadout(), batch, "S", input="graph", n=8, generator=g)
    averaged = invariance_error(model, batch, "S", input="graph", n=8, generator=g)
    assert averaged < bare / 5
    # the exact answer is the mean over nodes, which Monte Carlo approaches
    exact = torch.stack([graph.x.mean(0) for graph in graphs])
    assert torch.allclose(model(batch), exact, atol=0.25)


# --- finite groups bound to data are enumerated: exact averages over S on sets and graphs ------------------------
class FirstMemberMLP(nn.Module):
    """Reads each set's first member (and, for graphs, each graph's first node): far from invariant."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(features, 3)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if isinstance(x, torch.Tensor):
            return self.linear(x.flatten(2)[:, 0] if x.ndim > 2 else x[:, :1])
        counts = torch.bincount(x.batch)
        return self.linear(torch.cat([x.x, x.pos], -1)[torch.cumsum(counts, 0) - counts])


def ragged_graphs(sizes=(3, 4, 5), dim=3):
    pyg = pytest.importorskip("torch_geometric.data")
    generator = torch.Generator().manual_seed(0)
    return pyg.Batch.from_data_list([
        pyg.Data(x=torch.randn(n, 2, generator=generator), pos=torch.randn(n, dim, generator=generator),
                 edge_index=torch.randint(n, (2, 2 * n), generator=generator)) for n in sizes])


@pytest.mark.parametrize("group, dim, sizes", [("S", 3, (3, 4, 5)), ("C4xS", 2, (2, 3))])
def test_averaging_over_permutations_of_graphs_of_different_sizes_is_exact(group, dim, sizes):
    batch = ragged_graphs(sizes, dim)
    backbone = FirstMemberMLP(2 + dim)
    model = symwrap.wrap(backbone, group=group, strategy="averaging", input="graph")
    assert model.is_exact(batch)
    assert equivariance_error(backbone, batch, group, input="graph") > 0.1
    assert equivariance_error(model, batch, group, input="graph") < 1e-5
    backbone.calls = 0
    prediction = model(batch)
    assert backbone.calls == 1  # every element of S_{n_max} (and C4) for every graph: one backbone call
    if group == "S":  # the exact average of the first node's readout is the readout of the mean node
        first = torch.stack([torch.cat([g.x, g.pos], -1).mean(0) for g in batch.to_data_list()])
        assert torch.allclose(prediction, backbone.linear(first), atol=1e-5)


@pytest.mark.parametrize("spec, shape, features", [
    ("set", (3, 5, 2), 2), ("adjacency", (3, 5, 5), 5), ("points", (3, 5, 3), 3), ("scalars", (3, 5), 1),
])
def test_averaging_over_permutations_of_dense_sets_is_exact(spec, shape, features):
    x = torch.randn(*shape)
    backbone = FirstMemberMLP(features)
    model = symwrap.wrap(backbone, group="S", strategy="averaging", input=spec)
    assert model.is_exact(x)
    assert equivariance_error(backbone, x, "S", input=spec) > 0.1
    assert equivariance_error(model, x, "S", input=spec) < 1e-5


# --- empty and meta inputs: one answer in every strategy ---------------------------------------------------------
@pytest.mark.parametrize("strategy", symwrap.list_strategies())
@pytest.mark.parametrize("validate", [True, False])
@pytest.mark.parametrize("shape, match", [((0, 8, 3), "batch of 0 samples"), ((2, 0, 3), r"axis 1 \(N\) is empty")])
def test_empty_point_clouds_are_refused_by_every_strategy(strategy, validate, shape, match):
    from symwrap.errors import EmptyInputError

    model = symwrap.wrap(point_backbone(strategy), group="SO3", strategy=strategy, input="points",
                         validate=validate)
    with pytest.raises(EmptyInputError, match=match):
        model(torch.randn(*shape))


@pytest.mark.parametrize("strategy", symwrap.list_strategies())
def test_meta_inputs_are_refused_by_every_strategy(strategy):
    from symwrap.errors import DeviceError

    model = symwrap.wrap(point_backbone(strategy), group="SO3", strategy=strategy, input="points")
    with pytest.raises(DeviceError, match="'meta' device"):
        model(torch.randn(2, 8, 3, device="meta"))


def test_frames_and_principal_axes_refuse_empty_point_sets_without_validation():
    from symwrap.errors import EmptyInputError
    from symwrap.geometry import principal_axes
    from symwrap.strategies.symmetrization.frames import pca_frames

    for shape in [(2, 0, 3), (0, 4, 3)]:
        with pytest.raises(EmptyInputError, match=rf"shape {tuple(shape)}".replace("(", r"\(").replace(")", r"\)")):
            principal_axes(torch.zeros(shape))
        with pytest.raises(EmptyInputError):
            pca_frames(torch.zeros(shape), special=True)


# --- wrap(..., example_input=): a mismatch raises at wrap() -----------------------------------------------------
def test_example_input_makes_a_backbone_output_mismatch_raise_at_wrap():
    from symwrap.errors import BackboneOutputError

    x = torch.randn(4, 8, 3)
    with pytest.raises(BackboneOutputError, match=r"returned .* shape \(8, 5\).*output='regular'.*C4 must be \(B, 4\)"):
        symwrap.wrap(nn.Sequential(nn.Flatten(), nn.Linear(16, 5)), group="C4", strategy="averaging",
                     input="points", output="regular", example_input=torch.randn(4, 8, 2))
    with pytest.raises(symwrap.errors.ActionError, match=r"\(B, N, 3\)"):
        symwrap.wrap(point_mlp(), group="SO3", strategy="averaging", input="points", example_input=x[:, :, :2])
    # without it, the same backbone is wrapped and the first forward raises
    model = symwrap.wrap(point_mlp(out=3), group="SO3", strategy="averaging", input="points", output="points")
    with pytest.raises(BackboneOutputError, match="does not fit output='points'"):
        model(x)


def test_example_input_runs_two_samples_without_gradients_and_keeps_every_training_flag():
    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.mlp = point_mlp()
            self.seen = []

        def forward(self, x):
            self.seen.append((x.shape[0], self.training, torch.is_grad_enabled()))
            return self.mlp(x)

    backbone = Recorder()
    backbone.mlp.eval()  # a frozen part the user keeps in eval mode
    model = symwrap.wrap(backbone, group="Mz", strategy="averaging", input="points", example_input=torch.randn(5, 8, 3))
    assert backbone.seen == [(2 * 2, False, False)]  # the first 2 samples, 2 copies each, eval mode, no grad
    assert model.training and backbone.training and not backbone.mlp.training


# --- validation: every strategy refuses NaN/inf while validate=True ----------------------------------------------
@pytest.mark.parametrize("strategy", symwrap.list_strategies())
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
def test_nonfinite_inputs_are_refused_by_every_strategy(strategy, value):
    calls = []
    backbone = point_backbone(strategy)
    backbone.register_forward_hook(lambda *_: calls.append(1))
    model = symwrap.wrap(backbone, group="SO3", strategy=strategy, input="points")
    x = torch.randn(2, 8, 3)
    x[1, 2, 0] = value
    with pytest.raises(NonFiniteInputError, match=r"shape \(2, 8, 3\) has 1 NaN or inf entries.*validate=False"):
        model(x)
    assert calls == []  # refused before the backbone ran


@pytest.mark.parametrize("strategy", symwrap.list_strategies())
def test_without_validation_a_nonfinite_sample_spoils_only_its_own_row(strategy):
    """validate=False skips the finiteness check: the NaN reaches the backbone, and only its sample's output."""
    model = symwrap.wrap(point_backbone(strategy), group="SO3", strategy=strategy, input="points", validate=False,
                         seed=0)
    x = torch.randn(3, 8, 3)
    x[1, 2, 0] = float("nan")
    y = model.eval()(x)
    assert y.shape == (3, 3)
    assert torch.isfinite(y[[0, 2]]).all() and torch.isnan(y[1]).all()


# --- frames on planar point sets: exact, with |F| = 4 (O2) or 2 (SO2) copies ------------------------------------
@pytest.mark.parametrize("group, frames", [("O2", 4), ("SO2", 2)])
@pytest.mark.parametrize("output", ["invariant", "vector", "points"])
def test_frames_make_a_planar_point_mlp_exactly_equivariant(group, frames, output):
    out = {"invariant": 2, "vector": 2, "points": 12}[output]
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(12, 32), nn.Tanh(), nn.Linear(32, out))
    if output == "points":
        mlp.append(nn.Unflatten(1, (6, 2)))
    x = torch.randn(5, 6, 2, generator=torch.Generator().manual_seed(1))
    model = symwrap.wrap(mlp, group=group, strategy="frames", input="points", output=output)
    assert model.is_exact(x)
    assert equivariance_error(mlp, x, group, input="points", output=output) > 0.5
    assert equivariance_error(model, x, group, input="points", output=output, n=16) <= 1e-5
    rows = []
    mlp.register_forward_hook(lambda _m, inputs, _o: rows.append(inputs[0].shape[0]))
    model(x)
    assert rows == [frames * 5]  # every frame element of every sample, in one backbone call


@pytest.mark.parametrize("special", [True, False])
def test_pca_frames_are_the_signed_principal_axes(special):
    from symwrap.strategies.symmetrization.frames import pca_frames

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 20, 3, generator=generator, dtype=torch.float64) * torch.tensor([3.0, 2.0, 1.0],
                                                                                       dtype=torch.float64)
    x = x + torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    rotations, centroids, degenerate = pca_frames(x, special=special)
    assert rotations.shape == (4, 4 if special else 8, 3, 3) and not degenerate.any()
    assert torch.allclose(centroids, x.mean(1))
    eye = torch.eye(3, dtype=torch.float64).expand_as(rotations)
    assert torch.allclose(rotations.transpose(-1, -2) @ rotations, eye, atol=1e-12)
    determinants = torch.linalg.det(rotations)
    if special:
        assert torch.allclose(determinants, torch.ones_like(determinants))
    else:  # every sign choice: half of them reflections
        assert int((determinants > 0).sum()) == int((determinants < 0).sum()) == 16
    centred = x - centroids[:, None]
    covariance = centred.transpose(1, 2) @ centred / 20
    variances = torch.einsum("bfdi,bde,bfei->bfi", rotations, covariance, rotations)  # along each column
    assert (variances[..., :-1] > variances[..., 1:]).all()  # largest variance first
    eigenvalues = torch.linalg.eigvalsh(covariance).flip(-1)
    assert torch.allclose(variances, eigenvalues[:, None].expand_as(variances), atol=1e-10)
    # every frame element differs from the first by the signs of its columns only
    ratio = (rotations * rotations[:, :1]).sum(-2)
    assert torch.allclose(ratio.abs(), torch.ones_like(ratio), atol=1e-12)
    assert len({tuple(r.sign().int().tolist()) for r in ratio[0]}) == rotations.shape[1]


def test_degenerate_point_sets_get_haar_random_frames_and_are_not_exact():
    from symwrap.strategies.symmetrization.frames import pca_frames

    square = torch.tensor([[1.0, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0], [0, 0, 0.5], [0, 0, -0.5]])
    generic = torch.randn(6, 3, generator=torch.Generator().manual_seed(0)) * torch.tensor([3.0, 2.0, 1.0])
    x = torch.stack([generic, square])
    first = pca_frames(x, special=True, generator=torch.Generator().manual_seed(1))
    second = pca_frames(x, special=True, generator=torch.Generator().manual_seed(2))
    assert first[2].tolist() == [False, True]
    assert torch.equal(first[0][0], second[0][0])  # the generic set's frame is fixed
    assert not torch.allclose(first[0][1], second[0][1])  # the degenerate one is drawn
    assert torch.allclose(torch.linalg.det(first[0][1]), torch.ones(4))
    reflections = pca_frames(x, special=False, generator=torch.Generator().manual_seed(1))[0][1]
    assert {int(d) for d in torch.linalg.det(reflections).round()} == {-1, 1}  # O(3): rotations and reflections
    model = symwrap.wrap(point_mlp(n_points=6), group="SO3", strategy="frames", input="points", output="vector")
    assert model.is_exact(x[:1]) and not model.is_exact(x)
    # variances 1/3, 0.995/3 and 1/12: a relative gap of 0.005 between the first two
    close = torch.tensor([[1.0, 0, 0], [0, 0.995**0.5, 0], [-1, 0, 0], [0, -(0.995**0.5), 0], [0, 0, 0.5],
                          [0, 0, -0.5]])[None]
    strict = symwrap.wrap(point_mlp(n_points=6), group="SO3", strategy="frames", input="points", degenerate_tol=1e-2)
    assert model.is_exact(close) and not strict.is_exact(close)


# --- averaging: the evaluation sample count ----------------------------------------------------------------------
class RowCounter(nn.Module):
    """A point MLP that records the batch size of every call."""

    def __init__(self, n_points=8, out=3):
        super().__init__()
        self.mlp = point_mlp(n_points, out)
        self.rows = []

    def forward(self, x):
        self.rows.append(x.shape[0])
        return self.mlp(x)


@pytest.mark.parametrize("eval_samples", [5, None])
def test_averaging_draws_num_samples_eval_copies_in_evaluation(eval_samples):
    backbone = RowCounter()
    model = symwrap.wrap(backbone, group="SO3", strategy="averaging", input="points", num_samples_train=3,
                         num_samples_eval=eval_samples, seed=0)
    x = torch.randn(2, 8, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ApproximationWarning)
        model.train()(x)
        model.eval()(x)
    assert backbone.rows == [3 * 2, (eval_samples or 3) * 2]


def test_averaging_enumerates_finite_groups_up_to_max_exhaustive_order():
    backbone = RowCounter(out=3)
    x = torch.randn(2, 8, 3)
    exhaustive = symwrap.wrap(backbone, group="S", strategy="averaging", input="set", max_exhaustive_order=40320,
                              num_samples_train=3, seed=0)
    sampled = symwrap.wrap(backbone, group="S", strategy="averaging", input="set", max_exhaustive_order=40319,
                           num_samples_train=3, seed=0)
    assert exhaustive.is_exact(x) and not sampled.is_exact(x)  # |S_8| = 40320
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ApproximationWarning)
        sampled(x)
    assert backbone.rows == [3 * 2]


# --- config fields: type checks from the annotations, ranges, unknown names --------------------------------------
@dataclasses.dataclass
class _AnnotatedConfig(symwrap.strategies.StrategyConfig):
    """One field per kind of annotation that fields.py reads."""

    count: int = 1
    scale: float = 1.0
    flag: bool = False
    name: str = "a"
    maybe: int | None = None
    either: float | str = 1.0
    items: list[int] = dataclasses.field(default_factory=list)
    pairs: tuple[str, ...] = ()
    weights: dict[str, float] = dataclasses.field(default_factory=dict)
    anything: typing.Any = None
    module: nn.Module | None = None


@pytest.mark.parametrize("field, value", [
    ("count", 2), ("scale", 3), ("scale", -2.5), ("flag", True), ("name", ""), ("maybe", None), ("maybe", 0),
    ("either", "x"), ("either", 2), ("items", [1, 2]), ("items", (3,)), ("pairs", ("a", "b")), ("pairs", []),
    ("weights", {"a": 1, "b": 0.5}), ("weights", {}), ("anything", object()), ("module", nn.Linear(1, 1)),
    ("seed", None), ("seed", 7), ("validate", False),
])
def test_config_fields_accept_what_their_annotation_allows(field, value):
    assert getattr(_AnnotatedConfig(**{field: value}), field) is value


@pytest.mark.parametrize("field, value, expected", [
    ("count", 2.5, "an integer"), ("count", True, "an integer"), ("count", "3", "an integer"),
    ("scale", float("nan"), "a finite number"), ("scale", float("inf"), "a finite number"),
    ("scale", True, "a finite number"), ("scale", "1", "a finite number"),
    ("flag", 1, "True or False"), ("flag", None, "True or False"), ("name", 1, "a string"),
    ("maybe", 1.0, "an integer or None"), ("maybe", False, "an integer or None"),
    ("either", None, "a finite number or a string"),
    ("items", [1, 2.0], r"a list of \(an integer\)"), ("items", 3, r"a list of \(an integer\)"),
    ("items", "12", r"a list of \(an integer\)"), ("pairs", ("a", 1), r"a list of \(a string\)"),
    ("weights", {"a": "x"}, "a dict of a string to a finite number"),
    ("weights", {1: 1.0}, "a dict of a string to a finite number"),
    ("weights", [("a", 1.0)], "a dict of a string to a finite number"),
    ("module", "linear", "Module or None"), ("seed", "abc", "an integer or None"), ("validate", "yes", "True or False"),
])
def test_config_fields_refuse_values_their_annotation_does_not_allow(field, value, expected):
    shown = re.escape(f"{value!r} ({type(value).__name__})")
    with pytest.raises(ConfigError, match=rf"^_AnnotatedConfig\.{field} must be {expected}; got {shown}$"):
        _AnnotatedConfig(**{field: value})


@pytest.mark.parametrize("strategy, values, message", [
    ("averaging", {"num_samples_train": 0}, "num_samples_train must be >= 1; got 0"),
    ("averaging", {"max_exhaustive_order": 0}, "max_exhaustive_order must be >= 1; got 0"),
    ("averaging", {"num_samples_eval": 0}, "num_samples_eval must be >= 1; got 0"),
    ("averaging", {"num_samples_train": "8"}, r"AveragingConfig.num_samples_train must be an integer; got '8' \(str\)"),
    ("averaging", {"task_loss": "l1"}, "task_loss must be 'auto', 'cross_entropy', 'mse' or 'gaussian_nll'; got 'l1'"),
    ("frames", {"degenerate_tol": -0.1}, r"degenerate_tol must be in \[0, 1\); got -0.1"),
    ("frames", {"degenerate_tol": 1.0}, r"degenerate_tol must be in \[0, 1\); got 1.0"),
    ("frames", {"seed": 1.5}, r"FramesConfig.seed must be an integer or None; got 1.5 \(float\)"),
])
def test_config_ranges_are_checked_with_a_message_naming_the_field(strategy, values, message):
    config_class = symwrap.strategies.get_strategy(strategy).config_class
    with pytest.raises(ConfigError, match=message):
        config_class(**values)


@pytest.mark.parametrize("values", [{"num_samples_train": 1, "max_exhaustive_order": 1, "num_samples_eval": 1},
                                    {"num_samples_eval": None}, {"task_loss": "mse"}, {"task_loss": "cross_entropy"}])
def test_averaging_config_accepts_the_edges_of_its_ranges(values):
    assert symwrap.strategies.AveragingConfig(**values)


@pytest.mark.parametrize("tol", [0.0, 0.999])
def test_frames_config_accepts_the_edges_of_its_range(tol):
    assert symwrap.strategies.FramesConfig(degenerate_tol=tol).degenerate_tol == tol


def test_config_round_trips_through_a_dict_and_names_unknown_fields():
    config = symwrap.strategies.AveragingConfig(num_samples_train=3, seed=2, validate=False)
    values = config.to_dict()
    assert values == {"strategy": "averaging", "validate": False, "task_loss": "auto", "seed": 2,
                      "num_samples_train": 3, "num_samples_eval": None, "max_exhaustive_order": 1024}
    assert symwrap.strategies.AveragingConfig.from_dict(values) == config
    with pytest.raises(ConfigError, match=r"^AveragingConfig has no field\(s\) \['a', 'b'\]; valid fields: "
                                          r"\['max_exhaustive_order', 'num_samples_eval', 'num_samples_train', 'seed', "
                                          r"'task_loss', 'validate'\]$"):
        symwrap.strategies.AveragingConfig.from_dict({**values, "b": 1, "a": 2})


# --- targets: check_target says what does not fit ----------------------------------------------------------------
LOGITS = torch.zeros(4, 3)


@pytest.mark.parametrize("pred, target, kind", [
    (LOGITS, torch.tensor([0, 1, 2, 2]), "cross_entropy"),
    (LOGITS, torch.tensor([0, 0, 0, 0]), "cross_entropy"),
    (LOGITS, torch.full((4, 3), 1 / 3), "cross_entropy"),  # class probabilities
    (torch.zeros(2, 3, 5, 5), torch.randint(3, (2, 5, 5)), "cross_entropy"),  # dense logits (B, C, H, W)
    (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), "cross_entropy"),
    (LOGITS, torch.randn(4, 3), "mse"),
    ({"a": LOGITS, "b": torch.zeros(4, 2)}, {"b": torch.randn(4, 2), "a": torch.randn(4, 3)}, "mse"),
    (torch.zeros(4, 3, device="meta"), torch.zeros(4, dtype=torch.long, device="meta"), "cross_entropy"),
])
def test_check_target_accepts_targets_that_fit(pred, target, kind):
    from symwrap.strategies.checks import check_target

    check_target(pred, target, kind)


@pytest.mark.parametrize("pred, target, kind, message", [
    (LOGITS, None, "mse", r"needs a target; got None\. .*model\.auxiliary_loss\(x\)"),
    ({"a": LOGITS}, LOGITS, "mse", r"the prediction is a dict with keys \['a'\] and the target a torch.float32 "
                                   r"tensor of shape \(4, 3\); dict predictions need dict targets with the same keys"),
    (LOGITS, {"a": LOGITS}, "mse", "dict predictions need dict targets"),
    ({"a": LOGITS}, {"a": LOGITS, "b": LOGITS}, "mse", "dict predictions need dict targets with the same keys"),
    ({"a": LOGITS, "b": LOGITS}, {"a": LOGITS, "b": LOGITS[:2]}, "mse", r"^field 'b': the target is .*\(2, 3\)"),
    (LOGITS, [0, 1, 2, 3], "cross_entropy", r"the target must be a torch.Tensor; got a list of 4 item\(s\)"),
    ([0.0], torch.zeros(1), "mse", r"the prediction must be a torch.Tensor; got a list of 1 item\(s\)"),
    (LOGITS, torch.tensor([0, 1, 2]), "cross_entropy", r"the target is .*\(3,\) for a prediction that is .*\(4, 3\); "
                                                       "they need the same batch size"),
    (torch.zeros(()), torch.zeros(()), "mse", "same batch size"),
    (LOGITS, torch.tensor(1), "cross_entropy", "same batch size"),
    (LOGITS, torch.zeros(4), "cross_entropy", r"class probabilities shaped like the logits \(4, 3\); got a "
                                              r"torch.float32 tensor of shape \(4,\)"),
    (LOGITS, torch.ones(4, dtype=torch.bool), "cross_entropy", "cross-entropy takes integer class indices; got a "
                                                               "torch.bool tensor"),
    (LOGITS, torch.zeros(4, 1, dtype=torch.long), "cross_entropy", r"over logits \(4, 3\) takes class indices of "
                                                                   r"shape \(4,\); got .*\(4, 1\)"),
    (torch.zeros(4), torch.zeros(4, dtype=torch.long), "cross_entropy", r"over logits \(4,\) takes class indices"),
    (LOGITS, torch.tensor([0, 1, 3, 2]), "cross_entropy", r"must lie in \[0, 3\) for 3 logits; got values from 0 to 3"),
    (LOGITS, torch.tensor([0, -1, 2, 2]), "cross_entropy", "got values from -1 to 2"),
    (LOGITS, torch.zeros(4, 3, dtype=torch.long), "mse", r"compares floating-point values; the target is a "
                                                         r"torch.int64 tensor.*task_loss='cross_entropy'"),
    (LOGITS, torch.zeros(4, 1), "mse", r"without broadcasting; the prediction is .*\(4, 3\) and the target .*\(4, 1\)"),
])
def test_check_target_says_what_does_not_fit(pred, target, kind, message):
    from symwrap.errors import TargetError
    from symwrap.strategies.checks import check_target

    with pytest.raises(TargetError, match=message):
        check_target(pred, target, kind)


@pytest.mark.parametrize("task_loss", ["auto", "mse", "cross_entropy"])
def test_task_loss_follows_the_config_and_the_target(task_loss):
    model = symwrap.wrap(point_mlp(out=4), group="O3", strategy="frames", input="points", task_loss=task_loss)
    pred, labels, values = torch.randn(5, 4), torch.randint(4, (5,)), torch.randn(5, 4)
    probabilities = values.softmax(-1)
    if task_loss != "mse":
        assert torch.equal(model.task_loss(pred, labels), nn.functional.cross_entropy(pred, labels))
    if task_loss != "cross_entropy":
        assert torch.equal(model.task_loss(pred, values), nn.functional.mse_loss(pred, values))
    if task_loss == "cross_entropy":  # float targets are class probabilities, not regression values
        assert torch.equal(model.task_loss(pred, probabilities), nn.functional.cross_entropy(pred, probabilities))
    pred_dict = {"a": pred, "b": pred[:, :2]}
    if task_loss != "cross_entropy":
        expected = nn.functional.mse_loss(pred, values) + nn.functional.mse_loss(pred[:, :2], values[:, :2])
        assert torch.allclose(model.task_loss(pred_dict, {"a": values, "b": values[:, :2]}), expected)
    if task_loss == "auto":  # a dict with any integer field is read as classification
        with pytest.raises(symwrap.errors.TargetError, match="field 'b'"):
            model.task_loss(pred_dict, {"a": values, "b": labels})


def test_loss_adds_the_auxiliary_terms_only_when_given_the_input():
    class WithTerm(symwrap.strategies.Averaging):
        def auxiliary_loss(self, x):
            return {"extra": x.sum() * 0 + 2.0}

    model = WithTerm(point_mlp(), symwrap.get_group("O3"), symwrap.get_action("points"),
                     symwrap.get_action("invariant"), symwrap.strategies.AveragingConfig())
    pred, target = torch.randn(2, 3), torch.randn(2, 3)
    task = nn.functional.mse_loss(pred, target)
    assert model.loss(pred, target) == {"task": task, "total": task}
    terms = model.loss(pred, target, torch.randn(2, 8, 3))
    assert set(terms) == {"task", "extra", "total"} and torch.allclose(terms["total"], task + 2.0)
    assert symwrap.strategies.Averaging.auxiliary_loss(model, None) == {}


# --- what the backbone returns, and what it raises ------------------------------------------------------------------
class Returns(nn.Module):
    def __init__(self, make):
        super().__init__()
        self.make = make
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return self.make(x)


@pytest.mark.parametrize("make, output, message", [
    (lambda x: (x.sum((1, 2))[:, None].expand(-1, 3),), "invariant",
     r"returned a tuple of 1 item\(s\); .* \(a tensor\)\. .*OutputAdapter\(backbone, key=0\)"),
    (lambda x: {"logits": x.sum((1, 2))[:, None]}, "invariant",
     r"returned a dict with keys \['logits'\]; .*OutputAdapter\(backbone, key='logits'\), or declare a dict output"),
    (lambda x: x.sum((1, 2)).long()[:, None], "invariant", r"returned a torch.int64 tensor .* must be floating point"),
    (lambda x: x.sum((1, 2))[:1, None], "invariant", r"returned 1 rows for a batch of 16 inputs .* one row per input"),
    (lambda x: x.sum(2), "vector", r"returned a torch.float32 tensor of shape \(16, 8\), which does not fit "
                                   r"output='vector': 'vector' data must be \(B, 3\)"),
    (lambda x: x, {"pos": "points"},
     r"returned a torch.float32 tensor of shape \(16, 8, 3\); output=\{'pos': 'points'\} expects"),
])
def test_backbone_outputs_that_do_not_fit_are_refused_with_what_was_returned(make, output, message):
    from symwrap.errors import BackboneOutputError

    model = symwrap.wrap(Returns(make), group="O3", strategy="frames", input="points", output=output)
    with pytest.raises(BackboneOutputError, match=rf"the backbone Returns {message}"):
        model(torch.randn(2, 8, 3))
    unchecked = symwrap.wrap(Returns(make), group="O3", strategy="frames", input="points", output="invariant",
                             validate=False)
    try:  # without validation the output is not checked: whatever happens next is not a BackboneOutputError
        unchecked(torch.randn(2, 8, 3))
    except BackboneOutputError:  # pragma: no cover - the failure this test is about
        pytest.fail("validate=False checked the backbone's output")
    except Exception:  # noqa: BLE001 - the output action may fail on it in its own way
        pass


def test_an_exception_inside_the_backbone_names_the_batch_it_was_given():
    from symwrap.errors import BackboneError, ShapeError

    def fail(x):
        raise ValueError("bad input")

    model = symwrap.wrap(Returns(fail), group="O3", strategy="frames", input="points")
    with pytest.raises(BackboneError, match=r"^the backbone Returns raised ValueError on a torch.float32 tensor of "
                                            r"shape \(16, 8, 3\): bad input$") as caught:
        model(torch.randn(2, 8, 3))  # the 8 frame copies of each of the 2 samples
    assert isinstance(caught.value.__cause__, ValueError)

    def refuse(x):
        raise ShapeError("symwrap's own")

    with pytest.raises(ShapeError, match="^symwrap's own$"):  # symwrap's errors pass through as they are
        symwrap.wrap(Returns(refuse), group="O3", strategy="frames", input="points")(torch.randn(2, 8, 3))


# --- the input's placement ---------------------------------------------------------------------------------------
def test_inputs_of_another_dtype_or_device_are_refused_with_the_conversion_to_make():
    from symwrap.errors import DeviceError, InputDtypeError

    model = symwrap.wrap(point_mlp(), group="O3", strategy="frames", input="points")
    with pytest.raises(InputDtypeError, match=r"the input is torch.float64 and the model's parameters are "
                                              r"torch.float32; convert one of them \(x.to\(torch.float32\) or "
                                              r"model.to\(torch.float64\)\), or run under torch.autocast"):
        model(torch.randn(2, 8, 3, dtype=torch.float64))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast mixes dtypes on purpose
        assert model(torch.randn(2, 8, 3, dtype=torch.bfloat16)).shape == (2, 3)
    with pytest.raises(DeviceError, match=r"the input is on cpu and the model on meta; move one of them: "
                                          r"x.to\('meta'\) or model.to\('cpu'\)"):
        model.to("meta")(torch.randn(2, 8, 3))
    parameterless = symwrap.wrap(nn.Identity(), group="O3", strategy="frames", input="points", output="points")
    assert parameterless(torch.randn(2, 8, 3, dtype=torch.float64)).dtype == torch.float64  # nothing to match
    unchecked = symwrap.wrap(point_mlp().double(), group="O3", strategy="frames", input="points", validate=False)
    with pytest.raises(symwrap.errors.BackboneError, match="dtype"):  # not checked: the backbone finds out
        unchecked(torch.randn(2, 8, 3))


# --- registry, repr, generator -------------------------------------------------------------------------------------
def test_the_registry_refuses_duplicates_and_mismatched_names():
    from symwrap.errors import RegistryError

    averaging = symwrap.strategies.get_strategy("averaging")
    assert symwrap.strategies.get_strategy(" AVERAGING ") is averaging
    with pytest.raises(RegistryError, match=r"^a strategy is already registered as 'Averaging'; pass override=True"):
        symwrap.strategies.register_strategy("Averaging")(averaging)
    assert symwrap.strategies.register_strategy("averaging", override=True)(averaging) is averaging
    with pytest.raises(RegistryError, match=r"^Averaging.config_class.strategy is 'averaging'; it must be "
                                            r"'mean'$"):
        symwrap.strategies.register_strategy("mean")(averaging)
    assert "mean" not in symwrap.list_strategies()
    with pytest.raises(UnknownStrategyError, match="3"):
        symwrap.strategies.get_strategy(3)
    names = symwrap.list_strategies()
    assert names == sorted(names) and {"averaging", "frames", "symmetrization"} <= set(names)


def test_repr_and_group_spec_say_what_the_model_was_built_from():
    model = symwrap.wrap(point_mlp(), group="SO3", strategy="frames", input="points", output="vector")
    assert repr(model).startswith("Frames(strategy='frames', group='SO3', input='points', output='vector',\n"
                                  "  backbone=Sequential(")
    assert model.group_spec() == "SO3"


def test_a_seeded_model_draws_a_new_sample_each_call_and_the_same_sequence_as_its_twin():
    backbone = point_mlp()
    models = [symwrap.wrap(backbone, group="SO3", strategy="averaging", input="points", num_samples_train=2, seed=5)
              for _ in range(2)]
    x = torch.randn(2, 8, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ApproximationWarning)
        first, second = [models[0](x) for _ in range(2)]
        torch.manual_seed(123)  # the global generator plays no part
        assert torch.equal(models[1](x), first) and torch.equal(models[1](x), second)
    assert not torch.equal(first, second)
    assert models[0].generator_for(torch.device("cpu")) is models[0].generator_for(torch.device("cpu"))
    unseeded = symwrap.wrap(point_mlp(), group="SO3", strategy="averaging", input="points")
    assert unseeded.generator_for(torch.device("cpu")) is None


def test_equivariance_error_method_measures_the_model_under_its_own_group_and_actions():
    model = symwrap.wrap(point_mlp(), group="SO3", strategy="averaging", input="points", output="vector",
                         num_samples_train=2, seed=0)
    x = torch.randn(3, 8, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ApproximationWarning)
        got = model.equivariance_error(x, n=3, generator=torch.Generator().manual_seed(4))
        model._generator = None  # the model's own draws again from the start
        expected = equivariance_error(model, x, "SO3", input="points", output="vector", n=3,
                                      generator=torch.Generator().manual_seed(4))
    assert got == expected and got > 0.01


# --- principal axes (symwrap.geometry) -----------------------------------------------------------------------------
def axis_aligned(first: float, second: float, third: float) -> torch.Tensor:
    """Six points ±a·e1, ±b·e2, ±c·e3: centred, with variances a²/3, b²/3, c²/3 along the axes."""
    points = torch.diag(torch.tensor([first, second, third], dtype=torch.float64))
    return torch.cat([points, -points])[None]


@pytest.mark.parametrize("second, degenerate", [(0.9995**0.5, False), (0.99995**0.5, True), (1.0, True)])
def test_principal_axes_flag_spectra_with_a_relative_gap_below_the_default_tolerance(second, degenerate):
    """Relative gaps 5e-4 and 5e-5 between the two largest variances, against the default tolerance 1e-4."""
    from symwrap.geometry import principal_axes

    axes, centroid, flagged = principal_axes(axis_aligned(1.0, second, 0.5))
    assert flagged.tolist() == [degenerate]
    assert torch.equal(centroid, torch.zeros(1, 3, dtype=torch.float64))
    if not degenerate:  # largest variance first: the axes are ±e1, ±e2, ±e3 in that order
        assert torch.allclose(axes.abs(), torch.eye(3, dtype=torch.float64)[None], atol=1e-6)


def test_principal_axes_of_degenerate_sets_are_the_coordinate_axes_with_finite_gradients():
    from symwrap.geometry import principal_axes

    x = torch.cat([axis_aligned(1.0, 1.0, 0.5), torch.zeros(1, 6, 3, dtype=torch.float64),
                   axis_aligned(3.0, 2.0, 1.0)]).requires_grad_(True)
    axes, centroid, degenerate = principal_axes(x)
    assert degenerate.tolist() == [True, True, False]
    assert torch.equal(axes[:2].abs(), torch.eye(3, dtype=torch.float64).expand(2, 3, 3))
    (axes.sum() + centroid.sum()).backward()
    assert torch.isfinite(x.grad).all()
    assert principal_axes(x.detach().float())[0].dtype == torch.float64  # computed in float64


def test_principal_axes_follow_the_device_of_the_points():
    from symwrap.geometry import principal_axes

    axes, centroid, degenerate = principal_axes(torch.zeros(2, 5, 3, device="meta"))
    assert axes.device.type == centroid.device.type == degenerate.device.type == "meta"
    assert axes.shape == (2, 3, 3) and centroid.shape == (2, 3) and degenerate.shape == (2,)


@pytest.mark.parametrize("points, given", [
    (torch.zeros(5, 3), r"a torch.float32 tensor of shape \(5, 3\)"),
    (torch.zeros(2, 5, 3, dtype=torch.long), r"a torch.int64 tensor of shape \(2, 5, 3\)"),
    ([[0.0, 1.0, 2.0]], "list"),
])
def test_principal_axes_need_floating_point_point_sets(points, given):
    from symwrap.errors import ActionError
    from symwrap.geometry import principal_axes

    with pytest.raises(ActionError, match=rf"^principal axes need floating-point point sets \(B, N, d\); got {given}$"):
        principal_axes(points)


# --- principal axes and PCA frames: dtype, relative gaps, tolerance, seeding -------------------------------------
def with_variances(*variances):
    """2d points ±sqrt(d v) e_i, whose covariance is exactly diag(variances) (float64, one sample)."""
    d = len(variances)
    rows = []
    for i, variance in enumerate(variances):
        e = torch.zeros(d, dtype=torch.float64)
        e[i] = (d * variance) ** 0.5
        rows += [e, -e]
    return torch.stack(rows)[None]


def test_principal_axes_are_computed_in_float64_and_frames_come_back_in_the_input_dtype():
    from symwrap.geometry import principal_axes
    from symwrap.strategies.symmetrization.frames import pca_frames

    x = with_variances(3.0, 2.0, 1.0).float() + 1e3
    axes, centroid, _ = principal_axes(x)
    assert axes.dtype == centroid.dtype == torch.float64
    rotations, centroids, _ = pca_frames(x, special=True)
    assert rotations.dtype == centroids.dtype == torch.float32
    assert torch.allclose(centroids, torch.full((1, 3), 1e3))


def test_spectral_gaps_are_measured_relative_to_the_largest_variance():
    from symwrap.geometry import principal_axes

    # gaps 0.99 and 0.0005 of the largest variance (0.05 of the middle one)
    x = with_variances(1.0, 0.01, 0.0095)
    assert principal_axes(x, degenerate_tol=1e-2)[2].tolist() == [True]
    assert principal_axes(x, degenerate_tol=1e-4)[2].tolist() == [False]
    # a tolerance of 0 still catches an exactly repeated eigenvalue (<=, not <)
    assert principal_axes(with_variances(1.0, 1.0, 0.25), degenerate_tol=0.0)[2].tolist() == [True]
    assert principal_axes(with_variances(1.0, 0.5, 0.25), degenerate_tol=0.0)[2].tolist() == [False]


def test_principal_axes_of_one_dimensional_and_non_finite_planar_point_sets():
    from symwrap.geometry import principal_axes

    axes, _, degenerate = principal_axes(torch.tensor([[[0.0], [2.0]], [[1.0], [1.0]]]))
    assert degenerate.tolist() == [False, True]  # one coordinate: degenerate only when every point coincides
    assert axes.abs().tolist() == [[[1.0]], [[1.0]]]
    planar = torch.tensor([[[float("nan"), 0.0], [1.0, 1.0], [2.0, 0.0]]])
    axes, _, degenerate = principal_axes(planar)
    assert degenerate.tolist() == [True] and torch.isfinite(axes).all()


def test_pca_frames_and_frame_averaging_honour_the_degenerate_tolerance():
    from symwrap.strategies.symmetrization.frames import pca_frames

    near = with_variances(1.0, 0.995, 0.25).float()  # a relative gap of 0.005 between the first two variances
    assert pca_frames(near, special=True)[2].tolist() == [False]
    assert pca_frames(near, special=True, degenerate_tol=1e-2)[2].tolist() == [True]
    torch.manual_seed(0)
    mlp = point_mlp(n_points=6)
    loose = symwrap.wrap(mlp, group="SO3", strategy="frames", input="points", output="vector", seed=0)
    strict = symwrap.wrap(mlp, group="SO3", strategy="frames", input="points", output="vector", seed=0,
                          degenerate_tol=1e-2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ApproximationWarning)
        assert not torch.allclose(loose(near), strict(near), atol=1e-4)  # PCA frame vs Haar-random frame


@pytest.mark.parametrize("special", [True, False])
def test_random_frames_of_degenerate_point_sets_follow_the_generator(special):
    from symwrap.strategies.symmetrization.frames import pca_frames

    square = with_variances(1.0, 1.0, 0.25)
    first = pca_frames(square, special=special, generator=torch.Generator().manual_seed(3))[0]
    again = pca_frames(square, special=special, generator=torch.Generator().manual_seed(3))[0]
    other = pca_frames(square, special=special, generator=torch.Generator().manual_seed(4))[0]
    assert torch.equal(first, again) and not torch.allclose(first, other)
    torch.manual_seed(0)
    mlp = point_mlp(n_points=6)
    models = [symwrap.wrap(mlp, group="O3" if not special else "SO3", strategy="frames", input="points",
                           output="vector", seed=5) for _ in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ApproximationWarning)
        assert torch.equal(models[0](square.float()), models[1](square.float()))  # same seed, same frames


@pytest.mark.parametrize("special, count", [(True, 2), (False, 4)])
def test_planar_degenerate_point_sets_get_planar_random_frames(special, count):
    from symwrap.strategies.symmetrization.frames import pca_frames

    rotations, _, degenerate = pca_frames(with_variances(1.0, 1.0), special=special,
                                          generator=torch.Generator().manual_seed(0))
    assert degenerate.tolist() == [True] and rotations.shape == (1, count, 2, 2)
    eye = torch.eye(2, dtype=torch.float64).expand_as(rotations)
    assert torch.allclose(rotations.transpose(-1, -2) @ rotations, eye, atol=1e-12)


def test_frames_refuse_inputs_without_positions_and_groups_that_permute():
    model = symwrap.wrap(nn.Linear(3, 3), group="SO3", strategy="frames", input="vector", output="vector")
    assert not model.is_exact(torch.randn(2, 3))
    with pytest.raises(symwrap.errors.ActionError,
                       match=r"input 'vector' has none; use input='points' or a dict with a 'points' field$"):
        model(torch.randn(2, 3))
    for group, geometric in [("SO3xS", "SO3"), ("SxE3", "E3"), ("SO3xT3xS", "SO3xT3")]:
        expected = (rf"permutation part of {group}; got {group}\. Use group='{geometric}' with a "
                    r"permutation-equivariant backbone \(PCA frames keep its permutation symmetry\), "
                    r"or strategy='averaging' or 'canonicalization' for the product\.$")
        with pytest.raises(IncompatibleGroupError, match=expected):
            symwrap.wrap(point_mlp(), group=group, strategy="frames", input="points")


def test_monte_carlo_averaging_warns_from_two_samples_on():
    torch.manual_seed(0)
    model = symwrap.wrap(point_mlp(), group="SO3", strategy="averaging", input="points", output="vector",
                         num_samples_train=2, seed=0)
    with pytest.warns(ApproximationWarning, match="num_samples_train=2 "):
        model(torch.randn(8, 8, 3, generator=torch.Generator().manual_seed(1)))


def test_averaging_is_not_exact_when_the_output_action_interpolates():
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(16, 64), nn.Unflatten(1, (1, 8, 8)))
    x = torch.randn(2, 8, 2)
    c8 = symwrap.wrap(backbone, group="C8", strategy="averaging", input="points", output="image")
    c4 = symwrap.wrap(backbone, group="C4", strategy="averaging", input="points", output="image")
    assert not c8.is_exact(x) and c4.is_exact(x)  # points move exactly under C8; 8x8 images only under C4
