import itertools
import math
import re
import warnings

import pytest
import torch
from helpers import GROUP_NAMES, concrete, make_generator
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

import symwrap
from symwrap.errors import GroupElementError, IncompatibleGroupError, RegistryError, UnknownGroupError
from symwrap.groups import Group, element_batch_size, select
from symwrap.groups import base as group_base

seeds = st.integers(0, 2**31 - 1)
batches = st.integers(1, 6)


def sample(group: Group, n: int, seed: int, dtype=torch.float64):
    return group.sample(n, generator=make_generator(seed), dtype=dtype)


def test_every_registered_group_is_covered():
    pattern_prefixes = {name.rstrip("0123456789") for name in GROUP_NAMES}
    for name in symwrap.list_groups():
        if "{n}" in name:
            assert name.replace("{n}", "") in pattern_prefixes, name
        else:
            assert name in GROUP_NAMES, name


@pytest.mark.parametrize("name", GROUP_NAMES)
@given(seed=seeds, n=batches)
def test_group_axioms(name, seed, n):
    group = concrete(name)
    g, h, k = (sample(group, n, seed + i) for i in range(3))
    e = group.identity(n, dtype=torch.float64)
    assert group.allclose(group.compose(group.compose(g, h), k), group.compose(g, group.compose(h, k)), atol=1e-9)
    assert group.allclose(group.compose(e, g), g, atol=1e-12)
    assert group.allclose(group.compose(g, e), g, atol=1e-12)
    assert group.allclose(group.compose(g, group.inverse(g)), e, atol=1e-9)
    assert group.allclose(group.compose(group.inverse(g), g), e, atol=1e-9)
    assert element_batch_size(group.compose(g, h)) == n


@pytest.mark.parametrize("name", GROUP_NAMES)
@given(seed=seeds)
def test_linear_part_is_a_homomorphism_into_orthogonal_matrices(name, seed):
    group = concrete(name)
    if not group.has_linear:
        return
    g, h = sample(group, 4, seed), sample(group, 4, seed + 1)
    rg, rh = group.linear_part(g, dtype=torch.float64), group.linear_part(h, dtype=torch.float64)
    eye = torch.eye(group.dim, dtype=torch.float64).expand_as(rg)
    assert torch.allclose(rg @ rg.transpose(-1, -2), eye, atol=1e-9)
    assert torch.allclose(group.linear_part(group.compose(g, h), dtype=torch.float64), rg @ rh, atol=1e-9)
    det = torch.linalg.det(rg)
    if group.special:
        assert torch.allclose(det, torch.ones_like(det), atol=1e-9)


@pytest.mark.parametrize("name", [n for n in GROUP_NAMES if concrete(n).is_finite])
def test_finite_groups_enumerate_and_index_their_elements(name):
    group = concrete(name)
    elements = group.elements()
    assert element_batch_size(elements) == group.order
    assert torch.equal(group.index(elements), torch.arange(group.order))
    # closure: every product lands on a listed element
    n = group.order
    left = select(elements, torch.arange(n).repeat_interleave(n))
    right = select(elements, torch.arange(n).repeat(n))
    products = group.index(group.compose(left, right)).reshape(n, n)
    for row in products:  # Latin square: each row is a permutation of the group
        assert sorted(row.tolist()) == list(range(n))


def test_so3_haar_rotation_angles_follow_the_haar_density():
    rotations = symwrap.get_group("SO3").sample(20000, generator=make_generator(1), dtype=torch.float64)
    trace = torch.diagonal(rotations, dim1=-2, dim2=-1).sum(-1)
    angle = torch.arccos(((trace - 1) / 2).clamp(-1, 1)).numpy()
    # Haar measure on SO(3): density (1 − cos θ)/π on [0, π], CDF (θ − sin θ)/π
    result = stats.kstest(angle, lambda t: (t - torch.sin(torch.as_tensor(t)).numpy()) / math.pi)
    assert result.pvalue > 1e-3
    # and not uniform in angle, which is the classic mistake
    assert stats.kstest(angle, "uniform", args=(0, math.pi)).pvalue < 1e-6


def test_so3_haar_axes_are_uniform_on_the_sphere():
    rotations = symwrap.get_group("SO3").sample(20000, generator=make_generator(2), dtype=torch.float64)
    first_column = rotations[:, :, 0]
    for axis in range(3):  # each coordinate of a uniform unit vector is uniform on [-1, 1]
        assert stats.kstest(first_column[:, axis].numpy(), "uniform", args=(-1, 2)).pvalue > 1e-3


@pytest.mark.parametrize("name", ["O3", "E3", "O2"])
def test_groups_with_reflections_have_half_their_mass_at_det_minus_one(name):
    group = symwrap.get_group(name)
    det = torch.linalg.det(group.linear_part(group.sample(20000, generator=make_generator(3))))
    fraction = float((det < 0).double().mean())
    assert abs(fraction - 0.5) < 4 * math.sqrt(0.25 / 20000)
    assert torch.allclose(det.abs(), torch.ones_like(det), atol=1e-5)


@pytest.mark.parametrize("name", ["SO2", "O2", "SO2z"])
def test_planar_rotation_angles_are_uniform(name):
    rotations = symwrap.get_group(name).sample(20000, generator=make_generator(4), dtype=torch.float64)
    angle = torch.atan2(rotations[:, 1, 0], rotations[:, 0, 0]).numpy()  # where the x axis goes
    assert stats.kstest(angle, "uniform", args=(-math.pi, 2 * math.pi)).pvalue > 1e-3


@pytest.mark.parametrize("name", ["S3", "D3", "C6"])
def test_finite_sampling_is_uniform_over_elements(name):
    group = concrete(name)
    counts = torch.bincount(group.index(group.sample(12000, generator=make_generator(5))), minlength=group.order)
    assert stats.chisquare(counts.numpy()).pvalue > 1e-3


def test_permutations_respect_ragged_lengths():
    group = symwrap.get_group("S").sized(6, lengths=torch.tensor([2, 6, 4]))
    g = group.sample(9, generator=make_generator(6))
    for row, length in zip(g, [2, 6, 4] * 3):
        assert sorted(row[:length].tolist()) == list(range(length))
        assert row[length:].tolist() == list(range(length, 6))


def test_lookup_is_case_insensitive_and_parses_products():
    assert symwrap.get_group("so3").name == "SO3"
    assert symwrap.get_group("c8").order == 8
    product = symwrap.get_group("E3xS")
    assert product.has_linear and product.has_translation and product.has_permutation
    assert symwrap.get_group(product) is product


def test_unknown_group_lists_the_valid_names():
    with pytest.raises(UnknownGroupError, match="SO4.*expected one of: .*SO3"):
        symwrap.get_group("SO4")
    with pytest.raises(UnknownGroupError):
        symwrap.get_group(3)


def test_products_of_groups_acting_on_the_same_part_are_refused():
    with pytest.raises(IncompatibleGroupError, match="different parts"):
        symwrap.get_group("SO3xO3")


def test_register_a_custom_group():
    @symwrap.register_group("Klein")
    def klein():
        return symwrap.groups.ProductGroup([symwrap.groups.CyclicGroup(2), symwrap.groups.PermutationGroup(2)])

    assert "Klein" in symwrap.list_groups()
    assert symwrap.get_group("klein").order == 4
    with pytest.raises(RegistryError, match="already registered"):
        symwrap.register_group("Klein")(klein)
    with pytest.raises(RegistryError, match="reserved for products"):
        symwrap.register_group("Box")(klein)


def test_unsized_permutation_group_explains_how_to_bind_it():
    with pytest.raises(GroupElementError, match="sized"):
        symwrap.get_group("S").sample(3)


