"""Scene lines: thin near-vertical structures that belong to the picture (not defects, never masked).

Why. A persistent scratch (`correlnet.synth.scratches`) is a thin vertical line present in all
three frames and labelled a defect. Period footage is full of thin vertical *scene* lines (door
frames, wainscoting, poles, window bars); a model that has seen many scratches and few such lines
learns "thin vertical line = defect" and flags the whole set (what the first shipped model did on
the 1903 footage). These lines are the counter-examples. They are drawn into the scene, i.e. on
the source region *before* the triplet's crops are cut (`TripletDataset.clean_triplet`), so they
weave with the picture like everything else in it, while scratches are drawn afterwards, fixed to
the frame; and their profiles are a Gaussian ridge, a double ridge (a board gap) or a soft step
edge, not a scratch's ringing damped sinusoid.

Scene blotches are the same idea for the paper's trap (Sec. 1, Fig. 1): dark or light spots that
belong to the scene. They have the shapes and colours of the paper's blotches (`draw_blotches`), but
are drawn identically into all three frames of the region before the crops are cut, and are never
masked: the only cue that separates them from a blotch on the film is that they persist and move
with the scene. Without them the clean demo clips have few such spots, and a network can learn
"dark blotch shape = defect" from appearance alone.

Geometry: each line is x = x0 + slope * (y - yc) in region pixels, |slope| <= tan(4 degrees),
spanning the whole region or part of it; profiles are evaluated at the exact sub-pixel distance,
so the lines are anti-aliased.
"""

from __future__ import annotations

import numpy as np

from correlnet.synth.config import SynthConfig
from correlnet.synth.paper import draw_blotches

__all__ = ["draw_scene_lines", "draw_scene_blotches"]


def draw_scene_lines(region: np.ndarray, cfg: SynthConfig, rng: np.random.Generator) -> None:
    """Draw scene lines into `region` ((T, H, W) float32 in [0, 1], in place, then clipped): the
    same lines in every frame, as scene content. Draws nothing (and no random numbers) unless
    `cfg.scene_lines`; then one coin `cfg.scene_lines_prob` and a Poisson count
    (mean `cfg.scene_lines_mean`)."""
    if not cfg.scene_lines or rng.random() >= cfg.scene_lines_prob:
        return
    _, h, w = region.shape
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    for _ in range(max(1, int(rng.poisson(cfg.scene_lines_mean)))):
        x0 = rng.uniform(0, w)
        slope = np.tan(np.deg2rad(rng.uniform(-4.0, 4.0)))
        d = (xx - x0 - slope * (yy - h / 2)) / np.sqrt(1 + slope * slope)  # signed distance, px
        amplitude = rng.uniform(*cfg.scene_line_amplitude) * (1.0 if rng.random() < 0.5 else -1.0)
        kind = rng.random()
        if kind < 0.5:  # a ridge: a pole, a wire, a board edge lit from one side
            sigma = rng.uniform(0.5, 2.0)
            profile = np.exp(-0.5 * (d / sigma) ** 2)
        elif kind < 0.75:  # two ridges: the gap between two boards, a frame's moulding
            sigma, gap = rng.uniform(0.5, 1.2), rng.uniform(3.0, 8.0)
            profile = np.exp(-0.5 * ((d - gap / 2) / sigma) ** 2) + np.exp(-0.5 * ((d + gap / 2) / sigma) ** 2)
        else:  # a soft step edge between two surfaces
            profile = 0.5 * (1.0 + np.tanh(d / rng.uniform(0.4, 1.5)))
        if rng.random() >= 0.6:  # partial height: the line ends inside the region
            top = int(rng.integers(0, max(h // 2, 1)))
            bottom = int(rng.integers(top + max(h // 4, 1), h + 1))
            profile[:top] = 0
            profile[bottom:] = 0
        region += (amplitude * profile).astype(np.float32)[None]
    np.clip(region, 0.0, 1.0, out=region)


def draw_scene_blotches(region: np.ndarray, cfg: SynthConfig, rng: np.random.Generator) -> None:
    """Draw the same blotches, as scene content, into every frame of `region` ((T, H, W) float32 in
    [0, 1], in place). Nothing (and no random numbers) unless `cfg.scene_blotches`; then one coin
    `cfg.scene_blotches_prob` and one seed, from which every frame redraws the identical field,
    colours and opacities."""
    if not cfg.scene_blotches or rng.random() >= cfg.scene_blotches_prob:
        return
    seed = int(rng.integers(2**63))
    for frame in region:
        draw_blotches(frame, cfg, np.random.default_rng(seed))
