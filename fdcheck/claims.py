"""The registry of the paper's claims, each a measured quantity with a threshold and an expected trend in ``d``.

A :class:`Claim` names the quantity (a key of :func:`fdcheck.metrics.measure_all`), the run it is measured on
(the *variant*: ``mask``, ``none`` = no augmentation with ``b = 0``, ``none_schedule`` = no augmentation with the
bias schedule, ``supervised``), a comparison with a threshold, and the direction in which the quantity should
move as ``d`` grows. Thresholds are chosen from the theory and the noise of the estimate, never from the runs
(each claim's ``rationale`` says why its threshold is right). A threshold is a number, a formula of the run's
configuration (:class:`Formula`), or another measured quantity of the same ``(d, seed)`` (:class:`Measured`), so
comparative claims ("the probe on the features beats the probe on the raw input") are claims like any other.

Verdict rule (:func:`evaluate_claim`):

1. At each ``d``, each seed's value is compared with its threshold. The claim *holds at d* when every seed
   satisfies it, *fails at d* when no seed does, and is *split at d* when the seeds disagree.
2. The trend is the least-squares slope of the value against ``log d`` over every ``(d, seed)`` point, with its
   standard error. It is *observed* increasing (decreasing) when the slope is more than two standard errors above
   (below) zero, *flat* otherwise, and *n/a* when there are fewer than three points or fewer points than
   parameters plus one (one seed at two ``d``, for example). A claim without an expected trend ignores it.
3. The claim **fails** when it fails at some ``d`` or its trend is observed opposite to the expected one; it
   **passes** when it holds at every ``d`` and the expected trend (if any) is observed; otherwise (split seeds, a flat
   or unmeasurable trend, a missing run) it is **inconclusive**.

Known deviations (``known_deviations.toml``, read by :func:`load_deviations`) mark claims that are expected to
fail at the affordable ``d`` for a reason the report explains. Their verdict is unchanged; ``expected_fail`` is set
and :func:`exit_code` accepts a ``fail`` for them, and rejects a ``pass`` (strict, like pytest's ``xfail_strict``),
so the file cannot go stale.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

__all__ = [
    "CLAIMS",
    "Claim",
    "Deviation",
    "Formula",
    "Measured",
    "claims_document",
    "evaluate_claim",
    "exit_code",
    "load_deviations",
    "variant_of",
]

COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda v, t: v >= t,
    "<=": lambda v, t: v <= t,
    ">": lambda v, t: v > t,
    "<": lambda v, t: v < t,
}
TRENDS = ("increasing", "decreasing", "none")
# A slope counts as a direction when it is two standard errors away from zero: about 95% two-sided with many
# points, less with few (about 88% at 4 degrees of freedom, the quick grid); the report gives slope and error.
TREND_T = 2.0


@dataclass(frozen=True)
class Formula:
    """A threshold computed from the run's configuration (for example ``½ p / (p + 2σ²)``)."""

    text: str
    fn: Callable[[Mapping[str, Any]], float]

    def __call__(self, config: Mapping[str, Any], runs: Mapping[str, Mapping[str, float]]) -> float:
        return float(self.fn(config))


@dataclass(frozen=True)
class Measured:
    """A threshold that is another measured quantity of the same ``(d, seed)``: ``scale · value + offset``."""

    quantity: str
    variant: str
    scale: float = 1.0
    offset: float = 0.0

    @property
    def text(self) -> str:
        scaled = self.quantity if self.scale == 1 else f"{self.scale:g} × {self.quantity}"
        shift = "" if self.offset == 0 else f" {'+' if self.offset > 0 else '−'} {abs(self.offset):g}"
        return f"{scaled} [{self.variant}]{shift}"

    def __call__(self, config: Mapping[str, Any], runs: Mapping[str, Mapping[str, float]]) -> float:
        value = runs.get(self.variant, {}).get(self.quantity)
        return math.nan if value is None else self.scale * float(value) + self.offset


