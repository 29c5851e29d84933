"""Stored files: atomic writes, checksums, lossless PNG round trips."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

from db import files


def test_png_round_trip_is_bit_exact():
    rng = np.random.default_rng(0)
    for image in (rng.integers(0, 256, (7, 9), dtype=np.uint8), rng.integers(0, 65536, (7, 9), dtype=np.uint16),
                  rng.integers(0, 65536, (5, 6, 3), dtype=np.uint16), rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)):
        back = files.decode_png(files.encode_png(image))
        assert back.dtype == image.dtype and np.array_equal(back, image)
    assert np.array_equal(files.decode_png(files.encode_png(np.eye(3, dtype=bool))), np.eye(3, dtype=np.uint8) * 255)
    with pytest.raises(ValueError, match="uint8 or uint16"):
        files.encode_png(np.zeros((2, 2), np.float32))


def test_write_png_returns_the_file_checksum(tmp_path):
    image = np.arange(12, dtype=np.uint8).reshape(3, 4)
    sha = files.write_png(tmp_path / "a" / "m.png", image)
    data = (tmp_path / "a" / "m.png").read_bytes()
    assert sha == hashlib.sha256(data).hexdigest() == files.sha256_file(tmp_path / "a" / "m.png")
    assert np.array_equal(files.read_png(tmp_path / "a" / "m.png", sha), image)


def test_damaged_file_is_reported(tmp_path):
    sha = files.write_png(tmp_path / "m.png", np.zeros((3, 3), np.uint8))
    files.write_png(tmp_path / "m.png", np.ones((3, 3), np.uint8))  # replaced behind the store's back
    with pytest.raises(ValueError, match="checksum mismatch"):
        files.read_png(tmp_path / "m.png", sha)
    with pytest.raises(ValueError, match="cannot read"):
        files.read_png(tmp_path / "absent.png")


def test_crash_during_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "mask.png"
    files.atomic_write_bytes(target, b"old content")

    def crash(src, dst):
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        files.atomic_write_bytes(target, b"new content that never lands")
    assert target.read_bytes() == b"old content"
    assert [p.name for p in tmp_path.iterdir()] == ["mask.png"]  # no temporary file left behind


def test_atomic_write_respects_umask_not_mkstemp_0600(tmp_path):
    import os
    import stat

    from correlnet.atomic import atomic_write

    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "model.pt", lambda f: f.write(b"x"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_bytes() == b"x"
