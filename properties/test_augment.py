"""Definition 2.3 (RandomMask) and the "no augmentation" baseline, as properties.

RandomMask draws ``D = diag(Bernoulli(q))`` per sample and returns ``x⁺ = D x / q``, ``x⁺⁺ = (I − D) x / (1 − q)``;
the paper's ``q = 1/2`` gives ``2Dx`` and ``2(I − D)x``. Statistical properties use two-sided tests at
``ALPHA = 1e-6`` per example (see ``test_data_model.py`` for why) on at least ``MIN_ENTRIES`` = 20 000 draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats
from strategies import DataCase, data_cases, dtypes, reproduce, seeds

from fdcheck.augment import AUGMENTATIONS, no_augmentation, random_mask
from fdcheck.backend import Random, get_namespace, to_numpy

ALPHA = 1e-6
MIN_ENTRIES = 20_000


@dataclass(frozen=True)
class MaskCase:
    """A batch ``x`` (``N(0, 1)`` entries, or all ones) and a RandomMask draw, both from ``seed``."""

    n: int
    d1: int
    keep_prob: float
    seed: int
    dtype: str

    def views(self, xp_name: str = "numpy") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        xp = get_namespace(xp_name)
        data_rng, mask_rng = Random(self.seed, xp).spawn(2)
        x = data_rng.normal((self.n, self.d1), dtype=self.dtype)
        x_plus, x_plusplus = random_mask(x, mask_rng, self.keep_prob)
        return to_numpy(x), to_numpy(x_plus), to_numpy(x_plusplus)

    def repro(self) -> str:
        return f"from test_augment import MaskCase\ncase = {self!r}\nx, x_plus, x_plusplus = case.views()"


keep_probs = st.one_of(st.just(0.5), st.floats(0.05, 0.95))


@st.composite
def mask_cases(draw: st.DrawFn, min_entries: int = 0, keep_prob: float | None = None) -> MaskCase:
    d1 = draw(st.integers(1, 128), label="d1")
    n = max(draw(st.integers(1, 32), label="n"), math.ceil(min_entries / d1))
    q = keep_prob if keep_prob is not None else draw(keep_probs, label="keep_prob")
    return MaskCase(n=n, d1=d1, keep_prob=q, seed=draw(seeds, label="seed"), dtype=draw(dtypes, label="dtype"))


@given(case=mask_cases(keep_prob=0.5))
def test_views_add_up_to_twice_x(case: MaskCase) -> None:
    """Definition 2.3 at ``q = 1/2``: ``x⁺ + x⁺⁺ = 2Dx + 2(I − D)x = 2x``, exactly (each coordinate is
    ``2x`` in one view and ``0`` in the other)."""
    reproduce(case.repro())
    x, a, b = case.views()
    assert a.shape == b.shape == x.shape and a.dtype == b.dtype == x.dtype
    np.testing.assert_array_equal(a + b, 2 * x)


@given(case=mask_cases())
def test_views_are_complementary(case: MaskCase) -> None:
    """``x⁺ ⊙ x⁺⁺ = 0`` exactly, every non-zero coordinate of ``x`` lands in exactly one view, scaled by
    ``1/q`` or ``1/(1 − q)``, and ``q x⁺ + (1 − q) x⁺⁺ = x`` (within two roundings)."""
    reproduce(case.repro())
    x, a, b = case.views()
    q = case.keep_prob
    np.testing.assert_array_equal(a * b, 0)
    nonzero = x != 0
    np.testing.assert_array_equal((a != 0)[nonzero] ^ (b != 0)[nonzero], True)
    eps = float(np.finfo(x.dtype).eps)
    x64 = x.astype(np.float64)
    kept = a != 0
    np.testing.assert_allclose(a[kept], x64[kept] / q, rtol=4 * eps)
    np.testing.assert_allclose(b[~kept & nonzero], x64[~kept & nonzero] / (1 - q), rtol=4 * eps)
    np.testing.assert_allclose(q * a.astype(np.float64) + (1 - q) * b.astype(np.float64), x64, rtol=4 * eps,
                               atol=0)


@given(case=data_cases(max_d=16, max_d1=256), mask_seed=seeds)
def test_dense_parts_of_the_two_views_are_orthogonal(case: DataCase, mask_seed: int) -> None:
    """Section 4 (feature decoupling): the noise parts of the views are orthogonal, ``<Dξ, (I − D)ξ> = 0``,
    exactly, while the mask acts linearly on ``x = Mz + ξ``: with the same mask, ``(Mz + ξ)⁺ = (Mz)⁺ + ξ⁺``."""
    reproduce(case.repro() + f"\nxi_plus, xi_plusplus = random_mask(sample.xi, Random({mask_seed}, xp))")
    xp = get_namespace("numpy")
    _, sample, _ = case.build(xp)
    xi_plus, xi_plusplus = random_mask(sample.xi, Random(mask_seed, xp))
    np.testing.assert_array_equal(np.sum(xi_plus * xi_plusplus, axis=1), 0)
    signal = sample.x - sample.xi
    x_plus, _ = random_mask(sample.x, Random(mask_seed, xp))
    s_plus, _ = random_mask(signal, Random(mask_seed, xp))
    eps = float(np.finfo(sample.x.dtype).eps)
    np.testing.assert_allclose(x_plus, s_plus + xi_plus, rtol=0, atol=8 * eps * (1 + float(np.max(np.abs(x_plus)))))


@given(case=mask_cases(min_entries=MIN_ENTRIES))
def test_keep_rate(case: MaskCase) -> None:
    """``D_ll ~ Bernoulli(q)``: the number of coordinates kept in ``x⁺`` over ``≥ 20 000`` (sample, coordinate)
    pairs is Binomial(N, q) (exact two-sided test at 1e-6). ``q = 1/2`` is the paper's."""
    reproduce(case.repro())
    x, a, _ = case.views()
    nonzero = x != 0
    kept = int(np.count_nonzero(a[nonzero]))
    total = int(np.count_nonzero(nonzero))
    p_value = stats.binomtest(kept, total, case.keep_prob).pvalue
    assert p_value >= ALPHA, f"kept {kept}/{total} coordinates at keep_prob {case.keep_prob}: p-value {p_value:.3g}"


