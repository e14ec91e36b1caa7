"""Dicts of fields acted on together: ``{"pos": "points", "vel": "vectors", "charge": "scalars"}``."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..errors import ActionError, DeviceError
from .base import Action


class DictAction(Action):
    """One group element acts on every field of a dict consistently."""

    name = "dict"

    def __init__(self, fields: Mapping[str, Action]) -> None:
        if not fields:
            raise ActionError("a dict action needs at least one field")
        self.fields = dict(fields)
        self.layout = "{" + ", ".join(f"{k!r}: {a.layout}" for k, a in self.fields.items()) + "}"

    @property
    def has_positions(self) -> bool:  # type: ignore[override]
        return any(action.has_positions for action in self.fields.values())

    @property
    def values_fixed(self) -> bool:  # type: ignore[override]
        return all(action.values_fixed for action in self.fields.values())

    @property
    def trivial(self) -> bool:  # type: ignore[override]
        return all(action.trivial for action in self.fields.values())

    def __repr__(self) -> str:
        return f"DictAction({ {k: a.name for k, a in self.fields.items()} })"

    def check_group(self, group):
        for action in self.fields.values():
            action.check_group(group)

    def _require_dict(self, x) -> Mapping:
        if not isinstance(x, Mapping):
            raise ActionError(f"expected a dict with keys {sorted(self.fields)}; got {type(x).__name__}")
        if set(x) != set(self.fields):
            missing = sorted(set(self.fields) - set(x))
            extra = sorted(set(x) - set(self.fields))
            raise ActionError(f"dict data must have keys {sorted(self.fields)}; missing {missing}, unexpected {extra}")
        return x

    def validate(self, x, group=None, *, check_finite=False):
        x = self._require_dict(x)
        for key, action in self.fields.items():
            try:
                action.validate(x[key], group, check_finite=check_finite)
            except (ActionError, DeviceError) as error:
                raise type(error)(f"field {key!r}: {error}") from None
        sizes = {key: action.batch_size(x[key]) for key, action in self.fields.items()}
        first = next(iter(sizes.values()))
        if any(size != first for size in sizes.values()):  # not a set: traced sizes are symbolic, not hashable
            raise ActionError(f"all fields need the same batch size; got {sizes}")
        members = {key: s[0] for key, a in self.fields.items() if (s := a.set_size(x[key])) is not None}
        # one permutation reorders every per-member field alike, so they need one member count; a group without
        # a permutation part (translations of context and target points) moves fields of any sizes
        if (group is None or group.has_permutation) and len(set(members.values())) > 1:
            raise ActionError(f"all per-member fields need the same number of set members; got {members}")

    def check_nonempty(self, x):
        if not isinstance(x, Mapping):
            return  # left to validate, like any data of the wrong type
        for key, action in self.fields.items():
            try:
                action.check_nonempty(x.get(key))
            except (ActionError, DeviceError) as error:
                raise type(error)(f"field {key!r}: {error}") from None

    def take(self, x, count):
        x = self._require_dict(x)
        return {key: action.take(x[key], count) for key, action in self.fields.items()}

    def act(self, group, g, x):
        x = self._require_dict(x)
        return {key: action.act(group, g, x[key]) for key, action in self.fields.items()}

    def batch_size(self, x):
        key, action = next(iter(self.fields.items()))
        return action.batch_size(self._require_dict(x)[key])

    def repeat(self, x, k):
        return {key: action.repeat(x[key], k) for key, action in self.fields.items()}

    def mean(self, y, k):
        return {key: action.mean(y[key], k) for key, action in self.fields.items()}

    def flatten(self, y):
        y = self._require_dict(y)
        return torch.cat([action.flatten(y[key]) for key, action in self.fields.items()], dim=1)

    def set_size(self, x):
        for key, action in self.fields.items():
            size = action.set_size(x[key])
            if size is not None:
                return size
        return None

    def positions(self, x):
        for key, action in self.fields.items():
            found = action.positions(x[key])
            if found is not None:
                return found
        return None

    @property
    def soft_permutations(self) -> bool:  # type: ignore[override]
        return all(action.soft_permutations for action in self.fields.values())

    def members(self, x):
        x = self._require_dict(x)
        features, adjacency, mask = [], None, None
        for key, action in self.fields.items():
            try:
                field_features, field_adjacency, field_mask = action.members(x[key])
            except ActionError:
                continue
            features.append(field_features.to(torch.get_default_dtype()))
            adjacency = adjacency if adjacency is not None else field_adjacency
            mask = mask if mask is not None else field_mask
        if not features:
            raise ActionError(f"no field of {sorted(self.fields)} has set members to read")
        return torch.cat(features, dim=-1), adjacency, mask

    def member_feature_count(self, group):
        counts = [action.member_feature_count(group) for action in self.fields.values()
                  if type(action).members is not Action.members]
        return None if any(count is None for count in counts) else sum(counts)

    def permute_by_matrix(self, x, matrix):
        x = self._require_dict(x)
        return {key: action.permute_by_matrix(x[key], matrix) for key, action in self.fields.items()}

    def probe(self, x):
        x = self._require_dict(x)
        tensors = [action.probe(x[key]) for key, action in self.fields.items()]
        return next((t for t in tensors if torch.is_floating_point(t)), tensors[0])

    def spec(self):
        return {key: action.spec() for key, action in self.fields.items()}

    def acts_exactly(self, group):
        return all(action.acts_exactly(group) for action in self.fields.values())

    def differentiable(self):
        return DictAction({key: action.differentiable() for key, action in self.fields.items()})
