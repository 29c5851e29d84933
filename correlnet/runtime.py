"""Inference runtimes for the network (eager PyTorch, OpenVINO, ONNX Runtime, CUDA half precision)
and the process memory setting that made 1080p detection 1.7x faster on the CPU.

Where the time went (issue 17, docs/benchmarks.md). A streamed 1080p frame of the shipped detector on
the two dev cores cost 1.7-2.0 s eagerly: stem 0.03 s, the kernel-1 correlation 0.27 s, its flip 0.17 s,
the head (fusion, EfficientNet body, U-Net decoder, refine block) 0.8 s, the temporal gate's DIS
flows 0.35 s. A third of it was the kernel faulting in fresh pages: glibc serves every block above 32
MiB with a new mmap and unmaps it on free, and each frame allocates its 67-100 MB activations again.
`keep_freed_memory` (applied by every prediction path) keeps freed blocks for reuse: eager went
from 0.50 to 0.88 frames/s in one bench/film_detect.py run, the same frames, probabilities unchanged.

Runtimes, measured in that run with the memory kept: eager 0.881 frames/s, OpenVINO 0.839, ONNX
Runtime 0.751. OpenVINO's head alone is 2.4x faster than eager's (0.26 s against 0.62 s at 1080p, on
NCHW inputs, in isolation), but inside the stream it is not (0.5-0.9 s: hand-over copies of the
channels_last maps, and its threads and torch's taking turns on two cores), so on the CPU `auto`
picks eager by measurement; OpenVINO and ONNX Runtime stay selectable and tested (another CPU, more
cores or a render farm may rank them otherwise: run the benchmark there). torch.compile (inductor)
was measured too: 54 s to compile the head, 0.59 s against 0.85 s eager, but logits moved by 0.018.

How an accelerated runtime runs. `accelerate` wraps a prepared (batch norm folded) Correl-Net in
`AcceleratedNet`, which has the streaming API (`correlnet.models.base.StreamingNet`: stem_features,
pair_correlation, head) and the forward of `correlnet.models.branch.CorrelNet`: stem and correlation
stay in torch (the stem is one convolution; our blocked-GEMM correlation beats the same op in
standard layers under OpenVINO, 0.28 s against 0.90 s), the head is converted once per model and
process (traced on a small example with dynamic shapes, about 3 s for the shipped model; kept in a
small cache by weights) and, for OpenVINO, compiled once per input shape (about 0.5 s).

Which runtime. `CORRELNET_RUNTIME` = auto (default) | eager | openvino | onnxruntime | half:
- auto: eager on the CPU (fastest here, see above), half on CUDA.
- openvino / onnxruntime: that runtime on the CPU; on CUDA eager torch is used instead.
- half: CUDA only: stem and head in float16 autocast, the correlation in float32; tiles of large
  frames are batched on CUDA (`correlnet.tiling.TilingConfig.for_device`).
- eager: plain PyTorch, the reference every runtime is tested against.
When the asked runtime is missing or fails (import, conversion or compilation), prediction falls
back to eager and says so once in the log (logger "correlnet.runtime"); results never depend on it
beyond float rounding (tests: probabilities within 1e-3 of eager on real frames).
Models without the streaming API (`StreamingNet`: Tri-Net, the one-branch baselines, SDI-p) always run eager,
and so do models with the motion skip (`ModelConfig.motion_skip`, the shipped one since session 13) on
the CPU: their head computes OpenCV's optical flow, which no converted graph holds.
"""

from __future__ import annotations

import importlib
import logging
import os
import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from correlnet.models.base import FrameModel, is_streaming, streaming_forward

log = logging.getLogger("correlnet.runtime")

ENV_VAR = "CORRELNET_RUNTIME"
RUNTIMES: tuple[str, ...] = ("auto", "eager", "openvino", "onnxruntime", "half")
_CPU_RUNTIMES = ("openvino", "onnxruntime")
_MODULES = {"openvino": "openvino", "onnxruntime": "onnxruntime"}
# Compiled heads kept per model (one per input shape; a film has one shape, an evaluation a few).
_MAX_SHAPES = 8
_said: set[str] = set()