@dataclass(frozen=True)
class Claim:
    """One claim of the paper as a measured quantity, a comparison with a threshold and an expected trend in ``d``.

    Attributes:
        id: stable identifier, ``<paper place>-<short name>``.
        paper_ref: where the paper states it.
        statement: the claim in one sentence.
        quantity: the key of :func:`fdcheck.metrics.measure_all` that measures it.
        variant: the run the quantity is read from (a key of ``fdcheck.sweep.VARIANTS``).
        comparison: ``>=``, ``<=``, ``>`` or ``<`` (value against threshold).
        threshold: a number, a :class:`Formula` of the configuration, or a :class:`Measured` quantity.
        trend: expected direction of the quantity as ``d`` grows: ``increasing``, ``decreasing`` or ``none``.
        rationale: why this threshold measures the claim (theory and the estimate's noise).
        reconstructed: what had to be reconstructed where the seed's text is garbled, if anything.
    """

    id: str
    paper_ref: str
    statement: str
    quantity: str
    variant: str
    comparison: str
    threshold: float | Formula | Measured
    trend: str
    rationale: str
    reconstructed: str | None = None

    def __post_init__(self) -> None:
        if self.comparison not in COMPARISONS:
            raise ValueError(f"claim {self.id}: comparison={self.comparison!r}; allowed: {', '.join(COMPARISONS)}")
        if self.trend not in TRENDS:
            raise ValueError(f"claim {self.id}: trend={self.trend!r}; allowed: {', '.join(TRENDS)}")

    @property
    def threshold_text(self) -> str:
        return f"{self.threshold:g}" if isinstance(self.threshold, (int, float)) else self.threshold.text

    @property
    def variants(self) -> set[str]:
        """Every run this claim reads."""
        extra = {self.threshold.variant} if isinstance(self.threshold, Measured) else set()
        return {self.variant} | extra

    def threshold_for(self, config: Mapping[str, Any], runs: Mapping[str, Mapping[str, float]]) -> float:
        if isinstance(self.threshold, (int, float)):
            return float(self.threshold)
        return self.threshold(config, runs)


def _p_over_p_plus_two_sigma2(c: Mapping[str, Any]) -> float:
    return c["p"] / (c["p"] + 2 * c["noise_variance"])


