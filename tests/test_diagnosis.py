"""Per-layer diagnosis: where a model breaks its symmetry."""

import pytest
import torch
from torch import nn

import symwrap
from symwrap.diagnosis import diagnose
from symwrap.errors import ConfigError


class OneBrokenLayer(nn.Module):
    """Rot90-symmetric first convolution (equivariant), a random second one (breaks C4), pooling and a head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4, 3)
        with torch.no_grad():
            w = torch.randn(4, 1, 3, 3)
            self.a.weight.copy_(sum(w.rot90(k, (2, 3)) for k in range(4)) / 4)

    def forward(self, x):
        return self.head(self.pool(self.b(self.act(self.a(x)))).flatten(1))


def images():
    return torch.randn(4, 1, 13, 13, generator=torch.Generator().manual_seed(1))


def test_an_exactly_equivariant_escnn_network_is_clean_at_every_layer():
    pytest.importorskip("escnn")
    from symwrap.nn import SteerableCNN

    torch.manual_seed(0)
    network = SteerableCNN("C4", in_channels=1, num_classes=3, hidden=2, layers=3)
    result = diagnose(network, images(), "C4", input="image", output="invariant")
    assert [layer.name for layer in result.layers] == ["blocks.0", "blocks.1", "blocks.2", "pool", "head"]
    assert {layer.representation for layer in result.layers[:3]} == {"escnn fields"}
    assert all(layer.output_error <= 1e-5 for layer in result.layers)
    assert result.model_error <= 1e-5


def test_the_layer_that_breaks_the_symmetry_is_ranked_first():
    result = diagnose(OneBrokenLayer(), images(), "C4", input="image")
    ranked = result.ranked()
    assert ranked[0].name == "b" and ranked[0].contribution > 0.1
    a = next(layer for layer in result.layers if layer.name == "a")
    assert a.representation == "feature map" and a.output_error <= 1e-5
    assert result.model_error == pytest.approx(
        symwrap.metrics.equivariance_error(OneBrokenLayer(), images(), "C4", input="image"), rel=1e-4)
    text = result.table()
    assert text.splitlines()[1].startswith("b ") and "model under C4" in text


def test_layers_by_block_or_by_name_and_continuous_groups_by_samples():
    model = OneBrokenLayer()
    blocks = diagnose(model, images(), "C4", input="image", layers="blocks")
    assert [layer.name for layer in blocks.layers] == ["a", "act", "b", "pool", "head"]
    named = diagnose(model, images(), "SO2", input="image", layers=["b"], n=3, method="elements",
                     generator=torch.Generator().manual_seed(0))
    assert [layer.name for layer in named.layers] == ["b"] and named.layers[0].output_error > 1e-2
    with pytest.raises(ConfigError, match="layer 'c' is not a submodule of OneBrokenLayer"):
        diagnose(model, images(), "C4", input="image", layers=["c"])
    with pytest.raises(ConfigError, match="needs an nn.Module"):
        diagnose(lambda x: x, images(), "C4", input="image")


def test_the_bar_chart_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    result = diagnose(OneBrokenLayer(), images(), "C4", input="image")
    path = result.plot(str(tmp_path / "layers.png"))
    assert (tmp_path / "layers.png").stat().st_size > 1000 and path.endswith("layers.png")


# --- the layer-wise Lie derivative (continuous groups) ---------------------------------------------------------


class Lift(nn.Module):
    """Points (B, N, 3) as one Vector-Neuron channel (B, 1, 3, N)."""

    def forward(self, x):
        return x.transpose(1, 2).unsqueeze(1)


class VectorNorms(nn.Module):
    """Rotation-invariant norms of Vector-Neuron features (B, C, 3) -> (B, C)."""

    def forward(self, x):
        return x.norm(dim=2)


class SkewCoordinates(nn.Module):
    """A fixed linear map of the coordinates that is not a rotation: breaks SO3."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("matrix", torch.tensor([[1.0, 0.6, 0.0], [0.0, 1.0, 0.0], [0.3, 0.0, 0.5]]))

    def forward(self, x):
        return torch.einsum("ij,bcjn->bcin", self.matrix.to(x.dtype), x)


def vector_neuron_chain(broken: bool = False) -> nn.Sequential:
    from symwrap.nn import VNLinearLeakyReLU, VNMeanPool

    torch.manual_seed(0)
    middle = SkewCoordinates() if broken else VNLinearLeakyReLU(8, 8)
    return nn.Sequential(Lift(), VNLinearLeakyReLU(1, 8), middle, VNLinearLeakyReLU(8, 8), VNMeanPool(),
                         VectorNorms(), nn.Linear(8, 3)).double()


def points():
    return torch.randn(3, 10, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)


def test_lie_an_exactly_equivariant_vector_neuron_network_is_zero_at_every_layer():
    result = diagnose(vector_neuron_chain(), points(), "SO3", input="points", layers="blocks")  # the Lie method
    assert isinstance(result, symwrap.diagnosis.LieDiagnosis)
    assert [layer.representation for layer in result.layers] == (
        ["vector features"] * 5 + ["invariant?", "like the output"])
    assert all(layer.contribution <= 1e-10 for layer in result.layers)
    assert result.total <= 1e-10 and result.unattributed <= 1e-10