def _say_once(message: str) -> None:
    if message not in _said:
        _said.add(message)
        log.warning(message)


MEMORY_ENV_VAR = "CORRELNET_KEEP_MEMORY"
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt parameters (malloc.h)
_GLIBC_DEFAULTS = {_M_TRIM_THRESHOLD: 128 * 1024, _M_MMAP_MAX: 65536}
_memory_kept: bool | None = None


def keep_freed_memory() -> bool:
    """Let the process reuse freed activation memory instead of returning it to the OS; once per process.

    Why: glibc serves every block above its mmap threshold (at most 32 MiB) with a fresh mmap and
    unmaps it on free, so each 1080p activation (the correlation maps are 100 MB, the
    full-resolution decoder stages 67 MB) faults in its pages again on every frame: about a third of
    the streamed frame's time was the kernel zeroing pages (sys time 1m07 of 3m02 in one
    bench/film_detect.py run). With mmap off and the heap trimmed only above 2 GiB, freed blocks
    are reused: 1.70 -> 1.10 s per streamed 1080p frame, eager, same sitting (docs/benchmarks.md).
    The cost: the process keeps its peak heap (about 2 GB for 1080p detection) until it exits.

    Applied by `correlnet.inference.prepare_for_inference` (so by every detection path); set
    CORRELNET_KEEP_MEMORY=0 to leave glibc's defaults. Returns True when in effect (glibc), False
    when switched off or on another C library."""
    global _memory_kept
    if os.environ.get(MEMORY_ENV_VAR, "1").strip() in ("0", "false", "no", "off"):
        return False
    if _memory_kept is None:
        _memory_kept = _mallopt({_M_MMAP_MAX: 0, _M_TRIM_THRESHOLD: 2**31 - 1})
    return _memory_kept


def release_freed_memory() -> None:
    """Back to glibc's defaults (the benchmark's baseline); `keep_freed_memory` applies them again."""
    global _memory_kept
    if _memory_kept:
        _mallopt(_GLIBC_DEFAULTS)
    _memory_kept = None


def _mallopt(values: dict[int, int]) -> bool:
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(k, v) == 1 for k, v in values.items())


def requested_runtime(name: str | None = None) -> str:
    """The runtime asked for: `name` when given, else $CORRELNET_RUNTIME, else 'auto'.
    Raises ValueError naming the choices for anything else."""
    source = "runtime" if name is not None else ENV_VAR
    value = (name if name is not None else os.environ.get(ENV_VAR, "auto")).strip().lower() or "auto"
    if value not in RUNTIMES:
        raise ValueError(f"{source}={value!r} is not a runtime: choose one of {', '.join(RUNTIMES)}")
    return value


def available(runtime: str) -> bool:
    """True when the runtime's Python package imports (eager and half need none)."""
    module = _MODULES.get(runtime)
    if module is None:
        return True
    try:
        importlib.import_module(module)
    except Exception:  # a broken install is as good as a missing one here
        return False
    return True


def resolve_runtime(device: torch.device | str, name: str | None = None) -> str:
    """The runtime prediction on `device` will use: one of 'eager', 'openvino', 'onnxruntime', 'half'.

    auto picks by device and by what is installed (module docstring). An explicit runtime that cannot
    run here (missing package, half without CUDA, a CPU runtime on CUDA) falls back to eager with one
    log line.
    """
    device = torch.device(device)
    asked = requested_runtime(name)
    if device.type == "cuda":
        if asked in ("auto", "half"):
            return "half"
        if asked in _CPU_RUNTIMES:
            _say_once(f"runtime {asked} runs on the CPU only: predicting on {device} with eager PyTorch")
        return "eager"
    if asked == "auto":
        return "eager"  # measured fastest on the CPU once freed memory is kept (module docstring)
    if asked == "half":
        _say_once("runtime half needs a CUDA device: predicting on the CPU with eager PyTorch")
        return "eager"
    if asked in _CPU_RUNTIMES and not available(asked):
        _say_once(f"runtime {asked} asked for but the {_MODULES[asked]} package does not import: "
                  f"predicting with eager PyTorch (pip install {_MODULES[asked]})")
        return "eager"
    return asked


