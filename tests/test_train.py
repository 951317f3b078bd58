"""Tests of fdcheck.train: the fused step against the reference loss, SGD + weight decay, the bias schedule,
determinism, checkpoint/resume, divergence, supervised mode, the random batches, and the saved file."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fdcheck.config import ModelConfig
from fdcheck.loss import contrastive_loss_and_grad
from fdcheck.network import activation, activation_derivative, init_weights
from fdcheck.train import (
    TrainingDiverged,
    TrainResult,
    _box_muller,
    _contrastive_step,
    _make_source,
    _Run,
    _supervised_step,
    make_model,
    train,
)


def tiny(**overrides):
    """A configuration small enough for a test: d=8, d1=32, m=16, 30 steps, 16 positives and 16 negatives."""
    base = dict(d1=32, m=16, steps=30, batch=16, negatives=16, eval_every=10, t1=10)
    base.update(overrides)
    return ModelConfig.scaled(8, **base)


def _rng(seed):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------------------------------------------
# The fused step computes what loss.contrastive_loss_and_grad computes.


@pytest.mark.parametrize("paired", [True, False])
@pytest.mark.parametrize("include_positive", [True, False])
@pytest.mark.parametrize("with_bias", [True, False])
def test_fused_step_matches_reference_loss_and_gradient(paired, include_positive, with_bias):
    g = _rng(1)
    m, d1, n, k, tau = 12, 20, 7, 9, 1.7
    W = g.standard_normal((m, d1))
    b = np.abs(g.standard_normal(m)) * 0.5 if with_bias else np.zeros(m)
    x1, x2, neg = g.standard_normal((n, d1)), g.standard_normal((n, d1)), g.standard_normal((k, d1))
    if not paired:
        x2 = x1
    X = np.concatenate([x1, x2, neg] if paired else [x1, neg])
    loss, grad, active = _contrastive_step(np, W, b if with_bias else None, X, n, paired, tau, include_positive,
                                           scale=1.0)
    ref_loss, ref_grad = contrastive_loss_and_grad(W, b, x1, x2, neg, tau, include_positive)
    assert loss == pytest.approx(float(ref_loss), rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-12)
    assert active == pytest.approx(float(np.mean(activation(x1 @ W.T, b) != 0)))
    # scale multiplies the gradient only
    _, grad2, _ = _contrastive_step(np, W, b if with_bias else None, X, n, paired, tau, include_positive, scale=-0.3)
    np.testing.assert_allclose(grad2, -0.3 * ref_grad, rtol=1e-10, atol=1e-12)


def test_fused_step_float32_matches_reference():
    g = _rng(2)
    W = g.standard_normal((16, 64)).astype(np.float32) * 0.3
    b = np.full(16, 0.2, np.float32)
    x = g.standard_normal((24, 64)).astype(np.float32)
    X = np.concatenate([x[:8], x[8:16], x[16:]])
    loss, grad, _ = _contrastive_step(np, W, b, X, 8, True, 2.0, True, scale=1.0)
    ref_loss, ref_grad = contrastive_loss_and_grad(W, b, x[:8], x[8:16], x[16:], 2.0)
    assert grad.dtype == np.float32
    assert loss == pytest.approx(float(ref_loss), rel=1e-5)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-6)


def test_supervised_step_gradient_matches_finite_differences():
    g = _rng(3)
    m, d1, d, n = 6, 10, 4, 5
    W, V = g.standard_normal((m, d1)), g.standard_normal((d, m))
    b = np.full(m, 0.3)
    X, Z = g.standard_normal((n, d1)), g.standard_normal((n, d))

    def loss_of(W_, V_):
        R = activation(X @ W_.T, b) @ V_.T - Z
        return float(np.sum(R * R)) / n

    loss, GW, GV, _ = _supervised_step(np, W, b, V, X, Z, scale=1.0)
    assert loss == pytest.approx(loss_of(W, V), rel=1e-12)
    eps = 1e-6
    for _ in range(5):  # central differences along random directions (the loss is piecewise quadratic)
        dW, dV = g.standard_normal(W.shape), g.standard_normal(V.shape)
        numeric = (loss_of(W + eps * dW, V + eps * dV) - loss_of(W - eps * dW, V - eps * dV)) / (2 * eps)
        assert np.sum(GW * dW) + np.sum(GV * dV) == pytest.approx(numeric, rel=1e-5)
    # and the analytic form of dL/dW, through network.activation_derivative
    R = activation(X @ W.T, b) @ V.T - Z
    np.testing.assert_allclose(GW, ((2 / n) * (R @ V) * activation_derivative(X @ W.T, b)).T @ X, rtol=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# One SGD step end to end, against the reference: batch plumbing, gradient, weight decay 2λw.


@pytest.mark.parametrize("augment", ["mask", "none"])
def test_first_step_is_sgd_with_weight_decay_on_the_reference_gradient(augment):
    c = tiny(augment=augment, steps=1, lam=0.05, eta=0.1, t1=5)
    result = train(c, progress=False)
    # Rebuild the first step's batch from the same streams (the seeds contract).
    model, rngs = make_model(c)
    W0, _ = init_weights(c.m, c.d1, c.init_std, rngs["init"], c.dtype)
    np.testing.assert_array_equal(result.W0, W0)
    X = _make_source(c, model, rngs["train"], 1).draw().X
    n = c.batch
    x1 = X[:n]
    x2 = X[n:2 * n] if augment == "mask" else x1
    neg = X[2 * n:] if augment == "mask" else X[n:]
    _, grad = contrastive_loss_and_grad(W0, np.zeros(c.m, np.float32), x1, x2, neg, c.tau)
    expected = (1 - 2 * c.eta * c.lam) * W0 - c.eta * grad
    np.testing.assert_allclose(result.W, expected, rtol=1e-5, atol=1e-7)
    assert result.W.dtype == np.float32 and result.b.dtype == np.float32
    if augment == "mask":
        # Definition 2.3: the two views have disjoint supports and add up to 2x
        assert not np.any((x1 != 0) & (x2 != 0))
        assert np.mean(x1 != 0) == pytest.approx(0.5, abs=0.05)  # 16*32 = 512 fair coins: sd 0.022


def test_weight_decay_is_two_eta_lambda_w_per_step():
    """One step from the same W0 on the same batch with and without λ: the difference is −2ηλ W0 (the gradient of
    λ||w||² is 2λw), whatever the loss gradient."""
    with_decay = train(tiny(steps=1, lam=0.25, eta=0.1), progress=False)
    without = train(tiny(steps=1, lam=0.0, eta=0.1), progress=False)
    np.testing.assert_allclose(with_decay.W - without.W, -2 * 0.1 * 0.25 * with_decay.W0, rtol=1e-4, atol=1e-8)


# ---------------------------------------------------------------------------------------------------------------
# The bias schedule (footnote 3 as read in fdcheck.train).


def test_bias_is_zero_before_t1_and_starts_at_the_documented_level():
    c = tiny(steps=10, t1=10, eval_every=2)
    r = train(c, progress=False)
    assert all(row["b_mean"] == 0 for row in r.history if row["step"] < c.t1)
    norms = np.linalg.norm(r.W.astype(np.float64), axis=1)
    start = c.bias_init_factor * math.sqrt(2 * math.log(c.d) / c.d) * norms
    np.testing.assert_allclose(r.b, start, rtol=1e-5)


def test_bias_grows_by_the_rule_and_stays_under_the_cap():
    base = dict(t1=10, eval_every=5, bias_growth_min=0.01)
    at_t1 = train(tiny(steps=10, **base), progress=False)
    one_more = train(tiny(steps=11, **base), progress=False)
    # the two runs share steps 0..10 exactly: only the final forward pass differs
    n0 = np.linalg.norm(at_t1.W.astype(np.float64), axis=1)
    n1 = np.linalg.norm(one_more.W.astype(np.float64), axis=1)
    expected = np.minimum(at_t1.b * (1 + np.maximum(0.01, n1 / n0 - 1)), 0.6 * n1)
    np.testing.assert_allclose(one_more.b, expected, rtol=1e-5)
    long = train(tiny(steps=60, **base), progress=False)
    cap = long.config.bias_cap_factor * np.linalg.norm(long.W, axis=1)
    assert np.all(long.b > 0)
    assert np.all(long.b <= cap * (1 + 1e-6))


def test_bias_none_keeps_b_zero():
    r = train(tiny(bias="none"), progress=False)
    assert np.all(r.b == 0)
    assert all(row["b_mean"] == 0 for row in r.history)


# ---------------------------------------------------------------------------------------------------------------
# Determinism, threads, checkpoint and resume.


def test_two_runs_are_bit_identical_whatever_the_thread_count():
    c = tiny()
    a = train(c, progress=False, threads=1)
    b = train(c, progress=False, threads=3)
    np.testing.assert_array_equal(a.W, b.W)
    np.testing.assert_array_equal(a.b, b.b)
    assert [dict(r, seconds=0) for r in a.history] == [dict(r, seconds=0) for r in b.history]
    other_seed = train(c.replace(seed=1), progress=False, threads=1)
    assert not np.array_equal(a.W, other_seed.W)


def _strip(history):
    return [dict(r, seconds=0) for r in history]


@pytest.mark.parametrize("augment", ["mask", "supervised"])
def test_resume_from_a_checkpoint_is_bit_identical(tmp_path, monkeypatch, augment):
    c = tiny(augment=augment, steps=40, t1=12)
    reference = train(c, progress=False)
    path = tmp_path / "ckpt.npz"
    original = _Run._update

    def crash_at_27(self, t):
        if t == 27:
            raise KeyboardInterrupt
        return original(self, t)

    monkeypatch.setattr(_Run, "_update", crash_at_27)
    with pytest.raises(KeyboardInterrupt):
        train(c, progress=False, checkpoint_path=path, checkpoint_every=10)
    with np.load(path, allow_pickle=False) as ck:
        assert int(ck["step"]) == 20  # the last checkpoint before the crash
    monkeypatch.setattr(_Run, "_update", original)
    resumed = train(c, progress=False, checkpoint_path=path, checkpoint_every=10)
    np.testing.assert_array_equal(resumed.W, reference.W)
    np.testing.assert_array_equal(resumed.b, reference.b)
    if augment == "supervised":
        np.testing.assert_array_equal(resumed.head, reference.head)
    assert _strip(resumed.history) == _strip(reference.history)


def test_a_finished_checkpoint_gives_the_same_result_again(tmp_path):
    c = tiny()
    path = tmp_path / "ckpt.npz"
    first = train(c, progress=False, checkpoint_path=path, checkpoint_every=10)
    again = train(c, progress=False, checkpoint_path=path, checkpoint_every=10)
    np.testing.assert_array_equal(first.W, again.W)
    assert _strip(first.history) == _strip(again.history)


def test_a_given_dictionary_is_used_in_the_run_dtype():
    c = tiny(steps=3)
    M = np.linalg.qr(_rng(11).standard_normal((c.d1, c.d)))[0]  # float64
    r = train(c, M=M, progress=False)
    assert r.M.dtype == np.float32 and np.allclose(r.M, M, atol=1e-7)
    with pytest.raises(ValueError, match="orthonormal"):
        train(c, M=2 * M, progress=False)


def test_checkpoint_of_another_configuration_is_refused(tmp_path):
    path = tmp_path / "ckpt.npz"
    train(tiny(), progress=False, checkpoint_path=path, checkpoint_every=10)
    with pytest.raises(ValueError, match="another configuration.*eta"):
        train(tiny(eta=0.1), progress=False, checkpoint_path=path)


# ---------------------------------------------------------------------------------------------------------------
# Divergence.


def test_divergence_raises_naming_step_quantity_and_remedy(tmp_path):
    path = tmp_path / "ckpt.npz"
    c = tiny(eta=1e6, steps=200)
    with pytest.raises(TrainingDiverged) as info:
        train(c, progress=False, checkpoint_path=path, checkpoint_every=1)
    message = str(info.value)
    assert "step" in message and "eta" in message and "lower" in message
    assert ("loss" in message) or ("weights" in message)
    # every checkpoint that was written holds finite weights
    if path.exists():
        with np.load(path, allow_pickle=False) as ck:
            assert np.all(np.isfinite(ck["W"])) and np.all(np.isfinite(ck["b"]))


def test_save_refuses_non_finite_weights(tmp_path):
    r = train(tiny(steps=2), progress=False)
    r.W = r.W.copy()
    r.W[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite W"):
        r.save_npz(tmp_path / "bad.npz")
    assert not (tmp_path / "bad.npz").exists()


# ---------------------------------------------------------------------------------------------------------------
# Supervised mode, other backends, the saved file, the history.


def test_supervised_training_reduces_its_loss():
    """Seed 0, d=8, 300 steps: the squared loss starts at E||z||² = d p ≈ 0.73 (V = 0) and must fall by a third.

    A linear head on sparse features can predict z: the least-squares fit of z on Mᵀx alone leaves about
    σ²/(p+σ²) ≈ 0.45 of the variance here, so a third less is well within reach and cannot happen by chance."""
    c = tiny(augment="supervised", steps=300, batch=64, eval_every=50, t1=100)
    r = train(c, progress=False)
    assert r.head is not None and r.head.shape == (c.d, c.m)
    first, last = r.history[0]["loss"], r.history[-1]["loss_window"]
    assert last < 0.67 * first


@pytest.mark.parametrize("augment", ["mask", "none", "supervised"])
def test_array_api_strict_backend_trains(augment):
    pytest.importorskip("array_api_strict")
    c = tiny(backend="array_api_strict", augment=augment, steps=5, t1=2, eval_every=2)
    r = train(c, progress=False)
    assert np.all(np.isfinite(np.asarray(r.W))) and len(r.history) == 4
    with pytest.raises(ValueError, match="backend='numpy'"):
        train(c, progress=False, checkpoint_path="never-written.npz")


def test_result_round_trips_through_npz_without_pickle(tmp_path):
    r = train(tiny(augment="supervised"), progress=False)
    path = tmp_path / "run.npz"
    r.save_npz(path)
    with np.load(path, allow_pickle=False) as data:
        assert {"W", "b", "W0", "M", "config", "history", "head"} <= set(data.files)
        assert data["W"].shape == (16, 32) and data["M"].shape == (32, 8)
    back = TrainResult.load_npz(path)
    assert back.config == r.config
    np.testing.assert_array_equal(back.W, r.W)
    np.testing.assert_array_equal(back.head, r.head)
    assert back.history == r.history


def test_history_rows_and_fields():
    r = train(tiny(steps=25, eval_every=10), progress=False)
    assert [row["step"] for row in r.history] == [0, 10, 20, 25]
    for row in r.history:
        for key in ("loss", "loss_window", "objective", "w_norm_mean", "b_mean", "span_energy", "top_atom_share",
                    "active_frac", "seconds"):
            assert math.isfinite(row[key]), key
        assert 0 <= row["top_atom_share"] <= row["span_energy"] <= 1 + 1e-6


def test_progress_bar_on_request(capsys):
    train(tiny(steps=3), progress=True)
    assert "3/3" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, match", [
    (dict(threads=0), "threads"),
    (dict(checkpoint_every=5), "checkpoint_every needs checkpoint_path"),
    (dict(progress="yes"), "progress"),
])
def test_bad_arguments_raise_before_work(kwargs, match):
    with pytest.raises(ValueError, match=match):
        train(tiny(), **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# The random batches.


def test_box_muller_draws_are_gaussian():
    """200 000 draws, seed 5: Kolmogorov–Smirnov distance to N(0, 0.25) below 1.95/√n = 0.0044 (the 0.1% critical
    value), and the variance within 1% (its standard error is √(2/n) ≈ 0.3%)."""
    n = 200_000
    out = np.empty(n, np.float32)
    _box_muller(np.random.default_rng(5), out, np.empty(n + 1, np.float32), sigma=0.5)
    x = np.sort(out.astype(np.float64)) / 0.5
    cdf = 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    ks = max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n))
    assert ks < 1.95 / math.sqrt(n)
    assert np.var(x) == pytest.approx(1.0, rel=0.01)
    assert np.max(np.abs(x)) <= math.sqrt(-2 * math.log(2.0 ** -24)) + 1e-4


def test_batches_follow_the_data_model():
    """The positives' codes: each coordinate non-zero with probability p. Seed 0, 400 steps of 32×8 codes
    (102 400 coordinates, p ≈ 0.091): the empirical rate lies within 5 standard errors (0.0045) of p."""
    c = tiny(batch=16, negatives=16)
    model, rngs = make_model(c)
    src = _make_source(c, model, rngs["train"], 2)
    rates = []
    for _ in range(400):
        batch = src.draw()
        rates.append(np.mean(src.Z != 0))
    # Definition 2.1 for negatives, and x⁺ + x⁺⁺ = 2x for positives (keep_prob = 1/2)
    n = c.batch
    x = src.Z @ model.M.T + src.XI
    np.testing.assert_allclose(batch.X[2 * n:], x[n:], atol=1e-6)
    np.testing.assert_allclose((batch.X[:n] + batch.X[n:2 * n]) / 2, x[:n], atol=1e-6)
    assert np.mean(rates) == pytest.approx(c.p, abs=5 * math.sqrt(c.p * (1 - c.p) / (400 * 32 * 8)))
    assert batch.X.shape == (2 * c.batch + c.negatives, c.d1)
    src.close()


# ---------------------------------------------------------------------------------------------------------------
# CuPy (run with -m gpu on a machine with a GPU).


@pytest.mark.gpu
def test_cupy_fused_step_and_training():
    from fdcheck.backend import cupy_available

    if not cupy_available():
        pytest.skip("CuPy is not installed or sees no GPU")
    import cupy

    g = _rng(7)
    W, x = g.standard_normal((12, 20)), g.standard_normal((25, 20))
    b = np.full(12, 0.2)
    X = np.concatenate([x[:8], x[8:16], x[16:]])
    loss, grad, _ = _contrastive_step(cupy, cupy.asarray(W), cupy.asarray(b), cupy.asarray(X), 8, True, 1.5, True,
                                      scale=1.0)
    ref_loss, ref_grad = contrastive_loss_and_grad(W, b, x[:8], x[8:16], x[16:], 1.5)
    assert loss == pytest.approx(float(ref_loss), rel=1e-10)
    np.testing.assert_allclose(cupy.asnumpy(grad), ref_grad, rtol=1e-9, atol=1e-12)
    for augment in ("mask", "none", "supervised"):
        r = train(tiny(backend="cupy", augment=augment), progress=False)
        assert isinstance(r.W, cupy.ndarray) and bool(cupy.all(cupy.isfinite(r.W)))
        assert r.history[-1]["step"] == 30


def test_blas_runs_on_one_thread_unless_the_environment_says_otherwise(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from fdcheck.train import _BLAS_ENV, blas_thread_limit

    for name in _BLAS_ENV:
        monkeypatch.delenv(name, raising=False)
    with blas_thread_limit():
        blas = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
        assert blas and all(p["num_threads"] == 1 for p in blas)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    before = [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    with blas_thread_limit():
        assert [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"] == before
