import pytest
import torch
from torch import nn

import symwrap
from symwrap.errors import ConfigError, IncompatibleGroupError, NonFiniteInputError, UnknownStrategyError
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
    model = symwrap.wrap(mlp, group="SO3", strategy="averaging", input="points", num_samples=256, seed=0).eval()
    bare = invariance_error(mlp, x, "SO3", input="points", n=8, generator=g)
    averaged = invariance_error(model, x, "SO3", input="points", n=8, generator=g)
    assert averaged < bare / 4


def test_the_same_seed_gives_the_same_output():
    mlp = point_mlp(out=1)
    x = torch.randn(4, 8, 3)
    a = symwrap.wrap(mlp, group="SO3", strategy="averaging", input="points", num_samples=4, seed=3)
    b = symwrap.wrap(mlp, group="SO3", strategy="averaging", input="points", num_samples=4, seed=3)
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
    with pytest.raises(ConfigError, match="num_samples must be >= 1"):
        symwrap.wrap(point_mlp(), group="SO3", strategy="averaging", input="points", num_samples=0)
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
    model = symwrap.wrap(FirstNodeReadout(), group="S", strategy="averaging", input="graph", num_samples=512, seed=0)
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

    model = symwrap.wrap(point_mlp(), group="SO3", strategy=strategy, input="points", validate=validate)
    with pytest.raises(EmptyInputError, match=match):
        model(torch.randn(*shape))


@pytest.mark.parametrize("strategy", symwrap.list_strategies())
def test_meta_inputs_are_refused_by_every_strategy(strategy):
    from symwrap.errors import DeviceError

    model = symwrap.wrap(point_mlp(), group="SO3", strategy=strategy, input="points")
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