def test_invalid_elements_are_rejected():
    with pytest.raises(GroupElementError, match=r"\(B, 3, 3\)"):
        symwrap.get_group("SO3").linear_part(torch.eye(3))
    with pytest.raises(GroupElementError, match="integer"):
        symwrap.get_group("C4").linear_part(torch.zeros(2))


@pytest.mark.parametrize("name, axis", [("SO2z", 2), ("SO2y", 1)])
def test_axial_rotations_keep_their_axis_and_turn_the_plane_counter_clockwise(name, axis):
    group = symwrap.get_group(name)
    rotations = group.sample(16, generator=make_generator(3), dtype=torch.float64)
    unit = torch.zeros(3, dtype=torch.float64)
    unit[axis] = 1.0
    assert torch.allclose(rotations @ unit, unit.expand(16, 3), atol=1e-12)
    quarter = group.exp(group.lie_algebra(dtype=torch.float64) * (math.pi / 2))[0]
    first, second = (axis + 1) % 3, (axis + 2) % 3  # right-handed: a quarter turn takes `first` to `second`
    assert torch.allclose(quarter[:, first], torch.eye(3, dtype=torch.float64)[second], atol=1e-12)


def test_plane_reflection_flips_one_coordinate():
    group = symwrap.get_group("Mz")
    mirror = group.elements(dtype=torch.float64)[1]
    assert torch.equal(mirror, torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)))
    assert group.order == 2 and not group.special



