"""The downstream tasks of Definition 3.1 and linear probes on frozen representations (Corollaries 3.3 and 3.5).

Tasks (Definition 3.1): a fixed ``w* ∈ R^d`` with ``|w*_j| = Θ(1)``; regression ``y = <w*, z>`` and
classification ``y = sign(<w*, z>)``. fdcheck draws ``w*_j = s_j · u_j`` with ``u_j`` uniform on ``[0.5, 1.5]``
and ``s_j`` a fair random sign, so ``|w*_j| ∈ [0.5, 1.5]`` and no two atoms weigh exactly the same.

``<w*, z> = 0`` happens exactly when ``z = 0`` (with continuous ``|w*_j|`` a cancellation among non-zero
coordinates has probability 0). That is common: ``Pr(z = 0) = (1 − p)^d ≈ e^{−p d} = 1/log d`` at
``p = log log d / d``, about 36% of samples at ``d = 16`` and 24% at ``d = 64``. Such a sample has label 0 in the
regression task (kept) and no class in the classification task: it is dropped from the classification training
and test sets, and :func:`probe_suite` reports how many samples were kept (``probe_cls_n_train``,
``probe_cls_n_test``) and the fraction dropped (``probe_zero_label_frac``).

Probes (the ``w*`` of the paper's linear evaluation, fitted on labelled samples): features are standardised on
the training set; regression is ridge regression with the penalty chosen by efficient leave-one-out
cross-validation over :data:`RIDGE_ALPHAS`; classification is L2-regularised logistic regression with ``C``
chosen by :data:`CV_FOLDS`-fold stratified cross-validation over :data:`LOGISTIC_CS` (accuracy), refitted on all
training samples. Training uses ``n = C_PROBE · d · log d`` labelled samples (``Õ(d)``, Corollary 3.5), testing
fresh samples. The same samples and the same ``w*`` serve every representation, so comparisons between them are
paired: the raw input ``x``, the trained features ``f(x)``, and two oracles, ``z`` itself (the best possible
features: both tasks are exactly linear or linearly separable in ``z``) and ``Mᵀx = z + Mᵀξ`` (the best linear
map of ``x`` to the atoms, which keeps the per-atom noise; Section 3's remark after Definition 3.1).

scikit-learn runs on host NumPy copies (``backend.to_numpy``), in float64.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .backend import Random, to_numpy

__all__ = [
    "CV_FOLDS",
    "C_PROBE",
    "LOGISTIC_CS",
    "N_TEST",
    "RIDGE_ALPHAS",
    "W_STAR_RANGE",
    "draw_task",
    "logistic_probe",
    "probe_n_train",
    "probe_suite",
    "ridge_loo_fit",
    "ridge_probe",
    "task_labels",
]

C_PROBE = 8  # n_train = C_PROBE · d · log d labelled samples: the Õ(d) of Corollary 3.5 (shared/REGIMES.md used 8)
N_TEST = 4000  # fresh test samples: standard error of an accuracy near 0.9 is about 0.005
W_STAR_RANGE = (0.5, 1.5)  # |w*_j| uniform on this range: Θ(1), as Definition 3.1 asks
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-4, 4, 17))
LOGISTIC_CS = tuple(float(c) for c in np.logspace(-3, 3, 7))
CV_FOLDS = 3
_MAX_ITER = 2000


def probe_n_train(d: int) -> int:
    """``ceil(C_PROBE · d · log d)``: the number of labelled training samples at dimension ``d``."""
    if isinstance(d, bool) or not isinstance(d, int) or d < 2:
        raise ValueError(f"d={d!r} must be an integer >= 2")
    return int(math.ceil(C_PROBE * d * math.log(d)))


def draw_task(d: int, rng: Random) -> np.ndarray:
    """Definition 3.1's downstream weight ``w*``: ``w*_j = ±u_j``, ``u_j ~ U[0.5, 1.5]``, fair signs (host array)."""
    low, high = W_STAR_RANGE
    u = to_numpy(rng.uniform((d,), dtype="float64"))
    s = to_numpy(rng.sign((d,), dtype="float64"))
    return np.asarray(s * (low + (high - low) * u), dtype=np.float64)


