"""symwrap.losses: joining batches into one model call and splitting the outputs back."""

import torch

from symwrap.losses import concat_batches, concatenable, split_outputs


def test_concatenable_accepts_tensors_and_dicts_of_tensors_only():
    t = torch.zeros(2, 3)
    assert concatenable(t)
    assert concatenable({"pos": t, "vel": t})
    assert not concatenable({"pos": t, "n": 3})
    assert not concatenable([t, t])  # a list is not one batch
    assert not concatenable((t,))


def test_concat_batches_joins_one_or_several_batches_and_split_outputs_undoes_it():
    a, b = torch.arange(6.0).reshape(2, 3), torch.arange(6.0, 15.0).reshape(3, 3)
    assert torch.equal(concat_batches([a]), a)
    assert torch.equal(concat_batches([a, b]), torch.cat([a, b]))
    joined = concat_batches([{"x": a}])
    assert list(joined) == ["x"] and torch.equal(joined["x"], a)
    joined = concat_batches([{"x": a, "y": a + 1}, {"x": b, "y": b + 1}])
    assert torch.equal(joined["x"], torch.cat([a, b])) and torch.equal(joined["y"], torch.cat([a, b]) + 1)
    parts = split_outputs(joined, [2, 3])
    assert torch.equal(parts[0]["x"], a) and torch.equal(parts[1]["y"], b + 1)
    assert [p.shape[0] for p in split_outputs(torch.cat([a, b]), [2, 3])] == [2, 3]
