"""From probabilities to masks: minimum area, blank images, the tuning."""
import types

import torch

from pyimagesearch.postprocess import (PredictionRules, cross_fitted_score, is_blank, to_masks,
                                       tune)


def test_small_masks_are_emptied_and_larger_ones_kept():
    probabilities = torch.zeros(2, 1, 10, 10)
    probabilities[0, 0, :2, :2] = 0.9   # 4 pixels
    probabilities[1, 0, :5, :5] = 0.9   # 25 pixels
    masks = to_masks(probabilities, 0.5, min_area=10)
    assert masks[0].sum() == 0 and masks[1].sum() == 25


def test_blank_images_get_empty_masks():
    images = torch.rand(3, 1, 8, 8)
    images[1] = 0.3
    blank = is_blank(images)
    assert blank.tolist() == [False, True, False]
    masks = to_masks(torch.ones(3, 1, 8, 8), 0.5, blank=blank)
    assert masks.flatten(1).sum(1).tolist() == [64, 0, 64]


def test_tuning_finds_the_area_that_removes_false_specks():
    # images 0-3 hold no salt but a 3-pixel speck of noise; images 4-7 hold a
    # 30-pixel salt body predicted exactly: a minimum area between 4 and 30
    # makes every image right (score 1), none at all scores 0.5
    probabilities = torch.zeros(8, 1, 10, 10)
    targets = torch.zeros(8, 1, 10, 10, dtype=torch.bool)
    probabilities[:4, 0, 0, :3] = 0.8
    probabilities[4:, 0, :3, :] = 0.8
    targets[4:, 0, :3, :] = True
    threshold, min_area, score = tune(probabilities, targets)
    assert 3 < min_area <= 30 and score == 1.0
    assert threshold == 0.5  # every threshold below 0.8 ties: the plain one is kept
    assert cross_fitted_score(probabilities, targets) == 1.0


def test_tuning_moves_the_threshold_when_the_model_is_timid():
    probabilities = torch.full((4, 1, 6, 6), 0.1)
    probabilities[:, :, :3] = 0.4
    targets = torch.zeros(4, 1, 6, 6, dtype=torch.bool)
    targets[:, :, :3] = True
    threshold, _, score = tune(probabilities, targets)
    assert 0.1 <= threshold < 0.4 and score == 1.0


def test_cross_fitting_does_not_report_the_lucky_best():
    # pure noise: tuning on the images themselves finds some luck; scoring
    # other images with what was found must not be better than tuned
    torch.manual_seed(0)
    probabilities = torch.rand(40, 1, 6, 6)
    targets = torch.rand(40, 1, 6, 6) > 0.5
    _, _, tuned = tune(probabilities, targets)
    assert cross_fitted_score(probabilities, targets) <= tuned + 1e-9


def test_to_masks_threshold_is_strict():
    masks = to_masks(torch.tensor([0.5, 0.51]).reshape(1, 1, 1, 2), 0.5)
    assert masks.flatten().tolist() == [False, True]


def test_cross_fitting_needs_two_images():
    probabilities = torch.full((1, 1, 4, 4), 0.9)
    targets = torch.ones((1, 1, 4, 4), dtype=torch.bool)
    assert cross_fitted_score(probabilities, targets) is None
    assert cross_fitted_score(probabilities.repeat(2, 1, 1, 1), targets.repeat(2, 1, 1, 1)) == 1.0


def _settings(given=()):
    return types.SimpleNamespace(THRESHOLD=0.5, MIN_SALT_AREA=0, TTA=False,
                                 GIVEN=frozenset(given))


def test_prediction_rules_stored_with_a_model_win_over_defaults():
    stored = {"prediction": {"threshold": 0.4, "min_area": 20, "tta": True}}
    assert PredictionRules.for_model(_settings(), stored) == PredictionRules(0.4, 20, True)
    assert PredictionRules.for_model(_settings(), {}) == PredictionRules(0.5, 0, False)


def test_prediction_rules_given_as_flags_win_over_stored_ones():
    stored = {"prediction": {"threshold": 0.4, "min_area": 20, "tta": True}}
    rules = PredictionRules.for_model(_settings({"THRESHOLD", "TTA"}), stored)
    assert rules == PredictionRules(0.5, 20, False)
    assert rules.as_dict() == {"threshold": 0.5, "min_area": 20, "tta": False}
