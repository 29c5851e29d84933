"""Scanner formats at full depth: DPX (10-bit log, 16-bit), Cineon, OpenEXR (half/float), 16/32-bit TIFF,
ProRes / DNxHR / FFV1 at 16 bits, and the log/linear -> display policy of correlnet.transfer.

Every file is made here: OpenImageIO writes DPX/EXR/TIFF, PyAV encodes the videos, and the Cineon file
is written byte by byte from the Cineon 4.5 header layout (OpenImageIO reads Cineon but cannot write it).
"""

from __future__ import annotations

import struct
from pathlib import Path

import av
import cv2
import numpy as np
import OpenImageIO as oiio
import pytest

from correlnet import transfer
from correlnet.frames import (
    FrameReadError,
    image_header_size,
    list_frame_files,
    read_image,
    to_gray_float,
)
from correlnet.video import iter_video_frames

H, W = 12, 16


def write_oiio(path: Path, pixels: np.ndarray, fmt, **attrs) -> Path:
    """Write `pixels` (H, W) or (H, W, C) with OpenImageIO in type `fmt`; attrs go into the header."""
    pixels = pixels if pixels.ndim == 3 else pixels[..., None]
    spec = oiio.ImageSpec(pixels.shape[1], pixels.shape[0], pixels.shape[2], fmt)
    if pixels.shape[2] == 1:
        spec.channelnames = ("Y",)
    for key, value in attrs.items():
        spec.attribute(key.replace("__", ":"), value)
    out = oiio.ImageOutput.create(str(path))
    assert out is not None and out.open(str(path), spec), oiio.geterror()
    assert out.write_image(np.ascontiguousarray(pixels)), out.geterror()
    out.close()
    return path


def write_cineon(path: Path, codes: np.ndarray) -> Path:
    """A 10-bit RGB Cineon file of `codes` (H, W, 3) ints in 0..1023: generic + industry headers (1024 bytes
    each, big-endian), one 32-bit word per pixel, samples left-justified (R bits 31-22, G 21-12, B 11-2)."""
    h, w, _ = codes.shape
    head = bytearray(2048)
    struct.pack_into(">IIIIII", head, 0, 0x802A5FD7, 2048, 1024, 1024, 0, 2048 + 4 * h * w)
    head[24:28] = b"V4.5"
    struct.pack_into(">BB", head, 192, 0, 3)  # orientation, 3 channels
    for c in range(3):  # designator (0, 1 + c) = red/green/blue printing density, 10 bits
        struct.pack_into(">BBBBIIffff", head, 196 + 28 * c, 0, c + 1, 10, 0, w, h, 0.0, 0.0, 1023.0, 2.048)
    struct.pack_into(">BBBBII", head, 680, 0, 5, 0, 0, 0, 0)  # pixel interleave, 32-bit left-justified packing
    c = codes.astype(np.uint32)
    words = (c[..., 0] << 22) | (c[..., 1] << 12) | (c[..., 2] << 2)
    path.write_bytes(bytes(head) + words.astype(">u4").tobytes())
    return path


# Hand-made references (Kodak Cineon: 300 code values per decade, black 95 -> 0, white 685 -> 1).
def cineon_reference(code):
    offset = 10 ** ((95 - 685) / 300)
    return (10 ** ((np.asarray(code, float) - 685) / 300) - offset) / (1 - offset)


def srgb_reference(lin):
    lin = np.clip(np.asarray(lin, float), 0, 1)
    return np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)


def linear_copy(display):
    """What a renderer would write for a display-referred frame: the sRGB decoding, by the IEC formula."""
    d = np.asarray(display, float)
    return np.where(d <= 0.04045, d / 12.92, ((d + 0.055) / 1.055) ** 2.4)


def log_copy(display):
    """10-bit Cineon codes of a display frame: sRGB-decoded to linear, then Kodak's log encoding."""
    offset = 10 ** ((95 - 685) / 300)
    lin = linear_copy(display)
    return np.rint(685 + 300 * np.log10(lin * (1 - offset) + offset)).clip(0, 1023).astype(np.uint16)


# --- correlnet.transfer ---------------------------------------------------------------------------

