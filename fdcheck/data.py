"""The sparse coding model (Definition 2.1): ``x = M z + ξ``.

``M`` is a column-orthonormal ``(d1, d)`` dictionary with delocalised atoms (``||M_j||_∞ ≤ Õ(1/√d)``), ``z`` has
i.i.d. symmetric coordinates in ``{−1, 0, 1}`` with ``Pr(|z_j| = 1) = p``, and ``ξ ~ N(0, σ_ξ² I_{d1})`` is the
dense noise, with ``σ_ξ²`` a *variance*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

from .backend import Random, array_namespace

__all__ = ["Sample", "SparseCodingModel", "make_dictionary", "validate_dictionary"]


class Sample(NamedTuple):
    """``n`` draws of the model: ``x = z Mᵀ + ξ`` (rows are samples)."""

    x: Any  # (n, d1)
    z: Any  # (n, d), entries in {-1, 0, 1}
    xi: Any  # (n, d1), the dense noise


def make_dictionary(d1: int, d: int, rng: Random, dtype: str = "float64") -> Any:
    """A random column-orthonormal dictionary: the Q factor of a ``(d1, d)`` Gaussian matrix.

    Its columns are uniformly distributed on the Stiefel manifold (the sign of each column is fixed by the
    diagonal of R), hence delocalised: every entry is ``O(√(log d1 / d1))`` with high probability.
    """
    if not (isinstance(d, int) and isinstance(d1, int) and 1 <= d <= d1):
        raise ValueError(f"make_dictionary needs integers 1 <= d <= d1, got d={d!r}, d1={d1!r}")
    g = rng.normal((d1, d), dtype="float64")
    xp = array_namespace(g)
    q, r = xp.linalg.qr(g)
    signs = 1.0 - 2.0 * xp.astype(xp.linalg.diagonal(r) < 0, r.dtype)
    return xp.astype(q * signs[None, :], getattr(xp, dtype))


def validate_dictionary(M: Any, d1: int, d: int, atol: float | None = None) -> Any:
    """Check a user-supplied dictionary: shape ``(d1, d)``, finite, ``MᵀM = I`` within ``atol``.

    ``atol`` defaults to ``50 · d1 · eps`` of ``M``'s dtype (orthonormalisation error grows about linearly
    with ``d1``). Raises ``ValueError`` naming what is wrong; returns ``M`` unchanged.
    """
    xp = array_namespace(M)
    if tuple(M.shape) != (d1, d):
        raise ValueError(f"M has shape {tuple(M.shape)}; expected (d1, d) = ({d1}, {d})")
    if not bool(xp.all(xp.isfinite(M))):
        raise ValueError("M has non-finite entries (NaN or inf)")
    eps = float(xp.finfo(M.dtype).eps)
    tol = 50 * d1 * eps if atol is None else atol
    err = float(xp.max(xp.abs(M.T @ M - xp.eye(d, dtype=M.dtype))))
    if err > tol:
        raise ValueError(f"M is not column-orthonormal: max |MᵀM − I| = {err:.3g} exceeds the tolerance {tol:.3g}")
    return M


@dataclass(frozen=True)
class SparseCodingModel:
    """The data distribution of Definition 2.1 for a fixed dictionary ``M``.

    Args:
        M: ``(d1, d)`` column-orthonormal dictionary (see :func:`make_dictionary`).
        p: probability that a coordinate of ``z`` is non-zero (then ±1 with equal chance).
        noise_variance: the variance σ_ξ² of each noise coordinate.
    """

    M: Any
    p: float
    noise_variance: float

    def __post_init__(self) -> None:
        if not (0 < self.p <= 1):
            raise ValueError(f"p={self.p!r} is out of range; allowed: (0, 1]")
        if not (self.noise_variance > 0 and math.isfinite(self.noise_variance)):
            raise ValueError(f"noise_variance={self.noise_variance!r} is out of range; allowed: (0, inf)")

    @classmethod
    def from_config(cls, config: Any, rng: Random, M: Any = None) -> "SparseCodingModel":
        """The model of ``config`` with a dictionary drawn from ``rng`` (or ``M``, validated)."""
        dtype = config.dtype
        if M is None:
            M = make_dictionary(config.d1, config.d, rng, dtype)
        else:
            M = validate_dictionary(M, config.d1, config.d)
        return cls(M=M, p=config.p, noise_variance=config.noise_variance)

    @property
    def d1(self) -> int:
        return int(self.M.shape[0])

    @property
    def d(self) -> int:
        return int(self.M.shape[1])

    def sample_z(self, n: int, rng: Random) -> Any:
        """``n`` sparse codes: each coordinate −1 or +1 with probability ``p/2`` each, else 0."""
        xp = array_namespace(self.M)
        u = rng.uniform((n, self.d), dtype=_dtype_name(self.M))
        half = self.p / 2
        return xp.astype(u > 1 - half, self.M.dtype) - xp.astype(u < half, self.M.dtype)

    def sample_noise(self, n: int, rng: Random) -> Any:
        """``n`` noise vectors with i.i.d. ``N(0, noise_variance)`` coordinates."""
        return rng.normal((n, self.d1), std=math.sqrt(self.noise_variance), dtype=_dtype_name(self.M))

    def sample(self, n: int, rng: Random) -> Sample:
        """``n`` samples ``x = M z + ξ`` with their codes and noise."""
        if not (isinstance(n, int) and n >= 1):
            raise ValueError(f"n={n!r} must be an integer >= 1")
        z = self.sample_z(n, rng)
        xi = self.sample_noise(n, rng)
        return Sample(x=z @ self.M.T + xi, z=z, xi=xi)


def _dtype_name(a: Any) -> str:
    xp = array_namespace(a)
    return "float32" if a.dtype == xp.float32 else "float64"
