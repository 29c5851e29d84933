"""Frame reading: natural order, bit depth kept, clear errors for broken files, video decoding."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from correlnet import frames as fr
from correlnet.frames import (
    FrameReadError,
    image_header_size,
    iter_video_frames,
    list_frame_files,
    natural_sort,
    read_image,
    to_gray_float,
    video_frame_count,
)


def test_natural_sort_compares_numbers_numerically():
    names = ["frame10.png", "frame2.png", "frame1.png", "Frame3.png", "a/frame_100.png"]
    assert [Path(p).name for p in natural_sort(names)] == [
        "frame1.png", "frame2.png", "Frame3.png", "frame10.png", "frame_100.png"
    ]
    assert natural_sort(["reel2_f9", "reel10_f1", "reel2_f10"]) == ["reel2_f9", "reel2_f10", "reel10_f1"]


def test_list_frame_files_filters_and_sorts(tmp_path):
    for name in ["f10.png", "f2.TIF", "f3.jpeg", "f1.tiff", "notes.txt", ".f0.png", "f4.JPG"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_frame_files(tmp_path)] == ["f1.tiff", "f2.TIF", "f3.jpeg", "f4.JPG", "f10.png"]
    with pytest.raises(FrameReadError, match="not a folder"):
        list_frame_files(tmp_path / "f10.png")


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("dtype,scale", [(np.uint8, 255), (np.uint16, 65535)])
def test_read_gray_keeps_bit_depth(tmp_path, suffix, dtype, scale):
    rng = np.random.default_rng(0)
    img = rng.integers(0, scale + 1, size=(20, 30)).astype(dtype)
    path = tmp_path / f"gray{suffix}"
    assert cv2.imwrite(str(path), img)
    back = read_image(path)
    assert back.dtype == dtype and back.shape == (20, 30)
    np.testing.assert_array_equal(back, img)
    np.testing.assert_allclose(to_gray_float(back), img / scale, atol=1e-6)
    assert image_header_size(path) == (30, 20)


def test_read_colour_returns_rgb_and_luma(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint16)
    rgb[..., 0] = 65535  # pure red
    path = tmp_path / "red16.png"
    cv2.imwrite(str(path), rgb[..., ::-1])  # OpenCV writes BGR
    back = read_image(path)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, rgb)
    np.testing.assert_allclose(to_gray_float(back), 0.299, atol=1e-6)
    expected = cv2.cvtColor(back, cv2.COLOR_RGB2GRAY) / 65535
    np.testing.assert_allclose(to_gray_float(back), expected, atol=1e-4)


def test_read_jpeg(tmp_path):
    path = tmp_path / "a.jpg"
    cv2.imwrite(str(path), np.full((8, 8), 128, np.uint8))
    assert abs(float(to_gray_float(read_image(path)).mean()) - 128 / 255) < 0.01


def test_zero_byte_file_names_the_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(FrameReadError, match="empty.png.*0 bytes"):
        read_image(path)
    with pytest.raises(FrameReadError, match="empty.png"):
        image_header_size(path)


def test_truncated_png_names_the_file(tmp_path):
    path = tmp_path / "cut.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (64, 64)).astype(np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FrameReadError, match="cut.png.*truncated"):
        read_image(path)
    assert isinstance(FrameReadError("x"), ValueError)


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(FrameReadError, match="not found"):
        read_image(tmp_path / "nope.png")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not an image")
    with pytest.raises(FrameReadError, match="junk.png"):
        read_image(junk)
    with pytest.raises(FrameReadError, match="junk.png"):
        image_header_size(junk)


def test_to_gray_float_validates():
    np.testing.assert_array_equal(to_gray_float(np.array([[0.0, 1.0]])), [[0.0, 1.0]])
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        to_gray_float(np.array([[2.0]]))
    with pytest.raises(ValueError, match="shape"):
        to_gray_float(np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(ValueError, match="dtype"):
        to_gray_float(np.zeros((2, 2), np.int32))


def write_video(path: Path, count: int = 6) -> list[int]:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    assert writer.isOpened()
    levels = [20 + 40 * i for i in range(count)]
    for level in levels:
        writer.write(np.full((24, 32, 3), level, np.uint8))
    writer.release()
    return levels


def test_video_frames_and_count(tmp_path):
    path = tmp_path / "clip.avi"
    levels = write_video(path)
    frames = list(iter_video_frames(path))
    assert len(frames) == len(levels) == video_frame_count(path)
    assert frames[0].shape == (24, 32, 3) and frames[0].dtype == np.uint8
    np.testing.assert_allclose([f.mean() for f in frames], levels, atol=3)


def test_video_falls_back_to_pyav(tmp_path, monkeypatch):
    path = tmp_path / "clip.avi"
    levels = write_video(path, 4)

    class Broken:
        def __init__(self, *_):
            pass

        def isOpened(self):
            return False

        def release(self):
            pass

    monkeypatch.setattr(fr.cv2, "VideoCapture", Broken)
    frames = list(iter_video_frames(path))
    np.testing.assert_allclose([f.mean() for f in frames], levels, atol=3)


def test_unreadable_video_raises(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(FrameReadError, match="bad.mp4"):
        list(iter_video_frames(bad))
    with pytest.raises(FrameReadError, match="bad.mp4"):
        video_frame_count(bad)
    with pytest.raises(FrameReadError, match="empty"):
        list(iter_video_frames(tmp_path / "missing.mp4"))
