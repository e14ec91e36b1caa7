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
    named = diagnose(model, images(), "SO2", input="image", layers=["b"], n=3,
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
