"""Backends: every core function gives the same result on NumPy and on the other namespaces, in their namespace.

The ``xp`` fixture runs each property on NumPy, on ``array-api-strict`` (a namespace that has nothing beyond
the array API standard, so a core function that quietly used a NumPy-only feature fails there) and on CuPy
where a GPU is visible. Inputs are made in NumPy and moved with ``xp.asarray``, so every namespace sees the
same numbers; functions that draw random numbers are compared too, because NumPy and array-api-strict share
NumPy's generator (CuPy draws its own stream: there only namespace, shape and dtype are compared).
Agreement is within :func:`strategies.tolerance` of the dtype; float32 and float64 are both drawn.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from strategies import (
    LossCase,
    assert_namespace,
    dtype_name,
    dtypes,
    loss_cases,
    namespace_name,
    reproduce,
    seeds,
    tolerance,
)

from fdcheck.augment import no_augmentation, random_mask
from fdcheck.backend import Random, get_namespace, to_numpy
from fdcheck.data import SparseCodingModel, make_dictionary, validate_dictionary
from fdcheck.loss import contrastive_loss_and_grad, contrastive_loss_from_features, softmax_weights
from fdcheck.network import activation, activation_derivative, decompose, features, init_weights

NUMPY = get_namespace("numpy")


def _same(result: Any, reference: Any, like: Any, dtype: str) -> None:
    """``result`` lives in ``like``'s namespace, has ``dtype`` and agrees with the NumPy ``reference``."""
    assert_namespace(result, like)
    rtol, atol = tolerance(dtype)
    results = result if isinstance(result, tuple) else (result,)
    references = reference if isinstance(reference, tuple) else (reference,)
    for got, want in zip(results, references):
        assert dtype_name(got) == dtype, f"dtype {got.dtype}, expected {dtype}"
        np.testing.assert_allclose(to_numpy(got), to_numpy(want), rtol=rtol, atol=atol)


def _same_stream(xp: Any) -> bool:
    return namespace_name(xp.asarray(0.0)) != "cupy"


@given(case=loss_cases(max_n=5, max_size=8), dtype=dtypes)
def test_network_functions_agree(xp: Any, case: LossCase, dtype: str) -> None:
    """``activation``, ``activation_derivative``, ``features`` and ``decompose``."""
    reproduce(case.repro() + f"\n# in {dtype}, on namespace {xp.__name__} (xp.asarray each input)")
    a = case.arrays(dtype)
    W, b, x = (xp.asarray(a[k]) for k in ("W", "b", "x1"))
    u = x @ W.T
    _same(activation(u, b), activation(a["x1"] @ a["W"].T, a["b"]), W, dtype)
    _same(activation_derivative(u, b), activation_derivative(a["x1"] @ a["W"].T, a["b"]), W, dtype)
    _same(features(W, b, x), features(a["W"], a["b"], a["x1"]), W, dtype)
    M = make_dictionary(case.d1, min(case.d1, case.m), Random(case.seed, NUMPY), dtype)
    _same(tuple(decompose(W, xp.asarray(M))), tuple(decompose(a["W"], M)), W, dtype)


@given(case=loss_cases(max_n=5, max_size=8), dtype=dtypes)
def test_loss_functions_agree(xp: Any, case: LossCase, dtype: str) -> None:
    """``contrastive_loss_and_grad``, ``contrastive_loss_from_features`` and ``softmax_weights``."""
    reproduce(case.repro() + f"\n# in {dtype}, on namespace {xp.__name__} (xp.asarray each input)")
    a = case.arrays(dtype)
    args = [xp.asarray(a[k]) for k in ("W", "b", "x1", "x2", "x_neg")]
    ref_args = [a[k] for k in ("W", "b", "x1", "x2", "x_neg")]
    loss, grad = contrastive_loss_and_grad(*args, case.tau, case.include_positive)
    ref_loss, ref_grad = contrastive_loss_and_grad(*ref_args, case.tau, case.include_positive)
    assert tuple(grad.shape) == (case.m, case.d1) and tuple(loss.shape) == ()
    _same((loss, grad), (ref_loss, ref_grad), args[0], dtype)
    f = [features(args[0], args[1], v) for v in args[2:]]
    f_ref = [features(ref_args[0], ref_args[1], v) for v in ref_args[2:]]
    _same(contrastive_loss_from_features(*f, case.tau, case.include_positive),
          contrastive_loss_from_features(*f_ref, case.tau, case.include_positive), args[0], dtype)
    logits = f[0] @ f[2].T
    _same(softmax_weights(logits), softmax_weights(f_ref[0] @ f_ref[2].T), args[0], dtype)


