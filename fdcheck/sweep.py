"""The sweep: the grid ``d × seed × variant`` run on an executor, and the on-disk results store with resume.

Every run of the grid is a :class:`RunSpec` (``d``, ``seed``, variant name, overrides) that expands to one
:class:`~fdcheck.config.ModelConfig`. :func:`execute_run` trains it once (:func:`fdcheck.train.train`) and
measures every quantity the claims need (:func:`fdcheck.metrics.measure_all`). :func:`run_sweep` runs the runs
that the :class:`ResultsStore` does not already hold, on local processes (the default: nothing to start) or on
Dask distributed (a cluster at a scheduler address, or a local Dask cluster), and saves each run as it finishes,
so an interrupted sweep resumes and recomputes nothing that finished.

The store keeps one JSON record per run, keyed by the SHA-256 of the canonical configuration JSON and the store
version (:func:`store_version`: the fdcheck version plus a fingerprint of the source of every module that trains
or measures a run, so editing ``metrics.py`` never lets an old record pass for a new one), with an ``.npz`` of the trained arrays beside it. Both are written atomically (temporary file in the
same directory, ``fsync``, ``os.replace``; the arrays first and the JSON last, the JSON holding the SHA-256 of
the arrays and of its own payload), so a crash leaves either a whole record or none, and a damaged record is
detected on load and recomputed, never read as data.

Record format
-------------
``<root>/<key>.json`` is one JSON object (strict JSON: no ``NaN`` tokens) with these fields:

- ``key``: SHA-256 (hex) of ``config.to_json() + "\\nfdcheck " + fdcheck_version`` (:meth:`ResultsStore.key`);
  also the file name.
- ``fdcheck_version``: the store version that ran it (:func:`store_version`); records of another version are never
  read.
- ``config``: :meth:`fdcheck.config.ModelConfig.to_dict` of the run.
- ``variant``: its :data:`VARIANTS` name (``"mask"``, ``"none"``, ``"none_schedule"``, ``"supervised"``), or
  ``null`` for an augmentation/bias pair that is none of them.
- ``status``: ``"ok"`` or ``"error"`` (the run raised). :func:`run_sweep` also returns, never stores,
  ``"lost"`` records for runs its executor lost.
- ``metrics``: ``{name: float}`` from :func:`fdcheck.metrics.measure_all`, a non-finite value stored as ``null``;
  ``null`` for an error.
- ``nonfinite_metrics``: the sorted names of the metrics that were non-finite (``"ok"`` records only).
- ``history``: the training log, one ``{"step", "loss", "loss_window", "objective", ..., "seconds"}`` dict per
  evaluation (:func:`fdcheck.train.train`); ``[]`` for an error.
- ``seconds``: wall time of the whole run (training and measurement); ``train_seconds``: of training alone
  (present when the run function reported it).
- ``arrays``: the file name ``<key>.npz`` (relative to the store directory) holding ``W``, ``b``, ``W0``, ``M`` and,
  for a supervised run, ``head``; ``null`` for an error. ``arrays_sha256``: SHA-256 of that file (``null`` for
  an error).
- ``error``, ``error_type``, ``traceback`` (``"error"`` records only): ``"Type: message"``, the exception's type
  name and its formatted traceback.
- ``checksum``: SHA-256 of the canonical JSON (sorted keys, no spaces) of every other field.

:data:`RECORD_FIELDS` are the fields every record has; a record missing one is treated as damaged.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import io
import json
import logging
import math
import multiprocessing
import os
import re
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import atomic_write_bytes
from .config import ModelConfig

__all__ = [
    "CorruptRecordWarning",
    "EXECUTORS",
    "RECORD_FIELDS",
    "ResultsStore",
    "RunSpec",
    "RECORD_MODULES",
    "VARIANTS",
    "code_fingerprint",
    "store_version",
    "execute_run",
    "grid",
    "run_sweep",
    "variant_of",
]

logger = logging.getLogger(__name__)

# The variants of the grid: the augmentation and the bias schedule of each (a record's "variant" field).
# ``none_schedule`` is the no-augmentation run under the same bias schedule as ``mask`` (REGIMES.md: at the
# affordable d it also learns sparse atoms, which a report should show rather than hide).
VARIANTS: dict[str, dict[str, str]] = {
    "mask": dict(augment="mask", bias="schedule"),
    "none": dict(augment="none", bias="none"),
    "none_schedule": dict(augment="none", bias="schedule"),
    "supervised": dict(augment="supervised", bias="schedule"),
}

EXECUTORS = ("local", "dask")

# Fields every stored record has; a record missing one is partial and is recomputed.
RECORD_FIELDS = (
    "key",
    "fdcheck_version",
    "config",
    "variant",
    "status",
    "metrics",
    "history",
    "seconds",
    "arrays",
    "arrays_sha256",
    "checksum",
)

# Fields a RunSpec fixes itself; an override of one would silently contradict the spec's name.
_SPEC_FIELDS = ("d", "seed", "augment", "bias")
_KEY_RE = re.compile(r"^[0-9a-f]{64}$")
# Environment of worker processes: one BLAS/OpenMP thread each, so ``workers`` processes use ``workers`` cores.
_SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "FDCHECK_THREADS": "1",  # fdcheck.train's noise-drawing threads (the result does not depend on them)
}


class CorruptRecordWarning(UserWarning):
    """A stored record is damaged, partial or stale; it is ignored and the run will be recomputed."""


# --------------------------------------------------------------------------------------------------- grid


@dataclass(frozen=True)
class RunSpec:
    """One run of the grid: dimension ``d``, ``seed``, a variant name of :data:`VARIANTS` and overrides.

    ``overrides`` are further :class:`ModelConfig` fields (for example ``steps``); a mapping is accepted and
    stored as a sorted tuple of pairs, so two specs with the same overrides compare and hash equal. The spec is
    validated at construction: a bad ``d``, ``seed``, variant or override raises ``ValueError`` before any work.

    Args:
        d: the sparse dimension (``ModelConfig.scaled`` needs ``d >= 3``).
        seed: the run's seed (seeds contract: same ``seed`` and ``d`` share ``M`` and ``W0``).
        variant: a key of :data:`VARIANTS`.
        overrides: ``(name, value)`` pairs applied on top of ``ModelConfig.scaled(d)``; may not set
            ``d``, ``seed``, ``augment`` or ``bias`` (the spec's own fields).
    """

    d: int
    seed: int
    variant: str
    overrides: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant={self.variant!r} is not allowed; allowed: {', '.join(VARIANTS)}")
        items = self.overrides.items() if isinstance(self.overrides, Mapping) else self.overrides
        try:
            pairs = tuple(sorted((str(k), v) for k, v in items))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"overrides={self.overrides!r} must be a mapping or (name, value) pairs") from exc
        names = [k for k, _ in pairs]
        if len(set(names)) != len(names):
            raise ValueError(f"overrides={self.overrides!r} names a parameter twice")
        fixed = sorted(set(names) & set(_SPEC_FIELDS))
        if fixed:
            raise ValueError(f"overrides may not set {', '.join(fixed)}: they are the spec's own fields "
                             f"(d, seed, variant); allowed: any other ModelConfig field")
        object.__setattr__(self, "overrides", pairs)
        self.config()  # validate everything now: a bad value raises before any run starts

    def config(self) -> ModelConfig:
        """The run's configuration: ``ModelConfig.scaled(d, seed=seed, **VARIANTS[variant], **overrides)``."""
        return ModelConfig.scaled(self.d, seed=self.seed, **VARIANTS[self.variant], **dict(self.overrides))

    @property
    def name(self) -> str:
        """A short readable label, for progress bars and logs (not a key: overrides are summarised)."""
        extra = "".join(f",{k}={v}" for k, v in self.overrides)
        return f"d={self.d},seed={self.seed},{self.variant}{extra}"


def grid(ds: Iterable[int], seeds: int | Iterable[int], variants: Iterable[str],
         overrides_by_d: Mapping[int, Mapping[str, Any]] | None = None, *,
         overrides: Mapping[str, Any] | None = None) -> list[RunSpec]:
    """The full grid ``ds × seeds × variants`` as run specs, ``d`` outermost, then seed, then variant.

    Args:
        ds: the dimensions, each ``>= 3``, no repeats.
        seeds: a number ``n`` (seeds ``0 .. n-1``) or the seeds themselves, no repeats.
        variants: names from :data:`VARIANTS`, no repeats.
        overrides_by_d: optional overrides for single dimensions (``{64: {"steps": 2000}}``); they win over
            ``overrides``. A dimension not in ``ds`` raises ``ValueError``.
        overrides: optional overrides applied at every ``d``.

    Returns:
        ``len(ds) · len(seeds) · len(variants)`` specs.
    """
    ds = list(ds)
    seed_list = list(range(seeds)) if isinstance(seeds, int) and not isinstance(seeds, bool) else list(seeds)
    if isinstance(seeds, int) and not isinstance(seeds, bool) and seeds < 1:
        raise ValueError(f"seeds={seeds!r} must be at least 1 (a count) or a list of seeds")
    variants = list(variants)
    for name, values in (("ds", ds), ("seeds", seed_list), ("variants", variants)):
        if not values:
            raise ValueError(f"{name}={values!r} is empty; give at least one value")
        if len(set(values)) != len(values):
            raise ValueError(f"{name}={values!r} repeats a value")
    by_d = dict(overrides_by_d or {})
    unknown = sorted(set(by_d) - set(ds))
    if unknown:
        raise ValueError(f"overrides_by_d names d={unknown} not in ds={ds}")
    specs = []
    for d in ds:
        merged = {**(overrides or {}), **by_d.get(d, {})}
        for seed in seed_list:
            for variant in variants:
                specs.append(RunSpec(d=d, seed=seed, variant=variant, overrides=tuple(merged.items())))
    return specs


# The modules whose code decides what a run's record holds: a change to any of them gives new store keys.
RECORD_MODULES = ("backend", "config", "data", "augment", "network", "loss", "train", "probes", "metrics")


def code_fingerprint() -> str:
    """The first 12 hex digits of the SHA-256 of the source of :data:`RECORD_MODULES`."""
    from importlib import resources

    digest = hashlib.sha256()
    for name in RECORD_MODULES:
        digest.update(resources.files("fdcheck").joinpath(f"{name}.py").read_bytes())
    return digest.hexdigest()[:12]


def store_version() -> str:
    """``<fdcheck version>+code.<fingerprint>``: what the results store keys and checks records by."""
    from . import __version__

    return f"{__version__}+code.{code_fingerprint()}"


def variant_of(config: ModelConfig) -> str | None:
    """The :data:`VARIANTS` name whose augmentation and bias schedule ``config`` has, or ``None``."""
    for name, fields in VARIANTS.items():
        if all(getattr(config, k) == v for k, v in fields.items()):
            return name
    return None


# ------------------------------------------------------------------------------------------------- store


def _jsonable(value: Any) -> Any:
    """``value`` with NumPy scalars and arrays turned into Python numbers and lists; non-finite floats -> None.

    The store writes strict JSON (no ``NaN`` tokens, which other readers reject);
    :func:`fdcheck.metrics.measure_all` promises finite floats, so a non-finite value is a measurement bug and
    :meth:`ResultsStore.save` lists it in the record.
    """
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _nonfinite_names(metrics: Mapping[str, Any]) -> list[str]:
    names = []
    for k, v in metrics.items():
        try:
            if v is not None and not math.isfinite(float(v)):
                names.append(str(k))
        except (TypeError, ValueError):
            continue
    return sorted(names)


def _canonical(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ResultsStore:
    """Runs on disk: ``<root>/<key>.json`` (the record) and ``<root>/<key>.npz`` (its arrays).

    ``key = sha256(config.to_json() + "\\n" + "fdcheck " + version)``: any change of the configuration or of
    the fdcheck version gives a new key, so stale results are never reused. A record of a successful run::

        {"key", "fdcheck_version", "config": ModelConfig.to_dict(), "variant", "status": "ok",
         "metrics": {...measure_all...}, "history": [...], "seconds", "arrays": "<key>.npz",
         "arrays_sha256", "nonfinite_metrics": [...], "checksum"}

    A run whose function raised is stored with ``"status": "error"``, ``"error"`` (``"Type: message"``),
    ``"error_type"``, ``"traceback"``, ``"metrics": None``, ``"history": []`` and no arrays (``"arrays": None``):
    the failure is a result (for example ``TrainingDiverged`` at that configuration), kept so that a
    deterministic failure is not recomputed on every resume; ``run_sweep(..., retry_errors=True)`` or
    :meth:`delete` recomputes it. ``checksum`` is the SHA-256 of the record's canonical JSON without it.

    Concurrency: one writer per store (the sweep's client process). Two sweeps writing the same run at once
    leave a whole record from one of them, or, rarely, a JSON whose arrays checksum does not match, which
    :meth:`load` detects and the next sweep recomputes.

    Args:
        root: the store's directory (created if missing).
        version: the version to key by; defaults to :func:`store_version`.
    """

    def __init__(self, root: str | os.PathLike[str], version: str | None = None) -> None:
        if version is None:
            version = store_version()
        if not isinstance(version, str) or not version:
            raise ValueError(f"version={version!r} must be a non-empty string")
        self.root = Path(root)
        self.version = version
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"ResultsStore({str(self.root)!r}, version={self.version!r})"

    # keys and paths
    def key(self, config: ModelConfig) -> str:
        """SHA-256 (hex) of the canonical configuration JSON and the fdcheck version."""
        if not isinstance(config, ModelConfig):
            raise ValueError(f"config={config!r} must be a ModelConfig")
        return self._key_for(config, self.version)

    @staticmethod
    def _key_for(config: ModelConfig, version: str) -> str:
        return _sha256(f"{config.to_json()}\nfdcheck {version}".encode())

    def record_path(self, config: ModelConfig) -> Path:
        """Where the JSON record of ``config`` lives."""
        return self.root / f"{self.key(config)}.json"

    def arrays_path(self, config: ModelConfig) -> Path:
        """Where the ``.npz`` of ``config``'s arrays (``W``, ``b``, ``W0``, ``M``, ``head`` if any) lives."""
        return self.root / f"{self.key(config)}.npz"

    # writing
    def save(self, config: ModelConfig, outcome: Mapping[str, Any]) -> dict[str, Any]:
        """Store the outcome of one run and return its record.

        Args:
            config: the run's configuration.
            outcome: what the run function returned: either ``{"metrics": dict, "history": list,
                "seconds": float, "arrays": {name: array}}`` (a success) or ``{"error": str, ...}`` with
                optional ``"error_type"``, ``"traceback"``, ``"seconds"`` (the run raised).

        Returns:
            The record as written (the arrays replaced by their file name).
        """
        key = self.key(config)
        is_error = outcome.get("error") is not None
        if not is_error:
            missing = [f for f in ("metrics", "arrays") if not isinstance(outcome.get(f), Mapping)]
            if missing:
                raise ValueError(f"outcome lacks {', '.join(missing)} (a mapping each); got keys {sorted(outcome)}")
        payload: dict[str, Any] = {
            "key": key,
            "fdcheck_version": self.version,
            "config": config.to_dict(),
            "variant": variant_of(config),
            "seconds": float(outcome.get("seconds", 0.0) or 0.0),
        }
        if outcome.get("train_seconds") is not None:
            payload["train_seconds"] = float(outcome["train_seconds"])
        if is_error:
            payload.update(status="error", error=str(outcome["error"]),
                           error_type=str(outcome.get("error_type", "")),
                           traceback=str(outcome.get("traceback", "")),
                           metrics=None, history=[], arrays=None, arrays_sha256=None)
        else:
            arrays = {str(k): np.asarray(v) for k, v in outcome["arrays"].items()}
            buf = io.BytesIO()
            np.savez(buf, **arrays)
            blob = buf.getvalue()
            # Arrays first, JSON last: a JSON on disk always names arrays that were fully written before it.
            atomic_write_bytes(self.root / f"{key}.npz", blob, sync_dir=True)
            payload.update(status="ok", metrics=_jsonable(dict(outcome["metrics"])),
                           nonfinite_metrics=_nonfinite_names(outcome["metrics"]),
                           history=_jsonable(list(outcome.get("history", []))),
                           arrays=f"{key}.npz", arrays_sha256=_sha256(blob))
            if payload["nonfinite_metrics"]:
                logger.warning("run %s: non-finite metrics stored as null: %s", key[:12],
                               ", ".join(payload["nonfinite_metrics"]))
        payload["checksum"] = _sha256(_canonical(payload))
        atomic_write_bytes(self.root / f"{key}.json", _canonical(payload), sync_dir=True)
        return payload

    def delete(self, config: ModelConfig) -> bool:
        """Remove the record (and arrays) of ``config``; True when there was a record."""
        existed = False
        for path in (self.record_path(config), self.arrays_path(config)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                existed = existed or path.suffix == ".json"
        return existed

    # reading
    def load(self, config: ModelConfig) -> dict[str, Any] | None:
        """The record of ``config``, or ``None`` when there is none or it is damaged.

        A damaged record (unreadable JSON, a missing field, a checksum mismatch, a key or configuration that is
        not ``config``'s, another fdcheck version, missing or altered arrays) raises a
        :class:`CorruptRecordWarning` saying it will be recomputed, and is treated as missing.
        """
        key = self.key(config)
        path = self.root / f"{key}.json"
        if not path.exists():
            return None
        record, problem = self._read_valid(path, expected_key=key, expected_config=config.to_dict())
        if problem:
            self._report(path, problem)
            return None
        return record

    def load_arrays(self, config: ModelConfig) -> dict[str, np.ndarray]:
        """The stored arrays of ``config`` (``W``, ``b``, ``W0``, ``M``, ``head`` if any), checked first.

        Raises:
            KeyError: when the store holds no valid successful record of ``config``.
        """
        record = self.load(config)
        if record is None or record["status"] != "ok":
            raise KeyError(f"no stored arrays for the run {self.key(config)[:12]} (config d={config.d}, "
                           f"seed={config.seed}, augment={config.augment})")
        with np.load(self.root / record["arrays"], allow_pickle=False) as data:
            return {k: data[k] for k in data.files}

    def records(self) -> list[dict[str, Any]]:
        """Every valid record of this fdcheck version, ordered by ``(d, seed, variant, key)``.

        Damaged records raise a :class:`CorruptRecordWarning` and are left out; records of other fdcheck
        versions are skipped silently (they are not damaged, just not this version's).
        """
        found = []
        for path in sorted(self.root.glob("*.json")):
            if not _KEY_RE.match(path.stem):
                continue  # temporary files start with a dot; anything else is not ours
            record, problem = self._read_valid(path, expected_key=path.stem, expected_config=None)
            if problem == "other_version":
                continue
            if problem:
                self._report(path, problem)
                continue
            found.append(record)
        found.sort(key=lambda r: (r["config"]["d"], r["config"]["seed"], str(r["variant"]), r["key"]))
        return found

    def remove_temp_files(self) -> int:
        """Delete temporary files left by interrupted writes; call only while no sweep writes to this store."""
        count = 0
        for path in self.root.glob(".*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                count += 1
        return count

    def _report(self, path: Path, problem: str) -> None:
        message = f"results store: ignoring damaged record {path.name} ({problem}); the run will be recomputed"
        logger.warning(message)
        warnings.warn(message, CorruptRecordWarning, stacklevel=3)

    @staticmethod
    def _own_key_of(record: dict[str, Any]) -> str | None:
        """The key of ``record`` under the version it names, or None when its config is not valid."""
        try:
            return ResultsStore._key_for(ModelConfig.from_dict(record["config"]), str(record["fdcheck_version"]))
        except (TypeError, ValueError):
            return None

    def _read_valid(self, path: Path, *, expected_key: str,
                    expected_config: dict[str, Any] | None) -> tuple[dict[str, Any] | None, str | None]:
        """``(record, None)`` when the record at ``path`` is whole and consistent, else ``(None, problem)``."""
        try:
            record = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            return None, f"unreadable JSON: {exc}"
        if not isinstance(record, dict):
            return None, "not a JSON object"
        missing = [f for f in RECORD_FIELDS if f not in record]
        if missing:
            return None, f"missing fields: {', '.join(missing)}"
        body = {k: v for k, v in record.items() if k != "checksum"}
        try:
            actual = _sha256(_canonical(body))
        except ValueError as exc:
            return None, f"not canonical JSON: {exc}"
        if record["checksum"] != actual:
            return None, "checksum mismatch"
        if record["fdcheck_version"] != self.version:
            if expected_config is None and self._own_key_of(record) == expected_key:
                return None, "other_version"  # a whole record of another version, under that version's key
            return None, f"written by fdcheck {record['fdcheck_version']}, this is {self.version}"
        if record["key"] != expected_key:
            return None, f"key mismatch: the record says {str(record['key'])[:12]}"
        try:
            config = ModelConfig.from_dict(record["config"])
        except (TypeError, ValueError) as exc:
            return None, f"invalid config: {exc}"
        if self.key(config) != expected_key or (expected_config is not None and record["config"] != expected_config):
            return None, "the stored config does not match the key"
        if record["status"] == "ok":
            if record["arrays"] != f"{expected_key}.npz" or not isinstance(record["metrics"], dict):
                return None, "inconsistent success record"
            try:
                blob = (self.root / record["arrays"]).read_bytes()
            except OSError:
                return None, f"arrays file {record['arrays']} is missing"
            if _sha256(blob) != record["arrays_sha256"]:
                return None, f"arrays file {record['arrays']} does not match its checksum"
        elif record["status"] != "error" or "error" not in record:
            return None, f"unknown status {record['status']!r}"
        return record, None


# -------------------------------------------------------------------------------------------------- runs


def execute_run(config: ModelConfig) -> dict[str, Any]:
    """Train ``config`` once and measure every claim's quantity on it.

    Follows the seeds contract: the measurement uses ``eval_rng``, the fourth child of ``Random(config.seed)``,
    and the data model with the run's dictionary ``M``.

    Args:
        config: the run's configuration.

    Returns:
        ``{"metrics": measure_all(...), "history": [...], "seconds": float, "arrays": {"W", "b", "W0", "M",
        "head" (supervised runs only): NumPy arrays}}``, which :meth:`ResultsStore.save` turns into a record.

    Raises:
        fdcheck.train.TrainingDiverged: when training blows up (:func:`run_sweep` records it as an error).
    """
    # Imported here so that the store and the executors do not depend on training being importable.
    from .backend import to_numpy
    from .metrics import measure_all
    from .train import make_model, train

    start = time.perf_counter()
    result = train(config, progress=False)
    model, rngs = make_model(config, M=result.M)
    metrics = measure_all(result.W, result.b, result.W0, model, config, rngs["eval"], head=result.head)
    arrays = {"W": result.W, "b": result.b, "W0": result.W0, "M": result.M}
    if result.head is not None:
        arrays["head"] = result.head
    return {
        "metrics": dict(metrics),
        "history": list(result.history),
        "seconds": time.perf_counter() - start,
        "train_seconds": float(result.seconds),
        "arrays": {k: to_numpy(v) for k, v in arrays.items()},
    }


def _run_one(run_fn: Callable[[ModelConfig], dict[str, Any]], config: ModelConfig,
             single_thread: bool = False) -> dict[str, Any]:
    """Call ``run_fn(config)``; an ``Exception`` becomes an error outcome instead of killing the sweep.

    ``KeyboardInterrupt`` and ``SystemExit`` are not caught: an interrupted run is not a result.
    """
    start = time.perf_counter()
    limit = contextlib.nullcontext()
    if single_thread:
        # This is a worker process (or a worker of a Dask cluster): one core per run is the point of it.
        os.environ.update(_SINGLE_THREAD_ENV)
        with contextlib.suppress(ImportError):
            from threadpoolctl import threadpool_limits

            limit = threadpool_limits(limits=1)
    try:
        with limit:
            return run_fn(config)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}", "error_type": type(exc).__name__,
                "traceback": traceback.format_exc(), "seconds": time.perf_counter() - start}


def _init_worker() -> None:
    os.environ.update(_SINGLE_THREAD_ENV)


@contextlib.contextmanager
def _single_thread_env() -> Iterator[None]:
    """Set one-thread BLAS/OpenMP variables while worker processes start (they read them at import)."""
    saved = {k: os.environ.get(k) for k in _SINGLE_THREAD_ENV}
    os.environ.update(_SINGLE_THREAD_ENV)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _lost(config: ModelConfig, key: str, version: str, exc: BaseException) -> dict[str, Any]:
    """A record for a run the executor lost (worker died, pool broke): returned, never stored, so retried."""
    return {"key": key, "fdcheck_version": version, "config": config.to_dict(), "variant": variant_of(config),
            "status": "lost", "error": f"{type(exc).__name__}: {exc}", "error_type": type(exc).__name__,
            "metrics": None, "history": [], "seconds": 0.0, "arrays": None, "arrays_sha256": None}


def _run_in_process(todo, run_fn, on_done, on_lost, workers, scheduler):  # noqa: ARG001 (uniform signature)
    for key, config in todo:
        on_done(key, _run_one(run_fn, config))


def _run_local_processes(todo, run_fn, on_done, on_lost, workers, scheduler):  # noqa: ARG001
    context = multiprocessing.get_context("spawn")  # fork is unsafe with threads (BLAS, tqdm, Dask) in the parent
    pool = None
    try:
        with _single_thread_env():
            pool = concurrent.futures.ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=context,
                                                          initializer=_init_worker)
            futures = {pool.submit(_run_one, run_fn, config, True): (key, config) for key, config in todo}
        _collect(futures, concurrent.futures.as_completed(futures), on_done, on_lost,
                 lambda f: f.result(), lambda f: f.done() and not f.cancelled() and f.exception() is None)
        pool.shutdown(wait=True)
    except BaseException:
        if pool is not None:
            # Runs not started are dropped; a kill loses at most the in-flight runs.
            pool.shutdown(wait=False, cancel_futures=True)
        raise


def _run_dask(todo, run_fn, on_done, on_lost, workers, scheduler):
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as exc:  # pragma: no cover - dask[distributed] is a dependency
        raise ValueError("executor='dask' needs dask[distributed]; pip install 'dask[distributed]'") from exc
    with contextlib.ExitStack() as stack:
        if scheduler in (None, "local"):
            # Nanny processes start with OMP/MKL/OPENBLAS_NUM_THREADS=1 (distributed.nanny.pre-spawn-environ).
            cluster = stack.enter_context(LocalCluster(n_workers=min(workers, len(todo)), threads_per_worker=1,
                                                       processes=True, dashboard_address=None))
            client = stack.enter_context(Client(cluster))
        else:
            client = stack.enter_context(Client(scheduler))
        futures = {client.submit(_run_one, run_fn, config, True, pure=False): (key, config)
                   for key, config in todo}
        try:
            _collect(futures, as_completed(list(futures)), on_done, on_lost,
                     lambda f: f.result(), lambda f: f.status == "finished")
        except BaseException:
            client.cancel(list(futures))
            raise


def _collect(futures, completed, on_done, on_lost, result_of, finished_ok) -> None:
    """Save each run as it completes; on an interrupt, save what already finished, then re-raise."""
    handled = set()
    try:
        for future in completed:
            key, config = futures[future]
            handled.add(key)
            try:
                outcome = result_of(future)
            except Exception as exc:  # the executor failed the task: the run did not produce a result
                on_lost(key, config, exc)
                continue
            on_done(key, outcome)
    except BaseException:
        for future, (key, _config) in futures.items():
            if key in handled:
                continue
            with contextlib.suppress(Exception):
                if finished_ok(future):
                    on_done(key, result_of(future))
        raise


_EXECUTOR_FUNCTIONS = {"in_process": _run_in_process, "local": _run_local_processes, "dask": _run_dask}


def run_sweep(specs: Sequence[RunSpec | ModelConfig], store: ResultsStore, *, executor: str = "local",
              scheduler: str | None = None, workers: int = 2, progress: bool = True,
              run_fn: Callable[[ModelConfig], dict[str, Any]] = execute_run,
              retry_errors: bool = False) -> list[dict[str, Any]]:
    """Run every spec that ``store`` does not hold yet, save each as it finishes, return all records.

    Resume: a run whose valid record is in the store is not recomputed, so rerunning an interrupted sweep
    computes only the runs that had not finished. Runs with the same configuration are computed once.

    Errors: a run whose function raises an ``Exception`` (for example ``TrainingDiverged``) does not stop the
    sweep; it is stored as a record with ``"status": "error"`` and is not recomputed on resume unless
    ``retry_errors=True``. A run the executor loses (a worker process dies) comes back with
    ``"status": "lost"`` and is not stored, so the next sweep retries it. ``KeyboardInterrupt`` stops the sweep
    after saving the runs that had finished.

    Args:
        specs: run specs (or configurations) in the order the records are returned.
        store: where records are read from and written to (on the client's disk).
        executor: ``"local"`` (``workers`` spawned processes, one BLAS thread each; ``workers=1`` runs in this
            process, simplest to debug) or ``"dask"``.
        scheduler: a Dask scheduler address (``"tcp://host:port"``) to run on an existing cluster (its workers
            need this fdcheck installed), or ``"local"`` for a local Dask cluster of ``workers`` processes;
            giving one implies ``executor="dask"``. With ``executor="dask"`` and no scheduler, a local cluster.
        workers: number of local worker processes (ignored on an existing Dask cluster).
        progress: show a progress bar over runs (only when stderr is a terminal).
        run_fn: the function that computes one run (tests inject a cheap one; it must be picklable).
        retry_errors: recompute runs whose stored record is an error.

    Returns:
        One record per spec, in the order of ``specs`` (records of identical specs are the same object).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor={executor!r} is not allowed; allowed: {', '.join(EXECUTORS)}")
    if not (isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1):
        raise ValueError(f"workers={workers!r} must be an integer >= 1")
    if scheduler is not None and not (isinstance(scheduler, str) and scheduler):
        raise ValueError(f"scheduler={scheduler!r} must be an address such as 'tcp://host:8786' or 'local'")
    if not isinstance(store, ResultsStore):
        raise ValueError(f"store={store!r} must be a ResultsStore")
    if not callable(run_fn):
        raise ValueError(f"run_fn={run_fn!r} must be callable")
    configs = []
    for i, spec in enumerate(specs):
        if isinstance(spec, RunSpec):
            configs.append(spec.config())
        elif isinstance(spec, ModelConfig):
            configs.append(spec)
        else:
            raise ValueError(f"specs[{i}]={spec!r} must be a RunSpec or a ModelConfig")
    if scheduler is not None:
        executor = "dask"
    mode = "in_process" if executor == "local" and workers == 1 else executor

    keys = [store.key(c) for c in configs]
    unique = dict(zip(keys, configs))  # first occurrence wins; same key means same configuration
    records: dict[str, dict[str, Any]] = {}
    todo = []
    for key, config in unique.items():
        record = store.load(config)
        if record is not None and (record["status"] == "ok" or not retry_errors):
            records[key] = record
        else:
            todo.append((key, config))
    logger.info("sweep: %d runs, %d in the store, %d to compute (%s)", len(unique), len(records), len(todo), mode)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(unique), initial=len(records), desc="fdcheck sweep", unit="run",
               disable=not progress or not sys.stderr.isatty())
    names = {key: f"d={c.d},seed={c.seed},{variant_of(c) or c.augment}" for key, c in unique.items()}

    def on_done(key: str, outcome: dict[str, Any]) -> None:
        record = store.save(unique[key], outcome)
        records[key] = record
        if record["status"] == "error":
            logger.warning("run %s failed: %s", names[key], record["error"])
        bar.set_postfix_str(f"{names[key]} {record['status']}", refresh=False)
        bar.update(1)

    def on_lost(key: str, config: ModelConfig, exc: BaseException) -> None:
        logger.warning("run %s lost by the executor (%s: %s); it will be retried next time", names[key],
                       type(exc).__name__, exc)
        records[key] = _lost(config, key, store.version, exc)
        bar.update(1)

    try:
        if todo:
            _EXECUTOR_FUNCTIONS[mode](todo, run_fn, on_done, on_lost, workers, scheduler)
    finally:
        bar.close()
    return [records[k] for k in keys]
