"""Network architectures used in Sokolic et al., "Robust Large Margin Deep Neural Networks"
(IEEE TSP 2017).

Every model returns **logits**, i.e. the input of the softmax layer of eq. (17); the softmax
itself (and the cross-entropy loss) is applied elsewhere.  The builders are small pure functions
that only use ``torch.nn`` modules:

* :func:`fully_connected` -- the fully connected DNNs of Sec. VI-A1 (plain, Fig. 3) and
  Sec. VI-A2 (weight normalized, Fig. 4).
* :func:`mnist_convnet` -- the 4-layer convolutional DNN of Sec. VI-B1 (Table II).
* :func:`all_cnn_c` -- the batch-normalized All-CNN-C of Sec. VI-B2 (Table III).
* :func:`wide_resnet` -- the Wide ResNet 22-5 of Sec. VI-C1 (Table IV).
* :func:`preact_resnet18` -- the identity-mapping ResNet-18 of Sec. VI-C2 (Table V).
* :func:`tiny_resnet` -- a toy fully connected ResNet following eq. (53), used to check the
  ResNet Jacobian formula (55) numerically.

Weight normalization in the sense of Sec. IV, Remark 2, eq. (45) (rows of the weight matrix
rescaled to unit Euclidean norm) is provided by :func:`row_normalize`,
:class:`WeightNormLinear` and :class:`WeightNormConv2d`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "MODELS",
    "PreActBlock",
    "ResidualBlock",
    "TinyResNet",
    "WeightNormConv2d",
    "WeightNormLinear",
    "all_cnn_c",
    "build_model",
    "fully_connected",
    "mnist_convnet",
    "parameter_count",
    "preact_resnet18",
    "row_normalize",
    "tiny_resnet",
    "wide_resnet",
]


# ---------------------------------------------------------------------------------------------
# Argument checking
# ---------------------------------------------------------------------------------------------


def _check_int(name: str, value: object, minimum: int = 1) -> int:
    """Return ``value`` if it is an ``int`` (not ``bool``) ``>= minimum``, else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


# ---------------------------------------------------------------------------------------------
# Weight normalization, eq. (45)
# ---------------------------------------------------------------------------------------------


def row_normalize(w: Tensor, eps: float = 1e-12) -> Tensor:
    """Scale every row of ``w`` to unit Euclidean norm (Sec. IV, Remark 2, eq. (45)).

    Eq. (45) defines the weight-normalized matrix as
    ``W = diag(Ŵ Ŵᵀ)^{-1/2} Ŵ``, i.e. row ``i`` of ``Ŵ`` is divided by its Euclidean norm
    (the plain-text rendering of the paper prints the formula differently; unit-norm rows --
    hence ``‖W‖_F = sqrt(#rows)``, Sec. VI-A2 -- is the meaning).

    For a convolution weight of shape ``(out, in, kh, kw)`` a "row" is one output filter,
    flattened to ``in * kh * kw`` numbers.  ``eps`` guards against division by zero.

    Args:
        w: tensor with at least 2 dimensions; dimension 0 indexes the rows.
        eps: lower clamp on the row norms.

    Returns:
        Tensor of the same shape as ``w`` whose flattened rows have unit norm.
    """
    if w.dim() < 2:
        raise ValueError(
            f"row_normalize expects a tensor with >= 2 dims, got shape {tuple(w.shape)}"
        )
    norms = w.flatten(1).norm(dim=1).clamp_min(eps)
    return w / norms.view(-1, *([1] * (w.dim() - 1)))


