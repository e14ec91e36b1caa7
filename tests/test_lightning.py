"""symwrap.lightning: every strategy trains under lightning.Trainer.fit and logs what symwrap.fit logs."""

import functools
import logging

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from symwrap.errors import ConfigError
from symwrap.training.synthetic import build_model, synthetic_images

lightning = pytest.importorskip("lightning.pytorch")
from symwrap.lightning import SymmetricLightningModule  # noqa: E402


def trainer(**options) -> "lightning.Trainer":
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    return lightning.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, **options)


def loaders():
    train = DataLoader(synthetic_images(64, seed=0), batch_size=8, shuffle=True,
                       generator=torch.Generator().manual_seed(0))
    return train, DataLoader(synthetic_images(16, seed=1), batch_size=8)


@pytest.mark.parametrize("strategy", ["remul", "canonicalization", "averaging"])
def test_trainer_fit_trains_the_strategys_loss_and_logs_its_terms(strategy):
    model = build_model(strategy, "C4")
    train, val = loaders()
    x, y = next(iter(val))
    with torch.no_grad():
        before = float(model.loss(model(x), y, x)["total"])
    module = SymmetricLightningModule(model, lr=1e-2)
    run = trainer(max_epochs=3)
    run.fit(module, train, val)
    metrics = run.callback_metrics
    terms = model.loss(model(x), y, x)
    for name in terms:
        assert f"train_{name}" in metrics and f"val_{name}" in metrics
    assert 0.0 <= float(metrics["val_accuracy"]) <= 1.0
    assert float(metrics["equivariance_error"]) >= 0.0
    model.eval()
    with torch.no_grad():
        assert float(model.loss(model(x), y, x)["total"]) < before
    if strategy == "averaging":  # exact over C4
        assert float(metrics["equivariance_error"]) < 1e-5


def test_a_plain_module_with_a_loss_fn_and_a_scheduler():
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    module = SymmetricLightningModule(net, optimizer=functools.partial(torch.optim.SGD, lr=0.1),
                                      scheduler=functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1,
                                                                  gamma=0.5),
                                      loss_fn=nn.functional.cross_entropy)
    train, _ = loaders()
    run = trainer(max_steps=3)
    run.fit(module, train)
    assert run.global_step == 3
    assert run.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 3)
    assert "equivariance_error" not in run.callback_metrics


def test_bad_arguments_are_refused():
    with pytest.raises(ConfigError, match="lr must be a positive number; got 0"):
        SymmetricLightningModule(nn.Linear(2, 2), lr=0)
    with pytest.raises(ConfigError, match="model must be an nn.Module; got str"):
        SymmetricLightningModule("vit")
