"""`correlnet detect` through studio.cli.main on a tiny folder and a tiny video made here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from correlnet.checkpoint import load_model, save_checkpoint
from correlnet.frames import to_gray_float
from correlnet.video import iter_video_frames
from correlnet.models import build_model
from correlnet.prediction import default_neighbours, predict_triplet_tiled
from correlnet.tiling import TilingConfig
from studio.cli import main

H, W = 70, 90


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = build_model("efficient-correlnet", encoder="test_efficientnet", max_displacement=2)
    with torch.no_grad():  # a bias that puts the 0.5 threshold inside the output range
        model.decoder.logits.bias.fill_(0.0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", model.eval())


def gray_frames(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (H, W), dtype=np.uint8)
    return np.stack([np.roll(base, 2 * k, 1) for k in range(n)])


def expected_probs(ckpt: Path, frames: np.ndarray) -> list[np.ndarray]:
    """Reference: each triplet on its own, first/last frame with its one neighbour twice."""
    model = load_model(ckpt)
    gray = np.stack([to_gray_float(f) for f in frames])
    return [predict_triplet_tiled(model, gray[[p, i, q]], TilingConfig(), torch.device("cpu"))
            for i, (p, q) in enumerate(default_neighbours(len(frames)))]


def test_folder_masks_and_probabilities_named_as_the_frames(tmp_path, checkpoint):
    frames = gray_frames(4)
    folder = tmp_path / "scan"
    folder.mkdir()
    names = ["reel_9.png", "reel_10.png", "reel_11.tif", "reel_100.png"]  # natural order, mixed formats
    for name, f in zip(names, frames):
        assert cv2.imwrite(str(folder / name), f)
    out = tmp_path / "out"
    assert main(["detect", "--model", str(checkpoint), str(folder), "--out", str(out), "--probabilities",
                 "--device", "cpu"]) == 0
    ref = expected_probs(checkpoint, frames)
    for name, probs in zip(names, ref):
        stem = Path(name).stem
        mask = cv2.imread(str(out / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (H, W) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
        np.testing.assert_array_equal(mask == 255, probs >= 0.5)
        prob_png = cv2.imread(str(out / "probabilities" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_allclose(prob_png / 255.0, probs, atol=0.5 / 255 + 1e-6)
    assert 0 < sum((cv2.imread(str(out / f"{Path(n).stem}.png"), 0) > 0).sum() for n in names) < 4 * H * W


def test_video_masks_by_six_digit_index(tmp_path, checkpoint):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 24, (W, H))
    for f in gray_frames(3):
        writer.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
    writer.release()
    out = tmp_path / "masks"
    assert main(["detect", "--model", str(checkpoint), str(video), "--out", str(out), "--threshold", "0.4"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["000000.png", "000001.png", "000002.png"]
    decoded = np.stack(list(iter_video_frames(video)))
    for i, probs in enumerate(expected_probs(checkpoint, decoded)):
        mask = cv2.imread(str(out / f"{i:06d}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(mask == 255, probs >= 0.4)


def test_errors_name_the_problem_and_exit_non_zero(tmp_path, checkpoint, capsys):
    out = str(tmp_path / "out")
    assert main(["detect", "--model", str(checkpoint), str(tmp_path / "nope"), "--out", out]) == 2
    assert "nope: no such file or folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["detect", "--model", str(checkpoint), str(empty), "--out", out]) == 2
    assert "no PNG/JPEG/TIFF/DPX/Cineon/EXR frames" in capsys.readouterr().err
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    assert main(["detect", "--model", str(checkpoint), str(junk), "--out", out]) == 2
    assert "junk.mp4" in capsys.readouterr().err
    folder = tmp_path / "one"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), gray_frames(1)[0])
    assert main(["detect", "--model", str(tmp_path / "missing.pt"), str(folder), "--out", out]) == 2
    assert "missing.pt" in capsys.readouterr().err
    (folder / "b.png").write_bytes(b"")  # a zero-byte frame
    assert main(["detect", "--model", str(checkpoint), str(folder), "--out", out]) == 2
    assert "b.png" in capsys.readouterr().err


def test_help_documents_neighbours_and_naming_without_importing_torch():
    code = ("import argparse, sys; import studio.commands.detect as d; p = argparse.ArgumentParser(); "
            "d.register(p.add_subparsers()); "
            "assert 'torch' not in sys.modules, 'torch imported by the parser'; "
            "p.parse_args(['detect', '--help'])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert res.returncode == 0, res.stderr
    text = " ".join(res.stdout.split())
    assert "uses it twice" in text and "shot cut" in text and "000000.png" in text and "probabilities/" in text


def scan_folder(tmp_path: Path, n: int = 3) -> tuple[Path, dict[str, bytes]]:
    folder = tmp_path / "scans"
    folder.mkdir()
    for i, f in enumerate(gray_frames(n)):
        assert cv2.imwrite(str(folder / f"scan_{i}.png"), f)
    return folder, {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.parametrize("where", ["same", "inside"])
def test_out_in_the_input_folder_is_refused_and_the_scans_are_kept(tmp_path, checkpoint, capsys, where):
    folder, before = scan_folder(tmp_path)
    out = folder if where == "same" else folder / "masks"
    for extra in ([], ["--overwrite"]):  # --overwrite is for outputs only, never the inputs
        assert main(["detect", "--model", str(checkpoint), str(folder), "--out", str(out), *extra]) == 2
        assert "input folder" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_earlier_outputs_are_replaced_only_with_overwrite(tmp_path, checkpoint, capsys):
    folder, _ = scan_folder(tmp_path)
    out = tmp_path / "out"
    args = ["detect", "--model", str(checkpoint), str(folder), "--out", str(out), "--threshold", "0.4"]
    assert main(args) == 0
    first = (out / "scan_0.png").read_bytes()
    (out / "scan_0.png").write_bytes(b"a restorer's hand-made mask")
    assert main(["detect", "--model", str(checkpoint), str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already holds 3 file(s)" in err and "pass --overwrite" in err
    assert (out / "scan_0.png").read_bytes() == b"a restorer's hand-made mask"
    assert main(args + ["--overwrite"]) == 0
    assert (out / "scan_0.png").read_bytes() == first


def test_an_output_name_that_is_an_input_file_is_refused_even_with_overwrite(tmp_path, checkpoint, capsys):
    folder, before = scan_folder(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "scan_1.png").hardlink_to(folder / "scan_1.png")
    assert main(["detect", "--model", str(checkpoint), str(folder), "--out", str(out), "--overwrite"]) == 2
    assert "one of the input frames" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_huge_frames_are_refused_from_their_header(tmp_path, checkpoint, capsys, monkeypatch):
    from PIL import Image

    import correlnet.frames as framelib

    folder = tmp_path / "huge"
    folder.mkdir()
    for i in range(3):  # 1-bit PNGs: a few KB on disk, 144 MB each once decoded
        Image.new("1", (12000, 12000)).save(folder / f"f_{i}.png")
    monkeypatch.setattr(framelib, "read_image", lambda path: pytest.fail("decoded a frame above the limit"))
    assert main(["detect", "--model", str(checkpoint), str(folder), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "f_0.png" in err and "12000x12000, above the limit" in err and "Traceback" not in err


@pytest.mark.slow
def test_detect_and_film_detect_give_the_same_masks_on_duplicated_real_frames(tmp_path, monkeypatch, real_film_dir):
    """The 1906 clip repeats frame 2 as frame 3: both paths must see frames 1 and 4 around them."""
    import shutil

    from studio.detection import load_prediction
    from studio.films import film_frames, get_film
    from studio.settings import Settings
    from db.store import Store
    from db.models import Prediction
    from sqlalchemy import select

    src = tmp_path / "market"
    src.mkdir()
    for n in range(1, 7):
        shutil.copy(real_film_dir / "a_trip_down_market_street_before_the_fire" / f"{n:05d}.png", src)
    monkeypatch.setenv("CORRELNET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CORRELNET_DB_URL", raising=False)
    monkeypatch.delenv("CORRELNET_DEFAULT_MODEL", raising=False)  # the shipped detector, gate included
    monkeypatch.setenv("CORRELNET_DEVICE", "cpu")
    assert main(["detect", str(src), "--out", str(tmp_path / "masks"), "--device", "cpu"]) == 0
    assert main(["film", "import", str(src), "--name", "market"]) == 0
    assert main(["film", "detect", "market"]) == 0
    store = Store.open(Settings.from_env())
    frames = film_frames(store, get_film(store, "market"))
    assert [(f.prev_index, f.next_index) for f in frames[1:3]] == [(0, 3), (0, 3)]
    with store.session() as s:
        stored = {p.frame_id: p for p in s.execute(select(Prediction)).scalars()}
    marks = 0
    for frame in frames:
        film_mask = load_prediction(store, stored[frame.id]) >= 0.5
        cli_mask = cv2.imread(str(tmp_path / "masks" / f"{frame.number:05d}.png"), cv2.IMREAD_GRAYSCALE) > 0
        assert np.array_equal(cli_mask, film_mask), frame.number
        marks += int(cli_mask.sum())
    store.close()
    assert marks > 0  # real dust is found, so equal masks are not two empty ones
    # And the rule matters here: with plain i-1 / i+1 neighbours the duplicate's mask is another one.
    model = load_model(Path(__file__).resolve().parents[1] / "correlnet" / "weights" / "default.pt")
    gray = [to_gray_float(cv2.imread(str(src / f"{n:05d}.png"), cv2.IMREAD_GRAYSCALE)) for n in range(1, 7)]
    p, q = default_neighbours(6)[2]
    plain = predict_triplet_tiled(model, np.stack([gray[p], gray[2], gray[q]]), TilingConfig(), torch.device("cpu")) >= 0.5
    cli_third = cv2.imread(str(tmp_path / "masks" / "00003.png"), cv2.IMREAD_GRAYSCALE) > 0
    assert not np.array_equal(plain, cli_third)
