"""Section 2.2 (the symmetric-ReLU network) and Definition 2.2 (the contrastive loss with stop-gradient).

The loss is checked three independent ways: against a direct float64 evaluation of (2.2) written in this file
(:func:`direct_loss`, the printed form ``−τ log(e^{Sim⁺/τ} / Σ e^{Sim/τ})`` with the soft-threshold written
piecewise), its gradient against the SymPy derivation (:mod:`fdcheck.symbolic`) and against central finite
differences of :func:`direct_loss` with the stopped branch held fixed. Gradient comparisons keep every
pre-activation at least ``KINK_MARGIN`` away from ``±b`` (``assume``), where the loss has kinks.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import assume, given, note
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.special import logsumexp
from strategies import LossCase, array_snippet, dtypes, loss_cases, oracle_shapes, reproduce, seeds

from fdcheck.backend import Random, get_namespace
from fdcheck.loss import contrastive_loss_and_grad, contrastive_loss_from_features, softmax_weights
from fdcheck.network import activation, activation_derivative, decompose, features, init_weights
from fdcheck.symbolic import kink_margin, symbolic_loss_and_grad

GRAD_RTOL = 1e-6  # the bar for the gradient in float64 (measured errors are ~1e-10 for FD, ~1e-15 for SymPy)
FD_STEP = 1e-6
KINK_MARGIN = 1e-3  # > FD_STEP · max|x| (inputs are N(0,1), |x| < 10): a finite difference never crosses a kink


# ------------------------------------------------------------------------------------------ Section 2.2

def soft_threshold(u: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Section 2.2's activation written piecewise: ``u − b`` above ``b``, ``u + b`` below ``−b``, else 0."""
    return np.where(u > b, u - b, np.where(u < -b, u + b, 0.0))


finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def activation_inputs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    dtype = draw(dtypes)
    shape = draw(hnp.array_shapes(min_dims=2, max_dims=2, max_side=6))
    u = draw(hnp.arrays(dtype, shape, elements=finite))
    b = draw(hnp.arrays(dtype, (shape[1],), elements=st.floats(0, 100, width=32)))
    return u, b


@given(inputs=activation_inputs())
def test_activation_is_the_two_relu_soft_threshold(inputs: tuple[np.ndarray, np.ndarray]) -> None:
    """``h(u) = ReLU(u − b) − ReLU(−u − b)`` equals the piecewise soft-threshold exactly, is zero on
    ``|u| ≤ b`` and odd (all exact in floating point: the same roundings happen on both sides)."""
    u, b = inputs
    reproduce(f"{array_snippet('u', u)}\n{array_snippet('b', b)}\nh = activation(u, b)")
    h = np.asarray(activation(u, b))
    assert h.dtype == u.dtype
    np.testing.assert_array_equal(h, soft_threshold(u, b))
    np.testing.assert_array_equal(h[np.abs(u) <= b], 0)
    np.testing.assert_array_equal(np.asarray(activation(-u, b)), -h)


@given(inputs=activation_inputs(), other=st.data())
def test_activation_is_one_lipschitz(inputs: tuple[np.ndarray, np.ndarray], other: st.DataObject) -> None:
    """``|h(u) − h(v)| ≤ |u − v|`` (up to the rounding of the subtractions: 4 eps of the operands)."""
    u, b = inputs
    v = other.draw(hnp.arrays(u.dtype, u.shape, elements=finite), label="v")
    reproduce(f"{array_snippet('u', u)}\n{array_snippet('v', v)}\n{array_snippet('b', b)}\n"
              "lhs = np.abs(activation(u, b) - activation(v, b))")
    u64, v64, b64 = (a.astype(np.float64) for a in (u, v, b))
    lhs = np.abs(np.asarray(activation(u, b), np.float64) - np.asarray(activation(v, b), np.float64))
    slack = 4 * np.finfo(u.dtype).eps * (np.abs(u64) + np.abs(v64) + 2 * b64)
    assert np.all(lhs <= np.abs(u64 - v64) + slack)


