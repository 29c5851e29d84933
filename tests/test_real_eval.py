"""correlnet.real_eval, correlnet.real_footage, correlnet.moving_trap and correlnet.annotations on
tiny hand-made footage with stub detectors, and `correlnet evaluate --part` end to end."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from torch import nn

import correlnet.annotations
from correlnet.annotations import annotated_numbers, annotation_path, load_annotation
from correlnet.checkpoint import save_checkpoint
from correlnet.metrics import PixelCounts
from correlnet.evaluate import centre_frames, clean_triplet, triplet_rng
from correlnet.moving_trap import MovingObject, MovingTrapConfig, MovingTrapCounts, SPEED_BINS, add_moving_objects
from correlnet.real_eval import RealEvalConfig, Skipped, load_data, moving_trap, parse_parts, run_parts
from correlnet.real_footage import (
    FilmClip,
    annotated_scores,
    clean_video_flagged,
    one_frame_pixels,
    real_film_flagged,
)
from correlnet.synth.sprites import Sprite
from correlnet.tiling import TilingConfig
from studio.commands.evaluate import format_part

DEVICE = torch.device("cpu")
TILING = TilingConfig()
H, W = 64, 80
SPECK = (slice(20, 24), slice(30, 34))  # box A: a dark speck in frame 00003 only
STATIC = (slice(44, 48), slice(60, 64))  # box B: plain background in every frame


class BoxDetector(nn.Module):
    """Stub: flags boxes A and B of every frame (16 + 16 pixels), whatever the frames show."""

    size_multiple = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.full((x.shape[0], 1, *x.shape[-2:]), -20.0, dtype=x.dtype)
        out[..., SPECK[0], SPECK[1]] = 20.0
        out[..., STATIC[0], STATIC[1]] = 20.0
        return out


class LeftHalf(nn.Module):
    """Stub: flags the left half of the frame (x < W // 2)."""

    size_multiple = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.full((x.shape[0], 1, *x.shape[-2:]), -20.0, dtype=x.dtype)
        out[..., : x.shape[-1] // 2] = 20.0
        return out


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 2.5)
    return ((t - t.min()) / (t.max() - t.min()) * 0.6 + 0.2).astype(np.float32)


def write_film(folder, n: int = 5) -> np.ndarray:
    """n frames 00001.png ... of a texture panning 2 px per frame; 00003 has the dark speck."""
    big = texture(H, W + 2 * n)
    folder.mkdir(parents=True)
    frames = []
    for k in range(n):
        f = big[:, 2 * k : 2 * k + W].copy()
        if k == 2:
            f[SPECK] = 0.0
        f = np.rint(f * 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"{k + 1:05d}.png"), f)
        frames.append(f)
    return np.stack(frames)


def test_parse_parts_accepts_lists_repeats_and_all():
    assert parse_parts(["a"]) == ("a",)
    assert parse_parts(["c,a", "b"]) == ("a", "b", "c")
    assert parse_parts(["all"]) == ("a", "b", "c", "d", "e", "f")
    with pytest.raises(ValueError, match="unknown evaluation part 'g'"):
        parse_parts(["a,g"])


def test_one_frame_pixels_counts_components_with_enough_evidence():
    mask = np.zeros((8, 12), bool)
    score = np.zeros((8, 12), np.float32)
    mask[0:2, 0:2] = True  # A: 4 px, all with evidence -> counts
    score[0:2, 0:2] = 0.05
    mask[4:6, 0:3] = True  # B: 6 px, 2 with evidence (1/3 < 1/2) -> does not count
    score[4, 0:2] = 0.2
    mask[0, 6], mask[1, 7], mask[2, 8], mask[3, 9] = True, True, True, True  # C: one diagonal component
    score[0, 6], score[1, 7] = 0.03, 0.5  # exactly half of it at >= 0.03 -> counts
    score[7, 11] = 1.0  # evidence outside any flagged pixel changes nothing
    assert one_frame_pixels(mask, score) == 4 + 4
    assert one_frame_pixels(mask, score, evidence=0.04) == 4  # C's 0.03 pixel no longer counts
    assert one_frame_pixels(np.zeros((3, 3), bool), np.ones((3, 3), np.float32)) == 0
    with pytest.raises(ValueError, match="one shape"):
        one_frame_pixels(mask, score[:4])


