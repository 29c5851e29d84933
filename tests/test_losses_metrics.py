"""Soft Dice loss (Sec. 3.2) and pixel metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from correlnet.losses import soft_dice_loss
from correlnet.metrics import PixelCounts, count_pixels

P = torch.tensor([0.8, 0.2, 0.5, 0.5]).view(1, 1, 2, 2)
T = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(1, 1, 2, 2)


def test_soft_dice_hand_computed():
    logits = torch.logit(P)
    # sum(p*t) = 0.8 + 0.5 = 1.3, sum(p) = 2, sum(t) = 2
    assert soft_dice_loss(logits, T, smooth=0.0).item() == pytest.approx(-2 * 1.3 / 4)
    assert soft_dice_loss(logits, T).item() == pytest.approx(-(2 * 1.3 + 1) / (4 + 1))


def test_soft_dice_with_bce_hand_computed():
    bce = -(math.log(0.8) + math.log(0.8) + math.log(0.5) + math.log(0.5)) / 4
    expected = -(2 * 1.3 + 1) / 5 + 0.5 * bce
    assert soft_dice_loss(torch.logit(P), T, bce_weight=0.5).item() == pytest.approx(expected, rel=1e-6)


def test_soft_dice_extremes():
    t = torch.zeros(2, 1, 8, 8)
    t[:, :, 2:5, 3:6] = 1
    perfect = (t * 2 - 1) * 40.0
    assert soft_dice_loss(perfect, t).item() == pytest.approx(-1.0, abs=1e-6)
    # No defect and none predicted: -1 thanks to the smooth term.
    assert soft_dice_loss(torch.full_like(t, -40.0), torch.zeros_like(t)).item() == pytest.approx(-1.0, abs=1e-6)
    # Everything wrong: -smooth / (sum p + sum t + smooth), close to 0.
    wrong = soft_dice_loss(-perfect, t).item()
    assert wrong == pytest.approx(-1.0 / (2 * 64 + 1), rel=1e-4)


def test_soft_dice_range_and_gradient():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        logits = (torch.randn(2, 1, 16, 16, generator=g) * 3).requires_grad_()
        t = (torch.rand(2, 1, 16, 16, generator=g) > 0.7).float()
        loss = soft_dice_loss(logits, t)
        assert -1.0 <= loss.item() <= 0.0
        loss.backward()
        assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_soft_dice_shape_mismatch():
    with pytest.raises(ValueError, match="unsqueeze"):
        soft_dice_loss(torch.zeros(2, 1, 4, 4), torch.zeros(2, 4, 4))


def test_count_pixels_hand_computed():
    pred = np.array([[1, 1, 0], [0, 1, 0]])
    true = np.array([[1, 0, 0], [1, 1, 0]], dtype=bool)
    c = count_pixels(pred, true)
    assert c == PixelCounts(tp=2, fp=1, fn=1)
    assert (c.precision, c.recall, c.f1) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert count_pixels(torch.from_numpy(pred), torch.from_numpy(true)) == c


@pytest.mark.parametrize("pred, true, expected", [
    ([0, 0, 0], [0, 0, 0], (1.0, 1.0, 1.0)),   # nothing to find, nothing found: perfect
    ([0, 0, 0], [1, 1, 0], (1.0, 0.0, 0.0)),   # missed everything, no false alarm
    ([1, 0, 0], [0, 0, 0], (0.0, 1.0, 0.0)),   # false alarm on a clean frame
])
def test_empty_mask_conventions(pred, true, expected):
    c = count_pixels(np.array(pred), np.array(true))
    assert (c.precision, c.recall, c.f1) == expected


def test_counts_add_and_dict():
    total = PixelCounts(1, 2, 3) + PixelCounts(10, 20, 30)
    assert total == PixelCounts(11, 22, 33)
    assert total.as_dict()["f1"] == pytest.approx(22 / (22 + 22 + 33))


def test_count_pixels_rejects_probabilities_and_mismatched_shapes():
    with pytest.raises(ValueError, match="threshold"):
        count_pixels(np.array([0.2, 0.9]), np.array([0, 1]))
    with pytest.raises(ValueError, match="same shape"):
        count_pixels(np.zeros((2, 2), bool), np.zeros((2, 3), bool))


def test_dataset_total_is_summed_counts_not_mean_frame_f1():
    big = np.zeros((20, 20), bool)
    big[:10, :10] = True                      # 100-pixel defect, found exactly
    tiny_true = np.zeros((20, 20), bool)
    tiny_true[0, 0] = True                    # 1-pixel defect missed, 1 false alarm
    tiny_pred = np.zeros((20, 20), bool)
    tiny_pred[5, 5] = True
    per_seq = {"a": count_pixels(big, big) + count_pixels(tiny_pred, tiny_true), "b": count_pixels(tiny_pred, tiny_true)}
    assert per_seq == {"a": PixelCounts(100, 1, 1), "b": PixelCounts(0, 1, 1)}
    total = sum(per_seq.values(), PixelCounts())
    assert total == PixelCounts(100, 2, 2)
    assert total.f1 == pytest.approx(200 / 204)
    mean_frame_f1 = (1.0 + 0.0 + 0.0) / 3   # per-frame F1s: 1, 0, 0
    assert abs(total.f1 - mean_frame_f1) > 0.5


def test_supported_components_against_a_hand_count():
    from correlnet.metrics import supported_components

    labels = np.zeros((4, 6), np.int64)
    labels[0, :4] = 1  # 4 px, 1 of them supported: 25 %
    labels[2:4, 0:2] = 2  # 4 px, 2 supported: 50 %
    labels[3, 5] = 3  # 1 px, unsupported
    support = np.zeros((4, 6), bool)
    support[0, 0] = support[2, 0] = support[3, 1] = True
    support[1, 5] = True  # background pixels never count
    np.testing.assert_array_equal(supported_components(labels, 3, support, 0.5), [False, False, True, False])
    np.testing.assert_array_equal(supported_components(labels, 3, support, 0.25), [False, True, True, False])
    np.testing.assert_array_equal(supported_components(labels, 3, support, 0.0), [False, True, True, True])
    with pytest.raises(ValueError, match="same shape"):
        supported_components(labels, 3, support[:2], 0.5)


def test_small_defect_weights_count_defects_by_number():
    import torch

    from correlnet.losses import small_defect_weights, soft_dice_loss

    mask = torch.zeros(1, 1, 12, 12)
    mask[0, 0, 1, 1] = 1  # a 1-px speck
    mask[0, 0, 5:7, 5:7] = 1  # a 4-px speck
    mask[0, 0, 9:12, 0:12] = 1  # a 36-px band
    w = small_defect_weights(mask, area_ref=16, max_weight=8)
    assert w[0, 0, 1, 1] == 8  # 16 / 1 capped at 8
    assert torch.all(w[0, 0, 5:7, 5:7] == 4)  # 16 / 4
    assert torch.all(w[0, 0, 9:12] == 1)  # larger than area_ref: weight 1
    assert w[0, 0, 0, 5] == 1 and float(w.sum()) == 144 - 1 - 4 - 36 + 8 + 16 + 36
    # Weight 1 everywhere is the unweighted loss; with weights a missed speck costs more.
    logits = torch.full_like(mask, -4.0)
    logits[0, 0, 9:12] = 4.0  # finds the band, misses both specks
    plain = soft_dice_loss(logits, mask, bce_weight=0.5)
    assert torch.isclose(soft_dice_loss(logits, mask, bce_weight=0.5, weight=torch.ones_like(mask)), plain)
    assert soft_dice_loss(logits, mask, bce_weight=0.5, weight=w) > plain
    # By hand: p = sigmoid(+-4); weighted Dice = -(2 sum w p t + 1) / (sum w p + sum w t + 1).
    p = torch.sigmoid(logits)
    by_hand = -(2 * (w * p * mask).sum() + 1) / ((w * p).sum() + (w * mask).sum() + 1)
    assert torch.isclose(soft_dice_loss(logits, mask, weight=w), by_hand)
    with pytest.raises(ValueError, match="area_ref"):
        small_defect_weights(mask, area_ref=0)
