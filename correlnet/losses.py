"""Training loss: the negative linear soft Dice of Sec. 3.2, plus an optional BCE term, optionally
with per-pixel weights that give small defects the weight of their number rather than of their area."""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def small_defect_weights(target: torch.Tensor, area_ref: float, max_weight: float = 16.0) -> torch.Tensor:
    """Per-pixel weights (same shape and device as `target`, float32) that count small defects.

    Summed over a batch, Dice and BCE weigh a defect by its area: a 6-px dust speck weighs as much as
    one pixel row of a blotch, so a network can ignore real dust (most of a restorer's work) at no
    cost. Here each pixel of an 8-connected defect component of `a` pixels weighs
    clip(area_ref / a, 1, max_weight); every other pixel weighs 1. target: (B, 1, H, W) {0, 1}.
    """
    if area_ref <= 0 or max_weight < 1:
        raise ValueError(f"area_ref must be > 0 and max_weight >= 1; got {area_ref}, {max_weight}")
    masks = target.detach().to("cpu").numpy().reshape(-1, *target.shape[-2:]) > 0.5
    out = np.ones(masks.shape, dtype=np.float32)
    for i, mask in enumerate(masks):
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        if count > 1:
            weights = np.clip(area_ref / stats[:, cv2.CC_STAT_AREA].astype(np.float32), 1.0, max_weight)
            out[i][mask] = weights[labels[mask]]
    return torch.from_numpy(out.reshape(target.shape)).to(target.device)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, bce_weight: float = 0.0,
                   smooth: float = 1.0, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Negative linear soft Dice (Sec. 3.2), optionally plus `bce_weight` * binary cross-entropy.

    logits: (B, 1, H, W) before the sigmoid; target: same shape, {0, 1} (bool or float).
    With p = sigmoid(logits) and t = target summed over the whole batch (every pixel counts
    equally, as the paper's dataset-level F1 does):

        dice_loss = -(2 * sum(p * t) + smooth) / (sum(p) + sum(t) + smooth)

    "Linear": the denominator sums p and t, not their squares. `smooth` (default 1, in pixels)
    keeps the ratio defined on frames without defects, where predicting nothing scores -1. Since
    2pt <= p + t for p, t in [0, 1], the Dice term lies in [-1, 0] and is -1 at a perfect
    prediction. `weight` (same shape, >= 0, e.g. `small_defect_weights`) weighs each pixel in all
    three sums and in the BCE term, which becomes mean(w * bce) (not a weighted mean: with weights
    above 1 the BCE term grows by mean(w)); None is weight 1 everywhere. Returns a scalar tensor.
    """
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} must have the same "
                         "shape, e.g. (B, 1, H, W): add the channel with target.unsqueeze(1)")
    if smooth < 0 or bce_weight < 0:
        raise ValueError(f"smooth and bce_weight must be >= 0; got {smooth}, {bce_weight}")
    if weight is not None and weight.shape != target.shape:
        raise ValueError(f"weight {tuple(weight.shape)} must have the target's shape {tuple(target.shape)}")
    t = target.to(logits.dtype)
    p = torch.sigmoid(logits)
    w = torch.ones_like(t) if weight is None else weight.to(logits.dtype)
    loss = -(2.0 * (w * p * t).sum() + smooth) / ((w * p).sum() + (w * t).sum() + smooth)
    if bce_weight > 0:
        loss = loss + bce_weight * F.binary_cross_entropy_with_logits(logits, t, weight=None if weight is None else w)
    return loss
