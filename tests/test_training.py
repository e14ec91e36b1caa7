"""symwrap.training.fit: losses and metrics per epoch, checkpoints, DDP, torch.compile."""

import functools
import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import symwrap
from symwrap.errors import CheckpointError, ConfigError, DataError, ShapeError
from symwrap.training import CHECKPOINT_FILE, History, distribute_loader, fit
from symwrap.training.synthetic import build_loaders, build_model, synthetic_images

ROOT = Path(__file__).resolve().parents[1]


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def image_loaders(seed: int = 0, samples: int = 64, batch_size: int = 8):
    """A shuffled training loader whose order comes from its own seeded generator, and a validation loader."""
    train = synthetic_images(samples, seed=seed)
    val = synthetic_images(32, seed=seed + 1)
    return (DataLoader(train, batch_size=batch_size, shuffle=True, generator=generator(seed)),
            DataLoader(val, batch_size=batch_size))


def assert_same_weights(a: nn.Module, b: nn.Module, atol: float = 1e-6) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.allclose(sa[key].double(), sb[key].double(), atol=atol, rtol=0), key


def total_change(before: dict, model: nn.Module) -> float:
    return sum(float((model.state_dict()[k] - v).abs().sum()) for k, v in before.items())


# --- what fit trains and logs ------------------------------------------------------------------------------
def test_fit_on_a_wrapped_model_reduces_the_loss_and_logs_every_term():
    model = build_model("remul", "C4")
    train, val = image_loaders()
    history = fit(model, train, val, epochs=4, lr=1e-2, progress=False, log_every=4)

    assert len(history) == 4
    x, y = next(iter(val))
    terms = model.loss(model(x), y, x)
    assert set(terms) == {"task", "equivariance", "total"}
    for record in history.epochs:
        for name in terms:
            assert math.isfinite(record[f"train_{name}"]) and math.isfinite(record[f"val_{name}"])
        assert 0.0 <= record["val_accuracy"] <= 1.0
        assert record["equivariance_error"] >= 0.0
    assert [r["epoch"] for r in history.epochs] == [1, 2, 3, 4]
    assert history.last["step"] == 4 * len(train)
    assert history["train_total"][-1] < 0.7 * history["train_total"][0]
    # REMUL's equivariance term works: the error falls as it trains
    assert history["equivariance_error"][-1] < history["equivariance_error"][0]
    assert history["train_total"][0] == pytest.approx(history["train_task"][0] + history["train_equivariance"][0])
    # step records every log_every steps
    assert [r["step"] for r in history.steps] == list(range(4, 4 * len(train) + 1, 4))
    assert all("train_total" in r for r in history.steps)


def test_validation_metrics_are_the_per_sample_means_over_the_validation_set():
    model = build_model("averaging", "C4")
    train, _ = image_loaders()
    val_set = synthetic_images(30, seed=5)  # 30 = 4 batches of 8, the last one of 6
    history = fit(model, train, DataLoader(val_set, batch_size=8), epochs=1, progress=False)
    model.eval()
    with torch.no_grad():
        logits = model(val_set.tensors[0])
    labels = val_set.tensors[1]
    assert history.last["val_total"] == pytest.approx(float(nn.functional.cross_entropy(logits, labels)), rel=1e-5)
    assert history.last["val_accuracy"] == pytest.approx(float((logits.argmax(-1) == labels).double().mean()))
    # an exactly invariant strategy: round-off only
    assert history.last["equivariance_error"] < 1e-5


def test_validation_does_not_change_training():
    """Evaluation runs on forked random number generators: the same weights with or without it."""
    weights = []
    for with_val in (False, True):
        torch.manual_seed(0)
        model = build_model("remul", "C4")
        train, val = image_loaders()
        fit(model, train, val if with_val else None, epochs=2, progress=False)
        weights.append(model)
    assert_same_weights(*weights, atol=0)