# The registry. Thresholds come from the theory and the sampling noise of each estimate; see each rationale.
CLAIMS: tuple[Claim, ...] = (
    # Section 2.1, "why sparse coding": the data model's own facts.
    Claim(
        id="sec2.1-sparse-signal-significant",
        paper_ref="Section 2.1",
        statement="When z_j ≠ 0, the sparse signal is significant: |<x, M_j>| ≥ Ω(1) with high probability.",
        quantity="data_active_proj_q01", variant="mask", comparison=">=", threshold=0.5, trend="increasing",
        rationale="<x, M_j> = z_j + <ξ, M_j> with <ξ, M_j> ~ N(0, σ²); 'Ω(1) with high probability' is read as the "
                  "1% quantile over active coordinates staying above 1/2, half the signal. It rises towards 1 as "
                  "σ² = √log d / d falls.",
    ),
    Claim(
        id="sec2.1-noise-small-on-atoms",
        paper_ref="Section 2.1",
        statement="The dense noise is small on every atom: |<ξ, M_j>| ≤ Õ(1/√d) with high probability.",
        quantity="data_noise_proj_max", variant="mask", comparison="<=",
        threshold=Measured("data_noise_proj_bound", "mask"), trend="decreasing",
        rationale="<ξ, M_j> ~ N(0, σ²); the maximum over n·d Gaussians stays below σ √(2 log(2nd/0.01)) with "
                  "probability at least 99%, and that bound is Õ(1/√d).",
    ),
    Claim(
        id="sec2.1-noise-individual",
        paper_ref="Section 2.1",
        statement="Dense noise is individual: for poly(d) independent ξ's, |cos(ξ_i, ξ_j)| ≤ Õ(1/poly(d)).",
        quantity="data_noise_cos_max", variant="mask", comparison="<=",
        threshold=Measured("data_noise_cos_bound", "mask"), trend="decreasing",
        rationale="cos(ξ_i, ξ_j) of independent Gaussians in d1 dimensions is about N(0, 1/d1); the bound "
                  "√(2 log(n²/0.01) / d1) holds for every pair with probability at least 99%.",
    ),
    Claim(
        id="sec2.1-dense-energy-dominates",
        paper_ref="Section 2.1, Definition 2.1",
        statement="The dense noise carries far more energy than the sparse signal: ||ξ||² ≫ ||Mz||².",
        quantity="data_energy_ratio", variant="mask", comparison=">=", threshold=10.0, trend="none",
        rationale="E||ξ||² / E||Mz||² = d1 σ² / (p d); '≫' is read as at least an order of magnitude. The ratio "
                  "grows only like √log d / log log d, which is flat at these d, so no trend is claimed.",
    ),
    # Section 4, feature decoupling, measured at initialisation with population samples.
    Claim(
        id="sec4-decoupling-dense-views",
        paper_ref="Section 4 (feature decoupling)",
        statement="RandomMask decorrelates the dense parts of the two views: <w, 2Dx> and <w, 2(I−D)x> are "
                  "uncorrelated for directions w in M⊥.",
        quantity="view_corr_perp_mask", variant="mask", comparison="<=", threshold=0.1, trend="none",
        rationale="<Dξ, (I−D)ξ> = 0 and the two masked noise vectors are independent, so the correlation is 0; "
                  "0.1 is about six standard errors of a correlation estimated on ~4000 samples.",
    ),
    Claim(
        id="sec4-decoupling-dense-views-none",
        paper_ref="Section 4 (feature decoupling)",
        statement="Without augmentation the dense parts of the two views are perfectly correlated.",
        quantity="view_corr_perp_none", variant="none", comparison=">=", threshold=0.99, trend="none",
        rationale="Without augmentation both views are x itself, so the correlation is exactly 1 up to rounding.",
    ),
    Claim(
        id="sec4-decoupling-sparse-kept",
        paper_ref="Section 4 (feature decoupling)",
        statement="RandomMask keeps the sparse signal in both views: along an atom M_j the views stay correlated.",
        quantity="view_corr_atoms_mask", variant="mask", comparison=">=",
        threshold=Formula("½ · p / (p + 2σ²)", lambda c: 0.5 * _p_over_p_plus_two_sigma2(c)), trend="none",
        rationale="Each view projects to about z_j plus independent noise of variance 2σ², so the correlation is "
                  "about p / (p + 2σ²); half of it leaves room for the cross terms of O(p d / d1) and the estimate's "
                  "noise while still separating it from the zero correlation of M⊥ directions.",
    ),
    Claim(
        id="sec4-gradient-leaves-perp",
        paper_ref="Section 4 (feature decoupling)",
        statement="RandomMask shrinks the share of the expected gradient that lies in M⊥ (the dense directions).",
        quantity="grad_perp_share_mask", variant="mask", comparison="<",
        threshold=Measured("grad_perp_share_none", "mask"), trend="none",
        rationale="Section 4: with independent dense parts the dense gradient averages out, without augmentation it "
                  "grows like σ²; both shares are estimated at the same initialisation on the same large batch.",
    ),
    Claim(
        id="sec4-threshold-decoding",
        paper_ref="Section 4 (feature decoupling)",
        statement="Thresholding a masked view recovers the sparse code: T_b(<M_j, 2Dx>) has the sign of z_j.",
        quantity="threshold_decoding_acc", variant="mask", comparison=">=", threshold=0.9, trend="increasing",
        rationale="<M_j, 2Dx> ≈ z_j + N(0, 2σ²); the decoding error is Pr(N(0, 2σ²) < −b), which is o(1). 90% "
                  "is a 1 − o(1) level that d = 64 reaches (2σ² ≈ 0.064) and d = 16 does not (2σ² ≈ 0.21).",
        reconstructed="Section 4 writes T_b(u) = u·1{|u| ≥ b} with b left implicit; fdcheck uses b = 1/2 (see "
                      "fdcheck.metrics).",
    ),
    # Theorem 3.2 and Corollary 3.3: no augmentation.
    Claim(
        id="thm3.2-dense-dominance",
        paper_ref="Theorem 3.2",
        statement="Without augmentation the representation of x is that of its noise: cos(f(x), f(ξ)) ≥ 1 − Õ(1/poly(d)).",
        quantity="cos_fx_fxi", variant="none", comparison=">=", threshold=0.9, trend="increasing",
        rationale="'≥ 1 − Õ(1/poly(d))' is read at finite d as within 0.1 of 1, and rising towards 1 with d. The "
                  "estimate averages several thousand test samples, so its noise is far below 0.01.",
        reconstructed="The bias without augmentation is 'anything that keeps neurons alive'; this claim uses b = 0. "
                      "The same claim under the bias schedule is thm3.2-dense-dominance-schedule.",
    ),
    Claim(
        id="thm3.2-dense-dominance-schedule",
        paper_ref="Theorem 3.2",
        statement="Dense dominance holds for any bias that keeps neurons alive, including the bias schedule.",
        quantity="cos_fx_fxi", variant="none_schedule", comparison=">=", threshold=0.9, trend="increasing",
        rationale="Same threshold as thm3.2-dense-dominance; the theorem lets the biases be tuned arbitrarily "
                  "without augmentation, so the schedule should not change the picture.",
        reconstructed="Footnote 3's bias schedule is garbled in the seed; see fdcheck.train for the reading.",
    ),
    Claim(
        id="cor3.3-regression-fails",
        paper_ref="Corollary 3.3",
        statement="Without augmentation a linear probe on the features fails at regression: E|y − <w*, f(x)>|² ≥ Ω(1).",
        quantity="probe_reg_mse_features", variant="none", comparison=">=", threshold=0.5, trend="none",
        rationale="Ω(1) normalised test MSE is read as the probe explaining less than half the variance of y.",
    ),
    Claim(
        id="cor3.3-classification-fails",
        paper_ref="Corollary 3.3",
        statement="Without augmentation a linear probe on the features does not reach 1 − o(1) classification "
                  "accuracy.",
        quantity="probe_cls_acc_features", variant="none", comparison="<=", threshold=0.9, trend="none",
        rationale="The seed prints the accuracy as o(1), which cannot be meant literally for a sign task (chance is "
                  "1/2); the claim is read as 'does not succeed', i.e. accuracy at most 0.9, the success level of "
                  "cor3.5-classification.",
        reconstructed="The seed renders the bound as Pr[y = sign(<w*, f(x)>)] = o(1) (garbled).",
    ),
    Claim(
        id="sec3-raw-probe-fails",
        paper_ref="Section 3 (remark after Definition 3.1)",
        statement="A linear probe on the raw input fails: the dense noise on each atom swamps the sparse signal.",
        quantity="probe_reg_mse_raw", variant="mask", comparison=">=", threshold=0.5, trend="none",
        rationale="The noise on each atom (variance σ² = √log d / d) exceeds the signal's (p = log log d / d); the "
                  "best linear readout keeps most of the noise, so it explains less than half the variance.",
    ),
    # Theorem 3.4 and Corollary 3.5: RandomMask.
    Claim(
        id="thm3.4-span",
        paper_ref="Theorem 3.4",
        statement="With RandomMask every neuron lies on span(M): the M⊥ coefficients are o(1/√d)·||w_i||.",
        quantity="span_energy", variant="mask", comparison=">=", threshold=0.9, trend="increasing",
        rationale="Mean share of ||w_i||² on span(M); a random direction would put d/d1 = 1/16 there, a learned "
                  "sparse feature almost all. 0.9 leaves 10% for the o(1/√d) remainders summed over M⊥.",
    ),
    Claim(
        id="thm3.4-few-atoms",
        paper_ref="Theorem 3.4",
        statement="With RandomMask each neuron is made of O(1) atoms: |N_i| = O(1) and the other coefficients are "
                  "o(1/√d)·||w_i||.",
        quantity="top3_atom_share", variant="mask", comparison=">=", threshold=0.8, trend="increasing",
        rationale="Mean share of ||w_i||² on its three largest atoms (O(1) atoms); the d − 3 others, each o(1/√d), "
                  "should add to o(1). 0.8 is 'most of the weight'; a random direction puts 3/d1 there.",
    ),
    Claim(
        id="thm3.4-pure-neuron-per-atom",
        paper_ref="Theorem 3.4",
        statement="With RandomMask every atom M_j is the only atom (N_i = {j}) of at least one neuron.",
        quantity="atom_coverage", variant="mask", comparison=">=", threshold=0.9, trend="none",
        rationale="Fraction of atoms that are the top atom, with at least half of ||w_i||², of some neuron. The "
                  "theorem says every atom (1.0) at every large enough d, so no trend is claimed (a fraction that "
                  "sits at 1 cannot rise); 0.9 allows a few atoms whose neurons are still purifying at a finite "
                  "step budget.",
    ),
    Claim(
        id="thm3.4-atoms-not-hogged",
        paper_ref="Theorem 3.4",
        statement="With RandomMask no atom appears in the N_i of more than o(m/d) neurons.",
        quantity="max_atom_neuron_frac", variant="mask", comparison="<=", threshold=0.2, trend="decreasing",
        rationale="o(m/d) neurons is a fraction o(1/d) of all neurons (the fair share of an atom is 1/d). 0.2 is a "
                  "constant ceiling that a collapse of many neurons onto few atoms exceeds (at d = 16 it allows "
                  "about three times the fair share); the expected decrease in d carries the o(1/d).",
    ),
    Claim(
        id="thm3.4-noise-removed",
        paper_ref="Theorem 3.4 (consequence)",
        statement="With RandomMask the features remove the dense noise: ||f(x) − f(Mz)|| is small against ||f(Mz)||.",
        quantity="rel_dist_fx_fMz", variant="mask", comparison="<=", threshold=0.5, trend="decreasing",
        rationale="||f(x) − f(Mz)|| ≤ Õ(1/√d) while ||f(Mz)|| ≥ Ω(1): the ratio is o(1); 0.5 is 'the noise moves "
                  "the representation by less than half its size', falling with d.",
    ),
    Claim(
        id="thm3.4-signal-kept",
        paper_ref="Theorem 3.4 (consequence)",
        statement="With RandomMask f(Mz) ≠ 0 for most samples: ||f(Mz)|| ≥ Ω(1) with probability 1 − 1/polylog d.",
        quantity="frac_fMz_nonzero", variant="mask", comparison=">=", threshold=0.9, trend="none",
        rationale="Fraction of samples with z ≠ 0 whose clean signal activates some neuron; 1 − 1/polylog d is "
                  "read as at least 0.9 (1/log² d < 0.13 at d ≥ 16).",
    ),
    Claim(
        id="cor3.5-regression-succeeds",
        paper_ref="Corollary 3.5",
        statement="With RandomMask a linear probe with Õ(d) labels reaches o(1) regression loss.",
        quantity="probe_reg_mse_features", variant="mask", comparison="<=", threshold=0.5, trend="decreasing",
        rationale="At finite d the per-atom noise bounds what any probe can reach (the ideal soft-threshold of Mᵀx "
                  "gets about 0.4 at d = 16); o(1) is read as below 0.5 and falling with d.",
    ),
    Claim(
        id="cor3.5-beats-raw",
        paper_ref="Corollary 3.5 with Section 3",
        statement="With RandomMask the probe on the features beats the probe on the raw input.",
        quantity="probe_reg_mse_features", variant="mask", comparison="<",
        threshold=Measured("probe_reg_mse_raw", "mask"), trend="none",
        rationale="Both probes use the same labelled samples and the same test set, so the comparison is paired.",
    ),
    Claim(
        id="cor3.5-beats-no-augmentation",
        paper_ref="Corollary 3.5 against Corollary 3.3",
        statement="The probe on features learned with RandomMask beats the probe on features learned without.",
        quantity="probe_reg_mse_features", variant="mask", comparison="<",
        threshold=Measured("probe_reg_mse_features", "none"), trend="none",
        rationale="Same seed, hence the same dictionary, initialisation and evaluation samples for both runs.",
    ),
    Claim(
        id="cor3.5-classification-succeeds",
        paper_ref="Corollary 3.5",
        statement="With RandomMask a linear probe with Õ(d) labels reaches classification accuracy 1 − o(1).",
        quantity="probe_cls_acc_features", variant="mask", comparison=">=", threshold=0.9, trend="increasing",
        rationale="1 − o(1) is read as at least 0.9 and rising with d.",
    ),
    # Section 1.1 and Figures 1-4, in the synthetic model.
    Claim(
        id="msg1-weights-move",
        paper_ref="Section 1.1 (Message 1)",
        statement="Without augmentation the weights still move far from their initialisation.",
        quantity="weight_move_rel", variant="none", comparison=">=", threshold=1.0, trend="none",
        rationale="||W − W0|| ≥ ||W0||: training moved the weights by at least their initial size, so the failure "
                  "is not a failure to learn.",
    ),
    Claim(
        id="msg1-movement-in-perp",
        paper_ref="Section 1.1 (Message 1)",
        statement="Without augmentation the weight movement lies mostly in M⊥ (the network learns the dense noise).",
        quantity="weight_move_perp_share", variant="none", comparison=">=", threshold=0.5, trend="none",
        rationale="Share of ||W − W0||² in M⊥; 'mostly' is more than half.",
    ),
    Claim(
        id="fig4-sparser-activations",
        paper_ref="Figure 4",
        statement="With RandomMask the activations are sparser than without augmentation.",
        quantity="activation_density", variant="mask", comparison="<",
        threshold=Measured("activation_density", "none"), trend="none",
        rationale="Mean fraction of non-zero neurons on the same test samples, paired by seed.",
    ),
    Claim(
        id="fig3-clusters-by-atom",
        paper_ref="Figure 3",
        statement="With RandomMask representations cluster by their active atom, better than without augmentation.",
        quantity="knn_acc", variant="mask", comparison=">",
        threshold=Measured("knn_acc", "none"), trend="none",
        rationale="1-nearest-neighbour accuracy of the active atom (and its sign) on held-out single-atom samples, "
                  "paired by seed. A t-SNE picture such as Figure 3 shows neighbourhoods, so the neighbour's label "
                  "is the number behind it; a class-centroid rule would instead measure linear decodability, which "
                  "fdcheck.metrics also reports as centroid_acc.",
    ),
    Claim(
        id="fig1-resembles-supervised",
        paper_ref="Figure 1 and the third contribution",
        statement="Features learned with RandomMask resemble those of supervised training of the same network: "
                  "their neurons align with the atoms about as well.",
        quantity="peer_bestcos_median", variant="mask", comparison=">=",
        threshold=Measured("peer_bestcos_median", "supervised", scale=0.8), trend="none",
        rationale="Median over atoms of the best |cos(w_i, M_j)|; 'resemble' is read as reaching at least 80% of "
                  "the supervised network's alignment trained on the same data.",
        reconstructed="The paper compares images of learned filters (Figure 1); the synthetic counterpart compares "
                      "neuron-to-atom alignment. The supervised network fits z with a linear head (fdcheck.train).",
    ),
)


