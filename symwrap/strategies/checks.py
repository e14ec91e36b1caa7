"""Checks at the two places where a strategy meets the user's objects: what the backbone returns, and the
targets given to ``loss``. Each failure is a :class:`~symwrap.errors.SymwrapError` that says what was given
and what was expected; nothing is broadcast or swallowed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..actions.checks import check_backbone_output
from ..actions.checks import describe as _describe
from ..errors import TargetError

__all__ = ["check_backbone_output", "check_target"]  # the output check lives in actions, below the metrics


def check_target(pred: Any, target: Any, kind: str) -> None:
    """Raise :class:`TargetError` unless ``target`` fits ``pred`` for the task loss ``kind``."""
    if target is None:
        raise TargetError(
            "loss(pred, target, x) needs a target; got None. For inputs without labels use "
            "model.auxiliary_loss(x), the strategy's own terms"
        )
    if isinstance(pred, Mapping) or isinstance(target, Mapping):
        if not (isinstance(pred, Mapping) and isinstance(target, Mapping)) or set(pred) != set(target):
            raise TargetError(f"the prediction is {_describe(pred)} and the target {_describe(target)}; "
                              "dict predictions need dict targets with the same keys")
        for key in pred:
            try:
                check_target(pred[key], target[key], kind)
            except TargetError as error:
                raise TargetError(f"field {key!r}: {error}") from None
        return
    if not isinstance(target, torch.Tensor):
        raise TargetError(f"the target must be a torch.Tensor; got {_describe(target)}")
    if not isinstance(pred, torch.Tensor):
        raise TargetError(f"the prediction must be a torch.Tensor; got {_describe(pred)}")
    if pred.ndim == 0 or target.ndim == 0 or target.shape[0] != pred.shape[0]:
        raise TargetError(f"the target is {_describe(target)} for a prediction that is {_describe(pred)}; "
                          "they need the same batch size (first dimension)")
    if kind == "cross_entropy":
        if torch.is_floating_point(target):
            if target.shape != pred.shape:
                raise TargetError(f"cross-entropy takes class indices (B,) or class probabilities shaped like the "
                                  f"logits {tuple(pred.shape)}; got {_describe(target)}")
            return
        if target.dtype == torch.bool or torch.is_complex(target):
            raise TargetError(f"cross-entropy takes integer class indices; got {_describe(target)}")
        if pred.ndim < 2 or target.shape != pred.shape[:1] + pred.shape[2:]:
            raise TargetError(f"cross-entropy over logits {tuple(pred.shape)} takes class indices of shape "
                              f"{tuple(pred.shape[:1] + pred.shape[2:])}; got {_describe(target)}")
        if target.numel() and target.device.type != "meta":
            low, high = int(target.min()), int(target.max())
            if low < 0 or high >= pred.shape[1]:
                raise TargetError(f"class indices must lie in [0, {pred.shape[1]}) for {pred.shape[1]} logits; "
                                  f"got values from {low} to {high}")
        return
    if not torch.is_floating_point(target):
        raise TargetError(f"the mean squared error compares floating-point values; the target is "
                          f"{_describe(target)}. For class labels set task_loss='cross_entropy'")
    if target.shape != pred.shape:
        raise TargetError(f"the mean squared error compares tensors of one shape, without broadcasting; the "
                          f"prediction is {_describe(pred)} and the target {_describe(target)}")