def test_fit_plain_modules_with_the_default_losses():
    torch.manual_seed(0)
    x = torch.randn(48, 5, generator=generator(1))
    labels = (x[:, 0] > 0).long()
    classifier = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 2))
    loader = DataLoader(TensorDataset(x, labels), batch_size=8)
    history = fit(classifier, loader, loader, epochs=5, lr=1e-2, progress=False)
    assert set(history.last) == {"epoch", "step", "lr", "time", "train_total", "val_total", "val_accuracy"}
    with torch.no_grad():
        ce = float(nn.functional.cross_entropy(classifier(x), labels))
    assert history.last["val_total"] == pytest.approx(ce, rel=1e-5)
    assert history["train_total"][-1] < history["train_total"][0]

    targets = x[:, :2] * 2.0
    regressor = nn.Linear(5, 2)
    loader = DataLoader(TensorDataset(x, targets), batch_size=8)
    history = fit(regressor, loader, loader, epochs=1, progress=False)
    with torch.no_grad():
        mse = float(nn.functional.mse_loss(regressor(x), targets))
    assert history.last["val_total"] == pytest.approx(mse, rel=1e-5)
    assert "val_accuracy" not in history.last


def test_loss_fn_replaces_the_model_loss_and_may_return_named_terms():
    model = build_model("remul", "C4")
    train, _ = image_loaders(samples=16)

    def loss_fn(pred, y):
        return {"ce": nn.functional.cross_entropy(pred, y), "l2": pred.pow(2).mean() * 0.1}

    history = fit(model, train, epochs=1, loss_fn=loss_fn, progress=False)
    assert {"train_ce", "train_l2", "train_total"} <= set(history.last)
    assert "train_equivariance" not in history.last
    assert history.last["train_total"] == pytest.approx(history.last["train_ce"] + history.last["train_l2"])

    with pytest.raises(ShapeError, match="term 'bad' of shape"):
        fit(model, train, loss_fn=lambda pred, y: {"bad": pred}, progress=False)


