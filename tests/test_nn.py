"""symwrap.nn: Vector Neurons, Gram-Schmidt frames and the escnn canonicalizer CNNs."""

import sys

import pytest
import torch

import symwrap
from symwrap.actions.image import ImageAction, disc_mask
from symwrap.errors import ConfigError, IncompatibleGroupError, MissingDependencyError, ShapeError
from symwrap.metrics import equivariance_error
from symwrap.nn import (
    VNEdgeConv,
    VNFrameNet,
    VNLeakyReLU,
    VNLinear,
    VNLinearLeakyReLU,
    VNMeanPool,
    complete_frame,
    gram_schmidt,
)
from symwrap.nn.escnn_canonicalizers import symmetric_downsample

F64 = torch.float64
EYE = torch.eye(3, dtype=F64)


def sample(group: str, n: int) -> torch.Tensor:
    return symwrap.get_group(group).sample(n, dtype=F64)


def rotate_features(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """R applied to every vector of VN features (B, C, 3, ...)."""
    return torch.einsum("bij,bcj...->bci...", rotation, x)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


def assert_orthogonal(frames: torch.Tensor, atol: float = 1e-6) -> None:
    eye = torch.eye(3, dtype=frames.dtype).expand_as(frames)
    assert torch.isfinite(frames).all()
    torch.testing.assert_close(frames.transpose(-1, -2) @ frames, eye, atol=atol, rtol=0)


# --- Vector Neurons -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layer",
    [VNLinear(4, 6), VNLeakyReLU(4), VNLeakyReLU(4, share_nonlinearity=True), VNLinearLeakyReLU(4, 6),
     VNEdgeConv(4, 6, k=5), VNMeanPool()],
    ids=lambda layer: type(layer).__name__,
)
def test_vn_layers_commute_with_o3(layer):
    layer = layer.double()
    x = torch.randn(3, 4, 3, 12, dtype=F64)
    rotation = sample("O3", 3)
    assert relative(layer(rotate_features(x, rotation)), rotate_features(layer(x), rotation)) < 1e-12


@pytest.mark.parametrize("k_neighbors", [None, 6])
def test_frame_net_is_o3_equivariant_translation_and_permutation_invariant(k_neighbors):
    net = VNFrameNet(hidden=16, layers=3, k_neighbors=k_neighbors).double()
    points = torch.randn(4, 40, 3, dtype=F64)
    vectors = net(points)
    assert vectors.shape == (4, 3, 3)
    rotation, shift = sample("O3", 4), torch.randn(4, 1, 3, dtype=F64)
    assert relative(net(points @ rotation.transpose(1, 2)), rotation @ vectors) < 1e-10
    assert relative(net(points + shift), vectors) < 1e-10
    assert relative(net(points * 3.0), vectors) < 1e-10
    assert relative(net(points[:, torch.randperm(40)]), vectors) < 1e-10


@pytest.mark.parametrize("k_neighbors", [None, 4])
def test_planar_frame_net_is_o2_equivariant_translation_and_permutation_invariant(k_neighbors):
    net = VNFrameNet(hidden=16, k_neighbors=k_neighbors, dim=2).double()
    points = torch.randn(6, 20, 2, dtype=F64)
    vectors = net(points)
    assert vectors.shape == (6, 2, 2)
    rotation, shift = sample("O2", 6), torch.randn(6, 1, 2, dtype=F64)
    assert (torch.linalg.det(rotation) < 0).any()  # reflections among them
    assert relative(net(points @ rotation.transpose(1, 2) + shift), rotation @ vectors) < 1e-10
    assert relative(net(points[:, torch.randperm(20)]), vectors) < 1e-10
    with pytest.raises(ShapeError, match=r"\(B, N, 2\)"):
        net(torch.randn(2, 5, 3, dtype=F64))
    with pytest.raises(ConfigError, match="2 or 3 dimensions; got dim=4"):
        VNFrameNet(dim=4)


def test_frame_net_float32_default():
    """The bare network in float32 turns with its input up to its rounding (about 1e-5: its pooled vectors are
    short sums of long terms); the canonicalizer's frame, computed in float64, keeps the library's float32
    promise of 1e-5."""
    from symwrap.strategies.canonicalization.canonicalizers import VectorNeuronFrame

    net = VNFrameNet()
    points = torch.randn(2, 64, 3)
    rotation = sample("SO3", 2)
    turned = (points.double() @ rotation.transpose(1, 2)).float()
    assert relative(net(turned), rotation.float() @ net(points)) < 1e-4
    frame = VectorNeuronFrame(special=True)
    assert frame(points).dtype == torch.float32
    assert relative(frame(turned), rotation.float() @ frame(points)) < 1e-5