def test_cineon_reference_points():
    assert transfer.cineon_to_linear(np.array([95.0, 685.0])) == pytest.approx([0.0, 1.0], abs=1e-6)
    # Cineon's 18 % grey card sits at code 470; code 1023 is
    # (10^(338/300) - 10^(-590/300)) / (1 - 10^(-590/300)) = 13.52x white.
    assert float(transfer.cineon_to_linear(470.0)) == pytest.approx(0.1832, abs=1e-4)
    assert float(transfer.cineon_to_linear(1023.0)) == pytest.approx(13.52, abs=0.01)
    assert float(transfer.cineon_to_linear(585.0, black=0.0, white=585.0)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="black"):
        transfer.cineon_to_linear(500.0, black=700.0, white=600.0)


def test_view_transform_is_srgb_below_the_knee_and_rolls_off_above():
    lin = np.linspace(0.0, transfer.LINEAR_KNEE, 200)
    np.testing.assert_allclose(transfer.view_transform(lin), srgb_reference(lin), atol=1e-6)
    high = np.array([0.81, 1.0, 2.0, 10.0, 1e6, np.inf], np.float32)
    out = transfer.view_transform(high)
    assert np.all(np.diff(out) > 0) and np.all(out <= 1.0) and out[-1] == pytest.approx(1.0)
    # 1.0 (diffuse white): t = (1 - 0.8) / 0.2 = 1 -> 0.8 + 0.2 * 1 / 2 = 0.9 linear -> sRGB 0.9547
    assert float(out[1]) == pytest.approx(1.055 * 0.9 ** (1 / 2.4) - 0.055, abs=1e-5)
    assert float(out[3]) < float(out[4]) < 1.0  # 10x and a million times white still apart
    assert transfer.view_transform(np.array([-0.5, np.nan])).tolist() == [0.0, 0.0]
    # Continuous with slope 1 at the knee.
    eps = 1e-3
    k = transfer.LINEAR_KNEE
    slope = (transfer.soft_clip(np.float32(k + eps)) - transfer.soft_clip(np.float32(k))) / eps
    assert float(slope) == pytest.approx(1.0, abs=0.01)


def test_inverse_view_transform_round_trips():
    display = np.linspace(0.0, 0.999, 500, dtype=np.float32)
    np.testing.assert_allclose(transfer.view_transform(transfer.inverse_view_transform(display)), display, atol=2e-5)


# --- reading scanner formats ----------------------------------------------------------------------

def test_folders_of_scanner_formats_are_listed(tmp_path):
    for name in ["s.1002.dpx", "s.1001.DPX", "s.1003.exr", "s.1004.cin", "s.1005.tif", "s.1000.txt"]:
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_frame_files(tmp_path)] == \
        ["s.1001.DPX", "s.1002.dpx", "s.1003.exr", "s.1004.cin", "s.1005.tif"]


def test_dpx_16_bit_and_10_bit_display_referred_keep_their_values(tmp_path):
    rng = np.random.default_rng(0)
    rgb16 = rng.integers(0, 65536, (H, W, 3), dtype=np.uint16)
    path = write_oiio(tmp_path / "a.dpx", rgb16, oiio.UINT16, oiio__BitsPerSample=16)
    back = read_image(path)
    assert back.dtype == np.uint16 and back.shape == (H, W, 3)
    np.testing.assert_array_equal(back, rgb16)
    assert image_header_size(path) == (W, H)
    codes = rng.integers(0, 1024, (H, W), dtype=np.uint16)  # 10-bit video-range gray ("User defined")
    path = write_oiio(tmp_path / "g.dpx", (codes << 6) | (codes >> 4), oiio.UINT16, oiio__BitsPerSample=10,
                      dpx__Transfer="User defined")
    back = read_image(path)
    assert back.shape == (H, W) and back.dtype == np.uint16
    np.testing.assert_allclose(to_gray_float(back), codes / 1023, atol=1e-4)  # full 10-bit precision


@pytest.mark.parametrize("curve", ["Logarithmic", "Printing density"])
def test_log_dpx_is_converted_with_the_cineon_curve(tmp_path, curve):
    codes = np.array([[95, 470, 685, 1023, 0, 300]], np.uint16).repeat(3, 0)
    path = write_oiio(tmp_path / "log.dpx", np.repeat(((codes << 6) | (codes >> 4))[..., None], 3, 2),
                      oiio.UINT16, oiio__BitsPerSample=10, dpx__Transfer=curve)
    gray = to_gray_float(read_image(path))[0]
    lin = cineon_reference(codes[0])
    expected = np.where(lin <= 0.8, srgb_reference(lin), np.nan)
    np.testing.assert_allclose(gray[[0, 1, 4, 5]], expected[[0, 1, 4, 5]], atol=2e-5)
    assert gray[1] == pytest.approx(0.4655, abs=1e-3)  # 18 % grey
    assert gray[2] == pytest.approx(1.055 * 0.9 ** (1 / 2.4) - 0.055, abs=2e-5)  # white: soft clip 1.0 -> 0.9
    assert gray[2] < gray[3] < 1.0  # 13.5x white: rolled off, not clipped
    assert gray[0] == 0.0 and gray[4] == 0.0  # at and below reference black


