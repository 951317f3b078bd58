"""Definition 2.1 (the sparse coding model) and Section 2.1's two "why sparse" facts, as properties.

Statistical properties use a two-sided test at significance ``ALPHA = 1e-6`` per example: with at most a few
hundred examples per run (``thorough``) the chance of a false alarm in a run stays below 1e-3, while the
mutations they are meant to catch (a wrong rate, a standard deviation used as a variance) give p-values far
below 1e-6 at the sample sizes used (``MIN_ENTRIES`` = 20 000 draws per test). Every draw follows from the
example's seed, so a failure reproduces exactly from the printed case.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from scipy import stats
from strategies import DataCase, data_cases, reproduce

from fdcheck.backend import Random, get_namespace, to_numpy
from fdcheck.config import ModelConfig
from fdcheck.data import SparseCodingModel, make_dictionary, validate_dictionary

ALPHA = 1e-6
MIN_ENTRIES = 20_000
# Union-bound failure probability for the high-probability inequalities of Section 2.1 (false alarm <= DELTA).
DELTA = 1e-6


def _host(case: DataCase, n: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    model, sample, _ = case.build() if n is None else _build_n(case, n)
    return to_numpy(model.M), to_numpy(sample.x), to_numpy(sample.z), to_numpy(sample.xi)


def _build_n(case: DataCase, n: int):  # noqa: ANN202
    return DataCase(**{**case.__dict__, "n": n}).build()


# ------------------------------------------------------------------------------------------ the dictionary M


@given(case=data_cases())
def test_dictionary_is_column_orthonormal(case: DataCase) -> None:
    """Definition 2.1: ``MᵀM = I``. Tolerance ``4 √d1 · eps``: the QR is done in float64 and the float32 copy
    adds a rounding of ``eps/2`` per entry; summing ``d1`` such terms gives ``~√d1 · eps`` (measured: at most
    5 eps for ``d1 ≤ 4096``)."""
    reproduce(case.repro())
    M, *_ = _host(case)
    eps = float(np.finfo(M.dtype).eps)
    err = float(np.max(np.abs(M.T.astype(np.float64) @ M.astype(np.float64) - np.eye(case.d))))
    tol = 4 * math.sqrt(case.d1) * eps
    assert err <= tol, f"max |MᵀM − I| = {err:.3g} > 4 √d1 eps = {tol:.3g}"


@given(case=data_cases())
def test_dictionary_is_delocalised(case: DataCase) -> None:
    """Definition 2.1: ``||M_j||_∞ ≤ Õ(1/√d)``; for the QR of a Gaussian matrix, ``max |M| ≤ 4 √(log d1 / d1)``.

    Why 4: each column is uniform on the sphere of ``R^{d1}``, so ``Pr(|M_ij| ≥ t) ≤ 2 exp(−d1 t² / 2)`` (Ball,
    Lemma 2.2); with ``t = 4 √(log d1 / d1)`` the union over ``d1 · d ≤ d1²`` entries is at most
    ``2 d1^{-6}`` (below 2e-6 for ``d1 ≥ 10``; for smaller ``d1`` the bound exceeds 1 and holds trivially).
    """
    reproduce(case.repro())
    M, *_ = _host(case)
    bound = 4 * math.sqrt(math.log(case.d1) / case.d1) if case.d1 > 1 else 1.0
    assert float(np.max(np.abs(M))) <= bound, f"max |M| = {np.max(np.abs(M)):.3g} > 4 √(log d1/d1) = {bound:.3g}"


# ------------------------------------------------------------------------------------------ the sparse code z


@given(case=data_cases(min_entries=MIN_ENTRIES))
def test_codes_are_symmetric_ternary_with_rate_p(case: DataCase) -> None:
    """Definition 2.1: ``z ∈ {−1, 0, 1}^d``, ``Pr(|z_j| = 1) = p`` (exact binomial test on the ``n·d ≥ 20 000``
    coordinates) and symmetric (the number of ``+1`` among the non-zeros is Binomial(nnz, 1/2))."""
    reproduce(case.repro())
    _, _, z, _ = _host(case)
    values = set(np.unique(z).tolist())
    assert values <= {-1.0, 0.0, 1.0}, f"z takes values {sorted(values)}; Definition 2.1 allows only -1, 0, 1"
    active = int(np.count_nonzero(z))
    rate = stats.binomtest(active, z.size, case.p).pvalue
    assert rate >= ALPHA, (f"{active}/{z.size} non-zero codes for p = {case.p:.4g}: "
                           f"binomial p-value {rate:.3g} < {ALPHA}")
    if active:
        positive = int(np.count_nonzero(z > 0))
        sym = stats.binomtest(positive, active, 0.5).pvalue
        assert sym >= ALPHA, f"{positive}/{active} non-zero codes are +1: binomial p-value {sym:.3g} < {ALPHA}"


# ------------------------------------------------------------------------------------------ the noise ξ


@given(case=data_cases())
def test_noise_has_the_configured_variance(case: DataCase) -> None:
    """Definition 2.1: ``ξ ~ N(0, σ² I)`` with ``σ² = noise_variance`` a *variance*. ``Σ ξ² / σ²`` over
    ``N ≥ 20 000`` coordinates is ``χ²(N)`` (two-sided test), and the mean is ``N(0, σ²/N)`` (|z| ≤ 5.3, the
    two-sided normal quantile at 1e-7)."""
    n = math.ceil(MIN_ENTRIES / case.d1)
    reproduce(case.repro() + f"\n# with n = {n} samples: DataCase(**{{**case.__dict__, 'n': {n}}}).build()")
    _, _, _, xi = _host(case, n)
    xi = xi.astype(np.float64)
    N = xi.size
    statistic = float(np.sum(xi**2) / case.noise_variance)
    p_value = 2 * min(stats.chi2.cdf(statistic, N), stats.chi2.sf(statistic, N))
    assert p_value >= ALPHA, (f"Σξ²/σ² = {statistic:.6g} over N = {N} (expected {N}; measured variance "
                              f"{np.mean(xi**2):.4g} vs noise_variance {case.noise_variance:.4g}): "
                              f"p-value {p_value:.3g}")
    z_mean = float(np.mean(xi) / math.sqrt(case.noise_variance / N))
    assert abs(z_mean) <= 5.3, f"mean of ξ is {np.mean(xi):.3g}, z = {z_mean:.2f} standard errors from 0"


# ------------------------------------------------------------------------------------------ x = Mz + ξ


@given(case=data_cases())
def test_signal_is_read_exactly_off_its_atom(case: DataCase) -> None:
    """Definition 2.1 with orthonormal atoms: ``<Mz, M_j> = z_j`` (up to rounding: ``(‖z‖₁ + 2) · 4 √d1 · eps``)
    and the sample is ``x = Mz + ξ``."""
    reproduce(case.repro())
    M, x, z, xi = _host(case)
    eps = float(np.finfo(M.dtype).eps)
    Mz = z.astype(np.float64) @ M.T.astype(np.float64)
    proj = Mz @ M.astype(np.float64)
    tol = (np.abs(z).sum(axis=1, keepdims=True) + 2) * 4 * math.sqrt(case.d1) * eps
    worst = float(np.max(np.abs(proj - z) - tol))
    assert worst <= 0, f"<Mz, M_j> differs from z_j by more than the rounding tolerance (excess {worst:.3g})"
    resid = float(np.max(np.abs(x.astype(np.float64) - Mz - xi)))
    scale = float(np.max(np.abs(x))) + 1
    assert resid <= 8 * eps * scale, f"x − (Mz + ξ) = {resid:.3g}: the sample is not Mz + ξ"


# ------------------------------------------------------------------------------------------ Section 2.1's facts


@given(case=data_cases())
def test_noise_projection_on_every_atom_is_small(case: DataCase) -> None:
    """Section 2.1: ``|<ξ, M_j>| ≤ Õ(1/√d)`` whp. Each ``<ξ_i, M_j>`` is exactly ``N(0, σ²)`` (``M_j`` is a
    unit vector), so the union bound over ``n·d`` of them gives ``max ≤ σ √(2 log(2 n d / δ))`` with probability
    ``≥ 1 − δ``, ``δ = 1e-6``; at ``σ² = √log d / d`` this is ``Õ(1/√d)``, against ``|<Mz, M_j>| = 1``."""
    reproduce(case.repro())
    M, _, _, xi = _host(case)
    proj = np.abs(xi.astype(np.float64) @ M.astype(np.float64))
    bound = math.sqrt(case.noise_variance * 2 * math.log(2 * case.n * case.d / DELTA))
    assert float(proj.max()) <= bound, f"max |<ξ, M_j>| = {proj.max():.4g} > σ √(2 log(2nd/δ)) = {bound:.4g}"


@given(case=data_cases())
def test_noise_vectors_are_nearly_orthogonal(case: DataCase) -> None:
    """Section 2.1: independent ``ξ_i, ξ_j`` have ``|cos(ξ_i, ξ_j)| ≤ Õ(1/√d1)`` whp. The direction of each is
    uniform on the sphere, so ``Pr(|cos| ≥ t) ≤ 2 exp(−d1 t²/2)``; over the ``n(n−1)/2`` pairs,
    ``max ≤ √(2 log(n² / δ) / d1)`` with probability ``≥ 1 − δ``, ``δ = 1e-6``."""
    reproduce(case.repro())
    _, _, _, xi = _host(case)
    if case.n < 2:
        return
    unit = xi.astype(np.float64) / np.linalg.norm(xi.astype(np.float64), axis=1, keepdims=True)
    cos = np.abs(unit @ unit.T)[np.triu_indices(case.n, 1)]
    bound = math.sqrt(2 * math.log(case.n**2 / DELTA) / case.d1)
    assert float(cos.max()) <= bound, f"max |cos(ξ_i, ξ_j)| = {cos.max():.4g} > √(2 log(n²/δ)/d1) = {bound:.4g}"


@pytest.mark.parametrize("d", [64, 256])
def test_noise_is_small_against_the_signal_under_the_scaling(d: int) -> None:
    """Section 2.1 at fdcheck's scaling (``ModelConfig.scaled(d)``, ``σ² = √log d / d``, ``d1 = 16 d``, seed 0,
    200 samples): every ``|<ξ, M_j>|`` is below the union bound of the test above, and at ``d = 256`` that
    bound, hence every measured ``|<ξ, M_j>|``, is below 1 = ``|<Mz, M_j>|`` for an active atom: the sparse
    signal stands out of the noise on its own atom while ``‖ξ‖² = d1 σ² ≫ ‖Mz‖²``."""
    config = ModelConfig.scaled(d, dtype="float64")
    xp = get_namespace("numpy")
    dict_rng, _, train_rng, _ = Random(0, xp).spawn(4)
    model = SparseCodingModel.from_config(config, dict_rng)
    sample = model.sample(200, train_rng)
    proj = np.abs(sample.xi @ model.M)
    bound = math.sqrt(config.noise_variance * 2 * math.log(2 * 200 * d / DELTA))
    assert float(proj.max()) <= bound
    energy_ratio = float(np.mean(np.sum(sample.xi**2, axis=1)) / max(np.mean(np.sum(sample.z**2, axis=1)), 1e-12))
    assert energy_ratio > 1, f"‖ξ‖²/‖Mz‖² = {energy_ratio:.3g}: the noise should dominate the energy"
    if d >= 256:
        assert bound < 1, f"the union bound {bound:.3g} should be below 1 at d = {d}"


# ------------------------------------------------------------------------------------------ inputs and seeds


@given(case=data_cases(max_d=16, max_d1=128))
def test_same_seed_same_model_on_every_backend(case: DataCase) -> None:
    """The seeds contract: the same seed gives the same ``M`` and samples; NumPy and array-api-strict share
    NumPy's generator, so they agree bit for bit."""
    reproduce(case.repro())
    (model, sample, _), (again, sample_again, _) = case.build(), case.build()
    strict_model, strict_sample, _ = case.build(get_namespace("array_api_strict"))
    ref = [to_numpy(a) for a in (model.M, *sample)]
    for a, b in zip(ref, [to_numpy(a) for a in (again.M, *sample_again)]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(ref, [to_numpy(a) for a in (strict_model.M, *strict_sample)]):
        np.testing.assert_array_equal(a, b)


def test_user_dictionary_is_validated() -> None:
    """A user-supplied ``M`` is checked for shape, finiteness and orthonormality before any work."""
    xp = get_namespace("numpy")
    config = ModelConfig.scaled(8, d1=32, dtype="float64")
    M = make_dictionary(32, 8, Random(3, xp), "float64")
    model = SparseCodingModel.from_config(config, Random(0, xp), M=M)
    np.testing.assert_array_equal(model.M, M)
    with pytest.raises(ValueError, match=r"shape"):
        validate_dictionary(M[:, :7], 32, 8)
    bad = np.array(M)
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"non-finite"):
        validate_dictionary(bad, 32, 8)
    with pytest.raises(ValueError, match=r"orthonormal"):
        validate_dictionary(2 * M, 32, 8)
    with pytest.raises(ValueError, match=r"orthonormal"):
        SparseCodingModel.from_config(config, Random(0, xp), M=M + 1e-3)


@pytest.mark.parametrize("p", [0.0, -0.1, 1.5, float("nan")])
def test_bad_rate_is_rejected(p: float) -> None:
    M = make_dictionary(8, 4, Random(0, get_namespace("numpy")))
    with pytest.raises(ValueError, match=r"p="):
        SparseCodingModel(M=M, p=p, noise_variance=0.1)


@pytest.mark.parametrize("noise_variance", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_noise_variance_is_rejected(noise_variance: float) -> None:
    M = make_dictionary(8, 4, Random(0, get_namespace("numpy")))
    with pytest.raises(ValueError, match=r"noise_variance="):
        SparseCodingModel(M=M, p=0.5, noise_variance=noise_variance)


@pytest.mark.parametrize("n", [0, -1, 2.5])
def test_bad_sample_count_is_rejected(n: object) -> None:
    xp = get_namespace("numpy")
    model = SparseCodingModel(M=make_dictionary(8, 4, Random(0, xp)), p=0.5, noise_variance=0.1)
    with pytest.raises(ValueError, match=r"n="):
        model.sample(n, Random(0, xp))  # type: ignore[arg-type]
