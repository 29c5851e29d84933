"""Correl-Net networks and baselines, built by name.

`build_model(arch, encoder=None, **overrides)`, `build_model_from_config(cfg)`, `ModelConfig`,
`ARCHS`. Every model is a `base.FrameModel`: it maps x: (B, 3, H, W) (frames prev, mid, next in
[0, 1]) to logits (B, 1, H, W) at any H, W (the base checks and pads once), and has `.config` and
`.size_multiple`. Correl-Net models also have the streaming API, `base.StreamingNet`.
"""

from .config import ARCHS, DEFAULT_ENCODERS, ModelConfig
from .factory import build_model, build_model_from_config

__all__ = ["ARCHS", "DEFAULT_ENCODERS", "ModelConfig", "build_model", "build_model_from_config"]
