"""Tests of fdcheck.probes: the tasks of Definition 3.1 and the linear probes, on features whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fdcheck import probes as pr
from fdcheck.backend import Random, get_namespace
from fdcheck.config import ModelConfig
from fdcheck.data import SparseCodingModel

XP = get_namespace("numpy")
PROBE_KEYS = [f"probe_{t}_{r}" for t in ("reg_mse", "cls_acc") for r in ("features", "raw", "z", "Mtx")]


@pytest.fixture(scope="module")
def model16():
    config = ModelConfig.scaled(16, dtype="float64")
    return SparseCodingModel.from_config(config, Random(0, XP).spawn(4)[0])


def test_n_train_is_c_d_log_d():
    assert pr.probe_n_train(64) == math.ceil(8 * 64 * math.log(64)) == 2130
    with pytest.raises(ValueError, match="d=1"):
        pr.probe_n_train(1)


def test_task_weights_are_theta_one_with_both_signs():
    w = pr.draw_task(1000, Random(1, XP))
    assert np.all((np.abs(w) >= 0.5) & (np.abs(w) <= 1.5))
    # 1000 fair signs: the count of positives is 500 ± 16; 400..600 is over 6 standard deviations.
    assert 400 < np.sum(w > 0) < 600
    assert np.array_equal(w, pr.draw_task(1000, Random(1, XP)))


def test_labels_are_undefined_exactly_when_z_is_zero():
    z = np.array([[0, 0, 0], [1, 0, 0], [0, -1, 1], [1, 1, 0]], dtype=float)
    y, c = pr.task_labels(z, np.array([1.0, -0.7, 1.2]))
    assert y == pytest.approx([0.0, 1.0, 1.9, 0.3])
    assert list(c) == [0.0, 1.0, 1.0, 1.0]


def test_probes_on_the_oracle_z_are_near_perfect(model16):
    """Seed 2, d = 16. Regression y = <w*, z> is exactly linear in z: the ridge probe's test MSE is only the
    penalty's shrinkage (below 1e-3 of Var(y) at the smallest grid penalties), far under 0.05. Classification is
    linearly separable in z; a linear separator learned from n samples errs on about d/n of fresh ones, so with
    n_train = 4000 (about 2600 with z ≠ 0) the expected accuracy is about 1 − 16/2600 > 0.99, and 0.97 leaves room
    for the 3000-odd test samples' noise (SE ≈ 0.002)."""
    out = pr.probe_suite(lambda x: x, model16, Random(2, XP), n_train=4000, n_test=4000)
    assert out["probe_reg_mse_z"] < 0.05
    assert out["probe_cls_acc_z"] > 0.97
    # The oracle beats Mᵀx = z + Mᵀξ, whose per-atom noise σ² exceeds the signal p (Section 3's remark).
    assert out["probe_reg_mse_Mtx"] > out["probe_reg_mse_z"] + 0.2


def test_probes_on_pure_noise_features_are_at_chance(model16):
    """Features independent of x (seeded Gaussians, 32 of them): nothing to learn. Seed 3, default n_train = 355,
    n_test = 4000 (about 2600 with a class). The LOO-chosen ridge shrinks to the mean, so the normalised MSE is
    about 1 (> 0.9 leaves room for a slightly under-shrunk fit); labels are symmetric, so the accuracy is
    1/2 ± 0.01 (SE), and 0.06 is six standard errors."""
    noise = np.random.default_rng(3)
    out = pr.probe_suite(lambda x: noise.standard_normal((x.shape[0], 32)), model16, Random(3, XP))
    assert out["probe_reg_mse_features"] > 0.9
    assert abs(out["probe_cls_acc_features"] - 0.5) < 0.06


def test_probe_suite_reports_its_samples_and_is_reproducible(model16):
    out = pr.probe_suite(lambda x: x @ model16.M, model16, Random(4, XP), n_test=2000)
    assert set(PROBE_KEYS) <= set(out)
    assert out["probe_n_train"] == float(pr.probe_n_train(16))
    # Pr(z = 0) = (1 − p)^d; over 2355 samples its SE is about 0.01, so ±0.04 is four SE.
    assert out["probe_zero_label_frac"] == pytest.approx((1 - model16.p) ** 16, abs=0.04)
    assert out["probe_cls_n_train"] + out["probe_cls_n_test"] == pytest.approx(
        (1 - out["probe_zero_label_frac"]) * (pr.probe_n_train(16) + 2000))
    # The features here are Mᵀx itself: the same numbers as the Mᵀx oracle, on the same samples.
    assert out["probe_reg_mse_features"] == pytest.approx(out["probe_reg_mse_Mtx"])
    assert out["probe_cls_acc_features"] == out["probe_cls_acc_Mtx"]
    again = pr.probe_suite(lambda x: x @ model16.M, model16, Random(4, XP), n_test=2000)
    assert again == out
    assert all(isinstance(v, float) and math.isfinite(v) for v in out.values())


@pytest.mark.parametrize("n, k", [(200, 20), (30, 80)])
def test_ridge_loo_matches_scikit_learns_ridgecv(n, k):
    """Both branches (more samples than features, and fewer) against RidgeCV's own leave-one-out choice."""
    from sklearn.linear_model import RidgeCV

    rng = np.random.default_rng(5)
    A = rng.standard_normal((n, k))
    A -= A.mean(axis=0)
    y = A @ rng.standard_normal(k) + 3.0 * rng.standard_normal(n)
    y -= y.mean()
    coef, alpha = pr.ridge_loo_fit(A, y)
    ref = RidgeCV(alphas=pr.RIDGE_ALPHAS, fit_intercept=False).fit(A, y)
    assert alpha == pytest.approx(ref.alpha_)
    assert coef == pytest.approx(ref.coef_, rel=1e-6, abs=1e-9)


def test_ridge_probe_edge_cases():
    A = np.arange(20.0).reshape(10, 2)
    assert pr.ridge_probe(A, A[:, 0], A, np.ones(10)) == 1.0  # no variance in the test labels


def test_logistic_probe_falls_back_to_the_majority_class():
    F = np.zeros((5, 2))
    assert pr.logistic_probe(F, np.array([1, 1, 1, 1, -1.0]), F, np.array([1, -1, 1, 1, 1.0])) == 0.8
    assert pr.logistic_probe(F, np.ones(5), F[:0], np.ones(0)) == 0.0


def test_probe_suite_rejects_bad_sizes(model16):
    with pytest.raises(ValueError, match="n_train=1"):
        pr.probe_suite(lambda x: x, model16, Random(0, XP), n_train=1)
    with pytest.raises(ValueError, match="n_test=0"):
        pr.probe_suite(lambda x: x, model16, Random(0, XP), n_test=0)