@given(inputs=activation_inputs())
def test_activation_derivative(inputs: tuple[np.ndarray, np.ndarray]) -> None:
    """``h'(u) = 1{|u| > b}`` (0 at the kinks, one-sided), and it matches a central difference of ``h`` away
    from the kinks (``h`` is linear with slope 0 or 1 within ``step`` of such a point, so exactly)."""
    u, b = (a.astype(np.float64) for a in inputs)
    reproduce(f"{array_snippet('u', u)}\n{array_snippet('b', b)}\nh = activation(u, b)")
    dh = np.asarray(activation_derivative(u, b))
    np.testing.assert_array_equal(dh, (np.abs(u) > b).astype(np.float64))
    step = 1e-3
    away = np.abs(np.abs(u) - b) > 2 * step
    fd = (np.asarray(activation(u + step, b)) - np.asarray(activation(u - step, b))) / (2 * step)
    np.testing.assert_allclose(fd[away], dh[away], atol=1e-6 * (1 + np.max(np.abs(u))))


@given(case=loss_cases(max_n=5))
def test_features_apply_each_neurons_bias(case: LossCase) -> None:
    """``f(x)_i = h(<w_i, x>, b_i)``: neuron ``i`` with its own bias, for every row of the batch."""
    reproduce(case.repro())
    a = case.arrays()
    f = np.asarray(features(a["W"], a["b"], a["x1"]))
    assert f.shape == (case.n, case.m)
    expected = [[soft_threshold(np.dot(a["W"][i], x), a["b"][i]) for i in range(case.m)] for x in a["x1"]]
    np.testing.assert_allclose(f, np.array(expected, dtype=np.float64), rtol=1e-12, atol=1e-12)


@given(seed=seeds, d=st.integers(1, 12), factor=st.integers(1, 6), m=st.integers(1, 10), dtype=dtypes)
def test_decomposition_over_atoms_and_complement(seed: int, d: int, factor: int, m: int, dtype: str) -> None:
    """Theorem 3.4's decomposition: ``w_i = Σ_j alpha_ij M_j + perp_i`` with ``alpha = W M`` and ``perp_i ⟂ M``."""
    from fdcheck.data import make_dictionary

    reproduce(f"rng = Random({seed}, xp)\n"
              f"M = make_dictionary({d * factor}, {d}, rng, {dtype!r}); W = rng.normal(({m}, {d * factor}), "
              f"dtype={dtype!r}); decompose(W, M)")
    xp = get_namespace("numpy")
    rng = Random(seed, xp)
    M = make_dictionary(d * factor, d, rng, dtype)
    W = rng.normal((m, d * factor), dtype=dtype)
    alpha, perp = decompose(W, M)
    eps = float(np.finfo(dtype).eps)
    scale = float(np.max(np.abs(W))) * d * factor
    np.testing.assert_allclose(alpha, W @ M, rtol=0, atol=8 * eps * scale)
    np.testing.assert_allclose(alpha @ M.T + perp, W, rtol=0, atol=16 * eps * scale)
    assert float(np.max(np.abs(perp @ M))) <= 32 * eps * scale


@given(seed=seeds, m=st.integers(1, 64), d1=st.integers(1, 256), init_std=st.floats(1e-4, 2.0), dtype=dtypes)
def test_initialisation(seed: int, m: int, d1: int, init_std: float, dtype: str) -> None:
    """Section 2.2: ``b = 0`` and ``w_i ~ N(0, init_std² I)`` (``init_std`` a standard deviation): ``Σ w²/σ0²``
    is ``χ²(m·d1)`` (two-sided test at 1e-6)."""
    from scipy import stats

    reproduce(f"W, b = init_weights({m}, {d1}, {init_std!r}, Random({seed}, xp), {dtype!r})")
    W, b = init_weights(m, d1, init_std, Random(seed, get_namespace("numpy")), dtype)
    assert W.shape == (m, d1) and b.shape == (m,) and str(W.dtype) == dtype == str(b.dtype)
    np.testing.assert_array_equal(b, 0)
    statistic = float(np.sum(W.astype(np.float64) ** 2) / init_std**2)
    p_value = 2 * min(stats.chi2.cdf(statistic, W.size), stats.chi2.sf(statistic, W.size))
    assert p_value >= 1e-6, f"Σw²/σ0² = {statistic:.4g} over {W.size} weights: p-value {p_value:.3g}"