def test_lie_the_broken_layer_is_ranked_first_and_the_contributions_sum_to_the_total():
    model = vector_neuron_chain(broken=True)
    result = diagnose(model, points(), "SO3", input="points", layers="blocks")
    ranked = result.ranked()
    assert ranked[0].name == "2" and ranked[0].module == "SkewCoordinates" and ranked[0].contribution > 0.01
    assert all(layer.contribution <= 1e-10 for layer in ranked[1:])
    assert result.total == pytest.approx(symwrap.metrics.lie_derivative(model, points(), "SO3", input="points"))
    assert ranked[0].share == pytest.approx(1.0) and result.unattributed <= 1e-10 * result.total


def broken_image_chain() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.Tanh(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).double()


def test_lie_contributions_of_every_layer_of_a_chain_sum_to_the_model_lie_derivative():
    """Gruver et al.'s decomposition: the layers' own Lie derivatives pushed to the output add up to the total
    (as vectors, per input and generator), for an image chain under SO2 where every layer breaks a little."""
    model, x = broken_image_chain(), images().double()
    result = diagnose(model, x, "SO2", input="image", output="invariant", method="lie")
    assert [layer.representation for layer in result.layers[:4]] == ["feature map"] * 4
    summed = sum(layer.vector for layer in result.layers)
    assert torch.allclose(summed, result.derivative, rtol=1e-8, atol=1e-10)
    assert result.unattributed <= 1e-8 * result.total
    assert sum(layer.share for layer in result.layers) == pytest.approx(1.0)
    assert result.total == pytest.approx(symwrap.metrics.lie_derivative(model, x, "SO2", input="image"))
    # the random kernels break rotations, and so do the nonlinearities of feature maps (they do not commute with
    # the interpolation of a turn by a small angle) and the pooling (corners); after it, all is invariant
    assert all(layer.contribution > 1e-3 for layer in result.layers[:5])
    assert all(layer.contribution == 0.0 for layer in result.layers[5:])
    text = result.table()
    assert "(between the layers)" in text and "model under SO2: relative Lie derivative" in text


def test_lie_on_a_vit_compares_patch_tokens_and_leaves_the_position_embedding_unattributed(tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=8, patch_size=2, in_chans=1,
                            num_classes=3, embed_dim=16, depth=2, num_heads=2, mlp_ratio=1.0)
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    result = diagnose(vit, x, "SO2", input="image", layers="blocks")
    names = [layer.name for layer in result.layers]
    assert names == ["patch_embed", "blocks.0", "blocks.1", "norm", "head"]  # identities and dropouts left out
    by_name = {layer.name: layer for layer in result.layers}
    assert by_name["patch_embed"].representation == "tokens"  # the 4x4 patch grid turns with the image
    assert by_name["blocks.0"].representation == "tokens (+1)"  # behind the class token
    assert all(by_name[name].contribution > 1e-4 for name in ("patch_embed", "blocks.0", "blocks.1"))
    assert by_name["head"].representation == "like the output"
    assert result.unattributed > 1e-3  # the learned position embedding, added between patch_embed and blocks.0
    path = result.plot(str(tmp_path / "vit.png"))
    assert (tmp_path / "vit.png").stat().st_size > 1000 and path.endswith("vit.png")


def test_lie_needs_a_continuous_group_and_a_known_method():
    with pytest.raises(ConfigError, match="needs a continuous group; C4 is finite"):
        diagnose(OneBrokenLayer(), images(), "C4", input="image", method="lie")
    with pytest.raises(ConfigError, match="method must be one of auto, elements, lie; got 'jvp'"):
        diagnose(OneBrokenLayer(), images(), "SO2", input="image", method="jvp")


PARTICLES_RUN = (
    "backbone: {name: 'symwrap.nn:ParticleTransformer', kwargs: {hidden: 8, layers: 1, heads: 2}}\n"
    "data: {name: nbody, n_train: 8, n_val: 4, n_test: 4, batch_size: 4, simulation: {steps: 10}}\n"
    "group: SO3\nstrategy: remul\n"
    "training: {epochs: 1, progress: false, checkpoint: false}\n"
)


def test_the_cli_takes_the_lie_derivative_of_a_continuous_group_run(tmp_path, capsys):
    pytest.importorskip("yaml")
    from symwrap.cli import main

    config = tmp_path / "config.yaml"
    config.write_text(PARTICLES_RUN)
    run = tmp_path / "run"
    assert main(["train", str(config), "--output-dir", str(run)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["diagnose", str(run), "--layers", "blocks", "--plot", str(tmp_path / "lie.png")]) == 0, \
        capsys.readouterr().err
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "remul backbone under SO3, one test batch, layer-wise Lie derivative:"
    assert lines[1].split()[-2:] == ["deriv.", "share"] and lines[-1].startswith("wrote ")
    assert lines[-2].startswith("model under SO3: relative Lie derivative")
    head = next(line for line in lines if line.startswith("head "))
    assert "like the output" in head  # (B, N, 3) positions, as the model's output; its input is not known
    assert (tmp_path / "lie.png").stat().st_size > 1000
    assert main(["diagnose", str(run), "--method", "elements", "--samples", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[-3:] == ["output", "E", "added"]
