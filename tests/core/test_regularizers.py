"""Regularizer values and gradients against brute force (autograd Jacobians, closed forms)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from jacnb.core.jacobian import network_output
from jacnb.core.models import WeightNormLinear, tiny_resnet
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
    # conv, batch norm and weight-normalized layers: chosen by parameter name, summed in numpy
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3),
        nn.BatchNorm2d(2),
        nn.ReLU(),
        nn.Flatten(),
        WeightNormLinear(2 * 4 * 4, 5),
        nn.ReLU(),
        nn.Linear(5, 3),
    )
    with torch.no_grad():
        net[1].weight.uniform_(1.0, 2.0)  # a batch-norm scale that would show if it were decayed
    params = {k: v.detach().numpy() for k, v in net.named_parameters()}
    decayed = ["0.weight", "4.weight_raw", "6.weight"]  # no biases, no batch-norm scale
    expected = sum(float((params[k] ** 2).sum()) for k in decayed)
    assert float(WeightDecay()(net).detach()) == pytest.approx(expected, rel=1e-12)
    # documented choice: the weight-normalized layer's free weight_raw is decayed although the
    # net is invariant to its scale -- the penalty changes, the function does not
    x = torch.randn(3, 1, 6, 6)
    net.eval()
    before = net(x).detach()
    with torch.no_grad():
        net[4].weight_raw.mul_(3.0)
    torch.testing.assert_close(net(x), before)
    assert float(WeightDecay()(net).detach()) > expected


def test_jacobian_regularizer_matches_full_jacobians():
    model = mlp()
    x = torch.randn(4, 5)
    ref = torch.stack(
        [
            torch.autograd.functional.jacobian(lambda z: torch.softmax(model(z[None]), -1)[0], xi)
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
    """Reference without hooks: g_i = d f_pi(i) / d(fc2 output) of block 1 from a full autograd
    Jacobian of the rest of the net (fc2 output -> residual sum -> block 2 -> head -> softmax)
    at the fixed block input, one sample at a time; value 1/m sum ||g_i W||^2, W-gradient
    2 g^T g W / m (eq. 52), and finite differences of that closed form in W."""
    torch.manual_seed(1)
    model = tiny_resnet().double()
    x = torch.randn(5, 4)
    layer = model.blocks[1].fc2
    reg = PerLayerJacobianRegularizer(layers=[layer], generator=torch.Generator().manual_seed(0))
    value = reg(model, x)
    value.backward()
    analytic = layer.weight.grad.clone()
    pi = torch.randint(3, (5,), generator=torch.Generator().manual_seed(0))
    rows = []
    for xi, p in zip(x, pi, strict=True):
        with torch.no_grad():
            z1 = model.blocks[0](model.stem(xi[None]))[0]  # input of block 1
            zhat = layer(torch.relu(model.blocks[1].fc1(z1[None])))[0]

        def rest(u, z1=z1, p=p):
            z2 = z1 + u  # block 1's output: skip + residual branch (whose last layer is fc2)
            return torch.softmax(model.head(model.blocks[2](z2[None])), -1)[0, p]

        rows.append(torch.autograd.functional.jacobian(rest, zhat))
    g = torch.stack(rows).detach()  # [m, width]
    w = layer.weight.detach()
    torch.testing.assert_close(value.detach(), (g @ w).pow(2).sum() / 5)
    torch.testing.assert_close(analytic, 2 * g.T @ g @ w / 5)
    eps = 1e-6
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


# --- issue 12: per-sample per-layer regularizer under batch norm, in-place hazard, generator ---


def bn_mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(5, 7),
        nn.BatchNorm1d(7),
        nn.ReLU(),
        nn.Linear(7, 6),
        nn.BatchNorm1d(6),
        nn.ReLU(),
        nn.Linear(6, 3),
    )


def bn_convnet(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 4),
    )


def eval_twin_with_batch_statistics(model: nn.Sequential, x: torch.Tensor) -> nn.Sequential:
    """An eval-mode copy whose running statistics are the mean and biased variance of ``x``'s
    activations at each batch-norm layer: the per-sample map of the training forward pass."""
    twin = copy.deepcopy(model).eval()
    z = x
    with torch.no_grad():
        for module in twin:
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                dims = [0, *range(2, z.dim())]
                module.running_mean.copy_(z.mean(dims))
                module.running_var.copy_(z.var(dims, unbiased=False))
            z = module(z)
    return twin


def _brute_per_layer_any(model: nn.Sequential, x: torch.Tensor, pi: torch.Tensor):
    """Value of eq. (52) and its closed-form W-gradients, one sample at a time, from autograd
    Jacobians of an eval-mode ``nn.Sequential`` (linear and conv layers)."""
    weight_layers = [i for i, m in enumerate(model) if isinstance(m, nn.Linear | nn.Conv2d)]
    value = torch.zeros(())
    grads = {}
    m = x.shape[0]
    for li in weight_layers:
        w = model[li].weight.detach()
        grad_w = torch.zeros_like(w)
        for xi, p in zip(x, pi, strict=True):
            z_in = model[:li](xi[None]).detach()[0]  # input of layer l (fixed, eq. 52)
            g_in = torch.autograd.functional.jacobian(
                lambda z, p=p, li=li: torch.softmax(model[li:](z[None]), -1)[0, p], z_in
            )  # d f_pi / d z^{l-1}, through the layer
            value = value + g_in.pow(2).sum() / m
            zhat = model[: li + 1](xi[None]).detach()[0]
            g = torch.autograd.functional.jacobian(
                lambda z, p=p, li=li: torch.softmax(model[li + 1 :](z[None]), -1)[0, p], zhat
            )  # d f_pi / d zhat^l
            # d/dW ||W^T g||^2 with g fixed, differentiated by autograd on a fresh leaf
            wl = w.clone().requires_grad_(True)
            if isinstance(model[li], nn.Linear):
                sq = (g @ wl).pow(2).sum()
            else:
                sq = (
                    torch.nn.grad.conv2d_input(
                        z_in[None].shape, wl, g[None], model[li].stride, model[li].padding
                    )
                    .pow(2)
                    .sum()
                )
            (gw,) = torch.autograd.grad(sq, wl)
            grad_w += gw / m
        grads[li] = grad_w
    return value, grads


@pytest.mark.parametrize("make", [bn_mlp, bn_convnet])
def test_per_layer_regularizer_is_per_sample_under_training_batch_norm(make):
    """eq. (52) per sample: batch norm with this batch's statistics held fixed (the default)."""
    model = make()
    model.train()
    x = torch.randn(8, 5) if make is bn_mlp else torch.randn(8, 2, 4, 4)
    twin = eval_twin_with_batch_statistics(model, x)
    n_out = 3 if make is bn_mlp else 4
    pi = torch.randint(n_out, (8,), generator=torch.Generator().manual_seed(4))
    ref_value, ref_grads = _brute_per_layer_any(twin, x, pi)
    before = copy.deepcopy(model)
    reg = PerLayerJacobianRegularizer(generator=torch.Generator().manual_seed(4))
    logits, value = reg.logits_and_penalty(model, x)
    torch.testing.assert_close(value, ref_value)
    value.backward()
    for li, g in ref_grads.items():
        torch.testing.assert_close(model[li].weight.grad, g)
    # the loss sees the ordinary training forward pass, running statistics move once
    torch.testing.assert_close(logits, before(x))
    for a, b in zip(model.modules(), before.modules(), strict=True):
        if isinstance(a, nn.modules.batchnorm._BatchNorm):
            torch.testing.assert_close(a.running_mean, b.running_mean)
            assert int(a.num_batches_tracked) == 1
    assert not any("forward" in vars(mod) for mod in model.modules())
    # the coupled version (differentiating through the batch statistics) is kept by option
    coupled = PerLayerJacobianRegularizer(
        generator=torch.Generator().manual_seed(4), batch_norm="coupled"
    )(copy.deepcopy(before), x).detach()
    assert abs(float(coupled) - float(ref_value)) > 1e-3 * float(ref_value)
    with pytest.raises(ValueError, match="batch_norm"):
        PerLayerJacobianRegularizer(batch_norm="frozen")(model, x)