@given(seed=seeds, d=st.integers(1, 12), factor=st.integers(1, 8), n=st.integers(1, 16), dtype=dtypes,
       p=st.floats(0.05, 1.0), noise_variance=st.floats(1e-3, 2.0))
def test_data_functions_agree(xp: Any, seed: int, d: int, factor: int, n: int, dtype: str, p: float,
                              noise_variance: float) -> None:
    """``make_dictionary``, ``validate_dictionary`` and ``SparseCodingModel.sample`` from the same seed."""
    reproduce(f"M = make_dictionary({d * factor}, {d}, Random({seed}, xp), {dtype!r})\n"
              f"SparseCodingModel(M, {p!r}, {noise_variance!r}).sample({n}, Random({seed + 1}, xp))")
    M = make_dictionary(d * factor, d, Random(seed, xp), dtype)
    M_ref = make_dictionary(d * factor, d, Random(seed, NUMPY), dtype)
    assert tuple(M.shape) == (d * factor, d)
    assert validate_dictionary(M, d * factor, d) is M
    model = SparseCodingModel(M, p, noise_variance)
    sample = model.sample(n, Random(seed + 1, xp))
    assert all(tuple(s.shape) == shape for s, shape in zip(sample, ((n, d * factor), (n, d), (n, d * factor))))
    if _same_stream(xp):
        _same(M, M_ref, M, dtype)
        _same(tuple(sample), tuple(SparseCodingModel(M_ref, p, noise_variance).sample(n, Random(seed + 1, NUMPY))),
              M, dtype)
    else:
        assert_namespace(tuple(sample), M)
        # the same computation on the GPU's own draws: x = Mz + ξ
        _same(sample.x, sample.z @ M.T + sample.xi, M, dtype)


@given(seed=seeds, n=st.integers(1, 16), d1=st.integers(1, 64), dtype=dtypes,
       keep_prob=st.one_of(st.just(0.5), st.floats(0.05, 0.95)))
def test_augmentations_agree(xp: Any, seed: int, n: int, d1: int, dtype: str, keep_prob: float) -> None:
    """``random_mask`` and ``no_augmentation``."""
    reproduce(f"x = Random({seed}, xp).normal(({n}, {d1}), dtype={dtype!r})\n"
              f"random_mask(xp.asarray(x), Random({seed + 1}, xp), {keep_prob!r})")
    x_ref = Random(seed, NUMPY).normal((n, d1), dtype=dtype)
    x = xp.asarray(x_ref)
    views = random_mask(x, Random(seed + 1, xp), keep_prob)
    if _same_stream(xp):
        _same(views, random_mask(x_ref, Random(seed + 1, NUMPY), keep_prob), x, dtype)
    else:
        assert_namespace(views, x)
        assert all(dtype_name(v) == dtype for v in views)
    _same(no_augmentation(x), (x_ref, x_ref), x, dtype)


@given(seed=seeds, m=st.integers(1, 16), d1=st.integers(1, 64), init_std=st.floats(1e-3, 1.0), dtype=dtypes)
def test_initialisation_agrees(xp: Any, seed: int, m: int, d1: int, init_std: float, dtype: str) -> None:
    """``init_weights`` and the random adapter's draws."""
    reproduce(f"init_weights({m}, {d1}, {init_std!r}, Random({seed}, xp), {dtype!r})")
    W, b = init_weights(m, d1, init_std, Random(seed, xp), dtype)
    assert tuple(W.shape) == (m, d1) and tuple(b.shape) == (m,)
    if _same_stream(xp):
        _same((W, b), init_weights(m, d1, init_std, Random(seed, NUMPY), dtype), W, dtype)
    else:
        assert_namespace((W, b), W)
    rng, ref = Random(seed, xp), Random(seed, NUMPY)
    draws = (rng.normal((m, d1), 2.0, dtype), rng.uniform((m,), dtype), rng.bernoulli((d1,), 0.3, dtype),
             rng.sign((m,), dtype))
    ref_draws = (ref.normal((m, d1), 2.0, dtype), ref.uniform((m,), dtype), ref.bernoulli((d1,), 0.3, dtype),
                 ref.sign((m,), dtype))
    if _same_stream(xp):
        _same(draws, ref_draws, W, dtype)
    else:
        assert_namespace(draws, W)