# ------------------------------------------------------------------------------------------ Definition 2.2

def direct_loss(W: np.ndarray, W_stop: np.ndarray, b: np.ndarray, x1: np.ndarray, x2: np.ndarray,
                x_neg: np.ndarray, tau: float, include_positive: bool) -> float:
    """(2.2) evaluated as printed, in float64: mean over positives ``p`` of
    ``−τ log( e^{Sim(x1_p, x2_p)/τ} / Σ_{c ∈ B_p} e^{Sim(x1_p, c)/τ} )`` with ``Sim(a, c) = <f_W(a), f_{W_stop}(c)>``
    (``W_stop`` is the stopped copy of ``W``; pass ``W`` itself for no stop-gradient)."""
    def f(weights: np.ndarray, x: np.ndarray) -> np.ndarray:
        return soft_threshold(x @ weights.T, b[None, :])

    f1, f2, fn = f(W, x1), f(W_stop, x2), f(W_stop, x_neg)
    per_positive = []
    for p in range(x1.shape[0]):
        positive = math.exp(float(f1[p] @ f2[p]) / tau)
        terms = [math.exp(float(f1[p] @ fn[s]) / tau) for s in range(fn.shape[0])]
        denominator = math.fsum(terms + ([positive] if include_positive else []))
        per_positive.append(-tau * math.log(positive / denominator))
    return math.fsum(per_positive) / len(per_positive)


def _max_logit(a: dict[str, np.ndarray], tau: float) -> float:
    f1, f2, fn = (soft_threshold(a[x] @ a["W"].T, a["b"][None, :]) for x in ("x1", "x2", "x_neg"))
    return float(max(np.max(np.abs(np.sum(f1 * f2, axis=1))), np.max(np.abs(f1 @ fn.T)))) / tau


def _rel(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(a - ref) / max(np.linalg.norm(ref), 1e-300))


def _fd_gradient(a: dict[str, np.ndarray], tau: float, include_positive: bool, stop_gradient: bool) -> np.ndarray:
    """Central differences of :func:`direct_loss` in each entry of ``W``; with ``stop_gradient`` the stopped
    copy stays at the unperturbed ``W`` (that is what StopGrad means for a derivative)."""
    W = a["W"]
    grad = np.zeros_like(W)
    for idx in np.ndindex(*W.shape):
        e = np.zeros_like(W)
        e[idx] = FD_STEP
        hi, lo = W + e, W - e
        grad[idx] = (direct_loss(hi, W if stop_gradient else hi, a["b"], a["x1"], a["x2"], a["x_neg"], tau,
                                 include_positive)
                     - direct_loss(lo, W if stop_gradient else lo, a["b"], a["x1"], a["x2"], a["x_neg"], tau,
                                   include_positive)) / (2 * FD_STEP)
    return grad


def _well_above_fd_noise(fd: np.ndarray, a: dict[str, np.ndarray], case: LossCase) -> None:
    """Reject gradients too small for a relative comparison with finite differences: the rounding of a central
    difference is about ``eps·|L| / step ≈ 2e-10 (1 + |L|)`` per entry, so a gradient norm of at least
    ``1e-2 (1 + |L|)`` keeps it below 1e-7 relative (including zero gradients: no active neuron)."""
    loss = direct_loss(a["W"], a["W"], a["b"], a["x1"], a["x2"], a["x_neg"], case.tau, case.include_positive)
    assume(np.linalg.norm(fd) > 1e-2 * (1 + abs(loss)))


def _usable(case: LossCase, a: dict[str, np.ndarray]) -> None:
    """Reject inputs on a kink or with similarities the plain exp of (2.2) cannot hold."""
    assume(kink_margin(a["W"], a["b"], a["x1"], a["x2"], a["x_neg"]) > KINK_MARGIN)
    assume(_max_logit(a, case.tau) < 300)