class WeightNormLinear(nn.Module):
    """Linear layer ``y = W x + b`` with row-normalized weight ``W = row_normalize(weight_raw)``.

    This is the weight normalization of Sec. IV, Remark 2, eq. (45), used for all layers of the
    DNNs of Sec. VI-A2 (Fig. 4) and for the softmax layer of All-CNN-C (Sec. VI-B2).  The free
    parameter is :attr:`weight_raw` (``Ŵ`` in eq. (45)); the property :attr:`weight` returns the
    effective, row-normalized operator so that code reading ``.weight`` (e.g. Jacobian or norm
    computations) sees the matrix actually applied.  The output is invariant to positive
    rescaling of any row of :attr:`weight_raw`.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features = _check_int("in_features", in_features)
        self.out_features = _check_int("out_features", out_features)
        self.weight_raw = nn.Parameter(torch.empty(out_features, in_features))
        self.bias: nn.Parameter | None
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialize like :class:`torch.nn.Linear` (only the row directions matter)."""
        nn.init.kaiming_uniform_(self.weight_raw, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    @property
    def weight(self) -> Tensor:
        """Effective weight ``diag(Ŵ Ŵᵀ)^{-1/2} Ŵ`` of eq. (45) (differentiable w.r.t. Ŵ)."""
        return row_normalize(self.weight_raw)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


class WeightNormConv2d(nn.Module):
    """2-D convolution whose filters are normalized to unit Euclidean norm (eq. (45)).

    Each output filter of :attr:`weight_raw` (shape ``(out, in/groups, kh, kw)``) is flattened
    and scaled to unit norm, i.e. the rows of the equivalent (Toeplitz-structured) matrix
    restricted to one filter have unit norm.  :attr:`weight` returns the effective filters.
    Used for the weight-normalized softmax layer of All-CNN-C (Sec. VI-B2).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = _check_int("in_channels", in_channels)
        self.out_channels = _check_int("out_channels", out_channels)
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        self.kernel_size = (kh, kw)
        self.stride = stride
        self.padding = padding
        self.weight_raw = nn.Parameter(torch.empty(out_channels, in_channels, kh, kw))
        self.bias: nn.Parameter | None
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialize like :class:`torch.nn.Conv2d`."""
        nn.init.kaiming_uniform_(self.weight_raw, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight_raw[0].numel()
            bound = 1.0 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    @property
    def weight(self) -> Tensor:
        """Effective filters, each of unit Euclidean norm (eq. (45))."""
        return row_normalize(self.weight_raw)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}"
        )


# ---------------------------------------------------------------------------------------------
# Fully connected DNN, Sec. VI-A
# ---------------------------------------------------------------------------------------------


def fully_connected(
    in_features: int,
    n_classes: int,
    depth: int,
    width: int | None = None,
    weight_norm: bool = False,
) -> nn.Sequential:
    """Fully connected ReLU DNN of Sec. VI-A.

    ``depth`` is the number L of weight layers *including* the last (softmax) layer, so the
    network is ``Flatten -> [Linear(·, width) -> ReLU] x (L-1) -> Linear(·, n_classes)``.  As
    in Sec. VI-A1 the hidden width defaults to the input dimension (784 for MNIST, 3072 for
    CIFAR-10); Sec. VI-A2 uses ``width = k * 784``, ``k = 1..6``, and ``L = 2..5``.  With
    ``weight_norm=True`` every layer, including the softmax layer, is a
    :class:`WeightNormLinear` (eq. (45), Sec. VI-A2).  The input is flattened first so image
    batches ``(N, C, H, W)`` are accepted.

    Parameter count: ``sum_l (M_{l-1} M_l + M_l)`` with ``M_0 = in_features``,
    ``M_L = n_classes`` (e.g. MNIST, L=2: 784*784+784 + 784*10+10 = 623,290).

    Raises:
        ValueError: if ``in_features``, ``n_classes``, ``depth`` or ``width`` is not an int >= 1.
    """
    _check_int("in_features", in_features)
    _check_int("n_classes", n_classes)
    _check_int("depth", depth)
    width = in_features if width is None else _check_int("width", width)
    linear: Callable[[int, int], nn.Module] = WeightNormLinear if weight_norm else nn.Linear
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = in_features
    for _ in range(depth - 1):
        layers += [linear(fan_in, width), nn.ReLU()]
        fan_in = width
    layers.append(linear(fan_in, n_classes))
    return nn.Sequential(*layers)


# ---------------------------------------------------------------------------------------------
# Convolutional DNNs, Sec. VI-B
# ---------------------------------------------------------------------------------------------


def mnist_convnet(in_channels: int = 1, n_classes: int = 10, image_size: int = 28) -> nn.Sequential:
    """4-layer convolutional DNN of Sec. VI-B1 (Table II: MNIST and LaRED).

    Architecture: (32,5,5)-conv, ReLU, (2,2)-max-pool, (32,5,5)-conv, ReLU, (2,2)-max-pool,
    linear softmax layer.  The paper does not state the padding; we use ``padding=2`` ("same")
    convolutions, so a ``image_size x image_size`` input gives a ``32 x (s//4) x (s//4)``
    feature map (7x7 for MNIST 28x28, 8x8 for LaRED 32x32).

    Parameter count (MNIST, 1 channel, 28x28, 10 classes): 832 + 25,632 + 15,690 = **42,154**.
    """
    _check_int("in_channels", in_channels)
    _check_int("n_classes", n_classes)
    _check_int("image_size", image_size, minimum=4)
    side = image_size // 2 // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 32, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * side * side, n_classes),
    )


