"""``symwrap.load(run_dir)`` without a backbone: the backbone is rebuilt from the spec a ``symwrap train`` run
records in its ``train_config.yaml``, and a spec that cannot be rebuilt says so."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import symwrap
from symwrap.errors import ConfigError, ModelFileError
from symwrap.experiment import CONFIG_COPY, train_from_config

pytest.importorskip("yaml")

PARTICLES = (
    "backbone: {name: 'symwrap.nn:ParticleTransformer', kwargs: {hidden: 8, layers: 1, heads: 2}}\n"
    "data: {name: nbody, n_train: 8, n_val: 4, n_test: 4, batch_size: 4, simulation: {steps: 10}}\n"
    "group: SO3\nstrategy: canonicalization\ntraining: {epochs: 1, progress: false, checkpoint: false}\n"
)


def particles(n: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"pos": torch.randn(n, 5, 3, generator=g), "vel": torch.randn(n, 5, 3, generator=g),
            "charge": torch.randn(n, 5, 1, generator=g)}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("spec")
    (folder / "config.yaml").write_text(PARTICLES)
    train_from_config(folder / "config.yaml", folder / "run", progress=False)
    return folder / "run"


def test_a_run_folder_loads_without_a_backbone(run):
    from symwrap.nn import ParticleTransformer

    model = symwrap.load(run).eval()
    assert type(model.backbone) is ParticleTransformer and model.config.strategy == "canonicalization"
    torch.manual_seed(1)  # another initialisation: every weight must come from the save
    rebuilt = symwrap.load(run, ParticleTransformer(hidden=8, layers=1, heads=2)).eval()
    x = particles()
    with torch.no_grad():
        assert torch.equal(model(x), rebuilt(x))


def test_a_spec_that_cannot_be_rebuilt_says_so(run, tmp_path):
    broken = tmp_path / "run"
    broken.mkdir()
    for file in run.iterdir():
        (broken / file.name).write_bytes(file.read_bytes())
    config = broken / CONFIG_COPY
    config.write_text(config.read_text().replace("ParticleTransformer", "NoSuchNetwork"))
    with pytest.raises(ModelFileError, match=r"cannot rebuild the backbone.*NoSuchNetwork.*symwrap.load\("):
        symwrap.load(broken)
    config.unlink()
    with pytest.raises(ConfigError, match=f"needs the backbone the model was saved around.*no {CONFIG_COPY}"):
        symwrap.load(broken)


def test_a_trainable_only_save_rebuilds_the_frozen_backbone_with_its_recorded_weights(tmp_path):
    from symwrap.nn import ParticleTransformer

    backbone = ParticleTransformer(hidden=8, layers=1, heads=2)
    torch.save(backbone.state_dict(), tmp_path / "pretrained.pt")
    for name, parameter in backbone.named_parameters():
        parameter.requires_grad_(name.startswith("head."))  # fine-tune the head, keep the rest frozen
    model = symwrap.wrap(backbone, group="SO3", strategy="remul", output="points",
                         input={"pos": "points", "vel": "vectors", "charge": "scalars"})
    with torch.no_grad():
        for parameter in backbone.parameters():
            if parameter.requires_grad:
                parameter.add_(0.1)
    model.save_pretrained(tmp_path / "run", trainable_only=True)
    (tmp_path / "run" / CONFIG_COPY).write_text(PARTICLES.replace(
        "heads: 2}}", f"heads: 2}}, weights: '{tmp_path / 'pretrained.pt'}'}}"))
    loaded = symwrap.load(tmp_path / "run").eval()
    x = particles()
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
