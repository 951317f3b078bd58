"""``fdcheck.backend``: namespaces by name, the random adapter (determinism, spawned streams), ``to_numpy``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from strategies import CUPY_SKIP_REASON, assert_namespace, dtype_name, namespace_name

from fdcheck.backend import BACKENDS, DTYPES, Random, cupy_available, dtype_of, get_namespace, to_numpy


def _draws(rng: Random, dtype: str = "float64") -> list[np.ndarray]:
    return [to_numpy(a) for a in (rng.normal((5, 7), 0.3, dtype), rng.uniform((11,), dtype),
                                  rng.bernoulli((4, 3), 0.25, dtype), rng.sign((13,), dtype))]


def test_namespaces_by_name() -> None:
    assert BACKENDS == ("numpy", "cupy", "array_api_strict") and DTYPES == ("float32", "float64")
    assert namespace_name(get_namespace().asarray(1.0)) == "numpy"  # numpy is the default
    assert namespace_name(get_namespace("array_api_strict").asarray(1.0)) == "array_api_strict"
    with pytest.raises(ValueError, match="backend='jax' is not supported; allowed: numpy, cupy, array_api_strict"):
        get_namespace("jax")


def test_cupy_is_refused_with_the_reason_where_there_is_no_gpu() -> None:
    if cupy_available():
        pytest.skip("a GPU is visible here; the refusal is only observable without one")
    with pytest.raises(ValueError, match="backend='cupy' needs CuPy and a visible GPU"):
        get_namespace("cupy")
    assert "GPU" in CUPY_SKIP_REASON and "fdcheck[gpu]" in CUPY_SKIP_REASON


def test_dtype_by_name(xp: Any) -> None:
    assert dtype_of(xp, "float32") == xp.float32 and dtype_of(xp, "float64") == xp.float64
    with pytest.raises(ValueError, match="dtype='float16' is not supported; allowed: float32, float64"):
        dtype_of(xp, "float16")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_seed_same_draws(xp: Any, dtype: str) -> None:
    """A seed fixes every draw: two generators with seed 7 agree bit for bit; seed 8 differs."""
    first, again, other = _draws(Random(7, xp), dtype), _draws(Random(7, xp), dtype), _draws(Random(8, xp), dtype)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


def test_numpy_and_strict_share_the_stream() -> None:
    """NumPy and array-api-strict draw from the same PCG64 stream, so tests compare them value for value."""
    for a, b in zip(_draws(Random(3, get_namespace("numpy"))), _draws(Random(3, get_namespace("array_api_strict")))):
        np.testing.assert_array_equal(a, b)


def test_draws_live_in_the_namespace_with_the_dtype(xp: Any) -> None:
    like = xp.asarray(0.0)
    rng = Random(0, xp)
    for dtype in ("float32", "float64"):
        draws = (rng.normal((3,), 1.0, dtype), rng.uniform((3,), dtype), rng.bernoulli((3,), 0.5, dtype),
                 rng.sign((3,), dtype))
        assert_namespace(draws, like)
        assert all(dtype_name(a) == dtype for a in draws)


def test_draw_values(xp: Any) -> None:
    """Supports and moments: ``N(0, std²)`` (50 000 draws: sample std within 1% (≈ 3.5 standard errors of
    0.32%)), uniform on [0, 1), Bernoulli 0/1 with its rate (within 5 standard errors), fair signs ±1."""
    rng = Random(1, xp)
    n = 50_000
    normal = to_numpy(rng.normal((n,), std=2.5))
    assert abs(normal.std() / 2.5 - 1) < 0.01 and abs(normal.mean()) < 5 * 2.5 / math.sqrt(n)
    uniform = to_numpy(rng.uniform((n,)))
    assert uniform.min() >= 0 and uniform.max() < 1
    bern = to_numpy(rng.bernoulli((n,), 0.2))
    assert set(np.unique(bern).tolist()) == {0.0, 1.0}
    assert abs(bern.mean() - 0.2) < 5 * math.sqrt(0.2 * 0.8 / n)
    sign = to_numpy(rng.sign((n,)))
    assert set(np.unique(sign).tolist()) == {-1.0, 1.0} and abs(sign.mean()) < 5 / math.sqrt(n)


def test_spawned_streams_are_reproducible_and_independent(xp: Any) -> None:
    """``spawn`` is deterministic (same seed, same children: the seeds contract) and its children are
    distinct streams: pairwise correlations of 20 000 normal draws below ``5/√20 000 ≈ 0.035`` (5 standard
    errors under independence)."""
    n = 20_000
    children = Random(11, xp).spawn(4)
    again = Random(11, xp).spawn(4)
    draws = [to_numpy(c.normal((n,))) for c in children]
    for a, c in zip(draws, again):
        np.testing.assert_array_equal(a, to_numpy(c.normal((n,))))
    parent = to_numpy(Random(11, xp).normal((n,)))
    for i, a in enumerate([*draws, parent]):
        for b in [*draws, parent][i + 1:]:
            assert abs(float(np.corrcoef(a, b)[0, 1])) < 5 / math.sqrt(n)


@pytest.mark.parametrize("seed", [-1, 1.5, True, "7"])
def test_bad_seed_is_rejected(seed: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        Random(seed, get_namespace("numpy"))


def test_to_numpy(xp: Any) -> None:
    a = xp.asarray([[1.0, 2.0], [3.0, 4.0]])
    host = to_numpy(a)
    assert isinstance(host, np.ndarray)
    np.testing.assert_array_equal(host, [[1.0, 2.0], [3.0, 4.0]])
    plain = np.ones(3)
    assert to_numpy(plain) is plain
