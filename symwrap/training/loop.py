"""The fit loop: train, validate, measure equivariance, checkpoint; one process or many."""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from ..errors import CheckpointError, ConfigError, DataError, ShapeError
from ..progress import progress_bar
from ..steps import apply_gradients, default_task_loss, split_batch
from ..strategies.base import SymmetricModel
from . import callbacks as callbacks_lib
from . import checkpoint as ckpt
from . import distributed
from .history import History

logger = logging.getLogger("symwrap.training")

LossOutput = torch.Tensor | Mapping[str, torch.Tensor]
LossFn = Callable[[Any, Any], LossOutput]
OptimizerSpec = Optimizer | Callable[[Iterable[nn.Parameter]], Optimizer] | None
SchedulerSpec = LRScheduler | ReduceLROnPlateau | Callable[[Optimizer], Any] | None


# --- models ------------------------------------------------------------------------------------------
def unwrap_model(model: nn.Module) -> nn.Module:
    """The module under ``torch.compile`` (``_orig_mod``) and DistributedDataParallel (``module``) wrappers."""
    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def symmetric_model(model: nn.Module) -> SymmetricModel | None:
    inner = unwrap_model(model)
    return inner if isinstance(inner, SymmetricModel) else None


def _model_device(model: nn.Module) -> torch.device:
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")


def default_loss(pred: Any, target: torch.Tensor) -> torch.Tensor:
    """What ``SymmetricModel.task_loss`` does with ``task_loss="auto"``: mean squared error for
    floating-point targets, cross-entropy for integer targets."""
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise ShapeError(
            f"the default loss needs a tensor prediction and a tensor target; got {type(pred).__name__} and "
            f"{type(target).__name__}. Pass loss_fn=(pred, target) -> loss"
        )
    return default_task_loss(pred, target)


def _as_terms(value: Any, source: str) -> dict[str, torch.Tensor]:
    """A loss as a dict of named scalar terms with ``total``."""
    if isinstance(value, torch.Tensor):
        terms = {"total": value}
    elif isinstance(value, Mapping):
        terms = dict(value)
        if "total" not in terms:
            terms["total"] = sum(terms.values())
    else:
        raise ShapeError(f"{source} returned a {type(value).__name__}; expected a scalar tensor or a dict of them")
    for name, term in terms.items():
        if not isinstance(term, torch.Tensor) or term.numel() != 1:
            shape = tuple(term.shape) if isinstance(term, torch.Tensor) else type(term).__name__
            raise ShapeError(f"{source} returned term {name!r} of shape {shape}; expected a scalar tensor")
    return terms


