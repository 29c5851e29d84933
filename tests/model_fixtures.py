"""Tiny configurations of every arch so model tests stay fast on 2 CPU cores."""

from __future__ import annotations

from correlnet.models import build_model

TINY = {
    "correlnet": dict(encoder="plain", base_channels=8, max_displacement=3,
                      decoder_channels=(16, 16, 8, 8, 4)),
    "efficient-correlnet": dict(encoder="test_efficientnet", max_displacement=3,
                                decoder_channels=(16, 16, 8, 8, 4)),
    "efficient-trinet": dict(encoder="test_efficientnet", decoder_channels=(16, 16, 8, 8, 4)),
    "efficient-unet": dict(encoder="test_efficientnet", decoder_channels=(16, 16, 8, 8, 4)),
    "unet": dict(encoder="test_efficientnet", decoder_channels=(16, 16, 8, 8, 4)),
    "deeplabv3plus": dict(encoder="test_efficientnet"),
    "nasfpn": dict(encoder="test_efficientnet", fpn_channels=16, fpn_repeats=2),
}
BRANCH_ARCHS = ("correlnet", "efficient-correlnet", "efficient-trinet")
STREAMING_ARCHS = ("correlnet", "efficient-correlnet")


def tiny_model(arch: str, **overrides):
    kw = dict(TINY[arch])
    encoder = kw.pop("encoder")
    kw.update(overrides)
    return build_model(arch, encoder, **kw)


def without_motion(model):
    """The same trained network without its motion evidence (`ModelConfig.motion_skip` and
    `motion_fusion`): the two trailing input channels of the fusion conv and of the last decoder
    stage dropped. A network with real weights that OpenVINO and ONNX Runtime convert (a motion
    model runs eagerly on the CPU), for the runtimes' tests on real frames; `model` itself when it
    has no motion skip."""
    import dataclasses

    import torch

    from correlnet.models import build_model_from_config

    if not getattr(model.config, "motion_skip", False):
        return model
    plain = build_model_from_config(dataclasses.replace(model.config, motion_skip=False, motion_fusion=False))
    stored = model.state_dict()
    with torch.no_grad():
        for name, t in plain.state_dict().items():
            t.copy_(stored[name][:, : t.shape[1]] if stored[name].shape != t.shape else stored[name])
    return plain.to(next(model.parameters()).device).eval()
