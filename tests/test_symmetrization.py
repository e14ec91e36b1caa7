import json
import re
import sys
import warnings

import pytest
import torch
from torch import nn

import symwrap
from symwrap.errors import ApproximationWarning, ConfigError, ShapeError
from symwrap.metrics import equivariance_error

N = 7


def mlp_over_adjacency(n=N, out=3):
    return nn.Sequential(nn.Flatten(), nn.Linear(n * n, 32), nn.Tanh(), nn.Linear(32, out))


def random_graphs(batch, n=N, seed=0):
    generator = torch.Generator().manual_seed(seed)
    upper = (torch.rand(batch, n, n, generator=generator) < 0.4).float().triu(1)
    return upper + upper.transpose(1, 2)


def graph_model(**config):
    torch.manual_seed(0)
    return symwrap.wrap(mlp_over_adjacency(), group="S", strategy="symmetrization", input="adjacency",
                        output="invariant", **config)


def test_permutation_sample_is_equivariant_for_noise_moved_with_the_input():
    """Exact up to ties between scores; in float64 rounding cannot create one here."""
    model = graph_model().double()
    x = random_graphs(6).double()
    noise = torch.randn(6, N, 1, dtype=torch.float64)
    group = symwrap.get_group("S").sized(N)
    h = group.sample(6, generator=torch.Generator().manual_seed(1))
    moved_x = symwrap.get_action("adjacency").act(group, h, x)
    moved_noise = symwrap.get_action("scalars").act(group, h, noise)
    _, _, sample = model.sample(x, noise=noise)
    _, _, moved = model.sample(moved_x, noise=moved_noise)
    assert torch.equal(moved.elements, group.compose(h, sample.elements))
    with torch.no_grad():  # so the symmetrized model is exactly invariant for that noise
        assert torch.equal(model.eval().symmetrize(moved_x, 1, noise=moved_noise),
                           model.symmetrize(x, 1, noise=noise))


def test_equivariance_error_falls_as_more_samples_are_drawn():
    model = graph_model(seed=0).eval()
    x = random_graphs(32)
    errors = {}
    for k in (1, 32):
        model.config.num_samples_eval = k
        errors[k] = equivariance_error(model, x, "S", input="adjacency", output="invariant", n=4)
    assert errors[32] < 0.5 * errors[1], errors


def test_variance_of_the_estimate_falls_as_k_grows():
    model = graph_model().eval()
    x = random_graphs(4)
    spread = {}
    with torch.no_grad():
        for k in (1, 16):
            estimates = torch.stack([model.symmetrize(x, k) for _ in range(20)])
            spread[k] = float(estimates.var(dim=0).mean())
    assert spread[16] < spread[1] / 4, spread


@pytest.mark.parametrize("gradient", ["straight_through", "none"])
def test_gradients_reach_the_interface_through_the_straight_through_path(gradient):
    model = graph_model(gradient=gradient, penalty_weight=0.0).train()
    x = random_graphs(8)
    terms = model.loss(model(x), torch.randint(3, (8,)), x)
    terms["total"].backward()
    interface_grad = sum(float(p.grad.abs().sum()) for p in model.interface.parameters() if p.grad is not None)
    assert (interface_grad > 0) == (gradient == "straight_through")
    assert all(p.grad is not None for p in model.backbone.parameters())


def test_penalty_term_keeps_soft_and_hard_permutations_close():
    model = graph_model(penalty_weight=1.0).train()
    x = random_graphs(4)
    terms = model.loss(model(x), torch.randint(3, (4,)), x)
    assert set(terms) == {"task", "penalty", "total"} and terms["penalty"] >= 0


@pytest.mark.parametrize("case", ["isolated", "one_node", "identical"])
def test_awkward_graphs_and_sets_work(case):
    if case == "one_node":
        model = symwrap.wrap(nn.Sequential(nn.Flatten(), nn.Linear(1, 2)), group="S", strategy="symmetrization",
                             input="adjacency", output="invariant")
        x = torch.zeros(3, 1, 1)
    elif case == "isolated":
        model, x = graph_model(), torch.zeros(3, N, N)
        x[:, 0, 1] = x[:, 1, 0] = 1.0  # one edge, five isolated nodes
    else:  # a set of identical members: the noise breaks the ties
        model = symwrap.wrap(nn.Sequential(nn.Flatten(), nn.Linear(N * 2, 2)), group="S",
                             strategy="symmetrization", input="set", output="invariant", in_features=2)
        x = torch.ones(3, N, 2)
    out = model.train()(x)
    assert torch.isfinite(out).all()
    out.sum().backward()
    with torch.no_grad():
        assert torch.isfinite(model.eval()(x)).all()


@pytest.mark.parametrize("group_name", ["SO3", "O3", "SE3"])
def test_rotation_sample_is_equivariant_for_noise_moved_with_the_input(group_name):
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(30, 3)).double()
    model = symwrap.wrap(backbone, group=group_name, strategy="symmetrization", input="points", output="vector",
                         frame_noise_scale=0.1).double()
    model.interface.double()
    group, points = symwrap.get_group(group_name), symwrap.get_action("points")
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(5, 10, 3, generator=generator, dtype=torch.float64)
    noise = torch.randn(5, 10, 3, generator=generator, dtype=torch.float64)
    h = group.sample(5, generator=generator, dtype=torch.float64)
    rotation = group.linear_part(h, dtype=torch.float64)
    _, _, sample = model.sample(x, noise=noise)
    _, _, moved = model.sample(points.act(group, h, x), noise=noise @ rotation.transpose(1, 2))
    assert group.allclose(moved.elements, group.compose(h, sample.elements), atol=1e-9)
    with torch.no_grad():
        out = model.eval().symmetrize(x, 1, noise=noise)
        moved_out = model.symmetrize(points.act(group, h, x), 1, noise=noise @ rotation.transpose(1, 2))
    assert torch.allclose(moved_out, (rotation @ out.unsqueeze(-1)).squeeze(-1), atol=1e-9)


