import json
import warnings

import pytest
import torch
from torch import nn

import symwrap
from symwrap.errors import ApproximationWarning, ConfigError, ShapeError
from symwrap.metrics import equivariance_error, invariance_error


def small_cnn(out=5):
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 11 * 11, out))


def point_mlp(n_points=8, out=3):
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * n_points, 32), nn.Tanh(), nn.Linear(32, out))


def upright_images(n, generator):
    """Images with a bright bar along the top edge: an unmistakable upright pose."""
    x = 0.1 * torch.randn(n, 1, 13, 13, generator=generator)
    x[:, :, :2, 2:-2] += 1.0
    return x


@pytest.mark.parametrize("group", ["C4", "D4"])
@pytest.mark.parametrize("canonicalizer", ["contrastive", "equivariant"])
def test_image_canonicalization_is_exactly_invariant(group, canonicalizer):
    if canonicalizer == "equivariant":
        pytest.importorskip("escnn")
    backbone = small_cnn()
    model = symwrap.wrap(
        backbone, group=group, strategy="canonicalization", input="image", output="invariant",
        canonicalizer=canonicalizer, in_channels=1,
    ).eval()
    x = torch.randn(6, 1, 13, 13)
    assert invariance_error(backbone, x, group, input="image") > 1e-2
    assert invariance_error(model, x, group, input="image") <= 1e-5


@pytest.mark.parametrize("output", ["regular", "image"])
def test_regular_and_dense_outputs_are_moved_back(output):
    backbone = small_cnn(out=4) if output == "regular" else nn.Conv2d(1, 3, 3, padding=1)
    model = symwrap.wrap(backbone, group="C4", strategy="canonicalization", input="image", output=output).eval()
    x = torch.randn(5, 1, 13, 13)
    assert equivariance_error(model, x, "C4", input="image", output=output) <= 1e-5


@pytest.mark.parametrize("group,output", [("SO3", "vector"), ("O3", "vector"), ("O3", "invariant"), ("E3", "point"),
                                          ("SE3", "points")])
@pytest.mark.parametrize("canonicalizer", ["pca", "equivariant"])
def test_point_canonicalization_is_exactly_equivariant(group, output, canonicalizer):
    backbone = point_mlp(out=24 if output == "points" else 3)
    if output == "points":
        backbone = nn.Sequential(backbone, nn.Unflatten(1, (8, 3)))
    model = symwrap.wrap(backbone, group=group, strategy="canonicalization", input="points", output=output,
                         canonicalizer=canonicalizer).eval()
    x = torch.randn(6, 8, 3, dtype=torch.float64)
    model.double()
    assert equivariance_error(backbone.double(), x, group, input="points", output=output, n=8) > 1e-2
    assert equivariance_error(model, x, group, input="points", output=output, n=16) <= 1e-5


@pytest.mark.parametrize("canonicalizer", ["pca", "equivariant", "contrastive"])
def test_degenerate_point_sets_give_finite_outputs_and_gradients(canonicalizer):
    model = symwrap.wrap(point_mlp(), group="SO3", strategy="canonicalization", input="points", output="vector",
                         canonicalizer=canonicalizer)
    x = torch.zeros(3, 8, 3)
    x[1, :, 0] = torch.arange(8.0)  # collinear
    x[2, :4, :2] = torch.tensor([[1.0, 0], [0, 1], [-1, 0], [0, -1]])  # coincident rest, symmetric square
    x.requires_grad_(True)
    out = model(x)
    terms = model.loss(out, torch.randn(3, 3), x)
    terms["total"].backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("gradient", ["straight_through", "gumbel"])
def test_gradients_reach_canonicalizer_and_backbone(gradient):
    backbone = small_cnn()
    model = symwrap.wrap(backbone, group="C4", strategy="canonicalization", input="image", gradient=gradient,
                         prior_weight=0.0, contrastive_weight=0.0)
    x, y = torch.randn(4, 1, 13, 13), torch.randint(5, (4,))
    terms = model.loss(model(x), y, x)
    assert set(terms) == {"task", "total"}
    terms["total"].backward()
    canonicalizer_grad = sum(p.grad.abs().sum() for p in model.canonicalizer.parameters() if p.grad is not None)
    backbone_grad = sum(p.grad.abs().sum() for p in backbone.parameters())
    assert canonicalizer_grad > 0 and backbone_grad > 0


