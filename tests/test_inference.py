"""prepare_for_inference: same outputs as the eval model, batch norm folded, caller untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from correlnet.inference import bn_scale_shift, fold_batchnorm, prepare_for_inference
from tests.model_fixtures import BRANCH_ARCHS, STREAMING_ARCHS, TINY, tiny_model

CPU = torch.device("cpu")


def trained_looking(arch: str, **overrides) -> nn.Module:
    """A tiny model whose BatchNorms hold non-trivial statistics and affine parameters, as after
    training (fresh ones are the identity, which would make folding untestable)."""
    torch.manual_seed(0)
    model = tiny_model(arch, **overrides)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
                m.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=g))
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(0.6 * torch.rand(c, generator=g) - 0.3)
    return model.eval()


def conv_bn_pairs_left(model: nn.Module) -> list[str]:
    """Names of BatchNorms that directly follow a conv in a Sequential or a timm block."""
    left = []
    for name, m in model.named_modules():
        kids = list(m.named_children())
        for (_, a), (b_name, b) in zip(kids[:-1], kids[1:]):
            if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d) and type(m).forward is nn.Sequential.forward:
                left.append(f"{name}.{b_name}")
        for conv, bn in (("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3"), ("conv_stem", "bn1")):
            if isinstance(getattr(m, conv, None), nn.Conv2d) and isinstance(getattr(m, bn, None), nn.BatchNorm2d):
                left.append(f"{name}.{bn}")
    return left


def test_bn_scale_shift_reproduces_eval_batchnorm_by_hand():
    bn = nn.BatchNorm2d(2).eval()
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([1.0, -2.0]))
        bn.running_var.copy_(torch.tensor([4.0, 0.25]))
        bn.weight.copy_(torch.tensor([3.0, 1.0]))
        bn.bias.copy_(torch.tensor([0.5, 0.0]))
    bn.eps = 0.0
    scale, shift = bn_scale_shift(bn)
    # channel 0: 3 * (x - 1) / 2 + 0.5 = 1.5 x - 1; channel 1: (x + 2) / 0.5 = 2 x + 4
    torch.testing.assert_close(scale, torch.tensor([1.5, 2.0], dtype=torch.float64))
    torch.testing.assert_close(shift, torch.tensor([-1.0, 4.0], dtype=torch.float64))


# The TINY archs as they are, and the shipped decoder's options on top of one of them.
PREPARED_CASES = [(arch, {}) for arch in TINY] + [("efficient-correlnet", {"input_skip": True, "refine_convs": 2})]


@pytest.mark.parametrize("arch,overrides", PREPARED_CASES)
def test_prepared_model_gives_the_same_probabilities_and_leaves_the_caller_alone(arch, overrides):
    model = trained_looking(arch, **overrides)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prepared = prepare_for_inference(model, CPU)
    x = torch.rand(2, 3, 37, 53, generator=torch.Generator().manual_seed(2))  # odd size: padded inside
    with torch.inference_mode():
        ref, got = torch.sigmoid(model(x)), torch.sigmoid(prepared(x))
    assert got.shape == ref.shape == (2, 1, 37, 53)
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=0)
    assert (ref - 0.5).abs().max() > 0.01  # not a degenerate all-0.5 output
    # The caller's model: same tensors, still BatchNorm, still in the mode it was in.
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert prepared is not model and not prepared.training
    assert conv_bn_pairs_left(prepared) == []
    assert conv_bn_pairs_left(model) != []
    convs = [m.weight for m in prepared.modules() if isinstance(m, nn.Conv2d)]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)


@pytest.mark.parametrize("arch,overrides", [(a, {}) for a in BRANCH_ARCHS] + [("efficient-correlnet", {"refine_convs": 1})])
def test_branch_models_lose_every_batchnorm(arch, overrides):
    prepared = prepare_for_inference(trained_looking(arch, **overrides), CPU)
    assert [n for n, m in prepared.named_modules() if isinstance(m, nn.BatchNorm2d)] == []


@pytest.mark.parametrize("arch,overrides", [(a, {}) for a in STREAMING_ARCHS] + [("correlnet", {"refine_convs": 1})])
def test_streaming_api_of_the_prepared_model_matches(arch, overrides):
    model = trained_looking(arch, **overrides)
    prepared = prepare_for_inference(model, CPU)
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(2, 1, 64, 96, generator=g), torch.rand(2, 1, 64, 96, generator=g)
    with torch.inference_mode():
        outs = []
        for net in (model, prepared):
            fa, fb = net.stem_features(a), net.stem_features(b)
            corr = net.pair_correlation(fa, fb)
            outs.append((fa, torch.sigmoid(net.head(fa, corr, corr))))
    torch.testing.assert_close(outs[1][0], outs[0][0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(outs[1][1], outs[0][1], atol=1e-4, rtol=0)


@pytest.mark.parametrize("arch", STREAMING_ARCHS)
def test_the_fusion_conv_takes_its_batchnorm_by_the_plain_rule(arch):
    """Correl-Net's head applies the fusion conv part by part and adds its bias, so the BN after it
    folds like any conv -> BN pair: scale into the weight, shift into the bias (no special case)."""
    model = trained_looking(arch)
    prepared = prepare_for_inference(model, CPU)
    scale, shift = bn_scale_shift(model.fuse[1])
    assert isinstance(prepared.fuse[1], nn.Identity) and model.fuse[0].bias is None
    torch.testing.assert_close(prepared.fuse[0].bias, shift.float())
    torch.testing.assert_close(prepared.fuse[0].weight, model.fuse[0].weight * scale.float().reshape(-1, 1, 1, 1))


def test_training_mode_caller_keeps_training_and_prepared_is_returned_once():
    model = trained_looking("efficient-correlnet").train()
    prepared = prepare_for_inference(model, CPU)
    assert model.training and not prepared.training
    assert prepare_for_inference(prepared, CPU) is prepared  # nested callers do not copy again
    with pytest.raises(ValueError, match="eval"):
        fold_batchnorm(tiny_model("correlnet").train())
