"""Training loss: the negative linear soft Dice of Sec. 3.2, plus an optional BCE term."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, bce_weight: float = 0.0,
                   smooth: float = 1.0) -> torch.Tensor:
    """Negative linear soft Dice (Sec. 3.2), optionally plus `bce_weight` * binary cross-entropy.

    logits: (B, 1, H, W) before the sigmoid; target: same shape, {0, 1} (bool or float).
    With p = sigmoid(logits) and t = target summed over the whole batch (every pixel counts
    equally, as the paper's dataset-level F1 does):

        dice_loss = -(2 * sum(p * t) + smooth) / (sum(p) + sum(t) + smooth)

    "Linear": the denominator sums p and t, not their squares. `smooth` (default 1, in pixels)
    keeps the ratio defined on frames without defects, where predicting nothing scores -1. Since
    2pt <= p + t for p, t in [0, 1], the Dice term lies in [-1, 0] and is -1 at a perfect
    prediction. Returns a scalar tensor.
    """
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} must have the same "
                         "shape, e.g. (B, 1, H, W): add the channel with target.unsqueeze(1)")
    if smooth < 0 or bce_weight < 0:
        raise ValueError(f"smooth and bce_weight must be >= 0; got {smooth}, {bce_weight}")
    t = target.to(logits.dtype)
    p = torch.sigmoid(logits)
    loss = -(2.0 * (p * t).sum() + smooth) / (p.sum() + t.sum() + smooth)
    if bce_weight > 0:
        loss = loss + bce_weight * F.binary_cross_entropy_with_logits(logits, t)
    return loss