# --- groups bound to sets of different sizes (batches of graphs) -------------------------------------------------
def test_ragged_permutations_enumerate_the_largest_set_and_restrict_each_row_exactly():
    lengths = torch.tensor([3, 5, 4])
    group = symwrap.get_group("S").sized(5, lengths)
    assert group.ragged and group.is_finite and group.order == 120
    elements = group.elements()
    fitted = group.fit_rows(elements.repeat_interleave(3, dim=0))  # element i in rows 3i, 3i+1, 3i+2
    for b, length in enumerate(lengths.tolist()):
        rows = fitted[b::3]  # every element, as row b's graph sees it
        assert torch.equal(rows[:, length:], torch.arange(length, 5).expand(120, -1))  # the rest stays put
        patterns, counts = torch.unique(rows[:, :length], dim=0, return_counts=True)
        assert patterns.shape[0] == math.factorial(length)  # every permutation of the row's own set ...
        assert set(counts.tolist()) == {120 // math.factorial(length)}  # ... equally often: averages stay exact
    # restricted rows keep the relative order of the first entries
    assert fitted[0].tolist() == [0, 1, 2, 3, 4] and fitted[3 * 119].tolist() == [2, 1, 0, 3, 4]


def test_ragged_restriction_is_a_group_element_of_each_row_and_inverts():
    group = symwrap.get_group("S").sized(6, torch.tensor([2, 6, 4]))
    g = group.fit_rows(symwrap.get_group("S6").sample(9, generator=make_generator(3)))
    for row, length in zip(g, [2, 6, 4] * 3):
        assert sorted(row[:length].tolist()) == list(range(length))
        assert row[length:].tolist() == list(range(length, 6))
    assert torch.equal(group.compose(g, group.inverse(g)), group.identity(9))


def test_uniform_lengths_bind_the_plain_symmetric_group():
    group = symwrap.get_group("S").sized(4, torch.tensor([4, 4, 4]))
    assert not group.ragged and group.order == 24
    g = group.sample(5, generator=make_generator(0))
    assert group.fit_rows(g) is g


def test_products_restrict_only_their_permutation_factor():
    group = symwrap.get_group("C4xS").sized(4, torch.tensor([2, 4]))
    assert group.ragged and group.order == 4 * 24
    rotation, permutation = group.fit_rows(group.elements())
    assert torch.equal(rotation, symwrap.get_group("C4").elements().repeat_interleave(24))
    # rows alternate between the two sets: even rows move 2 members, odd rows all 4
    assert torch.equal(permutation[0::2, 2:], torch.tensor([2, 3]).expand(48, 2))
    assert torch.equal(permutation[1::2], group.elements()[1][1::2])
    assert not symwrap.get_group("C4xS").sized(3).ragged


@pytest.mark.parametrize("n, lengths, match", [
    (True, None, "integer n >= 1"), (2.5, None, "integer n >= 1"), (0, None, "integer n >= 1"),
    (3, torch.tensor([1, 4]), r"in \[0, 3\]"), (3, torch.tensor([[1, 2]]), "1-D integer"),
    (3, torch.tensor([1.0, 2.0]), "1-D integer"), (3, torch.tensor([], dtype=torch.long), "non-empty"),
    (None, torch.tensor([1, 2]), "need a set size"),
])
def test_bad_set_sizes_are_refused(n, lengths, match):
    from symwrap.groups import PermutationGroup

    with pytest.raises(GroupElementError, match=match):
        PermutationGroup(n, lengths)


# --- dtype, device and generator follow the request ---------------------------------------------------------------
def _tensors(g):
    return [t for part in g for t in _tensors(part)] if isinstance(g, tuple) else [g]


def _finite(name: str) -> bool:
    return concrete(name).is_finite


@pytest.mark.parametrize("name", [*GROUP_NAMES, "MzxS3"])  # MzxS3: a finite product with floating elements
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_elements_are_made_on_the_requested_device_and_dtype(name, dtype):
    """Floating parts take the requested dtype (the default dtype when none is asked for), integer parts
    stay long; every part is on the requested device, for sample, identity and elements alike."""
    group = concrete(name)
    made = [group.sample(4, device="meta", dtype=dtype), group.identity(4, device="meta", dtype=dtype)]
    if group.is_finite:
        made.append(group.elements(device="meta", dtype=dtype))
    plain = [group.sample(4, generator=make_generator(0)), group.identity(4)]
    for element in made:
        assert element_batch_size(element) in (4, group.order)
        for tensor in _tensors(element):
            assert tensor.device.type == "meta"
            assert tensor.dtype == (dtype if tensor.is_floating_point() else torch.long)
    for element in plain:
        for tensor in _tensors(element):
            assert tensor.dtype == (torch.get_default_dtype() if tensor.is_floating_point() else torch.long)
    if group.has_linear:
        g = group.sample(3, generator=make_generator(0), dtype=torch.float64)
        assert group.linear_part(g, dtype=dtype).dtype == dtype
        assert group.linear_part(group.identity(3, device="meta"), dtype=dtype).device.type == "meta"
    if group.has_translation:
        g = group.sample(3, generator=make_generator(0), dtype=torch.float64)
        assert group.translation_part(g, dtype=dtype).dtype == dtype
        assert group.translation_part(g).dtype == torch.float64  # no dtype asked: the element's own


@pytest.mark.parametrize("name", GROUP_NAMES)
def test_sampling_follows_the_generator(name):
    """The same seed gives the same elements whatever the global generator did in between; another seed
    gives others."""
    group = concrete(name)
    first = group.sample(6, generator=make_generator(7), dtype=torch.float64)
    torch.rand(3)  # move the global generator on: a sampler that ignored the generator would now differ
    again = group.sample(6, generator=make_generator(7), dtype=torch.float64)
    assert all(torch.equal(a, b) for a, b in zip(_tensors(first), _tensors(again), strict=True))
    if group.order != 1:
        other = group.sample(6, generator=make_generator(8), dtype=torch.float64)
        assert not all(torch.equal(a, b) for a, b in zip(_tensors(first), _tensors(other), strict=True))


# --- the planar groups: which element is which matrix --------------------------------------------------------------
def _turn(angle: float, flip: bool = False) -> torch.Tensor:
    """By hand: the rotation by ``angle`` after (if ``flip``) the reflection across the x axis."""
    c, s = math.cos(angle), math.sin(angle)
    rotation = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    return rotation @ torch.diag(torch.tensor([1.0, -1.0 if flip else 1.0], dtype=torch.float64))


@pytest.mark.parametrize("name", ["C1", "C2", "C4", "C6", "C8", "D1", "D3", "D4", "D8"])
def test_finite_planar_elements_are_the_listed_rotations_and_reflections(name):
    """C_n element k turns by 2πk/n; D_n element i = k + n·f turns by 2πk/n after f reflections; multiples
    of 90° are exact (integer entries, so images move whole pixels), other angles correct to round-off."""
    group = concrete(name)
    n = group.n
    matrices = group.linear_part(group.elements(), dtype=torch.float64)
    assert matrices.shape == (group.order, 2, 2)
    for i, matrix in enumerate(matrices):
        k, flip = i % n, i >= n
        expected = _turn(2 * math.pi * k / n, flip)
        if (4 * k) % n == 0:
            assert torch.equal(matrix, expected.round()), (i, matrix)
        else:
            assert torch.allclose(matrix, expected, atol=1e-15, rtol=0), (i, matrix)
    assert group.linear_part(group.elements()).dtype == torch.get_default_dtype()


def test_rotation_2d_turns_counter_clockwise():
    angle = torch.tensor([0.3, -2.0, math.pi / 2], dtype=torch.float64)
    matrices = group_base.rotation_2d(angle)
    for theta, matrix in zip(angle.tolist(), matrices):
        assert torch.allclose(matrix, _turn(theta), atol=1e-15, rtol=0)


@pytest.mark.parametrize("name", ["C4", "D4"])
def test_index_groups_check_their_elements(name):
    group = symwrap.get_group(name)
    assert torch.equal(group.index(torch.tensor([3, 1], dtype=torch.int32)), torch.tensor([3, 1]))
    assert group.index(torch.tensor([3, 1], dtype=torch.int32)).dtype == torch.long
    assert group.linear_part(torch.tensor([1], dtype=torch.int32)).shape == (1, 2, 2)
    for bad, match in [(torch.tensor([1.0, 2.0]), r"indices; got \(2,\) of dtype torch.float32"),
                       (torch.zeros(2, 1, dtype=torch.long), r"got \(2, 1\) of dtype torch.int64"),
                       ([1, 2], r"got list$")]:
        with pytest.raises(GroupElementError, match=rf"elements of {name} are \(B,\) integer tensors of .*{match}"):
            group.index(bad)
        with pytest.raises(GroupElementError, match=match):
            group.linear_part(bad)


@pytest.mark.parametrize("cls, order", [(symwrap.groups.CyclicGroup, 1), (symwrap.groups.DihedralGroup, 2)])
def test_cyclic_and_dihedral_groups_start_at_n_equal_one(cls, order):
    group = cls(1)
    assert group.order == order and group.name == f"{cls.__name__[0]}1"
    assert torch.equal(group.elements(), torch.arange(order))
    with pytest.raises(GroupElementError, match="needs n >= 1; got n=0"):
        cls(0)


# --- matrix groups, translations and the Euclidean groups -----------------------------------------------------------
@pytest.mark.parametrize("name, d", [("SO2", 2), ("O2", 2), ("SO3", 3), ("O3", 3), ("SO2z", 3), ("Mz", 3)])
def test_matrix_groups_are_built_from_a_linear_part_only(name, d):
    group = symwrap.get_group(name)
    linear = group.sample(2, generator=make_generator(0), dtype=torch.float64)
    assert group.from_parts(linear=linear) is linear
    assert group.linear_part(linear) is linear  # no dtype asked: the elements themselves
    assert group.translation_part(linear) is None and group.permutation_part(linear) is None
    for parts in [{}, {"linear": linear, "translation": torch.zeros(2, d)},
                  {"linear": linear, "permutation": torch.zeros(2, 3, dtype=torch.long)}]:
        with pytest.raises(GroupElementError, match=rf"{name} elements are built from a \(B, {d}, {d}\) linear part"):
            group.from_parts(**parts)
    for bad, shown in [(torch.eye(d), f"({d}, {d})"), (torch.zeros(2, d, d + 1), f"(2, {d}, {d + 1})"),
                       (torch.zeros(2, d + 1, d), f"(2, {d + 1}, {d})"), ([linear], "list")]:
        message = rf"elements of {name} are \(B, {d}, {d}\) matrices; got {re.escape(shown)}$"
        with pytest.raises(GroupElementError, match=message):
            group.linear_part(bad)


def test_planar_lie_algebra_generates_counter_clockwise_rotations():
    for name in ("SO2", "O2"):
        algebra = symwrap.get_group(name).lie_algebra(dtype=torch.float64)
        assert torch.equal(algebra, torch.tensor([[[0.0, -1.0], [1.0, 0.0]]], dtype=torch.float64))
        assert symwrap.get_group(name).lie_algebra(device="meta").device.type == "meta"
        angle = torch.tensor([0.7, -1.9], dtype=torch.float64)
        turned = symwrap.get_group(name).exp(angle[:, None, None] * algebra)
        assert torch.allclose(turned, group_base.rotation_2d(angle), atol=1e-12)


@pytest.mark.parametrize("name", ["SO3", "O3", "E3", "SE3"])
def test_spatial_lie_algebras_turn_by_the_right_hand_rule_and_translate(name):
    group = symwrap.get_group(name)
    algebra = group.lie_algebra(dtype=torch.float64)
    assert algebra.dtype == torch.float64 and group.lie_algebra(device="meta").device.type == "meta"
    assert algebra.shape == ((3, 3, 3) if name in ("SO3", "O3") else (6, 4, 4))
    eye = torch.eye(3, dtype=torch.float64)
    quarter = group.linear_part(group.exp(algebra[:3] * (math.pi / 2)))
    for axis in range(3):  # a quarter turn about each axis takes the next axis to the one after it
        assert torch.allclose(quarter[axis] @ eye[(axis + 1) % 3], eye[(axis + 2) % 3], atol=1e-12)
        assert torch.allclose(quarter[axis] @ eye[axis], eye[axis], atol=1e-12)
    if group.has_translation:
        shift = group.exp(algebra[3:] * 2.5)
        assert torch.allclose(group.translation_part(shift), 2.5 * eye, atol=1e-12)
        assert torch.allclose(group.linear_part(shift), eye.expand(3, 3, 3), atol=1e-12)


def test_half_precision_exp_of_zero_is_the_identity():
    algebra = torch.zeros(2, 3, 3, dtype=torch.float16)
    identity = symwrap.get_group("SO3").exp(algebra)
    assert identity.dtype == torch.float16 and torch.equal(identity, torch.eye(3, dtype=torch.float16).expand(2, 3, 3))
    algebra64 = symwrap.get_group("SO3").lie_algebra(dtype=torch.float64)[2:] * 0.5
    assert symwrap.get_group("SO3").exp(algebra64).dtype == torch.float64


def test_translations_are_vectors_and_homogeneous_matrices():
    group = symwrap.groups.TranslationGroup(2, translation_scale=3.0)
    assert group.name == "T2" and group.dim == 2 and symwrap.groups.TranslationGroup().dim == 3
    shifts = group.sample(20000, generator=make_generator(4), dtype=torch.float64)
    assert shifts.shape == (20000, 2)
    assert torch.allclose(shifts.std(0), torch.full((2,), 3.0, dtype=torch.float64), atol=0.1)
    assert torch.allclose(shifts.mean(0), torch.zeros(2, dtype=torch.float64), atol=0.1)
    t = torch.tensor([[1.5, -2.0]], dtype=torch.float64)
    assert torch.equal(group.matrix(t), torch.tensor([[[1.0, 0.0, 1.5], [0.0, 1.0, -2.0], [0.0, 0.0, 1.0]]],
                                                      dtype=torch.float64))
    assert group.from_parts(translation=t) is t and group.translation_part(t) is t
    assert group.linear_part(t) is None and group.permutation_part(t) is None
    assert torch.equal(group.lie_algebra(dtype=torch.float64), torch.eye(2, dtype=torch.float64))
    assert group.exp(t) is t  # translations are their own exponential
    for parts in [{}, {"translation": t, "linear": torch.eye(2)[None]},
                  {"translation": t, "permutation": torch.zeros(1, 2, dtype=torch.long)}]:
        with pytest.raises(GroupElementError, match=r"T2 elements are built from a \(B, 2\) translation only"):
            group.from_parts(**parts)
    for bad, shown in [(torch.zeros(2), "(2,)"), (torch.zeros(1, 3), "(1, 3)"), ([t], "list")]:
        with pytest.raises(GroupElementError, match=rf"elements of T2 are \(B, 2\) vectors; got {re.escape(shown)}$"):
            group.matrix(bad)


@pytest.mark.parametrize("special", [True, False])
def test_euclidean_elements_are_homogeneous_matrices(special):
    group = symwrap.groups.EuclideanGroup(special=special, translation_scale=3.0)
    assert group.name == ("SE3" if special else "E3") and group.special is special
    g = group.sample(20000, generator=make_generator(5), dtype=torch.float64)
    assert torch.equal(g[:, 3], torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64).expand(20000, 4))
    assert group.matrix(g) is g
    assert torch.allclose(group.translation_part(g).std(0), torch.full((3,), 3.0, dtype=torch.float64), atol=0.1)
    det = torch.linalg.det(group.linear_part(g))
    assert (det > 0).all() if special else abs(float((det < 0).double().mean()) - 0.5) < 0.02
    rotation = symwrap.get_group("SO3").sample(2, generator=make_generator(6), dtype=torch.float64)
    shift = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]], dtype=torch.float64)
    both = group.from_parts(linear=rotation, translation=shift)
    assert torch.equal(group.linear_part(both), rotation) and torch.equal(group.translation_part(both), shift)
    assert torch.equal(group.from_parts(linear=rotation), group.from_parts(linear=rotation, translation=0 * shift))
    moved_only = group.from_parts(translation=shift)
    assert torch.equal(group.linear_part(moved_only), torch.eye(3, dtype=torch.float64).expand(2, 3, 3))
    assert moved_only.dtype == torch.float64 and group.from_parts(translation=shift.to("meta")).device.type == "meta"
    inverse = group.inverse(both)  # undo the translation, then the rotation
    assert torch.allclose(group.translation_part(inverse), -(rotation.transpose(1, 2) @ shift[:, :, None])[..., 0])
    for parts in [{}, {"linear": rotation, "permutation": torch.zeros(2, 3, dtype=torch.long)}]:
        with pytest.raises(GroupElementError, match="elements are built from a rotation and/or a translation"):
            group.from_parts(**parts)
    with pytest.raises(GroupElementError, match=r"\(B, 4, 4\) homogeneous matrices \[\[R, t\], \[0, 1\]\]; got \(4, 4"):
        group.linear_part(torch.eye(4))


