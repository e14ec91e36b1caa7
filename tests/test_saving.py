"""Saving and loading wrapped models: atomic saves, a fingerprint that ties the config to its weights,
bit-exact round trips for every strategy, and one clear error for every broken folder."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import symwrap
from symwrap import saving
from symwrap.errors import ConfigError, DeviceError, ModelFileError, SaveError, WeightLoadingError
from symwrap.saving import CONFIG_FILE, FORMAT_VERSION, WEIGHTS_FILE


class TinyCNN(nn.Module):
    """One-channel 8x8 images to 3 logits (its Conv2d tells the default networks the channels)."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3, padding=1)
        self.head = nn.Linear(width * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(nn.functional.adaptive_avg_pool2d(torch.relu(self.conv(x)), 2).flatten(1))


def point_mlp(points: int = 6) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * points, 16), nn.Tanh(), nn.Linear(16, 3))


IMAGES = {"group": "C4", "input": "image", "backbone": TinyCNN, "x": lambda: torch.randn(3, 1, 8, 8)}
POINTS = {"group": "SO3", "input": "points", "backbone": point_mlp, "x": lambda: torch.randn(3, 6, 3)}
def vn_point_net() -> nn.Module:
    from contract_cases import VNPointNet

    return VNPointNet()


#: relaxation takes an equivariant backbone
EQUIVARIANT_POINTS = {**POINTS, "backbone": vn_point_net}
#: per strategy, a case its default networks take; strategies not listed get IMAGES
CASES = {"frames": POINTS, "symmetrization": POINTS, "relaxation": EQUIVARIANT_POINTS}


def build(strategy: str, seed: int = 0) -> tuple[symwrap.SymmetricModel, dict]:
    case = CASES.get(strategy, IMAGES)
    torch.manual_seed(seed)
    model = symwrap.wrap(case["backbone"](), group=case["group"], strategy=strategy, input=case["input"])
    return model, case


def fresh_backbone(case: dict) -> nn.Module:
    torch.manual_seed(123)  # other initial weights than the saved ones: loading must replace every one
    return case["backbone"]()


def outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(7)  # sampled group elements: the same draws for both models
    with torch.no_grad():
        return model.eval()(x)


def saved(tmp_path: Path, strategy: str = "averaging") -> tuple[Path, symwrap.SymmetricModel, dict]:
    model, case = build(strategy)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    return folder, model, case


# --- round trips ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("forward_first", [False, True], ids=["before-forward", "after-forward"])
@pytest.mark.parametrize("strategy", symwrap.list_strategies())
def test_every_strategy_with_its_default_networks_round_trips_bit_for_bit(tmp_path, strategy, forward_first):
    model, case = build(strategy)
    x = case["x"]()
    if forward_first:
        model.train()(x)  # a training-mode forward: lazy shapes, running statistics
    model.save_pretrained(tmp_path)
    loaded = symwrap.load(tmp_path, fresh_backbone(case))

    assert type(loaded) is type(model) and loaded.config == model.config
    reference, restored = model.state_dict(), loaded.state_dict()
    assert restored.keys() == reference.keys()
    for key, value in reference.items():
        assert torch.equal(restored[key], value), key
    assert torch.equal(outputs(loaded, x), outputs(model, x))


def test_a_backbone_that_loads_nothing_would_fail_the_round_trip(tmp_path):
    """The round-trip check can fail: a fresh backbone gives other outputs until the weights are loaded."""
    model, case = build("averaging")
    x = case["x"]()
    unloaded = symwrap.wrap(fresh_backbone(case), group="C4", strategy="averaging", input="image")
    assert not torch.equal(outputs(unloaded, x), outputs(model, x))


@pytest.mark.slow
def test_escnn_networks_with_non_contiguous_buffers_save_in_either_mode(tmp_path):
    """escnn keeps non-contiguous buffers (safetensors' save_model raised "view size is not compatible") and
    registers expanded filters only in eval mode: a model saved in training mode loads for eval, bit for bit."""
    pytest.importorskip("escnn")
    model = symwrap.wrap(nn.Flatten(), group="C4", strategy="symmetrization", input="image", in_channels=3)
    assert any(not t.is_contiguous() for t in model.state_dict().values())
    x = torch.randn(2, 3, 8, 8)
    model.train().save_pretrained(tmp_path / "train")
    model.eval().save_pretrained(tmp_path / "eval")
    for folder in ("train", "eval"):
        loaded = symwrap.load(tmp_path / folder, nn.Flatten())
        assert torch.equal(outputs(loaded, x), outputs(model, x)), folder
    assert (tmp_path / "train" / WEIGHTS_FILE).read_bytes() == (tmp_path / "eval" / WEIGHTS_FILE).read_bytes()


