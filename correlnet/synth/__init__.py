"""Synthetic old-film defects (Sec. 4.1 of the paper, plus dust, hairs, scratches, grain, flicker).

Public API: `SynthConfig` (`SynthConfig()` full generator, `SynthConfig.paper()` the paper's
generator only) and `degrade_triplet(clean, cfg, rng, bank=None, view=None) -> (degraded, masks)`
(scene counter-examples first, `correlnet.synth.scene`; then texture, defects, optics).
"""

from correlnet.synth.compose import degrade_triplet, degrade_triplet_with_base, draw_defects, texture_triplet
from correlnet.synth.config import SynthConfig

__all__ = ["SynthConfig", "degrade_triplet", "degrade_triplet_with_base", "draw_defects", "texture_triplet"]
