"""Groups acting on torch_geometric graphs (``Data`` or ``Batch``).

Node permutations move node ``i`` of a graph to position ``p[i]``: every node-level
attribute is reordered and ``edge_index`` relabelled. Rotations and translations act
on the position fields (``pos`` by default); vector fields (velocities) are only
rotated. One group element acts on each graph of a batch; permutation elements
are (B, N_max) rows that permute the first ``n_b`` positions of graph ``b`` (the
group is bound to the batch's sizes by :meth:`GraphAction.bind`).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from ..errors import ActionError, EmptyInputError, IncompatibleGroupError, InputDtypeError, MissingDependencyError
from .base import Action, require_data_device
from .checks import describe


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
        tensors = {key: x[key] for key in x.keys() if isinstance(x[key], torch.Tensor)}
        for key, value in tensors.items():
            require_data_device(value, f"graph field {key!r}")
        num_nodes = self._node_count(x)
        self._check_batch(x, num_nodes)
        self.check_nonempty(x)
        self._check_edges(x, num_nodes)
        self._check_node_fields(x, group, num_nodes)
        if check_finite:
            for value in tensors.values():
                self._require_finite(value)

    def check_nonempty(self, x):
        if not isinstance(x, _pyg().Data):
            return  # left to validate, like any data of the wrong type
        self._node_count(x)
        empty = (self._counts(x) == 0).nonzero().flatten().tolist()
        if empty:
            raise EmptyInputError(f"graph(s) {empty} of the batch have no nodes; every graph needs at least one")

    def _node_count(self, x) -> int:
        """The number of nodes of all graphs together; raises when there is none."""
        num_nodes = getattr(x, "num_nodes", None)
        if num_nodes is None:
            raise ActionError("the graph has no node count: give it node features data.x, positions data.pos, "
                              "or set data.num_nodes")
        if int(num_nodes) == 0:
            raise EmptyInputError(f"'graph' data ({self.layout}) has no nodes; pass graphs with at least one node")
        return int(num_nodes)

    def _check_edges(self, x, num_nodes: int) -> None:
        edge_index = getattr(x, "edge_index", None)
        if edge_index is None:
            return
        if not isinstance(edge_index, torch.Tensor) or edge_index.ndim != 2 or edge_index.shape[0] != 2 \
                or edge_index.dtype not in (torch.int64, torch.int32):
            raise ActionError(f"the graph's edge_index must be a (2, E) integer tensor; got {describe(edge_index)}")
        if edge_index.numel():
            low, high = int(edge_index.min()), int(edge_index.max())
            if low < 0 or high >= num_nodes:
                raise ActionError(f"the graph's edge_index must point at nodes in [0, {num_nodes}) for "
                                  f"{num_nodes} nodes; got values from {low} to {high}")

    def _check_batch(self, x, num_nodes: int) -> None:
        batch = getattr(x, "batch", None)
        if batch is None:
            return
        if not isinstance(batch, torch.Tensor) or batch.shape != (num_nodes,) \
                or batch.dtype not in (torch.int64, torch.int32):
            raise ActionError(f"the graph's batch vector must be a ({num_nodes},) integer tensor, one graph index "
                              f"per node; got {describe(batch)}")
        graphs = self.batch_size(x)
        if int(batch.min()) < 0 or int(batch.max()) >= graphs:
            raise ActionError(f"the graph's batch vector must hold graph indices in [0, {graphs}) for {graphs} "
                              f"graphs; got values from {int(batch.min())} to {int(batch.max())}")
        if bool((batch[1:] < batch[:-1]).any()):
            raise ActionError("the graph's batch vector must be sorted (the nodes of each graph contiguous, as "
                              "Batch.from_data_list makes them)")

    def _check_node_fields(self, x, group, num_nodes: int) -> None:
        moved = group is not None and (group.has_linear or group.has_translation)
        for key in self.point_fields + self.vector_fields:
            value = getattr(x, key, None)
            if value is None:
                if moved:
                    raise ActionError(
                        f"{group.name} moves the graph's {key!r} field, but the graph has none; "
                        f"set data.{key} (num_nodes, {group.dim}) or use a permutation group"
                    )
                continue
            width = group.dim if moved else "d"
            if not isinstance(value, torch.Tensor) or value.ndim != 2 or value.shape[0] != num_nodes \
                    or (moved and value.shape[1] != group.dim):
                raise ActionError(f"graph field {key!r} must be (num_nodes, {width}) = ({num_nodes}, {width}); "
                                  f"got {describe(value)}")
            if moved and not torch.is_floating_point(value):
                raise InputDtypeError(f"graph field {key!r} is rotated, so it must be floating point; got "
                                      f"{describe(value)}. Convert it with .float()")
        features = getattr(x, "x", None)
        if isinstance(features, torch.Tensor) and (features.ndim == 0 or features.shape[0] != num_nodes):
            raise ActionError(f"the graph's node features x must have one row per node ({num_nodes}); "
                              f"got {describe(features)}")

    # --- batching ---------------------------------------------------------------------
    def batch_size(self, x):
        return int(getattr(x, "num_graphs", 1) or 1)

    def repeat(self, x, k):
        pyg_data = _pyg()
        if isinstance(x, pyg_data.Batch):
            tiled = _tile_batch(x, k)
            if tiled is not None:
                return tiled
        graphs = x.to_data_list() if isinstance(x, pyg_data.Batch) else [x]
        return pyg_data.Batch.from_data_list(graphs * k)

    def take(self, x, count):
        if self.batch_size(x) <= count or getattr(x, "_slice_dict", None) is None:
            return x  # a single graph, or a batch that cannot be split (not made by Batch.from_data_list)
        return _pyg().Batch.from_data_list(x.to_data_list()[:count])

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
            if getattr(x, "edge_index", None) is not None:
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


def _tile_batch(batch: Any, k: int) -> Any:
    """``Batch.from_data_list(batch.to_data_list() * k)`` from whole-tensor operations (exhaustive averages
    repeat a batch hundreds of times, which collating graph by graph makes slow); ``None`` for a batch this
    cannot copy (not made by ``Batch.from_data_list``, or with attributes that are neither tensors nor lists)."""
    slices, increments = getattr(batch, "_slice_dict", None), getattr(batch, "_inc_dict", None)
    if slices is None or increments is None or getattr(batch, "batch", None) is None \
            or getattr(batch, "ptr", None) is None:
        return None
    out = copy.copy(batch)
    graphs, nodes = batch.num_graphs, int(batch.num_nodes)
    new_slices, new_increments = {}, {}
    for key in batch.keys():
        if key in _STRUCTURAL_KEYS - {"edge_index"}:
            continue
        value = batch[key]
        if key not in slices:
            return None
        if isinstance(value, list):
            out[key] = value * k
            new_slices[key] = torch.arange(k * graphs + 1)
            new_increments[key] = None
            continue
        dim = batch.__cat_dim__(key, value) if isinstance(value, torch.Tensor) else None
        if dim is None:
            return None
        step = batch.__inc__(key, value)  # the increment of one whole copy: the batch is one big graph
        out[key] = torch.cat([value + i * step if i and step else value for i in range(k)], dim=dim)
        size = value.shape[dim]
        new_slices[key] = torch.cat([slices[key][:-1] + i * size for i in range(k)]
                                    + [slices[key].new_tensor([k * size])])
        per_graph = increments[key]
        new_increments[key] = None if per_graph is None else torch.cat([per_graph + i * step for i in range(k)])
    copies = torch.arange(k, device=batch.batch.device)
    out.batch = batch.batch.repeat(k) + (copies * graphs).repeat_interleave(nodes)
    out.ptr = torch.cat([(batch.ptr[:-1][None] + copies[:, None] * nodes).flatten(), batch.ptr.new_tensor([k * nodes])])
    out._slice_dict, out._inc_dict, out._num_graphs = new_slices, new_increments, k * graphs
    return out
