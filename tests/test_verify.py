"""``fdcheck verify`` end to end: bad usage, the files it writes, and resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fdcheck.cli import main
from fdcheck.claims import CLAIMS, exit_code
from fdcheck.verify import Grid, run_verify

# A grid small enough for the default test run: one d, one seed, every variant, 40 SGD steps.
TINY = ["--d", "6", "--seeds", "1", "--set", "steps=40", "--workers", "1", "--no-progress"]
TIMING_FIELDS = ("seconds", "compute_seconds", "started", "command")


def _comparable(document: dict) -> dict:
    """``claims.json`` without the fields that record when and how long (they differ between any two runs)."""
    return {k: v for k, v in document.items() if k not in TIMING_FIELDS}


@pytest.mark.parametrize("argv, message", [
    (["verify", "--d", "2,16"], "d=[2, 16]"),
    (["verify", "--seeds", "0"], "seeds=0"),
    (["verify", "--set", "eta=-1"], "eta=-1"),
    (["verify", "--set", "no_such_field=1"], "no_such_field"),
    (["verify", "--set", "seed=3"], "seed"),
    (["verify", "--backend", "cupy"], "cupy"),
    (["verify", "--d", "x"], "--d"),
])
def test_bad_usage_exits_2_naming_the_parameter_and_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    if argv[-1] == "cupy" and __import__("fdcheck.backend").backend.cupy_available():
        pytest.skip("a GPU is present, so --backend cupy is valid here")
    assert main([*argv, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists(), "bad usage must be refused before any work"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("verify") / "out"
    code = main(["verify", *TINY, "--out", str(out)])
    return out, code


def test_verify_writes_every_file_with_every_claim(tiny_run):
    out, code = tiny_run
    document = json.loads((out / "claims.json").read_text())
    assert [c["id"] for c in document["claims"]] == [c.id for c in CLAIMS]
    assert document["grid"]["d"] == [6] and document["grid"]["overrides"] == {"steps": 40}
    for claim in document["claims"]:
        assert claim["verdict"] in ("pass", "fail", "inconclusive")
        assert claim["evidence"], f"{claim['id']} has no evidence"
        assert {"d", "seed", "augment", "quantity", "value", "threshold"} <= set(claim["evidence"][0])
    assert len(document["runs"]) == 4, "one store record per variant at d = 6, seed 0"
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    assert any((out / "figures").glob("*.png"))
    assert code == exit_code(document)


def test_report_subcommand_rewrites_the_same_report(tiny_run, capsys):
    out, _ = tiny_run
    before = (out / "report.md").read_text()
    assert main(["report", "--from", str(out)]) == 0
    assert (out / "report.md").read_text() == before


def test_killed_verify_resumes_without_repeating_finished_runs(tmp_path, tiny_run):
    """SIGKILL a verify once two of its four runs are stored; the rerun computes only the other two, and its
    claims.json equals that of the uninterrupted run (timing fields aside)."""
    out = tmp_path / "killed"
    store = out / "store"
    cmd = [sys.executable, "-m", "fdcheck.cli", "verify", *TINY, "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(store.glob("*.json"))) < 2 and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in store.glob("*.json")}
    assert 2 <= len(finished) < 4, f"the kill came too late or too early: {sorted(finished)}"
    assert not (out / "claims.json").exists(), "a killed verify must not leave a claims.json"

    assert main(["verify", *TINY, "--out", str(out)]) == tiny_run[1]
    after = {p.name: p.stat().st_mtime_ns for p in store.glob("*.json")}
    assert len(after) == 4
    assert all(after[name] == mtime for name, mtime in finished.items()), "a finished run was computed again"
    reference = json.loads((tiny_run[0] / "claims.json").read_text())
    resumed = json.loads((out / "claims.json").read_text())
    assert _comparable(resumed) == _comparable(reference)


def test_grid_rejects_bad_values():
    with pytest.raises(ValueError, match="seeds"):
        Grid(d=(16,), seeds=0)
    with pytest.raises(ValueError, match="must be a non-empty list"):
        Grid(d=(), seeds=1)
    with pytest.raises(ValueError, match="backend"):
        run_verify("unused", Grid(d=(16,), seeds=1), backend="torch")


@pytest.mark.slow
def test_quick_grid_end_to_end(tmp_path):
    """``fdcheck verify --quick`` on the real quick grid (about a minute on two cores): every claim has evidence at
    every d and seed of the grid, and the exit code is the claims' verdict."""
    out = tmp_path / "quick"
    code = main(["verify", "--quick", "--no-progress", "--out", str(out)])
    document = json.loads((out / "claims.json").read_text())
    assert document["grid"]["quick"] is True
    for claim in document["claims"]:
        seen = {(e["d"], e["seed"]) for e in claim["evidence"]}
        assert seen == {(d, s) for d in document["grid"]["d"] for s in document["grid"]["seeds"]}, claim["id"]
    assert code == exit_code(document)