def test_moving_trap_counts_by_speed_and_kind_against_hand_counts():
    sprite = Sprite(np.zeros((3, 3), np.float32), np.ones((3, 3), np.float32), (0.0, 0.0), (0.0, 0.0))
    a = np.zeros((8, 10), bool)
    a[0:2, 0:4] = True  # 8 px, slow blob
    b = np.zeros((8, 10), bool)
    b[4:7, 5:8] = True  # 9 px, fast line
    pred = np.zeros((8, 10), bool)
    pred[:, 0:6] = True  # 48 px: all of a, column 5 of b (3 px), 37 background px
    counts = MovingTrapCounts.empty()
    counts.add(pred, [MovingObject("blob", 1.0, 0, sprite), MovingObject("line", 12.0, 2, sprite)], [a, b])
    d = counts.to_dict()
    assert (d["object_pixels"], d["flagged_pixels"]) == (17, 11) and d["share_flagged"] == pytest.approx(11 / 17)
    assert d["by_speed"]["0-2"] == {"pixels": 8, "flagged": 8, "share": 1.0}
    assert d["by_speed"]["2-8"] == {"pixels": 0, "flagged": 0, "share": None}
    assert d["by_speed"]["8-20"]["share"] == pytest.approx(3 / 9)
    assert d["by_kind"]["line"]["flagged"] == 3 and d["by_kind"]["sprite"]["pixels"] == 0
    assert d["background_share_flagged"] == pytest.approx(37 / 63) and d["objects"] == 2 and d["frames"] == 1


def test_moving_objects_are_disjoint_seeded_and_drawn_per_speed_bin():
    clean = np.stack([texture(96, 128, seed=k) for k in range(3)])
    cfg = MovingTrapConfig(density=40.0)
    frames, objects, masks = add_moving_objects(clean, cfg, np.random.default_rng(7))
    again, _, _ = add_moving_objects(clean, cfg, np.random.default_rng(7))
    assert frames.shape == (3, 96, 128) and frames.dtype == np.float32 and np.array_equal(frames, again)
    assert len(objects) == len(masks) == round(40.0 * 96 * 128 / 256**2)
    assert (np.sum(masks, axis=0) <= 1).all()  # a pixel belongs to at most one object
    for obj in objects:
        lo, hi = SPEED_BINS[obj.speed_bin]
        assert lo <= obj.speed <= hi and np.hypot(*obj.sprite.velocity) == pytest.approx(obj.speed)
    assert {o.kind for o in objects} == {"blob", "sprite", "line"}
    assert 0.0 <= frames.min() and frames.max() <= 1.0 and not np.array_equal(frames, clean)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        add_moving_objects(clean[:2], cfg, np.random.default_rng(0))