@given(case=mask_cases(min_entries=MIN_ENTRIES))
def test_masks_of_different_samples_are_independent(case: MaskCase) -> None:
    """Each sample draws its own ``D``: the masks of consecutive samples agree on a coordinate with probability
    ``q² + (1 − q)²`` (exact binomial test at 1e-6), not always (a mask shared across the batch)."""
    reproduce(case.repro())
    x, a, _ = case.views()
    if case.n < 2:
        return
    kept = a != 0
    agree = int(np.count_nonzero(kept[1:] == kept[:-1]))
    total = kept[1:].size
    q = case.keep_prob
    p_value = stats.binomtest(agree, total, q**2 + (1 - q) ** 2).pvalue
    assert p_value >= ALPHA, f"consecutive masks agree on {agree}/{total} coordinates: p-value {p_value:.3g}"


@given(seed=seeds, d1=st.integers(1, 16), keep_prob=keep_probs, dtype=dtypes)
def test_views_are_unbiased(seed: int, d1: int, keep_prob: float, dtype: str) -> None:
    """``E[x⁺] = E[x⁺⁺] = x``: over ``R = 4000`` masks of one ``x``, the mean of each view's coordinate is within
    6 standard errors of ``x_l`` (``se = |x_l| √((1 − q)/(q R))`` for ``x⁺``, ``q ↔ 1 − q`` for ``x⁺⁺``; the
    normal approximation of a Binomial(4000, q ≥ 0.05) puts ``Pr(|z| > 6)`` near 1e-9 per coordinate)."""
    reproduce(f"x = Random({seed}, xp).normal((1, {d1}), dtype={dtype!r}); reps = np.tile(x, (4000, 1))\n"
              f"x_plus, x_plusplus = random_mask(reps, Random({seed + 1}, xp), {keep_prob!r})")
    xp = get_namespace("numpy")
    repeats = 4000
    x = Random(seed, xp).normal((1, d1), dtype=dtype)
    reps = np.tile(x, (repeats, 1))
    a, b = random_mask(reps, Random(seed + 1, xp), keep_prob)
    x64 = x[0].astype(np.float64)
    for view, q, name in ((a, keep_prob, "x+"), (b, 1 - keep_prob, "x++")):
        se = np.abs(x64) * math.sqrt((1 - q) / (q * repeats))
        z = (np.mean(view.astype(np.float64), axis=0) - x64) / se
        assert float(np.max(np.abs(z))) <= 6, f"E[{name}] ≠ x: z-scores {np.round(z, 2)}"


def test_no_augmentation_gives_x_twice() -> None:
    """Theorem 3.2's setting: both views are the sample itself."""
    xp = get_namespace("numpy")
    x = Random(0, xp).normal((3, 5))
    a, b = no_augmentation(x, Random(1, xp))
    assert a is x and b is x
    assert set(AUGMENTATIONS) >= {"mask", "none"}
    assert AUGMENTATIONS["mask"] is random_mask and AUGMENTATIONS["none"] is no_augmentation


@pytest.mark.parametrize("keep_prob", [0.0, 1.0, -0.5, 1.5, float("nan")])
def test_bad_keep_prob_is_rejected(keep_prob: float) -> None:
    xp = get_namespace("numpy")
    with pytest.raises(ValueError, match=r"keep_prob=.*allowed: \(0, 1\)"):
        random_mask(Random(0, xp).normal((2, 3)), Random(1, xp), keep_prob)