@given(case=loss_cases())
def test_loss_equals_the_direct_formula(case: LossCase) -> None:
    """The implementation (Section 4's ``−Sim + τ log Σ exp``, max-shifted) equals (2.2) as printed, in float64,
    for both denominator sets. Tolerance ``1e-12 (1 + τ max|Sim/τ|)``: a few roundings of the largest term."""
    reproduce(case.repro())
    a = case.arrays()
    assume(_max_logit(a, case.tau) < 300)
    loss, grad = contrastive_loss_and_grad(a["W"], a["b"], a["x1"], a["x2"], a["x_neg"], case.tau,
                                           case.include_positive)
    expected = direct_loss(a["W"], a["W"], a["b"], a["x1"], a["x2"], a["x_neg"], case.tau, case.include_positive)
    assert np.shape(loss) == () and np.asarray(grad).shape == (case.m, case.d1)
    tol = 1e-12 * (1 + case.tau * _max_logit(a, case.tau))
    assert abs(float(loss) - expected) <= tol, f"loss {float(loss)!r} vs (2.2) {expected!r}"


@given(case=loss_cases())
def test_denominator_variants(case: LossCase) -> None:
    """With the positive in ``B`` the loss is a cross-entropy (``≥ 0``); removing it lowers every term by exactly
    ``τ log(1 + e^{Sim⁺/τ} / Σ_neg e^{Sim/τ}) > 0``."""
    reproduce(case.repro())
    a = case.arrays()
    assume(_max_logit(a, case.tau) < 300)
    args = (a["W"], a["b"], a["x1"], a["x2"], a["x_neg"], case.tau)
    with_positive = float(contrastive_loss_and_grad(*args, include_positive=True)[0])
    without = float(contrastive_loss_and_grad(*args, include_positive=False)[0])
    f1, f2, fn = (soft_threshold(a[x] @ a["W"].T, a["b"][None, :]) for x in ("x1", "x2", "x_neg"))
    s_pos, s_neg = np.sum(f1 * f2, axis=1) / case.tau, f1 @ fn.T / case.tau
    gap = case.tau * np.mean(np.logaddexp(0.0, s_pos - logsumexp(s_neg, axis=1)))
    assert with_positive >= -1e-12 * (1 + case.tau * _max_logit(a, case.tau))
    assert gap > 0
    np.testing.assert_allclose(with_positive - without, gap, rtol=1e-9, atol=1e-12 * (1 + abs(without)))


@given(case=loss_cases(shapes=oracle_shapes()))
def test_gradient_matches_the_sympy_derivation(case: LossCase) -> None:
    """``dL/dW`` equals SymPy's derivative of (2.2) with the stopped branch as separate symbols (float64,
    relative error below 1e-6), both denominator variants, away from the kinks."""
    reproduce(case.repro() + "\nfrom fdcheck.symbolic import symbolic_loss_and_grad\n"
              "ref_loss, ref_grad = symbolic_loss_and_grad(a['W'], a['b'], a['x1'], a['x2'], a['x_neg'], case.tau, "
              "case.include_positive)")
    a = case.arrays()
    _usable(case, a)
    loss, grad = contrastive_loss_and_grad(a["W"], a["b"], a["x1"], a["x2"], a["x_neg"], case.tau,
                                           case.include_positive)
    ref_loss, ref_grad = symbolic_loss_and_grad(a["W"], a["b"], a["x1"], a["x2"], a["x_neg"], case.tau,
                                                case.include_positive)
    assert abs(float(loss) - ref_loss) <= 1e-10 * (1 + abs(ref_loss))
    if np.linalg.norm(ref_grad) == 0:  # no neuron active on the first views: both must be exactly zero
        np.testing.assert_array_equal(grad, 0)
        return
    err = _rel(np.asarray(grad), ref_grad)
    note(f"relative error vs SymPy: {err:.3g}")
    assert err < GRAD_RTOL, f"‖grad − sympy‖/‖sympy‖ = {err:.3g}"


