import math

import pytest
import torch

from pyimagesearch.metrics import (ClassTotals, MetricTotals, class_counts, class_metrics,
                                   competition_score_per_image,
                                   dice_per_image, iou_per_image, score_shortfall, summarize)


def masks(*rows_per_image):
    """Build a (N,1,H,W) bool batch from strings like '1100'."""
    return torch.tensor([[[[c == "1" for c in row] for row in image]]
                         for image in rows_per_image])


EMPTY = ["0000", "0000"]


def test_both_empty_is_perfect():
    pred, target = masks(EMPTY), masks(EMPTY)
    assert iou_per_image(pred, target).tolist() == [1.0]
    assert dice_per_image(pred, target).tolist() == [1.0]
    assert competition_score_per_image(pred, target).tolist() == [1.0]


def test_any_salt_on_an_empty_image_scores_zero():
    pred, target = masks(["0000", "0100"]), masks(EMPTY)
    assert iou_per_image(pred, target).tolist() == [0.0]
    assert dice_per_image(pred, target).tolist() == [0.0]
    assert competition_score_per_image(pred, target).tolist() == [0.0]


def test_missing_all_salt_scores_zero():
    pred, target = masks(EMPTY), masks(["1100", "1100"])
    assert iou_per_image(pred, target).tolist() == [0.0]
    assert competition_score_per_image(pred, target).tolist() == [0.0]


def test_partial_overlap_worked_by_hand():
    # truth: 4 pixels; prediction: 3 of them plus 1 outside
    # intersection 3, union 5 -> IoU 0.6; Dice 2*3/(4+4) = 0.75
    # thresholds exceeded by 0.6: 0.50, 0.55 (0.60 is not exceeded) -> 2/10
    pred = masks(["1100", "1010"])
    target = masks(["1100", "1100"])
    assert iou_per_image(pred, target).item() == pytest.approx(0.6)
    assert dice_per_image(pred, target).item() == pytest.approx(0.75)
    assert competition_score_per_image(pred, target).item() == pytest.approx(0.2)


@pytest.mark.parametrize("inter, union, expected", [
    (10, 10, 1.0),   # perfect
    (19, 20, 0.9),   # 0.95 exceeds 0.50..0.90 but not 0.95
    (7, 10, 0.4),    # IoU exactly 0.70: 0.50, 0.55, 0.60, 0.65 -> 4
    (1, 2, 0.0),     # IoU exactly 0.50 exceeds no threshold
    (51, 100, 0.1),  # just above 0.50
])
def test_competition_score_at_threshold_edges(inter, union, expected):
    # an image of `union` pixels in a row: truth covers all, prediction the first `inter`
    target = torch.ones(1, 1, 1, union, dtype=torch.bool)
    pred = torch.zeros_like(target)
    pred[..., :inter] = True
    assert competition_score_per_image(pred, target).item() == pytest.approx(expected)


def test_per_image_values_over_a_batch():
    pred = masks(EMPTY, ["1100", "1100"], ["0001", "0000"])
    target = masks(EMPTY, ["1100", "1000"], EMPTY)
    # image 2: inter 3, union 4 -> IoU 0.75, Dice 6/7, score 0.50..0.70 -> 5/10
    assert iou_per_image(pred, target).tolist() == pytest.approx([1.0, 0.75, 0.0])
    assert dice_per_image(pred, target).tolist() == pytest.approx([1.0, 6 / 7, 0.0])
    assert competition_score_per_image(pred, target).tolist() == pytest.approx([1.0, 0.5, 0.0])


def test_totals_average_over_images_not_batches():
    totals = MetricTotals()
    # batch of 3 with mean loss 1.0, then a batch of 1 with loss 5.0
    totals.add(torch.tensor(1.0), masks(EMPTY, EMPTY, EMPTY), masks(EMPTY, EMPTY, EMPTY))
    totals.add(torch.tensor(5.0), masks(["1000", "0000"]), masks(EMPTY))
    means = totals.means()
    assert totals.count == 4
    assert means["loss"] == pytest.approx((3 * 1.0 + 5.0) / 4)
    assert means["score"] == pytest.approx(3 / 4)
    assert means["iou"] == pytest.approx(3 / 4)


