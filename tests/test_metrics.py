"""Tests of fdcheck.metrics: every quantity on constructed inputs whose answer is known.

Most tests run at d = 16 (d1 = 256, m = 64) in float64, where constructed weights give exact answers up to
rounding (tolerance 1e-9). Statistical tests state their seed, sample size and why the threshold is right.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fdcheck import metrics as mt
from fdcheck.backend import Random, get_namespace
from fdcheck.config import ModelConfig
from fdcheck.data import SparseCodingModel
from fdcheck.network import init_weights

XP = get_namespace("numpy")
EXACT = 1e-9

# The keys measure_all must always return: they become a store record's "metrics" (record format: fdcheck.sweep),
# which the claims registry (fdcheck.claims.CLAIMS), the report and the peer comparison read.
CONTRACT_KEYS = """
data_active_proj_q01 data_noise_proj_max data_noise_proj_bound data_noise_cos_max data_noise_cos_bound data_energy_ratio
view_corr_atoms_mask view_corr_perp_mask view_corr_atoms_none view_corr_perp_none
grad_perp_share_mask grad_perp_share_none
grad_growth_span_mask grad_growth_perp_mask grad_growth_span_none grad_growth_perp_none
threshold_decoding_acc
cos_fx_fxi cos_fx_fMz rel_dist_fx_fMz frac_fMz_nonzero span_energy top_atom_share top3_atom_share n_atoms_mean
atom_coverage max_atom_neuron_frac activation_density dead_neuron_frac weight_move_rel weight_move_perp_share
centroid_acc peer_bestcos_max peer_bestcos_median peer_bestcos_min peer_support peer_false_support
peer_excess_density
probe_reg_mse_features probe_reg_mse_raw probe_reg_mse_z probe_reg_mse_Mtx
probe_cls_acc_features probe_cls_acc_raw probe_cls_acc_z probe_cls_acc_Mtx probe_n_train
""".split()

SMALL_SIZES = dict(n_data=1024, n_cos=256, n_view=1024, n_view_dirs=16, n_grad=1024, n_decode=1024, n_test=1024,
                   n_centroid=2048, n_probe_test=1000)


@pytest.fixture(scope="module")
def run16():
    """The seeds contract at d = 16, seed 0, float64: (config, model, W0, eval seed sequence root)."""
    config = ModelConfig.scaled(16, dtype="float64")
    dict_rng, init_rng, _, _ = Random(config.seed, XP).spawn(4)
    model = SparseCodingModel.from_config(config, dict_rng)
    W0, _ = init_weights(config.m, config.d1, config.init_std, init_rng, config.dtype)
    return config, model, W0


def quiet_model(model: SparseCodingModel, noise_variance: float = 1e-8) -> SparseCodingModel:
    """The same dictionary and sparsity with (almost) no dense noise: answers become exact."""
    return SparseCodingModel(M=model.M, p=model.p, noise_variance=noise_variance)


def perp_weights(M, m: int, seed: int) -> np.ndarray:
    """``m`` random rows orthogonal to span(M)."""
    g = np.random.default_rng(seed).standard_normal((m, M.shape[0]))
    return g - (g @ M) @ M.T


# ------------------------------------------------------------------------------------------ neuron structure
def test_pure_atom_neurons_have_every_structure_metric_at_its_ideal(run16):
    config, model, _ = run16
    M = model.M
    # Each atom twice, once with a negative sign and a different scale: sign and scale must not matter.
    W = np.concatenate([M.T, -3.0 * M.T])
    s = mt.neuron_structure(W, M)
    assert s["span_energy"] == pytest.approx(1.0, abs=EXACT)
    assert s["top_atom_share"] == pytest.approx(1.0, abs=EXACT)
    assert s["top3_atom_share"] == pytest.approx(1.0, abs=EXACT)
    assert s["n_atoms_mean"] == 1.0
    assert s["atom_coverage"] == 1.0
    assert s["max_atom_neuron_frac"] == pytest.approx(2 / W.shape[0])


def test_neurons_in_m_perp_lie_on_no_atom(run16):
    _, model, _ = run16
    W = perp_weights(model.M, 64, seed=1)
    s = mt.neuron_structure(W, model.M)
    assert s["span_energy"] < EXACT
    assert s["top_atom_share"] < EXACT
    assert s["atom_coverage"] == 0.0
    assert s["n_atoms_mean"] == 0.0
    assert s["max_atom_neuron_frac"] == 0.0


def test_two_atom_mixtures_split_the_share(run16):
    _, model, _ = run16
    M = model.M
    d = M.shape[1]
    nxt = np.roll(np.arange(d), -1)
    equal = (M.T + M.T[nxt]) / math.sqrt(2)  # neuron j = (M_j + M_{j+1}) / √2
    s = mt.neuron_structure(equal, M)
    assert s["top_atom_share"] == pytest.approx(0.5, abs=EXACT)
    assert s["top3_atom_share"] == pytest.approx(1.0, abs=EXACT)
    assert s["n_atoms_mean"] == 2.0
    assert s["max_atom_neuron_frac"] == pytest.approx(2 / d)  # atom j is in N_j and N_{j-1}
    # 60/40: every atom is the dominant (share >= 0.5) top atom of exactly one neuron.
    unequal = math.sqrt(0.6) * M.T + math.sqrt(0.4) * M.T[nxt]
    s = mt.neuron_structure(unequal, M)
    assert s["top_atom_share"] == pytest.approx(0.6, abs=EXACT)
    assert s["atom_coverage"] == 1.0
    # Three atoms at 0.45 / 0.4 / 0.15: no atom dominates, so nothing is covered; all three are in N_i.
    three = math.sqrt(0.45) * M.T + math.sqrt(0.4) * M.T[nxt] + math.sqrt(0.15) * M.T[np.roll(np.arange(d), -2)]
    s = mt.neuron_structure(three, M)
    assert s["top_atom_share"] == pytest.approx(0.45, abs=EXACT)
    assert s["atom_coverage"] == 0.0
    assert s["n_atoms_mean"] == 3.0
    assert s["top3_atom_share"] == pytest.approx(1.0, abs=EXACT)


def test_a_zero_neuron_counts_zero_and_makes_no_nan(run16):
    _, model, _ = run16
    W = np.concatenate([model.M.T, np.zeros((1, model.d1))])
    s = mt.neuron_structure(W, model.M)
    m = W.shape[0]
    assert s["span_energy"] == pytest.approx((m - 1) / m, abs=EXACT)
    assert s["top_atom_share"] == pytest.approx((m - 1) / m, abs=EXACT)
    assert all(math.isfinite(v) for v in s.values())


def test_weight_movement_splits_between_span_and_perp(run16):
    _, model, _ = run16
    W0 = np.asarray(model.M.T)
    perp = perp_weights(model.M, W0.shape[0], seed=2)
    moved = mt.weight_movement(W0 + perp, W0, model.M)
    assert moved["weight_move_perp_share"] == pytest.approx(1.0, abs=EXACT)
    assert moved["weight_move_rel"] == pytest.approx(np.linalg.norm(perp) / np.linalg.norm(W0), rel=EXACT)
    scaled = mt.weight_movement(3.0 * W0, W0, model.M)
    assert scaled["weight_move_perp_share"] == pytest.approx(0.0, abs=EXACT)
    assert scaled["weight_move_rel"] == pytest.approx(2.0, rel=EXACT)
    assert mt.weight_movement(W0, W0, model.M) == {"weight_move_rel": 0.0, "weight_move_perp_share": 0.0}


# ------------------------------------------------------------------------------------------- feature metrics
def test_killed_neurons_give_documented_values(run16):
    _, model, _ = run16
    W = np.asarray(model.M.T)
    b = np.full(W.shape[0], 1e6)
    s = model.sample(512, Random(3, XP))
    f = mt.feature_metrics(W, b, s.x, s.z, s.xi, model.M)
    assert f["activation_density"] == 0.0
    assert f["dead_neuron_frac"] == 1.0
    assert f["cos_fx_fxi"] == 0.0 and f["cos_fx_fMz"] == 0.0
    assert f["rel_dist_fx_fMz"] == mt.UNDEFINED_REL_DIST
    assert f["frac_fMz_nonzero"] == 0.0
    peer = mt.peer_metrics(W, b, model.M, s.x, s.z)
    assert peer["peer_support"] == 0.0 and peer["peer_false_support"] == 0.0
    assert peer["peer_excess_density"] == pytest.approx(-float(np.mean(np.abs(s.z))), abs=EXACT)


def test_dense_weights_see_only_the_noise(run16):
    """W in M⊥: f(x) = f(W ξ) and f(Mz) = 0 (Theorem 3.2's extreme).

    b = 1e-9 rather than 0 only clears the O(1e-16) rounding of W M z; every |<w_i, ξ>| is far above it."""
    _, model, _ = run16
    W = perp_weights(model.M, 64, seed=4)
    s = model.sample(512, Random(5, XP))
    f = mt.feature_metrics(W, np.full(64, 1e-9), s.x, s.z, s.xi, model.M)
    assert f["cos_fx_fxi"] == pytest.approx(1.0, abs=1e-9)
    assert f["cos_fx_fMz"] == 0.0
    assert f["frac_fMz_nonzero"] == 0.0
    assert f["activation_density"] == 1.0


def test_atom_features_recover_the_clean_signal(run16):
    """W = Mᵀ, b = 1/2, almost no noise: f(x) = f(Mz) = z/2 exactly.

    cos(f(x), f(Mz)) is then 1 on samples with z ≠ 0 and 0 (the documented convention) on samples with z = 0, so it
    equals the fraction of samples with z ≠ 0.
    """
    _, model, _ = run16
    quiet = quiet_model(model)
    W = np.asarray(model.M.T)
    s = quiet.sample(2048, Random(6, XP))
    f = mt.feature_metrics(W, np.full(W.shape[0], 0.5), s.x, s.z, s.xi, model.M)
    nonzero = float(np.mean(np.abs(s.z).sum(axis=1) > 0))
    assert f["cos_fx_fMz"] == pytest.approx(nonzero, abs=1e-6)
    assert f["rel_dist_fx_fMz"] < 1e-3
    assert f["frac_fMz_nonzero"] == 1.0
    assert f["activation_density"] == pytest.approx(float(np.mean(s.z != 0)), abs=EXACT)


def test_row_cosines_zero_rows_count_zero():
    a = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    c = np.array([[2.0, 0.0], [1.0, 0.0], [-1.0, -1.0]])
    assert list(mt.row_cosines(a, c)) == pytest.approx([1.0, 0.0, -1.0])


# ---------------------------------------------------------------------------------------------- peer metrics
def test_greedy_matching_takes_the_largest_signed_entry_first():
    C = np.array([[0.9, 0.8], [0.95, 0.1], [0.2, 0.3]])
    assert mt.greedy_matching(C) == [(1, 0), (0, 1)]
    # Signed, not absolute: a large negative entry is the worst, not the best.
    assert mt.greedy_matching(np.array([[-0.99, 0.1], [0.5, 0.2]])) == [(1, 0), (0, 1)]


def test_peer_metrics_on_pure_atoms_without_noise(run16):
    """W = Mᵀ, b = 1/2, no noise: ẑ = |z| exactly, so support = Pr(z ≠ 0), no false support, no excess density."""
    _, model, _ = run16
    quiet = quiet_model(model)
    W = np.asarray(model.M.T)
    s = quiet.sample(2048, Random(7, XP))
    peer = mt.peer_metrics(W, np.full(W.shape[0], 0.5), model.M, s.x, s.z)
    assert peer["peer_bestcos_max"] == pytest.approx(1.0, abs=EXACT)
    assert peer["peer_bestcos_median"] == pytest.approx(1.0, abs=EXACT)
    assert peer["peer_bestcos_min"] == pytest.approx(1.0, abs=EXACT)
    assert peer["peer_support"] == pytest.approx(float(np.mean(np.abs(s.z).sum(axis=1) > 0)), abs=EXACT)
    assert peer["peer_false_support"] == 0.0
    assert peer["peer_excess_density"] == pytest.approx(0.0, abs=EXACT)


def test_peer_bestcos_of_perp_neurons_is_zero(run16):
    _, model, _ = run16
    W = perp_weights(model.M, 64, seed=8)
    s = model.sample(64, Random(9, XP))
    peer = mt.peer_metrics(W, np.zeros(64), model.M, s.x, s.z)
    assert peer["peer_bestcos_max"] < 1e-9


# ------------------------------------------------------------------------------------------------ centroid
def test_cluster_accuracy_perfect_on_clean_atoms_and_chance_on_noise(run16):
    _, model, _ = run16
    quiet = quiet_model(model)
    W = np.asarray(model.M.T)
    # 2048 samples, about 1024 · 0.38 / 32 ≈ 12 reference samples per (atom, sign) class: every class is present
    # (Pr(an empty class) < 32 · e^{-12}), and with f(x) = z/2 exactly each class is a single point.
    clean = mt.cluster_accuracy(W, np.full(W.shape[0], 0.5), quiet, Random(10, XP), n=2048)
    assert clean == {"centroid_acc": 1.0, "knn_acc": 1.0}
    # Features that see only noise: chance is 1/32; 0.1 is far above it (about 390 test samples, SE ≈ 0.009).
    perp = perp_weights(model.M, 64, seed=11)
    noise = mt.cluster_accuracy(perp, np.zeros(64), model, Random(12, XP), n=2048)
    assert noise["centroid_acc"] < 0.1 and noise["knn_acc"] < 0.1


def test_linear_noisy_features_decode_by_centroid_but_do_not_cluster(run16):
    """Four neurons per atom, each M_j plus a unit M⊥ direction times 2, b = 0: the features are linear, the noise
    (variance 4σ² ≈ 0.42 per neuron) is large but spread over 64 neurons. Nearest centroid reads the atom through
    the noise's small projection on centroid differences; nearest neighbour compares two noisy samples and mostly
    fails. Seeds 13 (directions) and 2 (4096 samples, about 770 test samples, SE ≤ 0.02); measured 0.46 against
    0.12, so the asserted gap of 0.2 is about ten standard errors from failing."""
    _, model, _ = run16
    g = perp_weights(model.M, 64, seed=13)
    W = np.tile(model.M.T, (4, 1)) + 2.0 * g / np.linalg.norm(g, axis=1, keepdims=True)
    acc = mt.cluster_accuracy(W, np.zeros(64), model, Random(2, XP), n=4096)
    assert acc["centroid_acc"] > acc["knn_acc"] + 0.2


# ------------------------------------------------------------------------------------------- Section 2.1 data
def test_data_facts_against_their_bounds(run16):
    """Seed 13, n = 4096 samples (about 4200 active coordinates), 512 noise vectors for the cosines."""
    _, model, _ = run16
    facts = mt.data_facts(model, Random(13, XP), n=4096, n_cos=512)
    sigma = math.sqrt(model.noise_variance)
    # The high-probability bounds hold with probability >= 99% each.
    assert facts["data_noise_proj_max"] <= facts["data_noise_proj_bound"]
    assert facts["data_noise_cos_max"] <= facts["data_noise_cos_bound"]
    # <x, M_j> = z_j + N(0, σ²): its 1% quantile of |.| is 1 − 2.326 σ (σ = 0.32 here, far from folding at 0).
    # Standard error of that quantile over ~4200 values: √(0.01·0.99/4200) / (φ(2.326)/σ) ≈ 0.02; 0.08 is 4 SE.
    assert facts["data_active_proj_q01"] == pytest.approx(1 - 2.3263 * sigma, abs=0.08)
    # E||ξ||² / E||Mz||² = d1 σ² / (p d); the denominator's mean over 4096 samples has relative SE ≈ 1.5%.
    expected = model.d1 * model.noise_variance / (model.p * model.d)
    assert facts["data_energy_ratio"] == pytest.approx(expected, rel=0.06)
    # The bounds themselves, from their formulas.
    assert facts["data_noise_proj_bound"] == pytest.approx(sigma * math.sqrt(2 * math.log(2 * 4096 * 16 / 0.01)))
    assert facts["data_noise_cos_bound"] == pytest.approx(math.sqrt(2 * math.log(512**2 / 0.01) / 256))


# ---------------------------------------------------------------------------------------- Section 4 at init
def test_view_correlations_decouple_dense_directions_only_with_the_mask(run16):
    """Seed 14, 4096 samples, 64 random M⊥ directions, d = 16.

    With the mask the M⊥ correlation is −p Σ_k w_k²(MMᵀ)_kk / (2σ² + ...) ≈ −0.02, and each direction's estimate
    has SE 1/√4096 ≈ 0.016 (the mean over directions less): |corr| < 0.05 holds with room. Along atoms it is
    about p / (p + 2σ²) = 0.235 (cross terms O(p d/d1) aside) and the mean over 16 atoms has SE ≈ 0.005: ±0.05.
    Without augmentation both views are x, so both correlations are 1 up to rounding.
    """
    _, model, _ = run16
    v = mt.view_correlations(model, Random(14, XP), n=4096, n_dirs=64)
    assert abs(v["view_corr_perp_mask"]) < 0.05
    assert v["view_corr_atoms_mask"] == pytest.approx(model.p / (model.p + 2 * model.noise_variance), abs=0.05)
    assert v["view_corr_atoms_none"] == pytest.approx(1.0, abs=1e-9)
    assert v["view_corr_perp_none"] == pytest.approx(1.0, abs=1e-9)


def test_random_perp_directions_are_unit_and_orthogonal_to_the_atoms(run16):
    _, model, _ = run16
    V = mt.random_perp_directions(model.M, 8, Random(15, XP))
    assert np.allclose(np.linalg.norm(V, axis=1), 1.0)
    assert np.abs(V @ model.M).max() < 1e-12


def test_expected_gradient_leaves_m_perp_with_the_mask(run16):
    """Seed 16, 2048 positives per augmentation (16 batches of 128, 8 groups), at the d = 16 initialisation.

    Theory (shared/REGIMES.md, the expected_gradient_split docstring): growth rate per unit eta of the span(M) part
    ≈ p (mask) and p + σ² (none), of the M⊥ part ≈ −p d/d1 (mask) and σ² (none), each times 1 − E[softmax weight
    of the positive] (≈ 0.99 at equal similarities, less at the real ones). The control-variate estimates have
    relative standard errors under 2%; the tolerances (15% and 25% for the small masked M⊥ rate, whose exact value
    uses Σ_k w_k²(MMᵀ)_kk rather than d/d1) cover the first-order theory's own error, about 10% in REGIMES.md.
    The shares follow: about (d/d1)/(1 + d/d1) ≈ 0.06–0.1 with the mask, about 0.85 without.
    """
    config, model, W0 = run16
    p, s2, ratio = model.p, model.noise_variance, model.d / model.d1
    mask = mt.expected_gradient_split(W0, model, config, Random(16, XP), augment="mask", n=2048)
    none = mt.expected_gradient_split(W0, model, config, Random(16, XP), augment="none", n=2048)
    assert mask["share"] < 0.2 < 0.7 < none["share"]
    assert mask["share"] + 3 * mask["share_se"] < none["share"] - 3 * none["share_se"]
    assert mask["growth_span"] == pytest.approx(p, rel=0.15)
    assert mask["growth_perp"] == pytest.approx(-p * ratio, rel=0.25)
    assert none["growth_span"] == pytest.approx(p + s2, rel=0.15)
    assert none["growth_perp"] == pytest.approx(s2, rel=0.15)


def test_control_variate_keeps_the_estimate_unbiased(run16):
    """The growth rates are linear in G, so with and without the control variate they estimate the same number.

    Seed 17, 2048 positives each. Without the variate the masked span rate has a standard error of a few percent
    (the dense noise), with it well under 1%: the two agree within 10%.
    """
    config, model, W0 = run16
    plain = mt.expected_gradient_split(W0, model, config, Random(17, XP), augment="mask", n=2048,
                                       control_variate=False)
    cv = mt.expected_gradient_split(W0, model, config, Random(17, XP), augment="mask", n=2048)
    assert cv["growth_span"] == pytest.approx(plain["growth_span"], rel=0.1)


def test_threshold_decoding_is_exact_without_noise_and_degrades_with_it(run16):
    """Seed 18, 2048 samples. Without noise <M_j, 2Dx> = z_j · 2Σ_k D_kk M_kj² + cross terms of other atoms, all
    of size about 1 ± 0.1 and O(1/√d1) at d1 = 256, so b = 1/2 decodes every active coordinate and nothing else.
    More noise can only lower the accuracy (Pr(1 + N(0, 2σ²) > 1/2) falls with σ)."""
    _, model, _ = run16
    quiet = mt.threshold_decoding(quiet_model(model), Random(18, XP), n=2048)
    assert quiet["threshold_decoding_acc"] == 1.0
    assert quiet["threshold_decoding_false_rate"] == 0.0
    assert quiet["threshold_b"] == mt.THRESHOLD_B
    base = mt.threshold_decoding(model, Random(18, XP), n=2048)["threshold_decoding_acc"]
    noisy = mt.threshold_decoding(quiet_model(model, 4 * model.noise_variance), Random(18, XP), n=2048)
    assert noisy["threshold_decoding_acc"] < base < 1.0


def test_threshold_decode_operator():
    u = np.array([-0.7, -0.5, -0.2, 0.0, 0.49, 0.5, 2.0])
    assert list(mt.threshold_decode(u, 0.5)) == [-0.7, -0.5, 0.0, 0.0, 0.0, 0.5, 2.0]


# ----------------------------------------------------------------------------------------------- measure_all
def test_measure_all_returns_every_contract_key_as_a_finite_float(run16):
    config, model, W0 = run16
    W = np.concatenate([model.M.T] * (config.m // config.d)) + 0.01 * W0
    b = np.full(config.m, 0.3)
    out = mt.measure_all(W, b, W0, model, config, Random(19, XP), sizes=SMALL_SIZES)
    missing = sorted(set(CONTRACT_KEYS) - set(out))
    assert not missing, f"measure_all lacks contract keys {missing}"
    bad = {k: v for k, v in out.items() if type(v) is not float or not math.isfinite(v)}
    assert not bad, f"not finite Python floats: {bad}"
    # Same stream, same numbers: every draw comes from rng.
    again = mt.measure_all(W, b, W0, model, config, Random(19, XP), sizes=SMALL_SIZES)
    assert again == out


def test_measure_all_reports_the_supervised_head(run16):
    """A head that reads z off pure-atom features exactly: f(x) = z/2 (b = 1/2, no noise), head = 2 I."""
    config, model, W0 = run16
    quiet = quiet_model(model)
    W = np.asarray(model.M.T)
    W0 = W0[: config.d]
    out = mt.measure_all(W, np.full(config.d, 0.5), W0, quiet, config.replace(m=config.d), Random(20, XP),
                         head=2.0 * np.eye(config.d), sizes=SMALL_SIZES)
    assert out["head_z_nmse"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(W=np.zeros((64, 255))), "W has shape"),
        (dict(b=np.zeros(63)), "b has shape"),
        (dict(W0=np.zeros((63, 256))), "W0 has shape"),
        (dict(W=np.full((64, 256), np.nan)), "W has non-finite"),
        (dict(head=np.zeros((3, 3))), "head has shape"),
        (dict(sizes={"n_tests": 10}), "unknown key 'n_tests'"),
        (dict(sizes={"n_test": 1}), r"sizes\['n_test'\]=1"),
    ],
)
def test_measure_all_rejects_bad_input_before_any_work(run16, change, match):
    config, model, W0 = run16
    args = dict(W=W0, b=np.zeros(64), W0=W0, head=None, sizes=None)
    args.update(change)
    with pytest.raises(ValueError, match=match):
        mt.measure_all(args["W"], args["b"], args["W0"], model, config, Random(0, XP), head=args["head"],
                       sizes=args["sizes"])


def test_measure_all_rejects_a_config_of_another_model(run16):
    config, model, W0 = run16
    with pytest.raises(ValueError, match="does not match"):
        mt.measure_all(W0, np.zeros(64), W0, model, ModelConfig.scaled(32), Random(0, XP))


# ---------------------------------------------------------------------------------------- other backends
def test_metrics_run_on_array_api_strict(run16):
    """The array math takes its namespace from the inputs: array-api-strict gives the NumPy answers."""
    strict = pytest.importorskip("array_api_strict")
    _, model, _ = run16
    W = np.concatenate([model.M.T, perp_weights(model.M, 8, seed=21)])
    b = np.full(W.shape[0], 0.2)
    s = model.sample(256, Random(22, XP))
    as_strict = [strict.asarray(a) for a in (W, b, s.x, s.z, s.xi, model.M)]
    for fn, args, sargs in [
        (mt.neuron_structure, (W, model.M), (as_strict[0], as_strict[5])),
        (mt.feature_metrics, (W, b, s.x, s.z, s.xi, model.M), tuple(as_strict)),
        (mt.peer_metrics, (W, b, model.M, s.x, s.z), (as_strict[0], as_strict[1], as_strict[5], as_strict[2],
                                                     as_strict[3])),
        (mt.weight_movement, (W, 2 * W, model.M), (as_strict[0], 2 * as_strict[0], as_strict[5])),
    ]:
        got, want = fn(*sargs), fn(*args)
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), fn.__name__