class LossModule(nn.Module):
    """``forward(x, y)`` = the loss terms of ``model`` on the batch.

    DistributedDataParallel wraps this module, not the model, so every backbone call a strategy
    makes for its loss (REMUL's transformed copies, a canonicalizer's prior) happens inside the
    DDP forward and has its gradients averaged across ranks.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn | None) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, x: Any, y: Any, return_prediction: bool = False) -> Any:
        pred = self.model(x)
        terms = self.terms(pred, y, x)
        return (terms, pred) if return_prediction else terms

    def terms(self, pred: Any, y: Any, x: Any) -> dict[str, torch.Tensor]:
        if self.loss_fn is not None:
            return _as_terms(self.loss_fn(pred, y), "loss_fn")
        symmetric = symmetric_model(self.model)
        if symmetric is not None:
            return _as_terms(symmetric.loss(pred, y, x), f"{type(symmetric).__name__}.loss")
        return {"total": default_loss(pred, y)}


# --- batches --------------------------------------------------------------------------------------
def move_to(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor on ``device``: tensors, dicts, lists and tuples of them, and objects
    with a ``.to(device)`` method (torch_geometric ``Data``/``Batch``)."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, Mapping):
        return {k: move_to(v, device) for k, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(move_to(v, device) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(move_to(v, device) for v in value)
    if callable(getattr(value, "to", None)):
        return value.to(device)
    return value


def _batch_size(y: Any) -> int:
    if isinstance(y, torch.Tensor) and y.ndim > 0:
        return int(y.shape[0])
    return 1


# --- running means ------------------------------------------------------------------------------------
class _Meter:
    """Sums of scalar terms kept on the device (no synchronisation per step), reduced over ranks on demand."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, float] = {}

    def add(self, terms: Mapping[str, torch.Tensor], weight: float = 1.0) -> None:
        for name, value in terms.items():
            value = value.detach().reshape(()).to(torch.float64) * weight
            self.sums[name] = self.sums[name] + value if name in self.sums else value
            self.counts[name] = self.counts.get(name, 0.0) + weight

    def add_value(self, name: str, total: torch.Tensor | float, count: float) -> None:
        total = total.detach().to(torch.float64) if isinstance(total, torch.Tensor) else torch.tensor(total)
        self.sums[name] = self.sums[name] + total if name in self.sums else total
        self.counts[name] = self.counts.get(name, 0.0) + count

    def means(self, context: distributed.DistributedContext, prefix: str = "") -> dict[str, float]:
        names = sorted(self.sums)
        if not names:
            return {}
        device = self.sums[names[0]].device
        packed = torch.cat([
            torch.stack([self.sums[n].to(device) for n in names]),
            torch.tensor([self.counts[n] for n in names], dtype=torch.float64, device=device),
        ])
        reduced = distributed.all_reduce_sum(packed, context)
        totals, counts = reduced[:len(names)], reduced[len(names):]
        return {prefix + n: (t / c if c else math.nan) for n, t, c in zip(names, totals, counts)}