class DictBackbone(nn.Module):
    """A point-cloud classifier that reads a dict {"pos": (B,N,3), "charge": (B,N)} and is not invariant."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 2))

    def forward(self, x):
        return self.net(torch.cat([x["pos"], x["charge"][..., None]], dim=-1)).mean(dim=1)


class DictDataset(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int) -> None:
        g = generator(seed)
        self.pos, self.charge = torch.randn(n, 6, 3, generator=g), torch.randn(n, 6, generator=g)
        self.y = (self.charge.mean(dim=1) > 0).long()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return {"pos": self.pos[i], "charge": self.charge[i]}, self.y[i]


def test_fit_with_dict_inputs():
    torch.manual_seed(0)
    model = symwrap.wrap(DictBackbone(), group="SO3", strategy="remul", input={"pos": "points", "charge": "scalars"},
                         output="invariant")
    train = DataLoader(DictDataset(64, 0), batch_size=16, shuffle=True, generator=generator(0))
    val = DataLoader(DictDataset(32, 1), batch_size=16)
    history = fit(model, train, val, epochs=6, lr=1e-2, progress=False)
    assert history["train_total"][-1] < 0.8 * history["train_total"][0]
    assert {"train_task", "train_equivariance", "val_accuracy", "equivariance_error"} <= set(history.last)
    assert history.last["val_accuracy"] > 0.8
    # the label depends on the charges only: the model learns to ignore the pose
    assert history["equivariance_error"][-1] < history["equivariance_error"][0]


def test_fit_with_torch_geometric_batches():
    torch_geometric = pytest.importorskip("torch_geometric")
    from torch_geometric.data import Data
    from torch_geometric.loader import DataLoader as GraphLoader

    g = generator(0)
    graphs = []
    for i in range(24):
        n = 3 + i % 4
        x = torch.randn(n, 3, generator=g)
        edges = torch.stack([torch.arange(n), (torch.arange(n) + 1) % n])
        graphs.append(Data(x=x, edge_index=edges, y=torch.tensor([float(x.sum() > 0)])))

    class Pool(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 1)

        def forward(self, batch):
            return torch_geometric.utils.scatter(self.lin(batch.x), batch.batch, dim=0, reduce="sum")[:, 0]

    model = Pool()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loader = GraphLoader(graphs, batch_size=6)
    history = fit(model, loader, loader, epochs=2, progress=False)
    assert math.isfinite(history.last["val_total"]) and total_change(before, model) > 0


# --- options ---------------------------------------------------------------------------------------
def test_max_steps_grad_clip_and_a_scheduler():
    model = build_model("averaging", "C4")
    train, _ = image_loaders()
    before = [p.detach().clone() for p in model.parameters()]
    clip, lr = 1e-3, 1.0
    history = fit(model, train, epochs=5, max_steps=3, grad_clip=clip,
                  optimizer=functools.partial(torch.optim.SGD, lr=lr),
                  scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5),
                  progress=False)
    assert history.last["step"] == 3 and len(history) == 1
    # three steps, each moving the weights by at most lr_t * clip in norm
    change = torch.cat([(p.detach() - b).reshape(-1) for p, b in zip(model.parameters(), before)]).norm()
    assert 0 < change <= clip * (1.0 + 0.5 + 0.25) + 1e-7
    assert history.last["lr"] == pytest.approx(lr * 0.5**3)


def test_progress_bars_only_when_asked(capsys):
    model = build_model("averaging", "C4")
    train, val = image_loaders(samples=16)
    fit(model, train, val, progress=False)
    assert "epoch 1/1" not in capsys.readouterr().err
    fit(model, train, val, progress=True)
    assert "epoch 1/1" in capsys.readouterr().err


def test_errors_say_what_was_given_and_expected(tmp_path):
    model = build_model("averaging", "C4")
    train, _ = image_loaders(samples=16)
    with pytest.raises(ConfigError, match="epochs must be a positive integer; got 0"):
        fit(model, train, epochs=0)
    with pytest.raises(ConfigError, match="grad_clip"):
        fit(model, train, grad_clip=-1.0)
    with pytest.raises(ConfigError, match="needs checkpoint_dir"):
        fit(model, train, resume=True)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        fit(model, train, resume=True, checkpoint_dir=tmp_path)
    other = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="different optimizer"):
        fit(model, train, scheduler=torch.optim.lr_scheduler.StepLR(other, 1))
    with pytest.raises(ShapeError, match=r"pair \(x, y\).*tuple of length 3"):
        fit(model, [(torch.zeros(2, 1, 8, 8),) * 3], progress=False)
    with pytest.raises(ShapeError, match="Pass loss_fn"):
        fit(nn.Identity(), [({"a": torch.zeros(2)}, torch.zeros(2))], optimizer=torch.optim.SGD(
            [nn.Parameter(torch.zeros(1))], lr=0.1), progress=False)


def test_history_conveniences_and_json(tmp_path):
    history = History(epochs=[{"epoch": 1, "train_total": 2.0, "val_total": 1.0},
                              {"epoch": 2, "train_total": 1.0, "val_total": 1.5}])
    assert history.last["epoch"] == 2
    assert history.best["epoch"] == 1  # val_total is monitored when present
    assert history.best_by("train_total")["epoch"] == 2
    assert history.best_by("val_total", mode="max")["epoch"] == 2
    assert history["val_total"] == [1.0, 1.5]
    with pytest.raises(KeyError, match="no epoch record has 'nope'"):
        history["nope"]
    assert History().last is None and History().best is None
    path = history.save(tmp_path / "h.json")
    assert History.load(path) == history
    assert json.loads(path.read_text())["epochs"][1]["val_total"] == 1.5


# --- checkpoints -------------------------------------------------------------------------------------------
def test_resume_gives_the_weights_of_a_straight_run(tmp_path):
    def run(epochs, checkpoint_dir=None, resume=False):
        torch.manual_seed(0)  # REMUL samples its group elements from the global generator
        model = build_model("remul", "C4")
        train, val = image_loaders()
        history = fit(model, train, val, epochs=epochs, lr=1e-2, checkpoint_dir=checkpoint_dir, resume=resume,
                      scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5),
                      progress=False)
        return model, history

    straight, straight_history = run(4)
    run(2, checkpoint_dir=tmp_path)
    state = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert {"model", "optimizer", "scheduler", "epoch", "step", "history", "rng"} <= set(state)
    assert state["epoch"] == 2 and state["step"] == 16 and len(state["history"]["epochs"]) == 2
    resumed, resumed_history = run(4, checkpoint_dir=tmp_path, resume=True)
    assert_same_weights(straight, resumed, atol=1e-6)
    assert len(resumed_history) == 4
    for a, b in zip(straight_history.epochs, resumed_history.epochs):
        assert a["train_total"] == pytest.approx(b["train_total"], rel=1e-5)
        assert a["lr"] == b["lr"]
    assert torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)["epoch"] == 4
    # a wrong order, to check the comparison can fail: 2 epochs + 2 epochs without resuming
    restarted, _ = run(2)
    fit(restarted, *image_loaders(), epochs=2, lr=1e-2, progress=False)
    with pytest.raises(AssertionError):
        assert_same_weights(straight, restarted, atol=1e-6)


def test_resume_auto_starts_afresh_without_a_checkpoint(tmp_path):
    model = build_model("averaging", "C4")
    train, _ = image_loaders(samples=16)
    history = fit(model, train, epochs=1, checkpoint_dir=tmp_path / "run", resume="auto", progress=False)
    assert len(history) == 1 and (tmp_path / "run" / CHECKPOINT_FILE).is_file()
    # a finished run: resuming it trains nothing more
    again = fit(model, train, epochs=1, checkpoint_dir=tmp_path / "run", resume="auto", progress=False)
    assert again.epochs == history.epochs


# --- data that yields nothing ---------------------------------------------------------------------------
def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in model.state_dict().items()}


def unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(model.state_dict()[key], value) for key, value in before.items())


EMPTY_IMAGES = TensorDataset(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long))


@pytest.mark.parametrize(("train", "val", "message"), [
    (DataLoader(EMPTY_IMAGES, batch_size=4), None, "train_loader has no batches; give it at least one sample"),
    ([], None, "train_loader has no batches"),
    (DataLoader(synthetic_images(3), batch_size=4, drop_last=True), None,
     "its 3 sample.s. make no batch of 4 with drop_last=True"),
    (iter([]), None, "train_loader yielded no batch in epoch 1"),
    (DataLoader(synthetic_images(8), batch_size=4), DataLoader(EMPTY_IMAGES, batch_size=4),
     "val_loader has no batches"),
    (synthetic_images(8), None, "train_loader must be an iterable of batches .* got a TensorDataset"),
    (None, None, "train_loader must be an iterable of batches .* got a NoneType"),
], ids=["empty-dataset", "empty-list", "drop-last", "empty-iterator", "empty-val", "a-dataset", "none"])
def test_loaders_that_yield_nothing_are_refused_before_anything_trains(train, val, message):
    model = build_model("averaging", "C4")
    before = snapshot(model)
    with pytest.raises(DataError, match=message):
        fit(model, train, val, epochs=2, progress=False)
    assert unchanged(model, before)


def test_a_one_shot_iterator_used_up_after_one_epoch_is_named():
    model = build_model("averaging", "C4")
    batches = (batch for batch in DataLoader(synthetic_images(8), batch_size=4))
    with pytest.raises(DataError, match="yielded no batch in epoch 2 after yielding batches before: .*one-shot"):
        fit(model, batches, epochs=2, progress=False)


def test_a_validation_iterator_used_up_after_one_epoch_is_named():
    model = build_model("averaging", "C4")
    val = iter(DataLoader(synthetic_images(4), batch_size=4))
    with pytest.raises(DataError, match="val_loader yielded no batch in epoch 2"):
        fit(model, DataLoader(synthetic_images(8), batch_size=4), val, epochs=2, progress=False)


# --- checkpoints that cannot be resumed from --------------------------------------------------------------
def checkpointed(tmp_path: Path, **kwargs) -> Path:
    model = build_model("remul", "C4")
    train, _ = image_loaders(samples=16)
    fit(model, train, epochs=1, checkpoint_dir=tmp_path, progress=False, **kwargs)
    return tmp_path / CHECKPOINT_FILE


def rewrite(path: Path, change) -> None:
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


def other_architecture(tmp_path: Path) -> None:
    other = symwrap.wrap(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 64, 2)),
                         group="C4", strategy="remul", input="image")
    fit(other, image_loaders(samples=16)[0], epochs=1, checkpoint_dir=tmp_path, progress=False, overwrite=True)


BAD_CHECKPOINTS = {
    "zero bytes": (lambda p: p.write_bytes(b""), r"is empty \(0 bytes\)"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "cannot be read as a training"),
    "random bytes": (lambda p: p.write_bytes(bytes(range(256)) * 8), "cannot be read as a training checkpoint"),
    "a pickle of objects": (lambda p: torch.save({"model": nn.Linear(1, 1)}, p), "cannot be read as a training"),
    "a tensor": (lambda p: torch.save(torch.ones(3), p), "not a symwrap training checkpoint .* Tensor"),
    "a plain state dict": (lambda p: torch.save(nn.Linear(1, 1).state_dict(), p),
                           "not a symwrap training checkpoint"),
    "another format": (lambda p: rewrite(p, lambda s: s.update(format_version=99)), "has checkpoint format 99"),
    "lacks a part": (lambda p: rewrite(p, lambda s: s.pop("rng")), r"lacks \['rng'\]"),
    "another model": (lambda p: other_architecture(p.parent),
                      r"was written for another model than .*key\(s\) of another shape: backbone.0.weight"),
    "another optimizer": (lambda p: rewrite(p, lambda s: s.update(optimizer_class="SGD")),
                          "was written with the optimizer SGD; this run trains with Adam"),
    "another optimizer of an older checkpoint": (
        lambda p: rewrite(p, lambda s: (s.pop("optimizer_class"), s["optimizer"]["param_groups"][0].update(
            nesterov=False, dampening=0))),
        r"another optimizer .hyper-parameters \['dampening', 'nesterov'\]"),
    "other trainable parameters": (
        lambda p: rewrite(p, lambda s: s["optimizer"]["param_groups"][0].update(
            params=s["optimizer"]["param_groups"][0]["params"][:2])),
        r"parameter groups of sizes \[2\]"),
    "a corrupt history": (lambda p: rewrite(p, lambda s: s.update(history=[1, 2])), "its history state cannot be"),
    "a corrupt rng state": (lambda p: rewrite(p, lambda s: s.update(rng=[{"torch": torch.zeros(3)}])),
                            "its random number generator state cannot be restored"),
}


@pytest.mark.parametrize("case", list(BAD_CHECKPOINTS))
def test_resuming_from_a_bad_checkpoint_names_the_file_and_leaves_the_model_untouched(tmp_path, case):
    path = checkpointed(tmp_path)
    damage, message = BAD_CHECKPOINTS[case]
    damage(path)
    model = build_model("remul", "C4", seed=3)
    before = snapshot(model)
    with pytest.raises(CheckpointError, match=message) as error:
        fit(model, image_loaders(samples=16)[0], epochs=2, checkpoint_dir=tmp_path, resume=True, progress=False)
    assert str(path) in str(error.value)
    if case not in ("a corrupt history", "a corrupt rng state"):  # found before anything is loaded
        assert unchanged(model, before)


def test_resuming_with_another_scheduler_is_refused(tmp_path):
    step = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1)
    checkpointed(tmp_path, scheduler=step)
    model = build_model("remul", "C4")
    with pytest.raises(CheckpointError, match="written with the scheduler StepLR; this run has ExponentialLR"):
        fit(model, image_loaders(samples=16)[0], epochs=2, checkpoint_dir=tmp_path, resume=True, progress=False,
            scheduler=functools.partial(torch.optim.lr_scheduler.ExponentialLR, gamma=0.5))


def test_resume_checks_pass_for_the_run_that_wrote_the_checkpoint(tmp_path):
    """The checks refuse foreign checkpoints, not the run's own: it resumes and trains the missing epoch."""
    checkpointed(tmp_path)
    model = build_model("remul", "C4")
    history = fit(model, image_loaders(samples=16)[0], epochs=2, checkpoint_dir=tmp_path, resume=True,
                  progress=False)
    assert [record["epoch"] for record in history.epochs] == [1, 2]