def _conv_bn_relu(
    c_in: int, c_out: int, kernel_size: int, stride: int, padding: int, batch_norm: bool
) -> list[nn.Module]:
    """``conv -> [BN] -> ReLU``; the conv has a bias only when there is no BN after it."""
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=not batch_norm)
    ]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.ReLU())
    return layers


def all_cnn_c(
    in_channels: int = 3,
    n_classes: int = 10,
    batch_norm: bool = True,
    weight_norm_softmax: bool = True,
) -> nn.Sequential:
    """All-CNN-C of Springenberg et al. (2015), as used in Sec. VI-B2 (Table III, CIFAR-10).

    Nine convolutions: conv3x3-96, conv3x3-96, conv3x3-96/stride 2, conv3x3-192, conv3x3-192,
    conv3x3-192/stride 2, conv3x3-192 (valid), conv1x1-192, conv1x1-``n_classes``, followed by
    global average pooling.  The 3x3 convs use padding 1 except the "valid" one (32 -> 16 -> 8
    -> 6 spatially for CIFAR-10).  Every conv but the last is followed by BatchNorm (when
    ``batch_norm``; those convs then have no bias) and ReLU.  The last conv1x1 is the softmax
    layer: it has no ReLU (it outputs logits) and, as stated in Sec. VI-B2 ("the softmax layer
    is weight normalized"), is a :class:`WeightNormConv2d` when ``weight_norm_softmax``.  Since
    a 1x1 conv commutes with average pooling, this equals a weight-normalized linear layer on
    the pooled 192-d features.  Dropout of the original paper is not used (not mentioned in
    Sec. VI-B2).

    Parameter count (3 channels, 10 classes, batch_norm=True): **1,370,986**
    (1,369,738 with ``batch_norm=False``).
    """
    _check_int("in_channels", in_channels)
    _check_int("n_classes", n_classes)
    bn = batch_norm
    layers: list[nn.Module] = []
    layers += _conv_bn_relu(in_channels, 96, 3, 1, 1, bn)
    layers += _conv_bn_relu(96, 96, 3, 1, 1, bn)
    layers += _conv_bn_relu(96, 96, 3, 2, 1, bn)
    layers += _conv_bn_relu(96, 192, 3, 1, 1, bn)
    layers += _conv_bn_relu(192, 192, 3, 1, 1, bn)
    layers += _conv_bn_relu(192, 192, 3, 2, 1, bn)
    layers += _conv_bn_relu(192, 192, 3, 1, 0, bn)
    layers += _conv_bn_relu(192, 192, 1, 1, 0, bn)
    if weight_norm_softmax:
        layers.append(WeightNormConv2d(192, n_classes, 1))
    else:
        layers.append(nn.Conv2d(192, n_classes, 1))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


# ---------------------------------------------------------------------------------------------
# Residual networks, Sec. V (eq. (53)) and Sec. VI-C
# ---------------------------------------------------------------------------------------------


class PreActBlock(nn.Module):
    """Pre-activation basic residual block (He et al., "Identity Mappings", 2016).

    ``out = shortcut + conv3x3(ReLU(BN(conv3x3_s(ReLU(BN(x))))))``, an instance of eq. (53).
    When the shape changes (stride != 1 or channel count differs) the shortcut is a 1x1
    (strided) conv applied to the pre-activated input ``ReLU(BN(x))`` (as in the reference
    WRN / pre-act ResNet code); otherwise it is the identity on ``x``.  With
    ``preactivate=False`` the leading BN-ReLU is omitted (used for the first block of
    ResNet-18, whose input already went through BN-ReLU in the stem).
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1, preactivate: bool = True) -> None:
        super().__init__()
        self.preact: nn.Module = (
            nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU()) if preactivate else nn.Identity()
        )
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        a = self.preact(x)
        skip = x if self.shortcut is None else self.shortcut(a)
        out = self.conv1(a)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + skip


def _init_resnet(model: nn.Module) -> None:
    """He (fan-out) init for convs, BN = (1, 0), zero linear bias (as in the WRN reference code)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)


