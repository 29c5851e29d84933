"""Predicting a sequence, reusing per-frame features and per-pair correlations.

In Correl-Net (Sec. 3.1) each frame goes through the same encoder stem on its own and the
middle frame is correlated with each neighbour; frame i's stem features serve the triplets of
i-1, i and i+1, and the pair (i, i+1) serves frame i (as corr_next) and frame i+1 (as corr_prev,
flipped with `flip_correlation` instead of recomputed). So a film costs one stem and one
correlation per frame instead of three and two. A small cache keeps only what later frames still
need: each entry is dropped after the last step that uses it (bounded memory, a few frames).

Tiles sit at the same places in every frame (same size, same `FrameTiling`), so features are cached
per frame as a batch of tiles. Models without the streaming API (`correlnet.models.base.StreamingNet`:
Tri-Net, the one-branch baselines, SDI-p) are predicted on each stacked triplet instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import nn

from correlnet.correlation import Correlation, flip_correlation
from correlnet.inference import prepare_for_inference
from correlnet.models.base import StreamingNet, is_streaming
from correlnet.sdi import compensate_triplet
from correlnet.temporal_gate import gate_config_of, gate_probs
from correlnet.tiling import TilingConfig

from .triplet import FrameTiling, check_eval, in_batches, predict_triplet_tiled


def default_neighbours(n: int) -> list[tuple[int, int]]:
    """(prev, next) for a plain sequence of n frames; the first and last use their one neighbour twice."""
    if n < 1:
        raise ValueError(f"a sequence needs at least one frame; got n={n}")
    if n == 1:
        return [(0, 0)]
    return [(1 if i == 0 else i - 1, n - 2 if i == n - 1 else i + 1) for i in range(n)]


def _pairs(neighbours: Sequence[Any]) -> list[tuple[int, int]]:
    n = len(neighbours)
    out = []
    for i, nb in enumerate(neighbours):
        p, q = (nb.prev, nb.next) if hasattr(nb, "prev") else nb
        if not (0 <= p < n and 0 <= q < n):
            raise ValueError(f"frame {i}: neighbours ({p}, {q}) fall outside the sequence of {n} frames")
        out.append((int(p), int(q)))
    return out


def _last_use(order: list[int], pairs: list[tuple[int, int]]) -> tuple[dict, dict]:
    """Step after which each frame's features / each pair's correlation is no longer needed."""
    frames: dict[int, int] = {}
    links: dict[frozenset, int] = {}
    for step, i in enumerate(order):
        p, q = pairs[i]
        for j in (i, p, q):
            frames[j] = step
        for j in (p, q):
            links[frozenset((i, j))] = step
    return frames, links


class _BranchCache:
    """Per-frame tile features and per-pair correlations, each computed once.

    flip_correlation is exact for kernel_size 1, and the models' layer is kernel-1 (the paper's
    kernel 3, Sec. 3.1, is the patch average `CorrelNet.head` applies after fusion), so each pair's
    map is computed once and flipped for the other direction. A model whose layer is something else
    (another kernel, not a `Correlation`) computes each direction with pair_correlation.
    """

    def __init__(self, model: StreamingNet, load_tiles: Callable[[int], torch.Tensor], batch: int):
        self.model, self.load_tiles, self.batch = model, load_tiles, batch
        layer = model.corr
        flippable = isinstance(layer, Correlation) and layer.stride1 == 1 and layer.kernel_size == 1
        self.layer = layer if flippable else None
        self.feats: dict[int, torch.Tensor] = {}
        # Frame tiles, kept only for models whose decoder takes the frames as a skip (input_skip).
        self.input_skip = bool(model.config.input_skip)
        self.tiles: dict[int, torch.Tensor] = {}
        self.raw: dict[tuple[int, int], torch.Tensor] = {}

    def features(self, j: int) -> torch.Tensor:
        if j not in self.feats:
            tiles = self.load_tiles(j)
            self.feats[j] = in_batches(self.model.stem_features, self.batch, tiles)
            if self.input_skip:
                self.tiles[j] = tiles
        return self.feats[j]

    def frames(self, p: int, i: int, q: int) -> torch.Tensor | None:
        """The padded triplet tiles (n, 3, tile_h, tile_w) for the decoder's input skip, else None."""
        if not self.input_skip:
            return None
        for j in (p, i, q):
            self.features(j)
        return torch.cat([self.tiles[p], self.tiles[i], self.tiles[q]], 1)

    def correlation(self, a: int, b: int) -> tuple[torch.Tensor, bool]:
        """(stored map, flipped) for corr(a, b), a the middle frame: flipped means the map is
        corr(b, a) and must go through `finish(map, True)`; computed only when neither is stored."""
        if (a, b) in self.raw:
            return self.raw[(a, b)], False
        if self.layer is not None and (b, a) in self.raw:
            return self.raw[(b, a)], True
        self.raw[(a, b)] = in_batches(self.model.pair_correlation, self.batch, self.features(a), self.features(b))
        return self.raw[(a, b)], False

    def finish(self, raw: torch.Tensor, flipped: bool) -> torch.Tensor:
        """A stored map (a batch of its tiles) -> the correlation the head expects."""
        if not flipped:
            return raw
        return flip_correlation(raw, self.layer.max_displacement, self.layer.stride2)

    def evict(self, step: int, frame_last: dict, link_last: dict) -> None:
        self.feats = {j: f for j, f in self.feats.items() if frame_last[j] > step}
        self.tiles = {j: t for j, t in self.tiles.items() if frame_last[j] > step}
        self.raw = {k: c for k, c in self.raw.items() if link_last[frozenset(k)] > step}


def _read(read_frame: Callable[[int], np.ndarray], j: int, shape: tuple[int, int] | None) -> torch.Tensor:
    img = torch.as_tensor(np.asarray(read_frame(j), dtype=np.float32))
    if img.dim() != 2 or (shape is not None and tuple(img.shape) != shape):
        raise ValueError(
            f"read_frame({j}) gave shape {tuple(img.shape)}; every frame must be (H, W) grayscale"
            + (f" of the same size {shape}" if shape else "")
        )
    return img


def detect_frames(
    model: nn.Module,
    read_frame: Callable[[int], np.ndarray],
    neighbours: Sequence[Any],
    cfg: TilingConfig,
    device: torch.device,
    indices: Iterable[int] | None = None,
    prepare: bool = True,
    runtime: str | None = None,
    overlap_gate: bool = True,
) -> Iterator[tuple[int, np.ndarray]]:
    """Predict each frame of a sequence at full resolution.

    read_frame(i) -> (H, W) float32 in [0, 1]; all frames the same size.
    neighbours: per frame, (prev_index, next_index) or an object with .prev/.next
        (`default_neighbours(n)` for a plain sequence).
    indices: the frames to predict (default: all), e.g. those not yet predicted when resuming.
    Yields (index, probs (H, W) float32 numpy) in increasing index order, after the model's
    temporal gate when it has one (as `predict_triplet_tiled`).
    prepare: predict with a `prepare_for_inference` copy of the model (batch norm folded,
        channels_last, the head run by `runtime`; same outputs up to float rounding); False runs
        `model` as given.
    runtime: the inference runtime (`correlnet.runtime`; None: $CORRELNET_RUNTIME, else auto).
    overlap_gate: compute the temporal gate's optical flows for a frame on a thread while the network
        predicts it (the default; used when the model has sure marks, which always need the flows;
        same results); False computes them after, one after the other.
    A `StreamingNet` is streamed (features and correlations reused); any other model is run on each
    stacked triplet. Raises ValueError for a model in training mode, neighbours or indices outside
    the sequence, and frames of another shape than the first.
    """
    check_eval(model)
    pairs = _pairs(neighbours)
    order = sorted(set(range(len(pairs)) if indices is None else (int(i) for i in indices)))
    if order and not (0 <= order[0] and order[-1] < len(pairs)):
        raise ValueError(f"indices must lie in [0, {len(pairs)}); got {order[0]}..{order[-1]}")
    if prepare:
        model = prepare_for_inference(model, device, runtime)
    run = _stream_branch if is_streaming(model) else _stream_stacked
    gate = gate_config_of(model)
    if not gate.enabled:
        yield from run(model, read_frame, pairs, order, cfg, device)
        return
    read_frame = _recent_frames(read_frame)
    if not overlap_gate or gate.sure is None:  # without sure marks, no marks need no flows: gate_probs decides
        for index, probs in run(model, read_frame, pairs, order, cfg, device):
            p, q = pairs[index]
            yield index, gate_probs(probs, *(np.asarray(read_frame(j), dtype=np.float32) for j in (p, index, q)), gate)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="correlnet-gate") as pool:
        # The gate's optical flows do not depend on the network: frame k's run on a thread (OpenCV
        # releases the GIL) while the network predicts frame k. Frames are read here, in the caller's
        # thread, since read_frame need not be thread-safe. Same results as computing them after. A
        # read that fails while reading ahead is raised when its frame's turn comes, so the frames
        # before it are still yielded.
        def compensate(k: int) -> tuple[list[np.ndarray], Future] | BaseException:
            try:
                frames = [np.asarray(read_frame(j), dtype=np.float32) for j in (pairs[k][0], k, pairs[k][1])]
            except Exception as exc:  # noqa: BLE001 - re-raised at frame k's turn
                return exc
            return frames, pool.submit(compensate_triplet, *frames, gate.flow)

        pending = compensate(order[0]) if order else None
        for n, (index, probs) in enumerate(run(model, read_frame, pairs, order, cfg, device)):
            if isinstance(pending, BaseException):
                raise pending
            frames, future = pending
            comp = future.result()
            pending = compensate(order[n + 1]) if n + 1 < len(order) else None
            yield index, gate_probs(probs, *frames, gate, compensation=comp)


def _recent_frames(read_frame: Callable[[int], np.ndarray], keep: int = 6) -> Callable[[int], np.ndarray]:
    """read_frame with the last `keep` frames kept, so the gate re-reads no frame the stream just read."""
    recent: dict[int, np.ndarray] = {}

    def read(j: int) -> np.ndarray:
        if j not in recent:
            recent[j] = read_frame(j)
            while len(recent) > keep:
                recent.pop(next(iter(recent)))
        return recent[j]

    return read


def _stream_stacked(model, read_frame, pairs, order, cfg, device):
    """Models without the streaming API: the tiled forward on each stacked triplet."""
    frame_last, _ = _last_use(order, pairs)
    cache: dict[int, torch.Tensor] = {}
    shape = None
    for step, i in enumerate(order):
        for j in (pairs[i][0], i, pairs[i][1]):
            if j not in cache:
                cache[j] = _read(read_frame, j, shape)
                shape = tuple(cache[j].shape)
        triplet = torch.stack([cache[pairs[i][0]], cache[i], cache[pairs[i][1]]])
        yield i, predict_triplet_tiled(model, triplet, cfg, device, prepare=False, gate=False)
        cache = {j: f for j, f in cache.items() if frame_last[j] > step}


@torch.inference_mode()
def _branch_logits(cache: _BranchCache, i: int, p: int, q: int, batch: int) -> torch.Tensor:
    """Logits (N, 1, tile_h, tile_w) of frame i's tiles, with neighbours p (prev) and q (next)."""
    feats = cache.features(i)
    (raw_p, flip_p), (raw_q, flip_q) = cache.correlation(i, p), cache.correlation(i, q)
    frames = cache.frames(p, i, q)

    def head(feats: torch.Tensor, part_p: torch.Tensor, part_q: torch.Tensor, *skip: torch.Tensor) -> torch.Tensor:
        return cache.model.head(feats, cache.finish(part_p, flip_p), cache.finish(part_q, flip_q), *skip)

    return in_batches(head, batch, feats, raw_p, raw_q, *(() if frames is None else (frames,)))


def _stream_branch(model: StreamingNet, read_frame, pairs, order, cfg, device):
    if not order:
        return
    first = _read(read_frame, order[0], None)
    shape = tuple(first.shape)
    tiling = FrameTiling.of(shape[0], shape[1], model, cfg)

    def load_tiles(j: int) -> torch.Tensor:
        img = first if j == order[0] else _read(read_frame, j, shape)
        return tiling.tiles(img.to(device)[None])

    frame_last, link_last = _last_use(order, pairs)
    cache = _BranchCache(model, load_tiles, cfg.batch)
    for step, i in enumerate(order):
        p, q = pairs[i]
        logits = _branch_logits(cache, i, p, q, cfg.batch)
        with torch.inference_mode():
            probs = tiling.probs(logits)
        cache.evict(step, frame_last, link_last)
        yield i, probs