@dataclass(frozen=True)
class Deviation:
    """A claim expected to fail at some ``d``: applies when the grid contains any of ``d`` (or always)."""

    claim: str
    reason: str
    d: tuple[int, ...] = ()

    def applies(self, grid_d: Iterable[int]) -> bool:
        return not self.d or bool(set(self.d) & set(grid_d))


def load_deviations(path: str | Path | None = None) -> dict[str, Deviation]:
    """Read the known deviations (``fdcheck/known_deviations.toml`` by default) keyed by claim id."""
    if path is None:
        text = resources.files("fdcheck").joinpath("known_deviations.toml").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    data = tomllib.loads(text)
    known = {c.id for c in CLAIMS}
    out: dict[str, Deviation] = {}
    for entry in data.get("deviation", []):
        if entry.get("claim") not in known:
            raise ValueError(f"known deviation names claim={entry.get('claim')!r}, which is not in the registry")
        if not entry.get("reason"):
            raise ValueError(f"known deviation for {entry['claim']} has no reason")
        out[entry["claim"]] = Deviation(entry["claim"], entry["reason"], tuple(entry.get("d", ())))
    return out


def variant_of(config: Mapping[str, Any]) -> str | None:
    """The name in ``fdcheck.sweep.VARIANTS`` whose ``augment`` and ``bias`` the configuration has, or ``None``."""
    from .sweep import VARIANTS

    for name, fields in VARIANTS.items():
        if all(config.get(k) == v for k, v in fields.items()):
            return name
    return None