def accelerate(model: nn.Module, device: torch.device | str, runtime: str | None = None) -> nn.Module:
    """`model` (prepared: eval mode, batch norm folded, on `device`) run by the resolved runtime.

    Returns an `AcceleratedNet` for Correl-Net models (the streaming API with a correlation) when the
    runtime is not eager, else `model` itself. A model with the motion skip (`ModelConfig.motion_skip`:
    OpenCV's flow inside the head, which OpenVINO and ONNX Runtime cannot convert) runs eagerly on the
    CPU, said once in the log; half precision on CUDA runs the eager head and keeps it."""
    chosen = resolve_runtime(device, runtime)
    if chosen == "eager" or isinstance(model, AcceleratedNet) or not is_streaming(model):
        return model
    if chosen in _CPU_RUNTIMES and getattr(getattr(model, "config", None), "motion_skip", False):
        _say_once(f"runtime {chosen}: this model's head computes optical flow (motion_skip), which "
                  f"{chosen} cannot run; using eager PyTorch")
        return model
    return AcceleratedNet(model, chosen)


class AcceleratedNet(FrameModel):
    """A prepared Correl-Net whose head runs in `runtime`; stem and correlation stay in torch.

    A `StreamingNet` with the API and shapes of `CorrelNet`: stem_features((B, 1, Hp, Wp)) ->
    (B, C, Hp/2, Wp/2); pair_correlation(a, b) -> (B, D*D, h, w); head(feats, corr_prev, corr_next, frames) -> logits
    (B, 1, 2h, 2w); forward((B, 3, H, W)) -> logits (B, 1, H, W). `runtime_used` says what ran the
    last head call ('eager' after a fallback).
    """

    def __init__(self, eager: nn.Module, runtime: str):
        if runtime not in ("openvino", "onnxruntime", "half"):
            raise ValueError(f"AcceleratedNet runs openvino, onnxruntime or half; got {runtime!r}")
        super().__init__(eager.config, eager.size_multiple)
        self.eager = eager
        self.runtime = runtime
        self.runtime_used = runtime
        self.stem_channels = eager.stem_channels
        self.corr = eager.corr
        self._backend: _Backend | None = None
        self._failed = False
        self.eval()

    def stem_features(self, frame: torch.Tensor) -> torch.Tensor:
        if self.runtime == "half":
            with torch.autocast(frame.device.type, dtype=torch.float16):
                return self.eager.stem_features(frame).float()
        return self.eager.stem_features(frame)

    def pair_correlation(self, feats_a: torch.Tensor, feats_b: torch.Tensor) -> torch.Tensor:
        return self.eager.pair_correlation(feats_a, feats_b)

    def head(self, feats_mid: torch.Tensor, corr_prev: torch.Tensor, corr_next: torch.Tensor,
             frames: torch.Tensor | None = None) -> torch.Tensor:
        if not self._failed:
            try:
                if self._backend is None:
                    self._backend = _make_backend(self.runtime, self.eager, frames is not None)
                out = self._backend(feats_mid, corr_prev, corr_next, frames)
                self.runtime_used = self.runtime
                return out
            except Exception as exc:  # missing op, compiler error, out of memory: eager still works
                self._failed = True
                _say_once(f"runtime {self.runtime} failed on this model ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}): predicting with eager PyTorch")
        self.runtime_used = "eager"
        return self.eager.head(feats_mid, corr_prev, corr_next, frames)

    def forward_padded(self, xp: torch.Tensor) -> torch.Tensor:
        # CorrelNet's own steps (shared stem, two correlations, head), through this head;
        # FrameModel.forward checks and pads.
        return streaming_forward(self, xp)


