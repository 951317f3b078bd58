"""Tests of the sweep and the results store (fdcheck/sweep.py).

Most tests inject a cheap, deterministic run function (:class:`FakeRun`) so they exercise the store, resume and
the executors in well under a second each; every call of it leaves a file in a directory, because worker
processes do not share memory with the test. One integration test trains a tiny real configuration.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import fdcheck.sweep as sweep
from fdcheck.config import ModelConfig
from fdcheck.sweep import (
    VARIANTS,
    CorruptRecordWarning,
    ResultsStore,
    RunSpec,
    grid,
    run_sweep,
    store_version,
    variant_of,
)

STEPS = (("steps", 20),)  # irrelevant to the fake run, but keeps every config a cheap one


def _digest(config: ModelConfig) -> str:
    return hashlib.sha256(config.to_json().encode()).hexdigest()


@dataclass(frozen=True)
class FakeRun:
    """A run function that is deterministic in the configuration and leaves one file per call in ``calls``.

    ``fail_seeds``: seeds whose run raises ``FloatingPointError`` (a stand-in for ``TrainingDiverged``).
    ``interrupt_after``: raise ``KeyboardInterrupt`` once that many calls have been made (a simulated kill).
    ``sleep``: seconds each call takes, so that a test can kill a sweep between two runs.
    """

    calls: str
    fail_seeds: tuple[int, ...] = ()
    interrupt_after: int | None = None
    sleep: float = 0.0

    def __call__(self, config: ModelConfig) -> dict:
        calls = Path(self.calls)
        calls.mkdir(parents=True, exist_ok=True)
        if self.interrupt_after is not None and len(list(calls.iterdir())) >= self.interrupt_after:
            raise KeyboardInterrupt
        digest = _digest(config)
        (calls / f"{digest}-{uuid.uuid4().hex}").touch()
        if self.sleep:
            time.sleep(self.sleep)
        if config.seed in self.fail_seeds:
            raise FloatingPointError(f"loss diverged at seed {config.seed}")
        rng = np.random.default_rng(int(digest[:16], 16))
        W0 = rng.standard_normal((config.m, config.d1)).astype(np.float32)
        W = W0 + rng.standard_normal(W0.shape).astype(np.float32)
        b = np.abs(rng.standard_normal(config.m)).astype(np.float32)
        M = np.linalg.qr(rng.standard_normal((config.d1, config.d)))[0]
        return {
            "metrics": {"w_norm": float(np.linalg.norm(W)), "b_mean": np.float32(b.mean()),
                        "seed_times_d": config.seed * config.d},
            "history": [{"step": 0, "loss": float(W0[0, 0])}, {"step": config.steps, "loss": float(W[0, 0])}],
            "seconds": 0.0,
            "arrays": {"W": W, "b": b, "W0": W0, "M": M},
        }


def calls_of(calls_dir: Path) -> Counter:
    """How many times each configuration (by the digest of its JSON) was computed."""
    if not calls_dir.exists():
        return Counter()
    return Counter(p.name.split("-")[0] for p in calls_dir.iterdir())


def content(record: dict) -> dict:
    """A record without the fields that legitimately differ between two computations of the same run."""
    return {k: v for k, v in record.items() if k not in ("seconds", "checksum", "traceback")}


def small_specs(seeds=2, variants=("mask", "none"), ds=(8, 10)) -> list[RunSpec]:
    return grid(ds, seeds, variants, overrides=dict(STEPS))


# ------------------------------------------------------------------------------------------ specs and grid


def test_runspec_config_applies_variant_seed_and_overrides():
    for name, fields in VARIANTS.items():
        config = RunSpec(16, 3, name, STEPS).config()
        assert (config.d, config.seed, config.steps) == (16, 3, 20)
        assert {k: getattr(config, k) for k in fields} == fields
        assert variant_of(config) == name
    # Overrides are normalised: a mapping and pairs in another order give the same spec and hash.
    a = RunSpec(8, 0, "mask", {"steps": 20, "eta": 0.1})
    b = RunSpec(8, 0, "mask", (("eta", 0.1), ("steps", 20)))
    assert a == b and hash(a) == hash(b)
    assert a.config() == ModelConfig.scaled(8, seed=0, augment="mask", bias="schedule", steps=20, eta=0.1)


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(d=8, seed=0, variant="rotate"), "variant='rotate'"),
    (dict(d=8, seed=0, variant="mask", overrides=(("augment", "none"),)), "augment"),
    (dict(d=8, seed=0, variant="mask", overrides=(("seed", 1),)), "seed"),
    (dict(d=2, seed=0, variant="mask"), "d=2"),
    (dict(d=8, seed=-1, variant="mask"), "seed=-1"),
    (dict(d=8, seed=0, variant="mask", overrides=(("steps", -5),)), "steps=-5"),
    (dict(d=8, seed=0, variant="mask", overrides=(("colour", 1),)), "colour"),
])
def test_runspec_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RunSpec(**kwargs)


def test_grid_order_size_and_overrides_by_d():
    specs = grid([8, 16], 2, ["mask", "none", "supervised"], overrides_by_d={16: {"steps": 7}}, overrides=dict(STEPS))
    assert len(specs) == 2 * 2 * 3
    assert [(s.d, s.seed, s.variant) for s in specs[:4]] == [(8, 0, "mask"), (8, 0, "none"), (8, 0, "supervised"),
                                                             (8, 1, "mask")]
    assert {s.config().steps for s in specs if s.d == 8} == {20}
    assert {s.config().steps for s in specs if s.d == 16} == {7}  # overrides_by_d wins over overrides
    assert [s.seed for s in grid([8], [5, 9], ["mask"])] == [5, 9]
    for bad, match in [(dict(seeds=0), "seeds=0"), (dict(ds=[]), "ds="), (dict(variants=["mask", "mask"]), "repeats"),
                       (dict(overrides_by_d={32: {}}), "d=\\[32\\]"), (dict(variants=["rotate"]), "rotate")]:
        args = dict(ds=[8], seeds=1, variants=["mask"]) | bad
        with pytest.raises(ValueError, match=match):
            grid(**args)


# ----------------------------------------------------------------------------------------------- keying


def test_key_depends_on_config_and_version(tmp_path):
    store = ResultsStore(tmp_path, version="1.0")
    c = RunSpec(8, 0, "mask", STEPS).config()
    assert store.key(c) == store.key(RunSpec(8, 0, "mask", STEPS).config())
    assert len(store.key(c)) == 64 and int(store.key(c), 16) >= 0
    different = [c.replace(seed=1), c.replace(augment="none"), c.replace(eta=c.eta * (1 + 1e-12)), c.replace(steps=21),
                 c.replace(backend="array_api_strict")]
    keys = {store.key(x) for x in different}
    assert len(keys) == len(different) and store.key(c) not in keys
    assert ResultsStore(tmp_path, version="1.1").key(c) != store.key(c)
    from fdcheck import __version__

    assert ResultsStore(tmp_path).version == store_version()
    assert store_version().startswith(__version__ + "+code.")


def test_code_fingerprint_follows_the_source_of_the_record_modules(monkeypatch):
    """Editing a module that trains or measures a run must change the fingerprint (hence every store key)."""
    import fdcheck.sweep as sweep

    before = sweep.code_fingerprint()
    assert len(before) == 12 and before == sweep.code_fingerprint()
    monkeypatch.setattr(sweep, "RECORD_MODULES", sweep.RECORD_MODULES[:-1])  # metrics.py no longer counted
    assert sweep.code_fingerprint() != before


def test_save_load_roundtrip_and_layout(tmp_path):
    store = ResultsStore(tmp_path / "store")
    c = RunSpec(8, 1, "none", STEPS).config()
    assert store.load(c) is None
    outcome = FakeRun(str(tmp_path / "calls"))(c)
    saved = store.save(c, outcome)
    assert sorted(p.name for p in store.root.iterdir()) == sorted([f"{store.key(c)}.json", f"{store.key(c)}.npz"])
    loaded = store.load(c)
    assert loaded == saved
    assert loaded["status"] == "ok" and loaded["variant"] == "none" and loaded["config"] == c.to_dict()
    assert loaded["metrics"] == {"w_norm": outcome["metrics"]["w_norm"], "b_mean": float(outcome["metrics"]["b_mean"]),
                                 "seed_times_d": 8}
    arrays = store.load_arrays(c)
    assert sorted(arrays) == ["M", "W", "W0", "b"]
    for name, value in outcome["arrays"].items():
        np.testing.assert_array_equal(arrays[name], value)
    with np.load(store.arrays_path(c), allow_pickle=False) as data:  # readable without fdcheck
        np.testing.assert_array_equal(data["W"], outcome["arrays"]["W"])
    assert store.records() == [saved]


def test_nonfinite_metric_is_stored_as_null_and_listed(tmp_path):
    store = ResultsStore(tmp_path)
    c = RunSpec(8, 0, "mask", STEPS).config()
    outcome = FakeRun(str(tmp_path / "calls"))(c)
    outcome["metrics"]["broken"] = float("nan")
    record = store.save(c, outcome)
    assert record["metrics"]["broken"] is None and record["nonfinite_metrics"] == ["broken"]
    assert b"NaN" not in store.record_path(c).read_bytes()  # strict JSON
    assert store.load(c) == record


# ------------------------------------------------------------------------------------ corruption, atomicity


def _rewrite(path: Path, change) -> None:
    """Apply ``change`` to the record's JSON and re-seal its checksum, so only the intended defect remains."""
    record = json.loads(path.read_bytes())
    change(record)
    body = {k: v for k, v in record.items() if k != "checksum"}
    record["checksum"] = sweep._sha256(sweep._canonical(body))
    path.write_bytes(sweep._canonical(record))


