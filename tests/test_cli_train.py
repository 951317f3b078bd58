"""Tests of `fdcheck train`: the written file, the printed metrics, and exit status 2 on bad usage."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fdcheck.cli import main
from fdcheck.config import ModelConfig

TINY = ["--d", "8", "--d1", "32", "--m", "16", "--steps", "20", "--batch", "16", "--negatives", "16",
        "--no-progress"]


@pytest.mark.parametrize("augment, bias", [("mask", "schedule"), ("none", "none"), ("supervised", "schedule")])
def test_train_writes_a_file_that_loads_without_pickle(tmp_path, capsys, augment, bias, monkeypatch):
    monkeypatch.setattr("fdcheck.cli._metrics", lambda result, make_model: (dict(result.history[-1]), "history"))
    out = tmp_path / "run.npz"
    code = main(["train", *TINY, "--seed", "3", "--augment", augment, "--bias", bias, "--eta", "0.05",
                 "--out", str(out)])
    assert code == 0
    with np.load(out, allow_pickle=False) as data:
        assert data["W"].shape == (16, 32) and data["b"].shape == (16,) and data["M"].shape == (32, 8)
        config = ModelConfig.from_dict(json.loads(str(data["config"])))
        history = json.loads(str(data["history"]))
        assert ("head" in data.files) == (augment == "supervised")
    assert (config.d, config.seed, config.augment, config.bias, config.eta, config.steps) == (8, 3, augment, bias,
                                                                                             0.05, 20)
    assert history[-1]["step"] == 20
    assert "top_atom_share" in capsys.readouterr().out


def test_train_prints_measure_all_metrics_as_json(tmp_path, capsys):
    pytest.importorskip("fdcheck.metrics")
    out = tmp_path / "run.npz"
    assert main(["train", *TINY, "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["metrics_source"] == "fdcheck.metrics.measure_all"
    assert "cos_fx_fxi" in printed["metrics"] and "top_atom_share" in printed["metrics"]


@pytest.mark.parametrize("argv, names", [
    (["--d", "1"], "d=1"),
    (["--d", "x"], "--d"),
    (["--eta", "-1"], "eta"),
    (["--augment", "crop"], "augment"),
    (["--bias", "always"], "bias"),
    (["--steps", "2.5"], "--steps"),
    (["--dtype", "float16"], "dtype"),
    (["--nonsense", "1"], "--nonsense"),
    (["--checkpoint-every", "5"], "--checkpoint-every needs --checkpoint"),
])
def test_bad_usage_exits_2_naming_the_parameter(tmp_path, capsys, argv, names):
    out = tmp_path / "run.npz"
    code = main(["train", *TINY, *argv, "--out", str(out)])
    assert code == 2
    assert names in capsys.readouterr().err
    assert not out.exists()


def test_missing_subcommand_or_out_is_usage_error(capsys):
    assert main([]) == 2
    assert main(["train", "--d", "8"]) == 2
    assert "--out" in capsys.readouterr().err


def test_help_exits_0(capsys):
    assert main(["train", "--help"]) == 0
    assert "--augment" in capsys.readouterr().out


def test_divergence_exits_1_with_the_message(tmp_path, capsys):
    out = tmp_path / "run.npz"
    assert main(["train", *TINY, "--eta", "1e6", "--steps", "200", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "diverged at step" in err and "eta" in err
    assert not out.exists()


def test_measuring_failure_keeps_the_file_and_exits_1(tmp_path, capsys, monkeypatch):
    def broken(result, make_model):
        raise RuntimeError("boom")

    monkeypatch.setattr("fdcheck.cli._metrics", broken)
    out = tmp_path / "run.npz"
    assert main(["train", *TINY, "--out", str(out)]) == 1
    assert out.exists()
    captured = capsys.readouterr()
    assert "measuring it failed" in captured.err and "boom" in captured.err
    assert "top_atom_share" in captured.out