# --- permutations -------------------------------------------------------------------------------------------------
def test_permutations_are_listed_in_lexicographic_order_and_indexed_by_their_rank():
    group = symwrap.get_group("S4")
    listed = group.elements()
    assert listed.tolist() == [list(p) for p in itertools.permutations(range(4))]
    shuffled = listed[torch.randperm(24, generator=make_generator(0))]
    assert torch.equal(listed[group.index(shuffled)], shuffled)
    assert torch.equal(group.identity(2), torch.tensor([[0, 1, 2, 3]] * 2))


def test_a_permutation_moves_member_i_to_position_p_i():
    """``P[p[i], i] = 1``: the matrix of ``compose(g, h)`` (first h) is ``P_g @ P_h``."""
    group = symwrap.get_group("S4")
    p = torch.tensor([[2, 0, 3, 1]])
    assert torch.equal(group.matrix(p)[0], torch.tensor([[0.0, 1, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0], [0, 0, 1, 0]]))
    assert group.matrix(p).dtype == torch.get_default_dtype()
    g, h = group.sample(5, generator=make_generator(1)), group.sample(5, generator=make_generator(2))
    assert torch.equal(group.matrix(group.compose(g, h)), group.matrix(g) @ group.matrix(h))
    assert torch.equal(group.matrix(group.inverse(g)), group.matrix(g).transpose(1, 2))
    assert group.permutation_part(p) is p and group.from_parts(permutation=p) is p
    assert group.linear_part(p) is None and group.translation_part(p) is None


def test_permutation_elements_are_checked():
    group = symwrap.get_group("S4")
    assert group.permutation_part(torch.tensor([[1, 0, 2, 3]], dtype=torch.int32)).shape == (1, 4)
    for bad, match in [(torch.zeros(2, 4), r"\(B, N\) integer permutations; got \(2, 4\)"),
                       (torch.zeros(4, dtype=torch.long), r"\(B, N\) integer permutations; got \(4,\)"),
                       ([0, 1], "integer permutations; got list"),
                       (torch.zeros(2, 5, dtype=torch.long), "elements of S4 permute 4 members; got 5")]:
        for method in (group.permutation_part, group.index, group.matrix):
            with pytest.raises(GroupElementError, match=match):
                method(bad)
    with pytest.raises(GroupElementError, match="S4 elements are built from a permutation part only"):
        group.from_parts(permutation=torch.zeros(1, 4, dtype=torch.long), linear=torch.eye(3)[None])
    with pytest.raises(GroupElementError, match="built from a permutation part only"):
        group.from_parts(permutation=torch.zeros(1, 4, dtype=torch.long), translation=torch.zeros(1, 3))
    with pytest.raises(GroupElementError, match="built from a permutation part only"):
        group.from_parts()


def test_binding_a_set_size():
    unsized = symwrap.get_group("S")
    assert unsized.needs_size and unsized.order is None and not unsized.is_finite
    bound = unsized.sized(5)
    assert bound.name == "S" and bound.n == 5 and bound.order == 120 and not bound.needs_size
    assert symwrap.get_group("S4").sized(4).name == "S4"
    assert not symwrap.get_group("S4").needs_size and not symwrap.get_group("SO3").needs_size
    with pytest.raises(GroupElementError, match="S4 acts on sets of 4 members; the data has 5"):
        symwrap.get_group("S4").sized(5)
    assert symwrap.get_group("S4").sized(5, torch.tensor([4, 5])).ragged  # a batch of sets: the largest has 5
    assert symwrap.get_group("SO3").sized(5) == symwrap.get_group("SO3")
    with pytest.raises(GroupElementError, match="call group.sized"):
        unsized.identity(2)


def test_set_sizes_up_to_eight_are_enumerated():
    assert symwrap.groups.PermutationGroup(8).elements().shape == (40320, 8)
    with pytest.raises(GroupElementError, match="S_9 has 362,880 elements, too many to enumerate .*limit is S_8"):
        symwrap.groups.PermutationGroup(9).elements()


def test_set_lengths_bounds():
    from symwrap.groups import PermutationGroup

    assert torch.equal(PermutationGroup(3, torch.tensor([0, 3])).lengths, torch.tensor([0, 3]))
    assert PermutationGroup(3, torch.tensor([3, 3], dtype=torch.int32)).lengths is None
    with pytest.raises(GroupElementError, match=r"in \[0, 3\] for sets of 3 members; got \[-1, 2\]"):
        PermutationGroup(3, torch.tensor([-1, 2]))
    with pytest.raises(GroupElementError, match="1-D integer tensor; got list"):
        PermutationGroup(3, [1, 2])


