"""``symwrap.wrap`` and ``symwrap.load`` across strategies: several groups with a config object, the names that
changed (old config field names and class names still work, with a DeprecationWarning)."""

import json

import pytest
import torch
from torch import nn

import symwrap
from symwrap.errors import ConfigError
from symwrap.saving import CONFIG_FILE
from symwrap.strategies import RemulConfig


def point_mlp(points: int = 4) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * points, 8), nn.Tanh(), nn.Linear(8, 3 * points),
                         nn.Unflatten(1, (points, 3)))


def remul(group, config=None, **fields):
    return symwrap.wrap(point_mlp(), group=group, strategy="remul", input="points", output="points", config=config,
                        **fields)


# --- several groups with config= -------------------------------------------------------------------------------------
def test_a_dict_of_group_weights_with_a_config_object_fills_its_beta():
    config = RemulConfig(alpha=0.5, seed=3)
    model = remul({"Mz": 0.5, "My": 0.25}, config)
    assert model.config.beta == {"Mz": 0.5, "My": 0.25} and model.config.alpha == 0.5 and model.config.seed == 3
    assert config.beta == 1.0  # the user's config object is not modified
    assert [group.name for group in model.groups.values()] == ["Mz", "My"]
    x = torch.randn(2, 4, 3)
    assert set(model.loss(model(x), x, x)) == {"task", "equivariance_Mz", "equivariance_My", "total"}


def test_a_list_of_groups_with_a_config_object_keeps_its_beta():
    model = remul(["Mz", "My"], RemulConfig(beta={"Mz": 0.1, "My": 0.2}))
    assert model.config.beta == {"Mz": 0.1, "My": 0.2}


def test_group_weights_given_twice_are_refused():
    with pytest.raises(ConfigError, match=r"^per-group weights were given both in the group dict and as "
                                          r"config.beta=0.3"):
        remul({"Mz": 0.5, "My": 0.25}, RemulConfig(beta=0.3))
    with pytest.raises(ConfigError, match="give the per-group weights either in the group dict or as beta=, not both"):
        remul({"Mz": 0.5, "My": 0.25}, beta=0.3)
    with pytest.raises(ConfigError, match="pass either config= or config fields, not both"):
        remul({"Mz": 0.5, "My": 0.25}, RemulConfig(), alpha=0.5)


def test_the_dict_and_the_fields_give_the_same_model_as_the_config():
    by_fields = remul({"Mz": 0.5, "My": 0.25}, alpha=0.5, seed=3)
    by_config = remul({"Mz": 0.5, "My": 0.25}, RemulConfig(alpha=0.5, seed=3))
    assert by_fields.config == by_config.config


# --- deprecated names ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["averaging", "remul", "cloning"])
def test_num_samples_is_a_deprecated_alias_of_num_samples_train(strategy):
    config_class = symwrap.get_strategy(strategy).config_class
    with pytest.warns(DeprecationWarning, match=f"{config_class.__name__} field 'num_samples' is deprecated; "
                                                "use 'num_samples_train'"):
        model = symwrap.wrap(nn.Linear(3, 3), group="SO3", strategy=strategy, input="vector", output="vector",
                             num_samples=5)
    assert model.config.num_samples_train == 5 and model.config.num_samples_eval is None
    assert model.config.samples_for(True) == model.config.samples_for(False) == 5
    with pytest.raises(ConfigError, match="got both num_samples= and num_samples_train="):
        symwrap.wrap(nn.Linear(3, 3), group="SO3", strategy=strategy, input="vector", output="vector",
                     num_samples=5, num_samples_train=5)


def test_num_samples_eval_is_used_in_evaluation_mode_only():
    config = symwrap.strategies.CloningConfig(num_samples_train=2, num_samples_eval=7)
    assert (config.samples_for(True), config.samples_for(False)) == (2, 7)
    with pytest.raises(ConfigError, match="num_samples_eval must be a positive integer; got 0"):
        RemulConfig(num_samples_eval=0)


def test_a_saved_config_with_the_old_field_name_still_loads(tmp_path):
    backbone = nn.Linear(3, 3)
    model = symwrap.wrap(backbone, group="SO3", strategy="averaging", input="vector", output="vector",
                         num_samples_train=4, seed=1)
    model.save_pretrained(tmp_path)
    description = json.loads((tmp_path / CONFIG_FILE).read_text())
    description["config"]["num_samples"] = description["config"].pop("num_samples_train")
    (tmp_path / CONFIG_FILE).write_text(json.dumps(description))
    with pytest.warns(DeprecationWarning, match="'num_samples' is deprecated; use 'num_samples_train'"):
        loaded = symwrap.load(tmp_path, backbone)
    assert loaded.config == model.config


@pytest.mark.parametrize("package, old, new", [
    ("symwrap.strategies", "GroupAveraging", "Averaging"),
    ("symwrap.strategies", "FrameAveraging", "Frames"),
    ("symwrap.strategies", "ProbabilisticSymmetrization", "Symmetrization"),
    ("symwrap.strategies", "SymmetryCloning", "Cloning"),
    ("symwrap.strategies.symmetrization", "GroupAveraging", "Averaging"),
    ("symwrap.strategies.cloning", "SymmetryCloning", "Cloning"),
])
def test_old_class_names_warn_and_give_the_renamed_class(package, old, new):
    import importlib

    module = importlib.import_module(package)
    with pytest.warns(DeprecationWarning, match=f"^{old} is deprecated; use {new}$"):
        assert getattr(module, old) is getattr(module, new)
    with pytest.raises(AttributeError, match="has no attribute 'Nonexistent'"):
        module.Nonexistent  # noqa: B018


def test_every_strategy_class_is_named_after_its_registry_name():
    for name in symwrap.list_strategies():
        cls = symwrap.get_strategy(name)
        assert cls.__name__ == "".join(part.capitalize() for part in name.split("_"))
        assert getattr(symwrap.strategies, cls.__name__) is cls and cls.__name__ in symwrap.strategies.__all__


def test_get_strategy_is_exported():
    assert "get_strategy" in symwrap.__all__ and symwrap.get_strategy("Frames") is symwrap.strategies.Frames


def test_summary_and_print_trainable_parameters_count_the_backbone_and_the_strategys_modules(capsys):
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 2))
    model = symwrap.wrap(cnn, group="C4", strategy="canonicalization", input="image", output="invariant")
    for parameter in cnn[0].parameters():
        parameter.requires_grad_(False)
    frozen = sum(p.numel() for p in cnn[0].parameters())
    backbone = sum(p.numel() for p in cnn.parameters())
    canonicalizer = sum(p.numel() for p in model.canonicalizer.parameters())
    total = backbone + canonicalizer
    model.print_trainable_parameters()
    share = 100 * (total - frozen) / total
    assert capsys.readouterr().out == (f"trainable params: {total - frozen:,d} || all params: {total:,d} || "
                                       f"trainable%: {share:.4f}\n")
    rows = {line.split()[0]: line.split()[-2:] for line in model.summary().splitlines()[2:] if line[0] != "-"}
    assert rows["backbone"] == [f"{backbone - frozen:,d}", f"{backbone:,d}"]
    assert rows["canonicalizer"] == [f"{canonicalizer:,d}", f"{canonicalizer:,d}"]
    assert rows["total"] == [f"{total - frozen:,d}", f"{total:,d}"]