def task_labels(z: Any, w_star: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Definition 3.1's labels of codes ``z`` ``(n, d)``: ``(y_reg, y_cls)`` with ``y_cls ∈ {−1, 0, +1}``.

    ``y_cls = 0`` marks ``<w*, z> = 0`` (``z = 0``): no class; the probes drop those samples.
    """
    y = np.asarray(to_numpy(z), dtype=np.float64) @ w_star
    return y, np.sign(y)


def _standardise(F_train: np.ndarray, F_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre and scale each feature by its training mean and standard deviation (constant features: scale 1)."""
    mean = F_train.mean(axis=0)
    std = F_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return (F_train - mean) / std, (F_test - mean) / std


def ridge_loo_fit(A: np.ndarray, y: np.ndarray, alphas: tuple[float, ...] = RIDGE_ALPHAS) -> tuple[np.ndarray, float]:
    """Ridge regression on centred features ``A`` and centred labels ``y`` with the penalty chosen by leave-one-out.

    One eigendecomposition serves every penalty: with ``AᵀA = V diag(e) Vᵀ`` and ``Q = A V`` (or the dual form
    when there are fewer samples than features), the fitted values are ``Q diag(1/(e+α)) Qᵀ y``, the hat matrix
    diagonal is ``h_i = Σ_k Q_ik² / (e_k + α)`` and the leave-one-out residual is ``(y_i − ŷ_i) / (1 − h_i)``
    (the same closed form as scikit-learn's ``RidgeCV``, at a fraction of its cost on ``d1``-dimensional inputs).
    Ties go to the larger penalty.

    Returns:
        ``(coefficients, alpha)``.
    """
    n, k = A.shape
    if n >= k:
        e, V = np.linalg.eigh(A.T @ A)
        e = np.clip(e, 0.0, None)
        Q = A @ V
        Qy = Q.T @ y
        Q2 = Q * Q
        best, best_err = None, math.inf
        for alpha in sorted(alphas, reverse=True):
            inv = 1.0 / (e + alpha)
            resid = (y - Q @ (inv * Qy)) / (1.0 - Q2 @ inv)
            err = float(np.mean(resid**2))
            if err < best_err:
                best, best_err = alpha, err
        return V @ (Qy / (e + best)), float(best)
    e, U = np.linalg.eigh(A @ A.T)
    e = np.clip(e, 0.0, None)
    Uy = U.T @ y
    U2 = U * U
    best, best_err = None, math.inf
    for alpha in sorted(alphas, reverse=True):
        shrink = e / (e + alpha)
        resid = (y - U @ (shrink * Uy)) / (1.0 - U2 @ shrink)
        err = float(np.mean(resid**2))
        if err < best_err:
            best, best_err = alpha, err
    return A.T @ (U @ (Uy / (e + best))), float(best)


def ridge_probe(F_train: np.ndarray, y_train: np.ndarray, F_test: np.ndarray, y_test: np.ndarray) -> float:
    """Normalised test MSE, ``mean (ŷ − y)² / Var(y_test)``, of a standardised ridge probe (LOO-chosen penalty).

    0 is perfect; 1 is no better than predicting the mean. 1.0 is returned if the test labels have no variance.
    """
    var = float(np.var(y_test))
    if var <= 0:
        return 1.0
    A, B = _standardise(F_train, F_test)
    y_mean = float(y_train.mean())
    coef, _ = ridge_loo_fit(A, y_train - y_mean)
    return float(np.mean((B @ coef + y_mean - y_test) ** 2) / var)


def logistic_probe(F_train: np.ndarray, y_train: np.ndarray, F_test: np.ndarray, y_test: np.ndarray,
                   seed: int = 0) -> float:
    """Test accuracy of a standardised L2 logistic probe with ``C`` chosen by stratified cross-validation.

    Labels are ±1. When the training set has a single class, or a class with fewer than :data:`CV_FOLDS`
    samples (cross-validation impossible), the majority training class is predicted. ``seed`` fixes the folds.
    Returns 0.0 for an empty test set.
    """
    if len(y_test) == 0:
        return 0.0
    classes, counts = np.unique(y_train, return_counts=True)
    if len(classes) < 2 or counts.min() < CV_FOLDS:
        majority = classes[np.argmax(counts)] if len(classes) else 1.0
        return float(np.mean(y_test == majority))
    folds = StratifiedKFold(n_splits=CV_FOLDS, shuffle=True, random_state=seed)
    scores = np.zeros(len(LOGISTIC_CS))
    with warnings.catch_warnings():
        # On (nearly) separable labels, e.g. the oracle z, lbfgs approaches the large-C optimum slowly; the
        # held-out accuracy that selects C already judges the fit, so an unconverged path is not an error here.
        warnings.simplefilter("ignore", ConvergenceWarning)
        for fit_idx, val_idx in folds.split(F_train, y_train):
            scaler = StandardScaler().fit(F_train[fit_idx])
            A, V = scaler.transform(F_train[fit_idx]), scaler.transform(F_train[val_idx])
            clf = LogisticRegression(max_iter=_MAX_ITER, warm_start=True)  # warm start along the C path
            for k, c in enumerate(LOGISTIC_CS):
                clf.set_params(C=c)
                clf.fit(A, y_train[fit_idx])
                scores[k] += np.mean(clf.predict(V) == y_train[val_idx])
        best = LOGISTIC_CS[int(np.argmax(scores))]  # ties go to the smaller C (stronger regularisation)
        model = make_pipeline(StandardScaler(), LogisticRegression(C=best, max_iter=_MAX_ITER))
        model.fit(F_train, y_train)
    return float(np.mean(model.predict(F_test) == y_test))


def probe_suite(feature_fn: Callable[[Any], Any], model: Any, rng: Random, *, n_train: int | None = None,
                n_test: int = N_TEST) -> dict[str, float]:
    """Corollaries 3.3 and 3.5: linear probes for both tasks on ``f(x)``, the raw ``x`` and the oracles ``z``, ``Mᵀx``.

    Args:
        feature_fn: the frozen representation, ``(n, d1)`` batch ↦ ``(n, k)`` (any backend).
        model: the :class:`fdcheck.data.SparseCodingModel` that draws the labelled samples.
        rng: random stream for ``w*``, the training and the test samples, and the folds.
        n_train: labelled training samples; default :func:`probe_n_train` ``(d)``.
        n_test: fresh test samples.

    Returns:
        ``probe_reg_mse_{features,raw,z,Mtx}``: normalised test MSE of the regression probes;
        ``probe_cls_acc_{features,raw,z,Mtx}``: test accuracy of the classification probes (samples with ``z = 0``
        dropped); ``probe_n_train``: ``n_train``; ``probe_cls_n_train`` and ``probe_cls_n_test``: the samples the
        classification probes kept; ``probe_zero_label_frac``: the fraction of all drawn samples with
        ``<w*, z> = 0``.
    """
    d = model.d
    n_train = probe_n_train(d) if n_train is None else n_train
    for name, value in (("n_train", n_train), ("n_test", n_test)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 2:
            raise ValueError(f"{name}={value!r} must be an integer >= 2")
    r_task, r_train, r_test, r_folds = rng.spawn(4)
    w_star = draw_task(d, r_task)
    train = model.sample(n_train, r_train)
    test = model.sample(n_test, r_test)
    seed = int(to_numpy(r_folds.uniform((1,), dtype="float64"))[0] * 2**31)
    y_tr, c_tr = task_labels(train.z, w_star)
    y_te, c_te = task_labels(test.z, w_star)
    keep_tr, keep_te = c_tr != 0, c_te != 0
    M = model.M
    reps: dict[str, Callable[[Any], Any]] = {
        "features": lambda s: feature_fn(s.x),
        "raw": lambda s: s.x,
        "z": lambda s: s.z,
        "Mtx": lambda s: s.x @ M,
    }
    out: dict[str, float] = {}
    for name, rep in reps.items():
        F_tr = np.asarray(to_numpy(rep(train)), dtype=np.float64)
        F_te = np.asarray(to_numpy(rep(test)), dtype=np.float64)
        out[f"probe_reg_mse_{name}"] = ridge_probe(F_tr, y_tr, F_te, y_te)
        out[f"probe_cls_acc_{name}"] = logistic_probe(F_tr[keep_tr], c_tr[keep_tr], F_te[keep_te], c_te[keep_te],
                                                      seed=seed)
    out["probe_n_train"] = float(n_train)
    out["probe_cls_n_train"] = float(keep_tr.sum())
    out["probe_cls_n_test"] = float(keep_te.sum())
    out["probe_zero_label_frac"] = float((n_train + n_test - keep_tr.sum() - keep_te.sum()) / (n_train + n_test))
    return out