# --- Gram-Schmidt -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("special", [True, False])
def test_gram_schmidt_gives_orthonormal_frames(special):
    vectors = torch.randn(64, 3, 3, dtype=F64)
    frames = gram_schmidt(vectors, special=special)
    assert_orthogonal(frames, atol=1e-12)
    # the first column keeps its direction, the second stays in the span of the first two
    torch.testing.assert_close(frames[..., 0], vectors[..., 0] / vectors[..., 0].norm(dim=-1, keepdim=True))
    assert ((frames[..., 1] * vectors[..., 1]).sum(-1) > 0).all()
    det = torch.linalg.det(frames)
    if special:
        torch.testing.assert_close(det, torch.ones(64, dtype=F64))
    else:  # det is the orientation of the input vectors
        torch.testing.assert_close(det, torch.linalg.det(vectors).sign())
        assert (det < 0).any() and (det > 0).any()


@pytest.mark.parametrize(("group", "special"), [("SO3", True), ("O3", False)])
def test_gram_schmidt_is_equivariant(group, special):
    vectors, rotation = torch.randn(32, 3, 3, dtype=F64), sample(group, 32)
    moved = gram_schmidt(rotation @ vectors, special=special)
    torch.testing.assert_close(moved, rotation @ gram_schmidt(vectors, special=special), atol=1e-12, rtol=0)


@pytest.mark.parametrize(("group", "special"), [("SO3", True), ("O3", False)])
@pytest.mark.parametrize("k_neighbors", [None, 6])
def test_frames_from_points_are_equivariant(group, special, k_neighbors):
    net = VNFrameNet(hidden=16, k_neighbors=k_neighbors).double()
    points, rotation = torch.randn(8, 30, 3, dtype=F64), sample(group, 8)
    frame = gram_schmidt(net(points), special=special)
    moved = gram_schmidt(net(points @ rotation.transpose(1, 2) + 5.0), special=special)
    torch.testing.assert_close(moved, rotation @ frame, atol=1e-10, rtol=0)
    assert_orthogonal(frame, atol=1e-12)
    expected_det = torch.ones(8, dtype=F64) if special else torch.linalg.det(rotation)
    torch.testing.assert_close(torch.linalg.det(moved) * torch.linalg.det(frame), expected_det)


def test_gram_schmidt_degenerate_rows_are_valid_frames_with_finite_gradients():
    a = torch.tensor([0.3, -1.2, 0.5], dtype=F64)
    vectors = torch.stack([
        torch.zeros(3, 3, dtype=F64),  # everything vanishes: the identity
        torch.stack([torch.zeros(3, dtype=F64), a, a], -1),  # vanishing first vector: the identity too
        torch.stack([a, 2 * a, torch.zeros(3, dtype=F64)], -1),  # parallel: completed from the first
        torch.stack([a, torch.zeros(3, dtype=F64), -a], -1),  # zero second vector
        torch.stack([a, -a * 1e3, torch.ones(3, dtype=F64)], -1),  # parallel, large
    ]).requires_grad_(True)
    for special in (True, False):
        frames = gram_schmidt(vectors, special=special)
        assert_orthogonal(frames, atol=1e-12)
        torch.testing.assert_close(frames[:2], EYE.expand(2, 3, 3))
        torch.testing.assert_close(frames[2:, :, 0], (a / a.norm()).expand(3, 3))
        torch.testing.assert_close(frames[2:4], complete_frame(a / a.norm()).expand(2, 3, 3))
        (grad,) = torch.autograd.grad(frames.sum(), vectors)
        assert torch.isfinite(grad).all()
    assert torch.linalg.det(complete_frame(a / a.norm())) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "points",
    [
        torch.ones(2, 10, 3),  # coincident
        torch.randn(2, 1, 3),  # a single point
        torch.zeros(2, 7, 3),
        torch.linspace(-1, 1, 9)[None, :, None] * torch.tensor([1.0, -2.0, 0.5]).expand(2, 9, 3),  # collinear
        torch.randn(2, 6, 3).repeat(1, 2, 1) * torch.tensor([1.0] * 6 + [-1.0] * 6)[None, :, None],  # x -> -x
    ],
    ids=["coincident", "one-point", "zeros", "collinear", "centrosymmetric"],
)
@pytest.mark.parametrize("k_neighbors", [None, 4])
def test_degenerate_point_clouds_give_finite_frames_and_gradients(points, k_neighbors):
    net = VNFrameNet(hidden=8, k_neighbors=k_neighbors)
    points = points.clone().requires_grad_(True)
    vectors = net(points)
    assert torch.isfinite(vectors).all()
    for special in (True, False):
        frames = gram_schmidt(vectors, special=special)
        assert_orthogonal(frames)
        (grad,) = torch.autograd.grad(frames.sum() + vectors.sum(), points, retain_graph=True)
        assert torch.isfinite(grad).all()
        param_grads = torch.autograd.grad(frames.sum() + vectors.sum(), list(net.parameters()), retain_graph=True,
                                          allow_unused=True)
        assert all(g is None or torch.isfinite(g).all() for g in param_grads)