def wide_resnet(
    depth: int = 22, widen_factor: int = 5, n_classes: int = 10, in_channels: int = 3
) -> nn.Sequential:
    """Wide ResNet WRN-``depth``-``widen_factor`` of Zagoruyko & Komodakis (2016), Sec. VI-C1.

    The paper uses "the ResNet with 22 layers of width 5" (WRN-22-5, Table IV).  Structure:
    conv3x3-16, three groups of ``(depth-4)/6`` :class:`PreActBlock` s with widths ``16k``,
    ``32k``, ``64k`` (strides 1, 2, 2), final BN-ReLU, global average pooling, linear layer.
    1x1 shortcut convs are used when the shape changes.  No dropout.

    Parameter count (WRN-22-5, 3 channels, 10 classes): **6,711,194**.

    Raises:
        ValueError: if ``(depth - 4)`` is not a positive multiple of 6.
    """
    _check_int("depth", depth, minimum=10)
    _check_int("widen_factor", widen_factor)
    _check_int("n_classes", n_classes)
    _check_int("in_channels", in_channels)
    if (depth - 4) % 6 != 0:
        raise ValueError(f"wide_resnet depth must satisfy (depth - 4) % 6 == 0, got {depth}")
    n_blocks = (depth - 4) // 6
    widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
    layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)]
    c_in = widths[0]
    for c_out, stride in zip(widths[1:], (1, 2, 2), strict=True):
        for i in range(n_blocks):
            layers.append(PreActBlock(c_in, c_out, stride if i == 0 else 1))
            c_in = c_out
    layers += [
        nn.BatchNorm2d(c_in),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(c_in, n_classes),
    ]
    model = nn.Sequential(*layers)
    _init_resnet(model)
    return model


def preact_resnet18(n_classes: int = 1000, in_channels: int = 3) -> nn.Sequential:
    """Pre-activation ("identity mapping") ResNet-18 of He et al. (2016), Sec. VI-C2 (Table V).

    ImageNet-style: conv7x7-64/2, BN, ReLU, max-pool 3x3/2, four stages of two
    :class:`PreActBlock` s (widths 64, 128, 256, 512; strides 1, 2, 2, 2; 1x1 projection
    shortcuts when the shape changes, without BN), final BN-ReLU, adaptive average pooling,
    linear layer.  As in the reference pre-act ResNet (fb.resnet.torch) the first block skips
    its pre-activation because the stem already ends in BN-ReLU.  Adaptive pooling makes it run
    on the 128x128 and 112x112 inputs used in the paper (final maps 4x4).

    Parameter count (3 channels, 1000 classes): **11,687,720**.
    """
    _check_int("n_classes", n_classes)
    _check_int("in_channels", in_channels)
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1),
    ]
    c_in = 64
    for stage, (c_out, stride) in enumerate(zip((64, 128, 256, 512), (1, 2, 2, 2), strict=True)):
        for i in range(2):
            first = stage == 0 and i == 0
            layers.append(PreActBlock(c_in, c_out, stride if i == 0 else 1, preactivate=not first))
            c_in = c_out
    layers += [
        nn.BatchNorm2d(c_in),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(c_in, n_classes),
    ]
    model = nn.Sequential(*layers)
    _init_resnet(model)
    return model


class ResidualBlock(nn.Module):
    """Fully connected residual block ``z_l = z_{l-1} + W2 ReLU(W1 z_{l-1})`` (eq. (53)).

    :meth:`residual` is ``φ(z, θ_l)`` of eq. (53); its Jacobian ``J_l`` enters the block
    Jacobian ``I + J_l`` of eq. (54).
    """

    def __init__(self, width: int, bias: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, width, bias=bias)
        self.fc2 = nn.Linear(width, width, bias=bias)

    def residual(self, z: Tensor) -> Tensor:
        """``φ(z) = W2 ReLU(W1 z)`` (plus biases if enabled)."""
        return self.fc2(F.relu(self.fc1(z)))

    def forward(self, z: Tensor) -> Tensor:
        return z + self.residual(z)


