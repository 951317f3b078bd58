"""The learner (Section 2.2): one layer of ``m`` symmetric-ReLU neurons, and neurons seen through ``M``.

``h_i(x) = ReLU(<w_i, x> − b_i) − ReLU(−<w_i, x> − b_i)``, which for ``b_i ≥ 0`` is the soft-threshold of
``<w_i, x>`` at ``b_i``. Weights are stored as ``W`` ``(m, d1)``, one row per neuron, and batches as rows.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .backend import Random, array_namespace

__all__ = ["NeuronDecomposition", "activation", "activation_derivative", "decompose", "features", "init_weights"]


def activation(u: Any, b: Any) -> Any:
    """``ReLU(u − b) − ReLU(−u − b)`` elementwise (``b`` broadcasts over the last axis)."""
    xp = array_namespace(u)
    return xp.maximum(u - b, 0) - xp.maximum(-u - b, 0)


def activation_derivative(u: Any, b: Any) -> Any:
    """``∂h/∂u = 1{u > b} + 1{u < −b}`` (one-sided at the kinks, where the derivative is undefined)."""
    xp = array_namespace(u)
    return xp.astype(u > b, u.dtype) + xp.astype(u < -b, u.dtype)


def features(W: Any, b: Any, x: Any) -> Any:
    """The representation ``f(x) = (h_1(x), …, h_m(x))`` of each row of ``x``: shape ``(n, m)``."""
    return activation(x @ W.T, b)


def init_weights(m: int, d1: int, init_std: float, rng: Random, dtype: str = "float32") -> tuple[Any, Any]:
    """Section 2.2's initialisation: ``w_i ~ N(0, init_std² I_{d1})`` and ``b_i = 0``."""
    W = rng.normal((m, d1), std=init_std, dtype=dtype)
    xp = array_namespace(W)
    return W, xp.zeros((m,), dtype=W.dtype)


class NeuronDecomposition(NamedTuple):
    """``w_i = Σ_j alpha_ij M_j + perp_i`` with ``perp_i ∈ span(M)^⊥`` (Theorem 3.4's decomposition)."""

    alpha: Any  # (m, d): coefficients on the atoms, alpha = W M
    perp: Any  # (m, d1): the component of each neuron orthogonal to span(M)


def decompose(W: Any, M: Any) -> NeuronDecomposition:
    """Split each neuron into its coefficients on the atoms ``M_j`` and its component in ``M⊥``."""
    alpha = W @ M
    return NeuronDecomposition(alpha=alpha, perp=W - alpha @ M.T)
