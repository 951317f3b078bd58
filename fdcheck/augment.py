"""Augmentations: RandomMask (Definition 2.3) and none.

An augmentation maps a batch ``x`` ``(n, d1)`` and a random stream to the two views ``(x⁺, x⁺⁺)`` of each
sample. RandomMask draws a diagonal ``D`` of i.i.d. Bernoulli(``keep_prob``) entries per sample and returns
``x⁺ = D x / keep_prob`` and ``x⁺⁺ = (I − D) x / (1 − keep_prob)``; at the paper's ``keep_prob = 1/2`` these are
``2 D x`` and ``2 (I − D) x``. Both views are unbiased (``E[x⁺] = E[x⁺⁺] = x``) and have disjoint supports, which
is what makes the dense parts of the two views independent (Section 4, feature decoupling).
"""

from __future__ import annotations

from typing import Any, Callable

from .backend import Random, array_namespace

__all__ = ["AUGMENTATIONS", "no_augmentation", "random_mask", "random_mask_matrix"]


def random_mask_matrix(shape: tuple[int, ...], rng: Random, keep_prob: float = 0.5, dtype: str = "float32") -> Any:
    """The 0/1 diagonals ``D`` of RandomMask, one row per sample."""
    if not (0 < keep_prob < 1):
        raise ValueError(f"keep_prob={keep_prob!r} is out of range; allowed: (0, 1)")
    return rng.bernoulli(shape, keep_prob, dtype=dtype)


def random_mask(x: Any, rng: Random, keep_prob: float = 0.5) -> tuple[Any, Any]:
    """RandomMask (Definition 2.3): the complementary views ``(D x / q, (I − D) x / (1 − q))``, ``q = keep_prob``."""
    xp = array_namespace(x)
    dtype = "float32" if x.dtype == xp.float32 else "float64"
    mask = random_mask_matrix(tuple(x.shape), rng, keep_prob, dtype)
    kept = x * mask
    return kept * (1.0 / keep_prob), (x - kept) * (1.0 / (1.0 - keep_prob))


def no_augmentation(x: Any, rng: Random | None = None, keep_prob: float = 0.5) -> tuple[Any, Any]:
    """No augmentation: both views are ``x`` itself (the setting of Theorem 3.2)."""
    return x, x


AUGMENTATIONS: dict[str, Callable[..., tuple[Any, Any]]] = {"mask": random_mask, "none": no_augmentation}