def _corrupt(kind: str, store: ResultsStore, c: ModelConfig, other: ModelConfig) -> None:
    jpath, npath = store.record_path(c), store.arrays_path(c)
    if kind == "truncated_json":
        jpath.write_bytes(jpath.read_bytes()[: jpath.stat().st_size // 2])
    elif kind == "empty_json":
        jpath.write_bytes(b"")
    elif kind == "not_utf8":
        jpath.write_bytes(b"\xff\xfe\x00garbage")
    elif kind == "missing_field":
        _rewrite(jpath, lambda r: r.pop("metrics"))
    elif kind == "checksum_mismatch":
        record = json.loads(jpath.read_bytes())
        record["metrics"]["w_norm"] += 1.0
        jpath.write_bytes(sweep._canonical(record))
    elif kind == "other_version":
        _rewrite(jpath, lambda r: r.update(fdcheck_version="0.0.1"))
    elif kind == "key_mismatch":  # another run's (valid) record under this run's name
        jpath.write_bytes(store.record_path(other).read_bytes())
    elif kind == "config_mismatch":
        _rewrite(jpath, lambda r: r["config"].update(eta=0.123))
    elif kind == "npz_missing":
        npath.unlink()
    elif kind == "npz_truncated":
        npath.write_bytes(npath.read_bytes()[:100])
    elif kind == "npz_altered":
        data = bytearray(npath.read_bytes())
        data[-200] ^= 0xFF
        npath.write_bytes(bytes(data))
    else:  # pragma: no cover
        raise AssertionError(kind)


CORRUPTIONS = ["truncated_json", "empty_json", "not_utf8", "missing_field", "checksum_mismatch", "other_version",
               "key_mismatch", "config_mismatch", "npz_missing", "npz_truncated", "npz_altered"]


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_corrupt_record_is_detected_and_recomputed(tmp_path, kind):
    store = ResultsStore(tmp_path / "store")
    calls = tmp_path / "calls"
    fake = FakeRun(str(calls))
    spec, other_spec = RunSpec(8, 0, "mask", STEPS), RunSpec(8, 1, "mask", STEPS)
    c, other = spec.config(), other_spec.config()
    good = run_sweep([spec, other_spec], store, workers=1, progress=False, run_fn=fake)[0]
    _corrupt(kind, store, c, other)

    with pytest.warns(CorruptRecordWarning, match="will be recomputed"):
        assert store.load(c) is None
    with pytest.warns(CorruptRecordWarning):
        assert [r["key"] for r in store.records()] == [store.key(other)]
    with pytest.warns(CorruptRecordWarning):
        again = run_sweep([spec, other_spec], store, workers=1, progress=False, run_fn=fake)
    assert calls_of(calls) == Counter({_digest(c): 2, _digest(other): 1})  # only the damaged run recomputed
    assert content(again[0]) == content(good)
    assert store.load(c) == again[0]  # healed: no warning any more
    np.testing.assert_array_equal(store.load_arrays(c)["W"], fake(c)["arrays"]["W"])


def test_leftover_temp_file_is_never_read(tmp_path):
    """A crash between writing a temporary file and renaming it leaves the temp file, never a record."""
    store = ResultsStore(tmp_path / "store")
    spec = RunSpec(8, 0, "mask", STEPS)
    c = spec.config()
    record = store.save(c, FakeRun(str(tmp_path / "scratch"))(c))
    temp = store.root / f".{store.key(c)}.json.abc123.tmp"
    store.record_path(c).rename(temp)  # a whole, valid-looking record, but only under its temporary name
    (store.root / f".{store.key(c)}.npz.def456.tmp").write_bytes(b"half an npz")
    assert store.load(c) is None and store.records() == []
    calls = tmp_path / "calls"
    again = run_sweep([spec], store, workers=1, progress=False, run_fn=FakeRun(str(calls)))
    assert sum(calls_of(calls).values()) == 1 and content(again[0]) == content(record)
    assert store.remove_temp_files() == 2
    assert not list(store.root.glob(".*"))


@pytest.mark.parametrize("crash_at", [1, 2])
def test_crash_during_save_leaves_no_record(tmp_path, monkeypatch, crash_at):
    """Kill the save at the npz rename (1) or at the JSON rename (2): nothing is read back, the run is redone."""
    store = ResultsStore(tmp_path / "store")
    spec = RunSpec(8, 0, "none", STEPS)
    c = spec.config()
    real_replace = os.replace
    count = {"n": 0}

    def crashing_replace(src, dst):
        count["n"] += 1
        if count["n"] == crash_at:
            raise OSError("simulated crash")
        real_replace(src, dst)

    monkeypatch.setattr(sweep.os, "replace", crashing_replace)
    with pytest.raises(OSError, match="simulated crash"):
        store.save(c, FakeRun(str(tmp_path / "scratch"))(c))
    monkeypatch.setattr(sweep.os, "replace", real_replace)
    assert not store.record_path(c).exists()
    assert store.load(c) is None and store.records() == []
    calls = tmp_path / "calls"
    record = run_sweep([spec], store, workers=1, progress=False, run_fn=FakeRun(str(calls)))[0]
    assert sum(calls_of(calls).values()) == 1 and record["status"] == "ok" and store.load(c) == record


# ---------------------------------------------------------------------------------------------- resume


def test_resume_after_interrupt_recomputes_only_unfinished(tmp_path):
    specs = small_specs()  # 8 runs
    store = ResultsStore(tmp_path / "store")
    calls = tmp_path / "calls"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(specs, store, workers=1, progress=False, run_fn=FakeRun(str(calls), interrupt_after=3))
    first = calls_of(calls)
    assert sum(first.values()) == 3 and len(store.records()) == 3  # every finished run was saved

    resumed = run_sweep(specs, store, workers=1, progress=False, run_fn=FakeRun(str(calls)))
    total = calls_of(calls)
    assert set(total.values()) == {1} and len(total) == len(specs)  # nothing computed twice

    fresh_store = ResultsStore(tmp_path / "fresh")
    fresh = run_sweep(specs, fresh_store, workers=1, progress=False, run_fn=FakeRun(str(tmp_path / "fresh_calls")))
    assert [content(r) for r in resumed] == [content(r) for r in fresh]
    assert [r["key"] for r in resumed] == [fresh_store.key(s.config()) for s in specs]  # spec order


def test_resume_after_interrupt_in_worker_processes(tmp_path):
    """An interrupt surfacing from a worker stops the pool; finished runs are kept, the rest is redone once."""
    specs = small_specs()
    store = ResultsStore(tmp_path / "store")
    calls = tmp_path / "calls"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(specs, store, workers=2, progress=False, run_fn=FakeRun(str(calls), interrupt_after=4))
    saved = {r["key"] for r in store.records()}
    # FakeRun checks the call count before adding its own call, so each of the 2 workers can pass the check at
    # count 3: up to interrupt_after + workers - 1 = 5 runs can finish before the interrupt.
    assert 1 <= len(saved) <= 4 + 1
    before = calls_of(calls)
    resumed = run_sweep(specs, store, workers=2, progress=False, run_fn=FakeRun(str(calls)))
    recomputed = calls_of(calls) - before
    assert sum(recomputed.values()) == len(specs) - len(saved)
    for spec in specs:
        c = spec.config()
        assert recomputed[_digest(c)] == (0 if store.key(c) in saved else 1)
    assert all(r["status"] == "ok" for r in resumed)


def test_resume_after_sigkill(tmp_path):
    """Kill -9 a sweep in another process between runs; the rerun computes only the runs that were not saved."""
    specs = small_specs()  # 8 runs of 0.25 s each
    store_dir, calls = tmp_path / "store", tmp_path / "calls"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_sweep import FakeRun, small_specs
        from fdcheck.sweep import ResultsStore, run_sweep
        run_sweep(small_specs(), ResultsStore({str(store_dir)!r}), workers=1, progress=False,
                  run_fn=FakeRun({str(calls)!r}, sleep=0.25))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(store_dir.glob("[0-9a-f]*.json"))) < 3:
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    store = ResultsStore(store_dir)
    saved = {r["key"] for r in store.records()}  # no warning: a kill leaves whole records only
    assert 3 <= len(saved) < len(specs)
    before = calls_of(calls)

    resumed = run_sweep(specs, store, workers=1, progress=False, run_fn=FakeRun(str(calls)))
    after = calls_of(calls)
    recomputed = after - before
    assert sum(recomputed.values()) == len(specs) - len(saved)
    for spec in specs:
        c = spec.config()
        assert (recomputed[_digest(c)] == 0) == (store.key(c) in saved)
    assert all(r["status"] == "ok" for r in resumed)


def test_duplicate_specs_are_computed_once(tmp_path):
    calls = tmp_path / "calls"
    spec = RunSpec(8, 0, "mask", STEPS)
    records = run_sweep([spec, RunSpec(8, 1, "mask", STEPS), spec.config()], ResultsStore(tmp_path / "s"),
                        workers=1, progress=False, run_fn=FakeRun(str(calls)))
    assert records[0] is records[2] and sum(calls_of(calls).values()) == 2


# ---------------------------------------------------------------------------------------------- errors


def test_error_records_are_stored_marked_and_not_retried_by_default(tmp_path):
    specs = small_specs(ds=(8,))  # seeds 0, 1 x mask, none
    store = ResultsStore(tmp_path / "store")
    calls = tmp_path / "calls"
    fake = FakeRun(str(calls), fail_seeds=(1,))
    records = run_sweep(specs, store, workers=1, progress=False, run_fn=fake)
    assert [r["status"] for r in records] == ["ok", "ok", "error", "error"]
    for r in records[2:]:
        assert r["error"] == "FloatingPointError: loss diverged at seed 1" and r["error_type"] == "FloatingPointError"
        assert r["metrics"] is None and r["arrays"] is None and "FloatingPointError" in r["traceback"]
        assert not (store.root / f"{r['key']}.npz").exists()
        assert store.load(ModelConfig.from_dict(r["config"]))["status"] == "error"
    with pytest.raises(KeyError):
        store.load_arrays(specs[2].config())
    assert sum(calls_of(calls).values()) == 4

    run_sweep(specs, store, workers=1, progress=False, run_fn=fake)  # resume: the deterministic failure stays
    assert sum(calls_of(calls).values()) == 4
    healed = run_sweep(specs, store, workers=1, progress=False, run_fn=FakeRun(str(calls)), retry_errors=True)
    assert sum(calls_of(calls).values()) == 6 and [r["status"] for r in healed] == ["ok"] * 4


def test_interrupt_is_not_recorded_as_an_error(tmp_path):
    store = ResultsStore(tmp_path / "store")
    with pytest.raises(KeyboardInterrupt):
        run_sweep(small_specs(ds=(8,)), store, workers=1, progress=False,
                  run_fn=FakeRun(str(tmp_path / "calls"), interrupt_after=0))
    assert store.records() == []


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(executor="spark"), "executor='spark'"),
    (dict(workers=0), "workers=0"),
    (dict(workers=1.5), "workers=1.5"),
    (dict(scheduler=""), "scheduler=''"),
    (dict(run_fn=None), "run_fn=None"),
])
def test_run_sweep_rejects_bad_arguments_before_any_work(tmp_path, kwargs, match):
    calls = tmp_path / "calls"
    args = dict(workers=1, progress=False, run_fn=FakeRun(str(calls))) | kwargs
    with pytest.raises(ValueError, match=match):
        run_sweep(small_specs(), ResultsStore(tmp_path / "s"), **args)
    with pytest.raises(ValueError, match="specs\\[1\\]"):
        run_sweep([small_specs()[0], (8, 0, "mask")], ResultsStore(tmp_path / "s"), workers=1, progress=False,
                  run_fn=FakeRun(str(calls)))
    assert not calls.exists()


