"""Export: mattes read back pixel-exact (PNG and TIFF), source selection, COCO RLE against hand cases."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from db.models import ModelVersion
from db.testing import temporary_store
from studio.corrections import save_correction
from studio.detection import _save_prediction
from studio.export import (
    coco_json,
    export_film,
    rle_counts_from_string,
    rle_counts_to_string,
    rle_decode,
    rle_encode,
)
from studio.films import film_frames, import_film

H, W = 10, 14


def test_rle_hand_computed():
    mask = np.array([[0, 1], [1, 1], [0, 0]], bool)  # column-major: 0,1,0 | 1,1,0
    assert rle_encode(mask) == {"size": [3, 2], "counts": [1, 1, 1, 2, 1]}
    assert rle_encode(np.array([[1], [1], [0]], bool))["counts"] == [0, 2, 1]  # starts with a run of 0 zeros
    assert rle_encode(np.zeros((2, 3), bool))["counts"] == [6]
    # Compressed counts: 5 bits per char + 48, 0x20 = continue; from the 4th count on, the difference
    # to the count two before. 40 = 0b1_01000 -> chars 8|0x20 (+48 = 'X') then 1 ('1').
    assert rle_counts_to_string([40]) == "X1"
    assert rle_counts_to_string([1, 1, 1, 2, 1]) == "11110"
    assert rle_counts_to_string([0, 5, 3, 5, 2]) == "0530O"  # last: 2 - 3 = -1 -> 31 with the sign bit -> 'O'
    assert rle_counts_from_string("0530O") == [0, 5, 3, 5, 2]


def test_rle_round_trip_on_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w = rng.integers(1, 40, 2)
        mask = rng.random((h, w)) < rng.random()
        rle = rle_encode(mask)
        assert sum(rle["counts"]) == h * w
        assert np.array_equal(rle_decode(rle), mask)
        compressed = {"size": rle["size"], "counts": rle_counts_to_string(rle["counts"])}
        assert np.array_equal(rle_decode(compressed), mask)
    with pytest.raises(ValueError, match="sum"):
        rle_decode({"size": [2, 2], "counts": [1, 2]})


@pytest.fixture
def film_with_masks(tmp_path):
    """Frames numbered 7, 8, 9: predictions on 7 and 8, corrections on 8 and 9."""
    rng = np.random.default_rng(1)
    src = tmp_path / "src"
    src.mkdir()
    for n in (7, 8, 9):
        cv2.imwrite(str(src / f"scan_{n:04d}.png"), rng.integers(0, 256, (H, W), dtype=np.uint8))
    with temporary_store(tmp_path / "data") as store:
        film = import_film(store, src, name="Reel 1")
        frames = film_frames(store, film)
        with store.write() as s:
            version = ModelVersion(path="/m.pt", sha256="0" * 64, arch="efficient-correlnet", encoder=None)
            s.add(version)
        predicted = {}
        for frame in frames[:2]:
            probs = rng.random((H, W)).astype(np.float32)
            _save_prediction(store, film, frame, version.id, probs, set_uncertainty=True)
            predicted[frame.number] = np.rint(probs * 255) >= 128
        corrected = {8: rng.random((H, W)) < 0.3, 9: np.zeros((H, W), bool)}
        for frame in frames[1:]:
            save_correction(store, frame.id, corrected[frame.number], "ana")
        yield store, film, predicted, corrected


@pytest.mark.parametrize("fmt,ext", [("png", ".png"), ("tiff", ".tif")])
def test_best_export_reads_back_pixel_exact(film_with_masks, tmp_path, fmt, ext):
    store, film, predicted, corrected = film_with_masks
    result = export_film(store, film, tmp_path / "out", fmt=fmt, source="best")
    expected = {7: predicted[7], 8: corrected[8], 9: corrected[9]}  # correction where present
    # The source's own numbers and padding (scan_0007.png -> 4 digits).
    assert [p.name for p in result.written] == [f"Reel_1.{n:04d}{ext}" for n in (7, 8, 9)]
    assert result.missing == []
    for path, number in zip(result.written, (7, 8, 9)):
        matte = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert matte.dtype == np.uint8 and matte.shape == (H, W)  # single channel, 8 bit
        assert np.array_equal(matte, expected[number].astype(np.uint8) * 255)
        assert Image.open(path).mode == "L"
    coco = json.loads(result.coco_path.read_text())
    assert [im["frame_number"] for im in coco["images"]] == [7, 8, 9]
    decoded = {coco["images"][[im["id"] for im in coco["images"]].index(a["image_id"])]["frame_number"]:
               rle_decode(a["segmentation"]) for a in coco["annotations"]}
    assert set(decoded) == {7, 8}  # frame 9's mask is empty: an image without annotation
    for number, mask in decoded.items():
        assert np.array_equal(mask, expected[number])
    assert all(a["area"] == int(expected[n].sum()) for a, n in zip(coco["annotations"], (7, 8)))


def test_sources_and_missing_frames(film_with_masks, tmp_path):
    store, film, predicted, corrected = film_with_masks
    only_corrected = export_film(store, film, tmp_path / "c", source="corrected", coco=False)
    # No gaps: frame 7 has no correction, so its matte is black (and it is listed as missing).
    assert [p.name for p in only_corrected.written] == ["Reel_1.0007.png", "Reel_1.0008.png", "Reel_1.0009.png"]
    assert only_corrected.missing == [7] and only_corrected.coco_path is None
    assert not cv2.imread(str(tmp_path / "c" / "Reel_1.0007.png"), cv2.IMREAD_UNCHANGED).any()
    only_predicted = export_film(store, film, tmp_path / "p", source="predicted")
    assert only_predicted.missing == [9]
    matte = cv2.imread(str(tmp_path / "p" / "Reel_1.0008.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(matte > 0, predicted[8])  # the proposal, not the correction
    compressed = coco_json(store, film, "predicted", compressed=True)
    for ann, number in zip(compressed["annotations"], (7, 8)):
        assert isinstance(ann["segmentation"]["counts"], str)
        assert np.array_equal(rle_decode(ann["segmentation"]), predicted[number])
    with pytest.raises(ValueError, match="source"):
        export_film(store, film, tmp_path / "x", source="final")
    with pytest.raises(ValueError, match="format"):
        export_film(store, film, tmp_path / "x", fmt="jpeg")
