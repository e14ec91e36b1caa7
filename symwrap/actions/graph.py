"""Groups acting on torch_geometric graphs (``Data`` or ``Batch``).

Node permutations move node ``i`` of a graph to position ``p[i]``: every node-level
attribute is reordered and ``edge_index`` relabelled. Rotations and translations act
on the position fields (``pos`` by default); vector fields (velocities) are only
rotated. One group element acts on each graph of a batch; permutation elements
are (B, N_max) rows that permute the first ``n_b`` positions of graph ``b`` (the
group is bound to the batch's sizes by :meth:`GraphAction.bind`).
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ActionError, IncompatibleGroupError, MissingDependencyError
from .base import Action


def _pyg():
    try:
        import torch_geometric.data as pyg_data
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("torch_geometric", "pyg", "the 'graph' action") from error
    return pyg_data


_STRUCTURAL_KEYS = {"edge_index", "batch", "ptr"}


class GraphAction(Action):
    """PyG graphs: nodes permuted, ``edge_index`` relabelled, positions rotated and translated."""

    name = "graph"
    layout = "a torch_geometric Data or Batch"

    def __init__(self, point_fields: tuple[str, ...] = ("pos",), vector_fields: tuple[str, ...] = ()) -> None:
        self.point_fields = tuple(point_fields)
        self.vector_fields = tuple(vector_fields)

    def check_group(self, group):
        if group.has_linear and group.dim not in (2, 3):
            raise IncompatibleGroupError(f"graph positions are 2-D or 3-D; {group.name} acts on R^{group.dim}")

    def validate(self, x, group=None, *, check_finite=False):
        pyg_data = _pyg()
        if not isinstance(x, pyg_data.Data):
            raise ActionError(f"'graph' data must be a torch_geometric Data or Batch; got {type(x).__name__}")
        if group is not None and (group.has_linear or group.has_translation):
            for key in self.point_fields + self.vector_fields:
                value = getattr(x, key, None)
                if value is None:
                    raise ActionError(
                        f"{group.name} moves the graph's {key!r} field, but the graph has none; "
                        f"set data.{key} (num_nodes, {group.dim}) or use a permutation group"
                    )
                if value.ndim != 2 or value.shape[-1] != group.dim:
                    raise ActionError(f"graph field {key!r} must be (num_nodes, {group.dim}); got {tuple(value.shape)}")
        if check_finite:
            for key in x.keys():
                value = x[key]
                if isinstance(value, torch.Tensor):
                    self._require_finite(value)

    # --- batching ---------------------------------------------------------------------
    def batch_size(self, x):
        return int(getattr(x, "num_graphs", 1) or 1)

    def repeat(self, x, k):
        pyg_data = _pyg()
        graphs = x.to_data_list() if isinstance(x, pyg_data.Batch) else [x]
        return pyg_data.Batch.from_data_list(graphs * k)

    def set_size(self, x):
        counts = self._counts(x)
        return int(counts.max()), counts

    def _counts(self, x) -> torch.Tensor:
        batch = getattr(x, "batch", None)
        if batch is None:
            return torch.tensor([x.num_nodes])
        return torch.bincount(batch, minlength=self.batch_size(x))

    def probe(self, x):
        for key in self.point_fields + ("x",):
            value = getattr(x, key, None)
            if isinstance(value, torch.Tensor) and torch.is_floating_point(value):
                return value
        return x.edge_index

    def members(self, x):
        """Node features ``x`` (ones when the graph has none), the dense adjacency and the mask of real
        nodes, padded to the batch's largest graph."""
        from torch_geometric.utils import to_dense_adj, to_dense_batch

        batch = x.batch if getattr(x, "batch", None) is not None else torch.zeros(x.num_nodes, dtype=torch.long)
        node_features = getattr(x, "x", None)
        if node_features is None:
            node_features = torch.ones(x.num_nodes, 1)
        node_features = node_features.reshape(x.num_nodes, -1)
        if not torch.is_floating_point(node_features):
            node_features = node_features.to(torch.get_default_dtype())
        features, mask = to_dense_batch(node_features, batch, batch_size=self.batch_size(x))
        adjacency = to_dense_adj(x.edge_index, batch, batch_size=self.batch_size(x),
                                 max_num_nodes=features.shape[1]).to(features.dtype)
        return features, adjacency, mask

    def flatten(self, y):
        raise ActionError("graph-valued outputs are not supported; return node or graph tensors instead")

    def mean(self, y, k):
        raise ActionError("graph-valued outputs are not supported; return node or graph tensors instead")

    # --- the action -------------------------------------------------------------------
    def act(self, group, g, x: Any):
        num_graphs = self.batch_size(x)
        self._check_element_count(g, group, num_graphs)
        num_nodes = int(x.num_nodes)
        batch = x.batch if getattr(x, "batch", None) is not None else torch.zeros(num_nodes, dtype=torch.long)
        counts = self._counts(x).to(batch.device)
        offsets = torch.cumsum(counts, 0) - counts
        out = x.clone()
        reference = getattr(x, self.point_fields[0], None) if self.point_fields else None
        dtype = reference.dtype if isinstance(reference, torch.Tensor) else torch.get_default_dtype()
        linear, translation, permutation = self._group_parts(group, g, dtype)

        if permutation is not None:
            local = torch.arange(num_nodes, device=batch.device) - offsets[batch]
            target_local = permutation.to(batch.device)[batch, local]
            if bool((target_local >= counts[batch]).any()):
                raise ActionError(
                    "a permutation element moves nodes of a graph beyond that graph's size; "
                    "bind the group to the batch with GraphAction().bind(group, batch) before sampling"
                )
            target = offsets[batch] + target_local  # node i moves to target[i]
            source = torch.argsort(target)
            for key in x.keys():
                value = x[key]
                if key in _STRUCTURAL_KEYS or not isinstance(value, torch.Tensor):
                    continue
                if x.is_node_attr(key):
                    out[key] = value[source]
            out.edge_index = target[x.edge_index]

        if linear is not None or translation is not None:
            for key in self.point_fields + self.vector_fields:
                value = out[key]
                if linear is not None:
                    value = (linear[batch] @ value.unsqueeze(-1)).squeeze(-1)
                if translation is not None and key in self.point_fields:
                    value = value + translation[batch]
                out[key] = value
        return out
