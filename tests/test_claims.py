"""The verdict rule of the claims registry on constructed records whose verdict is known."""

from __future__ import annotations

import math

import pytest

from fdcheck.claims import (CLAIMS, Claim, Deviation, Formula, Measured, claims_document, evaluate_claim, exit_code,
                            load_deviations, variant_of)

VARIANT_CONFIG = {"mask": ("mask", "schedule"), "none": ("none", "none"), "none_schedule": ("none", "schedule"),
                  "supervised": ("supervised", "schedule")}


def record(d: int, seed: int, variant: str, **metrics: float) -> dict:
    augment, bias = VARIANT_CONFIG[variant]
    config = {"d": d, "seed": seed, "augment": augment, "bias": bias, "p": 0.1, "noise_variance": 0.05}
    return {"config": config, "metrics": metrics}


def grid_records(values: dict[tuple[int, int], float], variant: str = "mask", quantity: str = "q") -> list[dict]:
    return [record(d, s, variant, **{quantity: v}) for (d, s), v in values.items()]


CLAIM = Claim(id="t-claim", paper_ref="test", statement="q is at least 0.5 and grows", quantity="q", variant="mask",
              comparison=">=", threshold=0.5, trend="increasing", rationale="test")


def test_pass_when_every_seed_holds_at_every_d_and_trend_is_observed():
    values = {(16, s): 0.6 + 0.001 * s for s in range(3)} | {(32, s): 0.7 + 0.001 * s for s in range(3)} | {
        (64, s): 0.8 + 0.001 * s for s in range(3)}
    out = evaluate_claim(CLAIM, grid_records(values))
    assert out["verdict"] == "pass", out["reason"]
    assert out["trend"]["observed"] == "increasing"
    assert [row["status"] for row in out["trend"]["per_d"]] == ["holds"] * 3
    assert len(out["evidence"]) == 9


def test_fail_when_every_seed_misses_at_one_d():
    values = {(16, s): 0.4 for s in range(3)} | {(32, s): 0.7 + 0.01 * s for s in range(3)} | {
        (64, s): 0.8 + 0.01 * s for s in range(3)}
    out = evaluate_claim(CLAIM, grid_records(values))
    assert out["verdict"] == "fail"
    assert "d = 16" in out["reason"]


def test_inconclusive_when_seeds_disagree():
    values = {(16, 0): 0.4, (16, 1): 0.6, (32, 0): 0.7, (32, 1): 0.71, (64, 0): 0.8, (64, 1): 0.81}
    out = evaluate_claim(CLAIM, grid_records(values))
    assert out["verdict"] == "inconclusive"
    assert "disagree at d = 16" in out["reason"]


def test_fail_when_trend_is_opposite_even_if_thresholds_hold():
    values = {(d, s): 0.9 - 0.1 * i + 0.001 * s for i, d in enumerate((16, 32, 64)) for s in range(3)}
    out = evaluate_claim(CLAIM, grid_records(values))
    assert out["trend"]["observed"] == "decreasing"
    assert out["verdict"] == "fail"


def test_flat_trend_within_seed_noise_is_inconclusive():
    # Seed noise (±0.05) swamps a tiny slope: the slope is not two standard errors from zero.
    values = {(d, s): 0.7 + 0.001 * i + (0.05 if s % 2 else -0.05) for i, d in enumerate((16, 32, 64))
              for s in range(4)}
    out = evaluate_claim(CLAIM, grid_records(values))
    assert out["trend"]["observed"] == "flat"
    assert out["verdict"] == "inconclusive"


def test_trend_not_measurable_from_one_seed_at_two_d():
    out = evaluate_claim(CLAIM, grid_records({(16, 0): 0.6, (32, 0): 0.7}))
    assert out["trend"]["observed"] == "n/a"
    assert out["verdict"] == "inconclusive"


def test_missing_run_is_inconclusive_not_pass():
    values = {(16, 0): 0.6, (16, 1): 0.61, (32, 0): 0.7, (32, 1): 0.71}
    out = evaluate_claim(CLAIM, grid_records(values), grid_d=[16, 32, 64])
    assert out["verdict"] == "inconclusive"


def test_missing_seed_blocks_a_pass():
    """Seed 2 has no run at d = 32: the other seeds alone must not give a pass."""
    values = {(d, s): 0.6 + 0.1 * i + 0.001 * s for i, d in enumerate((16, 32, 64)) for s in range(3)}
    del values[(32, 2)]
    out = evaluate_claim(CLAIM, grid_records(values), grid_d=[16, 32, 64], grid_seeds=[0, 1, 2])
    assert out["verdict"] == "inconclusive"
    assert "d=32 seed=2: no run" in out["reason"]