class TiedBackbone(nn.Module):
    """Two layers sharing one weight, and a non-contiguous buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(18, 18)
        self.second = nn.Linear(18, 3)
        self.second.weight = nn.Parameter(self.first.weight[:3])  # a view into another parameter's memory
        self.tied = nn.Linear(18, 18)
        self.tied.weight = self.first.weight
        self.register_buffer("scale", torch.arange(12.0).reshape(3, 4).t())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.tied(self.first(x.flatten(1))))
        return self.second(h) * self.scale.sum()


def test_shared_and_non_contiguous_tensors_are_saved_as_independent_copies(tmp_path):
    torch.manual_seed(0)
    model = symwrap.wrap(TiedBackbone(), group="SO3", strategy="frames", input="points")
    assert not model.backbone.scale.is_contiguous()
    model.save_pretrained(tmp_path)
    torch.manual_seed(1)
    loaded = symwrap.load(tmp_path, TiedBackbone())
    x = torch.randn(4, 6, 3)
    assert torch.equal(outputs(loaded, x), outputs(model, x))
    assert loaded.backbone.tied.weight is loaded.backbone.first.weight  # the backbone's own tying is kept


# --- what the config records ----------------------------------------------------------------------------
def test_the_config_records_the_fingerprint_of_its_weights(tmp_path):
    folder, model, _ = saved(tmp_path)
    description = json.loads((folder / CONFIG_FILE).read_text())
    data = (folder / WEIGHTS_FILE).read_bytes()
    assert description["weights"] == {"file": WEIGHTS_FILE, "bytes": len(data),
                                      "sha256": hashlib.sha256(data).hexdigest()}
    assert description["format_version"] == FORMAT_VERSION
    assert description["symwrap_version"] == symwrap.__version__
    assert description["backbone"].endswith("test_saving.TinyCNN")
    assert (description["strategy"], description["group"], description["input"]) == ("averaging", "C4", "image")
    assert sorted(os.listdir(folder)) == [WEIGHTS_FILE, CONFIG_FILE]  # no temporary folder left


def previous_version_save(model: symwrap.SymmetricModel, folder: Path) -> None:
    """A save as the previous version wrote it: the config without format version or fingerprint, the weights
    by safetensors' save_model (which keeps one name of tied tensors and records the others in its metadata)."""
    from safetensors.torch import save_model

    folder.mkdir()
    (folder / CONFIG_FILE).write_text(json.dumps({
        "strategy": model.config.strategy, "group": model.group_spec(), "input": model.input_action.spec(),
        "output": model.output_action.spec(), "config": model.config.to_dict()}))
    save_model(model, str(folder / WEIGHTS_FILE))


def test_saves_of_the_previous_version_still_load(tmp_path):
    model, case = build("averaging")
    previous_version_save(model, tmp_path / "old")
    x = case["x"]()
    assert torch.equal(outputs(symwrap.load(tmp_path / "old", fresh_backbone(case)), x), outputs(model, x))


def test_tied_names_dropped_by_an_old_save_are_restored(tmp_path):
    def tied() -> nn.Module:
        backbone = nn.Sequential(nn.Flatten(), nn.Linear(18, 18), nn.Tanh(), nn.Linear(18, 18), nn.Linear(18, 3))
        backbone[3].weight = backbone[1].weight
        return backbone

    torch.manual_seed(0)
    model = symwrap.wrap(tied(), group="SO3", strategy="frames", input="points")
    previous_version_save(model, tmp_path / "old")
    torch.manual_seed(5)
    loaded = symwrap.load(tmp_path / "old", tied())
    assert torch.equal(loaded.backbone[3].weight, model.backbone[1].weight)
    assert loaded.backbone[3].weight is loaded.backbone[1].weight


# --- atomic saves ---------------------------------------------------------------------------------------
def files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_saving_over_a_saved_model_needs_overwrite_and_leaves_other_files_alone(tmp_path):
    folder, model, _ = saved(tmp_path)
    (folder / "history.json").write_text("{}")
    before = files(folder)
    with pytest.raises(SaveError, match=r"already holds a saved model.*overwrite=True"):
        model.save_pretrained(folder)
    assert files(folder) == before

    with torch.no_grad():
        model.backbone.head.bias.add_(1.0)
    model.save_pretrained(folder, overwrite=True)
    after = files(folder)
    assert after["history.json"] == b"{}" and after[WEIGHTS_FILE] != before[WEIGHTS_FILE]
    assert torch.equal(symwrap.load(folder, TinyCNN()).backbone.head.bias, model.backbone.head.bias)