def train_canonicalizer(model, batches, steps, lr=1e-2):
    optimizer = torch.optim.Adam(model.canonicalizer.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        x = batches(step)
        model(x)
        loss = sum(model.auxiliary_loss(x).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def test_prior_raises_the_identity_metric_on_upright_data():
    generator = torch.Generator().manual_seed(0)
    model = symwrap.wrap(small_cnn(), group="C4", strategy="canonicalization", input="image",
                         prior_weight=1.0, contrastive_weight=0.1)
    held_out = upright_images(64, generator)
    with torch.no_grad():  # start from a canonicalizer that prefers the quarter turn over the identity
        model(held_out)
        model.canonicalizer.reference.copy_(model._last["embeddings"][:, 1].mean(0, keepdim=True))
    before = model.identity_metric(held_out)
    train_canonicalizer(model, lambda step: upright_images(32, generator), steps=60)
    after = model.identity_metric(held_out)
    assert before < 0.5 and after > 0.95, (before, after)
    # and the canonicalizer still undoes rotations: rotated upright images map back to the identity pose
    rotated = symwrap.get_action("image").act(symwrap.get_group("C4"), torch.full((64,), 1), held_out)
    assert invariance_error(model, rotated, "C4", input="image") <= 1e-5


def test_contrastive_loss_makes_the_scores_of_copies_distinct():
    generator = torch.Generator().manual_seed(1)
    model = symwrap.wrap(small_cnn(), group="D4", strategy="canonicalization", input="image",
                         prior_weight=0.0, contrastive_weight=1.0)
    held_out = torch.randn(64, 1, 13, 13, generator=generator)

    @torch.no_grad()
    def contrastive(x):
        model(x)
        return model.auxiliary_loss(x)["contrastive"].item()

    before = contrastive(held_out)
    train_canonicalizer(model, lambda step: torch.randn(32, 1, 13, 13, generator=generator), steps=60)
    after = contrastive(held_out)
    assert after < before / 2, (before, after)
    with torch.no_grad():
        model(held_out)
        top2 = model._last["logits"].topk(2, dim=1).values
    assert bool(((top2[:, 0] - top2[:, 1]) > 1e-4).all())  # no ties on a held-out batch


def test_artifact_term_for_interpolated_rotations():
    model = symwrap.wrap(small_cnn(), group="C8", strategy="canonicalization", input="image", artifact_weight=1.0)
    x = torch.randn(4, 1, 13, 13)
    terms = model.loss(model(x), torch.randint(5, (4,)), x)
    assert {"prior", "contrastive", "artifact"} <= set(terms) and terms["artifact"] > 0
    terms["total"].backward()


def test_continuous_contrastive_canonicalizer_learns_an_equivariant_frame():
    """A plain PointNet regresses the frame of augmented copies: its SO(2) error falls well below the start."""
    generator = torch.Generator().manual_seed(2)
    group, points = symwrap.get_group("SO2"), symwrap.get_action("points")
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 2))
    model = symwrap.wrap(backbone, group="SO2", strategy="canonicalization", input="points", output="vector",
                         canonicalizer="contrastive", prior_weight=0.0)
    shape = torch.randn(1, 8, 2, generator=generator)  # one rigid shape, seen in random poses

    def batch(step):
        noisy = shape + 0.05 * torch.randn(64, 8, 2, generator=generator)
        return points.act(group, group.sample(64, generator=generator), noisy)

    held_out = batch(-1)
    before = model.equivariance_error(held_out, n=8)
    train_canonicalizer(model, batch, steps=250, lr=3e-3)
    after = model.equivariance_error(held_out, n=8)
    assert after < before / 4, (before, after)