@given(case=loss_cases(max_n=3, max_size=4))
def test_gradient_matches_finite_differences(case: LossCase) -> None:
    """``dL/dW`` equals central differences (step 1e-6) of the direct (2.2) with the stopped copy held at ``W``:
    relative error below 1e-6 in float64, away from the kinks."""
    reproduce(case.repro())
    a = case.arrays()
    _usable(case, a)
    _, grad = contrastive_loss_and_grad(a["W"], a["b"], a["x1"], a["x2"], a["x_neg"], case.tau, case.include_positive)
    fd = _fd_gradient(a, case.tau, case.include_positive, stop_gradient=True)
    _well_above_fd_noise(fd, a, case)
    err = _rel(np.asarray(grad), fd)
    note(f"relative error vs finite differences: {err:.3g}")
    assert err < GRAD_RTOL, f"‖grad − fd‖/‖fd‖ = {err:.3g}"


@given(case=loss_cases(shapes=oracle_shapes(), max_n=3))
def test_stop_gradient_is_what_the_implementation_differentiates(case: LossCase) -> None:
    """Without the stop-gradient, SymPy's derivative (validated here against finite differences of the direct
    (2.2) with ``W`` in both branches) is a different vector, and the implementation equals the stop-gradient
    one, not it. Cases where the stopped branch contributes nothing (its features all zero) are skipped."""
    reproduce(case.repro())
    a = case.arrays()
    _usable(case, a)
    args = (a["W"], a["b"], a["x1"], a["x2"], a["x_neg"], case.tau, case.include_positive)
    _, grad = contrastive_loss_and_grad(*args)
    _, with_sg = symbolic_loss_and_grad(*args, stop_gradient=True)
    _, without_sg = symbolic_loss_and_grad(*args, stop_gradient=False)
    fd_tied = _fd_gradient(a, case.tau, case.include_positive, stop_gradient=False)
    _well_above_fd_noise(fd_tied, a, case)
    assert _rel(without_sg, fd_tied) < GRAD_RTOL, "the SymPy gradient without stop-gradient is not the loss's gradient"
    gap = _rel(with_sg, without_sg)
    assume(gap > 1e-3)
    note(f"‖sg − no-sg‖/‖no-sg‖ = {gap:.3g}")
    assert _rel(np.asarray(grad), with_sg) < GRAD_RTOL, "implementation differs from the stop-gradient gradient"
    assert _rel(np.asarray(grad), without_sg) > 1e-3, "implementation follows the gradient without stop-gradient"


@given(data=st.data(), n=st.integers(1, 4), k=st.integers(1, 5), m=st.integers(1, 5), seed=seeds,
       tau=st.floats(0.3, 5.0), include_positive=st.booleans())
def test_feature_gradient_matches_finite_differences(data: st.DataObject, n: int, k: int, m: int, seed: int,
                                                      tau: float, include_positive: bool) -> None:
    """``dL/df1`` of :func:`contrastive_loss_from_features` (features given, so no kinks) equals central
    differences of (2.2) in ``f1`` with ``f2`` and the negatives fixed (relative error below 1e-6)."""
    reproduce(f"rng = np.random.default_rng({seed}); f1, f2, fn = (rng.standard_normal(s) for s in "
              f"(({n}, {m}), ({n}, {m}), ({k}, {m})))\n"
              f"contrastive_loss_from_features(f1, f2, fn, {tau!r}, {include_positive})")
    rng = np.random.default_rng(seed)
    f1, f2, fn = (rng.standard_normal(s) for s in ((n, m), (n, m), (k, m)))

    def loss_of(g1: np.ndarray) -> float:
        per = []
        for p in range(n):
            positive = math.exp(float(g1[p] @ f2[p]) / tau)
            denominator = math.fsum([math.exp(float(g1[p] @ fn[s]) / tau) for s in range(k)]
                                    + ([positive] if include_positive else []))
            per.append(-tau * math.log(positive / denominator))
        return math.fsum(per) / n

    loss, grad = contrastive_loss_from_features(f1, f2, fn, tau, include_positive)
    assert abs(float(loss) - loss_of(f1)) <= 1e-12 * (1 + abs(loss_of(f1)))
    fd = np.zeros_like(f1)
    for idx in np.ndindex(*f1.shape):
        e = np.zeros_like(f1)
        e[idx] = FD_STEP
        fd[idx] = (loss_of(f1 + e) - loss_of(f1 - e)) / (2 * FD_STEP)
    assume(np.linalg.norm(fd) > 1e-2 * (1 + abs(loss_of(f1))))  # above the rounding of the differences
    assert _rel(np.asarray(grad), fd) < GRAD_RTOL


