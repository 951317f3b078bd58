"""Meta-tests of the shared helpers in ``strategies.py`` (array-api-tests keeps the same kind in ``meta_tests/``):
the strategies draw what they say, the reproductions they print rebuild the same inputs, the profiles are
the ones promised and the namespace check can fail."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import strategies
from hypothesis import given, settings
from hypothesis._settings import is_in_ci  # the detection Hypothesis itself uses to load the "ci" profile
from strategies import (
    ORACLE_SHAPES,
    PROFILES,
    REPRO_HEADER,
    DataCase,
    LossCase,
    array_snippet,
    assert_namespace,
    backend_params,
    data_cases,
    loss_cases,
    model_configs,
    oracle_shapes,
    tolerance,
)

from fdcheck.backend import cupy_available, get_namespace
from fdcheck.config import ModelConfig

ROOT = Path(__file__).resolve().parents[1]


def test_profiles_are_registered_as_promised() -> None:
    ci = settings.get_profile("ci")
    assert ci.derandomize and ci.deadline is None and ci.print_blob and ci.database is None
    default, thorough = settings.get_profile("default"), settings.get_profile("thorough")
    assert default.max_examples <= 30 and default.deadline is None and default.print_blob
    assert default.max_examples < ci.max_examples < thorough.max_examples
    assert set(PROFILES) == {"default", "ci", "thorough"}


def test_the_selected_profile_is_loaded() -> None:
    chosen = os.environ.get("HYPOTHESIS_PROFILE")
    if chosen:
        expected = chosen
    elif is_in_ci():
        expected = "ci"  # Hypothesis loads it itself when it detects CI (the CI variable, among others)
    else:
        expected = "default"
    assert settings.get_current_profile_name() == expected


def test_unknown_profile_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "no-such-profile")
    with pytest.raises(ValueError, match="HYPOTHESIS_PROFILE='no-such-profile'.*allowed: default, ci, thorough"):
        strategies.register_profiles()


@given(case=data_cases(min_entries=1000))
def test_data_cases_are_valid_models(case: DataCase) -> None:
    config = case.config()
    assert isinstance(config, ModelConfig) and config.d1 % config.d == 0 and 0 < config.p <= 1
    assert case.n * case.d >= 1000
    model, sample, _ = case.build()
    assert tuple(model.M.shape) == (case.d1, case.d) and tuple(sample.x.shape) == (case.n, case.d1)
    assert str(sample.x.dtype) == case.dtype


@given(case=loss_cases(max_n=4, max_size=5))
def test_loss_cases_are_deterministic_and_shaped(case: LossCase) -> None:
    a, again = case.arrays(), case.arrays()
    shapes = dict(W=(case.m, case.d1), b=(case.m,), x1=(case.n, case.d1), x2=(case.n, case.d1),
                  x_neg=(case.k, case.d1))
    for name, shape in shapes.items():
        assert a[name].shape == shape and a[name].dtype == np.float64
        np.testing.assert_array_equal(a[name], again[name])
    assert np.all(a["b"] >= 0)
    assert case.arrays("float32")["W"].dtype == np.float32


@given(shape=oracle_shapes())
def test_oracle_shapes_are_small(shape: tuple[int, int, int]) -> None:
    assert all(1 <= s <= 4 for s in shape)
    if settings.get_current_profile_name() != "thorough":
        assert shape in ORACLE_SHAPES


@given(config=model_configs())
def test_model_configs_are_valid(config: ModelConfig) -> None:
    assert ModelConfig.from_dict(config.to_dict()) == config


def test_reproductions_rebuild_the_same_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The printed snippets (header included) run from the repository root and rebuild exactly the inputs of
    the failing case."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the header inserts properties/ into sys.path
    loss_case = LossCase(m=2, d1=3, n=2, k=1, tau=1.5, w_scale=0.7, b_frac=0.2, seed=11, include_positive=True)
    namespace: dict[str, Any] = {}
    exec(REPRO_HEADER + loss_case.repro(), namespace)  # noqa: S102
    for name, value in loss_case.arrays().items():
        np.testing.assert_array_equal(namespace["a"][name], value)
    assert np.isfinite(namespace["loss"])
    data_case = DataCase(d=4, d1=8, p=0.3, noise_variance=0.1, n=5, seed=3, dtype="float64")
    namespace = {}
    exec(REPRO_HEADER + data_case.repro(), namespace)  # noqa: S102
    np.testing.assert_array_equal(namespace["sample"].x, data_case.build()[1].x)
    namespace = {}
    u = np.array([[0.1, -3.0]], dtype=np.float32)
    exec(REPRO_HEADER + array_snippet("u", u), namespace)  # noqa: S102
    assert namespace["u"].dtype == np.float32
    np.testing.assert_array_equal(namespace["u"], u)


def test_namespace_check_can_fail() -> None:
    strict = get_namespace("array_api_strict")
    like = strict.asarray([1.0])
    assert_namespace((strict.asarray([2.0]), strict.asarray(3.0)), like)
    with pytest.raises(AssertionError, match="namespace numpy, input is in array_api_strict"):
        assert_namespace(np.asarray([1.0]), like)


def test_backend_params_skip_cupy_with_the_reason() -> None:
    params = {p.id: p for p in backend_params()}
    assert list(params) == ["numpy", "array_api_strict", "cupy"]
    marks = params["cupy"].marks
    assert len(marks) == 1 and marks[0].name == "skipif"
    assert marks[0].args == (not cupy_available(),)
    assert "GPU" in marks[0].kwargs["reason"]


def test_tolerance_follows_the_dtype() -> None:
    assert tolerance("float32")[0] > tolerance("float64")[0] > 0