def test_ragged_sampling_and_restriction_on_any_device():
    group = symwrap.get_group("S").sized(4, torch.tensor([1, 3]))
    assert group.sample(4, device="meta").device.type == "meta"
    g = group.sample(400, generator=make_generator(2))
    assert torch.equal(g[0::2], torch.arange(4).expand(200, 4))  # one member: nothing moves
    assert torch.equal(g[1::2, 3], torch.full((200,), 3))
    # every permutation of the first three members is drawn for the rows of length 3
    assert torch.unique(g[1::2, :3], dim=0).shape[0] == 6
    fitted = group.fit_rows(torch.tensor([[3, 2, 1, 0], [3, 2, 1, 0]]))
    assert fitted.tolist() == [[0, 1, 2, 3], [2, 1, 0, 3]]
    with pytest.raises(GroupElementError, match="integer permutations"):
        group.fit_rows(torch.zeros(2, 4))


# --- direct products ----------------------------------------------------------------------------------------------
def test_product_elements_run_through_the_last_factor_first():
    group = symwrap.get_group("C4xS3")
    assert group.name == "C4xS3" and group.order == 24 and not group.special and group.dim == 2
    rotation, permutation = group.elements()
    assert torch.equal(rotation, torch.arange(4).repeat_interleave(6))
    assert torch.equal(permutation, symwrap.get_group("S3").elements().repeat(4, 1))
    assert torch.equal(group.index((rotation, permutation)), torch.arange(24))
    assert group.elements(device="meta")[1].device.type == "meta"
    assert symwrap.get_group("SO3xS").order is None and symwrap.get_group("C4xS").order is None


def test_product_attributes_come_from_the_factors():
    group = symwrap.get_group("SO3xS")
    assert group.has_linear and group.has_permutation and not group.has_translation and group.dim == 3
    assert group.needs_size and not group.special and not group.is_finite
    bound = group.sized(4)
    assert bound.name == "SO3xS" and not bound.needs_size and bound.factors[1].n == 4 and not bound.ragged
    assert symwrap.get_group("SE3xS4").special is False
    assert symwrap.groups.ProductGroup([symwrap.get_group("SO3"), symwrap.get_group("T3")]).special
    assert not symwrap.get_group("SO3").ragged and not symwrap.get_group("S").sized(3).ragged


def test_product_parts_and_from_parts():
    group = symwrap.get_group("E3xS4")
    g = group.sample(3, generator=make_generator(0), dtype=torch.float64)
    assert torch.equal(group.linear_part(g), g[0][:, :3, :3]) and torch.equal(group.translation_part(g), g[0][:, :3, 3])
    assert group.linear_part(g, dtype=torch.float32).dtype == torch.float32
    assert group.translation_part(g, dtype=torch.float32).dtype == torch.float32
    assert group.permutation_part(g) is g[1]
    rebuilt = group.from_parts(linear=group.linear_part(g), translation=group.translation_part(g),
                               permutation=g[1])
    assert group.allclose(rebuilt, g, atol=0)
    rotations = symwrap.get_group("SO3xS4")
    only_linear = rotations.from_parts(linear=g[0][:, :3, :3])
    assert torch.equal(only_linear[1], torch.arange(4).expand(3, 4))  # the missing factor is the identity
    only_perm = rotations.from_parts(permutation=g[1].to("meta"))
    assert only_perm[0].device.type == "meta" and only_perm[0].dtype == torch.get_default_dtype()
    only_perm = rotations.from_parts(permutation=g[1])
    assert torch.equal(only_perm[0], torch.eye(3).expand(3, 3, 3))
    shifted = symwrap.get_group("T3xS4").from_parts(permutation=g[1])
    assert torch.equal(shifted[0], torch.zeros(3, 3))
    assert symwrap.get_group("T3xS4").translation_part(shifted).dtype == torch.get_default_dtype()
    assert symwrap.get_group("T3xS4").linear_part(shifted) is None


def test_product_allclose_compares_every_factor():
    group = symwrap.get_group("SO3xS4")
    g = group.sample(2, generator=make_generator(1), dtype=torch.float64)
    assert group.allclose(g, g)
    assert group.allclose(g, (g[0] + 5e-6, g[1])) and not group.allclose(g, (g[0] + 5e-5, g[1]))
    assert group.allclose(g, (g[0] + 5e-5, g[1]), atol=1e-4)
    assert not group.allclose(g, (g[0], group.inverse(g)[1].roll(1, 1)))


@pytest.mark.parametrize("method", ["compose", "inverse", "linear_part", "index", "fit_rows", "check_element"])
def test_product_elements_must_be_tuples_of_one_batch_per_factor(method):
    group = symwrap.get_group("C4xS4")
    g = group.identity(2)
    args = (g[0], g) if method == "compose" else (g[0],)
    with pytest.raises(GroupElementError, match="elements of C4xS4 are tuples of 2 batches, one per factor; got Tens"):
        getattr(group, method)(*args)
    with pytest.raises(GroupElementError, match="got tuple"):
        getattr(group, method)(*((g[:1], g) if method == "compose" else (g[:1],)))
    if method == "compose":
        with pytest.raises(GroupElementError, match="got Tensor"):
            group.compose(g, g[1])
    if method == "check_element":
        with pytest.raises(GroupElementError, match=r"elements of S4 are \(B, N\)"):
            group.check_element((g[0], g[1].float()))
        with pytest.raises(GroupElementError, match="elements of C4 are"):
            group.check_element((g[0].float(), g[1]))


def test_products_that_cannot_be_formed_are_refused():
    with pytest.raises(IncompatibleGroupError, match="a product needs at least two factors; got 1"):
        symwrap.groups.ProductGroup([symwrap.get_group("SO3")])
    with pytest.raises(IncompatibleGroupError, match=r"factors \['E3', 'T3'\] of 'E3xT3' both act by translation"):
        symwrap.get_group("E3xT3")
    with pytest.raises(IncompatibleGroupError, match=r"factors \['S', 'S4'\] of 'SxS4' both act by permutation"):
        symwrap.get_group("SxS4")
    with pytest.raises(IncompatibleGroupError, match=r"both act by linear maps.*Use E3 or SE3"):
        symwrap.get_group("C4xSO2")
    with pytest.raises(IncompatibleGroupError, match=r"'C4xT3' act on spaces of different dimensions \{2, 3\}"):
        symwrap.get_group("C4xT3")


# --- the registry -------------------------------------------------------------------------------------------------
def test_registry_lists_every_name_sorted_and_reads_patterns():
    names = symwrap.list_groups()
    assert names == sorted(names) and {"C{n}", "D{n}", "S{n}", "S", "SO3", "E3", "Mz"} <= set(names)
    assert symwrap.get_group(" c12 ").order == 12 and symwrap.get_group("D7").order == 14
    assert symwrap.get_group("S6").n == 6 and symwrap.get_group("S").n is None
    assert symwrap.get_group(" so2z ").name == "SO2z"
    assert symwrap.get_group(" SO3xS ").name == "SO3xS"
    for name in ["C", "C4a", "xC4", "C4x", "C4xxS", "CnxS", "SO3xSO4"]:
        with pytest.raises(UnknownGroupError, match="Products are written with 'x'"):
            symwrap.get_group(name)
    with pytest.raises(UnknownGroupError, match="Pass a group name or a symwrap.groups.Group"):
        symwrap.get_group(None)


