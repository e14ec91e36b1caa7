import json
import math
import re
import warnings

import pytest
import torch
import torch.nn.functional as F
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
    assert not model.is_exact(x.detach())  # no canonicalizer has an equivariant frame for these
    # a degenerate set in the batch does not spoil the others: the generic sets stay exactly equivariant
    generic = torch.randn(4, 8, 3, dtype=torch.float64) * torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)
    mixed = torch.cat([x.detach().double(), generic])
    model.double().eval()
    if canonicalizer == "contrastive":
        return  # a regressed frame promises nothing
    assert model.is_exact(generic) and not model.is_exact(mixed)
    rotation = symwrap.get_group("SO3").sample(7, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        moved, expected = model(mixed @ rotation.transpose(1, 2)), (rotation @ model(mixed).unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(moved[3:], expected[3:], atol=1e-10, rtol=1e-10)


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


# --- the training terms, computed by hand on tiny inputs -----------------------------------------------------
def _flat_embedding(pixels=16, dim=4):
    """A non-equivariant embedding of 1 x 4 x 4 images (seeded by the autouse fixture)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(pixels, dim))


def _tiny_image_model(**config):
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    return symwrap.wrap(backbone, group="C4", strategy="canonicalization", input="image", output="invariant",
                        canonicalizer_network=_flat_embedding(), embedding_dim=4, **config)


@pytest.mark.parametrize("train", [True, False])
def test_finite_group_terms_are_the_prior_cross_entropy_and_the_mean_off_diagonal_cosine(train):
    """prior = w_p · CE(scores / T, identity); contrastive = w_c · mean |cos| over pairs of distinct copies;
    scores = 10 · cos(embedding of copy, reference). Both are blind to the order of the copies, so the four
    quarter turns of each image can be made with torch.rot90 here."""
    model = _tiny_image_model(prior_weight=0.7, contrastive_weight=0.3, temperature=2.0).train(train)
    x = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        terms = model.auxiliary_loss(x)
        network, reference = model.canonicalizer.network, model.canonicalizer.reference[0]
        embeddings = torch.stack([network(torch.rot90(x, k, dims=(-2, -1))) for k in range(4)], dim=1)  # (B, 4, D)
        logits = 10 * F.cosine_similarity(embeddings, reference, dim=-1) / 2.0
        prior = (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()  # copy 0 is x itself: the identity
        unit = F.normalize(embeddings, dim=-1)
        cosines = (unit @ unit.transpose(1, 2)).abs()
        contrastive = (cosines.sum((1, 2)) - cosines.diagonal(dim1=1, dim2=2).sum(1)).mean() / 12
    assert set(terms) == {"prior", "contrastive"}
    torch.testing.assert_close(terms["prior"], 0.7 * prior)
    torch.testing.assert_close(terms["contrastive"], 0.3 * contrastive)
    torch.testing.assert_close(model._last["logits"].sort(dim=1).values, logits.sort(dim=1).values)
    y = torch.tensor([0, 2, 1])
    loss = model.loss(model(x), y, x)
    torch.testing.assert_close(loss["total"], loss["task"] + loss["prior"] + loss["contrastive"])


def test_zero_weights_leave_their_terms_out():
    x = torch.randn(2, 1, 4, 4)
    assert set(_tiny_image_model(prior_weight=0.0).auxiliary_loss(x)) == {"contrastive"}
    assert set(_tiny_image_model(contrastive_weight=0.0).auxiliary_loss(x)) == {"prior"}
    model = _tiny_image_model(prior_weight=0.0, contrastive_weight=0.0)
    assert model.auxiliary_loss(x) == {}
    with pytest.raises(ConfigError, match="nothing to train: prior_weight and contrastive_weight are 0"):
        model.canonicalizer_loss(x)


def test_frame_prior_is_the_squared_distance_of_the_frame_to_the_identity():
    model = symwrap.wrap(point_mlp(), group="SO3", strategy="canonicalization", input="points", output="vector",
                         canonicalizer="pca", prior_weight=0.5)
    x = torch.randn(4, 8, 3, dtype=torch.float64) * torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)
    model.double()
    frames = model.canonicalizer(x)
    expected = 0.5 * ((frames - torch.eye(3, dtype=torch.float64)) ** 2).sum((1, 2)).mean()
    terms = model.auxiliary_loss(x)
    assert set(terms) == {"prior"}  # PCA frames are not learned: no regression term
    torch.testing.assert_close(terms["prior"], expected)
    assert float(expected) > 0.1


def test_frame_regression_term_is_the_squared_error_of_the_moved_frame():
    """contrastive = w_c · mean_b ‖F(h·x) − h·F(x)‖² for one h per input (drawn from the global generator)."""
    network = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    model = _auto_model("SO2", "points", "vector", 2, canonicalizer="contrastive", canonicalizer_network=network,
                        prior_weight=0.0, contrastive_weight=0.25)
    x = torch.randn(5, 8, 2)
    model.train()(x)
    torch.manual_seed(11)
    terms = model.auxiliary_loss(x)
    torch.manual_seed(11)
    h = symwrap.get_group("SO2").sample(5)
    with torch.no_grad():
        frame, moved = model.canonicalizer(x), model.canonicalizer(x @ h.transpose(1, 2))
    assert set(terms) == {"contrastive"}
    torch.testing.assert_close(terms["contrastive"], 0.25 * ((moved - h @ frame) ** 2).sum((1, 2)).mean())
    assert float(terms["contrastive"].detach()) > 0.1
    # an exactly equivariant frame network pays nothing
    exact = _auto_model("SO2", "points", "vector", 2, canonicalizer="contrastive",
                        canonicalizer_network=RelativePositions(), prior_weight=0.0)
    assert float(exact.auxiliary_loss(x)["contrastive"].detach()) < 1e-10


# --- how gradients cross the discrete choice -----------------------------------------------------------------
@pytest.mark.parametrize("gradient", ["straight_through", "gumbel", "none"])
def test_which_parameters_the_task_loss_reaches(gradient):
    """straight_through and gumbel carry the task gradient to the canonicalizer through the softmax of the
    scores; "none" stops it at the hard choice, so only the backbone learns from the task."""
    model = _tiny_image_model(gradient=gradient, prior_weight=0.0, contrastive_weight=0.0).train()
    x, y = torch.randn(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    model.loss(model(x), y, x)["total"].backward()
    canonicalizer = [p.grad for p in model.canonicalizer.parameters()]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())
    if gradient == "none":
        assert all(g is None for g in canonicalizer)
    else:
        assert all(g is not None for g in canonicalizer) and sum(g.abs().sum() for g in canonicalizer) > 0


@pytest.mark.parametrize("gradient", ["straight_through", "none"])
def test_training_forward_is_the_hard_choice(gradient):
    """Straight-through weights are one-hot in value: in training the backbone sees exactly the chosen copy,
    as in evaluation, and the training output is exactly invariant too."""
    model = _tiny_image_model(gradient=gradient)
    x = torch.randn(6, 1, 4, 4)
    with torch.no_grad():
        evaluated = model.eval()(x)
        trained = model.train()(x)
    torch.testing.assert_close(trained, evaluated, atol=1e-6, rtol=1e-6)
    turned = torch.rot90(x, 1, dims=(-2, -1))
    with torch.no_grad():
        torch.testing.assert_close(model(turned), trained, atol=1e-6, rtol=1e-6)


def test_gumbel_samples_the_choice_in_training_and_takes_the_arg_max_in_evaluation():
    model = _tiny_image_model(gradient="gumbel", temperature=100.0)  # nearly flat scores: Gumbel noise decides
    x = torch.randn(64, 1, 4, 4)
    with torch.no_grad():
        model.eval()(x)
        arg_max = model._last["logits"].argmax(dim=1)
        assert torch.equal(model._last["index"], arg_max)
        model.train()(x)
    sampled = model._last["index"]
    assert (sampled != arg_max).float().mean() > 0.3
    assert set(sampled.tolist()) == {0, 1, 2, 3}


# --- what the model promises, and what it refuses --------------------------------------------------------------
def test_is_exact_only_where_the_choice_and_the_moves_are_exact():
    images = torch.randn(2, 1, 13, 13)
    assert _auto_model("C4", "image", "invariant", None).is_exact(images)
    assert not _auto_model("C8", "image", "invariant", None).is_exact(images)  # 45° turns are interpolated
    assert not _auto_model("O2", "image", "invariant", None).is_exact(images)  # a regressed frame
    points = torch.randn(3, 8, 3)
    pca = _auto_model("SO3", "points", "vector", 3, canonicalizer="pca")
    assert pca.is_exact(points)
    square = torch.zeros(3, 8, 3)
    square[:, :4, :2] = torch.tensor([[1.0, 0], [0, 1], [-1, 0], [0, -1]])  # equal principal axes
    assert not pca.is_exact(square)
    assert not _auto_model("SO3", "points", "vector", 3, canonicalizer="contrastive").is_exact(points)


def test_identity_metric_of_frames_counts_the_frames_near_the_identity():
    """PCA frames of sets put in their own frame are the identity; a turned set is not, unless the tolerance is
    wider than its distance to the identity."""
    model = _auto_model("SO3", "points", "vector", 3, canonicalizer="pca").double()
    stretched = torch.randn(8, 8, 3, dtype=torch.float64) * torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)
    upright = stretched @ model.canonicalizer(stretched)
    assert model.identity_metric(upright) == 1.0
    angle = torch.tensor(0.3, dtype=torch.float64)
    turn = torch.tensor([[1.0, 0, 0], [0, angle.cos(), -angle.sin()], [0, angle.sin(), angle.cos()]],
                        dtype=torch.float64)
    turned = torch.cat([upright[:4], upright[4:] @ turn.T])  # half the sets turned by 0.3 rad: ‖R − I‖ = 0.42
    assert model.identity_metric(turned) == 0.5
    assert model.identity_metric(turned, tolerance=0.5) == 1.0


@pytest.mark.parametrize("field,value,message", [
    ("prior_weight", -0.1, "prior_weight must be >= 0; got -0.1"),
    ("contrastive_weight", -1.0, "contrastive_weight must be >= 0; got -1.0"),
    ("artifact_weight", -2.0, "artifact_weight must be >= 0; got -2.0"),
    ("temperature", 0.0, "temperature must be > 0; got 0.0"),
    ("canonicalizer_input_size", 3, "canonicalizer_input_size must be 'auto', None or >= 4 pixels; got 3"),
    ("embedding_dim", 0, "embedding_dim must be >= 1; got 0"),
    ("hidden", 0, "hidden must be >= 1; got 0"),
    ("in_channels", 0, "in_channels must be >= 1; got 0"),
])
def test_config_values_are_checked(field, value, message):
    from symwrap.strategies.canonicalization import CanonicalizationConfig

    with pytest.raises(ConfigError, match=message):
        CanonicalizationConfig(**{field: value})
    edge = {"prior_weight": 0.0, "contrastive_weight": 0.0, "artifact_weight": 0.0, "temperature": 1e-3,
            "canonicalizer_input_size": 4, "embedding_dim": 1, "hidden": 1, "in_channels": 1}[field]
    assert getattr(CanonicalizationConfig(**{field: edge}), field) == edge  # the smallest allowed value


def test_misuses_raise_errors_that_say_what_to_do():
    from symwrap.errors import IncompatibleGroupError

    mlp = nn.Sequential(nn.Flatten(), nn.Linear(24, 3))
    wrap = symwrap.wrap
    with pytest.raises(IncompatibleGroupError, match="needs rotations to build frames from; got T3"):
        wrap(mlp, group="T3", strategy="canonicalization", input="points", output="point")
    with pytest.raises(ConfigError, match="canonicalizer_input_size resizes images"):
        wrap(mlp, group="SO3", strategy="canonicalization", input="points", output="vector",
             canonicalizer_input_size=8)
    with pytest.raises(ConfigError, match="no default 'encoder' network for S on 'set' inputs.*"
                                          "For canonicalization: pass canonicalizer_network=$"):
        wrap(mlp, group="S", strategy="canonicalization", input="set", output="invariant")
    with pytest.raises(ConfigError, match="no default 'frame' network for O2 on 'image' inputs.*='contrastive'"):
        wrap(small_cnn(), group="O2", strategy="canonicalization", input="image", canonicalizer="equivariant")
    with pytest.raises(ConfigError, match="'pca' canonicalizer builds frames from point positions, and 'image' data"):
        wrap(small_cnn(), group="SO2", strategy="canonicalization", input="image", canonicalizer="pca")
    with pytest.raises(ConfigError, match="'pca' canonicalizer builds frames from point positions, and 'vector' data"):
        wrap(nn.Linear(3, 3), group="SO3", strategy="canonicalization", input="vector", output="vector",
             canonicalizer="pca")
    model = wrap(nn.Linear(3, 3), group="SO3", strategy="canonicalization", input="vector", output="vector",
                 canonicalizer="contrastive", canonicalizer_network=nn.Linear(3, 9))
    with pytest.raises(ConfigError, match="builds a frame from point positions or an image; input 'vector'"):
        model(torch.randn(2, 3))
    network = nn.Sequential(nn.Flatten(), nn.Linear(24, 32))
    model = wrap(mlp, group="S", strategy="canonicalization", input="points", output="vector",
                 canonicalizer_network=network)  # 8! orderings
    with pytest.raises(IncompatibleGroupError, match="S has more than 1024 elements for this input"):
        model(torch.randn(2, 8, 3))
    bad = wrap(nn.Sequential(nn.Flatten(), nn.Linear(16, 2)), group="C4", strategy="canonicalization",
               input="points", output="vector", canonicalizer_network=nn.Sequential(nn.Flatten(), nn.Linear(16, 5)))
    with pytest.raises(ShapeError, match=r"must return \(N, 32\) embeddings \(embedding_dim=32\); got \(8, 5\)"):
        bad(torch.randn(2, 8, 2))


# --- the canonicalizers themselves ---------------------------------------------------------------------------
def test_planar_frames_by_hand():
    """u = first vector normalised, w = u turned by 90°; without ``special`` w points to the second vector's side."""
    from symwrap.strategies.canonicalization.canonicalizers import orthonormal_frame

    vectors = torch.tensor([[[3.0, 1.0], [4.0, -1.0]],  # columns: first (3, 4), second (1, -1)
                            [[0.0, 1.0], [0.0, 1.0]]])  # a vanishing first vector: the fallback u = (1, 0)
    special = orthonormal_frame(vectors, special=True)
    torch.testing.assert_close(special[0], torch.tensor([[0.6, -0.8], [0.8, 0.6]]))
    torch.testing.assert_close(special[1], torch.eye(2))
    free = orthonormal_frame(vectors, special=False)
    torch.testing.assert_close(free[0], torch.tensor([[0.6, 0.8], [0.8, -0.6]]))  # second · w < 0: w flipped
    torch.testing.assert_close(free[1], torch.eye(2))  # second · w = 1 > 0: kept
    assert torch.isfinite(orthonormal_frame(torch.zeros(1, 2, 2), special=False)).all()


@pytest.mark.parametrize("special", [True, False])
def test_pca_frames_turn_with_the_points_and_fix_their_signs(special):
    from symwrap.strategies.canonicalization.canonicalizers import PCAFrame

    generator = torch.Generator().manual_seed(0)
    points = torch.randn(6, 10, 3, generator=generator, dtype=torch.float64) * torch.tensor(
        [3.0, 2.0, 1.0], dtype=torch.float64) + 5.0
    group = symwrap.get_group("SO3" if special else "O3")
    rotation = group.sample(6, generator=generator, dtype=torch.float64)
    frame = PCAFrame(special)(points)
    identity = torch.eye(3, dtype=torch.float64).expand(6, 3, 3)
    torch.testing.assert_close(frame.transpose(1, 2) @ frame, identity)
    determinant = torch.linalg.det(frame)
    assert (determinant > 0).all() if special else (determinant < 0).any()
    moved = PCAFrame(special)(points @ rotation.transpose(1, 2) + torch.randn(6, 1, 3, dtype=torch.float64))
    torch.testing.assert_close(moved, rotation @ frame, atol=1e-10, rtol=1e-10)
    centred = points - points.mean(1, keepdim=True)
    moments = ((centred @ frame) ** 3).sum(1)
    assert (moments[:, :2] > 0).all()  # the signs make the third moments positive (the last axis: handedness)
    if not special:
        assert (moments > 0).all()
    assert PCAFrame(special)(points.float()).dtype == torch.float32


def test_contrastive_scores_are_the_scaled_cosine_with_the_reference():
    from symwrap.strategies.canonicalization.canonicalizers import ContrastiveScorer

    scorer = ContrastiveScorer(nn.Identity(), embedding_dim=2, scale=3.0)
    with torch.no_grad():
        scorer.reference.copy_(torch.tensor([[1.0, 0.0]]))
    copies = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 1.0], [3.0, 3.0]])  # k = 2 copies of 2 inputs
    scores, embeddings = scorer(None, copies, 2)
    half = 2**-0.5
    torch.testing.assert_close(scores, torch.tensor([[3.0, -3 * half], [0.0, 3 * half]]))
    assert torch.equal(embeddings[:, 0], copies[:2]) and torch.equal(embeddings[:, 1], copies[2:])


