"""The parameter Jacobian of a network over a data set, its spectrum, and the
information / nuisance split of Oymak, Fabian, Li and Soltanolkotabi (2019).

Stack the outputs ``f(x_i; w) in R^K`` of ``n`` samples into one vector of ``R^{nK}``
(sample-major: entry ``i*K + k`` is output ``k`` of sample ``i``). The parameter Jacobian
``𝒥(w) = ∂f/∂w`` is then ``nK x p`` and the gradient of the least-squares loss
``L(w) = ½ ||f(w) - y||²`` is ``𝒥ᵀ r`` with residual ``r = f(w) - y``.

:class:`ParameterJacobian` is ``𝒥`` as an operator: it is never materialized unless asked
(:meth:`ParameterJacobian.dense`, small nets only). Products ``𝒥 v`` are forward-mode ``jvp``,
``𝒥ᵀ u`` reverse-mode ``vjp``, both batched over many vectors with ``torch.func.vmap`` and over
samples in chunks, through ``torch.func.functional_call`` on the parameter dict.

Their Definition 1.1: with the SVD ``𝒥 = Σ_s λ_s u_s v_sᵀ`` and a cutoff ``α``, the information
space ``𝓘`` is the span of the left singular vectors ``u_s`` with ``λ_s > α``, the nuisance space
``𝓝`` its orthogonal complement in ``R^{nK}``. Here the cutoff is a rank ``r`` (their CIFAR-10
experiments: ``r = 50``) or a value ``α`` (:func:`information_split`).

Top singular triplets (:func:`top_singular`):

* ``"exact"`` -- ``eigh`` of the Gram ``𝒥𝒥ᵀ`` (the empirical NTK, ``nK x nK``); all of the
  spectrum, the reference for the others. Only where ``(nK)²`` doubles fit in memory.
* ``"lanczos"`` -- ARPACK ``eigsh`` on the operator ``u ↦ 𝒥(𝒥ᵀu)``: one jvp and one vjp per
  Lanczos step, no matrix stored; the method the paper cites for the bulk spectrum.
* ``"randomized"`` -- randomized SVD (Halko, Martinsson, Tropp 2011) with power iterations: a few
  *block* products with ``k + oversample`` vectors at once, which vmap batches well; no
  ``(nK)²`` memory, so it is what the chapter uses on data sets whose Gram does not fit. Which
  route is fastest depends on the net and on n: see ``benchmarks/lowrank_spectrum.py``.

**Reference.** curvlinops' ``JacobianLinearOperator`` (a maintained library of the same jvp/vjp
products, as scipy ``LinearOperator``s) with scipy's ``svds`` gives the same top singular values,
left subspace and information / nuisance split to ~1e-8 relative in float64
(``tests/core/test_lowrank_curvlinops.py``). The operator here is kept: measured with
``benchmarks/lowrank_curvlinops.py`` (n = 200, p = 100,352, block of 95 vectors, 1 thread, shared
2-core CPU, 2026-12-07), its block products took 2.09 s (``𝒥V``) and 3.58 s (``𝒥ᵀU``) against
curvlinops' 3.24 s and 4.65 s; the whole randomized top-50 SVD took 72 s and 70 s (its QR
factorizations dominate). curvlinops is no faster, and this operator has the memory knobs
(``chunk_size``, ``col_chunk``) and the parameter subset (``params``) the chapter uses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

GramMethod = Literal["jacobian", "jvp"]
TopMethod = Literal["exact", "lanczos", "randomized"]


class ParameterJacobian:
    """``𝒥(w) ∈ R^{nK x p}`` of ``model`` over the samples ``x`` (outputs stacked sample-major).

    Args:
        model: the network; used through ``functional_call`` at its current parameters (a
            detached copy is taken, so later training does not change this operator). Put it in
            ``eval()`` mode if it has batch norm: per-sample Jacobians need independent samples.
        x: the ``n`` inputs, ``[n, ...]``.
        chunk_size: samples per forward pass (memory knob).
        col_chunk: vectors per vmapped product (memory knob; default: all at once). Memory of a
            product grows like ``chunk_size * col_chunk`` activations.
        params: names of the parameters ``w`` (default: every parameter with
            ``requires_grad``); the rest are held fixed, like ``V`` in their ``f(x) = V φ(Wx)``.
    """

    def __init__(
        self,
        model: nn.Module,
        x: Tensor,
        chunk_size: int = 256,
        params: list[str] | None = None,
        col_chunk: int | None = None,
    ) -> None:
        self.model = model
        self.x = x.detach()
        self.chunk_size = int(chunk_size)
        self.col_chunk = col_chunk
        named = dict(model.named_parameters())
        names = params if params is not None else [k for k, v in named.items() if v.requires_grad]
        self.names = list(names)
        self.params = {k: named[k].detach().clone() for k in self.names}
        self.fixed = {k: v.detach() for k, v in named.items() if k not in self.params}
        self.fixed.update({k: v.detach() for k, v in model.named_buffers()})
        self.shapes = [self.params[k].shape for k in self.names]
        self.numels = [self.params[k].numel() for k in self.names]
        self.p = int(sum(self.numels))
        self.n = int(self.x.shape[0])
        with torch.no_grad():
            out = self._f(self.params, self.x[:1])
        self.K = int(out.shape[1])
        self.dtype = out.dtype

    # -- plumbing --------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """``(nK, p)``."""
        return self.n * self.K, self.p

    def _f(self, params: dict[str, Tensor], xb: Tensor) -> Tensor:
        return functional_call(self.model, {**self.fixed, **params}, (xb,))

    def _chunks(self) -> list[slice]:
        return [
            slice(s, min(s + self.chunk_size, self.n)) for s in range(0, self.n, self.chunk_size)
        ]

    def unflatten(self, v: Tensor) -> dict[str, Tensor]:
        """``[..., p]`` -> parameter dict with leading axes ``...``."""
        lead = v.shape[:-1]
        parts = torch.split(v, self.numels, dim=-1)
        return {
            k: t.reshape(*lead, *s) for k, t, s in zip(self.names, parts, self.shapes, strict=True)
        }

    def flatten(self, d: dict[str, Tensor], lead: int = 0) -> Tensor:
        """Parameter dict (``lead`` leading axes) -> ``[..., p]``."""
        return torch.cat([d[k].reshape(*d[k].shape[:lead], -1) for k in self.names], dim=-1)

    def outputs(self) -> Tensor:
        """``f(w)`` stacked: ``[nK]``."""
        with torch.no_grad():
            return torch.cat([self._f(self.params, self.x[c]) for c in self._chunks()]).reshape(-1)

    # -- products --------------------------------------------------------------------------
    def _by_columns(self, fn: Callable[[Tensor], Tensor], a: Tensor) -> Tensor:
        step = self.col_chunk or a.shape[1]
        if a.shape[1] <= step:
            return fn(a)
        return torch.cat([fn(a[:, s : s + step]) for s in range(0, a.shape[1], step)], dim=1)

    def matmat(self, v: Tensor) -> Tensor:
        """``𝒥 V`` for ``V ∈ R^{p x m}`` (jvp, vmapped over the m columns): ``[nK, m]``."""
        return self._by_columns(self._matmat, v)

    def rmatmat(self, u: Tensor) -> Tensor:
        """``𝒥ᵀ U`` for ``U ∈ R^{nK x m}`` (vjp, vmapped over the m columns): ``[p, m]``."""
        return self._by_columns(self._rmatmat, u)

    def _matmat(self, v: Tensor) -> Tensor:
        tangents = self.unflatten(v.T.to(self.x.device, self.dtype).contiguous())
        outs = []
        for c in self._chunks():
            xb = self.x[c]

            def one(t: dict[str, Tensor], xb: Tensor = xb) -> Tensor:
                return jvp(lambda p: self._f(p, xb), (self.params,), (t,))[1]

            outs.append(vmap(one)(tangents).reshape(v.shape[1], -1))  # [m, b*K]
        return torch.cat(outs, dim=1).T

    def _rmatmat(self, u: Tensor) -> Tensor:
        m = u.shape[1]
        u3 = u.T.to(self.x.device, self.dtype).reshape(m, self.n, self.K)
        total = torch.zeros(m, self.p, dtype=self.dtype, device=self.x.device)
        for c in self._chunks():
            xb = self.x[c]
            _, pull = vjp(lambda p, xb=xb: self._f(p, xb), self.params)
            (g,) = vmap(pull)(u3[:, c].contiguous())
            total += self.flatten(g, lead=1)
        return total.T

    def matvec(self, v: Tensor) -> Tensor:
        """``𝒥 v``: ``[nK]``."""
        return self.matmat(v.reshape(-1, 1)).reshape(-1)

    def rmatvec(self, u: Tensor) -> Tensor:
        """``𝒥ᵀ u``: ``[p]``."""
        return self.rmatmat(u.reshape(-1, 1)).reshape(-1)

    # -- dense pieces ----------------------------------------------------------------------
    def rows(self, c: slice) -> Tensor:
        """The rows of the samples in ``c``: ``[len(c) * K, p]`` via ``vmap(jacrev)``."""

        def single(p: dict[str, Tensor], xi: Tensor) -> Tensor:
            return self._f(p, xi.unsqueeze(0)).squeeze(0)

        jac = vmap(jacrev(single), in_dims=(None, 0))(self.params, self.x[c])
        return self.flatten(jac, lead=2).reshape(-1, self.p)

    def dense(self) -> Tensor:
        """The whole ``nK x p`` matrix (small nets and data only)."""
        return torch.cat([self.rows(c) for c in self._chunks()])

    def gram(self, method: GramMethod = "jacobian", max_bytes: float = 2e9) -> Tensor:
        """The Gram ``𝒥𝒥ᵀ`` (empirical NTK), ``[nK, nK]`` in float64.

        ``"jacobian"``: per-sample Jacobians of one chunk of samples at a time (``vmap(jacrev)``),
        multiplied block by block; the rows are kept if ``nK * p`` floats fit in ``max_bytes``,
        else recomputed per block pair. ``"jvp"``: column block ``G[:, c] = 𝒥 (𝒥_cᵀ)`` -- the
        rows of chunk ``c`` pushed forward through every sample with batched jvp.
        Measured on the 2 shared CPU cores (``benchmarks/lowrank_spectrum.py --quick``):
        ResNet20 without batch norm, n=20: ``"jacobian"`` 3.4 s vs ``"jvp"`` 46 s (conv jvp under
        vmap is slow on CPU); one-hidden-layer MLP (p=50,890), n=100: ``"jvp"`` 3.3 s vs
        ``"jacobian"`` 8.3 s. Default ``"jacobian"``; ``"jvp"`` needs only
        ``O(chunk * K * p)`` memory.
        """
        nk = self.n * self.K
        g = torch.zeros(nk, nk, dtype=torch.float64)
        chunks = self._chunks()
        bounds = [(c.start * self.K, c.stop * self.K) for c in chunks]
        if method == "jvp":
            for c, (a, b) in zip(chunks, bounds, strict=True):
                g[:, a:b] = self.matmat(self.rows(c).T).double().cpu()
            return 0.5 * (g + g.T)
        if method != "jacobian":
            raise ValueError(f"method must be 'jacobian' or 'jvp', got {method!r}")
        itemsize = torch.finfo(self.dtype).bits // 8
        if nk * self.p * itemsize <= max_bytes:
            blocks = [self.rows(c) for c in chunks]
            for i, (a, b) in enumerate(bounds):
                for j in range(i, len(chunks)):
                    c0, c1 = bounds[j]
                    blk = (blocks[i] @ blocks[j].T).double().cpu()
                    g[a:b, c0:c1] = blk
                    g[c0:c1, a:b] = blk.T
            return g
        for i, (a, b) in enumerate(bounds):
            ri = self.rows(chunks[i])
            for j in range(i, len(chunks)):
                c0, c1 = bounds[j]
                blk = (ri @ (ri if j == i else self.rows(chunks[j])).T).double().cpu()
                g[a:b, c0:c1] = blk
                g[c0:c1, a:b] = blk.T
        return g

    def gram_operator(self) -> Callable[[Tensor], Tensor]:
        """``U ↦ 𝒥(𝒥ᵀU)`` on ``[nK, m]`` blocks."""
        return lambda u: self.matmat(self.rmatmat(u))


@dataclass
class Spectrum:
    """Top singular triplets of ``𝒥``: ``s`` descending ``[k]``, left vectors ``u`` ``[nK, k]``
    (float64, orthonormal columns), right vectors ``v`` ``[p, k]`` or ``None``."""

    s: Tensor
    u: Tensor
    v: Tensor | None = None
    method: str = ""

    def __len__(self) -> int:
        return int(self.s.numel())


def top_singular(
    jac: ParameterJacobian,
    k: int,
    method: TopMethod = "randomized",
    oversample: int | None = None,
    n_iter: int = 4,
    seed: int = 0,
    tol: float = 1e-6,
) -> Spectrum:
    """The top ``k`` singular values and left singular vectors of ``𝒥`` (see module doc).

    ``"exact"`` returns them from ``eigh`` of the float64 Gram; ``"lanczos"`` from scipy's
    ``eigsh`` on ``u ↦ 𝒥𝒥ᵀu`` (tolerance ``tol``); ``"randomized"`` from a randomized range
    finder with ``k + oversample`` columns (default ``oversample = k // 2 + 20``) and ``n_iter``
    power iterations, orthonormalized between products. At init an MLP's spectrum is flat past
    its top ~10 values, so the 50th vector is ill-separated: on mnist-10k (n=200, p=101,770) the
    top-50 subspace against exact had mean squared cosine 0.972 with 20 extra columns, 0.9967
    with 50 and 0.99995 with 100 (4 power iterations) -- hence the generous default.
    """
    if oversample is None:
        oversample = k // 2 + 20
    nk = jac.n * jac.K
    k = int(min(k, nk, jac.p))
    if method == "exact":
        evals, evecs = torch.linalg.eigh(jac.gram())
        order = torch.argsort(evals, descending=True)[:k]
        return Spectrum(evals[order].clamp_min(0).sqrt(), evecs[:, order], None, "exact")
    if method == "lanczos":
        from scipy.sparse.linalg import LinearOperator, eigsh

        def mv(u: np.ndarray) -> np.ndarray:
            t = torch.from_numpy(np.ascontiguousarray(u, dtype=np.float64)).reshape(-1, 1)
            return jac.gram_operator()(t).double().cpu().numpy().reshape(-1)

        op = LinearOperator((nk, nk), matvec=mv, dtype=np.float64)
        rng = np.random.default_rng(seed)
        if k >= nk - 1:
            return top_singular(jac, k, "exact")
        evals, evecs = eigsh(op, k=k, which="LA", tol=tol, v0=rng.standard_normal(nk))
        order = np.argsort(evals)[::-1]
        s = torch.from_numpy(np.sqrt(np.clip(evals[order], 0, None)).copy())
        return Spectrum(s, torch.from_numpy(evecs[:, order].copy()), None, "lanczos")
    if method == "randomized":
        gen = torch.Generator().manual_seed(seed)
        ell = min(k + oversample, nk, jac.p)
        omega = torch.randn(jac.p, ell, generator=gen, dtype=torch.float64).to(jac.x.device)
        q, _ = torch.linalg.qr(jac.matmat(omega).double())
        for _ in range(n_iter):
            z, _ = torch.linalg.qr(jac.rmatmat(q).double())
            q, _ = torch.linalg.qr(jac.matmat(z).double())
        bt = jac.rmatmat(q).double()  # Bᵀ = 𝒥ᵀQ, [p, ell]
        vt, s, ut = torch.linalg.svd(bt, full_matrices=False)  # B = ut.T diag(s) vt.T
        u = q @ ut.T
        return Spectrum(s[:k].cpu(), u[:, :k].cpu(), vt[:, :k].cpu(), "randomized")
    raise ValueError(f"method must be 'exact', 'lanczos' or 'randomized', got {method!r}")


def information_split(
    spec: Spectrum,
    y: Tensor,
    rank: int | None = None,
    alpha: float | None = None,
) -> dict[str, float]:
    """Their Def. 1.1 applied to one vector ``y ∈ R^{nK}`` (labels, or a residual).

    Exactly one of ``rank`` (𝓘 = span of the top ``rank`` left singular vectors) and ``alpha``
    (𝓘 = span of the ``u_s`` with ``λ_s > alpha``) is given; ``spec`` must hold at least that
    many triplets. Returns ``info = ||Π_𝓘 y||/||y||``, ``nuisance = ||Π_𝓝 y||/||y||`` (fractions
    of the *norm*, as in their Tables 1, 2), the energies ``info²`` and ``nuisance²``, ``rank``,
    and ``pinv_norm = ||𝒥_𝓘^† y|| = ||Σ_𝓘^{-1} U_𝓘ᵀ y||`` (the right singular vectors are
    orthonormal, so they do not change the norm).
    """
    if (rank is None) == (alpha is None):
        raise ValueError("give exactly one of rank and alpha")
    if rank is None:
        rank = int((spec.s > alpha).sum())
        if rank == len(spec) and len(spec) < spec.u.shape[0]:
            raise ValueError(f"alpha={alpha} keeps all {rank} computed triplets; compute more")
    if rank > len(spec):
        raise ValueError(f"rank {rank} > {len(spec)} computed singular triplets")
    y = y.reshape(-1).double()
    ny = float(y.norm())
    coef = spec.u[:, :rank].T @ y
    info_sq = float(coef.pow(2).sum()) / ny**2
    info_sq = min(max(info_sq, 0.0), 1.0)
    pinv = float((coef / spec.s[:rank].double()).norm()) if rank else 0.0
    return {
        "rank": rank,
        "info": math.sqrt(info_sq),
        "nuisance": math.sqrt(1.0 - info_sq),
        "info_energy": info_sq,
        "nuisance_energy": 1.0 - info_sq,
        "pinv_norm": pinv,
    }


def project_energy(u: Tensor, r: Tensor) -> tuple[float, float]:
    """``(||Π_𝓘 r||², ||Π_𝓝 r||²)`` for ``𝓘 = span(u)`` (orthonormal columns)."""
    r = r.reshape(-1).double()
    info = float((u.T @ r).pow(2).sum())
    return info, max(float(r.pow(2).sum()) - info, 0.0)


def one_hot_stacked(y: Tensor, n_classes: int, scale: float = 1.0) -> Tensor:
    """Labels as the stacked vector ``y ∈ R^{nK}`` of one-hot rows (times ``scale``)."""
    return (scale * torch.nn.functional.one_hot(y, n_classes)).double().reshape(-1)


__all__: list[str] = [
    "ParameterJacobian",
    "Spectrum",
    "information_split",
    "one_hot_stacked",
    "project_energy",
    "top_singular",
]