def test_rotation_symmetrization_without_noise_is_exact_in_float32():
    torch.manual_seed(0)
    model = symwrap.wrap(nn.Sequential(nn.Flatten(), nn.Linear(30, 3)), group="SO3", strategy="symmetrization",
                         input="points", output="vector", frame_noise_scale=0.0)
    assert model.eval().equivariance_error(torch.randn(16, 10, 3)) <= 1e-5


def test_cyclic_image_sample_is_equivariant_for_gumbel_noise_moved_with_the_input():
    pytest.importorskip("escnn")
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(16 * 16, 3))
    model = symwrap.wrap(backbone, group="C4", strategy="symmetrization", input="image", output="invariant",
                         in_channels=1, hidden=4)
    group, image, regular = symwrap.get_group("C4"), symwrap.get_action("image"), symwrap.get_action("regular")
    x = torch.randn(6, 1, 16, 16)
    noise = torch.randn(6, 4)
    h = torch.tensor([0, 1, 2, 3, 1, 3])
    _, _, sample = model.sample(x, noise=noise)
    _, _, moved = model.sample(image.act(group, h, x), noise=regular.act(group, h, noise))
    assert torch.equal(moved.elements, group.compose(h, sample.elements))
    model.train()
    out = model(x)
    out.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.interface.parameters())


def test_cyclic_interface_scores_each_image_once_for_k_samples():
    """The Gumbel noise comes after the escnn scores, so k samples of an image need one scoring: the
    network sees B rows, and the k·B elements are those of scoring every copy."""
    pytest.importorskip("escnn")
    torch.manual_seed(0)
    model = symwrap.wrap(nn.Sequential(nn.Flatten(), nn.Linear(16 * 16, 3)), group="C4", strategy="symmetrization",
                         input="image", output="invariant", in_channels=1, hidden=4).eval()
    rows = []
    model.interface.network.register_forward_hook(lambda _m, inputs, _o: rows.append(inputs[0].shape[0]))
    x, k = torch.randn(6, 1, 16, 16), 5
    noise = -torch.log(-torch.log(torch.rand(k * 6, 4)))
    _, x_rep, sample = model.sample(x, k, noise=noise)
    assert rows == [6] and x_rep.shape[0] == k * 6
    action, group = symwrap.get_action("image"), symwrap.get_group("C4")
    every_copy = model.interface(action, group, x_rep, noise=noise)
    assert rows == [6, k * 6]
    assert torch.equal(sample.elements, every_copy.elements)
    assert torch.allclose(sample.weights, every_copy.weights, atol=1e-6)
    generator = torch.Generator().manual_seed(3)
    drawn = model.sample(x, k, generator=generator)[2]
    redrawn = model.interface(action, group, x_rep, torch.Generator().manual_seed(3))
    assert torch.equal(drawn.elements, redrawn.elements)


def test_configuration_errors():
    with pytest.raises(ConfigError, match="gradient"):
        graph_model(gradient="reinforce")
    with pytest.raises(ConfigError, match="tau"):
        graph_model(tau=0.0)
    with pytest.raises(symwrap.errors.IncompatibleGroupError, match="interface"):
        symwrap.wrap(nn.Linear(3, 3), group="SO2xS", strategy="symmetrization", input="points", output="points")


def test_interface_without_a_known_feature_count_is_asked_for_it_at_wrap():
    """Scalars of any width: the permutation network cannot be sized from the layout, and built later (on
    the first batch) its parameters would miss the optimizer and a save made before it: wrap() asks."""
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(10, 1))
    message = ("the permutation interface is built at wrap() for a fixed number of features per member, and input "
               "'set' does not fix it (node features of a graph, scalar fields of any width): pass in_features= (the "
               "width of what action.members(x) gives: the node features, or the concatenated per-member fields), "
               "or your own interface_network=")
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        symwrap.wrap(backbone, group="S", strategy="symmetrization", input="set", output="invariant")
    model = symwrap.wrap(backbone, group="S", strategy="symmetrization", input="set", output="invariant",
                         in_features=2)
    assert any(name.startswith("interface.") for name, _ in model.named_parameters())
    assert model.train()(torch.randn(3, 5, 2)).shape == (3, 1)
    with pytest.raises(ShapeError, match=r"built for 2 features per member .* gives 3"):
        model(torch.randn(3, 5, 3))


@pytest.mark.parametrize("group_name", ["E3xS", "SO3xS", "O3xS"])
def test_product_sample_is_equivariant_for_noise_moved_with_the_input(group_name):
    """Particles under rotations (with translations) × permutations, with an MLP over the flattened
    particles, which is neither rotation- nor permutation-equivariant by itself."""
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(30, 16), nn.Tanh(), nn.Linear(16, 30), nn.Unflatten(1, (10, 3)))
    model = symwrap.wrap(backbone, group=group_name, strategy="symmetrization", input="points", output="points",
                         frame_noise_scale=0.1).double()
    group, points = symwrap.get_group(group_name).sized(10), symwrap.get_action("points")
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(5, 10, 3, generator=generator, dtype=torch.float64)
    rotation_noise = torch.randn(5, 10, 3, generator=generator, dtype=torch.float64)
    order_noise = torch.randn(5, 10, 1, generator=generator, dtype=torch.float64)
    h = group.sample(5, generator=generator, dtype=torch.float64)
    moved_noise = (points.act(group, h, rotation_noise) - points.act(group, h, torch.zeros_like(x)),
                   symwrap.get_action("scalars").act(group, h, order_noise))
    _, _, sample = model.eval().sample(x, noise=(rotation_noise, order_noise))
    _, _, moved = model.sample(points.act(group, h, x), noise=moved_noise)
    assert group.allclose(moved.elements, group.compose(h, sample.elements), atol=1e-9)
    with torch.no_grad():
        out = model.symmetrize(x, 1, noise=(rotation_noise, order_noise))
        moved_out = model.symmetrize(points.act(group, h, x), 1, noise=moved_noise)
    assert torch.allclose(moved_out, points.act(group, h, out), atol=1e-9)
    model.train()
    model.loss(model(x), torch.zeros_like(x), x)["total"].backward()
    for part in (model.interface.rotation, model.interface.permutation):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())


