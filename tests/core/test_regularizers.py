"""Regularizer values and gradients against brute force (autograd Jacobians, closed forms)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from jacnb.core.jacobian import network_output
from jacnb.core.models import tiny_resnet
from jacnb.core.regularizers import (
    JacobianRegularizer,
    PerLayerJacobianRegularizer,
    WeightDecay,
    make_regularizer,
)

pytestmark = pytest.mark.usefixtures("float64")  # tests/conftest.py


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 3))


def test_weight_decay_is_sum_of_squared_weights():
    model = mlp()
    expected = sum(m.weight.pow(2).sum() for m in model if isinstance(m, nn.Linear))
    torch.testing.assert_close(WeightDecay()(model), expected)


def test_jacobian_regularizer_matches_full_jacobians():
    model = mlp()
    x = torch.randn(4, 5)
    ref = torch.stack(
        [
            torch.autograd.functional.jacobian(
                lambda z: network_output(model, z[None]).squeeze(0), xi
            )
            .pow(2)
            .sum()
            for xi in x
        ]
    ).mean()
    torch.testing.assert_close(JacobianRegularizer()(model, x), ref)


def _brute_per_layer(model: nn.Sequential, x: torch.Tensor, pi: torch.Tensor):
    """Value and closed-form W-gradients of eq. (52) from full autograd Jacobians."""
    linears = [i for i, m in enumerate(model) if isinstance(m, nn.Linear)]
    value = torch.zeros(())
    grads = {}
    for li in linears:
        layer = model[li]
        head = model[: li + 1]
        tail = model[li + 1 :]
        g_rows = []
        for xi, p in zip(x, pi, strict=True):
            zhat = head(xi[None]).detach().squeeze(0)
            jac = torch.autograd.functional.jacobian(
                lambda z, p=p, tail=tail: torch.softmax(tail(z[None]), -1)[0, p], zhat
            )
            g_rows.append(jac)
        g = torch.stack(g_rows)  # [m, M_l]
        w = layer.weight.detach()
        value = value + (g @ w).pow(2).sum() / x.shape[0]
        grads[li] = 2 * (g.T @ g @ w) / x.shape[0]  # paper: grad_W = 2 g^T g W
    return value, grads


def test_per_layer_regularizer_value_and_gradient_match_brute_force():
    model = mlp()
    x = torch.randn(6, 5)
    gen = torch.Generator().manual_seed(3)
    pi = torch.randint(3, (6,), generator=torch.Generator().manual_seed(3))
    reg = PerLayerJacobianRegularizer(generator=gen)
    value = reg(model, x)
    ref_value, ref_grads = _brute_per_layer(model, x, pi)
    torch.testing.assert_close(value, ref_value)
    value.backward()
    for li, g in ref_grads.items():
        torch.testing.assert_close(model[li].weight.grad, g)
        # the input of each layer is fixed: biases receive no gradient from eq. (52)
        assert model[li].bias.grad is None or torch.all(model[li].bias.grad == 0)


def test_per_layer_regularizer_on_tiny_residual_net_finite_differences():
    torch.manual_seed(1)
    model = tiny_resnet().double()
    x = torch.randn(5, 4)
    layer = model.blocks[1].fc2
    reg = PerLayerJacobianRegularizer(layers=[layer], generator=torch.Generator().manual_seed(0))
    reg(model, x).backward()
    analytic = layer.weight.grad.clone()
    # W-gradient of eq. (52) with g held fixed: finite differences of ||g W||^2 in W, where g is
    # d f_pi / d(fc2 output) computed once at the unperturbed weights.
    captured = {}
    handle = layer.register_forward_hook(lambda m, i, o: captured.setdefault("z", o))
    f = network_output(model, x)
    handle.remove()
    pi = torch.randint(f.shape[1], (5,), generator=torch.Generator().manual_seed(0))
    (g,) = torch.autograd.grad(f.gather(1, pi[:, None]).sum(), captured["z"])
    eps = 1e-6
    w = layer.weight.detach().clone()
    fd = torch.zeros_like(w)
    for a in range(w.shape[0]):
        for b in range(w.shape[1]):
            wp, wm = w.clone(), w.clone()
            wp[a, b] += eps
            wm[a, b] -= eps
            fd[a, b] = ((g @ wp).pow(2).sum() - (g @ wm).pow(2).sum()) / (2 * eps * 5)
    torch.testing.assert_close(analytic, fd, rtol=1e-5, atol=1e-8)


def test_per_layer_conv_transpose_is_the_input_gradient():
    torch.manual_seed(2)
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1)
    model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 4))
    x = torch.randn(3, 2, 8, 8)
    reg = PerLayerJacobianRegularizer(layers=[conv], generator=torch.Generator().manual_seed(0))
    value = reg(model, x)
    pi = torch.randint(4, (3,), generator=torch.Generator().manual_seed(0))
    xg = x.clone().requires_grad_(True)
    f = network_output(model, xg)
    (gx,) = torch.autograd.grad(f.gather(1, pi[:, None]).sum(), xg)
    # the first layer's input is x itself, so eq. (52) equals the true input-gradient norm
    torch.testing.assert_close(value, gx.pow(2).sum() / 3)


def test_make_regularizer_errors():
    assert make_regularizer("none") is None
    assert isinstance(make_regularizer("jacobian", method="projection"), JacobianRegularizer)
    with pytest.raises(ValueError, match="valid"):
        make_regularizer("dropout")
