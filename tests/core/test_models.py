"""Tests for :mod:`jacnb.core.models` (architectures of Sokolic et al. 2017, Sec. VI)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from jacnb.core.models import (
    MODELS,
    WeightNormConv2d,
    WeightNormLinear,
    all_cnn_c,
    build_model,
    fully_connected,
    mnist_convnet,
    parameter_count,
    preact_resnet18,
    row_normalize,
    tiny_resnet,
    wide_resnet,
)

# ---------------------------------------------------------------------------------------------
# Hand formulas for parameter counts
# ---------------------------------------------------------------------------------------------


def _linear(i: int, o: int, bias: bool = True) -> int:
    return i * o + (o if bias else 0)


def _conv(i: int, o: int, k: int, bias: bool = True) -> int:
    return i * o * k * k + (o if bias else 0)


def _bn(c: int) -> int:
    return 2 * c


def _preact_block(i: int, o: int, stride: int, preactivate: bool = True) -> int:
    n = (_bn(i) if preactivate else 0) + _conv(i, o, 3, False) + _bn(o) + _conv(o, o, 3, False)
    if stride != 1 or i != o:
        n += _conv(i, o, 1, False)
    return n


def _fc_count(dims: list[int]) -> int:
    return sum(_linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))


# ---------------------------------------------------------------------------------------------
# row_normalize / weight normalization, eq. (45)
# ---------------------------------------------------------------------------------------------


def test_row_normalize_matrix_unit_rows_and_direction() -> None:
    torch.manual_seed(0)
    w = torch.randn(7, 5) * torch.rand(7, 1) * 10
    wn = row_normalize(w)
    assert wn.shape == w.shape
    torch.testing.assert_close(wn.norm(dim=1), torch.ones(7))
    # Same direction: wn = diag(w w^T)^{-1/2} w.
    d = torch.diag(w @ w.T).rsqrt()
    torch.testing.assert_close(wn, d[:, None] * w)
    # Frobenius norm = sqrt(#rows) (Sec. VI-A2).
    torch.testing.assert_close(wn.norm(), torch.tensor(7.0).sqrt())


def test_row_normalize_conv_filters() -> None:
    w = torch.randn(4, 3, 5, 5)
    wn = row_normalize(w)
    assert wn.shape == w.shape
    torch.testing.assert_close(wn.flatten(1).norm(dim=1), torch.ones(4))


def test_row_normalize_zero_row_is_finite() -> None:
    w = torch.zeros(2, 3)
    assert torch.isfinite(row_normalize(w)).all()


def test_row_normalize_rejects_vector() -> None:
    with pytest.raises(ValueError):
        row_normalize(torch.ones(3))


def test_weight_norm_linear_unit_rows_after_optimizer_step() -> None:
    torch.manual_seed(0)
    layer = WeightNormLinear(6, 4)
    assert not isinstance(layer.weight, nn.Parameter)
    before = layer.weight_raw.detach().clone()
    opt = torch.optim.SGD(layer.parameters(), lr=1.0)
    x = torch.randn(8, 6)
    loss = (layer(x) ** 2).sum() + layer(x).sum()
    loss.backward()
    opt.step()
    assert not torch.allclose(before, layer.weight_raw)
    torch.testing.assert_close(layer.weight.norm(dim=1), torch.ones(4))
    # Forward uses the effective (normalized) weight.
    torch.testing.assert_close(layer(x), x @ layer.weight.T + layer.bias)
    assert parameter_count(layer) == _linear(6, 4)


def test_weight_norm_conv2d() -> None:
    torch.manual_seed(0)
    conv = WeightNormConv2d(3, 5, 3, padding=1)
    x = torch.randn(2, 3, 8, 8)
    y = conv(x)
    assert y.shape == (2, 5, 8, 8)
    torch.testing.assert_close(conv.weight.flatten(1).norm(dim=1), torch.ones(5))
    ref = torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1)
    torch.testing.assert_close(y, ref)
    with torch.no_grad():
        conv.weight_raw.mul_(3.7)
    torch.testing.assert_close(conv(x), y)


def test_weight_norm_fc_invariant_to_raw_weight_scaling() -> None:
    torch.manual_seed(0)
    model = fully_connected(10, 3, depth=3, width=12, weight_norm=True)
    wn_layers = [m for m in model if isinstance(m, WeightNormLinear)]
    assert len(wn_layers) == 3  # every layer including the softmax layer
    x = torch.randn(5, 10)
    y = model(x)
    with torch.no_grad():
        wn_layers[1].weight_raw.mul_(17.0)
        # Per-row positive scaling too.
        wn_layers[2].weight_raw.mul_(torch.rand(3, 1) + 0.1)
    torch.testing.assert_close(model(x), y)


# ---------------------------------------------------------------------------------------------
# Fully connected DNN, Sec. VI-A
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_fully_connected_shapes_and_counts(depth: int) -> None:
    model = fully_connected(784, 10, depth)
    y = model(torch.randn(2, 1, 28, 28))
    assert y.shape == (2, 10)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert len(linears) == depth
    assert all(m.out_features == 784 for m in linears[:-1])  # width defaults to input dim
    assert parameter_count(model) == _fc_count([784] * depth + [10])


def test_fully_connected_paper_sizes() -> None:
    assert parameter_count(fully_connected(784, 10, 2)) == 623_290
    wn = fully_connected(784, 10, depth=3, width=2 * 784, weight_norm=True)
    assert parameter_count(wn) == _fc_count([784, 1568, 1568, 10])
    assert wn(torch.randn(2, 784)).shape == (2, 10)


def test_fully_connected_relu_between_layers_only() -> None:
    model = fully_connected(5, 2, depth=3, width=4)
    kinds = [type(m) for m in model]
    assert kinds == [nn.Flatten, nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"in_features": 784, "n_classes": 10, "depth": 0},
        {"in_features": 784, "n_classes": 10, "depth": 2.0},
        {"in_features": 0, "n_classes": 10, "depth": 2},
        {"in_features": 784, "n_classes": 0, "depth": 2},
        {"in_features": 784, "n_classes": 10, "depth": 2, "width": -1},
        {"in_features": 784, "n_classes": 10, "depth": True},
    ],
)
def test_fully_connected_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        fully_connected(**kwargs)


# ---------------------------------------------------------------------------------------------
# Convolutional DNNs, Sec. VI-B
# ---------------------------------------------------------------------------------------------


def test_mnist_convnet() -> None:
    model = mnist_convnet()
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    expected = _conv(1, 32, 5) + _conv(32, 32, 5) + _linear(32 * 7 * 7, 10)
    assert parameter_count(model) == expected == 42_154


def test_mnist_convnet_lared() -> None:
    model = mnist_convnet(in_channels=1, n_classes=81, image_size=32)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 81)
    assert parameter_count(model) == _conv(1, 32, 5) + _conv(32, 32, 5) + _linear(32 * 64, 81)


def _all_cnn_c_count(bn: bool) -> int:
    specs = [
        (3, 96, 3),
        (96, 96, 3),
        (96, 96, 3),
        (96, 192, 3),
        (192, 192, 3),
        (192, 192, 3),
        (192, 192, 3),
        (192, 192, 1),
    ]
    n = sum(_conv(i, o, k, bias=not bn) + (_bn(o) if bn else 0) for i, o, k in specs)
    return n + _conv(192, 10, 1)


def test_all_cnn_c() -> None:
    model = all_cnn_c()
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert parameter_count(model) == _all_cnn_c_count(True) == 1_370_986
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d | WeightNormConv2d)]
    assert len(convs) == 9
    assert isinstance(convs[-1], WeightNormConv2d)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 8


def test_all_cnn_c_without_batch_norm() -> None:
    model = all_cnn_c(batch_norm=False)
    assert parameter_count(model) == _all_cnn_c_count(False) == 1_369_738
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


# ---------------------------------------------------------------------------------------------
# Residual networks, Sec. VI-C
# ---------------------------------------------------------------------------------------------


def _wrn_count(depth: int, k: int, n_classes: int) -> int:
    n = (depth - 4) // 6
    widths = [16, 16 * k, 32 * k, 64 * k]
    total = _conv(3, 16, 3, False)
    c_in = 16
    for c_out, stride in zip(widths[1:], (1, 2, 2), strict=True):
        for i in range(n):
            total += _preact_block(c_in, c_out, stride if i == 0 else 1)
            c_in = c_out
    return total + _bn(c_in) + _linear(c_in, n_classes)


def test_wide_resnet_22_5() -> None:
    model = wide_resnet()
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert parameter_count(model) == _wrn_count(22, 5, 10) == 6_711_194


def test_wide_resnet_small_and_bad_depth() -> None:
    model = wide_resnet(depth=10, widen_factor=1, n_classes=7)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 7)
    assert parameter_count(model) == _wrn_count(10, 1, 7)
    with pytest.raises(ValueError, match="depth"):
        wide_resnet(depth=21)


def _resnet18_count(n_classes: int) -> int:
    total = _conv(3, 64, 7, False) + _bn(64)
    c_in = 64
    for stage, c_out in enumerate((64, 128, 256, 512)):
        for i in range(2):
            stride = 1 if stage == 0 or i > 0 else 2
            total += _preact_block(c_in, c_out, stride, preactivate=not (stage == 0 and i == 0))
            c_in = c_out
    return total + _bn(512) + _linear(512, n_classes)


@pytest.mark.parametrize("size", [128, 112])
def test_preact_resnet18_shapes(size: int) -> None:
    torch.manual_seed(0)
    model = preact_resnet18()
    model.eval()
    with torch.no_grad():
        y = model(torch.randn(2, 3, size, size))
    assert y.shape == (2, 1000)
    assert torch.isfinite(y).all()


def test_preact_resnet18_count() -> None:
    assert parameter_count(preact_resnet18()) == _resnet18_count(1000) == 11_687_720
    assert parameter_count(preact_resnet18(n_classes=10)) == _resnet18_count(10)


def test_tiny_resnet_structure_and_eq53() -> None:
    torch.manual_seed(0)
    model = tiny_resnet()
    assert isinstance(model.blocks, nn.ModuleList) and len(model.blocks) == 3
    assert isinstance(model.stem, nn.Linear) and isinstance(model.head, nn.Linear)
    x = torch.randn(5, 4)
    assert model(x).shape == (5, 3)
    assert parameter_count(model) == _linear(4, 4) + 3 * 2 * _linear(4, 4) + _linear(4, 3) == 155
    # Manual forward of eq. (53): z_l = z_{l-1} + W2 relu(W1 z_{l-1}).
    z = model.stem(x)
    for b in model.blocks:
        z = z + b.fc2(torch.relu(b.fc1(z)))
    torch.testing.assert_close(model.head(z), model(x))


def test_tiny_resnet_jacobian_is_product_of_block_jacobians() -> None:
    """Eq. (54)/(55): d head(z_L)/dx = W_head * prod_l (I + J_l(z_{l-1})) * W_stem."""
    torch.manual_seed(1)
    model = tiny_resnet(in_features=3, width=5, n_blocks=4, n_classes=2).double()
    x = torch.randn(3, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(model, x)
    prod = torch.eye(5, dtype=torch.float64)
    z = model.stem(x)
    for b in model.blocks:
        j_l = torch.autograd.functional.jacobian(b.residual, z)
        prod = (torch.eye(5, dtype=torch.float64) + j_l) @ prod
        z = b(z)
    torch.testing.assert_close(jac, model.head.weight @ prod @ model.stem.weight)


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------


def test_registry_and_build_model() -> None:
    assert set(MODELS) == {
        "fully_connected",
        "mnist_convnet",
        "all_cnn_c",
        "wide_resnet",
        "preact_resnet18",
        "tiny_resnet",
        "mlp",
        "resnet20",
    }
    model = build_model("fully_connected", in_features=4, n_classes=2, depth=2)
    assert parameter_count(model) == _fc_count([4, 4, 2])
    assert parameter_count(build_model("mnist_convnet")) == 42_154


def test_build_model_unknown_name() -> None:
    with pytest.raises(ValueError, match="valid names: .*fully_connected"):
        build_model("resnet50")
