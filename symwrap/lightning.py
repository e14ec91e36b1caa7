"""Lightning users: every strategy under ``lightning.Trainer.fit``.

::

    from symwrap.lightning import SymmetricLightningModule
    model = symwrap.wrap(backbone, group="C4", strategy="remul", input="image", output="invariant")
    lightning.Trainer(max_epochs=10).fit(SymmetricLightningModule(model, lr=1e-3), train_loader, val_loader)

The module trains what :func:`symwrap.fit` trains (the strategy's full loss: its task term and its own terms)
and logs the same names: ``train_<term>``, ``val_<term>``, ``val_accuracy`` (integer labels) and
``equivariance_error`` (on the first validation batch, the same group elements every epoch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from .errors import ConfigError, MissingDependencyError
from .steps import split_batch
from .training.loop import LossFn, LossModule, is_classification, seeded_generator, symmetric_model

try:
    import lightning.pytorch as pl
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError("symwrap.lightning needs Lightning: pip install 'symwrap[lightning]'") from error

__all__ = ["SymmetricLightningModule"]


class SymmetricLightningModule(pl.LightningModule):
    """A :class:`lightning.pytorch.LightningModule` around a wrapped model (or any ``nn.Module``).

    Args:
        model: a :class:`~symwrap.strategies.SymmetricModel` (trained on ``model.loss``) or a plain module
            (trained on ``loss_fn``, or MSE / cross-entropy by the target's dtype, as :func:`symwrap.fit`).
        lr: the learning rate of the default ``Adam``.
        optimizer: a callable ``parameters -> optimizer`` instead of ``Adam(lr=lr)``.
        scheduler: a callable ``optimizer -> scheduler``, stepped after every optimizer step.
        loss_fn: ``(pred, y) -> loss`` replacing the model's own loss, as in :func:`symwrap.fit`.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        lr: float = 1e-3,
        optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] | None = None,
        scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
        loss_fn: LossFn | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model must be an nn.Module; got {type(model).__name__}")
        if optimizer is None and not (isinstance(lr, (int, float)) and lr > 0):
            raise ConfigError(f"lr must be a positive number; got {lr!r}")
        self.model = model
        self.lr, self.optimizer_factory, self.scheduler_factory = lr, optimizer, scheduler
        self._loss = LossModule(model, loss_fn)

    def forward(self, x: Any) -> Any:
        return self.model(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = split_batch(batch)
        terms = self._loss(x, y)
        size = _size(y)
        for name, value in terms.items():
            self.log(f"train_{name}", value.detach(), prog_bar=name == "total", batch_size=size)
        return terms["total"]

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = split_batch(batch)
        terms, pred = self._loss(x, y, return_prediction=True)
        size = _size(y)
        for name, value in terms.items():
            self.log(f"val_{name}", value, prog_bar=name == "total", batch_size=size)
        if is_classification(pred, y):
            self.log("val_accuracy", (pred.argmax(-1) == y).float().mean(), prog_bar=True, batch_size=size)
        symmetric = symmetric_model(self.model)
        if batch_idx == 0 and symmetric is not None:
            error = symmetric.equivariance_error(x, generator=seeded_generator(x.device if isinstance(x, torch.Tensor)
                                                                       else self.device))
            self.log("equivariance_error", error, batch_size=size)

    def configure_optimizers(self) -> Any:
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        if not parameters:
            raise ConfigError("the model has no parameter with requires_grad=True; there is nothing to train")
        optimizer = (torch.optim.Adam(parameters, lr=self.lr) if self.optimizer_factory is None
                     else self.optimizer_factory(parameters))
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "step"}}


def _size(y: Any) -> int | None:
    return int(y.shape[0]) if isinstance(y, torch.Tensor) and y.ndim > 0 else None