# --- distributed -----------------------------------------------------------------------------------------
def test_distribute_loader_splits_every_global_batch_between_ranks():
    dataset = TensorDataset(torch.arange(20))
    for loader in (DataLoader(dataset, batch_size=4),
                   DataLoader(dataset, batch_size=4, sampler=DistributedSampler(dataset, 1, 0, seed=3))):
        single = [b[0].tolist() for b in loader]
        ranks = [distribute_loader(loader, rank, 2) for rank in (0, 1)]
        assert all(r.batch_size == 2 and isinstance(r.sampler, DistributedSampler) for r in ranks)
        per_rank = [[b[0].tolist() for b in r] for r in ranks]
        assert [sorted(a + b) for a, b in zip(*per_rank)] == [sorted(b) for b in single]
    val = [distribute_loader(DataLoader(dataset, batch_size=4), rank, 3, train=False) for rank in range(3)]
    seen = sorted(i for r in val for b in r for i in b[0].tolist())
    assert seen == list(range(20))  # every sample once, none repeated
    with pytest.raises(ConfigError, match="batch_size=5, which 2 processes cannot split"):
        distribute_loader(DataLoader(dataset, batch_size=5), 0, 2)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(tmp_path: Path, *args: str, attempts: int = 2) -> dict:
    """``torchrun --nproc_per_node=2 -m symwrap.training ARGS`` on localhost with gloo; its JSON summary."""
    if shutil.which("torchrun") is None and not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    if Path("/sys/class/net/lo").exists():
        env["GLOO_SOCKET_IFNAME"] = "lo"
    for attempt in range(attempts):
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
                   f"--master_port={free_port()}", "-m", "symwrap.training", "--no-progress", *args]
        done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        if done.returncode == 0:
            return json.loads(done.stdout.strip().splitlines()[-1])
        if "address already in use" not in done.stderr.lower() or attempt == attempts - 1:
            raise AssertionError(f"torchrun failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-4000:]}")
    raise AssertionError("unreachable")


