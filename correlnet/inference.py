"""A model prepared for bulk prediction: batch norm folded into the convs, channels_last layout.

In eval mode a BatchNorm2d is a per-channel affine map `y = s * x + t` with s = gamma / sqrt(var + eps)
and t = beta - s * mean, so after a conv it folds into the conv: weight * s (per output channel)
and bias * s + t. This saves one pass over every activation (BatchNorm was ~14% of the body and
decoder time at 1080p), and channels_last (NHWC) lets oneDNN/cuDNN run the convs without layout
conversions (body + decoder 8.7 s -> 5.1 s per 1080p frame in the measurement that motivated this).

Only pairs whose forward provably applies the BatchNorm right after the conv are folded:
- adjacent children of an nn.Sequential (our ConvBNReLU, the EfficientNet stem, smp's blocks),
  the conv possibly being the last of a nested Sequential (smp's SeparableConv2d);
- timm's EfficientNet blocks, by attribute name (`_TIMM_PAIRS`); timm's BatchNormAct2d holds its
  activation inside, so it is replaced by that activation.
Anything else keeps its BatchNorm (still correct, just not faster). A model that applies a conv's
weight itself owns keeping that exact: Correl-Net's head applies its fusion conv part by part and adds
the conv's bias, which is where the folded shift goes (`correlnet.models.branch.CorrelNet.head`).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

# timm EfficientNet block class name -> (conv, bn) attribute pairs its forward applies back to back.
_TIMM_PAIRS: dict[str, tuple[tuple[str, str], ...]] = {
    "DepthwiseSeparableConv": (("conv_dw", "bn1"), ("conv_pw", "bn2")),
    "InvertedResidual": (("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3")),
    "EdgeResidual": (("conv_exp", "bn1"), ("conv_pwl", "bn2")),
    "ConvBnAct": (("conv", "bn1"),),
    "EfficientNetFeatures": (("conv_stem", "bn1"),),  # smp's timm-universal encoders
    "EfficientNet": (("conv_stem", "bn1"), ("conv_head", "bn2")),
}
_PREPARED = "_correlnet_prepared_for"


def bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift), each (C,) float64, with bn(x) == scale * x + shift per channel in eval mode."""
    var = bn.running_var.double()
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    return scale, shift


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    # Without running statistics a BatchNorm normalises by the batch even in eval: not a fixed map.
    return (type(conv) is nn.Conv2d and isinstance(bn, nn.BatchNorm2d) and bn.running_mean is not None
            and bn.num_features == conv.out_channels)


def _after_bn(bn: nn.BatchNorm2d) -> nn.Module:
    """What remains of `bn` once its affine map is in the conv: timm's BatchNormAct2d keeps its
    activation (its dropout is a no-op in eval); a plain BatchNorm2d becomes nothing."""
    act = getattr(bn, "act", None)
    return act if isinstance(act, nn.Module) and type(bn) is not nn.BatchNorm2d else nn.Identity()


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold eval-mode `bn` into `conv` in place (weight scaled per output channel, bias set)."""
    scale, shift = bn_scale_shift(bn)
    w = conv.weight
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(shift)
    with torch.no_grad():
        new_w = (w.double() * scale.reshape(-1, 1, 1, 1)).to(w.dtype)
        conv.weight = nn.Parameter(new_w, requires_grad=False)
        conv.bias = nn.Parameter((bias * scale + shift).to(w.dtype), requires_grad=False)


def _is_plain_sequential(module: nn.Module) -> bool:
    """An nn.Sequential (or subclass) that keeps Sequential's forward: children run in order."""
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def _last_conv(module: nn.Module | None) -> nn.Module | None:
    # smp's SeparableConv2d is Sequential(depthwise, pointwise): its output is its last conv's.
    while _is_plain_sequential(module) and len(module) > 0:
        module = module[-1]
    return module


def _fold_children(parent: nn.Module, pairs: list[tuple[str, str]]) -> int:
    folded = 0
    for conv_name, bn_name in pairs:
        conv, bn = _last_conv(getattr(parent, conv_name, None)), getattr(parent, bn_name, None)
        if _foldable(conv, bn):
            fold_conv_bn(conv, bn)
            setattr(parent, bn_name, _after_bn(bn))
            folded += 1
    return folded


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every Conv2d -> BatchNorm2d pair found (see the module docstring) into `model`, in
    place; the model must be in eval mode. Returns the number of pairs folded."""
    if model.training:
        raise ValueError("fold_batchnorm needs an eval-mode model: call model.eval() first")
    folded = 0
    for module in list(model.modules()):
        if _is_plain_sequential(module):
            names = list(module._modules)
            folded += _fold_children(module, list(zip(names[:-1], names[1:])))
        elif type(module).__name__ in _TIMM_PAIRS:
            folded += _fold_children(module, list(_TIMM_PAIRS[type(module).__name__]))
    return folded


def _shared_instance_callables(model: nn.Module) -> dict[int, object]:
    """deepcopy memo keeping callables set on module instances (a wrapper around a method, as
    tests and profilers install) shared with the original instead of rebound to the copy."""
    memo: dict[int, object] = {}
    for module in model.modules():
        for value in vars(module).values():
            if callable(value) and not isinstance(value, (nn.Module, torch.Tensor, type)):
                memo[id(value)] = value
    return memo


def prepare_for_inference(model: nn.Module, device: torch.device | str, runtime: str | None = None) -> nn.Module:
    """An eval-mode copy of `model` on `device` with batch norm folded and channels_last weights,
    run by the inference runtime `runtime` (None: $CORRELNET_RUNTIME or auto; `correlnet.runtime`).

    The caller's model is never modified (training code shares it). Outputs equal model.eval()'s
    up to float rounding; the copy is for prediction only (no BatchNorm left to train). A model
    already prepared for this device is returned as is, so nested callers prepare once. Callables
    set on a module instance (e.g. a counting wrapper around `stem_features`) are kept as they are:
    they still call the original model.
    """
    from correlnet.runtime import accelerate, keep_freed_memory

    keep_freed_memory()
    device = torch.device(device)
    if getattr(model, _PREPARED, None) == str(device):
        return model
    prepared = copy.deepcopy(model, _shared_instance_callables(model)).eval()
    fold_batchnorm(prepared)
    prepared.requires_grad_(False)
    # channels_last only makes sense for the 4-D conv weights; .to() leaves other tensors alone.
    prepared = prepared.to(device=device, memory_format=torch.channels_last)
    prepared = accelerate(prepared, device, runtime)
    setattr(prepared, _PREPARED, str(device))
    return prepared