def test_totals_refuse_an_empty_evaluation():
    with pytest.raises(ValueError, match="no images"):
        MetricTotals().means()


def test_score_shortfall_worked_by_hand():
    # four images: empty truth predicted empty (1), empty truth with a false
    # pixel (0), salt missed (0), salt found with IoU 0.6 (0.2): mean 0.3,
    # shortfall 0.7 = (0 + 1) / 4 from "no salt" + 1 / 4 missed + 0.8 / 4 found
    pred = masks(EMPTY, ["0100", "0000"], EMPTY, ["1110", "0100"])
    target = masks(EMPTY, EMPTY, ["1100", "1100"], ["1100", "1100"])
    scores = competition_score_per_image(pred, target)
    assert scores.tolist() == pytest.approx([1.0, 0.0, 0.0, 0.2])
    has_salt = target.flatten(1).any(1)
    shortfall = score_shortfall(scores, has_salt, pred.flatten(1).any(1))
    assert shortfall["no salt"] == pytest.approx((2, 0.5, 0.25))
    assert shortfall["salt missed"] == pytest.approx((1, 0.0, 0.25))
    assert shortfall["salt found"] == pytest.approx((1, 0.2, 0.2))
    total = sum(share for _, _, share in shortfall.values())
    assert total == pytest.approx(1 - scores.mean().item())


def test_score_shortfall_of_a_kind_without_images():
    shortfall = score_shortfall([1.0, 1.0], [False, False], [False, False])
    assert shortfall["no salt"] == (2, 1.0, 0.0)
    count, mean, share = shortfall["salt missed"]
    assert (count, share) == (0, 0.0) and math.isnan(mean)


def test_summary_worked_by_hand():
    # three images: empty and predicted empty (1), salt found (0.6), salt missed (0)
    columns = {"iou": [1.0, 0.75, 0.0], "dice": [1.0, 0.8, 0.0], "score": [1.0, 0.6, 0.0],
               "salt_pixels": [0, 8, 5], "predicted_pixels": [0, 7, 0]}
    summary = summarize(columns)
    assert summary["count"] == 3
    assert summary["means"] == pytest.approx({"iou": 1.75 / 3, "dice": 0.6, "score": 1.6 / 3})
    # sample standard deviation of (1, 0.6, 0) is sqrt(0.2533...), over sqrt(3)
    assert summary["standard_error"] == pytest.approx(math.sqrt(0.76 / 3) / math.sqrt(3))
    assert summary["shortfall"]["salt missed"] == pytest.approx((1, 0.0, 1 / 3))
    assert summary["shortfall"]["salt found"] == pytest.approx((1, 0.6, 0.4 / 3))


def test_class_metrics_worked_by_hand():
    # truth  0 1 / 2 2      prediction  0 1 / 2 0
    truth = torch.tensor([[[0, 1], [2, 2]]])
    pred = torch.tensor([[[0, 1], [2, 0]]])
    counts = class_counts(pred, truth, 4)
    assert counts.tolist() == [[1, 1, 1, 0], [2, 1, 1, 0], [1, 1, 2, 0]]
    iou, dice = class_metrics(counts)
    # class 0: 1 / (2 + 1 - 1); class 1: 1; class 2: 1 / (1 + 2 - 1); class 3: nothing
    assert iou[:3].tolist() == pytest.approx([0.5, 1.0, 0.5]) and math.isnan(iou[3])
    assert dice[:3].tolist() == pytest.approx([2 / 3, 1.0, 2 / 3])


def test_class_totals_add_up_batches_and_average_the_classes_present():
    totals = ClassTotals(4)
    totals.add(torch.tensor(0.5), torch.tensor([[[0, 1], [2, 0]]]),
               torch.tensor([[[0, 1], [2, 2]]]))
    totals.add(torch.tensor(1.0), torch.tensor([[[0, 0], [0, 0]]]),
               torch.tensor([[[0, 0], [0, 0]]]))
    means = totals.means()
    # class 0 over both images: 5 right of 6 predicted and 5 true -> 5 / 6
    assert means["iou_per_class"][:3] == pytest.approx([5 / 6, 1.0, 0.5])
    assert means["iou"] == pytest.approx((5 / 6 + 1 + 0.5) / 3) == means["score"]
    assert means["loss"] == pytest.approx(0.75)
