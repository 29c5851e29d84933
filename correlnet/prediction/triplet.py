"""Predicting one triplet at native resolution, and what every prediction path shares: the checks,
padding a frame once and cutting it into tiles (`FrameTiling`), running tiles in batches (`in_batches`).

A film frame (2K, 4K) is never downscaled: defects are a few pixels wide. The frame is padded once
to the model's `size_multiple` (`correlnet.models.padding.InputPadder`, the padding the models' own
forward uses, so the padded band is exactly what an untiled forward would see), cut into the tiles of
`correlnet.tiling.make_grid` (corners on multiples of `size_multiple`), run in batches and blended back
with the tiling's windows (why they have a dead margin: correlnet/tiling.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from correlnet.inference import prepare_for_inference
from correlnet.models.padding import InputPadder
from correlnet.temporal_gate import gate_config_of, gate_probs
from correlnet.tiling import TileGrid, TilingConfig, make_grid


def size_multiple_of(model: nn.Module) -> int:
    """The model's required input multiple (32 for the 5-stage encoders when not declared)."""
    return int(getattr(model, "size_multiple", 32))


def check_eval(model: nn.Module) -> None:
    """Refuse a model in training mode: its batch norm would use each batch's statistics, so a
    frame's prediction would depend on the tiles batched with it."""
    if model.training:
        raise ValueError("the model is in training mode: call model.eval() before predicting")


def in_batches(fn: Callable[..., torch.Tensor], batch: int, *tensors: torch.Tensor) -> torch.Tensor:
    """fn applied to consecutive slices of `batch` rows of each tensor (all with the same number of
    rows N); the results (N_k, ...) concatenated along dim 0. The one batching loop of prediction."""
    n = tensors[0].shape[0]
    return torch.cat([fn(*(t[i : i + batch] for t in tensors)) for i in range(0, n, batch)])


@dataclass(frozen=True)
class FrameTiling:
    """A frame of (height, width) padded once to the model's multiple and cut into tiles."""

    padder: InputPadder
    grid: TileGrid

    @classmethod
    def of(cls, height: int, width: int, model: nn.Module, cfg: TilingConfig) -> "FrameTiling":
        m = size_multiple_of(model)
        padder = InputPadder(height, width, m)
        return cls(padder, make_grid(*padder.padded_size, cfg, m))

    def tiles(self, x: torch.Tensor) -> torch.Tensor:
        """x: (C, height, width) -> padded tiles (N, C, tile_h, tile_w)."""
        return self.grid.extract(self.padder.pad(x[None])[0])

    def probs(self, logits: torch.Tensor) -> np.ndarray:
        """logits (N, 1, tile_h, tile_w) of every tile -> probs (height, width) float32 numpy."""
        return torch.sigmoid(self.padder.unpad(self.grid.blend(logits))[0]).float().cpu().numpy()


def as_frames(frames: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """(3, H, W) numpy or tensor in [0, 1] -> float32 tensor on device; clear error otherwise."""
    t = torch.as_tensor(frames)
    if t.dim() != 3 or t.shape[0] != 3:
        raise ValueError(
            f"frames must be (3, H, W) = (frame_prev, frame_mid, frame_next) grayscale in [0, 1]; got {tuple(t.shape)}"
        )
    return t.to(device=device, dtype=torch.float32)


@torch.inference_mode()
def predict_triplet_tiled(
    model: nn.Module, frames: np.ndarray | torch.Tensor, cfg: TilingConfig, device: torch.device,
    prepare: bool = True, gate: bool = True,
) -> np.ndarray:
    """Defect probabilities of the middle frame at full resolution.

    model: any Correl-Net model (`forward((B, 3, H, W)) -> logits (B, 1, H, W)`), in eval mode.
    frames: (3, H, W) float32 in [0, 1], (frame_prev, frame_mid, frame_next).
    prepare: run a `prepare_for_inference` copy (batch norm folded, channels_last; same outputs up
        to float rounding); False runs `model` as given (the benchmark's baseline).
    gate: apply the model's temporal gate (`ModelConfig.temporal_gate`, correlnet.temporal_gate)
        when it has one; False returns the network's own probabilities.
    Returns probs (H, W) float32 numpy.
    """
    check_eval(model)
    if prepare:
        model = prepare_for_inference(model, device)
    x = as_frames(frames, device)
    tiling = FrameTiling.of(x.shape[1], x.shape[2], model, cfg)
    probs = tiling.probs(in_batches(model, cfg.batch, tiling.tiles(x)))
    gate_cfg = gate_config_of(model)
    if gate and gate_cfg.enabled:
        prev, mid, nxt = x.float().cpu().numpy()
        probs = gate_probs(probs, prev, mid, nxt, gate_cfg)
    return probs