def test_per_layer_regularizer_refuses_in_place_activation_after_a_hooked_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(inplace=True), nn.Linear(7, 3))
    with pytest.raises(ValueError, match="in place"):
        PerLayerJacobianRegularizer()(model, torch.randn(4, 5))
    # the same net without in-place activation is accepted and matches the brute force
    safe = nn.Sequential(model[0], nn.ReLU(), model[2])
    gen = torch.Generator().manual_seed(1)
    pi = torch.randint(3, (4,), generator=torch.Generator().manual_seed(1))
    x = torch.randn(4, 5)
    torch.testing.assert_close(
        PerLayerJacobianRegularizer(generator=gen)(safe, x), _brute_per_layer_any(safe, x, pi)[0]
    )


def test_jacobian_regularizer_projection_draws_follow_the_generator():
    model = mlp()
    x = torch.randn(6, 5)

    def penalty(seed: int) -> float:
        reg = JacobianRegularizer(
            method="projection", generator=torch.Generator().manual_seed(seed)
        )
        return float(reg(model, x).detach())

    torch.manual_seed(0)
    first = penalty(11)
    torch.manual_seed(1)  # the global RNG does not matter
    assert penalty(11) == first
    assert penalty(12) != first


def test_jacobian_regularizer_is_per_sample_under_training_batch_norm():
    """R_F (eq. 49) with batch norm in training mode: the mean over samples of ||J(x_i)||_F^2 of
    the eval-mode twin whose running statistics are the batch's (full autograd Jacobians)."""
    model = bn_mlp(1).train()
    x = torch.randn(6, 5)
    twin = eval_twin_with_batch_statistics(model, x)
    ref = torch.stack(
        [
            torch.autograd.functional.jacobian(lambda z: torch.softmax(twin(z[None]), -1)[0], xi)
            .pow(2)
            .sum()
            for xi in x
        ]
    ).mean()
    torch.testing.assert_close(JacobianRegularizer()(model, x).detach(), ref)
    coupled = JacobianRegularizer(batch_norm="coupled")(copy.deepcopy(model), x).detach()
    assert abs(float(coupled) - float(ref)) > 1e-3 * float(ref)