def test_log_dpx_uses_its_own_black_and_white_levels(tmp_path):
    codes = np.array([[100, 700]], np.uint16)
    path = write_oiio(tmp_path / "levels.dpx", (codes << 6) | (codes >> 4), oiio.UINT16, oiio__BitsPerSample=10,
                      dpx__Transfer="Logarithmic", dpx__BlackLevel=100.0, dpx__WhiteLevel=700.0)
    gray = to_gray_float(read_image(path))[0]
    assert gray[0] == 0.0 and gray[1] == pytest.approx(float(transfer.view_transform(1.0)), abs=2e-5)


def test_cineon_file_is_read_as_log(tmp_path):
    codes = np.array([[95, 470, 685]], np.uint16)[..., None].repeat(3, 2)
    path = write_cineon(tmp_path / "a.cin", codes)
    back = read_image(path)
    assert back.shape == (1, 3, 3) and back.dtype == np.uint16 and image_header_size(path) == (3, 1)
    np.testing.assert_allclose(to_gray_float(back)[0, :2], srgb_reference(cineon_reference([95, 470])), atol=2e-5)


@pytest.mark.parametrize("fmt", [oiio.HALF, oiio.FLOAT])
def test_exr_is_scene_linear(tmp_path, fmt):
    display = np.random.default_rng(1).uniform(0.02, 0.9, (H, W, 3))
    lin = linear_copy(display).astype(np.float32)
    lin[0, 0] = [4.0, 50.0, np.inf]  # highlights above 1.0
    lin[0, 1] = [np.nan, -0.2, 0.0]
    path = write_oiio(tmp_path / "a.exr", lin, fmt)
    back = read_image(path)
    assert back.dtype == np.uint16 and back.shape == (H, W, 3) and image_header_size(path) == (W, H)
    values = back / 65535
    tol = 2e-3 if fmt == oiio.HALF else 2e-5  # half: 11-bit mantissa
    np.testing.assert_allclose(values[1:], display[1:], atol=tol)
    assert np.all(values[0, 0] > 0.99) and values[0, 0, 0] < values[0, 0, 1] < 1.0  # rolled off, kept apart
    assert values[0, 1].tolist() == [0.0, 0.0, 0.0]


def test_gray_exr_and_non_picture_channels(tmp_path):
    lin = np.full((H, W), 0.18, np.float32)
    assert read_image(write_oiio(tmp_path / "y.exr", lin, oiio.HALF)).shape == (H, W)
    spec = oiio.ImageSpec(W, H, 5, oiio.HALF)
    spec.channelnames = ("R", "G", "B", "A", "Z")
    out = oiio.ImageOutput.create(str(tmp_path / "rgbaz.exr"))
    assert out.open(str(tmp_path / "rgbaz.exr"), spec)
    pixels = np.zeros((H, W, 5), np.float32)
    pixels[..., :3], pixels[..., 3], pixels[..., 4] = 0.18, 1.0, 1234.0
    out.write_image(pixels)
    out.close()
    back = read_image(tmp_path / "rgbaz.exr")
    assert back.shape == (H, W, 4)  # depth dropped, alpha kept as coverage
    assert back[..., 3].min() == 65535 and abs(back[0, 0, 0] / 65535 - srgb_reference(0.18)) < 1e-3


def test_tiff_16_and_32_bit(tmp_path):
    rng = np.random.default_rng(2)
    rgb16 = rng.integers(0, 65536, (H, W, 3), dtype=np.uint16)
    np.testing.assert_array_equal(read_image(write_oiio(tmp_path / "a.tif", rgb16, oiio.UINT16)), rgb16)
    values = rng.random((H, W)).astype(np.float32)
    values[0, 0], values[0, 1] = 1.5, -0.1
    back = read_image(write_oiio(tmp_path / "f.tiff", values, oiio.FLOAT))
    assert back.dtype == np.uint16 and back.shape == (H, W)  # display-referred: clipped to [0, 1]
    np.testing.assert_allclose(back / 65535, np.clip(values, 0, 1), atol=1e-5)