def test_registering_patterns_and_overriding():
    calls = []

    @symwrap.register_group("Q{n}")
    def quaternion_like(n):
        calls.append(n)
        return symwrap.groups.CyclicGroup(2 * n)

    assert "Q{n}" in symwrap.list_groups()
    assert symwrap.get_group("q3").order == 6 and calls == [3]
    assert symwrap.get_group("Q3xS").order is None
    with pytest.raises(RegistryError, match=r"already registered as 'q\{n\}'; pass override=True"):
        symwrap.register_group("q{n}")(quaternion_like)
    symwrap.register_group("Q{n}", override=True)(lambda n: symwrap.groups.CyclicGroup(n))
    assert symwrap.get_group("Q3").order == 3
    symwrap.register_group("SO3", override=True)(lambda: symwrap.groups.CyclicGroup(5))
    assert symwrap.get_group("so3").order == 5
    with pytest.raises(RegistryError, match=r"group name 'Ax\{n\}' contains 'x'"):
        symwrap.register_group("Ax{n}")


# --- subgroups of O(3) ----------------------------------------------------------------------------------------------
def test_axial_rotations_about_x_and_their_angles():
    group = symwrap.groups.AxialRotations("x")
    assert group.name == "SO2x" and group.special and group.dim == 3
    rotations = group.sample(20000, generator=make_generator(7), dtype=torch.float64)
    assert torch.equal(rotations[:, 0], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64).expand(20000, 3))
    angle = torch.atan2(rotations[:, 2, 1], rotations[:, 1, 1]).numpy()  # y turns towards z
    assert stats.kstest(angle, "uniform", args=(-math.pi, 2 * math.pi)).pvalue > 1e-3
    quarter = group.rotation(torch.tensor([math.pi / 2], dtype=torch.float64))[0]
    assert torch.allclose(quarter, torch.tensor([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=torch.float64), atol=1e-15)
    assert torch.equal(group.lie_algebra(dtype=torch.float64)[0],
                       torch.tensor([[0.0, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=torch.float64))
    assert group.lie_algebra(device="meta").device.type == "meta"
    with pytest.raises(symwrap.errors.ConfigError, match="axis must be one of 'x', 'y', 'z'; got 'w'"):
        symwrap.groups.AxialRotations("w")
    for not_an_axis in ["xy", "", 0]:
        with pytest.raises(symwrap.errors.ConfigError, match=f"got {not_an_axis!r}"):
            symwrap.groups.PlaneReflection(not_an_axis)


@pytest.mark.parametrize("axis", ["x", "y", "z"])
def test_plane_reflections_list_the_identity_first_and_are_sampled_evenly(axis):
    group = symwrap.groups.PlaneReflection(axis)
    assert group.name == f"M{axis}" and group.order == 2 and group.is_finite
    mirror = torch.ones(3, dtype=torch.float64)
    mirror["xyz".index(axis)] = -1.0
    listed = group.elements(dtype=torch.float64)
    assert torch.equal(listed, torch.stack([torch.eye(3, dtype=torch.float64), torch.diag(mirror)]))
    assert torch.equal(group.index(listed.flip(0)), torch.tensor([1, 0]))
    g = group.sample(4000, generator=make_generator(8))
    flipped = float((torch.linalg.det(g) < 0).double().mean())
    assert abs(flipped - 0.5) < 0.03
    with pytest.raises(GroupElementError, match="not a matrix Lie group"):
        group.lie_algebra()


# --- what every group shares ---------------------------------------------------------------------------------------
def test_groups_compare_by_kind_and_name():
    assert symwrap.get_group("C4") == symwrap.groups.CyclicGroup(4) and hash(symwrap.get_group("c4")) == hash(
        symwrap.groups.CyclicGroup(4))
    assert symwrap.get_group("C4") != symwrap.get_group("C5") and symwrap.get_group("C4") != "C4"
    assert symwrap.get_group("D4") != symwrap.groups.CyclicGroup(8)
    assert len({symwrap.get_group("SO3"), symwrap.get_group("so3"), symwrap.get_group("O3")}) == 2
    assert repr(symwrap.get_group("SO3xS")) == "ProductGroup('SO3xS')"
    assert symwrap.get_group("C4").is_finite and not symwrap.get_group("SO2").is_finite


def test_what_a_group_cannot_do_is_said():
    with pytest.raises(GroupElementError, match="'SO3' is infinite and has no element list; use group.sample"):
        symwrap.get_group("SO3").elements()
    with pytest.raises(GroupElementError, match="'SO3' is infinite: its elements have no index"):
        symwrap.get_group("SO3").index(torch.eye(3)[None])
    with pytest.raises(GroupElementError, match="'C4' cannot build elements from parts"):
        symwrap.get_group("C4").from_parts(linear=torch.eye(2)[None])
    with pytest.raises(GroupElementError, match="'D4' is not a matrix Lie group; lie_derivative supports"):
        symwrap.get_group("D4").lie_algebra()
    with pytest.raises(GroupElementError, match="'T3xS4' has no matrix representation"):
        symwrap.get_group("T3xS4").matrix(symwrap.get_group("T3xS4").identity(1))
    assert torch.equal(symwrap.get_group("SO3xS4").matrix(symwrap.get_group("SO3xS4").identity(1)), torch.eye(3)[None])
    assert symwrap.get_group("C4").permutation_part(torch.tensor([1])) is None
    assert symwrap.get_group("C4").translation_part(torch.tensor([1])) is None


def test_index_of_listed_matrices_finds_the_nearest_and_refuses_others():
    group = symwrap.get_group("Mz")
    listed = group.elements(dtype=torch.float64)
    nudge = torch.zeros(2, 3, 3, dtype=torch.float64)
    nudge[:, 0, 1] = 1.0
    assert torch.equal(group.index(listed + 5e-5 * nudge), torch.tensor([0, 1]))  # round-off is forgiven ...
    assert torch.equal(group.index(listed.float()), torch.tensor([0, 1]))
    with pytest.raises(GroupElementError, match="tensor is not an element of 'Mz'"):
        group.index(listed + 2e-4 * nudge)  # ... anything more is not an element


def test_allclose_defaults_to_the_promised_tolerance():
    group = symwrap.get_group("SO3")
    g = group.sample(2, generator=make_generator(0), dtype=torch.float64)
    assert group.allclose(g, g + 9e-6) and not group.allclose(g, g + 2e-5)
    assert group.allclose(g, g + 2e-5, atol=1e-4)
    assert group.allclose(g.float(), g)  # compared in float64 whatever the dtypes


def test_batch_helpers_work_on_products():
    from symwrap.groups import cat, repeat_each, tile, tree_map

    group = symwrap.get_group("SO3xS3")
    g = group.sample(2, generator=make_generator(0), dtype=torch.float64)
    a, b = select(g, torch.tensor([0])), select(g, torch.tensor([1]))
    assert group.allclose(repeat_each(g, 2), cat([a, a, b, b]), atol=0)
    assert group.allclose(tile(g, 3), cat([a, b, a, b, a, b]), atol=0)
    assert element_batch_size(tile(g, 3)) == 6 and element_batch_size(g[1]) == 2
    assert group.allclose(cat([a, b]), g, atol=0)
    assert group.allclose(select(g, torch.tensor([1, 0])), cat([b, a]), atol=0)
    doubled = tree_map(lambda t: 2 * t, g)
    assert isinstance(doubled, tuple) and torch.equal(doubled[0], 2 * g[0]) and torch.equal(doubled[1], 2 * g[1])
    nested = tree_map(lambda t: t + 1, (g[1], (g[1], g[1])))
    assert torch.equal(nested[1][1], g[1] + 1)
    assert torch.equal(tile(torch.tensor([3, 4]), 2), torch.tensor([3, 4, 3, 4]))
    assert torch.equal(repeat_each(torch.tensor([3, 4]), 2), torch.tensor([3, 3, 4, 4]))


def test_finite_groups_index_and_restrict_on_the_device_of_their_elements():
    for name in ["C4", "D4", "S4", "C4xS4"]:
        group = symwrap.get_group(name)
        index = group.index(group.elements(device="meta"))
        assert index.device.type == "meta" and index.dtype == torch.long
        assert group.index(group.elements()).dtype == torch.long
    ragged = symwrap.get_group("S").sized(4, torch.tensor([2, 4]))
    assert ragged.fit_rows(ragged.elements(device="meta")).device.type == "meta"
    assert group_base._device_of((torch.zeros(1, device="meta"), torch.zeros(1))).type == "meta"
    assert group_base._device_of(torch.zeros(1, device="meta")).type == "meta"
    mirror = symwrap.get_group("Mz")
    assert mirror.index(torch.zeros(0, 3, 3)).shape == (0,)  # an empty batch has no elements to look up


def test_default_parameters():
    assert symwrap.groups.PlaneReflection().name == "Mz" and symwrap.groups.AxialRotations().name == "SO2z"
    for group in (symwrap.groups.TranslationGroup(), symwrap.groups.EuclideanGroup(special=True)):
        shifts = group.translation_part(group.sample(20000, generator=make_generator(9), dtype=torch.float64))
        assert shifts.shape == (20000, 3)
        assert torch.allclose(shifts.std(0), torch.ones(3, dtype=torch.float64), atol=0.03)
    assert symwrap.groups.TranslationGroup().name == "T3" and symwrap.get_group("T3").name == "T3"


# --- issue 15: survivors of mutation testing ---------------------------------------------------------------------
# --- messages that tell the user what to do -------------------------------------------------------------------------
def test_messages_say_how_to_fix_the_call_in_full():
    """These errors are the only documentation a user sees at the failing call: each is checked word for word."""
    with pytest.raises(IncompatibleGroupError, match=re.escape(
            "factors ['SO3', 'O3'] of 'SO3xO3' both act by linear maps; a direct product needs factors that act on "
            "different parts (rotations x permutations, ...). Use E3 or SE3 for rotations with translations.") + "$"):
        symwrap.get_group("SO3xO3")
    with pytest.raises(UnknownGroupError, match=r"^unknown group 'SO4'; expected one of: C\{n\}, .*\. "
                                                r"Products are written with 'x', e\.g\. 'SO3xS'\.$"):
        symwrap.get_group("SO4")
    with pytest.raises(UnknownGroupError, match=r"^unknown group 3; expected one of: C\{n\}, .*\. "
                                                r"Pass a group name or a symwrap\.groups\.Group\.$"):
        symwrap.get_group(3)
    with pytest.raises(GroupElementError, match=re.escape(
            "the group 'S' takes its set size from the data: call group.sized(N) "
            "(wrap() and the metrics do it for you)") + "$"):
        symwrap.get_group("S").sample(2)
    with pytest.raises(GroupElementError, match=re.escape(
            "per-set lengths need a set size n: PermutationGroup(n, lengths)") + "$"):
        symwrap.groups.PermutationGroup(None, torch.tensor([1, 2]))
    with pytest.raises(GroupElementError, match=re.escape(
            "group 'SO3' is infinite and has no element list; use group.sample(n) for Monte Carlo averaging "
            "instead.") + "$"):
        symwrap.get_group("SO3").elements()


@pytest.mark.parametrize("lengths, shown", [
    (torch.tensor([[1, 2]]), "shape (1, 2), dtype torch.int64"),
    (torch.tensor([1.0, 2.0]), "shape (2,), dtype torch.float32"),
    ((1, 2), "tuple"),
])
def test_bad_set_lengths_are_described_by_shape_and_dtype(lengths, shown):
    """A wrong lengths tensor is shown by its shape and dtype (what is wrong with it), anything else by its type."""
    with pytest.raises(GroupElementError, match=re.escape(
            f"set lengths must be a non-empty 1-D integer tensor; got {shown}") + "$"):
        symwrap.groups.PermutationGroup(3, lengths)


def test_euclidean_elements_that_are_not_tensors_are_refused_by_name():
    """check_element refuses a non-tensor with a GroupElementError naming its type (not an AttributeError)."""
    group = symwrap.get_group("E3")
    for bad, shown in [([[1.0]], "list"), (None, "NoneType"), (torch.eye(4), "(4, 4)"),
                       (torch.eye(3)[None], "(1, 3, 3)")]:
        with pytest.raises(GroupElementError, match=re.escape(
                f"elements of E3 are (B, 4, 4) homogeneous matrices [[R, t], [0, 1]]; got {shown}") + "$"):
            group.check_element(bad)


# --- S_1, a product without a space, a group whose elements are tuples ---------------------------------------------
def test_the_symmetric_group_of_one_member_is_the_trivial_group():
    """S_n is defined for n >= 1: S1 has one element, the identity, and every sample is it."""
    for group in (symwrap.groups.PermutationGroup(1), symwrap.get_group("S1"), symwrap.get_group("S").sized(1)):
        assert group.order == 1 and torch.equal(group.elements(), torch.tensor([[0]]))
        assert torch.equal(group.sample(3, generator=make_generator(0)), torch.zeros(3, 1, dtype=torch.long))
        assert torch.equal(group.index(group.identity(2)), torch.tensor([0, 0]))


class _Klein(Group):
    """C2 x C2 written by hand with tuple elements ((B, 1), (B, 1)): it relies on Group's own index and allclose."""

    name = "V4"
    order = 4

    def sample(self, n, *, generator=None, device=None, dtype=None):
        return tuple(torch.randint(2, (n, 1), generator=generator, device=device) for _ in range(2))

    def identity(self, n, *, device=None, dtype=None):
        return tuple(torch.zeros(n, 1, dtype=torch.long, device=device) for _ in range(2))

    def compose(self, g, h):
        return tuple((a + b) % 2 for a, b in zip(g, h))

    def inverse(self, g):
        return g

    def elements(self, *, device=None, dtype=None):
        return (torch.tensor([[0], [0], [1], [1]], device=device), torch.tensor([[0], [1], [0], [1]], device=device))


def test_a_custom_group_with_tuple_elements_gets_index_and_allclose_from_group():
    """Group.index and Group.allclose flatten tuple elements part by part (one row per element)."""
    group = _Klein()
    listed = group.elements()
    assert torch.equal(group.index(listed), torch.arange(4))
    g = (torch.tensor([[1], [0], [1]]), torch.tensor([[1], [1], [0]]))
    assert torch.equal(group.index(g), torch.tensor([3, 1, 2]))
    assert torch.equal(group.index(group.compose(g, g)), torch.zeros(3, dtype=torch.long))
    assert group.allclose(g, (g[0].double(), g[1])) and not group.allclose(g, (g[0], 1 - g[1]))
    with pytest.raises(GroupElementError, match="tensor is not an element of 'V4'"):
        group.index((torch.tensor([[0]]), torch.tensor([[2]])))
    # a factor that acts on no space leaves the product without a dimension
    product = symwrap.groups.ProductGroup([symwrap.get_group("S3"), group])
    assert product.dim is None and product.order == 24 and product.name == "S3xV4"


def test_cat_of_a_single_batch_is_that_batch():
    """cat([g]) is g, for plain and product elements."""
    from symwrap.groups import cat

    g = symwrap.get_group("SO3xS3").sample(2, generator=make_generator(0))
    once = cat([g])
    assert isinstance(once, tuple) and torch.equal(once[0], g[0]) and torch.equal(once[1], g[1])
    assert torch.equal(cat([g[1]]), g[1])
    assert element_batch_size(cat([g, g])) == 4


# --- dtypes follow the request ----------------------------------------------------------------------------------------
def test_product_from_parts_builds_missing_factors_in_the_dtype_of_the_given_parts():
    """A factor with no given part is the identity in the given floating dtype (the default one next to a long
    permutation), on the given device."""
    group = symwrap.groups.ProductGroup([symwrap.get_group("SO3"), symwrap.get_group("T3")])
    rotation = symwrap.get_group("SO3").sample(2, generator=make_generator(0), dtype=torch.float64)
    rotated = group.from_parts(linear=rotation)
    assert rotated[1].dtype == torch.float64 and torch.equal(rotated[1], torch.zeros(2, 3, dtype=torch.float64))
    shifted = group.from_parts(translation=torch.ones(2, 3, dtype=torch.float16))
    assert shifted[0].dtype == torch.float16
    assert torch.equal(shifted[0], torch.eye(3, dtype=torch.float16).expand(2, 3, 3))
    permuted = symwrap.get_group("SO3xS3").from_parts(permutation=torch.tensor([[2, 0, 1]]))
    assert permuted[0].dtype == torch.get_default_dtype()


@pytest.mark.parametrize("group", [symwrap.get_group("O2z"), symwrap.get_group("O2y"), symwrap.groups.AxialO2("x")],
                         ids=lambda g: g.name)
def test_o2_about_an_axis_fixes_the_axis_and_is_half_reflections(group):
    axis = "xyz".index(group.name[-1])
    assert not group.special and group.dim == 3 and group.order is None
    elements = group.sample(20000, generator=make_generator(8), dtype=torch.float64)
    unit = torch.eye(3, dtype=torch.float64)[axis]
    assert torch.allclose(elements @ unit, unit.expand(20000, 3), atol=1e-12)  # the axis stays put
    assert torch.allclose(unit @ elements, unit.expand(20000, 3), atol=1e-12)  # and nothing is moved onto it
    det = torch.linalg.det(elements)
    assert torch.allclose(det.abs(), torch.ones_like(det), atol=1e-12)
    fraction = float((det < 0).double().mean())
    assert abs(fraction - 0.5) < 4 * math.sqrt(0.25 / 20000)
    first, second = (axis + 1) % 3, (axis + 2) % 3  # where the in-plane direction `first` goes: uniform on the circle
    angle = torch.atan2(elements[:, second, first], elements[:, first, first]).numpy()
    assert stats.kstest(angle, "uniform", args=(-math.pi, 2 * math.pi)).pvalue > 1e-3
    reflections = elements[det < 0]
    assert torch.allclose(reflections @ reflections, torch.eye(3, dtype=torch.float64).expand_as(reflections),
                          atol=1e-12)  # every improper element is a mirror (order 2)


def test_o2_about_x_is_built_directly_and_contains_so2_about_its_axis():
    assert symwrap.groups.AxialO2("x").name == "O2x" and symwrap.get_group("o2z").name == "O2z"
    with pytest.raises(UnknownGroupError):
        symwrap.get_group("O2w")
    with pytest.raises(symwrap.errors.ConfigError, match="axis must be one of 'x', 'y', 'z'; got 'w'"):
        symwrap.groups.AxialO2("w")
    rotations = symwrap.get_group("SO2z").sample(8, generator=make_generator(9), dtype=torch.float64)
    o2z = symwrap.get_group("O2z")
    assert torch.allclose(o2z.exp(o2z.lie_algebra(dtype=torch.float64) * 0.7),
                          symwrap.get_group("SO2z").rotation(torch.tensor([0.7], dtype=torch.float64)), atol=1e-12)
    assert o2z.allclose(o2z.compose(rotations, o2z.inverse(rotations)), o2z.identity(8, dtype=torch.float64))


LIE_BASIS_SHAPES = {"SO2": (1, 2, 2), "O2": (1, 2, 2), "SO3": (3, 3, 3), "O3": (3, 3, 3), "SO2z": (1, 3, 3),
                    "SO2y": (1, 3, 3), "O2z": (1, 3, 3), "O2y": (1, 3, 3),
                    "T3": (3, 3), "E3": (6, 4, 4), "SE3": (6, 4, 4)}


@pytest.mark.parametrize("name", LIE_BASIS_SHAPES)
def test_lie_algebra_bases_have_one_generator_per_dimension_in_the_requested_dtype(name):
    """k generators for a k-dimensional group (one for rotations about an axis), in the requested dtype."""
    group = symwrap.get_group(name)
    for dtype in (torch.float64, torch.float16):
        basis = group.lie_algebra(dtype=dtype)
        assert basis.shape == LIE_BASIS_SHAPES[name] and basis.dtype == dtype
        assert torch.linalg.matrix_rank(basis.reshape(basis.shape[0], -1).double()) == basis.shape[0]
    assert group.lie_algebra().dtype == torch.get_default_dtype()


def test_translation_matrices_keep_the_precision_of_the_translation():
    """T3.matrix of float64 translations is float64 and holds them exactly (0.1 is not a float32 number)."""
    t = torch.tensor([[0.1, -0.2, 0.3]], dtype=torch.float64)
    matrix = symwrap.get_group("T3").matrix(t)
    assert matrix.dtype == torch.float64 and torch.equal(matrix[:, :3, 3], t)
    assert torch.equal(matrix[:, :3, :3], torch.eye(3, dtype=torch.float64)[None])


@pytest.mark.parametrize("name", ["E3", "SE3"])
def test_euclidean_translations_are_drawn_in_the_requested_precision(name):
    """float64 samples are float64 draws, not float32 draws widened (which round-trip through float32)."""
    g = symwrap.get_group(name).sample(50, generator=make_generator(3), dtype=torch.float64)
    translation = symwrap.get_group(name).translation_part(g)
    assert translation.dtype == torch.float64
    assert not torch.equal(translation, translation.float().double())


def test_haar_rotations_default_to_three_dimensions():
    """haar_rotations(n) draws rotations of space; dim= picks another dimension."""
    from symwrap.groups import haar_rotations

    space = haar_rotations(5, generator=make_generator(0), dtype=torch.float64)
    assert space.shape == (5, 3, 3)
    assert torch.allclose(torch.linalg.det(space), torch.ones(5, dtype=torch.float64), atol=1e-12)
    assert haar_rotations(4, 2, generator=make_generator(0)).shape == (4, 2, 2)


# --- edge cases -------------------------------------------------------------------------------------------------------
def test_permutation_matrices_of_an_empty_batch():
    """An empty batch of permutations has an empty batch of N x N matrices (N from the elements, not their values)."""
    matrix = symwrap.get_group("S3").matrix(torch.zeros(0, 3, dtype=torch.long))
    assert matrix.shape == (0, 3, 3) and matrix.dtype == torch.get_default_dtype()


def test_index_tolerance_is_inclusive():
    """Group.index forgives a distance up to and including 1e-4 from a listed element."""
    group = symwrap.get_group("Mz")
    listed = group.elements(dtype=torch.float64)
    nudge = torch.zeros(2, 3, 3, dtype=torch.float64)
    nudge[:, 0, 1] = 1e-4  # distance exactly 1e-4
    assert torch.equal(group.index(listed + nudge), torch.tensor([0, 1]))


def test_groups_of_different_names_hash_differently():
    """Equal groups hash equally (checked elsewhere); different groups spread over different hashes."""
    names = ["SO3", "O3", "C4", "C5", "D4", "S4", "E3", "SO3xS"]
    assert len({hash(symwrap.get_group(n)) for n in names}) == len(names)


def test_listing_product_elements_raises_no_warning():
    """elements() of a product builds its index grid without torch's warning about meshgrid's indexing."""
    always = torch.is_warn_always_enabled()
    torch.set_warn_always(True)  # torch warns once per process otherwise
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            rotation, permutation = symwrap.get_group("C2xS3").elements()
    finally:
        torch.set_warn_always(always)
    assert torch.equal(rotation, torch.tensor([0] * 6 + [1] * 6))
