import math

import pytest
import torch
from helpers import GROUP_NAMES, concrete, make_generator
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

import symwrap
from symwrap.errors import GroupElementError, IncompatibleGroupError, RegistryError, UnknownGroupError
from symwrap.groups import Group, element_batch_size, select

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


def test_so2_angles_are_uniform():
    rotations = symwrap.get_group("SO2").sample(20000, generator=make_generator(4), dtype=torch.float64)
    angle = torch.atan2(rotations[:, 1, 0], rotations[:, 0, 0]).numpy()
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