def _index(records: Iterable[Mapping[str, Any]]) -> dict[tuple[int, int], dict[str, dict[str, Any]]]:
    """``(d, seed) -> variant -> record`` (failed runs included; :func:`evaluate_claim` reports them as missing)."""
    out: dict[tuple[int, int], dict[str, dict[str, Any]]] = {}
    for rec in records:
        cfg = rec["config"]
        variant = variant_of(cfg)
        if variant is not None:  # runs outside the grid's variants are not evidence for any claim
            out.setdefault((cfg["d"], cfg["seed"]), {})[variant] = rec
    return out


def _trend(points: list[tuple[int, float]]) -> tuple[str, float | None, float | None]:
    """Observed direction of ``value`` against ``log d``: least-squares slope with a two-standard-error rule."""
    n = len(points)
    ds = {d for d, _ in points}
    if n < 3 or len(ds) < 2:
        return "n/a", None, None
    xs = [math.log(d) for d, _ in points]
    ys = [v for _, v in points]
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    resid = sum((y - my - slope * (x - mx)) ** 2 for x, y in zip(xs, ys))
    se = math.sqrt(resid / (n - 2) / sxx)
    if slope > TREND_T * se and slope != 0:
        return "increasing", slope, se
    if slope < -TREND_T * se and slope != 0:
        return "decreasing", slope, se
    return "flat", slope, se


