"""A Correl-Net as one self-contained ONNX or OpenVINO model, for render farms (`correlnet export-model`).

The exported graph is the whole network on a triplet of one frame size: input "frames" (1, 3, H, W)
float32 in [0, 1] (previous, middle, next frame, grayscale), output "probs" (1, 1, H, W), the defect
probability of the middle frame (a defect where >= 0.5). It needs no correlnet code: our correlation
op (blocked GEMMs in a custom autograd Function) is replaced by the same product written in standard
layers (`shifted_correlation`, equal to it up to float rounding), and the padding to the network's
size multiple is in the graph. A frame size other than the exported one needs another export.

A network with the motion skip (`ModelConfig.motion_skip`) computes OpenCV's DIS flow, which no graph
holds: its export takes a second input "motion" (1, 2, Hp, Wp), the compensated differences of the
frames padded to the network's size multiple (`motion_input`; `scripts/farm_detect.py` computes them
with OpenCV, and the .json's "motion_input" says how).

Not in the graph: the temporal gate, the sure one-frame marks and the marks' extent of the shipped
detector (`correlnet.temporal_gate`: OpenCV optical flow and connected components). The exported model
gives what `--model CKPT+nogate+nosure+noextent` gives; `scripts/farm_detect.py` is the ten-line runner, and
docs/farm.md says how to add the gate when correlnet is installed on the farm.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

FORMATS = ("onnx", "openvino")


def shifted_correlation(a: torch.Tensor, b: torch.Tensor, max_displacement: int, stride2: int = 1) -> torch.Tensor:
    """The kernel-1 correlation of `correlnet.correlation.local_correlation` (stride1 1) in standard ops.

    a, b: (B, C, H, W) -> (B, D*D, H, W), D = 2*(max_displacement // stride2) + 1, channel
    (i * D + j) = mean over C of a(y, x) * b(y + (i - r)*s, x + (j - r)*s), zero outside b.
    One product per displacement: slower than the blocked GEMMs on a CPU, but any runtime has it."""
    r = max_displacement // stride2
    d = r * stride2
    H, W = a.shape[-2:]
    bp = F.pad(b, (d, d, d, d))
    steps = range(0, 2 * d + 1, stride2)
    maps = [(a * bp[:, :, dy : dy + H, dx : dx + W]).sum(1, keepdim=True) for dy in steps for dx in steps]
    return torch.cat(maps, 1) / a.shape[1]


class ShiftCorrelation(nn.Module):
    """Drop-in for a model's `Correlation` layer (kernel 1, stride1 1) built from `shifted_correlation`."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        if getattr(layer, "kernel_size", 1) != 1 or getattr(layer, "stride1", 1) != 1:
            raise ValueError("export needs the models' kernel-1, stride1-1 correlation layer")
        self.max_displacement, self.kernel_size = layer.max_displacement, 1
        self.stride1, self.stride2 = 1, layer.stride2

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return shifted_correlation(a, b, self.max_displacement, self.stride2)


class GivenMotion(nn.Module):
    """Stands in for a model's `MotionEvidence` (`ModelConfig.motion_skip`) in an exported graph: the
    compensated differences come in as the graph's second input, "motion" (1, 2, Hp, Wp) at the padded
    size, computed outside by the runner (`motion_input`, `scripts/farm_detect.py`). Set `value` before
    each call (`PortableNet` does)."""

    def __init__(self):
        super().__init__()
        self.value: torch.Tensor | None = None

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if self.value is None or tuple(self.value.shape) != (frames.shape[0], 2, *frames.shape[-2:]):
            got = None if self.value is None else tuple(self.value.shape)
            raise ValueError(f"this network takes the motion input (1, 2, {frames.shape[-2]}, {frames.shape[-1]}) "
                             f"for its padded frames; got {got}")
        return self.value


class PortableNet(nn.Module):
    """forward(frames (1, 3, H, W) in [0, 1][, motion (1, 2, Hp, Wp)]) -> probs (1, 1, H, W): the
    network and its sigmoid; `motion` (the padded frames' compensated differences) for a network with
    the motion skip, whose flow cannot be in the graph, else None."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        decoder = getattr(net, "decoder", None)
        self.given = decoder.motion if isinstance(getattr(decoder, "motion", None), GivenMotion) else None

    def motion_shape(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        """The "motion" input's shape for frames of height x width, or None when the network takes none."""
        if self.given is None:
            return None
        from correlnet.models.padding import InputPadder

        return (1, 2, *InputPadder(height, width, self.net.size_multiple).padded_size)

    def forward(self, frames: torch.Tensor, motion: torch.Tensor | None = None) -> torch.Tensor:
        if self.given is None:
            return torch.sigmoid(self.net(frames))
        self.given.value = motion
        try:
            return torch.sigmoid(self.net(frames))
        finally:
            self.given.value = None


def motion_input(frames: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The "motion" input of an exported motion-skip network, as `scripts/farm_detect.py` computes it:
    frames (1, 3, H, W) float32 in [0, 1] padded at the bottom and right by repeating the edge to
    `shape`'s (Hp, Wp), then `correlnet.sdi.compensated_channels` (the graph pads the frames the same
    way). Returns (1, 2, Hp, Wp) float32."""
    from correlnet.sdi import compensated_channels

    hp, wp = shape[-2:]
    padded = np.pad(np.asarray(frames, np.float32), ((0, 0), (0, 0), (0, hp - frames.shape[-2]), (0, wp - frames.shape[-1])),
                    mode="edge")
    return compensated_channels(torch.from_numpy(padded)).numpy()


def portable(model: nn.Module) -> PortableNet:
    """An eval-mode, batch-norm-folded copy of `model` with a standard-op correlation, wrapped in its
    sigmoid; a motion-skip network's flow is replaced by the graph input "motion" (`GivenMotion`)."""
    from correlnet.inference import prepare_for_inference

    net = prepare_for_inference(model, "cpu", runtime="eager")
    if getattr(net, "corr", None) is not None:
        net.corr = ShiftCorrelation(net.corr)
    if getattr(getattr(net, "decoder", None), "motion", None) is not None:
        net.decoder.motion = GivenMotion()
    return PortableNet(net).eval()


def export_model(model: nn.Module, fmt: str, out: Path, height: int, width: int,
                 source: Path | None = None, source_sha256: str | None = None, overwrite: bool = False) -> list[Path]:
    """Write `model` as `fmt` (onnx: OUT.onnx; openvino: OUT.xml + OUT.bin) for frames of height x
    width, with OUT.<fmt>.json describing input, output and origin (`source`, the checkpoint's path, and
    its `source_sha256` as the caller computed it). Returns the files written.

    Refuses (FileExistsError) to replace existing files unless overwrite; ValueError for a bad format
    or size. Files are written under temporary names and renamed, so a failed export leaves none."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if height < 8 or width < 8:
        raise ValueError(f"frame size must be at least 8x8; got {height}x{width}")
    out = Path(out)
    stem = out.with_suffix("") if out.suffix in (".onnx", ".xml", ".json") else out
    files = [stem.with_suffix(".onnx")] if fmt == "onnx" else [stem.with_suffix(".xml"), stem.with_suffix(".bin")]
    files.append(stem.with_name(f"{stem.name}.{fmt}.json"))
    taken = [f for f in files if f.exists()]
    if taken and not overwrite:
        raise FileExistsError(f"{taken[0]} already exists; choose another --out or pass --overwrite")
    stem.parent.mkdir(parents=True, exist_ok=True)
    net = portable(model)
    example = torch.rand(1, 3, height, width)
    motion_shape = net.motion_shape(height, width)
    examples = (example,) if motion_shape is None else (example, 0.1 * torch.rand(motion_shape) - 0.05)
    names = ["frames"] if motion_shape is None else ["frames", "motion"]
    tmp = stem.with_name(f".{stem.name}.tmp")
    written: list[Path] = []
    try:
        if fmt == "onnx":
            from correlnet.runtime import export_onnx_bytes

            data = export_onnx_bytes(net, examples, names, output="probs")
            written.append(tmp.with_suffix(".onnx"))
            written[-1].write_bytes(data)
        else:
            import openvino as ov

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer warnings on shape checks: constant for one size
                converted = ov.convert_model(net, example_input=examples if motion_shape else example)
            if motion_shape is not None:  # static shapes, so a runner can read the motion input's size
                converted.reshape({converted.inputs[0]: [1, 3, height, width], converted.inputs[1]: list(motion_shape)})
            for port, name in zip(converted.inputs, names):
                port.get_tensor().set_names({name})
            converted.outputs[0].get_tensor().set_names({"probs"})
            ov.save_model(converted, str(tmp.with_suffix(".xml")), compress_to_fp16=False)
            written += [tmp.with_suffix(".xml"), tmp.with_suffix(".bin")]
        config = getattr(model, "config", None)
        meta = {
            "format": fmt,
            "input": {"name": "frames", "shape": [1, 3, height, width], "dtype": "float32",
                      "meaning": "previous, middle, next frame; grayscale in [0, 1]"},
            "output": {"name": "probs", "shape": [1, 1, height, width], "dtype": "float32",
                       "meaning": "defect probability of the middle frame; a defect where >= 0.5"},
            "motion_input": None if motion_shape is None else {
                "name": "motion", "shape": list(motion_shape), "dtype": "float32",
                "meaning": "the frames padded at the bottom and right by repeating the edge to this size; DIS "
                           "optical flow (OpenCV, preset fast, on 8-bit copies) from the middle frame to each "
                           "neighbour; each neighbour warped onto the middle (bilinear, border repeated); middle "
                           "minus each, minus its median: scripts/farm_detect.py computes it"},
            "not_included": "temporal gate, sure marks and mark extent (correlnet.temporal_gate); equals --model CKPT+nogate+nosure+noextent",
            "model_config": config.to_dict() if config is not None else None,
            "source": str(source) if source else None,
            "source_sha256": source_sha256,
        }
        written.append(tmp.with_suffix(".meta"))
        written[-1].write_text(json.dumps(meta, indent=2) + "\n")
        if fmt == "openvino":  # the .xml names its weights file: rename keeps the pair together
            os.replace(written[1], files[1])
            os.replace(written[0], files[0])
        else:
            os.replace(written[0], files[0])
        os.replace(written[-1], files[-1])
    finally:
        for f in written:
            f.unlink(missing_ok=True)
    return files