def test_save_and_load_with_a_custom_canonicalizer_network(tmp_path):
    from symwrap.strategies.canonicalization import ImageEncoder

    def make():
        torch.manual_seed(3)
        return small_cnn(), ImageEncoder(1, 16)

    backbone, network = make()
    model = symwrap.wrap(backbone, group="C4", strategy="canonicalization", input="image",
                         canonicalizer_network=network, embedding_dim=16).eval()
    model.save_pretrained(tmp_path)
    fresh_backbone, fresh_network = make()
    for p in list(fresh_backbone.parameters()) + list(fresh_network.parameters()):
        p.data.normal_()
    restored = symwrap.load(tmp_path, backbone=fresh_backbone, canonicalizer_network=fresh_network).eval()
    x = torch.randn(3, 1, 13, 13)
    assert torch.equal(model(x), restored(x))


def test_configuration_errors_say_what_to_use():
    with pytest.raises(ConfigError, match="continuous groups"):
        symwrap.wrap(small_cnn(), group="C4", strategy="canonicalization", input="image", canonicalizer="pca")
    with pytest.raises(ConfigError, match="canonicalizer must be one of"):
        symwrap.wrap(small_cnn(), group="C4", strategy="canonicalization", input="image", canonicalizer="learned")
    with pytest.raises(ConfigError, match="gradient must be one of"):
        symwrap.wrap(small_cnn(), group="C4", strategy="canonicalization", input="image", gradient="reinforce")


@pytest.mark.parametrize("canonicalizer", ["contrastive", "equivariant"])
def test_a_smaller_canonicalizer_input_keeps_finite_group_canonicalization_exact(canonicalizer):
    if canonicalizer == "equivariant":
        pytest.importorskip("escnn")
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(5))
    x = torch.randn(4, 3, 40, 40)
    backbone(x)
    model = symwrap.wrap(backbone, group="D4", strategy="canonicalization", input="image", canonicalizer=canonicalizer,
                         canonicalizer_input_size=20).eval()
    assert invariance_error(model, x, "D4", input="image") <= 1e-5


def test_so2_image_canonicalization_is_exact_on_quarter_turns():
    pytest.importorskip("escnn")
    backbone = small_cnn()
    model = symwrap.wrap(backbone, group="SO2", strategy="canonicalization", input="image", canonicalizer="equivariant",
                         in_channels=1).eval()
    x = torch.randn(4, 1, 13, 13)
    assert invariance_error(backbone, x, "C4", input="image") > 1e-2
    assert invariance_error(model, x, "C4", input="image") <= 1e-5
    # other angles are interpolated, so the error is small but not round-off
    bare = invariance_error(backbone, x, "SO2", input="image", n=8)
    assert invariance_error(model, x, "SO2", input="image", n=8) < bare


class NotToBeCalled(nn.Module):
    def forward(self, x):
        raise AssertionError("canonicalizer_loss must not run the backbone")


def test_canonicalizer_loss_trains_the_canonicalizer_alone():
    model = symwrap.wrap(NotToBeCalled(), group="C8", strategy="canonicalization", input="image",
                         artifact_weight=1.0, in_channels=1).train()
    terms = model.canonicalizer_loss(torch.randn(4, 1, 13, 13))
    assert set(terms) == {"prior", "contrastive", "artifact", "total"}
    terms["total"].backward()
    assert all(p.grad is not None for p in model.canonicalizer.parameters())


