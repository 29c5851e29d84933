"""Inference runtimes (correlnet.runtime) and model export (correlnet.model_export) against eager PyTorch.

The reference is always eager PyTorch on the same frames: real 1906 film frames with the shipped
detector where the footage is present, seeded random frames with tiny models otherwise.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from correlnet import runtime as rt
from correlnet.checkpoint import load_detector, load_model
from correlnet.correlation import local_correlation
from correlnet.default_model import default_model_path
from correlnet.frames import read_image, to_gray_float
from correlnet.inference import prepare_for_inference
from correlnet.model_export import export_model, shifted_correlation
from correlnet.prediction import default_neighbours, detect_frames, predict_triplet_tiled
from correlnet.tiling import TilingConfig
from tests.model_fixtures import tiny_model, without_motion

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
ACCELERATED = [r for r in ("openvino", "onnxruntime") if rt.available(r)]


@pytest.fixture(autouse=True)
def _fresh_log_memory(monkeypatch):
    monkeypatch.setattr(rt, "_said", set())


def _real_frames(real_film_dir: Path, first: int = 9, n: int = 4) -> np.ndarray:
    folder = real_film_dir / "a_trip_down_market_street_before_the_fire"
    return np.stack([to_gray_float(read_image(folder / f"{i:05d}.png")) for i in range(first, first + n)])


def _stream(model, frames: np.ndarray, runtime: str) -> np.ndarray:
    nb = default_neighbours(len(frames))
    return np.stack([p for _, p in detect_frames(model, lambda i: frames[i], nb, TilingConfig(), CPU, runtime=runtime)])


# --- choosing the runtime ---

def test_requested_runtime_reads_the_environment_and_names_the_choices(monkeypatch):
    monkeypatch.setenv(rt.ENV_VAR, " OpenVINO ")
    assert rt.requested_runtime() == "openvino"
    monkeypatch.delenv(rt.ENV_VAR)
    assert rt.requested_runtime() == "auto"
    assert rt.requested_runtime("eager") == "eager"  # an explicit name wins over the environment
    monkeypatch.setenv(rt.ENV_VAR, "tensorrt")
    with pytest.raises(ValueError, match=r"CORRELNET_RUNTIME='tensorrt'.*auto, eager, openvino, onnxruntime, half"):
        rt.requested_runtime()


def test_auto_is_eager_on_the_cpu_and_half_on_cuda_by_measurement(monkeypatch):
    monkeypatch.setattr(rt, "available", lambda name: True)
    assert rt.resolve_runtime(CPU, "auto") == "eager"
    assert rt.resolve_runtime(CPU, "openvino") == "openvino"
    assert rt.resolve_runtime("cuda", "auto") == "half"  # a device name only: no GPU needed to choose
    assert rt.resolve_runtime("cuda", "onnxruntime") == "eager"


def test_keep_freed_memory_can_be_switched_off(monkeypatch):
    calls = []
    monkeypatch.setattr(rt, "_mallopt", lambda values: calls.append(values) or True)
    monkeypatch.setattr(rt, "_memory_kept", None)
    monkeypatch.setenv(rt.MEMORY_ENV_VAR, "0")
    assert rt.keep_freed_memory() is False and calls == []
    monkeypatch.setenv(rt.MEMORY_ENV_VAR, "1")
    assert rt.keep_freed_memory() is True and rt.keep_freed_memory() is True
    assert calls == [{rt._M_MMAP_MAX: 0, rt._M_TRIM_THRESHOLD: 2**31 - 1}]  # once per process
    rt.release_freed_memory()
    assert calls[-1] == rt._GLIBC_DEFAULTS


def test_a_missing_runtime_falls_back_to_eager_and_says_so_once(monkeypatch, caplog):
    monkeypatch.setattr(rt, "available", lambda name: name != "openvino")
    with caplog.at_level(logging.WARNING, logger="correlnet.runtime"):
        assert rt.resolve_runtime(CPU, "openvino") == "eager"
        assert rt.resolve_runtime(CPU, "openvino") == "eager"
        assert rt.resolve_runtime(CPU, "half") == "eager"  # half precision is for CUDA
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert "pip install openvino" in messages[0] and "CUDA" in messages[1]


def test_the_cli_offers_exactly_the_runtimes():
    from studio.cli import build_parser

    detect = build_parser()._subparsers._group_actions[0].choices["detect"]
    runtime = next(a for a in detect._actions if a.dest == "runtime")
    assert tuple(runtime.choices) == rt.RUNTIMES


def test_models_without_the_streaming_api_stay_eager():
    model = tiny_model("efficient-trinet").eval()
    assert not isinstance(prepare_for_inference(model, CPU, "openvino"), rt.AcceleratedNet)
    assert not isinstance(prepare_for_inference(tiny_model("correlnet").eval(), CPU, "eager"), rt.AcceleratedNet)


# --- same results ---

@pytest.mark.slow
@pytest.mark.parametrize("runtime", ACCELERATED)
def test_accelerated_probabilities_match_eager_on_real_film(runtime, real_film_dir):
    # The shipped network has the motion skip, which runs eagerly on the CPU (test_motion_skip.py):
    # its trained weights without the two motion channels are what the runtimes convert.
    model = without_motion(load_model(default_model_path()))
    assert prepare_for_inference(model, CPU, runtime).__class__ is rt.AcceleratedNet
    frames = _real_frames(real_film_dir)
    eager = _stream(model, frames, "eager")
    fast = _stream(model, frames, runtime)
    assert np.abs(fast - eager).max() <= 1e-3
    assert (eager >= 0.5).sum() > 0  # the frames have marks, so the comparison is not of two empty maps
    # The stacked-triplet path (forward) runs the same head.
    one = predict_triplet_tiled(prepare_for_inference(model, CPU, runtime), frames[:3], TilingConfig(), CPU)
    assert np.abs(one - eager[1]).max() <= 1e-3


@pytest.mark.parametrize("runtime", ACCELERATED)
def test_accelerated_head_matches_eager_on_tiny_models_and_compiles_once_per_shape(runtime, monkeypatch):
    torch.manual_seed(0)
    model = tiny_model("efficient-correlnet", input_skip=True, refine_convs=1).eval()
    fast = prepare_for_inference(model, CPU, runtime)
    eager = prepare_for_inference(model, CPU, "eager")
    assert isinstance(fast, rt.AcceleratedNet)
    built = []
    make = rt._make_backend
    monkeypatch.setattr(rt, "_make_backend", lambda *a: built.append(a[0]) or make(*a))
    rng = np.random.default_rng(1)
    for shape in ((3, 64, 96), (3, 96, 64), (3, 64, 96)):
        x = torch.from_numpy(rng.random((1, *shape), dtype=np.float32))
        with torch.inference_mode():
            diff = (torch.sigmoid(fast(x)) - torch.sigmoid(eager(x))).abs().max().item()
        assert diff <= 1e-3
        assert fast.runtime_used == runtime
    assert built == [runtime]  # converted once for the model
    if runtime == "openvino":
        assert len(fast._backend.compiled) == 2  # compiled once per input shape


def test_a_failing_runtime_falls_back_to_eager_with_the_same_result(monkeypatch, caplog):
    torch.manual_seed(0)
    model = tiny_model("correlnet").eval()
    eager = prepare_for_inference(model, CPU, "eager")
    fast = rt.AcceleratedNet(eager, "openvino")

    def broken(*args):
        raise RuntimeError("unsupported operation Foo\nsecond line")

    monkeypatch.setattr(rt, "_make_backend", broken)
    x = torch.rand(1, 3, 64, 64)
    with caplog.at_level(logging.WARNING, logger="correlnet.runtime"), torch.inference_mode():
        a, b = fast(x), fast(x)
        ref = eager(x)
    assert torch.equal(a, ref) and torch.equal(b, ref)
    assert fast.runtime_used == "eager"
    assert [r.getMessage() for r in caplog.records] == [
        "runtime openvino failed on this model (RuntimeError: unsupported operation Foo): predicting with eager PyTorch"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")
def test_half_precision_on_cuda_matches_float32(real_film_dir):
    cuda = torch.device("cuda")
    model = load_model(default_model_path(), cuda)
    frames = _real_frames(real_film_dir)
    nb = default_neighbours(len(frames))
    ref = np.stack([p for _, p in detect_frames(model, lambda i: frames[i], nb, TilingConfig(), cuda, runtime="eager")])
    half = np.stack([p for _, p in detect_frames(model, lambda i: frames[i], nb, TilingConfig.for_device(cuda), cuda,
                                                 runtime="half")])
    assert np.abs(half - ref).max() <= 1e-3


def test_tiles_are_batched_on_cuda_only():
    assert TilingConfig.for_device(CPU).batch == 1
    assert TilingConfig.for_device("cuda").batch == 4  # a name only: no GPU needed to choose
    assert TilingConfig.for_device("cuda", batch=2, tile=512, overlap=64) == TilingConfig(512, 64, 2)


# --- export for render farms ---

@pytest.mark.parametrize("d, s", [(3, 1), (6, 2), (0, 1)])
def test_shifted_correlation_equals_the_blocked_op(d, s):
    g = torch.Generator().manual_seed(d)
    a, b = torch.rand(2, 5, 13, 17, generator=g), torch.rand(2, 5, 13, 17, generator=g)
    torch.testing.assert_close(shifted_correlation(a, b, d, s), local_correlation(a, b, d, 1, 1, s))


def _write_pngs(folder: Path, frames: np.ndarray) -> list[Path]:
    folder.mkdir()
    paths = [folder / f"{i}.png" for i in range(len(frames))]
    for p, f in zip(paths, frames):
        cv2.imwrite(str(p), np.rint(f * 255).astype(np.uint8))
    return paths


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_exported_model_runs_in_the_farm_script_with_the_network_masks(fmt, tmp_path, real_film_dir):
    pytest.importorskip({"onnx": "onnxruntime", "openvino": "openvino"}[fmt])
    frames = _real_frames(real_film_dir, n=3)
    frames = np.rint(frames * 255) / 255  # what the script reads back from 8-bit PNGs
    files = export_model(load_model(default_model_path()), fmt, tmp_path / "farm" / "cn", *frames.shape[1:],
                         source=default_model_path())
    assert [f.name for f in files] == (["cn.onnx"] if fmt == "onnx" else ["cn.xml", "cn.bin"]) + [f"cn.{fmt}.json"]
    pngs = _write_pngs(tmp_path / "frames", frames)
    mask_path = tmp_path / "mask.png"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "farm_detect.py"), str(files[0]), *map(str, pngs),
                    str(mask_path)], check=True, cwd=tmp_path)
    ref = predict_triplet_tiled(load_detector(f"{default_model_path()}+nogate+nosure+noextent"), frames.astype(np.float32),
                                TilingConfig(), CPU)
    mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
    assert mask.shape == ref.shape and (ref >= 0.5).sum() > 0
    # Pixels within float rounding of 0.5 may go either way; nothing else may differ.
    assert np.all(((mask > 0) == (ref >= 0.5)) | (np.abs(ref - 0.5) < 1e-3))


def test_export_refuses_to_replace_files_and_reports_a_missing_package(tmp_path):
    model = tiny_model("correlnet").eval()
    target = tmp_path / "cn.onnx"
    target.write_bytes(b"someone's model")
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_model(model, "onnx", tmp_path / "cn", 64, 64)
    assert target.read_bytes() == b"someone's model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cn.onnx"]  # no temporary files left
    with pytest.raises(ValueError, match="choose one of onnx, openvino"):
        export_model(model, "tflite", tmp_path / "x", 64, 64)


def test_exported_onnx_matches_eager_probabilities(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = tiny_model("efficient-correlnet", input_skip=True).eval()
    (path, meta) = export_model(model, "onnx", tmp_path / "m", 48, 80)
    x = np.random.default_rng(0).random((1, 3, 48, 80), dtype=np.float32)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"frames": x})[0]
    with torch.inference_mode():
        ref = torch.sigmoid(model(torch.from_numpy(x))).numpy()
    assert got.shape == (1, 1, 48, 80) and np.abs(got - ref).max() <= 1e-4
    assert '"probs"' in meta.read_text()


def test_export_model_cli_writes_files_and_refuses_sdi_p(tmp_path, capsys):
    from studio.cli import main

    assert main(["export-model", "--format", "onnx", "--model", "sdi-p", "--out", str(tmp_path / "x")]) == 2
    assert "not a network" in capsys.readouterr().err
    assert main(["export-model", "--format", "onnx", "--size", "64x96", "--out", str(tmp_path / "cn")]) == 0
    assert (tmp_path / "cn.onnx").stat().st_size > 100_000
    import json

    from db.files import sha256_file

    meta = json.loads((tmp_path / "cn.onnx.json").read_text())
    assert meta["source_sha256"] == sha256_file(default_model_path()) and meta["input"]["shape"] == [1, 3, 64, 96]
    assert main(["export-model", "--format", "onnx", "--size", "64x96", "--out", str(tmp_path / "cn")]) == 2
    assert "--overwrite" in capsys.readouterr().err