@given(case=loss_cases(max_n=4, max_size=8), scale=st.sampled_from([1e3, 1e4, 1e5, 1e6]), dtype=dtypes)
def test_finite_at_huge_similarities(case: LossCase, scale: float, dtype: str) -> None:
    """Representations are unnormalised, so similarities are unbounded: with ``W`` scaled by 1e3..1e6
    (similarities up to ~1e13, far beyond ``exp``'s range) loss and gradient stay finite in float32 and float64,
    the loss with the positive in ``B`` stays ``≥ 0`` (up to rounding), and the loss matches a float64
    log-sum-exp reference to ``2·(m + d1)·eps·max|Sim|`` (the rounding of the similarities themselves) plus a
    few roundings of the ``O(τ log k)`` remainder."""
    reproduce(case.repro() + f"\n# then W *= {scale!r} and cast everything to {dtype}")
    a = case.arrays()
    a["W"] = a["W"] * scale
    a["b"] = a["b"] * scale
    a = {name: v.astype(dtype) for name, v in a.items()}
    loss, grad = contrastive_loss_and_grad(a["W"], a["b"], a["x1"], a["x2"], a["x_neg"], case.tau,
                                           case.include_positive)
    assert np.isfinite(loss) and np.all(np.isfinite(grad)), f"loss {loss}, grad finite: {np.isfinite(grad).all()}"
    assert np.asarray(loss).dtype == np.dtype(dtype) and np.asarray(grad).dtype == np.dtype(dtype)
    h = {x: soft_threshold(a[x].astype(np.float64) @ a["W"].astype(np.float64).T, a["b"].astype(np.float64))
         for x in ("x1", "x2", "x_neg")}
    s_pos = np.sum(h["x1"] * h["x2"], axis=1)
    s_neg = h["x1"] @ h["x_neg"].T
    logits = np.concatenate([s_pos[:, None], s_neg], axis=1) if case.include_positive else s_neg
    reference = float(np.mean(-s_pos + case.tau * logsumexp(logits / case.tau, axis=1)))
    top = float(np.max(np.abs(logits))) + float(np.max(np.abs(s_pos)))
    eps = float(np.finfo(dtype).eps)
    # rounding of the similarities, plus a few roundings of the O(τ log(k + 1)) log-sum-exp and of the result
    tol = eps * (2 * (case.m + case.d1) * top + 8 * (case.tau * math.log(case.k + 2) + abs(reference)))
    assert abs(float(loss) - reference) <= tol, f"loss {float(loss)!r} vs log-sum-exp reference {reference!r}"
    if case.include_positive:
        assert float(loss) >= -tol


def test_softmax_weights_are_stable() -> None:
    """``softmax_weights`` returns ``(log Σ exp, softmax)`` without overflow for logits of 1e30."""
    logits = np.array([[1e30, 1e30 - 1e15, -1e30], [0.0, 1.0, 2.0]])
    lse, weights = softmax_weights(logits)
    np.testing.assert_allclose(lse, logsumexp(logits, axis=1), rtol=1e-15)
    np.testing.assert_allclose(weights, np.exp(logits - logsumexp(logits, axis=1, keepdims=True)), rtol=1e-12)
    np.testing.assert_allclose(np.sum(weights, axis=1), 1.0, rtol=1e-15)