def test_augmented_prior_teaches_the_pose_of_turned_upright_images():
    """With ``augment``, upright images turned by a random h are trained to canonicalize to h, which includes
    the 45° turns for which the escnn canonicalizer is only approximately equivariant."""
    generator = torch.Generator().manual_seed(3)
    group, image = symwrap.get_group("C8"), symwrap.get_action("image")
    model = symwrap.wrap(small_cnn(), group="C8", strategy="canonicalization", input="image",
                         canonicalizer="equivariant", hidden=4, in_channels=1)
    held_out = upright_images(64, generator)
    turned = image.act(group, torch.full((64,), 1), held_out)  # every image turned by 45°

    def pose_accuracy():
        with torch.no_grad():
            model.eval()(turned)
        return float((model._last["index"] == 1).double().mean())

    before = pose_accuracy()
    optimizer = torch.optim.Adam(model.canonicalizer.parameters(), lr=1e-2)
    model.train()
    for _ in range(40):
        loss = model.canonicalizer_loss(upright_images(32, generator))["total"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = pose_accuracy()
    assert after > 0.9 and after > before + 0.3, (before, after)
    assert model.identity_metric(held_out) > 0.9


def test_augmented_prior_of_a_frame_targets_the_sampled_rotation():
    """PCA frames are exactly equivariant, so on inputs whose own frame is the identity the augmented prior
    (‖R(h·x) − h‖²) is zero while the plain prior on the turned inputs is not."""
    generator = torch.Generator().manual_seed(4)
    stretched = torch.randn(16, 12, 3, generator=generator) * torch.tensor([3.0, 2.0, 1.0])
    upright = stretched - stretched.mean(1, keepdim=True)
    model = symwrap.wrap(point_mlp(12), group="SO3", strategy="canonicalization", input="points",
                         output="vector", canonicalizer="pca")
    frames = model.canonicalizer(upright)
    upright = upright @ frames  # each set in its own frame: canonical
    assert model.canonicalizer_loss(upright)["prior"] < 1e-8
    assert model.canonicalizer_loss(upright, augment=False)["prior"] < 1e-8
    turned = upright @ symwrap.get_group("SO3").sample(16, generator=generator).transpose(1, 2)
    assert model.canonicalizer_loss(turned, augment=False)["prior"] > 1e-2


# --- default networks: built at wrap(), channels read from the backbone, "auto" resolved ------------------
def tiny_timm_vit(in_chans):
    timm = pytest.importorskip("timm")
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=8, patch_size=4, in_chans=in_chans,
                             num_classes=3, embed_dim=16, depth=1, num_heads=2)


def tiny_hf_vit(num_channels):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(image_size=8, patch_size=4, num_channels=num_channels, hidden_size=16,
                                    num_hidden_layers=1, num_attention_heads=2, intermediate_size=16, num_labels=3)
    return transformers.ViTForImageClassification(config)


@pytest.mark.parametrize("make,channels,size", [(lambda: small_cnn(), 1, 13), (lambda: tiny_timm_vit(2), 2, 8),
                                                (lambda: tiny_hf_vit(1), 1, 8), (lambda: tiny_hf_vit(3), 3, 8)],
                         ids=["cnn", "timm-vit", "hf-vit-grey", "hf-vit-rgb"])
def test_image_canonicalizer_is_built_at_wrap_for_the_backbones_channels(make, channels, size, tmp_path):
    model = symwrap.wrap(make(), group="C4", strategy="canonicalization", input="image", output="invariant")
    assert model.config.canonicalizer == "contrastive" and model.config.in_channels == channels
    params = list(model.canonicalizer.parameters())
    assert not any(isinstance(p, nn.parameter.UninitializedParameter) for p in params)
    assert model.canonicalizer.network.features[0].weight.shape[1] == channels
    assert sum(p.numel() for p in model.parameters()) > sum(p.numel() for p in model.backbone.parameters())
    assert "canonicalizer.network.features.0.weight" in model.state_dict()
    model.save_pretrained(tmp_path)  # before any forward
    assert json.loads((tmp_path / "symwrap_config.json").read_text())["config"]["in_channels"] == channels
    x = torch.randn(2, channels, size, size)
    assert invariance_error(model.eval(), x, "C4", input="image") <= 1e-5


def test_image_channels_are_read_from_the_first_module_that_tells():
    from symwrap.backbones.introspection import image_channels

    assert image_channels(small_cnn()) == 1
    assert image_channels(nn.Sequential(nn.Conv2d(2, 3, 1), tiny_hf_vit(3))) == 2  # the stem before the ViT
    assert image_channels(tiny_hf_vit(4)) == 4
    assert image_channels(nn.Sequential(nn.LazyConv2d(4, 3), nn.Flatten())) is None  # not built yet
    assert image_channels(nn.Sequential(nn.Flatten(), nn.Linear(4, 2))) is None
    assert image_channels(lambda x: x) is None


def test_a_given_channel_count_wins_and_user_config_objects_stay_untouched():
    from symwrap.strategies.canonicalization import CanonicalizationConfig

    config = CanonicalizationConfig()
    model = symwrap.wrap(small_cnn(), group="C4", strategy="canonicalization", input="image", config=config)
    assert (config.canonicalizer, config.in_channels) == ("auto", None)
    assert (model.config.canonicalizer, model.config.in_channels) == ("contrastive", 1)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(2 * 8 * 8, 3))
    model = symwrap.wrap(mlp, group="C4", strategy="canonicalization", input="image", in_channels=2)
    assert model.config.in_channels == 2 and model.canonicalizer.network.in_channels == 2