def test_broken_scanner_files_name_the_file(tmp_path):
    junk = tmp_path / "junk.dpx"
    junk.write_bytes(b"SDPX" + b"\0" * 200)
    with pytest.raises(FrameReadError, match="junk.dpx"):
        read_image(junk)
    with pytest.raises(FrameReadError, match="junk.dpx"):
        image_header_size(junk)
    full = write_oiio(tmp_path / "cut.dpx", np.zeros((H, W, 3), np.uint16), oiio.UINT16, oiio__BitsPerSample=10)
    full.write_bytes(full.read_bytes()[:-100])
    with pytest.raises(FrameReadError, match="cut.dpx.*re-copy"):
        read_image(full)
    exr = write_oiio(tmp_path / "cut.exr", np.zeros((H, W, 3), np.float32), oiio.HALF)
    exr.write_bytes(exr.read_bytes()[:40])
    with pytest.raises(FrameReadError, match="cut.exr"):
        read_image(exr)


# --- log and linear copies give the detector the same frame ---------------------------------------

def _triplet() -> tuple[np.ndarray, np.ndarray]:
    """Display-referred (3, 96, 96) triplet on a textured background, a dark blotch and a bright speck on
    the middle frame; and the true mask."""
    from correlnet.synth.noise import fractal_perlin

    rng = np.random.default_rng(0)
    base = (0.45 + 0.25 * fractal_perlin((96, 96), res=(4, 4), octaves=3, rng=rng)).astype(np.float32)
    frames = np.stack([base, base, base]).copy()
    yy, xx = np.mgrid[:96, :96]
    blotch, speck = (yy - 40) ** 2 + (xx - 50) ** 2 <= 36, (yy - 70) ** 2 + (xx - 20) ** 2 <= 9
    frames[1][blotch], frames[1][speck] = 0.08, 0.95
    return frames, blotch | speck


def test_log_and_linear_copies_give_the_same_detection_input_and_defects(tmp_path):
    import torch

    from correlnet.checkpoint import load_model
    from correlnet.default_model import default_model_path

    frames, defects = _triplet()
    grays = {"display": [], "linear": [], "log": []}
    for t, frame in enumerate(frames):
        rgb = np.repeat(frame[..., None], 3, 2)
        display = write_oiio(tmp_path / f"d.{t}.tif", np.rint(rgb * 65535).astype(np.uint16), oiio.UINT16)
        linear = write_oiio(tmp_path / f"l.{t}.exr", linear_copy(rgb).astype(np.float32), oiio.HALF)
        codes = log_copy(rgb)
        log = write_oiio(tmp_path / f"c.{t}.dpx", (codes << 6) | (codes >> 4), oiio.UINT16,
                         oiio__BitsPerSample=10, dpx__Transfer="Printing density")
        for key, path in (("display", display), ("linear", linear), ("log", log)):
            grays[key].append(to_gray_float(read_image(path)))
    ref = np.stack(grays["display"])
    np.testing.assert_allclose(ref, frames, atol=1e-4)
    for key in ("linear", "log"):  # half floats / 10-bit log codes; the 0.95 speck is above the knee
        diff = np.abs(np.stack(grays[key]) - ref)
        assert diff.max() < 0.02 and diff.mean() < 1e-3, (key, diff.max(), diff.mean())

    model = load_model(default_model_path()).eval()
    masks = {}
    with torch.no_grad():
        for key, gray in grays.items():
            masks[key] = torch.sigmoid(model(torch.from_numpy(np.stack(gray))[None]))[0, 0].numpy() >= 0.5
    assert (masks["display"] & defects).sum() >= 0.9 * defects.sum()  # the shipped model finds them
    for key in ("linear", "log"):
        assert np.array_equal(masks[key], masks["display"]), (key, int((masks[key] != masks["display"]).sum()))


# --- video at 16 bits -----------------------------------------------------------------------------

def _encode(path: Path, codec: str, pix_fmt: str, options: dict, frames: list[np.ndarray], src_fmt: str) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=24)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], pix_fmt
        stream.options = options
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format=src_fmt)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _gradients(h: int, w: int, count: int) -> list[np.ndarray]:
    """RGB uint16 horizontal ramps over 2 % of the range (about 5 levels at 8 bits, 20 at 10 bits)."""
    ramp = np.linspace(0.30, 0.32, w)[None, :, None] + np.zeros((h, 1, 3))
    return [np.rint((ramp + 0.1 * t) * 65535).astype(np.uint16) for t in range(count)]


