"""Build any network by name: `build_model(arch, encoder=None, **overrides)`."""

from __future__ import annotations

import dataclasses

from torch import nn

from .config import ARCHS, DEFAULT_ENCODERS, ModelConfig


def build_model(arch: str, encoder: str | None = None, **overrides) -> nn.Module:
    """Network `arch` (one of ARCHS) with `encoder` (default per arch, DEFAULT_ENCODERS) and any
    ModelConfig field overridden; random weights (pretrained weights are never downloaded)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}: choose one of {', '.join(ARCHS)}")
    fields = {f.name for f in dataclasses.fields(ModelConfig)} - {"arch", "encoder"}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"unknown ModelConfig fields {sorted(unknown)}; valid: {', '.join(sorted(fields))}")
    cfg = ModelConfig(arch=arch, encoder=encoder or DEFAULT_ENCODERS[arch], **overrides)
    return build_model_from_config(cfg)


def build_model_from_config(cfg: ModelConfig) -> nn.Module:
    """The network described by `cfg` (random weights); every model has `.config` and `.size_multiple`."""
    # Imports here so that importing correlnet.models stays cheap (smp is slow to import).
    if cfg.arch == "correlnet":
        from .correlnet import build_plain_correlnet
        return build_plain_correlnet(cfg)
    if cfg.arch in ("efficient-correlnet", "efficient-trinet"):
        from .efficient import build_efficient_triplet
        return build_efficient_triplet(cfg)
    if cfg.arch == "efficient-unet":
        from .efficient import EfficientUNet
        return EfficientUNet(cfg)
    if cfg.arch in ("unet", "deeplabv3plus"):
        from .baselines import SmpNet
        return SmpNet(cfg)
    if cfg.arch == "nasfpn":
        from .nasfpn import NASFPNNet
        return NASFPNNet(cfg)
    raise ValueError(f"unknown arch {cfg.arch!r}: choose one of {', '.join(ARCHS)}")
