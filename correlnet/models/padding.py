"""Pad inputs to a network's size multiple and crop outputs back: the one padding, used by
`base.FrameModel.forward` and by `correlnet.prediction` (which pads a whole frame before tiling it).

RAFT's InputPadder idea: networks with k stride-2 stages need H, W divisible by 2^k; we pad
bottom/right by edge replication (no fake dark border that could look like a defect) and crop
the logits to the input size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class InputPadder:
    """Pads (B, C, H, W) tensors to multiples of `multiple` and crops results back to (H, W)."""

    def __init__(self, height: int, width: int, multiple: int):
        if height < 1 or width < 1 or multiple < 1:
            raise ValueError(f"need a positive size and multiple; got {height}x{width}, multiple {multiple}")
        self.height, self.width = height, width
        self.pad_h = (-height) % multiple
        self.pad_w = (-width) % multiple

    @property
    def padded_size(self) -> tuple[int, int]:
        return self.height + self.pad_h, self.width + self.pad_w

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, Hp, Wp)."""
        if self.pad_h == 0 and self.pad_w == 0:
            return x
        # replicate padding, unlike reflect, works for any pad size (tiny inputs).
        return F.pad(x, (0, self.pad_w, 0, self.pad_h), mode="replicate")

    def unpad(self, y: torch.Tensor) -> torch.Tensor:
        """y: (B, C, Hp, Wp) -> (B, C, H, W)."""
        return y[..., : self.height, : self.width]


def check_frames(x: torch.Tensor, name: str = "x") -> None:
    """Validate a network input: (B, 3, H, W) float, the frames prev, mid, next in [0, 1]."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(
            f"{name} must be a (B, 3, H, W) tensor of frames (prev, mid, next); got {shape}. "
            "Stack three grayscale frames on dim 1, e.g. torch.stack([prev, mid, next], 1)."
        )
    if not x.is_floating_point():
        raise ValueError(f"{name} must be float in [0, 1]; got {x.dtype}: divide 8-bit frames by 255")


def check_padded(x: torch.Tensor, channels: int, multiple: int, name: str) -> None:
    """Validate a streaming-API input: (B, channels, Hp, Wp) with Hp, Wp multiples of `multiple`."""
    if x.dim() != 4 or x.shape[1] != channels or x.shape[-2] % multiple or x.shape[-1] % multiple:
        raise ValueError(
            f"{name} must be (B, {channels}, Hp, Wp) with Hp, Wp multiples of {multiple}; got "
            f"{tuple(x.shape)}. Pad with correlnet.models.padding.InputPadder(H, W, model.size_multiple)."
        )
