"""Golden values: tiny examples of the core functions worked out by hand (as optax pins ``ntxent``).

Each expected number below is derived in the comment above it; the long decimals were evaluated with mpmath
at 30 digits from the closed forms written beside them. Every example runs on every backend (``xp``) in
float32 and float64.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from strategies import assert_namespace, dtype_name

from fdcheck.augment import random_mask
from fdcheck.backend import to_numpy
from fdcheck.data import SparseCodingModel
from fdcheck.loss import contrastive_loss_and_grad, contrastive_loss_from_features
from fdcheck.network import activation, activation_derivative, decompose, features
from fdcheck.symbolic import symbolic_loss_and_grad

DTYPES = ["float32", "float64"]


def _rtol(dtype: str) -> float:
    return 1e-6 if dtype == "float32" else 1e-14


def _check(got: Any, expected: Any, like: Any, dtype: str) -> None:
    assert_namespace(got, like)
    assert dtype_name(got) == dtype
    np.testing.assert_allclose(to_numpy(got), np.asarray(expected, dtype=np.float64), rtol=_rtol(dtype),
                               atol=_rtol(dtype))


class FixedDraws:
    """A stand-in for :class:`fdcheck.backend.Random` that returns given arrays, so the randomised functions
    can be checked against hand-computed outputs. Records the arguments it was called with."""

    def __init__(self, xp: Any, **arrays: Any) -> None:
        self.xp, self.arrays, self.calls = xp, arrays, []

    def _give(self, name: str, shape: tuple[int, ...], dtype: str, scale: float = 1.0) -> Any:
        self.calls.append((name, tuple(shape), dtype, scale))
        a = np.asarray(self.arrays[name], dtype=dtype) * np.asarray(scale, dtype=dtype)
        assert a.shape == tuple(shape)
        return self.xp.asarray(a)

    def bernoulli(self, shape: tuple[int, ...], prob: float, dtype: str = "float64") -> Any:
        return self._give("bernoulli", shape, dtype)

    def uniform(self, shape: tuple[int, ...], dtype: str = "float64") -> Any:
        return self._give("uniform", shape, dtype)

    def normal(self, shape: tuple[int, ...], std: float = 1.0, dtype: str = "float64") -> Any:
        return self._give("normal", shape, dtype, std)


@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_golden(xp: Any, dtype: str) -> None:
    # Section 2.2 at b = 1: h(u) = ReLU(u − 1) − ReLU(−u − 1): −3 → −2, ±1 and inside → 0, 2.5 → 1.5.
    u = xp.asarray(np.array([[-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.5]], dtype=dtype))
    b = xp.asarray(np.ones(7, dtype=dtype))
    _check(activation(u, b), [[-2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.5]], u, dtype)
    # the derivative is one-sided: 0 at the kinks u = ±1
    _check(activation_derivative(u, b), [[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]], u, dtype)
    # per-neuron biases: neuron 0 has b = 0 (plain identity), neuron 1 has b = 2
    W = xp.asarray(np.array([[1.0, 0.0], [0.0, 1.0]], dtype=dtype))
    x = xp.asarray(np.array([[-0.5, 3.0], [0.25, -1.0]], dtype=dtype))
    _check(features(W, xp.asarray(np.array([0.0, 2.0], dtype=dtype)), x), [[-0.5, 1.0], [0.25, 0.0]], x, dtype)


# The loss example: W = I (m = d1 = 2), b = (1/2, 1/2), τ = 2, one positive, two negatives.
#   x1 = (2, 1)      → f1 = (1.5, 0.5)         x2 = (3, −2) → f2 = (2.5, −1.5)
#   x_neg = (1, 2)   → (0.5, 1.5)             x_neg = (−1, 0.2) → (−0.5, 0)   (|0.2| ≤ 1/2: silent)
#   Sim⁺ = 3.75 − 0.75 = 3,  Sim⁻ = (0.75 + 0.75, −0.75 + 0) = (1.5, −0.75);  logits/τ = (1.5, 0.75, −0.375).
# With the positive in B:  L = −3 + 2 log(e^1.5 + e^0.75 + e^−0.375)
#   dL/df1 = Σ_c softmax_c f_c − f2 with softmax over (1.5, 0.75, −0.375); dL/dW = (dL/df1 ⊙ h'(u1)) x1ᵀ,
#   h'(u1) = (1, 1).  Without it:  L = −3 + 2 log(e^0.75 + e^−0.375), softmax over the negatives only.
LOSS_EXAMPLE = dict(W=[[1.0, 0.0], [0.0, 1.0]], b=[0.5, 0.5], x1=[[2.0, 1.0]], x2=[[3.0, -2.0]],
                    x_neg=[[1.0, 2.0], [-1.0, 0.2]], tau=2.0)
GOLDEN = {
    True: (0.97190345858081229719, [[-1.72821481304449285670, -0.86410740652224642835],
                                    [2.02633979884814064924, 1.01316989942407032462]]),
    False: (-0.93769972750337044886, [[-4.49017002626474341751, -2.24508501313237170876],
                                      [5.26474496060288487373, 2.63237248030144243687]]),
}


def test_loss_golden_closed_forms() -> None:
    """The pinned decimals are the closed forms of the comment above."""
    e = [math.exp(1.5), math.exp(0.75), math.exp(-0.375)]
    assert GOLDEN[True][0] == pytest.approx(-3 + 2 * math.log(sum(e)), rel=1e-15)
    assert GOLDEN[False][0] == pytest.approx(-3 + 2 * math.log(e[1] + e[2]), rel=1e-15)
    f2, n1, n2 = np.array([2.5, -1.5]), np.array([0.5, 1.5]), np.array([-0.5, 0.0])
    g = (e[0] * f2 + e[1] * n1 + e[2] * n2) / sum(e) - f2
    np.testing.assert_allclose(GOLDEN[True][1], np.outer(g, [2.0, 1.0]), rtol=1e-14)
    g = (e[1] * n1 + e[2] * n2) / (e[1] + e[2]) - f2
    np.testing.assert_allclose(GOLDEN[False][1], np.outer(g, [2.0, 1.0]), rtol=1e-14)


@pytest.mark.parametrize("include_positive", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
def test_loss_golden(xp: Any, dtype: str, include_positive: bool) -> None:
    e = LOSS_EXAMPLE
    args = [xp.asarray(np.array(e[k], dtype=dtype)) for k in ("W", "b", "x1", "x2", "x_neg")]
    loss, grad = contrastive_loss_and_grad(*args, e["tau"], include_positive)
    expected_loss, expected_grad = GOLDEN[include_positive]
    _check(loss, expected_loss, args[0], dtype)
    _check(grad, expected_grad, args[0], dtype)


@pytest.mark.parametrize("include_positive", [True, False])
def test_loss_golden_against_the_oracle(include_positive: bool) -> None:
    """The SymPy oracle reproduces the hand values with the stop-gradient, and gives another gradient without
    it (the stopped branch here carries W too: x2 and both negatives have active neurons)."""
    e = LOSS_EXAMPLE
    args = [np.array(e[k]) for k in ("W", "b", "x1", "x2", "x_neg")]
    loss, grad = symbolic_loss_and_grad(*args, e["tau"], include_positive)
    assert loss == pytest.approx(GOLDEN[include_positive][0], rel=1e-14)
    np.testing.assert_allclose(grad, GOLDEN[include_positive][1], rtol=1e-13)
    _, no_stop = symbolic_loss_and_grad(*args, e["tau"], include_positive, stop_gradient=False)
    assert np.max(np.abs(no_stop - grad)) > 0.1


@pytest.mark.parametrize("dtype", DTYPES)
def test_loss_from_features_golden(xp: Any, dtype: str) -> None:
    # Two positives with f1 = f2 = rows of I, one all-zero negative, τ = 1: each row has Sim⁺ = 1, Sim⁻ = 0,
    # L = −1 + log(e + 1) = log(1 + e^−1) (the NT-Xent value of a perfectly aligned pair against one orthogonal
    # negative); dL/df1_i = (softmax⁺ − 1) f2_i / n = −f2_i / (2 (1 + e)).
    f = xp.asarray(np.eye(2, dtype=dtype))
    loss, grad = contrastive_loss_from_features(f, f, xp.asarray(np.zeros((1, 2), dtype=dtype)), 1.0, True)
    _check(loss, math.log1p(math.exp(-1.0)), f, dtype)
    _check(grad, -np.eye(2) / (2 * (1 + math.e)), f, dtype)
    # without the positive in B: L = −1 + log(e^0) = −1, dL/df1 = (f_neg − f2)/n = −f2/2
    loss, grad = contrastive_loss_from_features(f, f, xp.asarray(np.zeros((1, 2), dtype=dtype)), 1.0, False)
    _check(loss, -1.0, f, dtype)
    _check(grad, -np.eye(2) / 2, f, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_random_mask_golden(xp: Any, dtype: str) -> None:
    # Definition 2.3 with D = diag(1, 0, 1, 0): x⁺ = 2Dx, x⁺⁺ = 2(I − D)x; at keep_prob 1/4 the scales are 4, 4/3.
    x = xp.asarray(np.array([[1.0, 2.0, 3.0, 4.0]], dtype=dtype))
    draws = FixedDraws(xp, bernoulli=[[1.0, 0.0, 1.0, 0.0]])
    plus, plusplus = random_mask(x, draws)
    _check(plus, [[2.0, 0.0, 6.0, 0.0]], x, dtype)
    _check(plusplus, [[0.0, 4.0, 0.0, 8.0]], x, dtype)
    plus, plusplus = random_mask(x, draws, keep_prob=0.25)
    _check(plus, [[4.0, 0.0, 12.0, 0.0]], x, dtype)
    _check(plusplus, [[0.0, 8.0 / 3.0, 0.0, 16.0 / 3.0]], x, dtype)
    assert draws.calls[-1][:3] == ("bernoulli", (1, 4), dtype)


# A 4 × 2 dictionary of Hadamard columns: M_1 = (1, 1, 1, 1)/2, M_2 = (1, −1, 1, −1)/2.
HADAMARD = [[0.5, 0.5], [0.5, -0.5], [0.5, 0.5], [0.5, -0.5]]


@pytest.mark.parametrize("dtype", DTYPES)
def test_sampler_golden(xp: Any, dtype: str) -> None:
    # Definition 2.1 with p = 1/2: z_j = +1 when u_j > 1 − p/2 = 3/4, −1 when u_j < p/2 = 1/4, else 0.
    # u = (0.9, 0.1 | 0.5, 0.8) → z = (1, −1 | 0, 1); Mz = (0, 1, 0, 1) and (1/2, −1/2, 1/2, −1/2).
    # The noise is std · (unit draws) with std = √noise_variance = √0.04 = 0.2 (a variance, not a std).
    M = xp.asarray(np.array(HADAMARD, dtype=dtype))
    model = SparseCodingModel(M=M, p=0.5, noise_variance=0.04)
    draws = FixedDraws(xp, uniform=[[0.9, 0.1], [0.5, 0.8]], normal=[[1.0, 0.0, -1.0, 0.0], [0.0, 0.0, 0.0, 5.0]])
    x, z, xi = model.sample(2, draws)
    _check(z, [[1.0, -1.0], [0.0, 1.0]], M, dtype)
    _check(xi, [[0.2, 0.0, -0.2, 0.0], [0.0, 0.0, 0.0, 1.0]], M, dtype)
    _check(x, [[0.2, 1.0, -0.2, 1.0], [0.5, -0.5, 0.5, 0.5]], M, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_decompose_golden(xp: Any, dtype: str) -> None:
    # w = (1, 2, 3, 4): alpha = (<w, M_1>, <w, M_2>) = (10/2, −2/2) = (5, −1);
    # perp = w − 5 M_1 + M_2 = (1, 2, 3, 4) − (2, 3, 2, 3) = (−1, −1, 1, 1), orthogonal to both atoms.
    M = xp.asarray(np.array(HADAMARD, dtype=dtype))
    alpha, perp = decompose(xp.asarray(np.array([[1.0, 2.0, 3.0, 4.0]], dtype=dtype)), M)
    _check(alpha, [[5.0, -1.0]], M, dtype)
    _check(perp, [[-1.0, -1.0, 1.0, 1.0]], M, dtype)