def test_moving_trap_part_counts_what_the_detector_flags_on_each_seeded_triplet():
    clip = np.stack([texture(H, W, seed=k) for k in range(5)])
    cfg = RealEvalConfig(seed=3, trap_frames=2, trap=MovingTrapConfig(density=30.0))
    result = moving_trap(LeftHalf().eval(), {"s": clip}, cfg, DEVICE)
    flagged = pixels = 0
    for t in centre_frames(5, 2):  # the same objects, drawn again from the same per-triplet seed
        _, _, masks = add_moving_objects(clean_triplet(clip, t), cfg.trap, triplet_rng(3, "s", t, salt=2))
        pixels += sum(int(m.sum()) for m in masks)
        flagged += sum(int(m[:, : W // 2].sum()) for m in masks)
    assert result.frames == 2 and sum(result.pixels_by_bin) == pixels > 0
    assert sum(result.flagged_by_bin) == flagged and 0 < result.share < 1


def test_clean_video_share_flagged_is_the_pixel_total():
    clip = (np.stack([texture(H, W, seed=k) for k in range(6)]) * 255).astype(np.uint8)
    report = clean_video_flagged(BoxDetector().eval(), {"c": clip}, 2, 0.5, TILING, DEVICE)
    r = report.to_dict()
    assert r["per_clip"]["c"] == {"frames": 2, "pixels": 2 * H * W, "flagged": 64, "share_flagged": 64 / (2 * H * W)}
    assert r["overall"]["share_flagged"] == pytest.approx(32 / (H * W))


def test_real_film_share_and_one_frame_share_on_a_tiny_film(tmp_path):
    write_film(tmp_path / "film")
    clip = FilmClip.load(tmp_path / "film", 5)
    assert clip.numbers == (1, 2, 3, 4, 5) and clip.frames.shape == (5, H, W)
    assert clip.predictable == [1, 2, 3]  # the first and last frame lack a neighbour on one side
    report = real_film_flagged(BoxDetector().eval(), {"film": clip}, 0.5, TILING, DEVICE)
    r = report.to_dict()["per_clip"]["film"]
    # 3 frames x 32 flagged px; only box A of frame 00003 covers a one-frame defect (the speck).
    assert (r["frames"], r["pixels"], r["flagged"], r["one_frame_pixels"]) == (3, 3 * H * W, 96, 16)
    assert r["share_flagged"] == pytest.approx(96 / (3 * H * W)) and r["one_frame_share"] == pytest.approx(1 / 6)
    # The speck is the film's only sure one-frame defect (rigid pan, neighbours agree), and it is flagged;
    # a detector that flags the static box alone misses it.
    assert (r["sure_defects"], r["sure_found"], r["sure_recall"]) == (1, 1, 1.0)

    class StaticBox(nn.Module):
        size_multiple = 1

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = torch.full((x.shape[0], 1, *x.shape[-2:]), -20.0, dtype=x.dtype)
            out[..., STATIC[0], STATIC[1]] = 20.0
            return out

    miss = real_film_flagged(StaticBox().eval(), {"film": clip}, 0.5, TILING, DEVICE).to_dict()["per_clip"]["film"]
    assert (miss["sure_defects"], miss["sure_found"], miss["sure_recall"]) == (1, 0, 0.0)


def test_annotations_load_at_the_frame_size_and_wrong_ones_name_the_file(tmp_path):
    root = tmp_path / "ann"
    path = annotation_path("film", 3, root)
    assert path == root / "film" / "00003.png"
    path.parent.mkdir(parents=True)
    mask = np.zeros((H, W), np.uint8)
    mask[SPECK] = 255
    mask[0:2, 0:2] = 1  # any nonzero value is a defect
    cv2.imwrite(str(path), mask)
    loaded = load_annotation(path, (H, W))
    assert loaded.dtype == bool and loaded.shape == (H, W) and loaded.sum() == 16 + 4
    assert annotated_numbers("film", root) == [3] and annotated_numbers("other", root) == []
    with pytest.raises(ValueError, match=r"00003\.png.*80x64.*81x64"):
        load_annotation(path, (H, W + 1))
    cv2.imwrite(str(root / "film" / "00004.png"), np.zeros((H, W, 3), np.uint8))
    with pytest.raises(ValueError, match=r"00004\.png.*single-channel"):
        load_annotation(root / "film" / "00004.png", (H, W))


def test_annotated_scores_against_hand_counts_and_skip_without_masks(tmp_path):
    write_film(tmp_path / "film")
    clip = FilmClip.load(tmp_path / "film", 5)
    root = tmp_path / "ann"
    (root / "film").mkdir(parents=True)
    truth = np.zeros((H, W), np.uint8)
    truth[SPECK] = 255
    truth[0:2, 0:2] = 255  # a defect the detector misses
    cv2.imwrite(str(root / "film" / "00003.png"), truth)
    report = annotated_scores(BoxDetector().eval(), {"film": clip, "bare": clip}, 0.5, TILING, DEVICE, root)
    c = report.per_clip["film"]
    assert (c.tp, c.fp, c.fn) == (16, 16, 4) and report.frames == {"film": [3]}
    assert "bare" in report.skipped and report.to_dict()["overall"]["precision"] == pytest.approx(0.5)
    # by marks: the speck found, the static box a false mark, the corner missed
    assert report.marks["film"] == PixelCounts(1, 1, 1)
    assert report.to_dict()["marks"]["overall"] == PixelCounts(1, 1, 1).as_dict()
    assert "by marks" in format_part("e", report.to_dict()) and "1 found, 1 false, 1 missed" in format_part(
        "e", report.to_dict())
    cv2.imwrite(str(root / "film" / "00009.png"), truth)
    with pytest.raises(ValueError, match=r"00009\.png.*not among the evaluated frames"):
        annotated_scores(BoxDetector().eval(), {"film": clip}, 0.5, TILING, DEVICE, root)


def test_parts_skip_with_the_reason_when_the_shared_data_is_absent(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRELNET_SHARED_DATA", str(tmp_path / "nowhere"))
    data = load_data(["c", "d", "e"])
    out = run_parts(BoxDetector().eval(), ["c", "d", "e"], data, RealEvalConfig(), DEVICE)
    assert all(isinstance(r, Skipped) for r in out.values())
    assert "nowhere" in out["c"].reason and "not found" in out["d"].reason
    assert out["e"].to_dict() == {"skipped": out["e"].reason}


@pytest.fixture
def shared(tmp_path, monkeypatch):
    """A tiny shared-data tree: one validation clip (a folder of frames) and the 1903 clip."""
    root = tmp_path / "shared"
    bedroom = root / "clean_video" / "sam2_bedroom"
    bedroom.mkdir(parents=True)
    for k in range(4):
        cv2.imwrite(str(bedroom / f"{k:05d}.jpg"), np.rint(texture(H, W, seed=k) * 255).astype(np.uint8))
    write_film(root / "real_film" / "the_great_train_robbery")
    ann = tmp_path / "ann"
    (ann / "the_great_train_robbery").mkdir(parents=True)
    truth = np.zeros((H, W), np.uint8)
    truth[SPECK] = 255
    cv2.imwrite(str(ann / "the_great_train_robbery" / "00003.png"), truth)
    monkeypatch.setenv("CORRELNET_SHARED_DATA", str(root))
    monkeypatch.setattr(correlnet.annotations, "ANNOTATIONS_DIR", ann)
    return root


def test_cli_runs_parts_with_sdi_p_on_the_shared_data(shared, capsys):
    from studio.cli import main

    assert main(["evaluate", "--model", "sdi-p", "--part", "c", "--part", "d,e", "--frames", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "sdi-p" and out["parts"] == ["c", "d", "e"] and "overall" not in out
    clean = out["clean_video"]
    assert list(clean["per_clip"]) == ["sam2_bedroom"] and clean["per_clip"]["sam2_bedroom"]["frames"] == 1
    assert set(clean["skipped"]) == {"sam2_04_coffee", "mmaction2_test_video_structuralize"}
    film = out["real_film"]
    assert film["per_clip"]["the_great_train_robbery"]["frames"] == 3
    assert "a_trip_down_market_street_before_the_fire" in film["skipped"]
    assert film["overall"]["flagged"] > 0 and film["overall"]["one_frame_share"] == 1.0  # SDI-p by construction
    assert out["annotated"]["frames"] == {"the_great_train_robbery": [3]}
    assert out["annotated"]["overall"]["recall"] >= 0.75  # the speck is found

    assert main(["evaluate", "--model", "sdi-p", "--part", "d", "--frames", "1"]) == 0
    text = capsys.readouterr().out
    assert "(d) real film" in text and "one-frame share" in text and "skipped a_trip_down" in text


def test_cli_runs_parts_a_and_b_with_a_tiny_network(tmp_path, capsys):
    from model_fixtures import tiny_model
    from studio.cli import main

    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "tiny.pt", tiny_model("efficient-correlnet").eval())
    clips = tmp_path / "clip"
    clips.mkdir()
    for k in range(4):
        cv2.imwrite(str(clips / f"{k:03d}.png"), np.rint(texture(H, W, seed=k) * 255).astype(np.uint8))
    assert main(["evaluate", "--model", str(ckpt), "--source", str(clips), "--part", "a,b", "--frames", "1",
                 "--json", "--threads", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["parts"] == ["a", "b"] and out["frames"] == 1 and "fp_rate" in out["scene_trap"]
    trap = out["moving_trap"]
    assert trap["frames"] == 1 and trap["object_pixels"] > 0 and set(trap["by_speed"]) == {"0-2", "2-8", "8-20"}
    assert main(["evaluate", "--model", "sdi-p", "--source", str(clips), "--part", "x"]) == 2
    assert "unknown evaluation part 'x'" in capsys.readouterr().err


def test_the_committed_annotations_load_at_the_real_frames_size():
    from correlnet.annotations import ANNOTATIONS_DIR
    from correlnet.data import shared_data_dir
    from correlnet.frames import image_header_size

    root = shared_data_dir() / "real_film"
    if not root.is_dir():
        pytest.skip(f"real film not found at {root}")
    loaded = 0
    for clip in ("the_great_train_robbery", "a_trip_down_market_street_before_the_fire"):
        numbers = annotated_numbers(clip)
        assert numbers and all(1 <= n <= 25 for n in numbers)  # evaluation frames only
        for n in numbers:
            w, h = image_header_size(root / clip / f"{n:05d}.png")
            mask = load_annotation(ANNOTATIONS_DIR / clip / f"{n:05d}.png", (h, w))
            assert mask.shape == (h, w) and mask.dtype == bool and 0 < mask.sum() < 0.01 * mask.size
            loaded += 1
    assert loaded == 8


def test_real_motion_clips_are_area_averaged_to_640_px_and_scored_as_part_a():
    """Part (f): the validation clips shrunk to MOTION_MAX_WIDTH by area averaging (a 1280 px clip: the
    mean of each 2x2 block, computed here by hand), a narrower clip unchanged; then part (a)'s scoring
    (same generator and seeds) without the scene trap."""
    from correlnet.evaluate import EvalConfig, evaluate_sequences
    from correlnet.real_eval import EvalData, MOTION_MAX_WIDTH, motion_sequences
    from correlnet.synth import SynthConfig

    rng = np.random.default_rng(0)
    wide = rng.integers(0, 256, (3, 8, 2 * MOTION_MAX_WIDTH), dtype=np.uint8)
    narrow = np.rint(np.stack([texture(H, W, seed=k) for k in range(4)]) * 255).astype(np.uint8)
    out = motion_sequences({"wide": wide, "narrow": narrow})
    expected = wide.astype(np.float32).reshape(3, 4, 2, MOTION_MAX_WIDTH, 2).mean(axis=(2, 4)) / 255
    assert out["wide"].shape == (3, 4, MOTION_MAX_WIDTH) and out["wide"].dtype == np.float32
    np.testing.assert_allclose(out["wide"], expected, atol=1e-5)
    np.testing.assert_array_equal(out["narrow"], narrow.astype(np.float32) / 255)

    cfg = RealEvalConfig(paper_frames=2)
    report = run_parts(LeftHalf().eval(), ["f"], EvalData(validation={"narrow": narrow}), cfg, DEVICE)["f"]
    reference = evaluate_sequences(LeftHalf().eval(), {"narrow": out["narrow"]}, SynthConfig.paper(),
                                   EvalConfig(seed=0, triplets_per_sequence=2, scene_trap=False), DEVICE)
    assert report.frames == 2 and report.scene is None and list(report.per_sequence) == ["narrow"]
    assert report.total == reference.total and report.total.tp > 0 and report.total.fn > 0  # half is found
    missing = run_parts(LeftHalf().eval(), ["f"], EvalData(validation_skipped={"x": "x not found"}), cfg, DEVICE)
    assert isinstance(missing["f"], Skipped) and "x not found" in missing["f"].reason


def test_cli_runs_part_f_on_the_shared_validation_clip(shared, capsys):
    from studio.cli import main

    assert main(["evaluate", "--model", "sdi-p", "--part", "f", "--frames", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    motion = out["real_motion"]
    assert out["parts"] == ["f"] and list(motion["per_sequence"]) == ["sam2_bedroom"] and motion["frames"] == 1
    assert motion["overall"]["tp"] > 0  # SDI-p finds the paper's blotches on a static texture
    assert main(["evaluate", "--model", "sdi-p", "--part", "f", "--frames", "1"]) == 0
    assert "(f) synthetic defects on real motion" in capsys.readouterr().out
