"""The measured quantities behind each claim of the paper, and :func:`measure_all`, which computes every one.

Each quantity is a small pure function whose docstring says what it measures and where the paper states it:

- Section 2.1 ("why sparse coding"), facts of the data model alone: :func:`data_facts`.
- Section 4 (feature decoupling), measured at the initialisation ``W0`` on population samples:
  :func:`view_correlations`, :func:`expected_gradient_split`, :func:`threshold_decoding`.
- Theorem 3.2 and Theorem 3.4 on the trained ``(W, b)``: :func:`feature_metrics` (cosines, relative distance,
  activation density), :func:`neuron_structure` (span energy, atom shares, ``N_i``, coverage),
  :func:`weight_movement` (Section 1.1, Message 1), :func:`cluster_accuracy` (Figure 3) and
  :func:`peer_metrics` (the closest peer's numbers, ``shared/PEER_METRICS.md``).
- Corollaries 3.3 and 3.5: the linear probes of :mod:`fdcheck.probes`, merged into :func:`measure_all`.

Array math takes its namespace from the inputs (``array_namespace``), so NumPy, CuPy and array-api-strict run the
same code; only the greedy matching of :func:`greedy_matching` (a combinatorial loop) and the probes run on host
NumPy copies. Every function returns plain Python floats and never NaN: where a quantity is undefined (no active
sample, a zero neuron) its docstring names the value returned instead.

Conventions: ``W`` is ``(m, d1)`` (one row per neuron), ``M`` is ``(d1, d)``, batches are rows, ``z`` is ``(n, d)``.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from .augment import no_augmentation, random_mask, random_mask_matrix
from .backend import Random, array_namespace, to_numpy
from .loss import contrastive_loss_and_grad
from .network import decompose, features

__all__ = [
    "ATOM_SHARE_IN_N",
    "COVERAGE_SHARE",
    "DEFAULT_SIZES",
    "FAILURE_PROB",
    "GRAD_GROUPS",
    "THRESHOLD_B",
    "TOP_K_ATOMS",
    "UNDEFINED_REL_DIST",
    "cluster_accuracy",
    "data_facts",
    "expected_gradient_split",
    "feature_metrics",
    "greedy_matching",
    "measure_all",
    "neuron_structure",
    "noise_cosine_bound",
    "noise_projection_bound",
    "peer_metrics",
    "random_perp_directions",
    "row_cosines",
    "threshold_decode",
    "threshold_decoding",
    "view_correlation",
    "view_correlations",
    "weight_movement",
]

# Theorem 3.4's N_i ("the O(1) atoms of neuron i"): atom j is in N_i when alpha_ij² >= ATOM_SHARE_IN_N ||w_i||².
# At most 1/0.1 = 10 atoms qualify, so |N_i| = O(1) by construction; a pure neuron has |N_i| = 1, and a random
# direction in R^{d1} has none (each atom gets about 1/d1 of it).
ATOM_SHARE_IN_N = 0.1
# "N_i = {j}" of Theorem 3.4, measurably: atom j is the top atom of neuron i and holds at least half of ||w_i||².
COVERAGE_SHARE = 0.5
TOP_K_ATOMS = 3  # "the O(1) atoms of N_i" for top3_atom_share
# Section 4's threshold T_b(u) = u·1{|u| >= b}: <M_j, 2Dx> ≈ z_j (2 Σ_k D_kk M_kj² ≈ 1) plus noise N(0, ≈2σ²), so
# b = 1/2 sits halfway between the noise level 0 and the signal level 1.
THRESHOLD_B = 0.5
# Failure probability of the high-probability bounds of Section 2.1 (each holds with probability >= 99%).
FAILURE_PROB = 0.01
# Independent groups of batches for the U-statistics and jackknife of expected_gradient_split.
GRAD_GROUPS = 8
# rel_dist_fx_fMz when no test sample has f(Mz) != 0: a representation that keeps none of the clean signal is
# "as far as it is large" from it; 1.0 fails any claim that the ratio is small.
UNDEFINED_REL_DIST = 1.0

# Sample sizes of measure_all (override any through its ``sizes`` argument).
DEFAULT_SIZES: dict[str, int] = {
    "n_data": 4096,  # Section 2.1 projections
    "n_cos": 512,  # Section 2.1 pairwise noise cosines (n_cos² / 2 pairs)
    "n_view": 4096,  # Section 4 view correlations
    "n_view_dirs": 64,  # random M⊥ directions for the view correlation
    "n_grad": 4096,  # positives per augmentation for the expected gradient at W0
    "n_decode": 4096,  # Section 4 threshold decoding
    "n_test": 4096,  # Theorem 3.2 / 3.4 test samples (features, peer metrics)
    "n_centroid": 8192,  # Figure 3 nearest centroid and nearest neighbour (single-atom samples, split half / half)
    "n_probe_test": 4000,  # Corollaries 3.3 / 3.5 probe test set
}


# ---------------------------------------------------------------------------------------------------------- helpers
def _f(a: Any) -> float:
    return float(a)


def _safe_div(xp: Any, num: Any, den: Any) -> Any:
    """``num / den`` elementwise where ``den > 0``, else 0 (no division warnings, no NaN)."""
    ok = den > 0
    return xp.where(ok, num / xp.where(ok, den, xp.ones_like(den)), xp.zeros_like(num))


def _row_sq_norms(xp: Any, a: Any) -> Any:
    return xp.sum(a * a, axis=1)


def _as_float(xp: Any, mask: Any, like: Any) -> Any:
    return xp.astype(mask, like.dtype)


def _sorted_quantile(values: Any, count: int, q: float) -> float:
    """The lower ``q``-quantile of the first ``count`` entries of an ascending-sorted vector."""
    k = int(math.floor(q * (count - 1)))
    return _f(values[k])


def _median(xp: Any, v: Any) -> float:
    """The median of a vector (mean of the two middle values for an even length), as ``numpy.median``."""
    s = xp.sort(v)
    n = int(s.shape[0])
    return _f(s[n // 2]) if n % 2 else 0.5 * (_f(s[n // 2 - 1]) + _f(s[n // 2]))


def _dtype_name(a: Any) -> str:
    xp = array_namespace(a)
    return "float32" if a.dtype == xp.float32 else "float64"


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}={value!r} must be an integer >= {low}")


def row_cosines(a: Any, c: Any) -> Any:
    """``cos(a_s, c_s)`` for each row ``s``; a row pair where either norm is 0 gets 0."""
    xp = array_namespace(a)
    num = xp.sum(a * c, axis=1)
    den = xp.sqrt(_row_sq_norms(xp, a) * _row_sq_norms(xp, c))
    return _safe_div(xp, num, den)


# ----------------------------------------------------------------------------------------------- Section 2.1: data
def noise_projection_bound(noise_variance: float, n: int, d: int, delta: float = FAILURE_PROB) -> float:
    """High-probability bound on ``max |<ξ_s, M_j>|`` over ``n`` samples and ``d`` atoms (Section 2.1).

    ``<ξ, M_j> ~ N(0, σ²)`` exactly (``M_j`` is a unit vector), and ``Pr(|g| ≥ t) ≤ 2 exp(−t²/2σ²)``; a union bound
    over the ``n d`` projections gives ``max ≤ σ √(2 log(2 n d / δ))`` with probability at least ``1 − δ``. This is
    the ``Õ(1/√d)`` of Section 2.1 (``σ² = Θ(√log d / d)``).
    """
    return math.sqrt(noise_variance * 2.0 * math.log(2.0 * n * d / delta))


def noise_cosine_bound(n: int, d1: int, delta: float = FAILURE_PROB) -> float:
    """High-probability bound on ``max_{s<t} |cos(ξ_s, ξ_t)|`` for ``n`` independent Gaussian vectors in ``R^{d1}``.

    ``cos(ξ_s, ξ_t)`` is distributed as one coordinate of a uniform unit vector in ``R^{d1}``, and a spherical cap
    satisfies ``Pr(u_1 ≥ t) ≤ exp(−d1 t²/2)``; a union bound over the ``n(n−1)/2`` pairs and both signs gives
    ``max ≤ √(2 log(n²/δ) / d1)`` with probability at least ``1 − δ`` (Section 2.1: "dense noise is individual",
    ``Õ(1/poly(d))`` since ``d1 = poly(d)``).
    """
    return math.sqrt(2.0 * math.log(n * n / delta) / d1)


def data_facts(model: Any, rng: Random, *, n: int = 4096, n_cos: int = 512) -> dict[str, float]:
    """Section 2.1's facts about the sparse coding model, measured on fresh samples (no network involved).

    Returns:
        ``data_active_proj_q01``: the lower 1% quantile, over ``(sample, j)`` with ``z_j ≠ 0``, of ``|<x, M_j>|``
        ("sparse signals are significant": ``|<x, M_j>| ≥ Ω(1)`` when ``z_j ≠ 0``; near 1). 0.0 if no ``z_j ≠ 0``
        was drawn (probability ``(1 − p)^{nd}``).
        ``data_noise_proj_max``: ``max |<ξ_s, M_j>|`` over the ``n`` samples and ``d`` atoms (``Õ(1/√d)``), and
        ``data_noise_proj_bound``, its bound from :func:`noise_projection_bound`.
        ``data_noise_cos_max``: ``max_{s<t} |cos(ξ_s, ξ_t)|`` over ``n_cos`` samples, and ``data_noise_cos_bound``,
        its bound from :func:`noise_cosine_bound`.
        ``data_energy_ratio``: ``mean ||ξ||² / mean ||Mz||²`` (``≈ d1 σ² / (p d)``; "the dense noise carries far more
        energy"). Should no sample have ``z ≠ 0``, the denominator is replaced by its expectation ``p d``.
    """
    _check_int("n", n, 2)
    _check_int("n_cos", n_cos, 2)
    M = model.M
    xp = array_namespace(M)
    d, d1 = model.d, model.d1
    s = model.sample(n, rng)
    proj = s.x @ M  # (n, d): <x, M_j> = z_j + <ξ, M_j>
    active = s.z != 0
    n_active = int(_f(xp.sum(_as_float(xp, active, proj))))
    if n_active:
        big = xp.full(proj.shape, math.inf, dtype=proj.dtype)
        vals = xp.sort(xp.reshape(xp.where(active, xp.abs(proj), big), (-1,)))
        q01 = _sorted_quantile(vals, n_active, 0.01)
    else:
        q01 = 0.0
    noise_max = _f(xp.max(xp.abs(s.xi @ M)))
    xi = s.xi[:n_cos, :] if n_cos <= n else model.sample_noise(n_cos, rng)
    norms = xp.sqrt(_row_sq_norms(xp, xi))
    u = xi / norms[:, None]
    gram = u @ u.T - xp.eye(int(xi.shape[0]), dtype=u.dtype)  # zero the diagonal (cos(ξ, ξ) = 1)
    cos_max = _f(xp.max(xp.abs(gram)))
    mz = s.z @ M.T
    e_mz = _f(xp.mean(_row_sq_norms(xp, mz)))
    e_xi = _f(xp.mean(_row_sq_norms(xp, s.xi)))
    if e_mz <= 0:
        e_mz = model.p * d
    return {
        "data_active_proj_q01": q01,
        "data_noise_proj_max": noise_max,
        "data_noise_proj_bound": noise_projection_bound(model.noise_variance, n, d),
        "data_noise_cos_max": cos_max,
        "data_noise_cos_bound": noise_cosine_bound(int(xi.shape[0]), d1),
        "data_energy_ratio": e_xi / e_mz,
    }


# ------------------------------------------------------------------------------- Section 4: feature decoupling
def random_perp_directions(M: Any, k: int, rng: Random) -> Any:
    """``k`` random unit vectors in ``M⊥`` (Gaussian directions with their ``span(M)`` part removed): ``(k, d1)``."""
    _check_int("k", k, 1)
    xp = array_namespace(M)
    g = xp.astype(rng.normal((k, int(M.shape[0])), dtype="float64"), M.dtype)
    g = g - (g @ M) @ M.T
    return g / xp.sqrt(_row_sq_norms(xp, g))[:, None]


def view_correlation(directions: Any, x1: Any, x2: Any) -> float:
    """Mean over directions ``w`` of the sample correlation of ``<w, x1_s>`` with ``<w, x2_s>`` (Section 4).

    A direction along which either view has zero variance contributes 0.

    Args:
        directions: ``(k, d1)`` directions (rows).
        x1: ``(n, d1)`` first views.
        x2: ``(n, d1)`` second views of the same samples.
    """
    xp = array_namespace(x1)
    u1 = x1 @ directions.T
    u2 = x2 @ directions.T
    u1 = u1 - xp.mean(u1, axis=0)[None, :]
    u2 = u2 - xp.mean(u2, axis=0)[None, :]
    cov = xp.sum(u1 * u2, axis=0)
    den = xp.sqrt(xp.sum(u1 * u1, axis=0) * xp.sum(u2 * u2, axis=0))
    return _f(xp.mean(_safe_div(xp, cov, den)))


def view_correlations(model: Any, rng: Random, *, n: int = 4096, n_dirs: int = 64, keep_prob: float = 0.5
                      ) -> dict[str, float]:
    """Section 4's feature decoupling seen in the two views: correlation of ``<w, x⁺>`` with ``<w, x⁺⁺>``.

    With RandomMask (``x⁺ = 2Dx``, ``x⁺⁺ = 2(I−D)x``) the dense parts ``Dξ`` and ``(I−D)ξ`` are independent, so along
    a direction ``w ∈ M⊥`` the views are uncorrelated (exactly ``−p Σ_k w_k² (MMᵀ)_kk / (2σ²) ≈ −p (d/d1) / (2σ²)``,
    about −0.02 along ``d1 = 16d``), while along an atom both views carry ``z_j``: correlation ``≈ p / (p + 2σ²)``.
    Without augmentation both views are ``x`` and every correlation is 1.

    Returns:
        ``view_corr_atoms_mask``, ``view_corr_perp_mask``, ``view_corr_atoms_none``, ``view_corr_perp_none``: the
        mean over the ``d`` atoms, and over ``n_dirs`` random unit directions of ``M⊥``, with and without the mask.
    """
    _check_int("n", n, 2)
    _check_int("n_dirs", n_dirs, 1)
    r_dirs, r_data, r_mask = rng.spawn(3)
    M = model.M
    atoms = M.T
    perp = random_perp_directions(M, n_dirs, r_dirs)
    x = model.sample(n, r_data).x
    x1, x2 = random_mask(x, r_mask, keep_prob)
    y1, y2 = no_augmentation(x)
    return {
        "view_corr_atoms_mask": view_correlation(atoms, x1, x2),
        "view_corr_perp_mask": view_correlation(perp, x1, x2),
        "view_corr_atoms_none": view_correlation(atoms, y1, y2),
        "view_corr_perp_none": view_correlation(perp, y1, y2),
    }


def _u_statistic(total_q: Any, group_q: Any, k: int) -> Any:
    """Unbiased ``q(E G)`` for a quadratic ``q`` from ``k`` independent group means ``G_g``.

    ``(q(Σ_g G_g) − Σ_g q(G_g)) / (k(k−1))``: the cross terms only, each an unbiased ``q(E G)``.
    """
    return (total_q - group_q) / (k * (k - 1))


def expected_gradient_split(W0: Any, model: Any, config: Any, rng: Random, *, augment: str, n: int = 4096,
                            groups: int = GRAD_GROUPS, control_variate: bool = True) -> dict[str, float]:
    """Section 4: how the expected loss gradient at the initialisation splits between ``span(M)`` and ``M⊥``.

    ``G = E[∇_W L]`` at ``(W0, b = 0)`` is estimated with :func:`fdcheck.loss.contrastive_loss_and_grad` on
    ``ceil(n / batch)`` independent batches of ``config.batch`` positives and ``config.negatives`` fresh negatives
    (the training objective's own batch structure, so each batch gradient is an unbiased estimate of ``G``), with
    the views of ``augment`` (``mask``: RandomMask, ``x⁺ = Dx/q``, ``x⁺⁺ = (I−D)x/(1−q)``; ``none``: ``x`` twice).

    Variance reduction, still unbiased. The batch gradient's noise is dominated by the positive-pair term
    ``−(1/n) Σ_s W0 x⁺⁺_s x⁺_sᵀ`` (at ``b = 0`` the network is linear), whose dense part is huge
    (``||ξ||² = d1 σ²``) and, with the mask, has mean 0. So each batch gradient gets the control variate
    ``β ((1/n) Σ_s W0 (x⁺⁺_s x⁺_sᵀ − c⁺⁺_s c⁺_sᵀ) − W0 E[ξ⁺⁺ ξ⁺ᵀ])``, where ``c`` are the same views of the clean
    signal ``Mz`` (same mask) and ``E[ξ⁺⁺ ξ⁺ᵀ]`` is 0 with the mask (disjoint supports) and ``σ² I`` without; the
    variate has mean exactly 0 for any fixed ``β``, and ``β = 1 − 1/(K+1)`` (the positive's softmax weight at
    equal similarities, ``K`` negatives) cancels most of the noise. At ``d = 64`` this cuts the standard error of
    the masked share from about 0.1 to about 0.001. ``control_variate=False`` gives the plain batch mean.

    The share ``||P⊥ G||² / ||G||²`` of a noisy estimate is biased towards the noise's share (mostly ``M⊥``), so each
    squared norm is estimated without bias by a U-statistic over ``groups`` independent group means:
    ``(||Σ_g Ḡ_g||² − Σ_g ||Ḡ_g||²) / (k(k−1))``. The share is their ratio, clipped to ``[0, 1]`` (clipping acts
    only when the true share is within noise of 0 or 1), with a leave-one-group-out jackknife standard error.
    Should the total be unresolved (U-statistic ≤ 0), the plug-in ``||P⊥ Ḡ||² / ||Ḡ||²`` is returned instead.

    Growth rates per unit ``eta``: under ``W ← W − η G`` the part ``P W`` of the weights grows to first order as
    ``||P W||² (1 + 2 η r)`` with ``r = <−G, P W0> / ||P W0||²`` (linear in ``G``, so the mean is unbiased).
    Theory (``shared/REGIMES.md``; at ``b = 0``, ``E[x⁺⁺ x⁺ᵀ]`` is ``p MMᵀ + σ² I`` without augmentation and its
    off-diagonal part with RandomMask): ``r_span ≈ p`` and ``r_perp ≈ −p d/d1`` with the mask, ``r_span ≈ p + σ²``
    and ``r_perp ≈ σ²`` without, each times about ``1 − E[softmax weight of the positive]``. The share then follows:
    with the mask about ``(d/d1) / (1 + d/d1)`` (about 0.06–0.08 along ``d1 = 16d``), without about 0.84 at d = 64.

    Args:
        W0: ``(m, d1)`` initial weights (the biases are 0 at initialisation, Section 2.2).
        model: the data model; config: batch, negatives, tau, keep_prob, include_positive.
        rng: random stream; augment: ``mask`` or ``none``; n: positives in all (rounded up to whole batches per
        group); groups: independent groups for the U-statistics; control_variate: see above.

    Returns:
        ``share`` (``||P⊥ G||²/||G||²``), ``share_se``, ``growth_span`` and ``growth_perp`` (the rates ``r``).
    """
    if augment not in ("mask", "none"):
        raise ValueError(f"augment={augment!r} is not allowed; allowed: mask, none")
    _check_int("n", n, 2)
    _check_int("groups", groups, 2)
    xp = array_namespace(W0)
    M = model.M
    m = int(W0.shape[0])
    b0 = xp.zeros((m,), dtype=W0.dtype)  # Section 2.2: b_i = 0 at initialisation
    per_group = max(1, math.ceil(n / (config.batch * groups)))
    q = config.keep_prob
    # Control variate (see the docstring): beta times the positive-pair term's dense part, whose mean is known.
    beta = (1.0 - 1.0 / (config.negatives + 1)) if config.include_positive else 1.0
    beta = beta if control_variate else 0.0
    dense_mean = 0.0 if augment == "mask" else model.noise_variance  # E[ξ⁺⁺ ξ⁺ᵀ] = dense_mean · I
    means = []
    for g_rng in rng.spawn(groups):
        acc = xp.zeros(W0.shape, dtype=xp.float64)
        for _ in range(per_group):
            s = model.sample(config.batch, g_rng)
            x_neg = model.sample(config.negatives, g_rng).x
            mz = s.x - s.xi
            if augment == "mask":
                D = random_mask_matrix(tuple(s.x.shape), g_rng, q, _dtype_name(s.x))
                x1, x2 = D * s.x * (1.0 / q), (s.x - D * s.x) * (1.0 / (1.0 - q))
                c1, c2 = D * mz * (1.0 / q), (mz - D * mz) * (1.0 / (1.0 - q))
            else:
                x1 = x2 = s.x
                c1 = c2 = mz
            _, G = contrastive_loss_and_grad(W0, b0, x1, x2, x_neg, config.tau, config.include_positive)
            G = xp.astype(G, xp.float64)
            if beta:
                cv = ((x2 @ W0.T).T @ x1 - (c2 @ W0.T).T @ c1) * (1.0 / config.batch)
                G = G + beta * (xp.astype(cv, xp.float64) - dense_mean * xp.astype(W0, xp.float64))
            acc = acc + G
        means.append(acc / per_group)
    M64 = xp.astype(M, xp.float64)
    W64 = xp.astype(W0, xp.float64)
    k = groups
    total = means[0]
    for gm in means[1:]:
        total = total + gm
    total_m = total @ M64

    def sq(a: Any, am: Any) -> tuple[float, float]:  # (||a||², ||P⊥ a||²) using M's orthonormal columns
        full = _f(xp.sum(a * a))
        return full, full - _f(xp.sum(am * am))

    tot_full, tot_perp = sq(total, total_m)
    g_full, g_perp, dot_full, dot_perp = [], [], [], []
    for gm in means:
        gm_m = gm @ M64
        f_, p_ = sq(gm, gm_m)
        g_full.append(f_)
        g_perp.append(p_)
        df = _f(xp.sum(gm * total))
        dot_full.append(df)
        dot_perp.append(df - _f(xp.sum(gm_m * total_m)))
    u_full = _u_statistic(tot_full, sum(g_full), k)
    u_perp = _u_statistic(tot_perp, sum(g_perp), k)
    if u_full > 0:
        share = min(max(u_perp / u_full, 0.0), 1.0)
        loo = []
        if k > 2:
            for i in range(k):
                lf = _u_statistic(tot_full - 2 * dot_full[i] + g_full[i], sum(g_full) - g_full[i], k - 1)
                lp = _u_statistic(tot_perp - 2 * dot_perp[i] + g_perp[i], sum(g_perp) - g_perp[i], k - 1)
                loo.append(min(max(lp / lf, 0.0), 1.0) if lf > 0 else share)
            mean_loo = sum(loo) / k
            share_se = math.sqrt((k - 1) / k * sum((v - mean_loo) ** 2 for v in loo))
        else:
            share_se = 0.0
    else:
        share = tot_perp / tot_full if tot_full > 0 else 0.0
        share_se = 0.0
    G = total / k
    W_m = W64 @ M64
    span_sq = _f(xp.sum(W_m * W_m))
    full_sq = _f(xp.sum(W64 * W64))
    g_dot_span = _f(xp.sum((G @ M64) * W_m))
    g_dot_full = _f(xp.sum(G * W64))
    growth_span = -g_dot_span / span_sq if span_sq > 0 else 0.0
    perp_sq = full_sq - span_sq
    growth_perp = -(g_dot_full - g_dot_span) / perp_sq if perp_sq > 0 else 0.0
    return {"share": share, "share_se": share_se, "growth_span": growth_span, "growth_perp": growth_perp}


def threshold_decode(u: Any, b: float = THRESHOLD_B) -> Any:
    """Section 4's threshold operator ``T_b(u) = u · 1{|u| ≥ b}``, elementwise."""
    xp = array_namespace(u)
    return xp.where(xp.abs(u) >= b, u, xp.zeros_like(u))


def threshold_decoding(model: Any, rng: Random, *, n: int = 4096, b: float = THRESHOLD_B, keep_prob: float = 0.5
                       ) -> dict[str, float]:
    """Section 4: ``T_b(<M_j, 2Dx>) ≈ T_b(<M_j, 2(I−D)x>) ≈ z_j``, the sparse signal survives both masked views.

    ``<M_j, 2Dx> = z_j · 2 Σ_k D_kk M_kj² + (cross terms of other atoms, O(1/√d1)) + (noise, ≈ N(0, 2σ²))`` and
    ``2 Σ_k D_kk M_kj² ≈ 1`` for a delocalised atom, so with ``b = 1/2`` (:data:`THRESHOLD_B`) each view decodes
    ``z_j`` unless the noise exceeds ``1/2``: the accuracy is about ``Φ(1/(2√(2σ²)))²``, rising to 1 with ``d``.

    Returns:
        ``threshold_decoding_acc``: fraction of ``(sample, j)`` with ``z_j ≠ 0`` where ``T_b`` of both views has
        the sign of ``z_j`` (0.0 if no ``z_j ≠ 0`` was drawn);
        ``threshold_decoding_false_rate``: fraction of ``(sample, j)`` with ``z_j = 0`` where ``T_b(<M_j, 2Dx>)``
        (first view) is not 0 (0.0 if every ``z_j ≠ 0``);
        ``threshold_b``: the ``b`` used.
    """
    _check_int("n", n, 1)
    if not (isinstance(b, (int, float)) and b > 0 and math.isfinite(b)):
        raise ValueError(f"b={b!r} is out of range; allowed: (0, inf)")
    xp = array_namespace(model.M)
    r_data, r_mask = rng.spawn(2)
    s = model.sample(n, r_data)
    x1, x2 = random_mask(s.x, r_mask, keep_prob)
    t1 = xp.sign(threshold_decode(x1 @ model.M, b))
    t2 = xp.sign(threshold_decode(x2 @ model.M, b))
    z = s.z
    active = _as_float(xp, z != 0, z)
    ok = _as_float(xp, (t1 == z) & (t2 == z), z) * active
    n_active = _f(xp.sum(active))
    n_zero = float(z.shape[0] * z.shape[1]) - n_active
    false = _f(xp.sum(_as_float(xp, t1 != 0, z) * (1.0 - active)))
    return {
        "threshold_decoding_acc": _f(xp.sum(ok)) / n_active if n_active else 0.0,
        "threshold_decoding_false_rate": false / n_zero if n_zero else 0.0,
        "threshold_b": float(b),
    }


# --------------------------------------------------------------------- Theorems 3.2 / 3.4 on the trained network
def feature_metrics(W: Any, b: Any, x: Any, z: Any, xi: Any, M: Any) -> dict[str, float]:
    """Theorem 3.2 / 3.4 on test samples: where the representation of ``x`` points, and how sparse it is.

    Args:
        W, b: the network (``(m, d1)``, ``(m,)``).
        x, z, xi: ``n`` test samples ``x = Mz + ξ`` (rows).
        M: the dictionary.

    Returns:
        ``cos_fx_fxi``: mean ``cos(f(x), f(ξ))`` (Theorem 3.2, dense dominance: near 1 without augmentation);
        ``cos_fx_fMz``: mean ``cos(f(x), f(Mz))`` (Theorem 3.4: near 1 with RandomMask). In both a sample where
        either representation is 0 counts 0.
        ``rel_dist_fx_fMz``: mean ``||f(x) − f(Mz)|| / ||f(Mz)||`` over samples with ``f(Mz) ≠ 0`` (Theorem 3.4's
        consequence ``||f(x) − f(Mz)|| ≤ Õ(1/√d)`` while ``||f(Mz)|| ≥ Ω(1)``); :data:`UNDEFINED_REL_DIST` if none.
        ``frac_fMz_nonzero``: fraction of samples with ``z ≠ 0`` whose ``f(Mz) ≠ 0`` (Theorem 3.4: ``||f(Mz)|| ≥
        Ω(1)`` w.p. ``1 − 1/polylog d``); 0.0 if no sample has ``z ≠ 0``.
        ``activation_density``: mean over samples and neurons of ``1{f_i(x) ≠ 0}`` (Figure 4: sparser with
        augmentation).
        ``dead_neuron_frac``: fraction of neurons that are 0 on every test sample.
    """
    xp = array_namespace(x)
    mz = z @ M.T
    fx = features(W, b, x)
    fxi = features(W, b, xi)
    fmz = features(W, b, mz)
    nz_mz = _row_sq_norms(xp, fmz) > 0
    w_mz = _as_float(xp, nz_mz, fx)
    n_nz = _f(xp.sum(w_mz))
    dist = xp.sqrt(_row_sq_norms(xp, fx - fmz))
    rel = _safe_div(xp, dist, xp.sqrt(_row_sq_norms(xp, fmz)))
    rel_dist = _f(xp.sum(rel * w_mz)) / n_nz if n_nz else UNDEFINED_REL_DIST
    z_nz = _as_float(xp, xp.sum(xp.abs(z), axis=1) > 0, fx)
    n_z = _f(xp.sum(z_nz))
    active = _as_float(xp, fx != 0, fx)
    return {
        "cos_fx_fxi": _f(xp.mean(row_cosines(fx, fxi))),
        "cos_fx_fMz": _f(xp.mean(row_cosines(fx, fmz))),
        "rel_dist_fx_fMz": rel_dist,
        "frac_fMz_nonzero": _f(xp.sum(z_nz * w_mz)) / n_z if n_z else 0.0,
        "activation_density": _f(xp.mean(active)),
        "dead_neuron_frac": _f(xp.mean(_as_float(xp, xp.max(active, axis=0) == 0, fx))),
    }


def neuron_structure(W: Any, M: Any) -> dict[str, float]:
    """Theorem 3.4's description of each neuron: ``w_i = Σ_{j∈N_i} α_ij M_j + (small atoms) + (small M⊥ part)``.

    With ``α = W M`` (coefficients on the atoms) and ``s_ij = α_ij² / ||w_i||²``; a zero neuron counts 0 in every
    mean (it lies on no atom).

    Returns:
        ``span_energy``: mean over neurons of ``||P_M w_i||² / ||w_i||²`` (Theorem 3.4: the ``M⊥`` coefficients are
        ``o(1/√d)||w_i||``, so near 1; a random direction gives ``d/d1``).
        ``top_atom_share``: mean over neurons of ``max_j s_ij``.
        ``top3_atom_share``: mean over neurons of the sum of the :data:`TOP_K_ATOMS` largest ``s_ij``.
        ``n_atoms_mean``: mean ``|N_i|`` with ``N_i = {j : s_ij ≥ ATOM_SHARE_IN_N}`` (``|N_i| = O(1)``).
        ``atom_coverage``: fraction of atoms ``j`` that are the top atom, with ``s_ij ≥ COVERAGE_SHARE``, of at
        least one neuron (Theorem 3.4: every atom is ``N_i = {j}`` for ``Ω(1)`` neurons).
        ``max_atom_neuron_frac``: ``max_j #{i : j ∈ N_i} / m`` (Theorem 3.4: at most ``o(m/d)`` neurons per atom).
    """
    xp = array_namespace(W)
    m, d = int(W.shape[0]), int(M.shape[1])
    alpha = decompose(W, M).alpha
    norm2 = _row_sq_norms(xp, W)
    alive = norm2 > 0
    share = _safe_div(xp, alpha * alpha, norm2[:, None])  # (m, d), rows of a zero neuron are 0
    span = xp.sum(share, axis=1)
    top = xp.max(share, axis=1)
    k = min(TOP_K_ATOMS, d)
    top_k = xp.sum(xp.sort(share, axis=1, descending=True)[:, :k], axis=1)
    in_n = (share >= ATOM_SHARE_IN_N) & alive[:, None]
    in_n_f = _as_float(xp, in_n, share)
    is_top = (share == top[:, None]) & (top >= COVERAGE_SHARE)[:, None] & alive[:, None]
    covered = xp.any(is_top, axis=0)
    return {
        "span_energy": _f(xp.mean(xp.clip(span, 0.0, 1.0))),
        "top_atom_share": _f(xp.mean(top)),
        "top3_atom_share": _f(xp.mean(xp.clip(top_k, 0.0, 1.0))),
        "n_atoms_mean": _f(xp.mean(xp.sum(in_n_f, axis=1))),
        "atom_coverage": _f(xp.mean(_as_float(xp, covered, share))),
        "max_atom_neuron_frac": _f(xp.max(xp.sum(in_n_f, axis=0))) / m,
    }


def weight_movement(W: Any, W0: Any, M: Any) -> dict[str, float]:
    """Section 1.1 (Message 1): how far training moved the weights, and in which subspace.

    Returns:
        ``weight_move_rel``: ``||W − W0||_F / ||W0||_F`` (0.0 if ``W0 = 0``);
        ``weight_move_perp_share``: ``||P⊥(W − W0)||² / ||W − W0||²``, the share of the movement in ``M⊥`` (without
        augmentation the network learns the dense noise, so most of it; 0.0 if ``W = W0``).
    """
    xp = array_namespace(W)
    delta = xp.astype(W, xp.float64) - xp.astype(W0, xp.float64)
    move2 = _f(xp.sum(delta * delta))
    w0 = math.sqrt(_f(xp.sum(xp.astype(W0, xp.float64) ** 2)))
    dm = delta @ xp.astype(M, xp.float64)
    perp2 = max(move2 - _f(xp.sum(dm * dm)), 0.0)
    return {
        "weight_move_rel": math.sqrt(move2) / w0 if w0 > 0 else 0.0,
        "weight_move_perp_share": perp2 / move2 if move2 > 0 else 0.0,
    }


def cluster_accuracy(W: Any, b: Any, model: Any, rng: Random, *, n: int = 8192) -> dict[str, float]:
    """Figure 3 in numbers: do representations cluster by their active atom?

    Draws ``n`` fresh samples and keeps those with exactly one active atom; the class of a sample is the atom and
    its sign, ``(j, z_j)`` (``2d`` classes: ``f`` is odd, so ``+M_j`` and ``−M_j`` sit on opposite sides and one
    class per atom would have a centroid near 0). The first half of the kept samples is the labelled reference,
    the second half is classified; chance is ``1/(2d)``.

    Returns:
        ``centroid_acc``: accuracy of the nearest class centroid of ``f(x)`` (Euclidean); a test sample whose class
        has no reference sample counts as wrong. This is the linear decodability of the atom: a linear
        representation (no augmentation, ``b = 0``) scores high on it even when its noise swamps the signal,
        because only the noise's projection on centroid differences matters.
        ``knn_acc``: accuracy of the nearest reference sample (1-nearest-neighbour, Euclidean). This is what a
        t-SNE picture shows as clusters: a sample's neighbours share its atom only when the within-class spread
        (the representation of the noise) is small against the distances between classes.
        Both are 0.0 if fewer than two samples have exactly one active atom.
    """
    _check_int("n", n, 2)
    xp = array_namespace(W)
    s = model.sample(n, rng)
    one = xp.nonzero(xp.sum(xp.abs(s.z), axis=1) == 1)[0]
    k = int(one.shape[0])
    if k < 2:
        return {"centroid_acc": 0.0, "knn_acc": 0.0}
    F = features(W, b, xp.take(s.x, one, axis=0))
    z = xp.take(s.z, one, axis=0)
    # Class (j, sign) of the single active atom: columns 0..d-1 for z_j = -1, d..2d-1 for z_j = +1.
    onehot = xp.concat([xp.astype(z < 0, F.dtype), xp.astype(z > 0, F.dtype)], axis=1)
    label = xp.argmax(onehot, axis=1)
    half = k // 2
    F_ref, F_te = F[:half, :], F[half:, :]
    lab_ref, lab_te = label[:half], label[half:]
    counts = xp.sum(onehot[:half, :], axis=0)  # (2d,)
    cent = _safe_div(xp, onehot[:half, :].T @ F_ref, counts[:, None])
    te_sq = _row_sq_norms(xp, F_te)[:, None]
    dist = te_sq - 2 * (F_te @ cent.T) + _row_sq_norms(xp, cent)[None, :]
    dist = xp.where((counts > 0)[None, :], dist, xp.full(dist.shape, math.inf, dtype=dist.dtype))
    centroid = _f(xp.mean(_as_float(xp, xp.argmin(dist, axis=1) == lab_te, F)))
    dist_nn = te_sq - 2 * (F_te @ F_ref.T) + _row_sq_norms(xp, F_ref)[None, :]
    nearest = xp.take(lab_ref, xp.argmin(dist_nn, axis=1))
    knn = _f(xp.mean(_as_float(xp, nearest == lab_te, F)))
    return {"centroid_acc": centroid, "knn_acc": knn}


# ------------------------------------------------------------------------------- peer metrics (PEER_METRICS.md)
def greedy_matching(C: Any) -> list[tuple[int, int]]:
    """Greedy one-to-one matching on the signed matrix ``C`` (``shared/PEER_METRICS.md``, "matching").

    Repeatedly takes the largest remaining entry of ``C`` (``(m, d)``), pairs its row (neuron) and column (atom) and
    removes both, until ``min(m, d)`` pairs exist. Ties go to the entry that comes first in row-major order.

    Returns:
        the pairs ``(i_k, j_k)`` in the order they were taken.
    """
    c = np.asarray(to_numpy(C), dtype=np.float64)
    m, d = c.shape
    order = np.argsort(-c, axis=None, kind="stable")
    used_i = np.zeros(m, dtype=bool)
    used_j = np.zeros(d, dtype=bool)
    pairs: list[tuple[int, int]] = []
    target = min(m, d)
    for flat in order:
        i, j = divmod(int(flat), d)
        if used_i[i] or used_j[j]:
            continue
        used_i[i] = used_j[j] = True
        pairs.append((i, j))
        if len(pairs) == target:
            break
    return pairs


def peer_metrics(W: Any, b: Any, M: Any, x: Any, z: Any) -> dict[str, float]:
    """The closest peer's alignment and support-recovery numbers, defined exactly as in ``shared/PEER_METRICS.md``.

    ``C_ij = cos(w_i, M_j)`` (0 for a zero neuron). With ``ẑ = sign(f(x))`` and the greedy matched pairs
    ``(i_k, j_k)`` of :func:`greedy_matching`:

    Returns:
        ``peer_bestcos_max``, ``peer_bestcos_median``, ``peer_bestcos_min``: max, median, min over atoms of
        ``max_i |C_ij|``;
        ``peer_support``: mean over samples of ``Σ_k |z_{j_k}| |ẑ_{i_k}| / Σ_j |z_j|`` (a sample with ``z = 0``
        contributes 0 and still counts);
        ``peer_false_support``: mean over samples of ``#{k : z_{j_k} = 0, ẑ_{i_k} ≠ 0} / max(#{i : ẑ_i ≠ 0}, 1)``;
        ``peer_excess_density``: mean over samples of ``mean_i |ẑ_i| − mean_j |z_j|``.
    """
    xp = array_namespace(W)
    norms = xp.sqrt(_row_sq_norms(xp, W))
    C = _safe_div(xp, W @ M, norms[:, None])  # M's columns are unit vectors
    best = xp.max(xp.abs(C), axis=0)
    pairs = greedy_matching(C)
    rows = xp.asarray([i for i, _ in pairs], dtype=xp.int64)
    cols = xp.asarray([j for _, j in pairs], dtype=xp.int64)
    zh = xp.abs(xp.sign(features(W, b, x)))  # |ẑ|, (n, m)
    za = xp.abs(z)  # (n, d)
    zh_k = xp.take(zh, rows, axis=1)
    za_k = xp.take(za, cols, axis=1)
    n_atoms = xp.sum(za, axis=1)
    support = _safe_div(xp, xp.sum(za_k * zh_k, axis=1), n_atoms)
    false = xp.sum(_as_float(xp, za_k == 0, zh_k) * zh_k, axis=1) / xp.maximum(xp.sum(zh, axis=1),
                                                                              xp.ones_like(n_atoms))
    excess = xp.mean(zh, axis=1) - xp.mean(za, axis=1)
    return {
        "peer_bestcos_max": _f(xp.max(best)),
        "peer_bestcos_median": _median(xp, best),
        "peer_bestcos_min": _f(xp.min(best)),
        "peer_support": _f(xp.mean(support)),
        "peer_false_support": _f(xp.mean(false)),
        "peer_excess_density": _f(xp.mean(excess)),
    }


# ------------------------------------------------------------------------------------------------- measure_all
def _check_inputs(W: Any, b: Any, W0: Any, model: Any, config: Any, head: Any) -> None:
    xp = array_namespace(W)
    d1, d = model.d1, model.d
    if config.d != d or config.d1 != d1:
        raise ValueError(f"config (d={config.d}, d1={config.d1}) does not match the model's dictionary "
                         f"(d={d}, d1={d1})")
    if len(W.shape) != 2 or int(W.shape[1]) != d1:
        raise ValueError(f"W has shape {tuple(W.shape)}; expected (m, d1) with d1 = {d1}")
    m = int(W.shape[0])
    if tuple(b.shape) != (m,):
        raise ValueError(f"b has shape {tuple(b.shape)}; expected (m,) = ({m},)")
    if tuple(W0.shape) != tuple(W.shape):
        raise ValueError(f"W0 has shape {tuple(W0.shape)}; expected the shape of W, {tuple(W.shape)}")
    for name, a in (("W", W), ("b", b), ("W0", W0)):
        if not bool(xp.all(xp.isfinite(a))):
            raise ValueError(f"{name} has non-finite entries (NaN or inf); measure_all needs finite weights")
    if head is not None and tuple(head.shape) != (d, m):
        raise ValueError(f"head has shape {tuple(head.shape)}; expected (d, m) = ({d}, {m})")


def _sizes(sizes: Mapping[str, int] | None) -> dict[str, int]:
    out = dict(DEFAULT_SIZES)
    for key, value in (sizes or {}).items():
        if key not in DEFAULT_SIZES:
            raise ValueError(f"sizes has unknown key {key!r}; allowed: {', '.join(DEFAULT_SIZES)}")
        _check_int(f"sizes[{key!r}]", value, 2)
        out[key] = value
    return out


def measure_all(W: Any, b: Any, W0: Any, model: Any, config: Any, rng: Random, *, head: Any = None,
                sizes: Mapping[str, int] | None = None) -> dict[str, float]:
    """Every measured quantity the claims registry reads, for one trained network, as a flat dict of finite floats.

    Section 2.1 and Section 4 quantities do not depend on the trained ``(W, b)``: they are measured on the data
    model and at the initialisation ``W0`` (both augmentations, whatever ``config.augment`` is). The Theorem 3.2 /
    3.4 quantities and the probes use ``(W, b)`` on fresh test samples. All randomness comes from ``rng`` (the run's
    ``eval_rng`` under the seeds contract), split into one child stream per measurement so that each is
    reproducible on its own.

    Keys beyond the contract: ``knn_acc`` (1-nearest-neighbour accuracy of the active atom, Figure 3's clusters;
    see :func:`cluster_accuracy`), ``grad_perp_share_mask_se`` and ``grad_perp_share_none_se`` (jackknife standard
    errors of the shares), ``threshold_decoding_false_rate`` and ``threshold_b`` (see :func:`threshold_decoding`),
    ``probe_cls_n_train``, ``probe_cls_n_test`` and ``probe_zero_label_frac`` (see
    :func:`fdcheck.probes.probe_suite`), and, when ``head`` is given, ``head_z_nmse``: the supervised head's
    ``mean ||f(x) headᵀ − z||² / mean ||z||²`` on the test samples (1.0 if every test ``z`` is 0).

    Args:
        W: ``(m, d1)`` trained weights.
        b: ``(m,)`` trained biases.
        W0: ``(m, d1)`` the initial weights of the same run.
        model: the run's :class:`fdcheck.data.SparseCodingModel`.
        config: the run's :class:`fdcheck.config.ModelConfig` (batch, negatives, tau, keep_prob, include_positive).
        rng: the random stream for measurement.
        head: the supervised linear head ``(d, m)`` (``f(x) ↦ f(x) headᵀ`` predicts ``z``), or None.
        sizes: overrides of :data:`DEFAULT_SIZES` (smaller for quick tests).

    Returns:
        ``{name: float}``.
    """
    from .probes import probe_suite  # probes imports nothing from here; the import is local to keep layers clear

    _check_inputs(W, b, W0, model, config, head)
    n = _sizes(sizes)
    xp = array_namespace(W)
    M = model.M
    r_data, r_view, r_grad_mask, r_grad_none, r_decode, r_test, r_centroid, r_probe = rng.spawn(8)
    out: dict[str, float] = {}
    out.update(data_facts(model, r_data, n=n["n_data"], n_cos=n["n_cos"]))
    out.update(view_correlations(model, r_view, n=n["n_view"], n_dirs=n["n_view_dirs"], keep_prob=config.keep_prob))
    for aug, r in (("mask", r_grad_mask), ("none", r_grad_none)):
        g = expected_gradient_split(W0, model, config, r, augment=aug, n=n["n_grad"])
        out[f"grad_perp_share_{aug}"] = g["share"]
        out[f"grad_perp_share_{aug}_se"] = g["share_se"]
        out[f"grad_growth_span_{aug}"] = g["growth_span"]
        out[f"grad_growth_perp_{aug}"] = g["growth_perp"]
    out.update(threshold_decoding(model, r_decode, n=n["n_decode"], keep_prob=config.keep_prob))
    test = model.sample(n["n_test"], r_test)
    out.update(feature_metrics(W, b, test.x, test.z, test.xi, M))
    out.update(neuron_structure(W, M))
    out.update(weight_movement(W, W0, M))
    out.update(cluster_accuracy(W, b, model, r_centroid, n=n["n_centroid"]))
    out.update(peer_metrics(W, b, M, test.x, test.z))
    if head is not None:
        pred = features(W, b, test.x) @ xp.astype(head, W.dtype).T
        zz = _f(xp.sum(test.z * test.z))
        out["head_z_nmse"] = _f(xp.sum((pred - test.z) ** 2)) / zz if zz else 1.0
    out.update(probe_suite(lambda x: features(W, b, x), model, r_probe, n_test=n["n_probe_test"]))
    for key, value in out.items():
        value = float(value)
        if not math.isfinite(value):
            raise RuntimeError(f"measure_all computed {key} = {value}; a measured quantity must be finite "
                               "(this is a bug in fdcheck.metrics, please report it with the configuration)")
        out[key] = value
    return out