def test_shape_errors():
    with pytest.raises(ShapeError, match=r"\(B, N, 3\)"):
        VNFrameNet()(torch.randn(2, 3, 10))
    with pytest.raises(ShapeError, match=r"\(\.\.\., 3, 3\)"):
        gram_schmidt(torch.randn(2, 3, 2), special=True)
    with pytest.raises(ConfigError, match="layers >= 1"):
        VNFrameNet(layers=0)


# --- image CNNs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 5, 6, 7, 8, 29])
def test_symmetric_downsample_commutes_with_quarter_turns_and_flips(size):
    x = torch.randn(2, 3, size, size)
    for move in (lambda t: torch.rot90(t, 1, (-2, -1)), lambda t: torch.flip(t, (-1,))):
        torch.testing.assert_close(symmetric_downsample(move(x)), move(symmetric_downsample(x)))
    assert symmetric_downsample(x).shape[-1] == (size + 1) // 2


def test_missing_escnn_raises_a_missing_dependency_error(monkeypatch):
    from symwrap.nn import RegularCanonicalizerCNN, VectorCanonicalizerCNN

    monkeypatch.setitem(sys.modules, "escnn", None)  # makes `import escnn` fail
    with pytest.raises(MissingDependencyError, match="symwrap\\[escnn\\]"):
        RegularCanonicalizerCNN("C4", 1)
    with pytest.raises(MissingDependencyError):
        VectorCanonicalizerCNN(1)


@pytest.fixture(scope="module")
def escnn_nets():
    pytest.importorskip("escnn")
    from symwrap.nn import RegularCanonicalizerCNN, VectorCanonicalizerCNN

    torch.manual_seed(0)
    return {
        "C4": RegularCanonicalizerCNN("C4", 3, hidden=8),
        "D4": RegularCanonicalizerCNN(symwrap.get_group("D4"), 3, hidden=8),
        "vector": VectorCanonicalizerCNN(3, hidden=8),
    }


@pytest.mark.parametrize("name", ["C4", "D4"])
def test_escnn_element_order_is_symwrap_order(name):
    """The hard-coded index convention: escnn's elements (flip axis 0) act on images like symwrap's elements
    of the same index, and escnn's regular basis vector i is element i."""
    pytest.importorskip("escnn")
    from escnn import gspaces
    from escnn import nn as enn

    from symwrap.nn.escnn_canonicalizers import FLIP_AXIS

    gspace = gspaces.flipRot2dOnR2(N=4, axis=FLIP_AXIS) if name == "D4" else gspaces.rot2dOnR2(N=4)
    group, action = symwrap.get_group(name), ImageAction()
    x = torch.randn(1, 1, 7, 7)
    field = enn.GeometricTensor(x, enn.FieldType(gspace, [gspace.trivial_repr]))
    elements = gspace.fibergroup.elements
    identity = elements.index(gspace.fibergroup.identity)
    for i, element in enumerate(elements):
        torch.testing.assert_close(field.transform(element).tensor, action.act(group, torch.tensor([i]), x))
        assert int(gspace.fibergroup.regular_representation(element)[:, identity].argmax()) == i


@pytest.mark.parametrize("name", ["C4", "D4"])
@pytest.mark.parametrize("size", [29, 32])
def test_regular_canonicalizer_is_exactly_equivariant(escnn_nets, name, size):
    net = escnn_nets[name]
    x = torch.randn(2, 3, size, size)
    scores = net(x)
    assert scores.shape == (2, symwrap.get_group(name).order)
    assert equivariance_error(net, x, name, input="image", output="regular") < 1e-5
    # a regular output is no invariant: the scores move
    assert equivariance_error(net, x, name, input="image", output="invariant") > 1e-2


