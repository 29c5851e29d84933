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