@pytest.mark.parametrize("canonicalizer", ["contrastive", "equivariant"])
def test_an_image_backbone_that_does_not_tell_its_channels_needs_in_channels(canonicalizer):
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(8 * 8, 3))
    with pytest.raises(ConfigError, match=r"Sequential does not tell.*pass in_channels="):
        symwrap.wrap(mlp, group="C4", strategy="canonicalization", input="image", canonicalizer=canonicalizer)
    with pytest.raises(ConfigError, match="in_channels must be >= 1; got 0"):
        symwrap.wrap(mlp, group="C4", strategy="canonicalization", input="image", in_channels=0)
    # a network of your own needs no channel count
    network = nn.Sequential(nn.Flatten(), nn.Linear(8 * 8, 32))
    model = symwrap.wrap(mlp, group="C4", strategy="canonicalization", input="image", canonicalizer_network=network,
                         embedding_dim=32)
    assert model.config.in_channels is None and model.config.canonicalizer == "contrastive"


@pytest.mark.parametrize("canonicalizer", ["contrastive", "equivariant"])
def test_images_with_other_channels_than_the_canonicalizer_was_built_for_raise_a_shape_error(canonicalizer):
    if canonicalizer == "equivariant":
        pytest.importorskip("escnn")
    model = symwrap.wrap(small_cnn(), group="C4", strategy="canonicalization", input="image",
                         canonicalizer=canonicalizer, hidden=2)
    with pytest.raises(ShapeError, match=r"built for images with 1 channel\(s\); got 3 channel\(s\).*in_channels=3"):
        model(torch.randn(2, 3, 13, 13))


AUTO_CASES = [  # group, input, output, point dimension (None: images), the concrete choice, its canonicalizer
    ("C4", "image", "invariant", None, "contrastive", "ContrastiveScorer"),
    ("D4", "image", "invariant", None, "contrastive", "ContrastiveScorer"),
    ("SO3", "points", "vector", 3, "equivariant", "VectorNeuronFrame"),
    ("O3", "points", "vector", 3, "equivariant", "VectorNeuronFrame"),
    ("E3", "points", "point", 3, "equivariant", "VectorNeuronFrame"),
    ("SE3", "points", "point", 3, "equivariant", "VectorNeuronFrame"),
    ("SO2", "points", "vector", 2, "equivariant", "VectorNeuronFrame"),
    ("O2", "points", "vector", 2, "equivariant", "VectorNeuronFrame"),
    ("O2", "image", "invariant", None, "contrastive", "RegressedFrame"),
]


def _auto_model(group, input, output, dim, **config):
    if dim is None:
        backbone = small_cnn(out=2)
    else:
        backbone = point_mlp(n_points=8, out=dim * 8) if output == "points" else nn.Sequential(
            nn.Flatten(), nn.Linear(8 * dim, 32), nn.Tanh(), nn.Linear(32, 1 if output == "invariant" else dim))
    return symwrap.wrap(backbone, group=group, strategy="canonicalization", input=input, output=output, **config)


@pytest.mark.parametrize("group,input,output,dim,kind,canonicalizer", AUTO_CASES,
                         ids=[case[0] + "-" + case[1] for case in AUTO_CASES])
def test_auto_resolves_to_an_exact_canonicalizer_where_one_exists(group, input, output, dim, kind, canonicalizer,
                                                                  tmp_path):
    torch.manual_seed(0)
    model = _auto_model(group, input, output, dim)
    assert model.config.canonicalizer == kind and type(model.canonicalizer).__name__ == canonicalizer
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "symwrap_config.json").read_text())["config"]["canonicalizer"] == kind
    if canonicalizer == "RegressedFrame":
        return  # approximate: see the warning tests below
    x = torch.randn(4, 1, 13, 13) if dim is None else torch.randn(4, 8, dim)
    assert model.eval().is_exact(x)
    assert equivariance_error(model, x, group, input=input, output=output, n=8) <= 1e-5  # float32


