"""The contrastive loss with stop-gradient (Definition 2.2, equation (2.2)) and its analytic gradient.

For positives ``i = 1..n`` with views ``x1_i``, ``x2_i`` and negatives ``x_neg`` shared by all positives,

    L = mean_i [ −Sim(x1_i, x2_i) + τ log Σ_{x ∈ B_i} exp(Sim(x1_i, x) / τ) ],   Sim(a, c) = <f(a), sg f(c)>,

which is Section 4's form of (2.2), ``−τ log(e^{Sim(x_p, x_p')/τ} / Σ_{x ∈ B} e^{Sim(x_p, x)/τ})``. The
stop-gradient ``sg`` means the gradient flows through the first argument of ``Sim`` only.

Which set ``B_i`` is: the seed's rendering of (2.2) shows only the negatives in the denominator, while the
InfoNCE/NT-Xent losses the paper builds on put the positive there too. ``include_positive=True`` (the default)
uses ``B_i = {x2_i} ∪ x_neg``: then the loss is the cross-entropy of identifying the positive, bounded below by
0, which is what Theorem 3.4's "average objective ≤ o(1)" presupposes. ``include_positive=False`` uses
``B_i = x_neg`` alone, whose infimum is −∞ (it rewards ever larger positive similarity).

The representations are not normalised, so similarities are unbounded; the log-sum-exp is evaluated with the
row maximum taken out, so loss and gradient stay finite for any finite similarity.
"""

from __future__ import annotations

from typing import Any

from .backend import array_namespace
from .network import activation, activation_derivative

__all__ = ["contrastive_loss_and_grad", "contrastive_loss_from_features", "softmax_weights"]


def softmax_weights(logits: Any) -> tuple[Any, Any]:
    """Row-wise ``(log Σ exp(logits), softmax(logits))``, stable for arbitrarily large logits."""
    xp = array_namespace(logits)
    top = xp.max(logits, axis=1, keepdims=True)
    e = xp.exp(logits - top)
    total = xp.sum(e, axis=1, keepdims=True)
    return xp.squeeze(top + xp.log(total), axis=1), e / total


def contrastive_loss_from_features(f1: Any, f2: Any, f_neg: Any, tau: float, include_positive: bool = True
                                   ) -> tuple[Any, Any]:
    """Loss (2.2) from the representations, and its gradient with respect to ``f1`` (``f2``, ``f_neg`` stopped).

    Args:
        f1: ``(n, m)`` representations of the first views (the branch that receives the gradient).
        f2: ``(n, m)`` representations of the second views (stop-gradient).
        f_neg: ``(k, m)`` representations of the negatives (stop-gradient).
        tau: temperature ``τ > 0``.
        include_positive: whether the positive is in the denominator set ``B_i``.

    Returns:
        ``(loss, dL/df1)``: a 0-d array and an ``(n, m)`` array.
    """
    xp = array_namespace(f1)
    n = f1.shape[0]
    s_pos = xp.sum(f1 * f2, axis=1)
    s_neg = f1 @ f_neg.T
    if include_positive:
        logits = xp.concat([s_pos[:, None], s_neg], axis=1) / tau
    else:
        logits = s_neg / tau
    lse, weights = softmax_weights(logits)
    loss = xp.mean(-s_pos + tau * lse)
    # d/df1_i of τ·lse_i is the softmax-weighted mean of the representations in B_i (τ cancels).
    grad = weights[:, -f_neg.shape[0]:] @ f_neg - f2
    if include_positive:
        grad = grad + weights[:, :1] * f2
    return loss, grad / n


def contrastive_loss_and_grad(W: Any, b: Any, x1: Any, x2: Any, x_neg: Any, tau: float,
                              include_positive: bool = True) -> tuple[Any, Any]:
    """The loss (2.2) of the network ``(W, b)`` and its gradient with respect to ``W`` (weight decay excluded).

    Args:
        W: ``(m, d1)`` weights, one row per neuron.
        b: ``(m,)`` biases (not differentiated: the paper schedules them).
        x1: ``(n, d1)`` first views of the positives.
        x2: ``(n, d1)`` second views of the positives (stop-gradient branch).
        x_neg: ``(k, d1)`` negatives shared by every positive (stop-gradient branch).
        tau: temperature ``τ > 0``.
        include_positive: whether ``B_i`` contains the positive ``x2_i`` (see the module docstring).

    Returns:
        ``(loss, dL/dW)``: a 0-d array and an ``(m, d1)`` array in the namespace of ``W``.
    """
    u1 = x1 @ W.T
    f1 = activation(u1, b)
    f2 = activation(x2 @ W.T, b)
    f_neg = activation(x_neg @ W.T, b)
    loss, grad_f1 = contrastive_loss_from_features(f1, f2, f_neg, tau, include_positive)
    return loss, (grad_f1 * activation_derivative(u1, b)).T @ x1