@pytest.mark.parametrize("only", [CONFIG_FILE, WEIGHTS_FILE])
def test_half_a_saved_model_also_counts_as_a_saved_model(tmp_path, only):
    folder, model, _ = saved(tmp_path)
    (folder / ({CONFIG_FILE, WEIGHTS_FILE} - {only}).pop()).unlink()
    with pytest.raises(SaveError, match="already holds a saved model"):
        model.save_pretrained(folder)


@pytest.mark.parametrize("failing", [CONFIG_FILE, WEIGHTS_FILE])
def test_a_save_that_fails_part_way_leaves_the_previous_save_untouched(tmp_path, monkeypatch, failing):
    folder, model, case = saved(tmp_path)
    before = files(folder)
    write = saving._write

    def write_half_then_fail(path: Path, data: bytes) -> None:
        if path.name == failing:
            write(path, data[: len(data) // 2])
            raise OSError(28, "No space left on device")
        write(path, data)

    monkeypatch.setattr(saving, "_write", write_half_then_fail)
    with torch.no_grad():
        model.backbone.head.bias.add_(1.0)
    with pytest.raises(SaveError, match=r"could not save the model to .*No space left on device"):
        model.save_pretrained(folder, overwrite=True)
    assert files(folder) == before  # no temporary folder, the old files byte for byte
    monkeypatch.undo()
    symwrap.load(folder, fresh_backbone(case))  # and the old pair still loads


def test_a_failed_save_into_a_new_folder_leaves_no_folder(tmp_path, monkeypatch):
    model, _ = build("averaging")

    def fail(path: Path, data: bytes) -> None:
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(saving, "_write", fail)
    with pytest.raises(SaveError, match="Permission denied"):
        model.save_pretrained(tmp_path / "new" / "model")
    assert not (tmp_path / "new" / "model").exists()


def test_saving_refuses_what_it_cannot_write(tmp_path):
    model, _ = build("averaging")
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(SaveError, match="is a file, not a folder"):
        model.save_pretrained(tmp_path / "a_file")

    lazy = symwrap.wrap(nn.Sequential(nn.Flatten(), nn.LazyLinear(3)), group="SO3", strategy="frames",
                        input="points")
    with pytest.raises(SaveError, match=r"'backbone.1.weight' is an uninitialised lazy parameter.*forward pass"):
        lazy.save_pretrained(tmp_path / "lazy")
    assert not (tmp_path / "lazy").exists()
    lazy(torch.randn(2, 6, 3))
    lazy.save_pretrained(tmp_path / "lazy")  # after a forward, it saves...
    loaded = symwrap.load(tmp_path / "lazy", nn.Sequential(nn.Flatten(), nn.LazyLinear(3)))  # ...and loads
    assert torch.equal(loaded.backbone[1].weight, lazy.backbone[1].weight)

    model.config.task_loss = object()  # a config value JSON cannot hold: refused before anything is written
    with pytest.raises(SaveError, match="does not fit in JSON"):
        model.save_pretrained(tmp_path / "json")
    assert not (tmp_path / "json").exists()


# --- broken folders --------------------------------------------------------------------------------------
def edit_config(folder: Path, change) -> None:
    description = json.loads((folder / CONFIG_FILE).read_text())
    change(description)
    (folder / CONFIG_FILE).write_text(json.dumps(description))


def legacy(description: dict) -> None:
    """As the previous version wrote it: no fingerprint."""
    description.pop("weights")


def weights_from_another_save(folder: Path) -> None:
    other, _ = build("averaging", seed=1)
    other.save_pretrained(folder.parent / "other")
    (folder / WEIGHTS_FILE).write_bytes((folder.parent / "other" / WEIGHTS_FILE).read_bytes())


def random_bytes(path: Path, size: int | None = None) -> None:
    size = path.stat().st_size if size is None else size
    path.write_bytes(torch.randint(0, 256, (size,), generator=torch.Generator().manual_seed(0),
                                   dtype=torch.uint8).numpy().tobytes())


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


BROKEN = {
    # the folder
    "folder missing": (lambda f: f.rename(f.parent / "elsewhere"), "the folder does not exist"),
    "folder is a file": (lambda f: (shutil.rmtree(f), f.write_text("x")), "is a file; give the folder"),
    # the config
    "config missing": (lambda f: (f / CONFIG_FILE).unlink(), "has no symwrap_config.json .it has the weights file"),
    "config not JSON": (lambda f: (f / CONFIG_FILE).write_text("{'strategy': averaging"), "is not valid JSON"),
    "config random bytes": (lambda f: random_bytes(f / CONFIG_FILE, 300), "is not valid JSON"),
    "config zero bytes": (lambda f: (f / CONFIG_FILE).write_bytes(b""), "is not valid JSON"),
    "config truncated": (lambda f: truncate(f / CONFIG_FILE), "is not valid JSON"),
    "config a list": (lambda f: (f / CONFIG_FILE).write_text("[1, 2]"), "holds a JSON list; expected an object"),
    "config lacks keys": (lambda f: edit_config(f, lambda d: [d.pop("strategy"), d.pop("group")]),
                          r"lacks the key\(s\) \['strategy', 'group'\]"),
    "unknown strategy": (lambda f: edit_config(f, lambda d: d.update(strategy="nope")),
                         "unknown strategy 'nope'.*import it first"),
    "unknown group": (lambda f: edit_config(f, lambda d: d.update(group="SO4")), "unknown group 'SO4'"),
    "unknown action": (lambda f: edit_config(f, lambda d: d.update(input="imagez")), "unknown action 'imagez'"),
    "unknown config field": (lambda f: edit_config(f, lambda d: d["config"].update(num_sample=3)),
                             r"invalid config: .*no field\(s\) \['num_sample'\]"),
    "config field of the wrong type": (lambda f: edit_config(f, lambda d: d["config"].update(validate="yes")),
                                       "invalid config: .*validate"),
    "config not an object": (lambda f: edit_config(f, lambda d: d.update(config=[1])), "'config' is a list"),
    "config of another strategy": (lambda f: edit_config(f, lambda d: d["config"].update(strategy="remul")),
                                   "the config is for strategy 'remul'"),
    "newer format": (lambda f: edit_config(f, lambda d: d.update(format_version=FORMAT_VERSION + 1)),
                     "upgrade symwrap"),
    "format not a number": (lambda f: edit_config(f, lambda d: d.update(format_version="one")),
                            "format_version 'one'"),
    "malformed fingerprint": (lambda f: edit_config(f, lambda d: d.update(weights={"sha256": 5})),
                              "malformed 'weights' record"),
    "group incompatible with the input": (lambda f: edit_config(f, lambda d: d.update(group="SO3")),
                                          "cannot be rebuilt around the backbone given"),
    # the weights
    "weights missing": (lambda f: (f / WEIGHTS_FILE).unlink(), "has symwrap_config.json but no model.safetensors"),
    "weights zero bytes": (lambda f: (f / WEIGHTS_FILE).write_bytes(b""), r"is empty \(0 bytes\)"),
    "weights truncated": (lambda f: truncate(f / WEIGHTS_FILE), "bytes but symwrap_config.json records"),
    "weights random bytes": (lambda f: random_bytes(f / WEIGHTS_FILE), "does not match the SHA-256"),
    "weights from another save": (weights_from_another_save, "does not match the SHA-256.*another save"),
    "weights one byte changed": (lambda f: (f / WEIGHTS_FILE).write_bytes(
        (f / WEIGHTS_FILE).read_bytes()[:-1] + b"\x00"), "does not match the SHA-256"),
    # without a fingerprint (saves of the previous version), the file itself is checked
    "legacy truncated": (lambda f: (edit_config(f, legacy), truncate(f / WEIGHTS_FILE)),
                         "is not a valid safetensors file"),
    "legacy random bytes": (lambda f: (edit_config(f, legacy), random_bytes(f / WEIGHTS_FILE)),
                            "is not a valid safetensors file"),
    "legacy torch pickle": (lambda f: (edit_config(f, legacy), torch.save({"w": torch.ones(2)}, f / WEIGHTS_FILE)),
                            "is not a valid safetensors file"),
    "legacy JSON header only": (lambda f: (edit_config(f, legacy), (f / WEIGHTS_FILE).write_bytes(
        (8).to_bytes(8, "little") + b'{"a": 1}')), "is not a valid safetensors file"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_folder_gives_one_model_file_error_naming_the_file_and_the_fix(tmp_path, case):
    folder, _, image_case = saved(tmp_path)
    damage, message = BROKEN[case]
    damage(folder)
    with pytest.raises(ModelFileError, match=message) as error:
        symwrap.load(folder, fresh_backbone(image_case))
    assert str(folder) in str(error.value)  # names the folder or the file
    assert "\n" not in str(error.value)


def test_a_legacy_save_with_intact_files_needs_no_fingerprint(tmp_path):
    folder, model, case = saved(tmp_path)
    edit_config(folder, legacy)
    x = case["x"]()
    assert torch.equal(outputs(symwrap.load(folder, fresh_backbone(case)), x), outputs(model, x))


# --- weights that do not fit the backbone ----------------------------------------------------------------
def test_weights_that_do_not_fit_the_backbone_list_the_keys_and_suggest_the_architecture(tmp_path):
    folder, _, _ = saved(tmp_path)
    with pytest.raises(WeightLoadingError) as error:
        symwrap.load(folder, TinyCNN(width=6))
    message = str(error.value)
    assert ("3 key(s) of another shape: backbone.conv.weight (4, 1, 3, 3) in the file, (6, 1, 3, 3) in the model, "
            "backbone.conv.bias (4,) in the file, (6,) in the model, backbone.head.weight (3, 16) in the file, "
            "(3, 24) in the model") in message
    assert "missing" not in message and "unexpected" not in message
    assert "test_saving.TinyCNN" in message and "same architecture" in message

    class Deeper(TinyCNN):
        def __init__(self) -> None:
            super().__init__()
            self.extra = nn.ModuleList(nn.Linear(2, 2) for _ in range(4))

    with pytest.raises(WeightLoadingError, match=r"8 key\(s\) missing from the file: backbone.extra.0.weight, "
                                                 r".*, and 3 more"):
        symwrap.load(folder, Deeper())

    shallow = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.LazyLinear(3))
    unexpected = r"4 key\(s\) unexpected \(not in the model\): backbone.conv.bias, backbone.conv.weight"
    with pytest.raises(WeightLoadingError, match=unexpected):
        symwrap.load(folder, shallow)


def test_a_failed_load_leaves_the_backbone_as_it_was(tmp_path):
    folder, _, _ = saved(tmp_path)
    backbone = TinyCNN(width=6)
    before = {key: value.clone() for key, value in backbone.state_dict().items()}
    with pytest.raises(WeightLoadingError):
        symwrap.load(folder, backbone)
    assert all(torch.equal(backbone.state_dict()[key], value) for key, value in before.items())


def test_load_arguments_are_checked(tmp_path):
    folder, _, _ = saved(tmp_path)
    with pytest.raises(ConfigError, match=r"takes the module\(s\) \[\] besides the backbone; got \['teacher'\]"):
        symwrap.load(folder, TinyCNN(), teacher=TinyCNN())
    with torch.device("meta"):
        on_meta = TinyCNN()
    with pytest.raises(DeviceError, match="meta device.*to_empty"):
        symwrap.load(folder, on_meta)


def test_a_hand_written_weights_file_is_checked_too(tmp_path):
    """A weights file written by hand (the right keys, one of another shape) is refused by name."""
    folder, model, _ = saved(tmp_path)
    tensors = {key: value.clone() for key, value in model.state_dict().items()}
    tensors["backbone.head.bias"] = torch.zeros(5)
    save_file(tensors, str(folder / WEIGHTS_FILE))
    edit_config(folder, legacy)
    with pytest.raises(WeightLoadingError, match=r"backbone.head.bias \(5,\) in the file, \(3,\) in the model"):
        symwrap.load(folder, TinyCNN())


def test_from_pretrained_takes_peft_argument_order_and_checks_the_strategy(tmp_path):
    from symwrap.strategies import Averaging, Remul

    torch.manual_seed(0)
    model = symwrap.wrap(nn.Linear(2, 2), group="C4", strategy="averaging", input="vector", output="vector")
    model.save_pretrained(tmp_path)
    loaded = Averaging.from_pretrained(nn.Linear(2, 2), tmp_path)
    x = torch.randn(4, 2)
    assert torch.equal(loaded(x), model(x))
    assert torch.equal(symwrap.SymmetricModel.from_pretrained(nn.Linear(2, 2), tmp_path)(x), model(x))
    with pytest.raises(symwrap.errors.ConfigError, match="holds a 'averaging' model .*not a Remul"):
        Remul.from_pretrained(nn.Linear(2, 2), tmp_path)
    with pytest.raises(symwrap.errors.ConfigError, match="takes \\(directory, backbone\\); got the backbone first"):
        symwrap.load(nn.Linear(2, 2), tmp_path)
    with pytest.raises(symwrap.errors.ConfigError, match="needs the backbone the model was saved around"):
        symwrap.load(tmp_path)
