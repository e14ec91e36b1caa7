"""The optimizer-step loop every trainer shares (symwrap.steps)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from symwrap.errors import ConfigError, ShapeError
from symwrap.steps import cycle_batches, default_task_loss, optimizer_step, run_steps, split_batch


def test_split_batch_reads_pairs_and_graph_batches_and_inputs_alone_when_asked():
    x, y = torch.randn(2, 3), torch.tensor([0, 1])
    assert split_batch((x, y)) == (x, y) and split_batch([x, y]) == (x, y)

    class Graphs:
        def __init__(self):
            self.y = y

    graphs = Graphs()
    assert split_batch(graphs) == (graphs, y)
    with pytest.raises(ShapeError, match=r"a pair \(x, y\) .*got a tuple of length 3"):
        split_batch((x, y, y))
    with pytest.raises(ShapeError, match="got a Tensor"):
        split_batch(x)
    assert split_batch((x, y, y), require_target=False) == (x, y)
    assert split_batch(x, require_target=False) == (x, None)
    with pytest.raises(ConfigError, match="empty batch"):
        split_batch([], require_target=False)


def test_cycle_batches_restarts_the_loader():
    loader = [(torch.tensor([1.0]), torch.tensor([2.0])), (torch.tensor([3.0]),)]
    batches = cycle_batches(loader)
    seen = [next(batches) for _ in range(5)]
    assert [float(x) for x, _ in seen] == [1.0, 3.0, 1.0, 3.0, 1.0]
    assert seen[1][1] is None


def test_default_task_loss_picks_by_the_target_and_sums_fields():
    pred = torch.randn(4, 3)
    labels, values = torch.tensor([0, 2, 1, 1]), torch.randn(4, 3)
    torch.testing.assert_close(default_task_loss(pred, labels), F.cross_entropy(pred, labels))
    torch.testing.assert_close(default_task_loss(pred, values), F.mse_loss(pred, values))
    torch.testing.assert_close(default_task_loss(pred, values, "mse"), F.mse_loss(pred, values))
    both = default_task_loss({"a": pred, "b": pred}, {"a": labels, "b": values})
    torch.testing.assert_close(both, F.cross_entropy(pred, labels) + F.mse_loss(pred, values))


def test_optimizer_step_clips_then_steps_the_optimizer_and_the_scheduler():
    weight = nn.Parameter(torch.tensor([3.0, 4.0]))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    optimizer_step(optimizer, (weight ** 2).sum() / 2, grad_clip=1.0, scheduler=scheduler)
    # the gradient (3, 4) has norm 5: clipped to norm 1, (0.6, 0.8)
    torch.testing.assert_close(weight.detach(), torch.tensor([2.4, 3.2]))
    assert optimizer.param_groups[0]["lr"] == 0.5
    optimizer_step(optimizer, (weight ** 2).sum() / 2)  # no clip: the full gradient at lr 0.5
    torch.testing.assert_close(weight.detach(), torch.tensor([1.2, 1.6]))


def test_run_steps_numbers_the_steps_and_feeds_one_batch_each():
    weight = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    seen = []

    def step_loss(step, x, y):
        seen.append((step, float(x)))
        return {"total": ((weight - x) ** 2).sum()}

    after = []
    run_steps(step_loss, iter([(torch.tensor(1.0), None)] * 3), 3, optimizer, first_step=5,
              on_step=lambda step, terms: after.append(step))
    assert [s for s, _ in seen] == [6, 7, 8] and after == [6, 7, 8]
    assert float(weight) == pytest.approx(1 - 0.8 ** 3)
    with pytest.raises(ConfigError, match="steps must be an integer >= 0; got -1"):
        run_steps(step_loss, iter([]), -1, optimizer)
