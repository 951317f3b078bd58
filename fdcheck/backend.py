"""Array namespaces and random numbers for the two backends.

Core code never imports NumPy or CuPy for array math: it receives arrays and asks them for their namespace
(:func:`array_namespace`, from ``array-api-compat``), so the same function runs on NumPy, CuPy and, in the
tests, ``array-api-strict``. Randomness is not part of the array API standard, so this module holds the one
adapter, :class:`Random`, that draws from NumPy's or CuPy's generator and hands back arrays of the requested
namespace.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import array_namespace, is_cupy_namespace

__all__ = [
    "BACKENDS",
    "DTYPES",
    "Random",
    "array_namespace",
    "cupy_available",
    "dtype_of",
    "get_namespace",
    "to_numpy",
]

BACKENDS = ("numpy", "cupy", "array_api_strict")
DTYPES = ("float32", "float64")


def cupy_available() -> bool:
    """True when CuPy imports and sees at least one GPU.

    On a machine without a driver ``getDeviceCount()`` raises instead of returning 0, hence the broad except.
    """
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def get_namespace(backend: str = "numpy") -> Any:
    """The array-API namespace for a backend name: ``numpy``, ``cupy`` or ``array_api_strict``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not supported; allowed: {', '.join(BACKENDS)}")
    if backend == "numpy":
        import array_api_compat.numpy as xp
    elif backend == "cupy":
        if not cupy_available():
            raise ValueError("backend='cupy' needs CuPy and a visible GPU; install the 'gpu' extra on a GPU machine")
        import array_api_compat.cupy as xp
    else:
        xp = importlib.import_module("array_api_strict")
    return xp


def dtype_of(xp: Any, name: str) -> Any:
    """The floating dtype ``name`` (``float32`` or ``float64``) of namespace ``xp``."""
    if name not in DTYPES:
        raise ValueError(f"dtype={name!r} is not supported; allowed: {', '.join(DTYPES)}")
    return getattr(xp, name)


def to_numpy(a: Any) -> np.ndarray:
    """A NumPy copy of an array from any backend (CuPy arrays are moved off the GPU)."""
    if isinstance(a, np.ndarray):
        return a
    xp = array_namespace(a)
    if is_cupy_namespace(xp):
        return a.get()
    return np.asarray(a)


@dataclass
class Random:
    """One seeded random stream that returns arrays in namespace ``xp``.

    NumPy and array-api-strict draw from ``numpy.random.Generator`` (PCG64), so a seed gives bit-identical
    results on both; CuPy draws on the GPU from ``cupy.random.Generator`` (same seed, a different stream).

    Args:
        seed: an int, or a ``numpy.random.SeedSequence`` (used by :meth:`spawn`).
        xp: the array namespace of the arrays to return.
    """

    seed: Any
    xp: Any

    def __post_init__(self) -> None:
        if isinstance(self.seed, (bool, float)) or (isinstance(self.seed, int) and self.seed < 0):
            raise ValueError(f"seed={self.seed!r} must be a non-negative integer")
        self._seq = self.seed if isinstance(self.seed, np.random.SeedSequence) else np.random.SeedSequence(self.seed)
        if is_cupy_namespace(self.xp):
            import cupy

            self._gen = cupy.random.Generator(cupy.random.XORWOW(int(self._seq.generate_state(1)[0])))
            self._native = True
        else:
            self._gen = np.random.Generator(np.random.PCG64(self._seq))
            # NumPy arrays already belong to numpy / array_api_compat.numpy; other namespaces get a copy.
            self._native = getattr(self.xp, "__name__", "") in ("numpy", "array_api_compat.numpy")

    def spawn(self, n: int) -> list["Random"]:
        """``n`` independent child streams (for parallel draws that still follow from one seed)."""
        return [Random(s, self.xp) for s in self._seq.spawn(n)]

    def _out(self, a: Any) -> Any:
        if self._native:
            return a
        return self.xp.asarray(a)

    def normal(self, shape: tuple[int, ...], std: float = 1.0, dtype: str = "float64") -> Any:
        """Gaussian draws with standard deviation ``std``."""
        a = self._gen.standard_normal(size=shape, dtype=dtype)
        if std != 1.0:
            a *= a.dtype.type(std)
        return self._out(a)

    def uniform(self, shape: tuple[int, ...], dtype: str = "float64") -> Any:
        """Uniform draws on [0, 1)."""
        return self._out(self._gen.random(size=shape, dtype=dtype))

    def bernoulli(self, shape: tuple[int, ...], prob: float, dtype: str = "float64") -> Any:
        """0/1 draws, 1 with probability ``prob``, as floats of ``dtype``."""
        u = self._gen.random(size=shape, dtype=dtype)
        return self._out((u < prob).astype(dtype))

    def sign(self, shape: tuple[int, ...], dtype: str = "float64") -> Any:
        """Independent fair signs, +1 or -1."""
        u = self._gen.random(size=shape, dtype=dtype)
        return self._out(((u < 0.5).astype(dtype) * 2 - 1).astype(dtype))