class TinyResNet(nn.Module):
    """Small fully connected ResNet: ``head(blocks(stem(x)))`` with blocks of eq. (53).

    ``stem`` and ``head`` are plain linear maps, ``blocks`` an :class:`torch.nn.ModuleList` of
    :class:`ResidualBlock`.  The Jacobian of the blocks part is the product of ``I + J_l``
    (eq. (54)), whose expansion is eq. (55); the small size makes exact numerical checks cheap.
    """

    def __init__(
        self, in_features: int, width: int, n_blocks: int, n_classes: int, bias: bool = True
    ) -> None:
        super().__init__()
        self.stem = nn.Linear(in_features, width, bias=bias)
        self.blocks = nn.ModuleList(ResidualBlock(width, bias=bias) for _ in range(n_blocks))
        self.head = nn.Linear(width, n_classes, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        z = self.stem(x)
        for block in self.blocks:
            z = block(z)
        return self.head(z)


def tiny_resnet(
    in_features: int = 4, width: int = 4, n_blocks: int = 3, n_classes: int = 3, bias: bool = True
) -> TinyResNet:
    """Build a :class:`TinyResNet` (eq. (53)) for the numerical check of eq. (55).

    Parameter count (with bias): ``(in*w + w) + n_blocks * 2 (w*w + w) + (w*c + c)``;
    defaults give 20 + 120 + 15 = 155.
    """
    _check_int("in_features", in_features)
    _check_int("width", width)
    _check_int("n_blocks", n_blocks, minimum=0)
    _check_int("n_classes", n_classes)
    return TinyResNet(in_features, width, n_blocks, n_classes, bias=bias)


# ---------------------------------------------------------------------------------------------
# Oymak et al. 2019 (notebooks/07_low_rank_jacobian.ipynb): their one-hidden-layer model, and
# the ResNet20 / MLP of their CIFAR-10 experiments
# ---------------------------------------------------------------------------------------------


class OneHiddenLayer(nn.Module):
    """Their model of the theory: ``f(x) = V φ(W x)``, ``W ∈ R^{k x d}`` trained, ``V`` fixed.

    ``W`` has i.i.d. ``N(0, 1)`` entries, ``V`` i.i.d. ``±1/sqrt(k)`` entries (a buffer, so the
    parameter Jacobian is with respect to ``W`` only), ``φ`` = ReLU.
    """

    def __init__(self, d: int, k: int, n_out: int, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.W = nn.Linear(d, k, bias=False)
        with torch.no_grad():
            self.W.weight.copy_(torch.randn(k, d, generator=gen))
        signs = torch.randint(0, 2, (n_out, k), generator=gen).float() * 2 - 1
        self.register_buffer("V", signs / math.sqrt(k))

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.W(x)) @ self.V.T


class Scale(nn.Module):
    """Multiply by a constant (their "output scaled down")."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = float(factor)

    def forward(self, x: Tensor) -> Tensor:
        return self.factor * x

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


class _Block(nn.Module):
    """Basic residual block of the CIFAR ResNets (He et al. 2016), batch norm removed."""

    def __init__(self, c_in: int, c_out: int, stride: int, n_blocks: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.short = (
            nn.Conv2d(c_in, c_out, 1, stride) if stride != 1 or c_in != c_out else nn.Identity()
        )
        for conv in (self.conv1, self.conv2):
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        with torch.no_grad():  # no batch norm: damp each branch so depth does not blow up
            self.conv2.weight.mul_(n_blocks**-0.5)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.short(x) + self.conv2(torch.relu(self.conv1(x))))


def resnet20(n_classes: int = 10, in_channels: int = 3, out_scale: float = 0.1) -> nn.Sequential:
    """ResNet20 (3 stages x 3 blocks, 16/32/64 channels, ~0.27M parameters) without batch norm,
    the last layer's output multiplied by ``out_scale``, no softmax -- their CIFAR-10 net.
    Branch outputs are scaled by ``1/sqrt(9)`` at init in place of batch norm (our choice)."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, 16, 3, 1, 1), nn.ReLU()]
    c_in = 16
    for c_out, stride in ((16, 1), (32, 2), (64, 2)):
        for b in range(3):
            layers.append(_Block(c_in, c_out, stride if b == 0 else 1, 9))
            c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, n_classes), Scale(out_scale)]
    return nn.Sequential(*layers)


def mlp(in_features: int, n_classes: int, width: int, out_scale: float) -> nn.Sequential:
    """One hidden ReLU layer (PyTorch default init), output scaled by ``out_scale``."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_features, width),
        nn.ReLU(),
        nn.Linear(width, n_classes),
        Scale(out_scale),
    )


# ---------------------------------------------------------------------------------------------
# Utilities and registry
# ---------------------------------------------------------------------------------------------


def parameter_count(model: nn.Module) -> int:
    """Number of trainable scalar parameters (``requires_grad``) of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "fully_connected": fully_connected,
    "mnist_convnet": mnist_convnet,
    "all_cnn_c": all_cnn_c,
    "wide_resnet": wide_resnet,
    "preact_resnet18": preact_resnet18,
    "tiny_resnet": tiny_resnet,
    "mlp": mlp,
    "resnet20": resnet20,
}


def build_model(name: str, **kwargs: object) -> nn.Module:
    """Build the model registered under ``name`` in :data:`MODELS` with ``kwargs``.

    Raises:
        ValueError: if ``name`` is not a registered model name.
    """
    try:
        builder = MODELS[name]
    except (KeyError, TypeError):
        valid = ", ".join(sorted(MODELS))
        raise ValueError(f"unknown model {name!r}; valid names: {valid}") from None
    return builder(**kwargs)