# ------------------------------------------------------------------------------------------- executors


def test_local_processes_equal_in_process(tmp_path):
    specs = small_specs(seeds=3)  # 12 runs, seed 1 fails
    serial = run_sweep(specs, ResultsStore(tmp_path / "serial"), workers=1, progress=False,
                       run_fn=FakeRun(str(tmp_path / "c1"), fail_seeds=(1,)))
    calls = tmp_path / "c2"
    parallel_store = ResultsStore(tmp_path / "parallel")
    parallel = run_sweep(specs, parallel_store, executor="local", workers=2, progress=False,
                         run_fn=FakeRun(str(calls), fail_seeds=(1,)))
    assert [content(r) for r in parallel] == [content(r) for r in serial]
    assert set(calls_of(calls).values()) == {1} and len(calls_of(calls)) == len(specs)
    c = specs[0].config()
    np.testing.assert_array_equal(parallel_store.load_arrays(c)["W"], FakeRun(str(tmp_path / "c3"))(c)["arrays"]["W"])


def test_dask_local_cluster_equals_local_executor(tmp_path):
    pytest.importorskip("distributed")
    specs = small_specs(seeds=3)
    local = run_sweep(specs, ResultsStore(tmp_path / "local"), workers=1, progress=False,
                      run_fn=FakeRun(str(tmp_path / "c1"), fail_seeds=(2,)))
    from distributed import LocalCluster

    calls = tmp_path / "c2"
    store = ResultsStore(tmp_path / "dask")
    # Half the grid on an existing cluster reached by its address, then the whole grid on a cluster the sweep
    # starts itself: resume works the same on Dask.
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://")
        run_sweep(specs[:5], store, scheduler=cluster.scheduler_address, progress=False,
                  run_fn=FakeRun(str(calls), fail_seeds=(2,)))
    assert len(calls_of(calls)) == 5
    dask = run_sweep(specs, store, executor="dask", workers=2, progress=False,
                     run_fn=FakeRun(str(calls), fail_seeds=(2,)))
    assert [content(r) for r in dask] == [content(r) for r in local]
    assert set(calls_of(calls).values()) == {1} and len(calls_of(calls)) == len(specs)


