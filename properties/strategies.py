"""Shared Hypothesis strategies, profiles and backend helpers for ``properties/`` and ``tests/``.

Cut by role, as in array-api-tests' ``hypothesis_helpers.py`` / ``pytest_helpers.py``:

* **Profiles** (:func:`register_profiles`): ``default`` (fast), ``ci`` (Hypothesis loads it itself when the
  ``CI`` variable is set: derandomised, no deadline, failure blobs printed) and ``thorough``;
  ``HYPOTHESIS_PROFILE`` selects one explicitly.
* **Backends** (:func:`backend_params`, :func:`assert_namespace`, :func:`tolerance`): the array namespaces every
  core function is run on (NumPy, array-api-strict, CuPy where a GPU is visible) and the check that an output
  lives in the namespace of its input.
* **Cases** (:class:`DataCase`, :class:`LossCase`): everything a property draws is a small frozen record of
  sizes, scalars and a seed; the arrays are made from the seed. Each record prints as a copy-paste
  reproduction (:meth:`DataCase.repro`, :meth:`LossCase.repro`), which the properties attach with
  :func:`reproduce` so that a failure says how to rebuild its inputs outside Hypothesis.

``tests/conftest.py`` imports this module by path (``properties/`` is not a package), so it must not import
anything from ``tests/``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, note, settings
from hypothesis import strategies as st

from fdcheck.backend import cupy_available, get_namespace
from fdcheck.config import AUGMENTS, BIAS_MODES, ModelConfig

__all__ = [
    "CUPY_SKIP_REASON",
    "DataCase",
    "LossCase",
    "ORACLE_SHAPES",
    "PROFILES",
    "assert_namespace",
    "backend_params",
    "data_cases",
    "dtype_name",
    "dtypes",
    "loss_cases",
    "model_configs",
    "namespace_name",
    "oracle_shapes",
    "register_profiles",
    "reproduce",
    "REPRO_HEADER",
    "array_snippet",
    "seeds",
    "tolerance",
    "xp",
]

# --------------------------------------------------------------------------------------------------- profiles

PROFILES = {
    # ~25 examples per property keeps the default run of properties/ well under a minute on 2 cores.
    "default": dict(max_examples=25, deadline=None, print_blob=True),
    # The same examples on every CI run (derandomize), so a CI failure reproduces locally with CI=true.
    "ci": dict(max_examples=60, derandomize=True, deadline=None, print_blob=True, database=None,
               suppress_health_check=[HealthCheck.too_slow]),
    "thorough": dict(max_examples=400, deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]),
}


def register_profiles() -> str:
    """Register the three profiles and load the selected one; return its name.

    ``HYPOTHESIS_PROFILE`` wins; otherwise Hypothesis's own choice stands (it loads ``ci`` when it detects a
    CI environment, and re-registering ``ci`` or ``default`` updates the loaded profile in place).
    """
    for name, kwargs in PROFILES.items():
        settings.register_profile(name, **kwargs)
    chosen = os.environ.get("HYPOTHESIS_PROFILE")
    if chosen:
        if chosen not in settings._profiles:  # noqa: SLF001 (no public listing of profiles)
            raise ValueError(f"HYPOTHESIS_PROFILE={chosen!r} is not a registered profile; allowed: "
                             f"{', '.join(PROFILES)}")
        settings.load_profile(chosen)
    return settings.get_current_profile_name()


# Every reproduction starts with these lines, so a snippet can use the core's names and `xp` (NumPy) as is.
REPRO_HEADER = """\
# run with .venv/bin/python from the repository root
import sys; sys.path.insert(0, "properties")
import numpy as np
from fdcheck.augment import no_augmentation, random_mask
from fdcheck.backend import Random, get_namespace
from fdcheck.data import SparseCodingModel, make_dictionary
from fdcheck.loss import contrastive_loss_and_grad, contrastive_loss_from_features
from fdcheck.network import activation, activation_derivative, decompose, features, init_weights
xp = get_namespace("numpy")
"""


def reproduce(snippet: str) -> None:
    """Attach a copy-paste reproduction (``REPRO_HEADER`` + ``snippet``) to the current example; Hypothesis
    prints it only when the property fails."""
    note("Reproduce outside Hypothesis with:\n" + REPRO_HEADER + snippet)


def array_snippet(name: str, a: Any) -> str:
    """``name = np.array([...], dtype=np.float32)``: an exact, copy-paste-able literal of a host array."""
    a = np.asarray(a)
    return f"{name} = np.array({a.tolist()!r}, dtype=np.{a.dtype})"


# --------------------------------------------------------------------------------------------------- backends

CUPY_SKIP_REASON = ("CuPy is not installed or sees no GPU (cupy.cuda.runtime.getDeviceCount() failed or returned "
                    "0); install fdcheck[gpu] on a machine with a CUDA GPU to run these")


def backend_params() -> list[Any]:
    """``pytest.param`` for each array namespace: numpy, array_api_strict, and cupy (skipped with the reason
    when :func:`fdcheck.backend.cupy_available` is False)."""
    params = [pytest.param("numpy", id="numpy"), pytest.param("array_api_strict", id="array_api_strict")]
    params.append(pytest.param("cupy", id="cupy", marks=pytest.mark.skipif(not cupy_available(),
                                                                            reason=CUPY_SKIP_REASON)))
    return params


@pytest.fixture(scope="session", params=backend_params())
def xp(request: Any) -> Any:
    """The array namespace under test: numpy, array_api_strict, or cupy where a GPU is visible (session-scoped,
    so Hypothesis properties can take it). Re-exported by ``properties/conftest.py`` and ``tests/conftest.py``."""
    return namespace_for(request.param)


def namespace_for(name: str) -> Any:
    """The namespace of a backend name (thin wrapper, so fixtures and tests share one spelling)."""
    return get_namespace(name)


def namespace_name(a: Any) -> str:
    """``numpy``, ``array_api_strict`` or ``cupy``: the library an array (or array scalar) belongs to."""
    from array_api_compat import array_namespace

    xp = array_namespace(a)
    name = xp.__name__
    for known in ("array_api_strict", "cupy", "numpy"):
        if known in name:
            return known
    return name


def assert_namespace(result: Any, like: Any) -> None:
    """Assert that ``result`` (an array or a tuple of arrays) lives in the namespace of ``like``.

    Like scipy's ``xp_assert_close``: a function that takes its namespace from its inputs must hand back arrays
    of that same library, not silently NumPy.
    """
    expected = namespace_name(like)
    for item in result if isinstance(result, tuple) else (result,):
        got = namespace_name(item)
        assert got == expected, f"output of type {type(item).__name__} is in namespace {got}, input is in {expected}"


def dtype_name(a: Any) -> str:
    """``float32`` or ``float64``: the dtype of an array of any backend, by name."""
    text = str(a.dtype)
    for name in ("float32", "float64"):
        if name in text:
            return name
    raise AssertionError(f"unexpected dtype {a.dtype!r}")


def tolerance(dtype: str) -> tuple[float, float]:
    """``(rtol, atol)`` for comparing two backends' results of the same computation in ``dtype``.

    NumPy and array-api-strict run the same NumPy kernels, so they agree far better than this; the slack is
    for CuPy, whose reductions sum in a different order (a few hundred ulps on the sizes the tests use).
    """
    eps = float(np.finfo(dtype).eps)
    return 1e3 * eps, 1e3 * eps


# --------------------------------------------------------------------------------------------------- strategies

seeds = st.integers(min_value=0, max_value=2**32 - 1)
dtypes = st.sampled_from(["float32", "float64"])


@dataclass(frozen=True)
class DataCase:
    """A data model of Definition 2.1 to draw from: sizes, rates, dtype and seed."""

    d: int
    d1: int
    p: float
    noise_variance: float
    n: int
    seed: int
    dtype: str

    def config(self) -> ModelConfig:
        """The data fields of a :class:`ModelConfig` (the network and training fields keep their defaults)."""
        return ModelConfig(d=self.d, d1=self.d1, p=self.p, noise_variance=self.noise_variance, seed=self.seed,
                           dtype=self.dtype)

    def build(self, xp: Any = None) -> tuple[Any, Any, Any]:
        """``(model, sample, rng)`` under the seeds contract: M from the first spawned stream, the sample from
        the third (``train_rng``)."""
        from fdcheck.backend import Random
        from fdcheck.data import SparseCodingModel

        xp = namespace_for("numpy") if xp is None else xp
        dict_rng, _init_rng, train_rng, _eval_rng = Random(self.seed, xp).spawn(4)
        model = SparseCodingModel.from_config(self.config(), dict_rng)
        return model, model.sample(self.n, train_rng), train_rng

    def repro(self) -> str:
        return (f"from strategies import DataCase\ncase = {self!r}\n"
                "model, sample, rng = case.build()  # numpy; pass xp=array_api_strict for the other backend")


@st.composite
def data_cases(draw: Any, min_d: int = 2, max_d: int = 48, max_d1: int = 768, min_entries: int = 0,
               dtype: str | None = None) -> DataCase:
    """Data models with ``d`` in ``[min_d, max_d]``, ``d1 = c·d`` up to ``max_d1``, ``p`` from ``1/d`` to 1 (log
    scale, plus the scaled ``log log d / d``) and ``noise_variance`` in ``[1e-3, 4]`` (log scale).

    ``n`` is chosen so that ``n·d >= min_entries`` (statistical tests need enough draws).
    """
    d = draw(st.integers(min_d, max_d), label="d")
    factor = draw(st.integers(1, max(1, max_d1 // d)), label="d1/d")
    d1 = d * factor
    p = draw(st.one_of(st.just(min(1.0, math.log(math.log(max(d, 3))) / max(d, 3))),
                       st.floats(math.log(1.0 / d), 0.0).map(math.exp)), label="p")
    p = min(max(p, 1e-6), 1.0)
    noise_variance = math.exp(draw(st.floats(math.log(1e-3), math.log(4.0)), label="log noise_variance"))
    n = max(draw(st.integers(1, 64), label="n"), math.ceil(min_entries / d))
    return DataCase(d=d, d1=d1, p=p, noise_variance=noise_variance, n=n, seed=draw(seeds, label="seed"),
                    dtype=dtype or draw(dtypes, label="dtype"))


# The symbolic oracle costs 0.2-2 s per shape (m, d1, k), so the fast profiles draw from a fixed, varied set
# (m < d1, m > d1, one negative, several) and only `thorough` draws every shape up to 4.
ORACLE_SHAPES = ((1, 1, 1), (2, 3, 1), (3, 2, 2), (2, 2, 3))


def oracle_shapes() -> st.SearchStrategy[tuple[int, int, int]]:
    """``(m, d1, k)`` for properties that call the SymPy oracle (see :data:`ORACLE_SHAPES`)."""
    if settings.get_current_profile_name() == "thorough":
        return st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4))
    return st.sampled_from(ORACLE_SHAPES)


@dataclass(frozen=True)
class LossCase:
    """Inputs of the contrastive loss (Definition 2.2): sizes, scales, temperature and a seed.

    ``W`` has i.i.d. ``N(0, w_scale²)`` entries, inputs ``N(0, 1)`` entries, and ``b_i = b_frac · u_i · rms``
    with ``u_i`` uniform on [0, 1) and ``rms = w_scale √d1`` the typical size of a pre-activation, so a
    fraction of the neurons is active on each input.
    """

    m: int
    d1: int
    n: int
    k: int
    tau: float
    w_scale: float
    b_frac: float
    seed: int
    include_positive: bool

    def arrays(self, dtype: str = "float64") -> dict[str, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        W = self.w_scale * rng.standard_normal((self.m, self.d1))
        b = self.b_frac * rng.random(self.m) * self.w_scale * math.sqrt(self.d1)
        x1, x2, x_neg = (rng.standard_normal(shape) for shape in ((self.n, self.d1), (self.n, self.d1),
                                                                  (self.k, self.d1)))
        out = dict(W=W, b=b, x1=x1, x2=x2, x_neg=x_neg)
        return {name: a.astype(dtype) for name, a in out.items()}

    def repro(self) -> str:
        return (f"from strategies import LossCase\ncase = {self!r}\na = case.arrays('float64')\n"
                "from fdcheck.loss import contrastive_loss_and_grad\n"
                "loss, grad = contrastive_loss_and_grad(a['W'], a['b'], a['x1'], a['x2'], a['x_neg'], case.tau, "
                "case.include_positive)")


@st.composite
def loss_cases(draw: Any, shapes: st.SearchStrategy[tuple[int, int, int]] | None = None, max_n: int = 4,
               max_size: int = 6) -> LossCase:
    """Loss inputs: ``(m, d1, k)`` from ``shapes`` (default: each in ``1..max_size``), ``n`` in ``1..max_n``,
    ``τ`` in ``[0.3, 5]``, ``w_scale`` in ``[0.2, 1.5]`` and ``b_frac`` 0 (the paper's ``b = 0``) or in
    ``[0, 0.8]``. Similarities stay below a few hundred, so the plain ``exp`` of (2.2) is safe in float64."""
    if shapes is None:
        shapes = st.tuples(st.integers(1, max_size), st.integers(1, max_size), st.integers(1, max_size))
    m, d1, k = draw(shapes, label="(m, d1, k)")
    return LossCase(
        m=m, d1=d1, k=k, n=draw(st.integers(1, max_n), label="n"),
        tau=draw(st.floats(0.3, 5.0), label="tau"),
        w_scale=draw(st.floats(0.2, 1.5), label="w_scale"),
        b_frac=draw(st.one_of(st.just(0.0), st.floats(0.0, 0.8)), label="b_frac"),
        seed=draw(seeds, label="seed"),
        include_positive=draw(st.booleans(), label="include_positive"),
    )


@st.composite
def model_configs(draw: Any) -> ModelConfig:
    """Valid :class:`~fdcheck.config.ModelConfig` objects: ``scaled(d)`` with a few fields overridden."""
    d = draw(st.integers(3, 512), label="d")
    overrides = draw(st.fixed_dictionaries({}, optional={
        "p": st.floats(1e-4, 1.0, exclude_min=False),
        "noise_variance": st.floats(1e-6, 10.0),
        "tau": st.floats(1e-3, 100.0),
        "lam": st.floats(0.0, 1.0),
        "steps": st.integers(0, 10_000),
        "augment": st.sampled_from(AUGMENTS),
        "bias": st.sampled_from(BIAS_MODES),
        "keep_prob": st.floats(0.01, 0.99),
        "include_positive": st.booleans(),
        "seed": seeds,
        "dtype": dtypes,
    }), label="overrides")
    return ModelConfig.scaled(d, **overrides)