# --- argument checks --------------------------------------------------------------------------------
def _check_positive_int(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer{' or None' if allow_none else ''}; got {value!r}")


def _build_optimizer(optimizer: OptimizerSpec, model: nn.Module, lr: float) -> Optimizer:
    if isinstance(optimizer, Optimizer):
        return optimizer
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        raise ConfigError("the model has no parameter with requires_grad=True; there is nothing to train")
    if optimizer is None:
        if not (isinstance(lr, (int, float)) and lr > 0):
            raise ConfigError(f"lr must be a positive number; got {lr!r}")
        return torch.optim.Adam(parameters, lr=lr)
    if callable(optimizer):
        built = optimizer(parameters)
        if not isinstance(built, Optimizer):
            raise ConfigError(f"optimizer(parameters) returned a {type(built).__name__}; expected a torch Optimizer")
        return built
    raise ConfigError(f"optimizer must be a torch Optimizer, a callable params -> Optimizer, or None; "
                      f"got {type(optimizer).__name__}")


def _build_scheduler(scheduler: SchedulerSpec, optimizer: Optimizer) -> Any:
    if scheduler is None:
        return None
    if not isinstance(scheduler, (LRScheduler, ReduceLROnPlateau)):
        if not callable(scheduler):
            raise ConfigError(f"scheduler must be an LR scheduler, a callable optimizer -> scheduler, or None; "
                              f"got {type(scheduler).__name__}")
        scheduler = scheduler(optimizer)
    if getattr(scheduler, "optimizer", None) is not optimizer:
        raise ConfigError("the scheduler steps a different optimizer than the one fit trains with; build it on "
                          "the optimizer you pass (or pass scheduler=lambda optimizer: ...)")
    return scheduler


def _resume_path(resume: bool | str | Path, checkpoint_dir: str | Path | None) -> Path | None:
    """The checkpoint to continue from (``None``: start afresh)."""
    if resume is False or resume is None:
        return None
    if resume is True or resume == "auto":
        if checkpoint_dir is None:
            raise ConfigError(f"resume={resume!r} needs checkpoint_dir= (where last.pt is), or give resume= the "
                              "checkpoint file itself")
        path = Path(checkpoint_dir) / ckpt.CHECKPOINT_FILE
        if resume == "auto" and not path.is_file():
            return None
        return path
    path = Path(resume)
    return path / ckpt.CHECKPOINT_FILE if path.is_dir() else path


@contextlib.contextmanager
def _forked_rng(device: torch.device) -> Iterator[None]:
    """Evaluation draws no numbers from the generators training uses: a run with validation
    trains exactly like one without."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        with torch.random.fork_rng(devices=[index], device_type="cuda"):
            yield
    else:
        with torch.random.fork_rng(devices=[]):
            yield


# --- the loop ---------------------------------------------------------------------------------------------
def fit(
    model: nn.Module,
    train_loader: Iterable[Any],
    val_loader: Iterable[Any] | None = None,
    *,
    epochs: int = 1,
    optimizer: OptimizerSpec = None,
    lr: float = 1e-3,
    scheduler: SchedulerSpec = None,
    loss_fn: LossFn | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool | str | Path = False,
    log_every: int | None = 50,
    progress: bool = True,
    equivariance_inputs: Any = None,
    device: str | torch.device | None = None,
    max_steps: int | None = None,
    grad_clip: float | None = None,
    ddp_kwargs: Mapping[str, Any] | None = None,
    callbacks: Iterable[Any] = (),
    overwrite: bool = False,
    monitor: str | None = None,
    monitor_mode: str = "auto",
    accumulate_grad_batches: int = 1,
    precision: str | None = None,
) -> History:
    """Train ``model`` and return its :class:`History`; the same script runs on one process or under
    ``torchrun --nproc_per_node=N``.

    Args:
        model: a :class:`~symwrap.strategies.SymmetricModel` (its ``loss(model(x), y, x)`` terms are
            trained: ``total`` is optimised and every term is logged), or any ``nn.Module``
            (trained with ``loss_fn``, or mean squared error for floating-point targets and
            cross-entropy for integer targets). A ``torch.compile``-d model works too.
        train_loader: batches ``(x, y)``; ``x`` a tensor, a dict of tensors or a torch_geometric
            ``Batch`` (a ``Batch`` alone is taken as ``(batch, batch.y)``).
        val_loader: batches like ``train_loader``, evaluated after every epoch (``model.eval()``).
        epochs: the number of epochs of the whole run: resuming after 2 of ``epochs=4`` trains 2 more.
        optimizer: an optimizer over the model's parameters, a callable ``parameters -> optimizer``
            (``functools.partial(torch.optim.SGD, lr=0.1)``), or ``None`` for ``Adam(lr=lr)``.
        lr: the learning rate of the default optimizer.
        scheduler: a learning-rate scheduler of ``optimizer`` or a callable ``optimizer -> scheduler``.
            It is stepped after every optimizer step; a ``ReduceLROnPlateau`` after every epoch, with
            ``val_total`` (``train_total`` without validation).
        loss_fn: ``(pred, y) -> loss`` (a scalar tensor or a dict of named terms, with or without
            ``total``). It replaces the model's own ``loss``, auxiliary terms included.
        checkpoint_dir: where ``last.pt`` is written after every epoch (model, optimizer, scheduler,
            epoch, step, history and random number generator states; rank 0 writes it), with ``best.pt``
            (the weights of the epoch with the best ``monitor`` value, its epoch and record) and
            ``history.csv`` beside it. A directory that already holds a ``last.pt`` is refused unless
            ``resume`` or ``overwrite`` says what to do with it.
        resume: ``True``: continue from ``checkpoint_dir/last.pt``; ``"auto"``: the same when the file
            exists, else start afresh (for restarts under ``torchrun --max-restarts``); a path: that
            checkpoint. Continuing is exact at epoch boundaries: 2 epochs then 2 more give the weights of
            4 straight (same seeds, a loader whose order is set by its own seeded generator or sampler).
        log_every: record the running means in ``History.steps`` and the progress bar every this many
            optimizer steps (``None``: never).
        progress: show tqdm progress bars (only rank 0 ever shows them).
        equivariance_inputs: the input (or ``(x, y)`` batch) on which the equivariance error is measured
            after every epoch; by default the first validation batch (the first training batch of the
            epoch without a validation loader). Only for a :class:`~symwrap.strategies.SymmetricModel`.
        device: where to train; by default where the model's parameters are (under torchrun with a model
            on CUDA, the GPU ``LOCAL_RANK``). The model and every batch are moved there.
        max_steps: stop after this many optimizer steps in all (the epoch it ends in is recorded).
        grad_clip: clip the gradients' global norm to this value before each step.
        ddp_kwargs: keyword arguments of ``DistributedDataParallel`` (e.g.
            ``{"find_unused_parameters": True}`` for a model some of whose parameters get no gradient).
        callbacks: objects with some of the methods of :class:`~symwrap.training.Callback`
            (``on_fit_start``, ``on_step_end``, ``on_epoch_end``, ``on_fit_end``), called on rank 0 and the
            others alike; :class:`~symwrap.training.EarlyStopping`, :class:`~symwrap.training.CSVLogger` and
            :class:`~symwrap.training.TensorBoardLogger` are ready-made. One that sets
            ``state.should_stop`` ends the run after the epoch.
        overwrite: start afresh in a ``checkpoint_dir`` that already has a ``last.pt`` (replacing it).
        monitor: the epoch-record key ``best.pt`` and :attr:`History.best` follow; ``None``: ``val_total``
            with a validation loader, else ``train_total``.
        monitor_mode: ``"min"``, ``"max"`` or ``"auto"`` (max for keys with ``accuracy``, else min).
        accumulate_grad_batches: batches whose gradients are summed (each loss divided by this number) before
            one optimizer step; a last, partial group at the end of an epoch still makes a step.
        precision: ``None`` (float32), ``"bf16"`` (``torch.autocast`` with bfloat16, CPU or CUDA) or
            ``"fp16"`` (float16 autocast with a gradient scaler; CUDA only).

    Distributed training: when ``torch.distributed`` is initialised, or the process was started by
    ``torchrun`` (then the process group is initialised here: ``nccl`` for a model on CUDA, ``gloo``
    on CPU), the loss is computed under DistributedDataParallel and each loader is rebuilt with a
    DistributedSampler (``set_epoch`` is called every epoch). The loader's ``batch_size`` is the
    global batch: every rank takes ``batch_size // world_size`` samples per step, so N processes
    train the same model as one process. Validation shards the data without repeating samples, and
    every logged metric is averaged over all ranks. A process group started here stays up after
    ``fit`` returns (call ``torch.distributed.destroy_process_group()`` at the end of the script).
    Batch norm statistics stay per rank (convert with ``nn.SyncBatchNorm.convert_sync_batchnorm``).

    Returns:
        the :class:`History`: one record per epoch (``train_<term>``, ``val_<term>``, ``val_accuracy``,
        ``equivariance_error``, ``lr``, ``time``) and the step records.

    Raises:
        DataError: a loader that is not an iterable of batches, or that yields no batch (an empty data set,
            ``drop_last=True`` with fewer samples than a batch, a generator used up by the previous epoch);
            an empty one whose length says so is refused before anything trains.
        CheckpointError: resuming from a checkpoint that is missing, empty, truncated, corrupt, or written for
            another model (keys or shapes), another optimizer or another scheduler; checked before the model
            and the optimizer change.

    Example::

        model = symwrap.wrap(cnn, group="C4", strategy="remul", input="image", output="invariant")
        history = symwrap.fit(model, train_loader, val_loader, epochs=10, lr=1e-3, checkpoint_dir="runs/c4")
        print(history.last["val_accuracy"], history.last["equivariance_error"])
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be an nn.Module; got {type(model).__name__}")
    if isinstance(model, DistributedDataParallel):
        raise ConfigError("model is already wrapped in DistributedDataParallel; pass the bare model, fit wraps it "
                          "when torch.distributed is initialised")
    _check_positive_int("epochs", epochs)
    _check_positive_int("max_steps", max_steps, allow_none=True)
    _check_positive_int("log_every", log_every, allow_none=True)
    if grad_clip is not None and not (isinstance(grad_clip, (int, float)) and grad_clip > 0):
        raise ConfigError(f"grad_clip must be a positive number or None; got {grad_clip!r}")
    _check_positive_int("accumulate_grad_batches", accumulate_grad_batches)
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {sorted(PRECISIONS, key=str)}; got {precision!r}")
    callbacks = list(callbacks)
    resume_from = _resume_path(resume, checkpoint_dir)
    if resume_from is None and checkpoint_dir is not None and not overwrite:
        existing = Path(checkpoint_dir) / ckpt.CHECKPOINT_FILE
        if existing.is_file():
            raise CheckpointError(f"{existing} already exists: pass resume=True to continue that run, or "
                                  "overwrite=True to start afresh and replace it (or use another checkpoint_dir)")
    _check_loader(train_loader, "train_loader")
    if val_loader is not None:
        _check_loader(val_loader, "val_loader")

    # --- placement and processes
    device = torch.device(device) if device is not None else _model_device(model)
    context = distributed.setup(device)
    if context.enabled and device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"precision='fp16' needs a CUDA device (a gradient scaler); on {device.type} use "
                          "precision='bf16'")
    model.to(device)
    symmetric = symmetric_model(model)
    inner = unwrap_model(model)

    optimizer = _build_optimizer(optimizer, model, lr)
    scheduler = _build_scheduler(scheduler, optimizer)
    if context.enabled:
        train_loader = _distribute(train_loader, context, train=True, name="train_loader")
        if val_loader is not None:
            val_loader = _distribute(val_loader, context, train=False, name="val_loader")
    loaders = {"train": train_loader, "val": val_loader}

    # --- where we start
    history, start_epoch, step = History(), 0, 0
    if resume_from is not None:
        history, start_epoch, step = _resume(resume_from, inner, optimizer, scheduler, device, context, loaders)

    loss_module = LossModule(model, loss_fn)
    if context.enabled:
        ddp_args = dict(ddp_kwargs or {})
        if device.type == "cuda":
            ddp_args.setdefault("device_ids", [device.index])
        trainer: nn.Module = DistributedDataParallel(loss_module, **ddp_args)
    else:
        trainer = loss_module
    show = progress and context.is_main
    history.monitor = monitor if monitor is not None else ("val_total" if val_loader is not None else "train_total")
    history.monitor_mode = callbacks_lib.monitor_mode(history.monitor, monitor_mode)
    autocast = _autocast(precision, device)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    state = callbacks_lib.FitState(model=model, optimizer=optimizer, history=history, epoch=start_epoch, step=step)
    callbacks_lib.call(callbacks, "on_fit_start", state)

    for epoch in range(start_epoch, epochs):
        if max_steps is not None and step >= max_steps:
            break
        started = time.perf_counter()
        distributed.set_epoch(train_loader, epoch)
        model.train()
        epoch_meter, window = _Meter(), _Meter()
        first_x, batches = None, 0
        state.epoch = epoch + 1
        bar = progress_bar(train_loader, desc=f"epoch {epoch + 1}/{epochs}", disable=not show, unit="batch",
                           dynamic_ncols=True, total=_length(train_loader))
        pending = 0  # batches whose gradients wait for the next optimizer step
        for batch in bar:
            batches += 1
            x, y = split_batch(move_to(batch, device))
            if first_x is None:
                first_x = x
            if pending == 0:
                optimizer.zero_grad(set_to_none=True)
            with autocast:
                terms = trainer(x, y)
            _backward(terms["total"] / accumulate_grad_batches, scaler)
            pending += 1
            epoch_meter.add(terms)
            window.add(terms)
            if pending < accumulate_grad_batches:
                continue
            pending = 0
            step += 1
            apply_gradients(optimizer, grad_clip=grad_clip, parameters=model.parameters(), scheduler=scheduler,
                            scaler=scaler)
            state.step = step
            if log_every is not None and step % log_every == 0:
                record = {"epoch": epoch + 1, "step": step, "lr": _lr(optimizer),
                          **window.means(context, "train_")}
                history.steps.append(record)
                window = _Meter()
                bar.set_postfix(_short(record), refresh=False)
            elif step == 1 and show:  # the loss is in the bar from the first step on
                bar.set_postfix({"train_total": f"{float(terms['total'].detach()):.4g}"}, refresh=False)
            callbacks_lib.call(callbacks, "on_step_end", {k: v.detach() for k, v in terms.items()}, state)
            if max_steps is not None and step >= max_steps:
                break
        if pending:
            step += 1
            apply_gradients(optimizer, grad_clip=grad_clip, parameters=model.parameters(), scheduler=scheduler,
                            scaler=scaler)
            state.step = step
            callbacks_lib.call(callbacks, "on_step_end", {k: v.detach() for k, v in terms.items()}, state)
        bar.close()
        if not batches:
            raise _no_batches("train_loader", epoch, start_epoch)

        record: dict[str, float] = {"epoch": epoch + 1, "step": step, "lr": _lr(optimizer),
                                    **epoch_meter.means(context, "train_")}
        with _forked_rng(device):
            if val_loader is not None:
                with autocast:
                    val_record, first_val_x = _validate(loss_module, val_loader, device, context, show)
                if not val_record:
                    raise _no_batches("val_loader", epoch, start_epoch)
                record.update(val_record)
                first_x = first_val_x if first_val_x is not None else first_x
            if symmetric is not None:
                probe = first_x
                if equivariance_inputs is not None:
                    probe = equivariance_inputs
                    if isinstance(probe, (tuple, list)) and len(probe) == 2:
                        probe = probe[0]
                    probe = move_to(probe, device)
                record.update(_equivariance(symmetric, probe, device, context))
        record["time"] = time.perf_counter() - started
        if isinstance(scheduler, ReduceLROnPlateau):
            scheduler.step(record.get("val_total", record.get("train_total")))
        history.epochs.append(record)
        if context.is_main:
            logger.info("epoch %d/%d: %s", epoch + 1, epochs, _short(record))
            if show:
                bar.write(f"epoch {epoch + 1}/{epochs}: " + ", ".join(f"{k}={v}" for k, v in _short(record).items()))

        if checkpoint_dir is not None:
            rng_states = distributed.gather_objects(ckpt.capture_rng(device, inner, loaders), context)
            if context.is_main:
                ckpt.save_checkpoint(checkpoint_dir, {
                    "model": inner.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "optimizer_class": type(optimizer).__name__,
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "scheduler_class": type(scheduler).__name__ if scheduler is not None else None,
                    "epoch": epoch + 1,
                    "step": step,
                    "history": history.to_dict(),
                    "rng": rng_states,
                })
                _save_best(checkpoint_dir, inner, history, record, epoch, step)
                callbacks_lib.write_history_csv(history, Path(checkpoint_dir) / "history.csv")
            distributed.barrier(context)
        callbacks_lib.call(callbacks, "on_epoch_end", record, state)
        if state.should_stop:
            if context.is_main:
                logger.info("stopping after epoch %d of %d: a callback asked to", epoch + 1, epochs)
            break
    callbacks_lib.call(callbacks, "on_fit_end", state)
    return history