def test_pyg_graph_batches_of_different_sizes_are_symmetrized():
    pyg_data = pytest.importorskip("torch_geometric.data")
    from torch_geometric.nn import global_add_pool

    class NodeSum(nn.Module):
        """A backbone that depends on the node order: a weight per node position within each graph."""

        def __init__(self):
            super().__init__()
            self.position_weight = nn.Parameter(torch.randn(8))

        def forward(self, batch):
            counts = torch.bincount(batch.batch)
            local = torch.arange(batch.num_nodes) - (torch.cumsum(counts, 0) - counts)[batch.batch]
            return global_add_pool(batch.x * self.position_weight[local, None], batch.batch)

    generator = torch.Generator().manual_seed(0)
    graphs = []
    for n in (3, 5, 8):
        edges = torch.randint(n, (2, 2 * n), generator=generator)
        graphs.append(pyg_data.Data(x=torch.randn(n, 1, generator=generator), edge_index=edges, num_nodes=n))
    batch = pyg_data.Batch.from_data_list(graphs)
    torch.manual_seed(0)
    model = symwrap.wrap(NodeSum(), group="S", strategy="symmetrization", input="graph", output="invariant",
                         num_samples_eval=4, in_features=1)
    out = model.eval()(batch)
    assert out.shape == (3, 1) and torch.isfinite(out).all()
    noise = torch.randn(3, 8, 1, generator=generator)
    group = symwrap.get_action("graph").bind(symwrap.get_group("S"), batch)
    h = group.sample(3, generator=generator)
    moved = symwrap.get_action("graph").act(group, h, batch)
    features, _, mask = symwrap.get_action("graph").members(batch)
    moved_noise = symwrap.get_action("scalars").act(group, h, noise)
    with torch.no_grad():
        assert torch.allclose(model.symmetrize(moved, 1, noise=moved_noise), model.symmetrize(batch, 1, noise=noise),
                              atol=1e-5)
    model.train()(batch).sum().backward()  # no soft path for edge lists: the hard permutation is used