def test_measured_threshold_with_the_quantity_missing_is_undefined_not_a_crash():
    claim = Claim(id="t-cmp", paper_ref="t", statement="t", quantity="mse", variant="mask", comparison="<",
                  threshold=Measured("mse", "none"), trend="none", rationale="t")
    recs = [record(16, 0, "mask", mse=0.3), record(16, 0, "none", other=0.7)]
    out = evaluate_claim(claim, recs)
    assert out["verdict"] == "inconclusive" and "undefined" in out["reason"]


def test_failed_run_is_reported_missing():
    recs = grid_records({(16, 0): 0.6, (32, 0): 0.7, (64, 0): 0.8})
    recs[1] = {"config": recs[1]["config"], "error": "TrainingDiverged at step 3"}
    out = evaluate_claim(CLAIM, recs)
    assert out["verdict"] == "inconclusive"
    assert "no successful run" in out["reason"]


def test_measured_threshold_reads_the_other_variant_of_the_same_seed():
    claim = Claim(id="t-cmp", paper_ref="t", statement="mask below none", quantity="mse", variant="mask",
                  comparison="<", threshold=Measured("mse", "none"), trend="none", rationale="t")
    recs = [record(16, 0, "mask", mse=0.3), record(16, 0, "none", mse=0.7),
            record(16, 1, "mask", mse=0.8), record(16, 1, "none", mse=0.7)]
    out = evaluate_claim(claim, recs)
    assert [(e["seed"], e["threshold"], e["holds"]) for e in out["evidence"]] == [(0, 0.7, True), (1, 0.7, False)]
    assert out["verdict"] == "inconclusive"


def test_formula_threshold_uses_the_run_configuration():
    claim = Claim(id="t-f", paper_ref="t", statement="t", quantity="q", variant="mask", comparison=">=",
                  threshold=Formula("2p", lambda c: 2 * c["p"]), trend="none", rationale="t")
    out = evaluate_claim(claim, [record(16, 0, "mask", q=0.25)])
    assert math.isclose(out["evidence"][0]["threshold"], 0.2)
    assert out["verdict"] == "pass"


def test_expected_fail_is_strict():
    failing = grid_records({(16, 0): 0.1, (32, 0): 0.1, (64, 0): 0.1})
    passing = grid_records({(16, 0): 0.6, (32, 0): 0.7, (64, 0): 0.8})
    dev = {"t-claim": Deviation("t-claim", "known")}
    grid = {"d": [16, 32, 64], "seeds": [0]}
    doc_fail = claims_document(failing, grid=grid, deviations=dev, claims=[CLAIM])
    doc_pass = claims_document(passing, grid=grid, deviations=dev, claims=[CLAIM])
    doc_plain = claims_document(failing, grid=grid, deviations={}, claims=[CLAIM])
    assert doc_fail["claims"][0]["expected_fail"] and doc_fail["claims"][0]["verdict"] == "fail"
    assert exit_code(doc_fail) == 0
    assert exit_code(doc_pass) == 1, "an expected fail that passes must turn the exit code non-zero"
    assert exit_code(doc_plain) == 1


def test_deviation_scoped_to_d_applies_only_to_grids_containing_it():
    dev = Deviation("t-claim", "only at small d", d=(16,))
    assert dev.applies([16, 32]) and not dev.applies([32, 64])


def test_registry_is_well_formed():
    ids = [c.id for c in CLAIMS]
    assert len(ids) == len(set(ids))
    assert len(CLAIMS) >= 20
    for c in CLAIMS:
        assert c.statement and c.rationale and c.paper_ref, c.id
        assert c.variants <= {"mask", "none", "none_schedule", "supervised"}, c.id


def test_shipped_deviations_file_parses_and_names_real_claims():
    deviations = load_deviations()
    assert set(deviations) <= {c.id for c in CLAIMS}


def test_deviations_file_with_unknown_claim_is_rejected(tmp_path):
    path = tmp_path / "dev.toml"
    path.write_text('[[deviation]]\nclaim = "no-such-claim"\nreason = "x"\n')
    with pytest.raises(ValueError, match="no-such-claim"):
        load_deviations(path)


@pytest.mark.parametrize("variant", ["mask", "none", "none_schedule", "supervised"])
def test_variant_of_round_trips(variant):
    augment, bias = VARIANT_CONFIG[variant]
    assert variant_of({"augment": augment, "bias": bias}) == variant


def test_unknown_variant_is_not_evidence():
    assert variant_of({"augment": "supervised", "bias": "none"}) is None
    recs = grid_records({(16, 0): 0.6}) + [{"config": {"d": 16, "seed": 0, "augment": "supervised", "bias": "none"},
                                            "metrics": {"q": 0.0}}]
    assert len(evaluate_claim(CLAIM, recs)["evidence"]) == 1
