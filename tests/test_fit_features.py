"""symwrap.fit beyond the plain loop: best.pt, refusing to overwrite a run, callbacks (early stopping, CSV and
TensorBoard loggers), gradient accumulation, mixed precision, an iterable History, the loss shown from step 1."""

import csv
import functools
import importlib.util
import io
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from symwrap.errors import CheckpointError, ConfigError
from symwrap.training import (
    Callback,
    CSVLogger,
    EarlyStopping,
    FitState,
    History,
    TensorBoardLogger,
    fit,
)
from symwrap.training.synthetic import build_model, synthetic_images


def loaders(samples: int = 32, batch_size: int = 8, seed: int = 0):
    train = DataLoader(synthetic_images(samples, seed=seed), batch_size=batch_size, shuffle=True,
                       generator=torch.Generator().manual_seed(seed))
    val = DataLoader(synthetic_images(16, seed=seed + 1), batch_size=batch_size)
    return train, val


def regression(samples: int = 32, batch_size: int = 8) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(samples, 5, generator=generator)
    y = x @ torch.randn(5, 2, generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def linear(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(5, 2)


# --- History ------------------------------------------------------------------------------------------------
def test_history_iterates_indexes_and_slices_like_its_epoch_records():
    history = History(epochs=[{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.0}, {"epoch": 3}])
    assert list(history) == history.epochs
    assert [record["epoch"] for record in history] == [1, 2, 3]
    assert history[0] == {"epoch": 1, "loss": 2.0} and history[-1] == {"epoch": 3}
    assert history[1:] == history.epochs[1:]
    values = history["loss"]
    assert values[:2] == [2.0, 1.0] and math.isnan(values[2])
    with pytest.raises(TypeError, match="got float"):
        history[1.0]
    with pytest.raises(KeyError, match="no epoch record has 'accuracy'"):
        history["accuracy"]


def test_history_best_follows_the_monitor_mode_and_round_trips():
    history = History(epochs=[{"epoch": 1, "acc": 0.5}, {"epoch": 2, "acc": 0.9}, {"epoch": 3, "acc": 0.7}],
                      monitor="acc", monitor_mode="max")
    assert history.best["epoch"] == 2
    assert History.from_dict(history.to_dict()) == history
    assert History.from_dict({"epochs": [{"epoch": 1, "acc": 1.0}], "monitor": "acc"}).monitor_mode == "min"


# --- checkpoints: best.pt, history.csv, no silent overwrite ------------------------------------------------------
def test_best_pt_holds_the_weights_of_the_epoch_with_the_best_monitored_value(tmp_path):
    class Snapshots(Callback):
        def __init__(self):
            self.weights = {}

        def on_epoch_end(self, record, state):
            self.weights[state.epoch] = {k: v.clone() for k, v in state.model.state_dict().items()}

    model = build_model("remul", "C4")
    train, val = loaders()
    snapshots = Snapshots()
    history = fit(model, train, val, epochs=4, lr=3e-2, progress=False, checkpoint_dir=tmp_path,
                  monitor="val_accuracy", callbacks=[snapshots])
    accuracies = history["val_accuracy"]
    best_epoch = 1 + max(range(4), key=lambda i: (accuracies[i], -i))  # the first epoch with the highest accuracy
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["epoch"] == best_epoch and best["monitor"] == "val_accuracy"
    assert best["value"] == pytest.approx(max(accuracies))
    for key, value in best["model"].items():
        assert torch.equal(value, snapshots.weights[best_epoch][key]), key
    assert history.monitor == "val_accuracy" and history.monitor_mode == "max"
    assert history.best["epoch"] == best_epoch

    with open(tmp_path / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert [float(r["val_accuracy"]) for r in rows] == pytest.approx(accuracies)


def test_a_monitor_the_records_lack_is_refused_with_the_keys_they_have(tmp_path):
    with pytest.raises(ConfigError, match="monitors 'val_accuracy'.*train_total"):
        fit(linear(), regression(), epochs=1, progress=False, checkpoint_dir=tmp_path, monitor="val_accuracy")


def test_an_existing_run_is_not_overwritten_unless_asked(tmp_path):
    fit(linear(), regression(), epochs=1, progress=False, checkpoint_dir=tmp_path)
    first = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(CheckpointError, match="last.pt already exists: pass resume=True .* overwrite=True"):
        fit(linear(1), regression(), epochs=1, progress=False, checkpoint_dir=tmp_path)
    assert (tmp_path / "last.pt").read_bytes() == first
    fit(linear(1), regression(), epochs=1, progress=False, checkpoint_dir=tmp_path, overwrite=True)
    assert (tmp_path / "last.pt").read_bytes() != first
    history = fit(linear(1), regression(), epochs=2, progress=False, checkpoint_dir=tmp_path, resume=True)
    assert [r["epoch"] for r in history] == [1, 2]


# --- callbacks ---------------------------------------------------------------------------------------------------
class Counter(Callback):
    def __init__(self):
        self.calls = []

    def on_fit_start(self, state):
        self.calls.append(("start", state.epoch, state.step))

    def on_step_end(self, terms, state):
        assert not terms["total"].requires_grad
        self.calls.append(("step", state.epoch, state.step))

    def on_epoch_end(self, record, state):
        assert record is state.history.epochs[-1]
        self.calls.append(("epoch", state.epoch, state.step))

    def on_fit_end(self, state):
        self.calls.append(("end", state.epoch, state.step))


def test_callbacks_are_called_after_every_step_and_epoch_with_the_counters():
    counter = Counter()
    fit(linear(), regression(samples=24), epochs=2, progress=False, callbacks=[counter])
    steps = [("step", 1, 1), ("step", 1, 2), ("step", 1, 3), ("epoch", 1, 3),
             ("step", 2, 4), ("step", 2, 5), ("step", 2, 6), ("epoch", 2, 6)]
    assert counter.calls == [("start", 0, 0), *steps, ("end", 2, 6)]


def test_a_plain_object_with_some_of_the_methods_is_a_callback():
    class OnlyEpochs:
        epochs = 0

        def on_epoch_end(self, record, state: FitState):
            self.epochs += 1

    callback = OnlyEpochs()
    fit(linear(), regression(), epochs=3, progress=False, callbacks=[callback])
    assert callback.epochs == 3


def test_early_stopping_ends_the_run_once_the_monitor_stops_improving():
    stopper = EarlyStopping("train_total", patience=2)
    # lr 0: the loss never improves after the first epoch, so epochs 2 and 3 are the two bad ones
    frozen = functools.partial(torch.optim.SGD, lr=0.0)
    history = fit(linear(), regression(), epochs=20, optimizer=frozen, progress=False, callbacks=[stopper])
    assert len(history) == 3 and stopper.stopped_epoch == 3
    improving = EarlyStopping("train_total", patience=2)
    history = fit(linear(), regression(), epochs=5, lr=0.05, progress=False, callbacks=[improving])
    assert len(history) == 5 and improving.stopped_epoch is None


def test_early_stopping_checks_its_arguments_and_monitor():
    assert EarlyStopping("val_accuracy").mode == "max" and EarlyStopping("val_total").mode == "min"
    with pytest.raises(ConfigError, match="patience must be an integer >= 1; got 0"):
        EarlyStopping(patience=0)
    with pytest.raises(ConfigError, match="mode must be 'auto', 'min' or 'max'; got 'up'"):
        EarlyStopping(mode="up")
    with pytest.raises(ConfigError, match="EarlyStopping monitors 'val_total'.*'train_total'"):
        fit(linear(), regression(), epochs=2, progress=False, callbacks=[EarlyStopping()])


def test_csv_logger_writes_every_epoch_record(tmp_path):
    history = fit(linear(), regression(), epochs=3, progress=False, callbacks=[CSVLogger(tmp_path / "log.csv")])
    with open(tmp_path / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["train_total"]) for r in rows] == pytest.approx(history["train_total"])


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard is not installed")
def test_tensorboard_logger_writes_an_event_file(tmp_path):
    fit(linear(), regression(), epochs=2, progress=False, callbacks=[TensorBoardLogger(tmp_path, log_every=1)])
    assert list(tmp_path.glob("events.out.tfevents.*"))


# --- how a step is taken ---------------------------------------------------------------------------------------
def test_accumulating_two_half_batches_takes_the_same_step_as_one_full_batch():
    whole, halves = linear(), linear()
    history_whole = fit(whole, regression(batch_size=16), epochs=2, lr=0.05, progress=False)
    history_halves = fit(halves, regression(batch_size=8), epochs=2, lr=0.05, progress=False,
                         accumulate_grad_batches=2)
    assert history_whole.last["step"] == history_halves.last["step"] == 4
    for a, b in zip(whole.parameters(), halves.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_a_partial_accumulation_group_at_the_end_of_an_epoch_still_steps():
    history = fit(linear(), regression(samples=24, batch_size=8), epochs=2, progress=False,
                  accumulate_grad_batches=2)
    assert history.last["step"] == 4  # 3 batches an epoch: one full group of 2 and one of 1


def test_bf16_autocast_trains_on_the_cpu_and_fp16_asks_for_cuda():
    model = build_model("remul", "C4")
    train, val = loaders()
    history = fit(model, train, val, epochs=2, lr=1e-2, progress=False, precision="bf16")
    assert all(math.isfinite(v) for v in history["train_total"])
    assert history["train_total"][-1] < history["train_total"][0]
    with pytest.raises(ConfigError, match="precision='fp16' needs a CUDA device"):
        fit(linear(), regression(), progress=False, precision="fp16")
    with pytest.raises(ConfigError, match="precision must be one of .*'bf16'.*got 'half'"):
        fit(linear(), regression(), progress=False, precision="half")
    with pytest.raises(ConfigError, match="accumulate_grad_batches"):
        fit(linear(), regression(), progress=False, accumulate_grad_batches=0)


def test_the_progress_bar_shows_the_loss_from_the_first_step(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    fit(linear(), regression(samples=8), epochs=1, progress=True, log_every=None)
    assert "train_total=" in stream.getvalue()