def test_dask_lost_worker_is_not_stored(tmp_path, monkeypatch):
    """A task that the executor fails (not the run function) comes back 'lost' and is retried next time."""
    store = ResultsStore(tmp_path / "store")
    spec = RunSpec(8, 0, "mask", STEPS)

    def broken_executor(todo, run_fn, on_done, on_lost, workers, scheduler):
        for key, config in todo:
            on_lost(key, config, RuntimeError("worker died"))

    monkeypatch.setitem(sweep._EXECUTOR_FUNCTIONS, "in_process", broken_executor)
    (record,) = run_sweep([spec], store, workers=1, progress=False, run_fn=FakeRun(str(tmp_path / "calls")))
    assert record["status"] == "lost" and record["error"] == "RuntimeError: worker died"
    assert store.load(spec.config()) is None and store.records() == []


def test_records_of_another_version_are_skipped_silently(tmp_path):
    """A version bump leaves the old records on disk; they are not damaged, and not this version's."""
    c = RunSpec(8, 0, "mask", STEPS).config()
    old = ResultsStore(tmp_path, version="0.0.1")
    old.save(c, FakeRun(str(tmp_path / "calls"))(c))
    new = ResultsStore(tmp_path, version="0.0.2")
    assert new.records() == [] and new.load(c) is None
    assert [r["fdcheck_version"] for r in old.records()] == ["0.0.1"]