class HeadModule(nn.Module):
    """The head as one traceable module: forward(feats (B, C, h, w), corr_prev and corr_next as
    NHWC (B, h, w, D*D), frames (B, 3, 2h, 2w) or nothing) -> logits (B, 1, 2h, 2w).

    NHWC because the correlation writes channels_last maps: their NHWC view is contiguous, so a
    runtime receives them without a copy. Export and the runtimes share this one definition."""

    def __init__(self, eager: nn.Module, with_frames: bool):
        super().__init__()
        self.eager = eager
        self.with_frames = with_frames

    def forward(self, feats: torch.Tensor, corr_prev: torch.Tensor, corr_next: torch.Tensor,
                *frames: torch.Tensor) -> torch.Tensor:
        return self.eager.head(feats, corr_prev.permute(0, 3, 1, 2), corr_next.permute(0, 3, 1, 2),
                               frames[0] if self.with_frames else None)


def _nhwc(t: torch.Tensor) -> np.ndarray:
    """(B, C, h, w) tensor -> contiguous float32 NHWC numpy array (a view when already channels_last)."""
    return np.ascontiguousarray(t.detach().float().permute(0, 2, 3, 1).cpu().numpy())


def _nchw(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().float().cpu().numpy())


def _example(eager: nn.Module, frames_needed: bool) -> tuple[torch.Tensor, ...]:
    """Small inputs of the head's layout for tracing (one size multiple square, so tracing is fast)."""
    m = int(eager.size_multiple)
    with torch.inference_mode():
        feats = eager.stem_features(torch.rand(1, 1, m * 2, m * 2))
        corr = eager.pair_correlation(feats, feats)
    example = (feats.clone(), corr.permute(0, 2, 3, 1).contiguous(), corr.permute(0, 2, 3, 1).contiguous())
    return example + ((torch.rand(1, 3, m * 2, m * 2),) if frames_needed else ())


_Backend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


# Converted heads of this process, by runtime and weights: the worker and `film detect` load a fresh
# copy of the same model version for every film or shot, and conversion is the slow part.
_BACKENDS: OrderedDict[tuple, _Backend] = OrderedDict()
_MAX_BACKENDS = 4


