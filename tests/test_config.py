"""``ModelConfig``: validation before any work, ``scaled`` follows its documented formulas, JSON round trip."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import model_configs

from fdcheck.config import SCALING, ModelConfig

NAN, INF = float("nan"), float("inf")

# (parameter, bad value, fragment of the allowed range the message must state)
BAD_VALUES = [
    ("d", 1, "[2, inf)"), ("d", 0, "[2, inf)"), ("d", -4, "[2, inf)"), ("d", 2.5, "[2, inf)"), ("d", True, "[2, inf)"),
    ("d1", 16, "[32, inf)"),  # d1 < d (= 32)
    ("m", 0, "[1, inf)"), ("m", -1, "[1, inf)"),
    ("p", 0.0, "(0, 1]"), ("p", -0.1, "(0, 1]"), ("p", 1.5, "(0, 1]"), ("p", NAN, "(0, 1]"), ("p", INF, "(0, 1]"),
    ("noise_variance", 0.0, "(0, inf)"), ("noise_variance", -1.0, "(0, inf)"), ("noise_variance", NAN, "(0, inf)"),
    ("noise_variance", INF, "(0, inf)"),
    ("tau", 0.0, "(0, inf)"), ("tau", -2.0, "(0, inf)"), ("tau", NAN, "(0, inf)"), ("tau", INF, "(0, inf)"),
    ("eta", 0.0, "(0, inf)"), ("eta", -0.1, "(0, inf)"), ("eta", NAN, "(0, inf)"), ("eta", INF, "(0, inf)"),
    ("lam", -1e-3, "[0, inf)"), ("lam", NAN, "[0, inf)"),
    ("init_std", 0.0, "(0, inf)"), ("init_std", INF, "(0, inf)"),
    ("batch", 0, "[1, inf)"), ("batch", -3, "[1, inf)"), ("batch", 1.5, "[1, inf)"),
    ("negatives", 0, "[1, inf)"), ("negatives", -1, "[1, inf)"),
    ("steps", -1, "[0, inf)"),
    ("keep_prob", 0.0, "(0, 1)"), ("keep_prob", 1.0, "(0, 1)"), ("keep_prob", NAN, "(0, 1)"),
    ("t1", -1, "[0, inf)"), ("eval_every", 0, "[1, inf)"), ("seed", -1, "[0, "),
    ("bias_init_factor", -0.5, "[0, inf)"), ("bias_cap_factor", NAN, "[0, inf)"), ("bias_growth_min", INF, "[0, inf)"),
    ("augment", "crop", "mask, none, supervised"), ("bias", "linear", "schedule, none"),
    ("include_positive", 1, "True or False"),
    ("backend", "jax", "numpy, cupy, array_api_strict"), ("backend", "torch", "numpy, cupy, array_api_strict"),
    ("dtype", "float16", "float32, float64"), ("dtype", "int32", "float32, float64"),
]


@pytest.mark.parametrize(("name", "value", "allowed"), BAD_VALUES, ids=[f"{n}={v!r}" for n, v, _ in BAD_VALUES])
def test_bad_value_names_parameter_value_and_range(name: str, value: object, allowed: str) -> None:
    """Each bad value raises ``ValueError`` naming the parameter, its value and the allowed range, both from the
    constructor and from ``scaled`` (``d`` is ``scaled``'s positional argument, tested below)."""
    makers = [lambda: ModelConfig(**{name: value})]
    if name != "d":
        makers.append(lambda: ModelConfig.scaled(32, **{name: value}))
    for make in makers:
        with pytest.raises(ValueError) as info:
            make()
        message = str(info.value)
        assert message.startswith(f"{name}={value!r}"), message
        assert allowed in message, f"{message!r} does not state the allowed range {allowed!r}"


def test_scaled_rejects_small_d_and_unknown_overrides() -> None:
    with pytest.raises(ValueError, match=re.escape("d=2 is out of range; allowed: [3, inf)")):
        ModelConfig.scaled(2)  # log log d must be positive for p
    with pytest.raises(ValueError, match=re.escape("d=8.0 must be an integer")):
        ModelConfig.scaled(8.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown ModelConfig parameter.*: colour, sigma2; allowed: augment"):
        ModelConfig.scaled(16, sigma2=0.1, colour="red")
    with pytest.raises(ValueError, match="unknown ModelConfig parameter.*: sigma2"):
        ModelConfig.from_dict({**ModelConfig().to_dict(), "sigma2": 0.1})


@pytest.mark.parametrize("d", [3, 8, 16, 32, 64, 100, 256, 1024])
def test_scaled_follows_its_formulas(d: int) -> None:
    """The documented choices: ``d1 = 16 d``, ``m = 4 d``, ``p = log log d / d``, ``σ² = √log d / d`` (a
    variance), ``τ = log d``, ``λ = 0.3 / d^1.25`` (inside the paper's ``[d^-1.499, d^-1.001]``), ``η = 0.2``,
    ``steps = round(3500 (d/16)^0.76)``, ``t1`` a quarter of them, ``bias_growth_min = η / (2d)``."""
    c = ModelConfig.scaled(d)
    log_d = math.log(d)
    steps = round(3500 * (d / 16) ** 0.76)
    assert (c.d, c.d1, c.m) == (d, 16 * d, 4 * d)
    assert c.p == pytest.approx(min(1.0, math.log(log_d) / d), rel=1e-15)
    assert c.noise_variance == pytest.approx(math.sqrt(log_d) / d, rel=1e-15)
    assert c.tau == pytest.approx(log_d, rel=1e-15)
    assert c.lam == pytest.approx(0.3 / d**1.25, rel=1e-15)
    # The exponent 1.25 lies inside the paper's window (1.001, 1.499), but the constant 0.3 puts λ *below*
    # d^-1.499 until 0.3 = d^-0.249, i.e. d < 126: at the sizes run on these machines λ is under the window.
    assert 1.001 < SCALING["lam_power"] < 1.499
    assert (d**-1.499 <= c.lam <= d**-1.001) == (d >= 126)
    assert c.eta == 0.2 and c.init_std == 0.0156 and c.batch == c.negatives == 128
    assert c.steps == steps and c.t1 == round(0.25 * steps) and c.eval_every == max(1, steps // 10)
    assert c.bias_growth_min == pytest.approx(0.2 / (2 * d), rel=1e-15)
    assert (c.bias_init_factor, c.bias_cap_factor) == (0.6, 0.6)
    assert (c.augment, c.bias, c.keep_prob, c.include_positive, c.dtype, c.backend) == (
        "mask", "schedule", 0.5, True, "float32", "numpy")


def test_scaling_constants_are_the_documented_ones() -> None:
    assert SCALING["d1_per_d"] == 16 and SCALING["m_per_d"] == 4
    assert SCALING["c_p"] == SCALING["c_sigma"] == SCALING["tau_log_power"] == 1.0
    assert (SCALING["c_lam"], SCALING["lam_power"], SCALING["eta"]) == (0.3, 1.25, 0.2)


def test_scaled_overrides_propagate() -> None:
    """Overriding ``steps`` moves ``t1`` and ``eval_every`` with it (unless they are given); ``eta`` moves
    ``bias_growth_min``; any other field is taken as given."""
    c = ModelConfig.scaled(16, steps=100)
    assert (c.steps, c.t1, c.eval_every) == (100, 25, 10)
    c = ModelConfig.scaled(16, steps=100, t1=7, eval_every=3)
    assert (c.t1, c.eval_every) == (7, 3)
    c = ModelConfig.scaled(16, eta=0.05)
    assert c.eta == 0.05 and c.bias_growth_min == pytest.approx(0.05 / 32)
    c = ModelConfig.scaled(16, noise_variance=0.5, augment="none", bias="none", seed=9)
    assert (c.noise_variance, c.augment, c.bias, c.seed) == (0.5, "none", "none", 9)


def test_default_is_scaled_32() -> None:
    assert ModelConfig() == ModelConfig.scaled(32)


def test_frozen_and_replace_validates() -> None:
    c = ModelConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.d = 64  # type: ignore[misc]
    assert c.replace(tau=2.0).tau == 2.0 and c.tau != 2.0
    with pytest.raises(ValueError, match=r"tau=-1\.0"):
        c.replace(tau=-1.0)


@given(config=model_configs())
def test_json_round_trip(config: ModelConfig) -> None:
    """``to_json`` is canonical (sorted keys) and ``from_dict(json.loads(...))`` gives the same configuration."""
    text = config.to_json()
    data = json.loads(text)
    assert list(data) == sorted(data)
    assert ModelConfig.from_dict(data) == config
    assert ModelConfig.from_dict(data).to_json() == text
    assert set(data) == {f.name for f in dataclasses.fields(ModelConfig)}


@given(d=st.integers(3, 4096))
def test_scaled_is_valid_everywhere(d: int) -> None:
    c = ModelConfig.scaled(d)
    assert 0 < c.p <= 1 and c.noise_variance > 0 and c.t1 <= c.steps and c.d1 >= c.d