@pytest.mark.parametrize("name,codec,pix_fmt,options,size", [
    ("prores4444.mov", "prores_ks", "yuv444p10le", {"profile": "4"}, (48, 64)),
    ("dnxhr_hqx.mxf", "dnxhd", "yuv422p10le", {"profile": "dnxhr_hqx"}, (144, 256)),
])
def test_prores_and_dnxhr_decode_to_16_bit(tmp_path, name, codec, pix_fmt, options, size):
    source = _gradients(*size, count=3)
    path = tmp_path / name
    _encode(path, codec, pix_fmt, options, source, "rgb48le")
    decoded = list(iter_video_frames(path))
    assert len(decoded) == 3
    for frame, ref in zip(decoded, source):
        assert frame.dtype == np.uint16 and frame.shape == (*size, 3)
        row, ref_row = frame[size[0] // 2, 8:-8, 1].astype(float), ref[size[0] // 2, 8:-8, 1]
        assert len(np.unique(row)) >= 12  # 8 bits would give 5 or 6 levels on this ramp
        assert np.abs(row - ref_row).mean() < 0.5 * 65535 / 1023  # within half a 10-bit step on average


def test_gray_16_bit_video_decodes_to_gray16(tmp_path):
    frames = [np.full((24, 32), 1000 * t + 7, np.uint16) for t in range(3)]
    path = tmp_path / "gray.mkv"
    _encode(path, "ffv1", "gray16le", {}, frames, "gray16le")
    decoded = list(iter_video_frames(path))
    assert [f.shape for f in decoded] == [(24, 32)] * 3
    for frame, ref in zip(decoded, frames):
        np.testing.assert_array_equal(frame, ref)  # lossless


def test_8_bit_video_is_unchanged(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for level in (40, 80):
        writer.write(np.full((24, 32, 3), level, np.uint8))
    writer.release()
    assert [f.dtype for f in iter_video_frames(path)] == [np.uint8, np.uint8]


def test_prores_film_imports_at_16_bit(tmp_path):
    from db.testing import temporary_store
    from studio.films import film_frames, frame_image, import_film

    path = tmp_path / "reel.mov"
    _encode(path, "prores_ks", "yuv444p10le", {"profile": "4"}, _gradients(48, 64, count=3), "rgb48le")
    with temporary_store(tmp_path / "data") as store:
        film = import_film(store, path)
        assert (film.bit_depth, film.channels, film.frame_count) == (16, 3, 3)
        frames = film_frames(store, film)
        assert [f.number for f in frames] == [1, 2, 3]
        np.testing.assert_array_equal(frame_image(store, frames[1]), list(iter_video_frames(path))[1])


@pytest.mark.parametrize("bits,transfer_name", [(10, "Printing density"), (16, "User defined")])
def test_dpx_sequence_is_referenced_in_place_at_full_depth(tmp_path, bits, transfer_name):
    from db.testing import temporary_store
    from studio.films import film_frames, frame_image, import_film

    rng = np.random.default_rng(bits)
    folder = tmp_path / "scans"
    folder.mkdir()
    paths = []
    for t in range(3):
        codes = rng.integers(100, 1000 if bits == 10 else 65000, (H, W, 3), dtype=np.uint16)
        samples = (codes << 6) | (codes >> 4) if bits == 10 else codes
        paths.append(write_oiio(folder / f"reel.{1001 + t:07d}.dpx", samples, oiio.UINT16,
                                oiio__BitsPerSample=bits, dpx__Transfer=transfer_name))
    with temporary_store(tmp_path / "data") as store:
        film = import_film(store, folder)
        assert (film.bit_depth, film.channels, film.frame_count) == (16, 3, 3)
        frames = film_frames(store, film)
        assert [f.number for f in frames] == [1001, 1002, 1003] and all(f.in_place for f in frames)
        assert not any(p.suffix == ".png" for p in store.data_dir.rglob("*"))  # nothing copied
        for frame, path in zip(frames, paths):
            image = frame_image(store, frame)  # mapped by correlnet.transfer on every read, as at import
            assert image.dtype == np.uint16 and np.array_equal(image, read_image(path))