@pytest.mark.parametrize(
    ("name", "kwargs", "says"),
    [
        ("jacobain", {}, "did you mean 'jacobian'"),
        ("jacobian", {"method": "exakt"}, "did you mean 'exact'"),
        ("jacobian", {"n_proj": 0}, "n_proj must be an integer >= 1"),
        ("jacobian", {"n_proj": 1.5}, "n_proj must be an integer >= 1"),
        ("jacobian", {"output": "softmaks"}, "did you mean 'softmax'"),
        ("jacobian", {"strategy": "vmapp"}, "did you mean 'vmap'"),
        ("jacobian", {"batch_norm": "fix"}, "did you mean 'fixed'"),
        ("jacobian", {"nproj": 2}, "did you mean \\['n_proj'\\]"),
        ("per_layer", {"batch_norm": "coupld"}, "did you mean 'coupled'"),
        ("none", {"n_proj": 2}, "takes no arguments"),
    ],
)
def test_make_regularizer_checks_every_argument_at_construction(name, kwargs, says):
    with pytest.raises(ValueError, match=says):
        make_regularizer(name, **kwargs)


def test_valid_regularizer_arguments_are_accepted():
    assert make_regularizer("none") is None
    assert make_regularizer("jacobian", method="projection", n_proj=3).n_proj == 3
    per_layer = make_regularizer("per_layer", batch_norm="coupled")
    assert isinstance(per_layer, PerLayerJacobianRegularizer)