def test_two_gloo_processes_train_the_weights_of_one_process(tmp_path):
    """2 processes x 4 samples per step = 1 process x 8: the same weights after 2 shuffled epochs."""
    summary = torchrun(tmp_path, "--strategy", "averaging", "--epochs", "2", "--output", "ddp")
    assert summary["world_size"] == 2 and summary["rank_weight_spread"] == 0.0

    torch.manual_seed(0)
    model = build_model("averaging", "C4")
    train, val = build_loaders(64, batch_size=8, seed=0)
    history = fit(model, train, val, epochs=2, lr=1e-2, progress=False)

    ddp_weights = load_file(str(tmp_path / "ddp" / "model.safetensors"))
    single = model.state_dict()
    assert ddp_weights.keys() == single.keys()
    initial = build_model("averaging", "C4").state_dict()
    for key, value in ddp_weights.items():
        assert torch.allclose(value, single[key], atol=1e-5, rtol=0), key
        assert not torch.allclose(value, initial[key], atol=1e-3), key  # it did train
    ddp_history = History.load(tmp_path / "ddp" / "history.json")
    for name in ("train_total", "val_total", "val_accuracy"):
        assert ddp_history[name] == pytest.approx(history[name], rel=1e-5)


def test_ddp_averages_the_gradients_of_strategy_loss_terms(tmp_path):
    """REMUL's equivariance term calls the backbone on transformed copies: inside the DDP forward, so the
    ranks (which see different samples) stay identical."""
    summary = torchrun(tmp_path, "--strategy", "remul", "--epochs", "1", "--max-steps", "4",
                       "--checkpoint-dir", "ckpt")
    assert summary["world_size"] == 2 and summary["rank_weight_spread"] == 0.0
    assert summary["last"]["step"] == 4
    assert {"train_task", "train_equivariance", "val_accuracy", "equivariance_error"} <= set(summary["last"])
    state = torch.load(tmp_path / "ckpt" / CHECKPOINT_FILE, weights_only=True)
    assert len(state["rng"]) == 2 and state["step"] == 4


