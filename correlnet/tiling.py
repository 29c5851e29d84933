"""Tile geometry for native-resolution prediction: where the tiles sit and how they are blended.

`correlnet.prediction` pads a frame once to the model's `size_multiple` and cuts it into the tiles of
`make_grid`, whose corners sit on multiples of `size_multiple` (so every tile sees the same stride-32
sampling grid as the whole frame would); this module only knows the layout and the weights.

Why the blending window has a dead margin: a tile's border pixels see zero padding where the
whole frame has real content, so their logits differ from the untiled ones (measured on the
plain Correl-Net encoder: up to 2 logits at the edge, < 0.01 beyond 128 px, 0 beyond 160 px).
Each tile's window is 0 within `3 * overlap // 8` of an edge shared with another tile, rises as a
raised cosine across the middle quarter of the overlap, and is 1 elsewhere; edges on the frame
border get weight 1 (the whole-frame forward sees the same border there). Two neighbours' ramps
sum to 1 across a regular overlap, and the blend divides by the summed weights, which are > 0 at
every pixel.

Limit: EfficientNet's squeeze-excitation gates each channel by its mean over the whole input, so
an Efficient Correl-Net tile is never exactly the whole frame, whatever the overlap (the error
is spread evenly, not at the seams). A tile that covers the frame avoids it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


GPU_BATCH = 4  # tiles per forward call on CUDA (`TilingConfig.for_device`)


@dataclass(frozen=True)
class TilingConfig:
    """How a frame is cut into tiles.

    tile: largest tile side in pixels (rounded down to a multiple of the model's size_multiple);
        tiles are shrunk to spread evenly. The default runs HD and 2K frames whole (exact and no
        overlap to recompute, the fastest on a CPU); lower it when memory runs out (a GPU).
    overlap: pixels shared by neighbouring tiles (rounded up to a multiple of size_multiple);
        the outer 3/8 on each side is discarded, so it must cover the border zone where a
        tile's output differs from the whole frame's (see tests/test_tiling.py for the check).
    batch: tiles per forward call.
    """

    tile: int = 2048
    overlap: int = 384
    batch: int = 1

    @classmethod
    def for_tile(cls, tile: int, batch: int = 1) -> "TilingConfig":
        """Tiles of at most `tile` px with the default overlap, capped at 3/8 of the tile (the one
        rule for a --tile option: the CLI, film detection, fine-tuning validation, the benchmarks)."""
        return cls(tile=tile, overlap=min(cls.overlap, tile * 3 // 8), batch=batch)

    @classmethod
    def for_device(cls, device: torch.device | str, **fields: int) -> "TilingConfig":
        """The default tiling on `device`: on CUDA, tiles of frames larger than a tile (4K, 6K scans)
        run GPU_BATCH at a time; on the CPU one at a time (no faster, more memory). `fields` override."""
        batch = GPU_BATCH if torch.device(device).type == "cuda" else 1
        return cls(**{"batch": batch, **fields})

    def __post_init__(self) -> None:
        if self.tile < 1 or self.overlap < 0 or self.batch < 1:
            raise ValueError(f"TilingConfig needs tile >= 1, overlap >= 0, batch >= 1; got {self}")
        if 2 * self.overlap >= self.tile:
            raise ValueError(
                f"TilingConfig overlap={self.overlap} must be less than half of tile={self.tile}, "
                "e.g. tile=1024, overlap=192"
            )


def _starts(length: int, tile: int, overlap: int, multiple: int) -> tuple[int, int, tuple[int, ...]]:
    """(tile size, overlap, origins) along one axis: the fewest tiles of at most `tile` that overlap
    by at least `overlap`, shrunk to spread evenly (less wasted compute than a fixed step with the
    last tile pushed back); everything on multiples of `multiple`."""
    if length <= tile:
        return length, 0, (0,)
    n = math.ceil((length - overlap) / (tile - overlap))
    while True:  # rounding origins to the multiple can eat into the overlap: then add a tile
        size = min(tile, math.ceil((length + (n - 1) * overlap) / n / multiple) * multiple)
        starts = tuple(round(k * (length - size) / (n - 1) / multiple) * multiple for k in range(n))
        actual = size - max(b - a for a, b in zip(starts, starts[1:]))
        if actual >= overlap:
            return size, actual, starts
        n += 1


def _ramp(n: int, overlap: int, left: bool, right: bool) -> torch.Tensor:
    """1-D window of length n: 1 inside, dead margin + raised-cosine ramp at shared edges."""
    w = torch.ones(n, dtype=torch.float64)
    margin = overlap * 3 // 8
    width = overlap - 2 * margin
    u = torch.arange(n, dtype=torch.float64)
    # Why a dead margin: see the module docstring. The ramps satisfy f(u) + f(overlap - 1 - u) = 1.
    rise = torch.clamp((u - margin + 0.5) / max(width, 1), 0.0, 1.0)
    rise = 0.5 - 0.5 * torch.cos(math.pi * rise)
    if left:
        w = w * rise
    if right:
        w = w * rise.flip(0)
    return w


@dataclass(frozen=True)
class TileGrid:
    """Tile layout over a padded frame of (height, width); origins are multiples of size_multiple."""

    height: int
    width: int
    tile_h: int
    tile_w: int
    overlap_h: int
    overlap_w: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    @property
    def origins(self) -> list[tuple[int, int]]:
        return [(y, x) for y in self.ys for x in self.xs]

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)

    def weights(self, device: torch.device) -> torch.Tensor:
        """Blending windows (N, 1, tile_h, tile_w) float32, in `origins` order."""
        wins = []
        for y in self.ys:
            wy = _ramp(self.tile_h, self.overlap_h, y > 0, y + self.tile_h < self.height)
            for x in self.xs:
                wx = _ramp(self.tile_w, self.overlap_w, x > 0, x + self.tile_w < self.width)
                wins.append(wy[:, None] * wx[None, :])
        return torch.stack(wins)[:, None].to(device=device, dtype=torch.float32)

    def extract(self, x: torch.Tensor) -> torch.Tensor:
        """x: (C, height, width) -> tiles (N, C, tile_h, tile_w)."""
        if tuple(x.shape[-2:]) != (self.height, self.width):
            raise ValueError(f"grid is for {self.height}x{self.width}, got {tuple(x.shape[-2:])}")
        return torch.stack([x[:, y : y + self.tile_h, x0 : x0 + self.tile_w] for y, x0 in self.origins])

    def blend(self, tiles: torch.Tensor) -> torch.Tensor:
        """tiles: (N, C, tile_h, tile_w) -> (C, height, width), weighted mean of overlapping tiles."""
        if tiles.shape[0] != len(self) or tuple(tiles.shape[-2:]) != (self.tile_h, self.tile_w):
            raise ValueError(f"expected {len(self)} tiles of {self.tile_h}x{self.tile_w}, got {tuple(tiles.shape)}")
        w = self.weights(tiles.device)
        acc = tiles.new_zeros((tiles.shape[1], self.height, self.width))
        wsum = tiles.new_zeros((1, self.height, self.width))
        for k, (y, x) in enumerate(self.origins):
            acc[:, y : y + self.tile_h, x : x + self.tile_w] += tiles[k] * w[k]
            wsum[:, y : y + self.tile_h, x : x + self.tile_w] += w[k]
        return acc / wsum


def make_grid(height: int, width: int, cfg: TilingConfig, size_multiple: int) -> TileGrid:
    """Tile layout for a padded frame; height and width must be multiples of size_multiple."""
    if height % size_multiple or width % size_multiple:
        raise ValueError(f"pad the frame first: {height}x{width} is not a multiple of {size_multiple}")
    tile = max(size_multiple, cfg.tile // size_multiple * size_multiple)
    overlap = math.ceil(cfg.overlap / size_multiple) * size_multiple
    if 2 * overlap >= tile:
        raise ValueError(
            f"overlap {overlap} (rounded to a multiple of {size_multiple}) must be under half the tile {tile}: "
            "use a larger --tile or a smaller overlap"
        )
    th, oh, ys = _starts(height, tile, overlap, size_multiple)
    tw, ow, xs = _starts(width, tile, overlap, size_multiple)
    return TileGrid(height, width, th, tw, oh, ow, ys, xs)
