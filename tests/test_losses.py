"""Losses against values worked out by hand."""
import math

import pytest
import torch
import torch.nn.functional as F

from pyimagesearch.losses import (CombinedLoss, DeepSupervisionLoss, is_valid_name, lovasz_elu,
                                  lovasz_hinge, lovasz_softmax, lovasz_symmetric, soft_dice_loss)


def image(values):
    return torch.tensor(values, dtype=torch.float32).reshape(1, 1, 1, -1)


def test_lovasz_of_plus_minus_one_logits_is_twice_one_minus_iou():
    # truth 1 1 0 0, prediction (logit > 0) 1 0 1 0: IoU 1/3, errors 0 2 2 0.
    # Sorted errors 2, 2 (one salt, one background pixel): Jaccard losses
    # 1 - 1/2 and 1 - 1/3, so weights 1/2 and 1/6: 2 * (1/2 + 1/6) = 4/3.
    loss = lovasz_hinge(image([1, -1, 1, -1]), image([1, 1, 0, 0]))
    assert loss.item() == pytest.approx(4 / 3)


def test_lovasz_is_zero_when_every_margin_is_met():
    assert lovasz_hinge(image([3, 1, -1, -2]), image([1, 1, 0, 0])).item() == 0


def test_lovasz_grows_linearly_with_a_margin_shortfall():
    # one salt pixel of two at logit 0.5 (error 0.5) and the rest right:
    # the only wrong pixel is the first in the sorted order, weight 1 - 1/2
    loss = lovasz_hinge(image([0.5, 2, -2, -2]), image([1, 1, 0, 0]))
    assert loss.item() == pytest.approx(0.5 * 0.5)


def test_lovasz_on_an_empty_truth_is_the_worst_margin():
    # no salt: every weight but the first is 0, so only the worst error counts
    loss = lovasz_hinge(image([-2, 0.5, -0.5, -3]), image([0, 0, 0, 0]))
    assert loss.item() == pytest.approx(1.5)


def test_lovasz_is_the_mean_over_images():
    logits = torch.cat([image([1, -1, 1, -1]), image([3, 1, -1, -2])])
    targets = torch.cat([image([1, 1, 0, 0]), image([1, 1, 0, 0])])
    assert lovasz_hinge(logits, targets).item() == pytest.approx(2 / 3)


def test_lovasz_elu_by_hand():
    # the first case above with penalties elu(2) + 1 = 3 and elu(0) + 1 = 1: the
    # sorted truth 1 0 1 0 has Jaccard losses 1/2, 2/3, 1, 1, so weights 1/2,
    # 1/6, 1/3, 0: 3/2 + 3/6 + 1/3 = 7/3
    loss = lovasz_elu(image([1, -1, 1, -1]), image([1, 1, 0, 0]))
    assert loss.item() == pytest.approx(7 / 3)


def test_lovasz_elu_still_counts_pixels_past_their_margin():
    # where the hinge is 0, elu + 1 still charges e**error for each right
    # pixel: errors 0, 0, -1, -2 with weights 1/2, 1/6, 1/12, 1/4
    loss = lovasz_elu(image([3, 1, -1, -2]), image([1, 1, 0, 0]))
    assert loss.item() == pytest.approx(2 / 3 + math.exp(-1) / 12 + math.exp(-2) / 4)


def test_lovasz_elu_on_an_empty_truth_is_the_worst_margin():
    loss = lovasz_elu(image([-2, 0.5, -0.5, -3]), image([0, 0, 0, 0]))
    assert loss.item() == pytest.approx(2.5)


def test_lovasz_symmetric_of_plus_minus_one_logits_by_hand():
    # truth 1 0 0 0, prediction 1 1 0 0: salt IoU 1/2, background IoU 2/3
    # (2 of the 3 background pixels kept): (2 * 1/2 + 2 * 1/3) / 2 = 5/6
    loss = lovasz_symmetric(image([1, 1, -1, -1]), image([1, 0, 0, 0]))
    assert loss.item() == pytest.approx(5 / 6)


