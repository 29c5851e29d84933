"""Every arch: shapes at odd sizes, padding once in the base, finite gradients, shared branch weights,
streaming API, errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from correlnet.correlation import flip_correlation, local_correlation
from correlnet.models import ARCHS, ModelConfig, build_model
from correlnet.models.base import FrameModel, is_streaming
from correlnet.models.decoder import ResidualRefine
from correlnet.models.padding import InputPadder
from model_fixtures import BRANCH_ARCHS, STREAMING_ARCHS, TINY, tiny_model


def test_every_arch_has_a_tiny_config():
    assert set(TINY) == set(ARCHS)


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_backward_at_odd_size(arch):
    torch.manual_seed(0)
    model = tiny_model(arch).train()
    x = torch.rand(2, 3, 37, 53, requires_grad=True)
    logits = model(x)
    assert logits.shape == (2, 1, 37, 53)
    assert model.config.arch == arch and model.size_multiple >= 16
    (logits * torch.randn_like(logits)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("arch", ARCHS)
def test_the_base_pads_once_by_edge_replication_and_crops_back(arch):
    """FrameModel.forward pads (B, 3, 37, 53) once to (B, 3, 64, 64) by repeating the last row and
    column (built here by indexing, not by the padder), runs forward_padded once, and crops: the
    same logits as the model on the padded input, cropped."""
    torch.manual_seed(6)
    model = tiny_model(arch).eval()
    assert isinstance(model, FrameModel) and model.size_multiple == 32
    x = torch.rand(2, 3, 37, 53)
    padded = x[:, :, torch.arange(64).clamp(max=36)][:, :, :, torch.arange(64).clamp(max=52)]
    seen = []
    inner = model.forward_padded
    model.forward_padded = lambda xp: seen.append(xp.clone()) or inner(xp)
    with torch.no_grad():
        got, ref = model(x), model(padded)
    assert len(seen) == 2 and all(torch.equal(xp, padded) for xp in seen)  # one padded call per forward
    assert got.shape == (2, 1, 37, 53)
    assert torch.equal(got, ref[..., :37, :53])


@pytest.mark.parametrize("arch", BRANCH_ARCHS)
def test_branches_share_one_parameter_set(arch):
    model = tiny_model(arch)
    # Exactly one conv takes a single frame: the stem, applied to prev, mid and next.
    one_frame_convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.in_channels == 1]
    assert len(one_frame_convs) == 1 and any(m is one_frame_convs[0] for m in model.stem.modules())
    # No hidden copies: the parameters are the stem's, the fusion's, the encoder's and the decoder's.
    parts = (model.stem, model.fuse, model.body, model.decoder)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for m in parts for p in m.parameters())
    calls = []
    model.stem.register_forward_hook(lambda m, inp, out: calls.append(inp[0].shape))
    model.eval()(torch.rand(2, 3, 32, 32))
    assert calls == [torch.Size([6, 1, 32, 32])]  # one module, all 3 frames of both samples


@pytest.mark.parametrize("arch", BRANCH_ARCHS)
def test_gradient_reaches_shared_stem_from_each_frame(arch):
    torch.manual_seed(1)
    model = tiny_model(arch).eval()
    weight = next(m for m in model.stem.modules() if isinstance(m, nn.Conv2d)).weight
    captured = {}

    def keep(module, inp, out):
        out.retain_grad()
        captured["feats"] = out

    model.stem.register_forward_hook(keep)
    logits = model(torch.rand(2, 3, 32, 32))
    loss = (logits * torch.randn_like(logits)).sum()
    (total,) = torch.autograd.grad(loss, weight, retain_graph=True)
    feats = captured["feats"]
    (g_feats,) = torch.autograd.grad(loss, feats, retain_graph=True)
    frame_of_row = torch.arange(feats.shape[0]) % 3  # rows are (sample, frame) in order
    contributions = []
    for k in range(3):
        mask = (frame_of_row == k).float().view(-1, 1, 1, 1)
        (g,) = torch.autograd.grad(feats, weight, grad_outputs=g_feats * mask, retain_graph=True)
        assert g.abs().sum() > 0, f"no gradient from frame {k}"
        contributions.append(g)
    torch.testing.assert_close(sum(contributions), total, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("arch", STREAMING_ARCHS)
@pytest.mark.parametrize("size", [(32, 64), (37, 53)])
@pytest.mark.parametrize("input_skip", [False, True])
def test_streaming_api_equals_forward(arch, size, input_skip):
    torch.manual_seed(2)
    model = tiny_model(arch, input_skip=input_skip).eval()
    x = torch.rand(2, 3, *size)
    padder = InputPadder(*size, model.size_multiple)
    xp = padder.pad(x)
    with torch.no_grad():
        prev, mid, nxt = (model.stem_features(xp[:, k : k + 1]) for k in range(3))
        logits = model.head(mid, model.pair_correlation(mid, prev), model.pair_correlation(mid, nxt),
                            xp if input_skip else None)
        assert logits.shape == (2, 1, *padder.padded_size)
        torch.testing.assert_close(padder.unpad(logits), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", STREAMING_ARCHS)
def test_pair_correlation_flips_exactly_and_head_is_fig2_with_kernel_3(arch):
    torch.manual_seed(4)
    model = tiny_model(arch).eval()
    cfg = model.config
    assert cfg.kernel_size == 3
    with torch.no_grad():
        for bn in (m for m in model.fuse.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.5, 0.5)  # non-trivial fusion statistics
        a, b = (model.stem_features(torch.rand(1, 1, 32, 64)) for _ in range(2))
        c_ab, c_ba = model.pair_correlation(a, b), model.pair_correlation(b, a)
        # Streaming reuses corr(a, b) for corr(b, a): exact because the map is kernel-1.
        torch.testing.assert_close(flip_correlation(c_ab, cfg.max_displacement, cfg.stride2), c_ba)
        # Reference: Fig. 2 literally, concat(kernel-3 corr(mid, prev), corr(mid, next), mid) -> fuse.
        corr3 = [local_correlation(a, other, cfg.max_displacement, 3) for other in (b, b.flip(-1))]
        fused = model.fuse(torch.cat([*corr3, a], 1))
        expected = model.decoder(model.body(fused))
        got = model.head(a, model.pair_correlation(a, b), model.pair_correlation(a, b.flip(-1)))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_streaming_api_rejects_unpadded_frames():
    model = tiny_model("efficient-correlnet").eval()
    with pytest.raises(ValueError, match="multiples of 32"):
        model.stem_features(torch.rand(1, 1, 37, 53))
    feats = model.stem_features(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="corr_prev"):
        model.head(feats, feats, feats)
    trinet = tiny_model("efficient-trinet")
    assert not is_streaming(trinet)  # Tri-Net has no correlation, so no streaming API at all
    with pytest.raises(AttributeError, match="pair_correlation"):
        trinet.pair_correlation(feats, feats)


def test_paper_correlation_settings_are_the_default():
    cfg = ModelConfig()
    assert (cfg.max_displacement, cfg.kernel_size, cfg.stride1, cfg.stride2) == (10, 3, 1, 1)
    assert cfg.corr_channels == 441
    model = build_model("correlnet", base_channels=4, decoder_channels=(8, 8, 8, 4, 4))
    assert model.corr.max_displacement == 10 and model.config.kernel_size == 3
    assert model.fuse[0].in_channels == 2 * 441 + 4


def test_efficientnet_b0_split_and_truncation():
    full = build_model("efficient-correlnet", "efficientnet_b0")
    assert full.body.channels == [16, 24, 40, 112, 320] and full.size_multiple == 32
    assert full.stem[0].in_channels == 1 and full.stem[0].out_channels == 32
    short = build_model("efficient-correlnet", "efficientnet_b0", encoder_depth=4, decoder_channels=(64, 32, 16, 8))
    assert short.body.channels == [16, 24, 40, 112] and short.size_multiple == 16
    assert sum(p.numel() for p in short.parameters()) < sum(p.numel() for p in full.parameters())


@pytest.mark.parametrize("bad", [torch.rand(2, 1, 32, 32), torch.rand(3, 32, 32)])
def test_bad_input_shape_says_how_to_fix(bad):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        tiny_model("efficient-unet")(bad)


def test_integer_frames_rejected():
    with pytest.raises(ValueError, match="255"):
        tiny_model("unet")(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_factory_errors():
    with pytest.raises(ValueError, match="unknown arch"):
        build_model("resnet")
    with pytest.raises(ValueError, match="unknown ModelConfig fields"):
        build_model("unet", "test_efficientnet", decoder_width=3)
    with pytest.raises(ValueError, match="one positive width per encoder stage"):
        build_model("unet", "test_efficientnet", decoder_channels=(8, 8))
    with pytest.raises(ValueError, match="unknown timm model"):
        build_model("efficient-correlnet", "efficientnet_zz")


def test_config_is_frozen_and_round_trips():
    cfg = ModelConfig(arch="nasfpn", encoder="test_efficientnet", fpn_repeats=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.arch = "unet"
    d = cfg.to_dict()
    assert d["decoder_channels"] == [64, 32, 16, 8, 8]
    assert ModelConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match="unknown ModelConfig fields"):
        ModelConfig.from_dict({**d, "colour": 1})


@pytest.mark.parametrize("arch", ["correlnet", "efficient-correlnet", "efficient-trinet", "efficient-unet"])
def test_input_skip_feeds_the_frames_to_the_full_resolution_stage(arch):
    """The encoders start at stride 2; with input_skip the last decoder stage also sees the three
    frames at full resolution. Cutting that stage's upsampled-feature weights leaves the skip as
    the only path: a 1-pixel change of any frame then moves exactly the outputs whose 3x3
    window holds that pixel (or fewer, where the ReLU is off on both inputs)."""
    torch.manual_seed(5)
    plain, skip = tiny_model(arch).eval(), tiny_model(arch, input_skip=True).eval()
    last = skip.decoder.stages[-1][0]
    assert last.in_channels == plain.decoder.stages[-1][0].in_channels + 3
    with torch.no_grad():
        last.weight[:, :-3] = 0
        x = torch.rand(1, 3, 37, 53)
        for frame in range(3):
            y = x.clone()
            y[0, frame, 13, 18] += 0.5
            moved = (skip(y) - skip(x)).abs()[0, 0] > 1e-6
            window = torch.zeros_like(moved)
            window[12:15, 17:20] = True
            assert not moved[~window].any() and moved[window].sum() >= 3, f"frame {frame}"


def test_a_refine_block_is_the_identity_until_trained_and_then_a_residual_conv():
    """ResidualRefine = relu(x + BN(conv3x3(x))) with BN's scale starting at zero: the identity on
    the non-negative features it follows, with batch statistics (training) and running ones."""
    block = ResidualRefine(2)
    x = torch.rand(3, 2, 9, 11)
    for mode in (True, False):
        block.train(mode)
        with torch.no_grad():
            assert torch.equal(block(x), x), f"training={mode}"
    # Hand-computed case, eval mode: conv = 2 * identity (Dirac), BN scale 1 and shift -1 with
    # running mean 0 and var 1, so the block computes relu(x + 2x / sqrt(1 + eps) - 1).
    block.eval()
    block.body[1].reset_running_stats()  # the training-mode passes above moved them
    with torch.no_grad():
        nn.init.dirac_(block.body[0].weight)
        block.body[0].weight.mul_(2.0)
        block.body[1].weight.fill_(1.0)
        block.body[1].bias.fill_(-1.0)
        expected = torch.relu(x + 2.0 * x / (1.0 + block.body[1].eps) ** 0.5 - 1.0)
        torch.testing.assert_close(block(x), expected, rtol=0, atol=1e-6)
        assert (block(x) == 0).any() and (block(x) > 0).any()


def test_refine_convs_config_checks_and_layout():
    assert ModelConfig().refine_convs == 0  # checkpoints written before the option load unchanged
    for bad in (-1, 1.5, True, "1"):
        with pytest.raises(ValueError, match="whole number >= 0"):
            ModelConfig(refine_convs=bad)
    with pytest.raises(ValueError, match="not of deeplabv3plus"):
        build_model("deeplabv3plus", "test_efficientnet", refine_convs=1)
    plain = tiny_model("efficient-correlnet")
    assert not any(k.startswith("decoder.refine") for k in plain.state_dict())
    for arch in ("correlnet", "efficient-correlnet", "efficient-trinet", "efficient-unet"):
        model = tiny_model(arch, refine_convs=2).eval()
        last = model.config.decoder_channels[-1]
        assert [(b.body[0].in_channels, b.body[0].out_channels) for b in model.decoder.refine] == [(last, last)] * 2
        assert model(torch.rand(1, 3, 32, 32)).shape == (1, 1, 32, 32)


def test_input_skip_config_checks():
    assert ModelConfig().input_skip is False  # checkpoints written before the option load unchanged
    with pytest.raises(ValueError, match="true or false"):
        ModelConfig(input_skip="yes")
    with pytest.raises(ValueError, match="not of unet"):
        build_model("unet", "test_efficientnet", input_skip=True)
    model = tiny_model("efficient-correlnet", input_skip=True).eval()
    feats = model.stem_features(torch.rand(1, 1, 32, 32))
    corr = model.pair_correlation(feats, feats)
    with pytest.raises(ValueError, match="full-resolution skip of 3 channels; got none"):
        model.head(feats, corr, corr)
    with pytest.raises(ValueError, match=r"inputs must be \(B, 3, 32, 32\)"):
        model.head(feats, corr, corr, torch.rand(1, 3, 16, 16))