def test_vector_neuron_frames_say_when_they_are_degenerate():
    from symwrap.strategies.canonicalization.canonicalizers import VectorNeuronFrame

    generic = torch.randn(4, 12, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for special in (True, False):
        frame = VectorNeuronFrame(special, hidden=8).double()
        if special:  # (an untrained O(3) frame leaves the handedness of a few random sets undecided)
            assert not frame.degenerate(generic).any()
        line = torch.zeros(1, 12, 3, dtype=torch.float64)
        line[0, :, 0] = torch.linspace(-1, 1, 12, dtype=torch.float64)  # symmetric about its centre
        assert frame.degenerate(line).all()
        assert frame(generic).dtype == torch.float64
        torch.testing.assert_close(frame(generic).transpose(1, 2) @ frame(generic),
                                   torch.eye(3, dtype=torch.float64).expand(4, 3, 3))


def test_pca_promises_exactness_only_where_the_signs_of_its_axes_are_determined():
    """The third moments fix the signs of the principal axes. A box's corners have none (distinct variances, but
    symmetric about every principal plane), so the model must not promise exactness there, and is indeed far from
    equivariant; a set mirrored only across the plane of its two largest axes is fine for a rotation frame (the
    last axis follows from the handedness) but not for an O(3) frame."""
    import itertools

    box = torch.tensor(list(itertools.product([-3.0, 3.0], [-2.0, 2.0], [-1.0, 1.0])), dtype=torch.float64)
    planar = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * torch.tensor(
        [3.0, 2.0], dtype=torch.float64)
    mirrored = torch.cat([torch.cat([planar, torch.full((4, 1), 0.5, dtype=torch.float64)], 1),
                          torch.cat([planar, torch.full((4, 1), -0.5, dtype=torch.float64)], 1)])
    x = torch.stack([box, mirrored])
    for group in ("SO3", "O3"):
        model = _auto_model(group, "points", "vector", 3, canonicalizer="pca").double().eval()
        assert model.canonicalizer.degenerate(x).tolist() == [True, group == "O3"]
        assert not model.is_exact(x[:1]) and model.is_exact(x[1:]) == (group == "SO3")
        assert equivariance_error(model, x[:1], group, input="points", output="vector", n=8) > 0.1
        if group == "SO3":
            assert equivariance_error(model, x[1:], group, input="points", output="vector", n=8) <= 1e-10


# --- the frame error of a learned frame, and the canonicalizer's input size ---------------------------------
class ConstantFrame(nn.Module):
    """A frame network that ignores its input: the least equivariant frame there is."""

    def __init__(self, dim):
        super().__init__()
        self.vectors = nn.Parameter(torch.eye(dim).flatten())

    def forward(self, points):
        return self.vectors.to(points.dtype).expand(points.shape[0], -1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_frame_error_of_a_constant_frame_is_that_of_a_haar_rotation(dtype):
    model = _auto_model("SO2", "points", "vector", 2, canonicalizer="contrastive",
                        canonicalizer_network=ConstantFrame(2)).to(dtype)
    x = torch.randn(64, 8, 2, dtype=dtype, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        rotation = model.canonicalizer(x)
        state = torch.get_rng_state()
        error = model._frame_error(x, rotation)
        assert torch.equal(torch.get_rng_state(), state)  # measured with a private generator
        assert model._frame_error(x, rotation) == error  # the same h every time
    # ‖R0 − h R0‖ / ‖R0‖ = 2|sin(θ/2)| for a turn by θ: 4/π ≈ 1.27 on average over uniform θ
    assert 1.0 < error < 1.55
    exact = _auto_model("SO2", "points", "vector", 2, canonicalizer="contrastive",
                        canonicalizer_network=RelativePositions()).to(dtype)
    with torch.no_grad():
        assert exact._frame_error(x, exact.canonicalizer(x)) < 1e-5


class RecordsInput(nn.Module):
    """A scoring embedding that remembers the images it was given."""

    def __init__(self, size):
        super().__init__()
        self.seen = []
        self.linear = nn.Linear(size * size, 4)

    def forward(self, images):
        self.seen.append(images)
        return self.linear(images.flatten(1))


@pytest.mark.parametrize("size", [16, 8])
def test_the_canonicalizer_sees_images_at_its_input_size(size):
    embedding = RecordsInput(8)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(size * size, 3))
    model = symwrap.wrap(backbone, group="C4", strategy="canonicalization", input="image", output="invariant",
                         canonicalizer="contrastive", canonicalizer_network=embedding,
                         canonicalizer_input_size=8, embedding_dim=4).eval()
    x = torch.randn(2, 1, size, size, generator=torch.Generator().manual_seed(0))
    model(x)
    seen = embedding.seen[-1]
    assert seen.shape == (8, 1, 8, 8)  # 4 turns of 2 images, one call
    expected = x if size == 8 else F.interpolate(x, size=(8, 8), mode="bilinear", antialias=True,
                                                  align_corners=False)
    assert torch.equal(seen[:2], expected)  # antialiased bilinear shrink; images at the size already untouched


# --- which canonicalizer wrap builds, and what it says when it cannot -------------------------------------------
def test_a_given_frame_network_is_used_and_its_frames_are_made_special():
    reflecting = ConstantFrame(3)
    with torch.no_grad():
        reflecting.vectors.copy_(torch.diag(torch.tensor([1.0, 1.0, -1.0])).flatten())  # a reflection
    model = _auto_model("SO3", "points", "vector", 3, canonicalizer="equivariant", canonicalizer_network=reflecting)
    assert type(model.canonicalizer).__name__ == "RegressedFrame" and model.canonicalizer.network is reflecting
    frames = model.canonicalizer(torch.randn(4, 8, 3))
    assert frames.shape == (4, 3, 3)
    assert torch.allclose(torch.linalg.det(frames), torch.ones(4))  # SO3: the reflection is turned into a rotation
    assert torch.allclose(frames.transpose(1, 2) @ frames, torch.eye(3).expand(4, 3, 3), atol=1e-6)
    scorer = nn.Sequential(nn.Flatten(), nn.Linear(24, 1))
    finite = _auto_model("C4", "points", "vector", 3, canonicalizer="equivariant", canonicalizer_network=scorer)
    assert type(finite.canonicalizer).__name__ == "EquivariantScorer" and finite.canonicalizer.network is scorer


def test_a_contrastive_frame_on_images_gets_an_image_encoder():
    model = symwrap.wrap(small_cnn(out=2), group="O2", strategy="canonicalization", input="image",
                         output="invariant", canonicalizer="contrastive")
    assert type(model.canonicalizer.network).__name__ == "ImageEncoder"


@pytest.mark.parametrize("group, input, canonicalizer, message", [
    ("SO2", "image", "pca", "the 'pca' canonicalizer builds frames from point positions, and 'image' data has none; "
                            "use 'equivariant' or 'contrastive'"),
    ("C4", "vector", "equivariant",
     "there is no default 'regular_scores' network for C4 on 'vector' inputs; the registered ones are: "
     "escnn-regular-cnn (images under C_n or D_n (escnn)), copy-scores (a finite group, on data with a default "
     "encoder). Pass your own network, or register one with symwrap.nn.register_default_network. For "
     "canonicalization: pass canonicalizer_network="),
])
def test_canonicalizers_that_cannot_be_built_are_refused_with_the_way_out(group, input, canonicalizer, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        symwrap.wrap(nn.Linear(3, 3), group=group, strategy="canonicalization", input=input, output="invariant",
                     canonicalizer=canonicalizer)


@pytest.mark.parametrize("group", ["C4", "D4"])
def test_finite_groups_on_points_get_an_exact_equivariant_canonicalizer_scoring_every_copy(group):
    """Off images the registry's regular scores score every transformed copy with a point encoder."""
    from symwrap.nn import CopyScores, PointEncoder

    torch.manual_seed(0)
    model = symwrap.wrap(nn.Sequential(nn.Flatten(), nn.Linear(10, 2)), group=group, strategy="canonicalization",
                         input="points", output="vector", canonicalizer="equivariant").eval()
    assert isinstance(model.canonicalizer.network, CopyScores)
    assert isinstance(model.canonicalizer.network.encoder, PointEncoder)
    x = torch.randn(6, 5, 2)
    assert equivariance_error(model, x, group, input="points", output="vector") <= 1e-5
    assert equivariance_error(model.backbone, x, group, input="points", output="vector") > 0.1


def test_reflections_have_no_equivariant_image_canonicalizer():
    message = ("there is no default 'frame' network for O2 on 'image' inputs; the registered ones are: "
               "escnn-vector-image (images under SO2 (escnn)), vector-neurons (point positions (B, N, d) under "
               "rotations of R^2 or R^3 (with reflections, translations)). Pass your own network, or register one "
               "with symwrap.nn.register_default_network. For canonicalization: pass canonicalizer_network=, or use "
               "canonicalizer='contrastive' (a learned frame, approximately equivariant once trained)")
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        symwrap.wrap(small_cnn(out=2), group="O2", strategy="canonicalization", input="image", output="invariant",
                     canonicalizer="equivariant")


@pytest.mark.parametrize("group, input, size", [("SO3", "points", (4, 6, 3)), ("C4", "image", (3, 1, 8, 8))])
def test_canonicalization_draws_its_random_elements_from_the_configured_seed(group, input, size):
    """The augmenting elements (and Gumbel noise) come from config.seed's generator, not torch's global one."""
    def build(seed):
        torch.manual_seed(0)  # the same weights every time
        backbone = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(size[1:]), 3))
        return symwrap.wrap(backbone, group=group, strategy="canonicalization", input=input, output="invariant",
                            canonicalizer="contrastive", gradient="gumbel", in_channels=1, seed=seed).train()

    x = torch.randn(size, generator=torch.Generator().manual_seed(3))
    losses = []
    for seed, global_seed in [(1, 10), (1, 20), (2, 10)]:
        model = build(seed)
        torch.manual_seed(global_seed)
        total = model.canonicalizer_loss(x)["total"] + model.loss(model(x), torch.zeros(size[0], 3), x)["total"]
        losses.append(float(total))
    assert losses[0] == losses[1] and losses[0] != losses[2]


# --- the cheap defaults: a small look at the image, narrow networks ---------------------------------------


@pytest.mark.parametrize("kind, hidden", [("equivariant", 8), ("contrastive", 8)])
def test_image_defaults_are_resolved_at_wrap_and_recorded(kind, hidden):
    pytest.importorskip("escnn")
    from symwrap.strategies.canonicalization.config import DEFAULT_IMAGE_INPUT_SIZE

    model = symwrap.wrap(small_cnn(), group="C4", strategy="canonicalization", input="image", output="invariant",
                         canonicalizer=kind)
    assert model.config.canonicalizer_input_size == DEFAULT_IMAGE_INPUT_SIZE == 32
    assert model.config.hidden == hidden
    points = symwrap.wrap(nn.Sequential(nn.Flatten(), nn.Linear(15, 3)), group="SO3", strategy="canonicalization",
                          input="points", output="vector")
    assert points.config.canonicalizer_input_size is None and points.config.hidden == 16
    explicit = symwrap.wrap(small_cnn(), group="C4", strategy="canonicalization", input="image",
                            canonicalizer=kind, canonicalizer_input_size=None, hidden=3)
    assert explicit.config.canonicalizer_input_size is None and explicit.config.hidden == 3


class _Recorder(nn.Module):
    """A contrastive network that remembers the image sizes it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []
        self.head = nn.Linear(1, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(x.shape[-1])
        return self.head(x.mean(dim=(1, 2, 3))[:, None])


@pytest.mark.parametrize("side, seen", [(48, 32), (32, 32), (20, 20)])
def test_the_default_input_size_shrinks_large_images_and_never_enlarges_small_ones(side, seen):
    recorder = _Recorder()
    model = symwrap.wrap(nn.Sequential(nn.Flatten(), nn.Linear(side * side, 3)), group="C4",
                         strategy="canonicalization", input="image", output="invariant",
                         canonicalizer_network=recorder, embedding_dim=4).eval()
    model(torch.randn(2, 1, side, side))
    assert recorder.sizes == [seen]


@pytest.mark.parametrize("group", ["C4", "C8"])
@pytest.mark.parametrize("kind", ["equivariant", "contrastive"])
def test_defaults_on_large_images_stay_exact_on_quarter_turns(group, kind):
    pytest.importorskip("escnn")
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(3, 4, 5, stride=4), nn.Flatten(), nn.Linear(4 * 11 * 11, 5))
    model = symwrap.wrap(cnn, group=group, strategy="canonicalization", input="image", output="invariant",
                         canonicalizer=kind).eval()
    x = torch.randn(3, 3, 48, 48)  # resized to 32 for the canonicalizer
    assert invariance_error(model, x, "C4", input="image") <= 1e-5
    assert invariance_error(model.backbone, x, "C4", input="image") > 1e-2


def test_canonical_element_is_equivariant_and_agrees_with_the_identity_metric():
    torch.manual_seed(0)
    model = symwrap.wrap(small_cnn(), group="C4", strategy="canonicalization", input="image", output="invariant",
                         canonicalizer="contrastive", in_channels=1).eval()
    group = model.group
    x = torch.randn(6, 1, 13, 13)
    h = group.elements()[torch.tensor([0, 1, 2, 3, 1, 2])]
    turned = model.input_action.act(group, h, x)
    expected = group.index(group.compose(h, model.canonical_element(x)))
    assert torch.equal(group.index(model.canonical_element(turned)), expected)
    identity = group.index(group.identity(1))
    assert model.identity_metric(x) == float((group.index(model.canonical_element(x)) == identity).double().mean())