def test_auto_scores_permutations_with_the_contrastive_scorer():
    from symwrap.strategies.canonicalization.model import default_canonicalizer

    for group in ("S", "S4", "C4xS"):
        assert default_canonicalizer(symwrap.get_group(group), symwrap.get_action("points")) == "contrastive"
    network = nn.Sequential(nn.Flatten(), nn.Linear(12, 8))  # a permutation-sensitive embedding of 4 points
    model = symwrap.wrap(point_mlp(n_points=4), group="S", strategy="canonicalization", input="points",
                         canonicalizer_network=network, embedding_dim=8).eval()
    assert type(model.canonicalizer).__name__ == "ContrastiveScorer"
    x = torch.randn(3, 4, 3)
    assert invariance_error(model, x, "S", input="points") <= 1e-5


def test_auto_picks_escnn_for_so2_images_when_it_is_installed(monkeypatch):
    import importlib.util

    model = _auto_model("SO2", "image", "invariant", None, hidden=2)
    expected = "equivariant" if importlib.util.find_spec("escnn") else "contrastive"
    assert model.config.canonicalizer == expected
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "escnn" else real(name, *a))
    model = _auto_model("SO2", "image", "invariant", None)
    assert model.config.canonicalizer == "contrastive" and type(model.canonicalizer).__name__ == "RegressedFrame"


def test_auto_with_a_network_of_your_own_means_contrastive():
    network = nn.Sequential(nn.Flatten(), nn.Linear(24, 9))
    model = symwrap.wrap(point_mlp(), group="SO3", strategy="canonicalization", input="points", output="vector",
                         canonicalizer_network=network)
    assert model.config.canonicalizer == "contrastive" and model.canonicalizer.network is network


def test_a_frame_network_giving_the_wrong_shape_raises_a_shape_error():
    network = nn.Sequential(nn.Flatten(), nn.Linear(24, 5))
    model = symwrap.wrap(point_mlp(), group="SO3", strategy="canonicalization", input="points", output="vector",
                         canonicalizer_network=network)
    with pytest.raises(ShapeError, match=r"must return \(N, 9\) frame vectors.*got \(2, 5\)"):
        model(torch.randn(2, 8, 3))


def test_symmetric_point_sets_are_not_promised_exact_by_vector_neurons():
    """A centrally symmetric cloud has no equivariant frame under SO2 (its half turn is itself): the Vector-Neuron
    vectors vanish and the frame is a fixed fallback, so the model must not promise exactness there."""
    model = _auto_model("SO2", "points", "vector", 2)
    half = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(0))
    symmetric = torch.cat([half, -half], dim=1)
    assert model.canonicalizer.degenerate(symmetric).all() and not model.is_exact(symmetric)
    assert not model.canonicalizer.degenerate(torch.randn(3, 8, 2)).any()


# --- a learned frame warns when it is far from equivariant --------------------------------------------------
class RelativePositions(nn.Module):
    """An exactly equivariant 'learned' frame network for 2-D points: the first two points about the centroid."""

    def forward(self, points):
        centred = points - points.mean(dim=1, keepdim=True)
        return torch.stack([centred[:, 0], centred[:, 1]], dim=-1).flatten(1)


def test_an_untrained_regressed_frame_warns_once_on_its_first_evaluation_batch():
    model = _auto_model("SO2", "points", "vector", 2, canonicalizer="contrastive")
    x = torch.randn(16, 8, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ApproximationWarning)
        model.train()(x)  # training: not measured
    with pytest.warns(ApproximationWarning, match=r"far from equivariant: ‖F\(h·x\) − h·F\(x\)‖ / ‖F\(x\)‖ = "):
        model.eval()(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ApproximationWarning)
        model(x)  # once per model
    assert model.equivariance_error(x, n=4) > 0.1


def test_an_equivariant_regressed_frame_does_not_warn():
    model = _auto_model("SO2", "points", "vector", 2, canonicalizer="contrastive",
                        canonicalizer_network=RelativePositions())
    x = torch.randn(16, 8, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ApproximationWarning)
        model.eval()(x)
    assert model._frame_checked and model.equivariance_error(x, n=4) <= 1e-5