# --- torch.compile -----------------------------------------------------------------------------------------
def compile_or_skip(model: nn.Module, backend: str) -> nn.Module:
    if not hasattr(torch, "compile"):
        pytest.skip("torch.compile is not available")
    torch._dynamo.reset()
    return torch.compile(model, backend=backend)


@pytest.mark.parametrize("strategy", ["averaging", "remul"])
def test_compiled_wrapped_models_match_eager(strategy):
    # backend="aot_eager" traces forward and backward through dynamo and AOTAutograd without generating
    # code; inductor also works on this machine (it needs a C compiler) but compiles for ~30 s on 2 cores:
    # see the slow test below.
    model = build_model(strategy, "C4")
    x = torch.randn(6, 1, 8, 8, generator=generator(2))
    compiled = compile_or_skip(model, "aot_eager")
    assert torch.allclose(compiled(x), model(x), atol=1e-6)

    train, _ = image_loaders(samples=16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    history = fit(compiled, train, epochs=1, progress=False, equivariance_inputs=x)
    assert total_change(before, model) > 0 and "equivariance_error" in history.last
    model.eval()
    assert torch.allclose(compiled(x), model(x), atol=1e-6)


@pytest.mark.slow
def test_inductor_compiled_averaging_matches_eager():
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("inductor needs a C compiler")
    model = build_model("averaging", "C4").eval()
    x = torch.randn(6, 1, 8, 8, generator=generator(2))
    compiled = compile_or_skip(model, "inductor")
    assert torch.allclose(compiled(x), model(x), atol=1e-5)
    rotated = torch.rot90(x, 1, dims=(2, 3))
    assert torch.allclose(compiled(rotated), compiled(x), atol=1e-5)