def test_lovasz_symmetric_is_the_mean_of_salt_and_background():
    logits = torch.randn(3, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    targets = (torch.rand(3, 1, 5, 5, generator=torch.Generator().manual_seed(1)) > 0.6).float()
    both = (lovasz_hinge(logits, targets) + lovasz_hinge(-logits, 1 - targets)) / 2
    assert lovasz_symmetric(logits, targets).item() == pytest.approx(both.item())


def test_lovasz_symmetric_on_an_empty_truth_teaches_every_wrong_pixel():
    # errors 1 + logit: 1.5 and 0.5 above 0. The salt term charges the worst
    # (1.5); the background term, 4 pixels of truth, 1/4 for each: 0.5
    logits = image([-2, 0.5, -0.5, -3]).requires_grad_()
    loss = lovasz_symmetric(logits, image([0, 0, 0, 0]))
    loss.backward()
    assert loss.item() == pytest.approx((1.5 + 0.5) / 2)
    assert logits.grad.flatten()[2].item() == pytest.approx(1 / 8)
    plain = image([-2, 0.5, -0.5, -3]).requires_grad_()
    lovasz_hinge(plain, image([0, 0, 0, 0])).backward()
    assert plain.grad.flatten()[2].item() == 0


def test_soft_dice_by_hand():
    # p = sigmoid(0) = 0.5 on 4 pixels, 2 of them salt: intersection 1,
    # sum p 2 + sum t 2 = 4: 1 - (2 + 1) / (4 + 1) = 0.4
    loss = soft_dice_loss(image([0, 0, 0, 0]), image([1, 1, 0, 0]))
    assert loss.item() == pytest.approx(0.4)


def test_soft_dice_near_zero_for_a_confident_right_answer():
    assert soft_dice_loss(image([20, 20, -20, -20]), image([1, 1, 0, 0])).item() < 1e-6


def test_combined_loss_adds_its_parts():
    torch.manual_seed(0)
    logits, targets = torch.randn(3, 1, 8, 8), (torch.rand(3, 1, 8, 8) > 0.5).float()
    expected = (F.binary_cross_entropy_with_logits(logits, targets)
                + lovasz_hinge(logits, targets))
    assert CombinedLoss("bce+lovasz")(logits, targets).item() == pytest.approx(expected.item())
    assert CombinedLoss("bce")(logits, targets).item() == pytest.approx(
        torch.nn.BCEWithLogitsLoss()(logits, targets).item())


def test_lovasz_trains_towards_the_target():
    torch.manual_seed(0)
    logits = torch.zeros(2, 1, 6, 6, requires_grad=True)
    targets = (torch.rand(2, 1, 6, 6) > 0.5).float()
    optimizer = torch.optim.SGD([logits], lr=5.0)
    for _ in range(30):
        optimizer.zero_grad()
        loss = lovasz_hinge(logits, targets)
        loss.backward()
        optimizer.step()
    assert math.isclose(loss.item(), 0, abs_tol=1e-6)
    assert torch.equal(logits.detach() > 0, targets > 0)


@pytest.mark.parametrize("name", ["", "bce+", "focal", "bce+bce"])
def test_unknown_loss_names_are_refused(name):
    with pytest.raises(ValueError, match="unknown loss"):
        CombinedLoss(name)


def _certain(labels, num_classes=3):
    return torch.nn.functional.one_hot(labels, num_classes).permute(0, 3, 1, 2).float() * 100


def test_lovasz_softmax_of_certain_predictions_is_the_mean_of_one_minus_iou():
    truth = torch.tensor([[[0, 1], [2, 2]]])
    # IoU of class 0: 1/2, class 1: 1, class 2: 1/2
    assert lovasz_softmax(_certain(torch.tensor([[[0, 1], [2, 0]]])), truth).item() == \
        pytest.approx((0.5 + 0 + 0.5) / 3)
    assert lovasz_softmax(_certain(truth), truth).item() == pytest.approx(0, abs=1e-6)


def test_multiclass_losses_fall_to_zero_for_certain_right_predictions():
    truth = torch.tensor([[[0, 1], [2, 2]]])
    loss = CombinedLoss("bce+dice+lovasz", num_classes=3)
    assert loss(_certain(truth), truth).item() == pytest.approx(0, abs=0.3)
    assert loss(_certain(truth), truth) < loss(_certain(1 - truth.clamp(max=1)), truth)


def test_the_binary_lovasz_forms_are_for_one_class_only():
    assert is_valid_name("bce+lovasz", 3) and not is_valid_name("lovasz_elu", 3)
    assert not is_valid_name("lovasz_symmetric", 3)
    with pytest.raises(ValueError, match="3 class"):
        CombinedLoss("lovasz_elu", num_classes=3)


def test_deep_supervision_adds_an_image_loss_and_a_pixel_loss_on_salt_images():
    # every logit 0: each BCE is ln 2. One image holds salt, one does not:
    # gated (both) + image (both) + pixel (the salt image only) = 3 ln 2
    loss = DeepSupervisionLoss(CombinedLoss("bce"))
    targets = torch.zeros(2, 1, 2, 2)
    targets[0, 0, 0, 0] = 1
    zeros = (torch.zeros(2, 1, 2, 2), torch.zeros(2, 1, 2, 2), torch.zeros(2))
    assert loss(zeros, targets).item() == pytest.approx(3 * math.log(2), rel=1e-6)
    # no salt anywhere: no pixel loss
    assert loss(zeros, torch.zeros(2, 1, 2, 2)).item() == pytest.approx(2 * math.log(2), rel=1e-6)
    # the pixel loss sees only the salt image: a wrong pixel head on the
    # empty image costs nothing but through the gated output
    pixel = torch.zeros(2, 1, 2, 2)
    pixel[1] = 5.0
    parts = (torch.zeros(2, 1, 2, 2), pixel, torch.zeros(2))
    assert loss(parts, targets).item() == pytest.approx(3 * math.log(2), rel=1e-6)
    # the image head is scored against whether each image holds salt
    sure = (torch.zeros(2, 1, 2, 2), torch.zeros(2, 1, 2, 2), torch.tensor([20.0, -20.0]))
    assert loss(sure, targets).item() == pytest.approx(2 * math.log(2), rel=1e-6)


def test_deep_supervision_on_plain_logits_is_its_loss_alone():
    torch.manual_seed(0)
    logits, targets = torch.randn(3, 1, 5, 5), (torch.rand(3, 1, 5, 5) > 0.5).float()
    base = CombinedLoss("bce+lovasz")
    assert DeepSupervisionLoss(base)(logits, targets).item() == base(logits, targets).item()
