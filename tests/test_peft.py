"""peft models as backbones: a LoRA-adapted Hugging Face ViT (and a timm ViT through peft's custom-module LoRA)
wraps with every strategy that takes any backbone, trains only the adapter and the strategy's own modules, saves
only that (``trainable_only=True``) and loads it back bit for bit; ``merge_and_unload()`` keeps the outputs."""

from __future__ import annotations

import warnings

import pytest
import torch

import symwrap
from symwrap.errors import SaveError, WeightLoadingError
from symwrap.saving import WEIGHTS_FILE, read_description, trainable_keys

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

#: the strategies that take any backbone, with a group they take on images
ANY_BACKBONE = ["averaging", "canonicalization", "symmetrization", "remul", "cloning"]
CLASSES = 4


def tiny_vit(seed: int = 0) -> torch.nn.Module:
    """A one-layer ViT on 16x16 RGB images (the same weights for the same seed: a stand-in for a pretrained one)."""
    torch.manual_seed(seed)
    config = transformers.ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=64, num_labels=CLASSES)
    return transformers.ViTForImageClassification(config).eval()


def lora(model: torch.nn.Module, rank: int = 4, seed: int = 1, targets: tuple[str, ...] = ("q_proj", "v_proj")
         ) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = peft.LoraConfig(r=rank, lora_alpha=8, target_modules=list(targets), modules_to_save=["classifier"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return peft.get_peft_model(model, config)


def batch(n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randn(n, 3, 16, 16, generator=g), torch.randint(0, CLASSES, (n,), generator=g)


def wrapped(strategy: str, backbone: torch.nn.Module) -> symwrap.SymmetricModel:
    return symwrap.wrap(backbone, group="C4", strategy=strategy, input="image", output="invariant", seed=0)


def train(model: symwrap.SymmetricModel, steps: int = 3) -> None:
    """A few Adam steps on the model's full loss (large enough to move the LoRA matrices off their zero init)."""
    x, y = batch()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        model.loss(model(x), y, x)["total"].backward()
        optimizer.step()
    model.eval()


def trainable_backbone_names(peft_model: torch.nn.Module) -> set[str]:
    return {name for name, p in peft_model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("strategy", ANY_BACKBONE)
def test_a_lora_vit_wraps_and_only_the_adapter_and_the_strategy_train(strategy):
    backbone = lora(tiny_vit())
    before = trainable_backbone_names(backbone)
    assert before and all("lora_" in name or "modules_to_save" in name for name in before)
    frozen = {name: p.detach().clone() for name, p in backbone.named_parameters() if not p.requires_grad}
    model = wrapped(strategy, backbone)
    assert trainable_backbone_names(backbone) == before  # wrap() unfroze nothing
    x, y = batch()
    assert model(x).shape == (4, CLASSES)
    train(model, steps=1)
    grads = {name for name, p in backbone.named_parameters() if p.grad is not None}
    assert grads and grads <= before
    for name, p in backbone.named_parameters():
        if name in frozen:
            assert torch.equal(p, frozen[name]), name
    own = [p for name, p in model.named_parameters() if not name.startswith("backbone.")]
    assert all(p.requires_grad and p.grad is not None for p in own)  # the strategy's own networks train too
    assert bool(own) is (strategy in ("canonicalization", "symmetrization"))


@pytest.mark.parametrize("strategy", ["remul", "canonicalization"])
def test_a_trainable_only_save_holds_the_adapter_and_loads_back_bit_for_bit(strategy, tmp_path):
    model = wrapped(strategy, lora(tiny_vit()))
    train(model)
    x, _ = batch()
    with torch.no_grad():
        expected = model(x)
    model.save_pretrained(tmp_path / "full")
    model.save_pretrained(tmp_path / "adapter", trainable_only=True, safe_serialization=True)
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "adapter" / WEIGHTS_FILE)
    assert set(saved) == trainable_keys(model)
    assert all(key.startswith("backbone.") is ("lora_" in key or "modules_to_save" in key) for key in saved)
    assert any("lora_B" in key for key in saved) and not any(key.endswith("q_proj.base_layer.weight") for key in saved)
    frozen = {f"backbone.{key}" for key, t in model.backbone.state_dict(keep_vars=True).items() if not t.requires_grad}
    assert set(load_file(tmp_path / "full" / WEIGHTS_FILE)) - set(saved) == frozen
    assert read_description(tmp_path / "adapter")["trainable_only"] is True

    fresh = lora(tiny_vit(), seed=7)  # the same base, a LoRA initialised differently
    with torch.no_grad():
        assert not torch.equal(wrapped(strategy, lora(tiny_vit(), seed=7)).eval()(x), expected)
    loaded = symwrap.load(tmp_path / "adapter", fresh).eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)
    assert trainable_backbone_names(fresh) == trainable_backbone_names(model.backbone.model)


def test_a_trainable_only_save_refuses_a_backbone_without_the_same_adapter(tmp_path):
    model = wrapped("remul", lora(tiny_vit()))
    model.save_pretrained(tmp_path, trainable_only=True)
    with pytest.raises(WeightLoadingError, match=r"of another shape.*trainable_only save"):
        symwrap.load(tmp_path, lora(tiny_vit(), rank=8))
    with pytest.raises(WeightLoadingError, match=r"unexpected.*lora_A"):
        symwrap.load(tmp_path, tiny_vit())
    with pytest.raises(WeightLoadingError, match=r"missing from the file: .*k_proj.lora_A.*the saved one had"):
        symwrap.load(tmp_path, lora(tiny_vit(), targets=("q_proj", "k_proj", "v_proj")))


def test_trainable_only_with_nothing_trainable_and_pickled_saves_are_refused(tmp_path):
    backbone = tiny_vit().requires_grad_(False)
    model = wrapped("remul", backbone)
    with pytest.raises(SaveError, match="no trainable tensor"):
        model.save_pretrained(tmp_path / "a", trainable_only=True)
    with pytest.raises(SaveError, match="safe_serialization=False"):
        model.save_pretrained(tmp_path / "b", safe_serialization=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("strategy", ["remul", "averaging", "canonicalization"])
def test_merge_and_unload_gives_the_same_wrapped_outputs(strategy):
    model = wrapped(strategy, lora(tiny_vit()))
    train(model)
    x, _ = batch()
    own = {key: value for key, value in model.state_dict().items() if not key.startswith("backbone.")}
    with torch.no_grad():
        expected = model(x)
    merged = model.backbone.merge_and_unload()  # the user's PeftModel, reached through the adapter
    assert type(merged).__name__ == "ViTForImageClassification"
    plain = wrapped(strategy, merged).eval()
    plain.load_state_dict(own, strict=False)
    with torch.no_grad():
        got = plain(x)
    assert not torch.equal(got, wrapped(strategy, tiny_vit()).eval()(x))  # the trained adapter is in the merge
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_a_timm_vit_with_peft_custom_lora_trains_only_the_adapter():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=16, patch_size=4, depth=1,
                            embed_dim=32, num_heads=2, num_classes=CLASSES)
    backbone = peft.get_peft_model(vit, peft.LoraConfig(r=4, target_modules=["qkv"]))
    before = trainable_backbone_names(backbone)
    model = wrapped("remul", backbone)
    assert model.backbone is backbone  # it returns tensors: no adapter around it
    train(model, steps=1)
    assert {name for name, p in backbone.named_parameters() if p.grad is not None} == before
    assert all("lora_" in name for name in before)