@pytest.mark.parametrize("name", ["C4", "D4", "vector"])
def test_exported_network_matches(escnn_nets, name):
    net = escnn_nets[name]
    net.train()
    exported = net.export()
    assert net.training and not exported.training
    assert not any(type(module).__module__.startswith("escnn") for module in exported.modules())
    x = torch.randn(2, 3, 17, 17)
    torch.testing.assert_close(exported(x), net(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["regular", "vector", "steerable"])
def test_escnn_networks_keep_their_own_filter_bases(kind):
    """escnn caches filter-basis modules process-wide; a network converted to float64 (or moved to another
    device) must not convert the basis of every other network built with the same group and kernel."""
    pytest.importorskip("escnn")
    from symwrap.nn import RegularCanonicalizerCNN, SteerableCNN, VectorCanonicalizerCNN

    build = {"regular": lambda: RegularCanonicalizerCNN("C4", 1, hidden=2, layers=2),
             "vector": lambda: VectorCanonicalizerCNN(1, hidden=2, layers=2),
             "steerable": lambda: SteerableCNN("C4", 1, 3, hidden=2, layers=2)}[kind]
    first, second = build(), build()
    first.double()
    assert all(buffer.dtype == torch.float32 for buffer in second.buffers())
    x = torch.randn(1, 1, 9, 9)
    assert second(x).dtype == torch.float32 and first(x.double()).dtype == torch.float64


def blobs(batch: int, channels: int, size: int, count: int = 3) -> torch.Tensor:
    """Smooth oriented images: a few off-centre Gaussian blobs per image, inside the inscribed disc."""
    r = torch.arange(size) - (size - 1) / 2
    y, x = -r[:, None], r[None, :]
    centres = (torch.rand(batch, count, 2) - 0.5) * size / 2
    weights = torch.rand(batch, count, channels)
    distance2 = (x - centres[..., 0, None, None]) ** 2 + (y - centres[..., 1, None, None]) ** 2
    images = torch.einsum("bkc,bkhw->bchw", weights, torch.exp(-distance2 / (2 * (size / 8) ** 2)))
    return images * disc_mask(size)


def test_vector_canonicalizer_turns_with_the_image(escnn_nets):
    net = escnn_nets["vector"]
    x = blobs(4, 3, 33)
    assert net(x).shape == (4, 2)
    assert equivariance_error(net, x, "C4", input="image", output="vector") < 1e-5
    assert equivariance_error(net, torch.randn(2, 3, 29, 29), "C4", input="image", output="vector") < 1e-5
    # 45° turns are interpolated: only approximately equivariant (about 0.05-0.25 at initialisation)
    assert equivariance_error(net, x, "C8", input=ImageAction(mask="circle"), output="vector") < 0.4
    # and no reflection equivariance was asked for
    assert equivariance_error(net, x, "D4", input="image", output="vector") > 1e-2


def test_regular_canonicalizer_rejects_continuous_groups():
    pytest.importorskip("escnn")
    from symwrap.nn import RegularCanonicalizerCNN

    with pytest.raises(IncompatibleGroupError, match="C\\{n\\} or D\\{n\\}"):
        RegularCanonicalizerCNN("SO2", 1)
    with pytest.raises(ValueError, match="odd kernel_size"):
        RegularCanonicalizerCNN("C4", 1, kernel_size=4)


@pytest.mark.parametrize("name", ["C4", "vector"])
def test_image_cnns_name_both_channel_counts_when_images_do_not_fit(escnn_nets, name):
    """Built for 3 channels, given 1: a ShapeError saying so, from the escnn network and its plain-torch export,
    never escnn's own AssertionError."""
    for net in (escnn_nets[name], escnn_nets[name].export()):
        expected = r"built for images with 3 channel\(s\); got 1 channel\(s\).*in_channels=1"
        with pytest.raises(ShapeError, match=expected):
            net(torch.randn(2, 1, 9, 9))
        with pytest.raises(ShapeError, match=r"takes images \(B, C, H, W\); got \(3, 9, 9\)"):
            net(torch.randn(3, 9, 9))


def test_steerable_classifier_checks_the_channels_too():
    pytest.importorskip("escnn")
    from symwrap.nn import SteerableCNN

    teacher = SteerableCNN("C4", in_channels=1, num_classes=2, hidden=2, layers=1)
    assert teacher(torch.randn(2, 1, 7, 7)).shape == (2, 2)
    with pytest.raises(ShapeError, match=r"SteerableCNN was built for images with 1 channel\(s\); got 3"):
        teacher(torch.randn(2, 3, 7, 7))


def test_canonicalizer_cnns_check_their_sizes():
    pytest.importorskip("escnn")
    from symwrap.nn import RegularCanonicalizerCNN, VectorCanonicalizerCNN

    with pytest.raises(ConfigError, match="integer in_channels >= 1; got 0"):
        RegularCanonicalizerCNN("C4", 0)
    with pytest.raises(ConfigError, match="integer layers >= 1; got 0"):
        VectorCanonicalizerCNN(1, layers=0)
    with pytest.raises(ConfigError, match="n_sampled >= 3"):
        VectorCanonicalizerCNN(1, n_sampled=2)
