"""Atomic writes (fdcheck._atomic): round trips, the file mode, and what a failed write leaves on disk."""

from __future__ import annotations

import json
import os
import stat
import sys

import numpy as np
import pytest

from fdcheck import _atomic
from fdcheck._atomic import atomic_savez, atomic_write_bytes, atomic_write_json, atomic_write_text


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _names(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_round_trips(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01binary\xff")
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01binary\xff"
    atomic_write_text(tmp_path / "b.md", "héllo ∑\n")
    assert (tmp_path / "b.md").read_text(encoding="utf-8") == "héllo ∑\n"
    doc = {"z": [1, 2.5, None], "a": {"ok": True}, "s": "x"}
    atomic_write_json(tmp_path / "c.json", doc)
    text = (tmp_path / "c.json").read_text(encoding="utf-8")
    assert json.loads(text) == doc
    assert text == json.dumps(doc, indent=2) + "\n"  # indent 2, key order kept, one trailing newline
    arrays = {"W": np.arange(6, dtype=np.float32).reshape(2, 3), "config": np.array('{"d": 8}'),
              "step": np.array(7, dtype=np.int64)}
    atomic_savez(tmp_path / "d.npz", arrays)
    with np.load(tmp_path / "d.npz", allow_pickle=False) as data:
        assert sorted(data.files) == sorted(arrays)
        for k, v in arrays.items():
            np.testing.assert_array_equal(data[k], v)
            assert data[k].dtype == v.dtype
    # a missing parent directory is created; no temporary file is left anywhere
    atomic_write_text(tmp_path / "new" / "deeper" / "e.txt", "x")
    assert (tmp_path / "new" / "deeper" / "e.txt").read_text() == "x"
    assert _names(tmp_path) == ["a.bin", "b.md", "c.json", "d.npz", "new"]
    # sync_dir only adds an fsync of the directory: same content
    atomic_write_bytes(tmp_path / "a.bin", b"again", sync_dir=True)
    assert (tmp_path / "a.bin").read_bytes() == b"again"


def test_savez_does_not_append_a_suffix(tmp_path):
    atomic_savez(tmp_path / "checkpoint.tmpnpz", {"x": np.zeros(2)})  # numpy.savez(name) would add ".npz"
    assert _names(tmp_path) == ["checkpoint.tmpnpz"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
@pytest.mark.parametrize("write", [
    lambda p: atomic_write_bytes(p, b"x"),
    lambda p: atomic_write_text(p, "x"),
    lambda p: atomic_write_json(p, {"x": 1}),
    lambda p: atomic_savez(p, {"x": np.zeros(1)}),
])
def test_mode_is_what_open_would_give_not_0600(tmp_path, write):
    """mkstemp creates 0600; reports and results are read by others, so the file gets 0666 & ~umask."""
    target = tmp_path / "out"
    write(target)
    reference = tmp_path / "reference"
    with open(reference, "w") as fh:  # what a plain open gives under this process's umask
        fh.write("x")
    mode = stat.S_IMODE(target.stat().st_mode)
    assert mode == 0o666 & ~_umask() == stat.S_IMODE(reference.stat().st_mode) == _atomic.FILE_MODE
    if _umask() & 0o066 != 0o066:  # under the usual 022 or 002 the old code's 0600 would differ
        assert mode != 0o600


@pytest.mark.parametrize("fail_at", ["replace", "write", "serialize", "interrupt"])
def test_failed_write_leaves_the_older_version_and_no_temp_file(tmp_path, monkeypatch, fail_at):
    target = tmp_path / "claims.json"
    atomic_write_json(target, {"version": 1})
    old = target.read_bytes()

    error = KeyboardInterrupt if fail_at == "interrupt" else OSError  # BaseException too must clean up

    def boom(*args, **kwargs):
        raise error("simulated failure")

    if fail_at in ("replace", "interrupt"):
        monkeypatch.setattr(_atomic.os, "replace", boom)
    elif fail_at == "write":
        monkeypatch.setattr(_atomic.os, "fsync", boom)  # after the data is in the temporary file
    else:
        monkeypatch.setattr(_atomic.json, "dumps", boom)
    with pytest.raises(error, match="simulated failure"):
        atomic_write_json(target, {"version": 2})
    monkeypatch.undo()
    assert target.read_bytes() == old  # the older version is intact
    assert _names(tmp_path) == ["claims.json"]  # and no temporary file is left


@pytest.mark.parametrize("fail_at", ["replace", "savez"])
def test_failed_first_write_leaves_nothing(tmp_path, monkeypatch, fail_at):
    def boom(*args, **kwargs):
        raise OSError("simulated failure")

    monkeypatch.setattr(_atomic.os if fail_at == "replace" else _atomic.np, fail_at, boom)
    with pytest.raises(OSError, match="simulated failure"):
        atomic_savez(tmp_path / "run.npz", {"W": np.ones((2, 2))})
    monkeypatch.undo()
    assert _names(tmp_path) == []


def test_bad_input_raises_before_touching_the_disk(tmp_path):
    with pytest.raises(ValueError, match="data must be bytes"):
        atomic_write_bytes(tmp_path / "x", "text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="text must be a str"):
        atomic_write_text(tmp_path / "x", b"bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Out of range float"):
        atomic_write_json(tmp_path / "x", {"v": float("nan")})  # strict JSON: no NaN token
    assert _names(tmp_path) == []