PRECISIONS = (None, "32", "bf16", "fp16")


def _autocast(precision: str | None, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context of ``precision`` (a no-op for float32)."""
    if precision in (None, "32"):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _backward(loss: torch.Tensor, scaler: Any) -> None:
    (scaler.scale(loss) if scaler is not None else loss).backward()


def _save_best(directory: str | Path, model: nn.Module, history: History, record: Mapping[str, float],
               epoch: int, step: int) -> None:
    """Write ``best.pt`` when this epoch's monitored value is the best so far."""
    key = history.monitor
    value = callbacks_lib.record_value(record, key, "fit(monitor=...)")
    earlier = [r[key] for r in history.epochs[:-1] if key in r and not math.isnan(r[key])]
    best = None if not earlier else (min(earlier) if history.monitor_mode == "min" else max(earlier))
    if callbacks_lib.improved(value, best, history.monitor_mode):
        torch.save({"model": model.state_dict(), "epoch": epoch + 1, "step": step, "monitor": key,
                    "value": value, "record": dict(record)}, Path(directory) / BEST_FILE)


BEST_FILE = "best.pt"


def _resume(path: Path, model: nn.Module, optimizer: Optimizer, scheduler: Any, device: torch.device,
            context: distributed.DistributedContext, loaders: dict[str, Any]) -> tuple[History, int, int]:
    """Restore a run from the checkpoint at ``path``: its history, epoch and step. Everything that can be
    checked is checked before the model or the optimizer changes (:class:`CheckpointError` otherwise)."""
    state = ckpt.load_checkpoint(path)
    model.train()  # checkpoints are written in training mode, and some state dicts depend on the mode (escnn)
    ckpt.check_model_state(state["model"], model, path)
    ckpt.check_optimizer_state(state, optimizer, path)
    ckpt.check_scheduler_state(state, scheduler, path)
    with ckpt.loading_errors(path, "history"):
        history = History.from_dict(state["history"])
        start_epoch, step = int(state["epoch"]), int(state["step"])
    with ckpt.loading_errors(path, "model"):
        model.load_state_dict(state["model"])
    with ckpt.loading_errors(path, "optimizer"):
        optimizer.load_state_dict(state["optimizer"])
    if (scheduler is None) != (state["scheduler"] is None) and context.is_main:
        logger.warning("resuming from %s %s a learning-rate scheduler; the run was checkpointed %s one", path,
                       "without" if scheduler is None else "with", "with" if scheduler is None else "without")
    if scheduler is not None and state["scheduler"] is not None:
        with ckpt.loading_errors(path, "scheduler"):
            scheduler.load_state_dict(state["scheduler"])
    with ckpt.loading_errors(path, "random number generator"):
        rng = state["rng"]
        ckpt.restore_rng(rng[context.rank] if len(rng) == context.world_size else rng[0], device, model, loaders)
    if context.is_main:
        logger.info("resumed from %s at epoch %d, step %d", path, start_epoch, step)
    return history, start_epoch, step


def _check_loader(loader: Any, name: str) -> None:
    """Raise :class:`DataError` for a loader that is not iterable or has no batch (known from its length)."""
    if isinstance(loader, (str, bytes, Mapping, torch.Tensor)) or not hasattr(loader, "__iter__"):
        raise DataError(f"{name} must be an iterable of batches (a DataLoader, a list of (x, y) pairs); got a "
                        f"{type(loader).__name__}")
    if _length(loader) != 0:
        return
    hint = "give it at least one sample"
    dataset = getattr(loader, "dataset", None)
    if isinstance(loader, torch.utils.data.DataLoader) and loader.drop_last and dataset is not None \
            and _length(dataset):
        hint = (f"its {_length(dataset)} sample(s) make no batch of {loader.batch_size} with drop_last=True; "
                "lower batch_size or set drop_last=False")
    raise DataError(f"{name} has no batches; {hint}. Nothing was trained")


def _no_batches(name: str, epoch: int, start_epoch: int) -> DataError:
    """The error for a loader that yielded nothing in ``epoch`` (0-based)."""
    if epoch > start_epoch:
        return DataError(f"{name} yielded no batch in epoch {epoch + 1} after yielding batches before: it is a "
                         "one-shot iterator (a generator, iter(...)) that one pass used up; pass a DataLoader or a "
                         "list of batches, which can be iterated once per epoch")
    return DataError(f"{name} yielded no batch in epoch {epoch + 1}; give it at least one sample. Nothing was "
                     "trained")


def _distribute(loader: Any, context: distributed.DistributedContext, *, train: bool, name: str) -> Any:
    if not isinstance(loader, torch.utils.data.DataLoader):
        raise ConfigError(f"under torch.distributed {name} must be a torch DataLoader (fit gives it a "
                          f"DistributedSampler); got {type(loader).__name__}")
    return distributed.distribute_loader(loader, context.rank, context.world_size, train=train, name=name)


def _length(loader: Any) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


def _lr(optimizer: Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def _short(record: Mapping[str, float]) -> dict[str, str]:
    """The record for a progress bar: metrics with 4 significant digits, no counters."""
    return {k: f"{v:.4g}" for k, v in record.items() if k not in ("epoch", "step", "time")}


def _validate(loss_module: LossModule, loader: Iterable[Any], device: torch.device,
              context: distributed.DistributedContext, show: bool) -> tuple[dict[str, float], Any]:
    """Mean validation terms (per sample), accuracy for integer labels, and the first batch's input."""

    model = loss_module.model
    was_training = model.training
    model.eval()
    meter, first_x = _Meter(), None
    try:
        with torch.no_grad():
            for batch in progress_bar(loader, desc="validate", disable=not show, leave=False, unit="batch",
                              dynamic_ncols=True, total=_length(loader)):
                x, y = split_batch(move_to(batch, device))
                if first_x is None:
                    first_x = x
                terms, pred = loss_module(x, y, return_prediction=True)
                n = _batch_size(y)
                meter.add(terms, weight=n)
                if is_classification(pred, y):
                    meter.add_value("accuracy", (pred.argmax(-1) == y).sum(), y.numel())
    finally:
        model.train(was_training)
    return meter.means(context, "val_"), first_x


def is_classification(pred: Any, y: Any) -> bool:
    return (isinstance(pred, torch.Tensor) and isinstance(y, torch.Tensor) and not torch.is_floating_point(y)
            and torch.is_floating_point(pred) and pred.ndim == y.ndim + 1)


def _equivariance(model: SymmetricModel, x: Any, device: torch.device,
                  context: distributed.DistributedContext) -> dict[str, float]:
    """``equivariance_error`` of the model in eval mode (per group when it has several), averaged over
    ranks; the same group elements every epoch (a fixed seed), so epochs compare."""

    values: dict[str, float] = {}
    was_training = model.training
    model.eval()
    try:
        if x is not None:
            # several groups (REMUL): each one, and the first one listed as the run's headline number
            first = next(iter(model.groups))
            values["equivariance_error"] = model.equivariance_error(x, generator=seeded_generator(device), group=first)
            if len(model.groups) > 1:
                for name in model.groups:
                    values[f"equivariance_error_{name}"] = model.equivariance_error(
                        x, generator=seeded_generator(device), group=name)
    finally:
        model.train(was_training)
    if not context.enabled:
        return values
    # every rank takes part in the reduction, even one that had no batch to measure on
    names = ["equivariance_error"]
    if len(model.groups) > 1:
        names += [f"equivariance_error_{name}" for name in model.groups]
    packed = torch.tensor([values.get(n, 0.0) for n in names] + [float(n in values) for n in names],
                          dtype=torch.float64, device=device)
    reduced = distributed.all_reduce_sum(packed, context)
    return {n: t / c for n, t, c in zip(names, reduced[:len(names)], reduced[len(names):]) if c}


def seeded_generator(device: torch.device, seed: int = 0) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator
