"""Predicting a sequence: same probabilities as independent triplets, with less work; the streaming
protocol decides which path a model takes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import correlnet.correlation as correlation_module
from correlnet import runtime as rt
from correlnet.inference import prepare_for_inference
from correlnet.models import ARCHS, build_model
from correlnet.models.base import is_streaming
from correlnet.neighbours import Neighbours
from correlnet.prediction import default_neighbours, detect_frames, predict_triplet_tiled
from correlnet.sdi import SdiDetector
from correlnet.tiling import TilingConfig, make_grid
from model_fixtures import STREAMING_ARCHS, tiny_model

CPU = torch.device("cpu")
CFG = TilingConfig(tile=96, overlap=32, batch=3)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    # kernel_size 3 (the paper's) exercises the exact kernel-1 + flip reuse path.
    return build_model("efficient-correlnet", encoder="test_efficientnet", max_displacement=3).eval()


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    base = rng.random((140, 210), dtype=np.float32)
    # A moving scene with independent speckle per frame: neighbours are similar, not equal.
    return np.stack([np.clip(np.roll(base, k, 1) + 0.2 * rng.random((140, 210), dtype=np.float32), 0, 1)
                     for k in range(6)]).astype(np.float32)


def naive(model, frames, neighbours, indices):
    return {i: predict_triplet_tiled(model, frames[[neighbours[i][0], i, neighbours[i][1]]], CFG, CPU) for i in indices}


def test_default_neighbours_by_hand():
    assert default_neighbours(1) == [(0, 0)]
    assert default_neighbours(2) == [(1, 1), (0, 0)]
    assert default_neighbours(4) == [(1, 1), (0, 2), (1, 3), (2, 2)]
    with pytest.raises(ValueError):
        default_neighbours(0)


class Counter:
    """Wraps a function and counts the tiles (batch rows) it was called on."""

    def __init__(self, fn):
        self.fn, self.tiles = fn, 0

    def __call__(self, x, *args, **kwargs):
        self.tiles += x.shape[0]
        return self.fn(x, *args, **kwargs)


def test_streaming_equals_independent_triplets_with_less_work(model, frames, monkeypatch):
    nb = default_neighbours(len(frames))
    n_tiles = len(make_grid(160, 224, CFG, model.size_multiple))
    assert n_tiles > 1
    stem = Counter(model.stem_features)
    corr = Counter(correlation_module.local_correlation)
    monkeypatch.setattr(model, "stem_features", stem)
    monkeypatch.setattr(correlation_module, "local_correlation", corr)

    ref = naive(model, frames, nb, range(len(frames)))
    naive_stem, naive_corr = stem.tiles, corr.tiles
    stem.tiles = corr.tiles = 0
    reads = []
    got = list(detect_frames(model, lambda i: reads.append(i) or frames[i], nb, CFG, CPU))

    assert [i for i, _ in got] == list(range(len(frames)))
    for i, probs in got:
        assert probs.shape == (140, 210) and probs.dtype == np.float32
        np.testing.assert_allclose(probs, ref[i], atol=1e-5)
    assert sorted(reads) == list(range(len(frames)))  # every frame read once
    # One stem per frame (naive: three) and one correlation per distinct pair (naive: two per frame).
    assert stem.tiles == len(frames) * n_tiles and naive_stem == 3 * len(frames) * n_tiles
    assert corr.tiles == (len(frames) - 1) * n_tiles and naive_corr == 2 * len(frames) * n_tiles


def test_subset_and_custom_neighbours(model, frames):
    # Frame 3 is its own neighbour on one side (a shot with no distinct frame there) and frame 5
    # skips a duplicate: objects with .prev/.next, as correlnet.neighbours gives.
    nb = [Neighbours(1, 1, True), Neighbours(0, 2, False), Neighbours(1, 3, False),
          Neighbours(3, 4, True), Neighbours(3, 5, False), Neighbours(3, 3, True)]
    pairs = [(n.prev, n.next) for n in nb]
    got = list(detect_frames(model, lambda i: frames[i], nb, CFG, CPU, indices=[5, 3, 1]))
    assert [i for i, _ in got] == [1, 3, 5]  # increasing index order, whatever order was asked
    got = dict(got)
    ref = naive(model, frames, pairs, [1, 3, 5])
    for i in got:
        np.testing.assert_allclose(got[i], ref[i], atol=1e-5)


@pytest.mark.parametrize("arch", ["efficient-unet", "efficient-trinet"])  # no correlation: no streaming API
def test_models_without_branch_api_fall_back_to_stacked_triplets(frames, arch):
    torch.manual_seed(0)
    net = build_model(arch, encoder="test_efficientnet").eval()
    assert not is_streaming(net)  # so detect_frames runs each stacked triplet
    nb = default_neighbours(3)
    got = dict(detect_frames(net, lambda i: frames[i], nb, CFG, CPU))
    ref = naive(net, frames[:3], nb, range(3))
    for i in range(3):
        np.testing.assert_allclose(got[i], ref[i], atol=1e-6)


def test_streaming_with_input_skip_equals_independent_triplets(frames):
    """The decoder's full-resolution skip needs each triplet's frame tiles: streaming keeps them
    with the features and must give what the model gives on each triplet."""
    torch.manual_seed(1)
    net = build_model("efficient-correlnet", encoder="test_efficientnet", max_displacement=3, input_skip=True).eval()
    with torch.no_grad():
        net.decoder.stages[-1][0].weight[:, -3:].normal_(0, 0.5)  # make the skip matter
    nb = [(1, 1), (0, 2), (1, 3), (3, 3)]
    got = dict(detect_frames(net, lambda i: frames[i], nb, CFG, CPU))
    ref = naive(net, frames, nb, range(4))
    for i in range(4):
        np.testing.assert_allclose(got[i], ref[i], atol=1e-5)


def test_bad_input_is_refused(model, frames):
    with pytest.raises(ValueError, match="outside the sequence"):
        list(detect_frames(model, lambda i: frames[i], [(0, 1), (0, 2)], CFG, CPU))
    sizes = [frames[0], frames[1][:, :200]]
    with pytest.raises(ValueError, match="same size"):
        list(detect_frames(model, lambda i: sizes[i], default_neighbours(2), CFG, CPU))


@pytest.mark.parametrize("arch", ARCHS)
def test_only_correlnet_models_have_the_streaming_api(arch):
    assert is_streaming(tiny_model(arch).eval()) == (arch in STREAMING_ARCHS)
    assert not is_streaming(SdiDetector())


class StackedOnly(nn.Module):
    """A Correl-Net behind a plain forward: the network without the streaming API."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net, self.size_multiple, self.config = net, net.size_multiple, net.config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def stem_tiles_per_frame(model, inner, frames, monkeypatch) -> tuple[float, dict]:
    stem = Counter(inner.stem_features)
    monkeypatch.setattr(inner, "stem_features", stem)
    got = dict(detect_frames(model, lambda i: frames[i], default_neighbours(len(frames)), CFG, CPU, prepare=False))
    return stem.tiles / len(frames) / len(make_grid(160, 224, CFG, 32)), got


def test_a_model_without_the_streaming_api_takes_the_stacked_path(model, frames, monkeypatch):
    wrapped = StackedOnly(model).eval()
    assert not is_streaming(wrapped) and is_streaming(model)
    stacked, got = stem_tiles_per_frame(wrapped, model, frames[:4], monkeypatch)
    assert stacked == 3  # each triplet's three frames through the stem: the stacked path
    ref = naive(model, frames[:4], default_neighbours(4), range(4))
    for i in range(4):
        np.testing.assert_allclose(got[i], ref[i], atol=1e-5)


def test_an_accelerated_net_is_streamed(model, frames, monkeypatch):
    eager = prepare_for_inference(model, CPU, "eager")
    monkeypatch.setattr(rt, "_make_backend", lambda *a: eager.head)  # the head "converted" to itself
    fast = rt.AcceleratedNet(eager, "onnxruntime")
    assert is_streaming(fast)
    streamed, got = stem_tiles_per_frame(fast, eager, frames[:4], monkeypatch)
    assert streamed == 1 and fast.runtime_used == "onnxruntime"  # one stem per frame: the streaming path
    ref = dict(detect_frames(eager, lambda i: frames[i], default_neighbours(4), CFG, CPU, prepare=False))
    for i in range(4):
        np.testing.assert_array_equal(got[i], ref[i])