def evaluate_claim(claim: Claim, records: Iterable[Mapping[str, Any]], grid_d: Iterable[int] | None = None,
                   deviation: Deviation | None = None, grid_seeds: Iterable[int] | None = None) -> dict[str, Any]:
    """The verdict of one claim on the runs in ``records`` (the rule is in the module docstring).

    ``grid_d`` and ``grid_seeds`` name the runs the grid asked for (default: those present); a ``(d, seed)`` of the
    grid without a successful run of every variant the claim reads is reported missing and blocks a pass.

    Returns the claim's entry of ``claims.json``: id, paper_ref, statement, quantity, comparison, threshold text,
    verdict, expected_fail, reason, reconstructed, evidence rows and the trend.
    """
    index = _index(records)
    grid_d = sorted(grid_d) if grid_d is not None else sorted({d for d, _ in index})
    grid_seeds = sorted(grid_seeds) if grid_seeds is not None else sorted({s for _, s in index})
    compare = COMPARISONS[claim.comparison]
    evidence: list[dict[str, Any]] = []
    missing: list[str] = []
    for d in grid_d:
        for seed in grid_seeds:
            if (d, seed) not in index:
                missing.append(f"d={d} seed={seed}: no run")
    for (d, seed), runs in sorted(index.items()):
        if d not in grid_d or seed not in grid_seeds:
            continue
        lacking = [v for v in sorted(claim.variants) if v not in runs or not isinstance(runs[v].get("metrics"), dict)
                   or runs[v].get("error")]
        if lacking:
            missing.append(f"d={d} seed={seed}: no successful run of {', '.join(lacking)}")
            continue
        metrics = {v: r["metrics"] for v, r in runs.items() if isinstance(r.get("metrics"), dict)}
        value = metrics[claim.variant].get(claim.quantity)
        threshold = claim.threshold_for(runs[claim.variant]["config"], metrics)
        if value is None or not math.isfinite(value) or not math.isfinite(threshold):
            missing.append(f"d={d} seed={seed}: {claim.quantity} is undefined")
            continue
        evidence.append({"d": d, "seed": seed, "augment": claim.variant, "quantity": claim.quantity,
                         "value": float(value), "threshold": float(threshold), "holds": bool(compare(value, threshold))})
    per_d = []
    status_by_d: dict[int, str] = {}
    for d in grid_d:
        rows = [e for e in evidence if e["d"] == d]
        if not rows:
            status_by_d[d] = "missing"
            continue
        held = [e["holds"] for e in rows]
        status_by_d[d] = "holds" if all(held) else "fails" if not any(held) else "split"
        values = [e["value"] for e in rows]
        per_d.append({"d": d, "mean": sum(values) / len(values), "min": min(values), "max": max(values),
                      "threshold": sum(e["threshold"] for e in rows) / len(rows), "n_seeds": len(rows),
                      "status": status_by_d[d]})
    observed, slope, se = _trend([(e["d"], e["value"]) for e in evidence])
    if claim.trend == "none":
        holds_trend = None
    elif observed in ("increasing", "decreasing"):
        holds_trend = observed == claim.trend
    else:
        holds_trend = None
    failing = [d for d, s in status_by_d.items() if s == "fails"]
    reasons = []
    if failing:
        reasons.append(f"fails at d = {', '.join(map(str, failing))} (every seed on the wrong side of the threshold)")
    if claim.trend != "none" and holds_trend is False:
        reasons.append(f"expected {claim.trend} in d, observed {observed}")
    if failing or (claim.trend != "none" and holds_trend is False):
        verdict = "fail"
    elif not missing and all(s == "holds" for s in status_by_d.values()) and (claim.trend == "none" or holds_trend):
        verdict = "pass"
        reasons.append("holds at every d for every seed" + ("" if claim.trend == "none" else f", trend {observed}"))
    else:
        verdict = "inconclusive"
        split = [d for d, s in status_by_d.items() if s == "split"]
        if split:
            reasons.append(f"seeds disagree at d = {', '.join(map(str, split))}")
        if missing:
            reasons.append("missing runs: " + "; ".join(missing))
        if claim.trend != "none" and holds_trend is None:
            reasons.append(f"expected {claim.trend} in d, observed {observed} (slope not two standard errors from 0)")
    expected_fail = deviation is not None and deviation.applies(grid_d)
    if expected_fail:
        reasons.append(f"known deviation: {deviation.reason}")
    return {
        "id": claim.id,
        "paper_ref": claim.paper_ref,
        "statement": claim.statement,
        "quantity": claim.quantity,
        "variant": claim.variant,
        "comparison": claim.comparison,
        "threshold": claim.threshold_text,
        "rationale": claim.rationale,
        "reconstructed": claim.reconstructed,
        "verdict": verdict,
        "expected_fail": expected_fail,
        "reason": "; ".join(reasons),
        "evidence": evidence,
        "trend": {"expected": claim.trend, "observed": observed, "slope_per_log_d": slope, "slope_se": se,
                  "per_d": per_d, "holds": holds_trend},
    }


def claims_document(records: Iterable[Mapping[str, Any]], *, grid: Mapping[str, Any],
                    deviations: Mapping[str, Deviation] | None = None, claims: Iterable[Claim] = CLAIMS,
                    **header: Any) -> dict[str, Any]:
    """The ``claims.json`` document: header fields, the grid and every claim's evaluation."""
    from . import __version__

    records = list(records)
    deviations = load_deviations() if deviations is None else deviations
    entries = [evaluate_claim(c, records, grid["d"], deviations.get(c.id), grid.get("seeds")) for c in claims]
    return {"fdcheck_version": __version__, **header, "grid": dict(grid), "claims": entries}


def exit_code(document: Mapping[str, Any]) -> int:
    """0 when every claim passes or fails as expected; 1 otherwise (an expected fail that passes counts as a failure)."""
    for c in document["claims"]:
        if c["expected_fail"]:
            if c["verdict"] != "fail":
                return 1
        elif c["verdict"] != "pass":
            return 1
    return 0
