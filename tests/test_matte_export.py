"""Mattes as finishing tools expect them (issue 16): png/tiff/tiff16/exr single channel (EXR: half channel A),
`<name>.<number>.<ext>` with the source's numbers and padding, no gaps, dilation, the RGBA form, re-runs that
write nothing, frame ranges; and scanner-format films (DPX 10/16-bit, EXR) imported, detected and exported
through the CLI with their frame numbers."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import OpenImageIO as oiio
import pytest
from PIL import Image

from db.models import Frame
from db.testing import temporary_store
from studio.corrections import save_correction
from studio.export import dilate_mask, export_film, matte_name, source_padding
from studio.films import film_frames, frame_image, import_film, parse_frame_range

H, W = 10, 14


def read_oiio(path: Path) -> tuple[np.ndarray, tuple[str, ...], str]:
    """(pixels (H, W, C) as stored, channel names, sample type); alpha never premultiplied on reading."""
    config = oiio.ImageSpec()
    config.attribute("oiio:UnassociatedAlpha", 1)
    image = oiio.ImageInput.open(str(path), config)
    assert image is not None, oiio.geterror()
    spec = image.spec()
    pixels = image.read_image(0, 0, 0, spec.nchannels, oiio.UNKNOWN)
    names, fmt = tuple(spec.channelnames), str(spec.format)
    image.close()
    return np.asarray(pixels).reshape(spec.height, spec.width, spec.nchannels), names, fmt


@pytest.fixture
def film(tmp_path):
    """Scans shot.001001.png .. shot.001004.png (6-digit padding, 16-bit gray); corrections on 1001-1003
    (1003 empty), nothing on 1004."""
    rng = np.random.default_rng(3)
    src = tmp_path / "src"
    src.mkdir()
    for n in range(1001, 1005):
        cv2.imwrite(str(src / f"shot.{n:06d}.png"), rng.integers(0, 65536, (H, W), dtype=np.uint16))
    with temporary_store(tmp_path / "data") as store:
        film = import_film(store, src, name="Reel 2")
        frames = film_frames(store, film)
        masks = {1001: rng.random((H, W)) < 0.3, 1002: rng.random((H, W)) < 0.3, 1003: np.zeros((H, W), bool)}
        for frame in frames[:3]:
            save_correction(store, frame.id, masks[frame.number], "ana")
        yield store, film, masks, src


def test_exr_matte_is_a_half_alpha_channel_equal_to_the_mask(film, tmp_path):
    store, film, masks, _ = film
    result = export_film(store, film, tmp_path / "out", fmt="exr", source="corrected")
    assert [p.name for p in result.written] == [f"Reel_2.{n:06d}.exr" for n in range(1001, 1005)]
    for path, number in zip(result.written, range(1001, 1005)):
        pixels, names, fmt = read_oiio(path)
        assert names == ("A",) and fmt == "half" and pixels.shape == (H, W, 1)
        expected = masks.get(number, np.zeros((H, W), bool))  # 1004: no mask -> black, no gap
        assert np.array_equal(pixels[..., 0], expected.astype(np.float16))
    assert result.missing == [1004]


@pytest.mark.parametrize("fmt,dtype,top", [("png", np.uint8, 255), ("tiff", np.uint8, 255),
                                           ("tiff16", np.uint16, 65535)])
def test_single_channel_depths(film, tmp_path, fmt, dtype, top):
    store, film, masks, _ = film
    result = export_film(store, film, tmp_path / fmt, fmt=fmt, coco=False)
    matte = cv2.imread(str(result.written[0]), cv2.IMREAD_UNCHANGED)
    assert matte.dtype == dtype and matte.shape == (H, W)
    assert np.array_equal(matte, masks[1001].astype(dtype) * dtype(top))
    assert Image.open(result.written[0]).mode == ("L" if dtype == np.uint8 else "I;16")


def test_names_follow_the_source_numbers_and_padding():
    def frames(names, numbers):
        return [Frame(index=i, number=n, source_name=s) for i, (s, n) in enumerate(zip(names, numbers))]

    assert source_padding(frames(["a.000101.dpx", "a.000102.dpx"], [101, 102])) == 6
    assert source_padding(frames(["reel_101.png", "reel_102.png"], [101, 102])) == 4  # at least 4
    assert source_padding(frames(["f9.png", "f10.png"], [9, 10])) == 4  # not zero-padded
    assert source_padding(frames(["clip.mov", "clip.mov"], [1, 2])) == 4  # a video: numbered from 1
    assert matte_name("reel", 7, 4, "exr") == "reel.0007.exr"
    assert matte_name("reel", 12345, 4, "tiff16") == "reel.12345.tif"  # Nuke's #### still reads it
    assert parse_frame_range("1001-1100") == (1001, 1100) and parse_frame_range("7") == (7, 7)
    for bad in ("1100-1001", "a-b", "10-"):
        with pytest.raises(ValueError, match="range"):
            parse_frame_range(bad)


def test_dilation_against_a_hand_computed_disc():
    mask = np.zeros((7, 7), bool)
    mask[3, 3] = True
    cross = np.array([[0, 0, 0, 0, 0, 0, 0],
                      [0, 0, 0, 0, 0, 0, 0],
                      [0, 0, 0, 1, 0, 0, 0],
                      [0, 0, 1, 1, 1, 0, 0],
                      [0, 0, 0, 1, 0, 0, 0],
                      [0, 0, 0, 0, 0, 0, 0],
                      [0, 0, 0, 0, 0, 0, 0]], bool)
    disc2 = np.array([[0, 0, 0, 0, 0, 0, 0],  # every pixel with dx^2 + dy^2 <= 4: 13 pixels
                      [0, 0, 0, 1, 0, 0, 0],
                      [0, 0, 1, 1, 1, 0, 0],
                      [0, 1, 1, 1, 1, 1, 0],
                      [0, 0, 1, 1, 1, 0, 0],
                      [0, 0, 0, 1, 0, 0, 0],
                      [0, 0, 0, 0, 0, 0, 0]], bool)
    assert np.array_equal(dilate_mask(mask, 1), cross)
    assert np.array_equal(dilate_mask(mask, 2), disc2) and disc2.sum() == 13
    assert np.array_equal(dilate_mask(mask, 0), mask)
    edge = np.zeros((4, 4), bool)
    edge[0, 0] = True  # clipped at the border, nothing wraps round
    assert np.array_equal(np.argwhere(dilate_mask(edge, 1)), [[0, 0], [0, 1], [1, 0]])
    with pytest.raises(ValueError, match="0 or more"):
        dilate_mask(mask, -1)


def test_dilated_export_and_coco_hold_the_same_masks(film, tmp_path):
    store, film, masks, _ = film
    result = export_film(store, film, tmp_path / "d", fmt="png", dilate=2)
    matte = cv2.imread(str(result.written[0]), cv2.IMREAD_UNCHANGED) > 0
    assert np.array_equal(matte, dilate_mask(masks[1001], 2)) and matte.sum() > masks[1001].sum()
    coco = json.loads(result.coco_path.read_text())
    assert [im["file_name"] for im in coco["images"]] == [f"Reel_2.{n:06d}.png" for n in (1001, 1002, 1003)]
    assert coco["annotations"][0]["area"] == int(matte.sum())


def test_rgba_form_holds_the_scan_and_the_matte_as_alpha(film, tmp_path):
    from correlnet.transfer import srgb_decode

    store, film, masks, _ = film
    scan = frame_image(store, film_frames(store, film)[0])  # 16-bit gray
    png = export_film(store, film, tmp_path / "png", fmt="png", rgba=True, coco=False).written[0]
    rgba = cv2.cvtColor(cv2.imread(str(png), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGRA2RGBA)
    assert rgba.dtype == np.uint8 and rgba.shape == (H, W, 4)
    assert np.array_equal(rgba[..., 0], np.rint(scan / 257).astype(np.uint8))
    assert np.array_equal(rgba[..., 0], rgba[..., 2])  # a gray scan repeated
    assert np.array_equal(rgba[..., 3], masks[1001].astype(np.uint8) * 255)
    tif = export_film(store, film, tmp_path / "tif", fmt="tiff16", rgba=True, coco=False).written[0]
    pixels, names, _ = read_oiio(tif)
    assert names == ("R", "G", "B", "A") and pixels.dtype == np.uint16
    assert np.array_equal(pixels[..., 1], scan) and np.array_equal(pixels[..., 3] > 0, masks[1001])
    assert Image.open(tif).tag_v2.get(338) == (2,)  # ExtraSamples: unassociated alpha, not premultiplied
    assert export_film(store, film, tmp_path / "tif", fmt="tiff16", rgba=True, coco=False).unchanged == 4
    exr = export_film(store, film, tmp_path / "exr", fmt="exr", rgba=True, coco=False).written[0]
    pixels, names, fmt = read_oiio(exr)
    assert names == ("R", "G", "B", "A") and fmt == "half"
    np.testing.assert_allclose(pixels[..., 0].astype(np.float32)[scan < 59000],  # below the knee: plain sRGB decoding
                               srgb_decode(scan / 65535)[scan < 59000], rtol=2e-3, atol=1e-4)
    assert np.array_equal(pixels[..., 3].astype(bool), masks[1001])


def test_rerun_writes_nothing_and_other_files_are_never_replaced(film, tmp_path):
    store, film, masks, src = film
    out = tmp_path / "out"
    first = export_film(store, film, out, fmt="exr")
    stamps = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    again = export_film(store, film, out, fmt="exr")
    assert again.unchanged == 4 and {p: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
    save_correction(store, film_frames(store, film)[3].id, np.ones((H, W), bool), "ana")  # 1004 changes
    with pytest.raises(ValueError, match="Reel_2.001004.exr.*--overwrite"):
        export_film(store, film, out, fmt="exr")
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == stamps  # nothing written
    replaced = export_film(store, film, out, fmt="exr", overwrite=True)
    assert replaced.unchanged == 3 and read_oiio(first.written[3])[0].min() == 1.0
    with pytest.raises(ValueError, match="source folder"):
        export_film(store, film, src, fmt="png")
    with pytest.raises(ValueError, match="source folder"):
        export_film(store, film, src / "mattes", fmt="png")


def test_frame_range_exports_only_those_frames(film, tmp_path):
    store, film, _, _ = film
    result = export_film(store, film, tmp_path / "r", fmt="tiff", frames=(1002, 1003))
    assert [p.name for p in result.written] == ["Reel_2.001002.tif", "Reel_2.001003.tif"]
    assert result.coco_path.name == "Reel_2.001002-001003.coco.json"
    rest = export_film(store, film, tmp_path / "r", fmt="tiff", frames=(1001, 1004))  # overlapping: no conflict
    assert rest.unchanged == 2 and len(rest.written) == 4


# --- scanner-format films through the CLI ------------------------------------------------------------

def _write(path: Path, pixels: np.ndarray, fmt, **attrs) -> None:
    spec = oiio.ImageSpec(pixels.shape[1], pixels.shape[0], pixels.shape[2], fmt)
    for key, value in attrs.items():
        spec.attribute(key, value)
    out = oiio.ImageOutput.create(str(path))
    assert out.open(str(path), spec), oiio.geterror()
    out.write_image(np.ascontiguousarray(pixels))
    out.close()


def _scan_frames(n: int = 5) -> list[np.ndarray]:
    """Display-referred (32, 48, 3) float frames: a grainy field with a square moving one step a frame."""
    rng = np.random.default_rng(0)
    out = []
    for t in range(n):
        img = rng.normal(0.45, 0.05, (32, 48)).clip(0, 1)
        img[8:16, 4 + 4 * t:12 + 4 * t] = 0.85
        out.append(np.repeat(img[..., None], 3, 2))
    return out


def _lin(display):
    return np.where(display <= 0.04045, display / 12.92, ((display + 0.055) / 1.055) ** 2.4)


@pytest.mark.parametrize("kind", ["dpx10log", "dpx16", "exr"])
def test_scanner_sequences_import_detect_and_export(tmp_path, monkeypatch, kind):
    import torch

    from correlnet.checkpoint import save_checkpoint
    from correlnet.models import build_model
    from db.models import Prediction
    from db.store import Store
    from studio.cli import main
    from studio.films import get_film
    from studio.settings import Settings

    torch.manual_seed(0)
    model = tmp_path / "tiny.pt"
    save_checkpoint(model, build_model("efficient-correlnet", encoder="test_efficientnet"))
    monkeypatch.setenv("CORRELNET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CORRELNET_DB_URL", raising=False)
    monkeypatch.setenv("CORRELNET_DEFAULT_MODEL", str(model))
    monkeypatch.setenv("CORRELNET_DEVICE", "cpu")
    src = tmp_path / "scans"
    src.mkdir()
    offset = 10 ** ((95 - 685) / 300)
    for t, display in enumerate(_scan_frames()):
        path = src / f"reel.{1001 + t:07d}.{'exr' if kind == 'exr' else 'dpx'}"
        if kind == "dpx10log":
            codes = np.rint(685 + 300 * np.log10(_lin(display) * (1 - offset) + offset)).astype(np.uint16)
            _write(path, (codes << 6) | (codes >> 4), oiio.UINT16, **{"oiio:BitsPerSample": 10,
                                                                      "dpx:Transfer": "Printing density"})
        elif kind == "dpx16":
            _write(path, np.rint(display * 65535).astype(np.uint16), oiio.UINT16, **{"oiio:BitsPerSample": 16})
        else:
            _write(path, _lin(display).astype(np.float32), oiio.HALF)
    assert main(["film", "import", str(src), "--name", "reel"]) == 0
    store = Store.open(Settings.from_env())
    film = get_film(store, "reel")
    frames = film_frames(store, film)
    assert film.bit_depth == 16 and film.channels == 3 and [f.number for f in frames] == list(range(1001, 1006))
    np.testing.assert_allclose(frame_image(store, frames[2])[..., 0] / 65535, _scan_frames()[2][..., 0],
                               atol=1e-5 if kind == "dpx16" else 2e-3)
    # A farm's chunks, run twice and in any order: every frame predicted exactly once.
    for chunk in ("1004-1005", "1001-1003", "1004-1005", "1002-1004"):
        assert main(["film", "detect", "reel", "--frames", chunk]) == 0
    with store.session() as s:
        rows = s.query(Prediction.frame_id).all()
    assert sorted(r[0] for r in rows) == sorted(f.id for f in frames)
    assert main(["film", "detect", "reel", "--frames", "2000-2001"]) == 2
    out = tmp_path / "mattes"
    for chunk in ("1003-1005", "1001-1003", "1003-1005"):
        assert main(["film", "export", "reel", "--out", str(out), "--format", "exr", "--frames", chunk,
                     "--no-coco"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"reel.{n:07d}.exr" for n in range(1001, 1006)]
    store.close()


def test_detect_range_message(tmp_path, monkeypatch, capsys):
    import torch

    from correlnet.checkpoint import save_checkpoint
    from correlnet.models import build_model
    from studio.cli import main

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "tiny.pt", build_model("efficient-correlnet", encoder="test_efficientnet"))
    monkeypatch.setenv("CORRELNET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CORRELNET_DB_URL", raising=False)
    monkeypatch.setenv("CORRELNET_DEFAULT_MODEL", str(tmp_path / "tiny.pt"))
    monkeypatch.setenv("CORRELNET_DEVICE", "cpu")
    src = tmp_path / "src"
    src.mkdir()
    for t, img in enumerate(_scan_frames(4)):
        cv2.imwrite(str(src / f"f_{t + 1:04d}.png"), np.rint(img[..., 0] * 255).astype(np.uint8))
    assert main(["film", "import", str(src), "--name", "r"]) == 0
    capsys.readouterr()
    assert main(["film", "detect", "r", "--frames", "2-3"]) == 0
    assert "frames 2-3, model version 1: 2 frame(s) predicted, 0 already predicted" in capsys.readouterr().out
    assert main(["film", "detect", "r", "--frames", "1-3"]) == 0
    assert "1 frame(s) predicted, 2 already predicted" in capsys.readouterr().out
    assert main(["film", "detect", "r", "--frames", "9-3"]) == 2
    assert "range" in capsys.readouterr().err
    assert main(["film", "export", "r", "--out", str(tmp_path / "m"), "--frames", "1-3"]) == 0
    assert "wrote 3 matte(s)" in capsys.readouterr().out
    assert main(["film", "export", "r", "--out", str(tmp_path / "m"), "--frames", "1-3"]) == 0
    assert "wrote 0 matte(s) to" in capsys.readouterr().out
    assert main(["film", "export", "r", "--out", str(tmp_path / "m"), "--frames", "1-4"]) == 0
    assert "1 frame(s) have no best mask and got a black matte: 4" in capsys.readouterr().out