def thread_report(config: ModelConfig) -> dict:
    """A run function that reports how many BLAS/OpenMP threads its process may use."""
    from threadpoolctl import threadpool_info

    threads = [pool["num_threads"] for pool in threadpool_info()]
    return {"metrics": {"max_threads": max(threads, default=1), "omp": os.environ.get("OMP_NUM_THREADS")},
            "history": [], "seconds": 0.0, "arrays": {"b": np.zeros(1)}}


def test_worker_processes_use_one_thread_each(tmp_path, monkeypatch):
    """``workers`` processes must use ``workers`` cores, so each gets one BLAS/OpenMP thread."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    records = run_sweep(small_specs(seeds=1, ds=(8,)), ResultsStore(tmp_path), workers=2, progress=False,
                        run_fn=thread_report)
    assert [r["metrics"] for r in records] == [{"max_threads": 1, "omp": "1"}] * 2
    assert "OMP_NUM_THREADS" not in os.environ  # the parent's environment is restored


# ------------------------------------------------------------------------------------- real training


def test_execute_run_end_to_end_with_real_training(tmp_path):
    """The real run function: train + measure_all on a tiny configuration, stored, resumed, and a diverged run.

    d = 8, d1 = 32, m = 16, 20 steps: seconds of work (measure_all's sample sizes dominate), not a claim check.
    """
    from fdcheck.train import train

    tiny = {"steps": 20, "d1": 32, "m": 16}
    specs = [RunSpec(8, 0, "mask", tiny), RunSpec(8, 0, "supervised", tiny),
             RunSpec(8, 0, "none", tiny | {"eta": 1e6})]  # eta = 1e6 makes the weights overflow within 20 steps
    store = ResultsStore(tmp_path)
    records = run_sweep(specs, store, workers=1, progress=False)
    mask, supervised, diverged = records
    assert mask["status"] == supervised["status"] == "ok"
    assert diverged["status"] == "error" and diverged["error"].startswith("TrainingDiverged: ")
    for record in (mask, supervised):
        metrics = record["metrics"]
        for name in ("cos_fx_fxi", "cos_fx_fMz", "top_atom_share", "span_energy", "probe_reg_mse_features",
                     "probe_cls_acc_raw", "view_corr_atoms_mask", "data_noise_proj_max", "weight_move_rel"):
            assert isinstance(metrics[name], float) and np.isfinite(metrics[name]), name
        assert record["nonfinite_metrics"] == []
        assert record["history"] and record["history"][-1]["step"] == 20
    # The stored arrays are the trained network of the seeds contract (training is deterministic in the config).
    c = specs[1].config()
    expected = train(c, progress=False)
    arrays = store.load_arrays(c)
    assert sorted(arrays) == ["M", "W", "W0", "b", "head"]
    for name in ("W", "b", "W0", "M", "head"):
        np.testing.assert_array_equal(arrays[name], np.asarray(getattr(expected, name)))
    assert "head" not in store.load_arrays(specs[0].config())

    def must_not_run(config):
        raise AssertionError(f"recomputed {config}")

    again = run_sweep(specs, store, workers=1, progress=False, run_fn=must_not_run)
    assert [content(r) for r in again] == [content(r) for r in records]

    # A local Dask cluster gives the same results, bit for bit (up to wall-clock times), as the local executor.
    def without_times(record):
        rows = [{k: v for k, v in row.items() if k != "seconds"} for row in record["history"]]
        return {k: v for k, v in content(record).items() if k not in ("train_seconds", "history")} | {"rows": rows}

    on_dask = run_sweep(specs, ResultsStore(tmp_path / "dask"), executor="dask", workers=2, progress=False)
    assert [without_times(r) for r in on_dask] == [without_times(r) for r in records]
