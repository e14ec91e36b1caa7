"""Hugging Face's conventions on a wrapped model: ``pixel_values=`` / ``labels=`` keywords returning a
``ModelOutput`` with the strategy's full training loss, so ``transformers.Trainer`` trains it unchanged; HF's
``save_pretrained`` keyword; the user's model reachable as ``model.backbone``."""

from __future__ import annotations

import inspect
import warnings

import pytest
import torch

import symwrap
from symwrap.errors import ConfigError

transformers = pytest.importorskip("transformers")

CLASSES = 4


def tiny_vit(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = transformers.ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=64, num_labels=CLASSES)
    return transformers.ViTForImageClassification(config)


def wrapped(strategy: str, seed: int = 0) -> symwrap.SymmetricModel:
    return symwrap.wrap(tiny_vit(), group="C4", strategy=strategy, input="image", output="invariant", seed=seed)


class Images(torch.utils.data.Dataset):
    """16 random 16x16 RGB images with labels, as dicts the way a Hugging Face image data set gives them."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(16, 3, 16, 16, generator=g)
        self.y = torch.randint(0, CLASSES, (16,), generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.x[i], "labels": self.y[i]}


def batch(n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    data = Images()
    return data.x[:n], data.y[:n]


@pytest.mark.parametrize("strategy", ["remul", "canonicalization", "averaging"])
def test_keywords_give_a_model_output_whose_loss_is_the_full_training_loss(strategy):
    x, y = batch()
    model, twin = wrapped(strategy).train(), wrapped(strategy).train()  # same seeds: the same sampled elements
    twin.load_state_dict(model.state_dict())
    out = model(pixel_values=x, labels=y)
    assert isinstance(out, transformers.utils.ModelOutput)
    pred = twin(x)
    expected = twin.loss(pred, y, x)  # forward, then the loss: the calls the keywords make, in that order
    assert bool(set(expected) - {"task", "total"}) is (strategy != "averaging")  # the strategy's own terms
    assert torch.equal(out.loss, expected["total"]) and out.loss.requires_grad
    assert torch.equal(out.logits, pred)
    model.eval()
    assert torch.equal(model(pixel_values=x).logits, model(x))
    assert "loss" not in model(pixel_values=x)  # no labels: no loss, as transformers does
    assert isinstance(model(x), torch.Tensor)  # a positional call is unchanged
    loss, logits = model(x, labels=y, return_dict=False)
    assert torch.equal(logits, model(x)) and loss.ndim == 0
    assert model(pixel_values=x, return_dict=False)[0].shape == (4, CLASSES)


def test_keyword_misuse_is_a_config_error():
    model = wrapped("averaging")
    x, y = batch()
    with pytest.raises(ConfigError, match="input twice"):
        model(x, pixel_values=x)
    with pytest.raises(ConfigError, match="no input"):
        model(labels=y)
    with pytest.raises(ConfigError, match="got neither"):
        model()
    with pytest.raises(ConfigError, match="pixel_values=, labels=, return_dict=; got output_attentions="):
        model(pixel_values=x, output_attentions=True)


def test_the_signature_names_the_labels_for_the_trainer():
    for name in symwrap.list_strategies():
        parameters = inspect.signature(symwrap.get_strategy(name).forward).parameters
        assert list(parameters) == ["self", "x", "pixel_values", "labels", "return_dict", "others"], name
    assert transformers.utils.generic.find_labels(type(wrapped("remul"))) == ["labels"]


@pytest.mark.parametrize("strategy", ["remul", "canonicalization"])
def test_the_transformers_trainer_trains_and_evaluates_a_wrapped_vit(strategy, tmp_path):
    model = wrapped(strategy)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    args = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4,
                                          per_device_eval_batch_size=8, learning_rate=1e-3, report_to=[],
                                          use_cpu=True, save_strategy="no", seed=0, disable_tqdm=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = transformers.Trainer(model=model, args=args, train_dataset=Images(), eval_dataset=Images())
        assert trainer.label_names == ["labels"] and trainer.model_accepts_loss_kwargs is False
        result = trainer.train()
        metrics = trainer.evaluate()
    assert result.global_step == 3 and torch.isfinite(torch.tensor(result.training_loss))
    assert torch.isfinite(torch.tensor(metrics["eval_loss"]))
    moved = [name for name, p in model.named_parameters() if not torch.equal(p, before[name])]
    assert any(name.startswith("backbone.") for name in moved)
    if strategy == "canonicalization":
        assert any(name.startswith("canonicalizer.") for name in moved)
    trainer.save_model(str(tmp_path / "trainer"))
    assert (tmp_path / "trainer" / "model.safetensors").is_file()


def test_save_pretrained_takes_safe_serialization_and_loads_back(tmp_path):
    model = wrapped("canonicalization").eval()
    model.save_pretrained(tmp_path, safe_serialization=True)
    loaded = symwrap.load(tmp_path, tiny_vit(seed=5)).eval()
    x, _ = batch()
    assert torch.equal(loaded(x), model(x))


def test_model_backbone_reaches_the_users_model(tmp_path):
    vit = tiny_vit()
    model = symwrap.wrap(vit, group="C4", strategy="remul", input="image", output="invariant")
    assert model.backbone.model is vit  # the adapter that reads logits keeps the user's model ...
    assert model.backbone.config is vit.config and model.backbone.num_labels == CLASSES  # ... and answers for it
    model.backbone.save_pretrained(tmp_path)  # the user's own save_pretrained
    again = transformers.ViTForImageClassification.from_pretrained(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), vit.state_dict().values()))
    assert not hasattr(model.backbone, "no_such_attribute")