def test_a_timm_vit_reads_the_permuted_adjacency_as_an_image():
    """The paper's way to reuse a vision transformer for graphs: the adjacency matrix is a one-channel
    image; symmetrized, the ViT's prediction no longer depends on the node labelling."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    n = 8
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=n, patch_size=2, in_chans=1,
                            num_classes=3, embed_dim=32, depth=1, num_heads=2)
    backbone = nn.Sequential(nn.Unflatten(1, (1, n)), vit)  # (B, N, N) -> (B, 1, N, N)
    model = symwrap.wrap(backbone, group="S", strategy="symmetrization", input="adjacency", output="invariant",
                         num_samples_eval=4).double()
    x = random_graphs(5, n=n).double()
    noise = torch.randn(4 * 5, n, 1, dtype=torch.float64)
    group = symwrap.get_group("S").sized(n)
    h = group.sample(4 * 5, generator=torch.Generator().manual_seed(3))
    h = h[:5].repeat(4, 1)  # one relabelling per graph, the same for its 4 copies
    moved_x = symwrap.get_action("adjacency").act(group, h[:5], x)
    moved_noise = symwrap.get_action("scalars").act(group, h, noise)
    with torch.no_grad():
        out = model.eval().symmetrize(x, 4, noise=noise)
        moved = model.symmetrize(moved_x, 4, noise=moved_noise)
    assert torch.allclose(moved, out, atol=1e-10)
    assert model.train().loss(model(x), torch.randint(3, (5,)), x)["total"].isfinite()
    model(x).sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.interface.parameters())


# --- default interfaces: built at wrap(), channels read from the backbone ------------------------------------
def tiny_cnn(channels):
    return nn.Sequential(nn.Conv2d(channels, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 6, 3))


@pytest.mark.parametrize("group,input,backbone,in_features", [
    ("C4", "image", lambda: tiny_cnn(2), None),
    ("SO3", "points", lambda: nn.Sequential(nn.Flatten(), nn.Linear(12, 3)), None),
    ("E3xS", "points", lambda: nn.Sequential(nn.Flatten(), nn.Linear(12, 3)), None),
    ("S", "adjacency", lambda: mlp_over_adjacency(), None),
    ("S", "set", lambda: nn.Sequential(nn.Flatten(), nn.Linear(8, 3)), 2),
], ids=["C4-image", "SO3-points", "E3xS-points", "S-adjacency", "S-set"])
def test_every_default_interface_is_built_at_wrap(group, input, backbone, in_features):
    if input == "image":
        pytest.importorskip("escnn")
    config = {} if in_features is None else {"in_features": in_features}
    model = symwrap.wrap(backbone(), group=group, strategy="symmetrization", input=input, output="invariant",
                         hidden=4, **config)
    interface = [name for name in model.state_dict() if name.startswith("interface.")]
    assert interface and not any(isinstance(p, nn.parameter.UninitializedParameter) for p in model.parameters())
    assert set(interface) == {"interface." + name for name in model.interface.state_dict()}


def test_image_interface_reads_the_channels_from_the_backbone():
    pytest.importorskip("escnn")
    from symwrap.strategies.symmetrization import SymmetrizationConfig

    config = SymmetrizationConfig(hidden=2)
    model = symwrap.wrap(tiny_cnn(2), group="C4", strategy="symmetrization", input="image", config=config)
    assert model.config.in_channels == 2 and config.in_channels is None  # the model keeps its own copy
    assert model.interface.network.in_channels == 2
    assert model.eval()(torch.randn(3, 2, 8, 8)).shape == (3, 3)
    with pytest.raises(ShapeError, match=r"built for images with 2 channel\(s\); got 1 channel\(s\)"):
        model(torch.randn(3, 1, 8, 8))


def test_image_interface_needs_in_channels_from_a_backbone_that_does_not_tell():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    with pytest.raises(ConfigError, match=r"C4 interface network .* Sequential does not tell.*pass in_channels="):
        symwrap.wrap(mlp, group="C4", strategy="symmetrization", input="image")
    pytest.importorskip("escnn")
    model = symwrap.wrap(mlp, group="C4", strategy="symmetrization", input="image", in_channels=1, hidden=2)
    assert model.config.in_channels == 1


@pytest.mark.parametrize("group_name", ["C4", "D4"])
def test_finite_groups_on_points_get_a_copy_scoring_interface_moving_with_the_input(group_name):
    """No image CNN off images: the registry's regular scores for points score every transformed copy."""
    from symwrap.nn import CopyScores, PointEncoder

    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(5 * 2, 3))
    model = symwrap.wrap(backbone, group=group_name, strategy="symmetrization", input="points", output="invariant",
                         hidden=4)
    assert isinstance(model.interface.network, CopyScores)
    assert isinstance(model.interface.network.encoder, PointEncoder)
    group, points, regular = symwrap.get_group(group_name), symwrap.get_action("points"), symwrap.get_action("regular")
    x = torch.randn(2 * group.order, 5, 2, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(x.shape[0], group.order, generator=torch.Generator().manual_seed(2))
    h = torch.arange(group.order).repeat(2)  # every element
    _, _, sample = model.sample(x, noise=noise)
    _, _, moved = model.sample(points.act(group, h, x), noise=regular.act(group, h, noise))
    assert torch.equal(moved.elements, group.compose(h, sample.elements))
    with torch.no_grad():
        out = model.eval().symmetrize(x, 1, noise=noise)
        again = model.symmetrize(points.act(group, h, x), 1, noise=regular.act(group, h, noise))
    assert (again - out).abs().max() <= 1e-5 * out.abs().max()
    assert equivariance_error(backbone, x, group_name, input="points", output="invariant") > 0.1


def test_groups_without_a_default_interface_name_the_registered_ones():
    with pytest.raises(symwrap.errors.IncompatibleGroupError,
                       match=r"^there is no default 'interface' network for C4 on 'vector' inputs.* the registered "
                             r"ones are: permutation \(.*pass interface_network="):
        symwrap.wrap(nn.Linear(2, 2), group="C4", strategy="symmetrization", input="vector", output="vector")


def test_a_registered_interface_is_asked_before_the_built_in_ones():
    from symwrap.nn import defaults

    built = []

    @symwrap.nn.register_default_network("interface", "test-vector-interface",
                                         applies=lambda group, action, output: action.spec() == "vector",
                                         needs="vectors (test)")
    def vector_interface(group, action, output, *, config):
        built.append(config.hidden)
        return symwrap.strategies.symmetrization.FiniteInterface(
            group, config, network=nn.Sequential(nn.Linear(2, group.order)))

    try:
        with pytest.raises(symwrap.errors.ConfigError, match="already registered"):
            symwrap.nn.register_default_network("interface", "test-vector-interface", applies=lambda *a: True,
                                                needs="")(vector_interface)
        model = symwrap.wrap(nn.Linear(2, 2), group="C4", strategy="symmetrization", input="vector",
                             output="vector", hidden=3)
        assert built == [3] and model(torch.randn(4, 2)).shape == (4, 2)
        assert ("interface", "test-vector-interface", "vectors (test)") == symwrap.nn.list_default_networks(
            "interface")[0]
    finally:
        defaults._ENTRIES[:] = [e for e in defaults._ENTRIES if e.name != "test-vector-interface"]


def test_a_permutation_interface_sized_by_the_user_is_recorded_in_the_models_config():
    """The width given to wrap() is in the saved config, so a model rebuilt from it has the same parameters."""
    from symwrap.strategies.symmetrization import SymmetrizationConfig

    backbone = nn.Sequential(nn.Flatten(), nn.Linear(10, 1))
    config = SymmetrizationConfig(in_features=2)
    model = symwrap.wrap(backbone, group="S", strategy="symmetrization", input="set", output="invariant",
                         config=config)
    assert model.config.in_features == 2
    rebuilt = symwrap.wrap(backbone, group="S", strategy="symmetrization", input="set", output="invariant",
                           config=model.config)
    rebuilt.load_state_dict(model.state_dict())  # strict: the same keys and shapes


# --- averaging: Monte Carlo estimates warn when their measured error is large --------------------------------
def point_mlp(out=3):
    return nn.Sequential(nn.Flatten(), nn.Linear(18, 32), nn.Tanh(), nn.Linear(32, out))


class Radii(nn.Module):
    """An SO3-invariant backbone: sorted distances to the centroid, then a linear map."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(6, 2)

    def forward(self, x):
        return self.linear((x - x.mean(1, keepdim=True)).norm(dim=-1).sort(dim=1).values)


#: where a warning attributed to the caller points: this file; under mutation testing (tools/mutation.py) mutmut
#: calls the mutated functions through a trampoline of its own, the first frame outside symwrap and torch
CALLER_FILES = {__file__}
if "mutmut.mutation.trampoline" in sys.modules:
    CALLER_FILES.add(sys.modules["mutmut.mutation.trampoline"].__file__)


def averaging(backbone, group="SO3", output="invariant", **config):
    torch.manual_seed(0)
    return symwrap.wrap(backbone, group=group, strategy="averaging", input="points", output=output, seed=0, **config)


def test_monte_carlo_averaging_warns_once_when_its_standard_error_is_large():
    model = averaging(point_mlp(), output="vector", num_samples_train=16)
    x = torch.randn(8, 6, 3, generator=torch.Generator().manual_seed(1))
    expected = r"num_samples_train=16 .* standard error is .* strategy='frames'"
    with pytest.warns(ApproximationWarning, match=expected) as record:
        model(x)
    assert record[0].filename in CALLER_FILES  # attributed to the line that called the model
    assert model.equivariance_error(x, n=4) > 0.1  # the warning was right
    with warnings.catch_warnings():
        warnings.simplefilter("error", ApproximationWarning)
        model(x)  # once per model


def test_monte_carlo_averaging_warns_again_for_the_evaluation_sample_count():
    """Training and evaluation may draw different numbers of samples: each count is warned about once."""
    model = averaging(point_mlp(), output="vector", num_samples_train=16, num_samples_eval=4)
    x = torch.randn(8, 6, 3)
    with pytest.warns(ApproximationWarning, match="num_samples_train=16"):
        model.train()(x)
    with pytest.warns(ApproximationWarning, match="num_samples_eval=4"):
        model.eval()(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ApproximationWarning)
        model.train()(x)
        model.eval()(x)


@pytest.mark.parametrize("case", ["invariant-backbone", "many-samples", "exact-finite-group", "one-sample"])
def test_averaging_does_not_warn_when_the_estimate_is_good_or_exact(case):
    x = torch.randn(8, 6, 3, generator=torch.Generator().manual_seed(1))
    if case == "invariant-backbone":
        model = averaging(Radii(), num_samples_train=4)
    elif case == "many-samples":  # a backbone that turns little: its average is well estimated from 256 copies
        backbone = point_mlp()
        with torch.no_grad():
            backbone[-1].bias.fill_(5.0)
        model = averaging(backbone, num_samples_train=256)
    elif case == "exact-finite-group":
        model = averaging(point_mlp(), group="S", num_samples_train=2)  # S_6 is enumerated: 720 copies, exact
    else:
        model = averaging(point_mlp(), output="vector", num_samples_train=1)  # no spread to measure from one copy
    with warnings.catch_warnings():
        warnings.simplefilter("error", ApproximationWarning)
        model(x)


def test_monte_carlo_error_is_the_standard_error_of_the_mean_relative_to_its_norm():
    model = averaging(point_mlp(), output="vector", num_samples_train=5)
    copies = torch.randn(5 * 4, 3, generator=torch.Generator().manual_seed(2)).double()
    mean = copies.reshape(5, 4, 3).mean(0)
    standard_error = copies.reshape(5, 4, 3).std(0).pow(2).sum().div(5).sqrt()
    assert model.monte_carlo_error(copies, mean, 5) == pytest.approx(float(standard_error / mean.norm()), rel=1e-9)
    identical = copies.reshape(5, 4, 3)[:1].repeat(5, 1, 1)  # every copy agrees: no Monte Carlo error
    assert model.monte_carlo_error(identical.reshape(20, 3), identical.mean(0), 5) == 0.0


# --- the penalty: its value, and its gradient into the interface -------------------------------------------------
def relaxed_and_hard(model, x, noise):
    """The relaxed and the hard sorting matrices the permutation interface builds for ``x`` and ``noise``,
    recomputed from the public building blocks."""
    from symwrap.nn import hard_permutation, straight_through_permutation
    from symwrap.strategies.symmetrization.interfaces import diffuse

    config, network = model.config, model.interface.network
    features, adjacency, mask = model.input_action.members(x)
    smooth = diffuse(noise, adjacency, config.noise_diffusion_steps)
    scores = smooth[..., 0] + network(features, adjacency, mask=mask, noise=smooth)
    _, soft, _ = straight_through_permutation(scores, config.tau, config.sinkhorn_iterations, mask=mask)
    return soft, hard_permutation(scores.detach(), mask)[0]


@pytest.mark.parametrize("weight", [1.0, 0.25])
def test_penalty_is_the_weighted_mean_squared_gap_between_the_relaxed_and_the_hard_permutation(weight):
    model = graph_model(penalty_weight=weight).train()
    x = random_graphs(4)
    noise = torch.randn(4, N, 1, generator=torch.Generator().manual_seed(3))
    assert model.auxiliary_loss(x) == {}  # no forward yet: nothing to penalise
    model.symmetrize(x, 1, noise=noise)
    penalty = model.auxiliary_loss(x)["penalty"]
    soft, hard = relaxed_and_hard(model, x, noise)
    gap = float(((soft - hard) ** 2).mean())
    assert 1e-4 < gap < 2 / N  # each row: a one-hot row against a row summing to 1
    assert float(penalty) == pytest.approx(weight * gap, rel=1e-5)
    terms = model.loss(model.symmetrize(x, 1, noise=noise), torch.randint(3, (4,)), x)
    assert set(terms) == {"task", "penalty", "total"}
    assert torch.allclose(terms["total"], terms["task"] + terms["penalty"])
    assert graph_model(penalty_weight=0.0).train().loss(model(x), torch.randint(3, (4,)), x).keys() == {"task",
                                                                                                         "total"}


def test_penalty_alone_trains_the_interface_towards_hard_permutations():
    """The gradient of the penalty term alone reaches the interface's parameters (a detached penalty would leave
    them at rest), and a small step along it makes the relaxed permutation closer to the hard one."""
    model = graph_model(penalty_weight=1.0).train()
    x = random_graphs(4)
    noise = torch.randn(4, N, 1, generator=torch.Generator().manual_seed(3))
    model.symmetrize(x, 1, noise=noise)
    penalty = model.auxiliary_loss(x)["penalty"]
    penalty.backward()
    parameters = [p for p in model.interface.parameters() if p.grad is not None]
    norm = float(sum(p.grad.pow(2).sum() for p in parameters).sqrt())
    assert norm > 0.05
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.backbone.parameters())
    with torch.no_grad():
        for p in parameters:
            p -= 1e-2 / norm * p.grad
        model.symmetrize(x, 1, noise=noise)
    assert float(model.auxiliary_loss(x)["penalty"]) < float(penalty)


# --- D4 on images: reflections as well as rotations ---------------------------------------------------------------
def d4_model(**config):
    pytest.importorskip("escnn")
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(16 * 16, 3))
    return symwrap.wrap(backbone, group="D4", strategy="symmetrization", input="image", output="invariant",
                        in_channels=1, hidden=4, **config)


def test_dihedral_image_sample_is_equivariant_for_gumbel_noise_moved_with_the_input():
    model = d4_model()
    group, image, regular = symwrap.get_group("D4"), symwrap.get_action("image"), symwrap.get_action("regular")
    x = torch.randn(8, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(8, 8, generator=torch.Generator().manual_seed(2))
    h = torch.arange(8)  # every element, reflections included
    _, _, sample = model.sample(x, noise=noise)
    _, _, moved = model.sample(image.act(group, h, x), noise=regular.act(group, h, noise))
    assert torch.equal(moved.elements, group.compose(h, sample.elements))
    assert equivariance_error(model.backbone, x, "D4", input="image", output="invariant") > 0.5
    with torch.no_grad():
        out = model.eval().symmetrize(x, 1, noise=noise)
        assert torch.allclose(model.symmetrize(image.act(group, h, x), 1, noise=regular.act(group, h, noise)), out,
                              atol=1e-5)
        # the straight-through path mixes the copies with one-hot weights: the same value while training
        assert torch.allclose(model.train().symmetrize(x, 1, noise=noise), out, atol=1e-5)


def test_dihedral_symmetrization_trains_the_interface_and_averages_over_samples():
    model = d4_model(seed=0)
    x = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    model.train()
    model.loss(model(x), torch.randint(3, (4,)), x)["total"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.interface.parameters())
    model.eval()
    errors = {}
    for k in (1, 64):  # equivariant in distribution: the error of the k-sample estimate falls as k grows
        model.config.num_samples_eval = k
        with torch.no_grad():
            errors[k] = equivariance_error(model, x, "D4", input="image", output="invariant", n=8)
    assert errors[64] < 0.5 * errors[1], errors


# --- configuration: every range, with the field named ---------------------------------------------------------------
@pytest.mark.parametrize("field, value, message", [
    ("num_samples_train", 0, "num_samples_train must be >= 1; got 0"),
    ("num_samples_eval", 0, "num_samples_eval must be >= 1; got 0"),
    ("hidden", 0, "hidden must be >= 1; got 0"),
    ("layers", 0, "layers must be >= 1; got 0"),
    ("in_channels", 0, "in_channels must be >= 1; got 0"),
    ("noise_scale", -0.1, "noise_scale must be >= 0; got -0.1"),
    ("frame_noise_scale", -1, "frame_noise_scale must be >= 0; got -1"),
    ("penalty_weight", -0.5, "penalty_weight must be >= 0; got -0.5"),
    ("tau", 0.0, "tau must be > 0; got 0.0"),
    ("temperature", -1.0, "temperature must be > 0; got -1.0"),
    ("noise_diffusion_steps", -1, "noise_diffusion_steps must be >= 0; got -1"),
    ("in_features", -1, "in_features must be >= 0; got -1"),
    ("gradient", "reinforce", r"gradient must be one of \('straight_through', 'none'\); got 'reinforce'"),
    ("hidden", 2.0, r"SymmetrizationConfig.hidden must be an integer or None; got 2.0 \(float\)"),
])
def test_symmetrization_config_ranges_name_the_field(field, value, message):
    from symwrap.strategies.symmetrization import SymmetrizationConfig

    with pytest.raises(ConfigError, match=f"^{message}$"):
        SymmetrizationConfig(**{field: value})


def test_symmetrization_config_accepts_the_edges_of_its_ranges():
    from symwrap.strategies.symmetrization import SymmetrizationConfig

    edges = dict(num_samples_train=1, num_samples_eval=1, hidden=1, layers=1, in_channels=1, noise_scale=0.0,
                 frame_noise_scale=0.0, penalty_weight=0.0, noise_diffusion_steps=0, in_features=0, tau=1e-6,
                 temperature=1e-6, gradient="none")
    config = SymmetrizationConfig(**edges)
    assert all(getattr(config, name) == value for name, value in edges.items())
    assert SymmetrizationConfig(in_channels=None, in_features=None).in_channels is None


# --- averaging: the Monte Carlo warning's threshold and message -----------------------------------------------------
@pytest.mark.parametrize("error, warned", [(0.05, False), (0.0501, True), (0.0, False), (float("nan"), False)])
def test_monte_carlo_warning_is_given_strictly_above_the_threshold(error, warned):
    from symwrap.strategies.symmetrization.averaging import MONTE_CARLO_WARNING_THRESHOLD

    assert MONTE_CARLO_WARNING_THRESHOLD == 0.05
    model = averaging(point_mlp(), output="vector", num_samples_train=4)
    measured = []
    model.monte_carlo_error = lambda copies, mean, k: measured.append(k) or error
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        model(torch.randn(2, 6, 3))
    assert measured == [4]
    assert [w.category for w in record] == ([ApproximationWarning] if warned else [])


@pytest.mark.parametrize("error, k, estimate", [
    (0.1, 16, "; it takes at least about 64 to bring it under 0.05"),
    (0.0501, 10, "; it takes at least about 11 to bring it under 0.05"),
    (float("inf"), 16, ""),
])
def test_monte_carlo_warning_estimates_the_samples_needed(error, k, estimate):
    model = averaging(point_mlp(), output="vector", num_samples_train=k)
    model.monte_carlo_error = lambda *_: error
    shown = f"{error:.2g}"
    expected = (f"group averaging over SO3 is a Monte Carlo estimate from num_samples_train={k} sampled elements per "
                f"input, and on this batch its standard error is {shown} of its norm (warned above 0.05), so the "
                "model is far from equivariant. Raise num_samples_train (the error falls as "
                f"1/sqrt(num_samples_train){estimate}),"
                " or use a strategy that is exact")
    with pytest.warns(ApproximationWarning) as record:
        model(torch.randn(2, 6, 3))
    assert str(record[0].message).startswith(expected)


def test_monte_carlo_warning_names_num_samples_in_evaluation_without_num_samples_eval():
    model = averaging(point_mlp(), output="vector", num_samples_train=16).eval()
    model.monte_carlo_error = lambda *_: 1.0
    with pytest.warns(ApproximationWarning, match="from num_samples_train=16 sampled"):
        model(torch.randn(2, 6, 3))


def test_monte_carlo_error_of_a_mean_of_zero_norm_and_of_dict_outputs():
    model = averaging(point_mlp(), output="vector", num_samples_train=2)
    opposite = torch.tensor([[1.0, 2.0, 0.0], [-1.0, -2.0, 0.0]])  # two copies of one sample that cancel
    assert model.monte_carlo_error(opposite, opposite.mean(0, keepdim=True), 2) == float("inf")
    assert model.monte_carlo_error(torch.zeros(2, 3), torch.zeros(1, 3), 2) == 0.0
    fields = {"pos": "points", "vel": "vectors"}
    dict_model = symwrap.wrap(nn.Identity(), group="SO3", strategy="averaging", input=fields, output=fields,
                              num_samples_train=3)
    generator = torch.Generator().manual_seed(0)
    copies = {"pos": torch.randn(3 * 2, 4, 3, generator=generator, dtype=torch.float64),
              "vel": torch.randn(3 * 2, 4, 3, generator=generator, dtype=torch.float64)}
    mean = {key: value.reshape(3, 2, 4, 3).mean(0) for key, value in copies.items()}
    stacked = torch.cat([copies["pos"], copies["vel"]], dim=1).reshape(3 * 2, 24)
    expected = model.monte_carlo_error(stacked, stacked.reshape(3, 2, 24).mean(0), 3)
    assert dict_model.monte_carlo_error(copies, mean, 3) == pytest.approx(expected, rel=1e-12)


# --- the interfaces: built from the config, seeded, and reading what they are given ---------------------------
def rotation_model(**config):
    torch.manual_seed(0)
    return symwrap.wrap(point_mlp(), group="SO3", strategy="symmetrization", input="points", output="vector",
                        **config)


def product_model(**config):
    torch.manual_seed(0)
    return symwrap.wrap(point_mlp(), group="SO3xS", strategy="symmetrization", input="points", output="vector",
                        **config)


def test_the_default_interface_networks_follow_the_config():
    frame_network = rotation_model(hidden=8, layers=1).interface.network
    assert len(frame_network.layers) == 1 and frame_network.layers[0].map.out_features == 8
    gin = graph_model(hidden=8, layers=2, noise_scale=0.5, noise_dim=3).interface.network
    assert (gin.hidden, len(gin.updates), gin.noise_scale, gin.noise_dim) == (8, 2, 0.5, 3)


@pytest.mark.parametrize("make, x", [
    (rotation_model, torch.randn(4, 6, 3, generator=torch.Generator().manual_seed(0))),
    (graph_model, random_graphs(4)),
    (product_model, torch.randn(4, 6, 3, generator=torch.Generator().manual_seed(0))),
], ids=["rotation", "permutation", "product"])
def test_the_interface_draws_its_noise_from_the_given_generator(make, x):
    model = make()

    def draw(seed):
        elements = model.sample(x, generator=torch.Generator().manual_seed(seed))[2].elements
        return torch.cat([part.double().flatten() for part in (elements if isinstance(elements, tuple) else
                                                                 (elements,))])

    with torch.no_grad():
        assert torch.equal(draw(3), draw(3))
        assert not torch.equal(draw(3), draw(4))  # the noise decides the sample


def test_the_rotation_interface_adds_noise_in_units_of_the_cloud_radius():
    model = rotation_model(frame_noise_scale=0.5)
    x = torch.randn(4, 6, 3, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(4, 6, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        frames = model.sample(x, noise=noise)[2].elements
        # scaling the cloud scales the noise with it, and the frame network is scale invariant
        assert torch.allclose(model.sample(10 * x, noise=noise)[2].elements, frames, atol=1e-5)
        assert torch.allclose(model.sample(0.1 * x, noise=noise)[2].elements, frames, atol=1e-5)
        assert not torch.allclose(model.sample(x, noise=2 * noise)[2].elements, frames, atol=1e-3)
        assert torch.allclose(torch.linalg.det(frames), torch.ones(4))


class FixedLogits(nn.Module):
    """Scores every image the same way: log-probabilities of the four quarter turns."""

    def __init__(self, probabilities):
        super().__init__()
        self.register_buffer("logits", torch.tensor(probabilities).log())

    def forward(self, images):
        return self.logits.expand(images.shape[0], -1)


def test_the_finite_interface_samples_the_softmax_of_its_scores_over_the_temperature():
    """Gumbel-max: element i is drawn with probability softmax(logits / temperature)_i."""
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    model = symwrap.wrap(backbone, group="C4", strategy="symmetrization", input="image", output="invariant",
                         in_channels=1, temperature=2.0)
    probabilities = [0.6, 0.25, 0.1, 0.05]
    model.interface.network = FixedLogits(probabilities)
    x = torch.zeros(4000, 1, 4, 4)
    with torch.no_grad():
        elements = model.sample(x, generator=torch.Generator().manual_seed(0))[2].elements
    group = symwrap.get_group("C4")
    counts = torch.bincount(group.index(elements), minlength=4).double() / len(x)
    expected = torch.softmax(torch.tensor(probabilities).log().double() / 2.0, dim=0)
    assert torch.allclose(counts, expected, atol=0.03), (counts, expected)
    # k copies of a batch score it once and draw k times
    with torch.no_grad():
        repeated = model.sample(x[:8], k=2, generator=torch.Generator().manual_seed(1))[2].elements
    assert repeated.shape[0] == 16 and len(set(group.index(repeated).tolist())) > 1


# --- the deterministic evaluation mode, and the cost of the default image interface ---------------------------------
def c4_image_model(**config):
    pytest.importorskip("escnn")
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(3))
    backbone(torch.zeros(1, 1, 24, 24))
    return symwrap.wrap(backbone, group="C4", strategy="symmetrization", input="image", output="invariant",
                        **config)


def test_mode_evaluation_is_deterministic_and_exactly_invariant_on_images():
    model = c4_image_model(num_samples_eval=1, eval_sampling="mode").eval()
    x = torch.randn(8, 1, 24, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        first = model(x)
        assert torch.equal(first, model(x))  # no noise: the same prediction call after call
        turned = model(torch.rot90(x, 1, dims=(-2, -1)))
    # the arg-max element turns with the image, so the backbone sees the very same pixels
    assert torch.allclose(turned, first, atol=1e-6)
    assert model.equivariance_error(x) <= 1e-5
    sampled = c4_image_model(num_samples_eval=1).eval()
    with torch.no_grad():
        assert not all(torch.equal(sampled(x), sampled(x)) for _ in range(3))  # the random mode draws


def test_mode_evaluation_uses_the_arg_max_of_the_scores_and_training_still_samples():
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    model = symwrap.wrap(backbone, group="C4", strategy="symmetrization", input="image", output="invariant",
                         in_channels=1, interface_network=None, num_samples_eval=1, eval_sampling="mode")
    model.interface.network = FixedLogits([0.1, 0.2, 0.6, 0.1])
    x = torch.randn(5, 1, 4, 4)
    elements = model.sample(x, mode=True)[2].elements
    assert torch.equal(elements, torch.full((5,), 2))
    drawn = torch.cat([model.sample(x, 8, generator=torch.Generator().manual_seed(s))[2].elements for s in range(4)])
    assert len(set(drawn.tolist())) > 1  # sampling still draws from the softmax


@pytest.mark.parametrize("make", [rotation_model, product_model], ids=["rotation", "product"])
def test_mode_evaluation_of_point_interfaces_is_deterministic_and_exactly_equivariant(make):
    model = make(num_samples_eval=1, eval_sampling="mode", noise_dim=1).double().eval()
    if make is product_model:  # the order's head starts at zero (every member tied: no unique mode): train it a bit
        with torch.no_grad():
            model.interface.permutation.network.head[-1].weight.normal_(generator=torch.Generator().manual_seed(1))
    x = torch.randn(5, 6, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    # float64 (no tied scores, no degenerate frames): the noise-free element moves with the input
    assert model.equivariance_error(x) <= 1e-9


def test_mode_evaluation_needs_one_sample_and_an_interface_that_has_a_mode():
    with pytest.raises(ConfigError, match=r"needs num_samples_eval=1; got num_samples_eval=8"):
        rotation_model(eval_sampling="mode")
    with pytest.raises(ConfigError, match=r"eval_sampling must be one of \('random', 'mode'\); got 'argmax'"):
        rotation_model(eval_sampling="argmax", num_samples_eval=1)

    class NoMode(nn.Module):
        def forward(self, action, group, x, generator=None, noise=None):
            raise AssertionError("not called")

    with pytest.raises(ConfigError, match="NoMode takes no mode= argument"):
        rotation_model(eval_sampling="mode", num_samples_eval=1, interface_network=NoMode())


def test_the_image_interface_reads_small_images_and_records_its_width():
    model = c4_image_model()
    sizes = []
    model.interface.network.register_forward_hook(lambda _m, inputs, _o: sizes.append(tuple(inputs[0].shape)))
    x = torch.randn(3, 1, 24, 24)
    with torch.no_grad():
        model.eval()(x)
        full = c4_image_model(interface_image_size=None)
        full.interface.network.register_forward_hook(lambda _m, inputs, _o: sizes.append(tuple(inputs[0].shape)))
        full.eval()(x)
        model.sample(torch.randn(3, 1, 12, 12))  # smaller than the interface size: never enlarged
    assert sizes == [(3, 1, 16, 16), (3, 1, 24, 24), (3, 1, 12, 12)]
    assert model.config.hidden == 8 and model.config.interface_image_size == 16
    assert model.interface.network.blocks[0].out_type.size == 8 * 4  # 8 regular C4 fields
    assert graph_model().config.hidden == 64 and rotation_model().config.hidden == 64
    assert c4_image_model(hidden=5).config.hidden == 5
    with pytest.raises(ConfigError, match="interface_image_size must be >= 4 pixels or None; got 2"):
        c4_image_model(interface_image_size=2)


def test_the_k_samples_of_an_image_are_one_backbone_call_and_one_scoring():
    model = c4_image_model(num_samples_eval=8).eval()
    backbone_rows, scored_rows = [], []
    model.backbone.register_forward_hook(lambda _m, inputs, _o: backbone_rows.append(inputs[0].shape[0]))
    model.interface.network.register_forward_hook(lambda _m, inputs, _o: scored_rows.append(inputs[0].shape[0]))
    with torch.no_grad():
        model(torch.randn(3, 1, 24, 24))
    assert backbone_rows == [8 * 3] and scored_rows == [3]


def test_averaging_over_an_enumerated_group_with_interpolated_turns_gives_no_monte_carlo_warning():
    """C8 on images is averaged over all 8 elements: there is no sampling error to warn about, although the
    45-degree turns are interpolated (the model is not exact, and ``is_exact`` says so)."""
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 9 * 9, 4))
    model = symwrap.wrap(backbone, group="C8", strategy="averaging", input="image")
    x = torch.randn(4, 3, 9, 9)
    assert not model.is_exact(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ApproximationWarning)
        model(x)


def test_a_model_saved_before_interface_image_size_existed_loads_with_full_resolution_scoring(tmp_path):
    model = c4_image_model(interface_image_size=None)
    model.save_pretrained(tmp_path / "model")
    config_file = next((tmp_path / "model").glob("*.json"))
    description = json.loads(config_file.read_text())
    assert description["config"].pop("interface_image_size") is None
    config_file.write_text(json.dumps(description))
    loaded = symwrap.load(tmp_path / "model", model.backbone)
    assert loaded.config.interface_image_size is None
    x = torch.randn(2, 1, 24, 24)
    with torch.no_grad():
        assert torch.equal(loaded.interface.network(x), model.interface.network(x))
    assert c4_image_model().config.interface_image_size == 16  # a new model reads small images