def _weights_key(model: nn.Module) -> str:
    import hashlib

    h = hashlib.sha256(repr(getattr(model, "config", type(model))).encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _make_backend(runtime: str, eager: nn.Module, with_frames: bool) -> _Backend:
    """The head of `eager` in `runtime`; with_frames: the head takes the input-skip frames."""
    if runtime == "half":
        return _HalfHead(eager)
    key = (runtime, with_frames, torch.get_num_threads(), _weights_key(eager))
    if key not in _BACKENDS:
        make = _OpenVinoHead if runtime == "openvino" else _OnnxRuntimeHead
        _BACKENDS[key] = make(eager, with_frames)
        while len(_BACKENDS) > _MAX_BACKENDS:
            _BACKENDS.popitem(last=False)
    _BACKENDS.move_to_end(key)
    return _BACKENDS[key]


class _HalfHead:
    """CUDA: the head under float16 autocast (convolutions in half, reductions in float32)."""

    def __init__(self, eager: nn.Module):
        self.eager = eager

    def __call__(self, feats, corr_prev, corr_next, frames):
        with torch.autocast(feats.device.type, dtype=torch.float16):
            return self.eager.head(feats, corr_prev, corr_next, frames).float()


class _OpenVinoHead:
    """The head converted once (dynamic shapes) and compiled once per input shape (static: 0.50 s
    against 0.61 s for one dynamic compilation on the 1080p head), in float32 (on a CPU with AMX,
    as this one, OpenVINO's default bfloat16 moved the head's logits by up to 12)."""

    def __init__(self, eager: nn.Module, with_frames: bool):
        import openvino as ov

        self.ov = ov
        self.core = ov.Core()
        module = HeadModule(eager, with_frames)
        example = _example(eager, with_frames)
        shapes = [ov.PartialShape([-1, example[0].shape[1], -1, -1]),
                  ov.PartialShape([-1, -1, -1, example[1].shape[3]]),
                  ov.PartialShape([-1, -1, -1, example[2].shape[3]])]
        if with_frames:
            shapes.append(ov.PartialShape([-1, 3, -1, -1]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings on shape checks: the checks hold for every shape
            self.model = ov.convert_model(module, example_input=example, input=shapes)
        self.with_frames = with_frames
        self.compiled: OrderedDict[tuple, Any] = OrderedDict()
        self.config = {"INFERENCE_NUM_THREADS": max(1, torch.get_num_threads()),
                       "INFERENCE_PRECISION_HINT": "f32",
                       # Pinning OpenVINO's threads to cores slowed the torch ops between heads (the
                       # correlation 0.27 -> 0.42 s per frame); unpinned, latency mode: 1.57 s/frame
                       # streamed against 1.88 pinned (bench/film_detect.py, one sitting).
                       "ENABLE_CPU_PINNING": False, "PERFORMANCE_HINT": "LATENCY"}

    def _request(self, arrays: list[np.ndarray]) -> Any:
        key = tuple(a.shape for a in arrays)
        if key not in self.compiled:
            model = self.model.clone()
            model.reshape({port.get_any_name(): self.ov.PartialShape(list(a.shape))
                           for port, a in zip(model.inputs, arrays)})
            self.compiled[key] = self.core.compile_model(model, "CPU", self.config).create_infer_request()
            while len(self.compiled) > _MAX_SHAPES:
                self.compiled.popitem(last=False)
        self.compiled.move_to_end(key)
        return self.compiled[key]

    def __call__(self, feats, corr_prev, corr_next, frames):
        arrays = [_nchw(feats), _nhwc(corr_prev), _nhwc(corr_next)]
        if self.with_frames:
            arrays.append(_nchw(frames))
        request = self._request(arrays)
        out = request.infer(arrays)[request.model_outputs[0]]
        return torch.from_numpy(np.array(out, copy=True)).to(feats.device)


class _OnnxRuntimeHead:
    """The head exported to ONNX once (dynamic shapes) and run by an ONNX Runtime CPU session."""

    def __init__(self, eager: nn.Module, with_frames: bool):
        import onnxruntime as ort

        names = ["feats", "corr_prev", "corr_next"] + (["frames"] if with_frames else [])
        data = export_onnx_bytes(HeadModule(eager, with_frames), _example(eager, with_frames), names,
                                 dynamic={"feats": (0, 2, 3), "corr_prev": (0, 1, 2), "corr_next": (0, 1, 2),
                                          "frames": (0, 2, 3)})
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, torch.get_num_threads())
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        self.names = names

    def __call__(self, feats, corr_prev, corr_next, frames):
        arrays = [_nchw(feats), _nhwc(corr_prev), _nhwc(corr_next)] + ([_nchw(frames)] if frames is not None else [])
        out = self.session.run(None, dict(zip(self.names, arrays)))[0]
        return torch.from_numpy(out).to(feats.device)


def export_onnx_bytes(module: nn.Module, example: tuple[torch.Tensor, ...], names: list[str],
                      dynamic: dict[str, tuple[int, ...]] | None = None, output: str = "logits") -> bytes:
    """`module` traced on `example` and written as an ONNX model (opset 17), returned as bytes.

    names: one per input; dynamic: input name -> axes left free (others fixed to the example's)."""
    import io

    axes = {n: {a: f"{n}_{a}" for a in dynamic[n]} for n in names if dynamic and n in dynamic}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings on shape checks: the checks are constant per shape
        torch.onnx.export(module, example, buffer, input_names=names, output_names=[output],
                          dynamic_axes=axes or None, opset_version=17, dynamo=False)
    return buffer.getvalue()
