"""The pictures that explain a model's errors."""
import numpy as np

from pyimagesearch.metrics import COVERAGE_KINDS, coverage_kind
from pyimagesearch.plots import plot_gallery, plot_prediction, plot_score_by_coverage


def _panel(title):
    image = np.full((20, 20), 120, np.uint8)
    truth = np.zeros((20, 20), np.uint8)
    truth[5:15, 5:15] = 1
    predicted = np.roll(truth, 2, axis=1)
    return image, truth, predicted, title


def test_the_gallery_has_one_panel_per_image(tmp_path):
    figure = plot_gallery([_panel(f"image {n}") for n in range(5)], str(tmp_path / "g.png"))
    assert (tmp_path / "g.png").stat().st_size > 0
    assert [axes.get_title() for axes in figure.axes] == [f"image {n}" for n in range(5)]


def test_the_prediction_figure_outlines_both_masks_and_shows_the_probability(tmp_path):
    image, truth, predicted, _ = _panel("")
    figure = plot_prediction(image, truth, predicted, np.linspace(0, 1, 400).reshape(20, 20),
                             str(tmp_path / "p.png"), "a: score 0.50")
    outlined = figure.axes[0]
    assert len(outlined.collections) == 2  # the true and the predicted outline
    assert figure.axes[1].get_title() == "salt probability"
    assert figure.texts[0].get_text() == "a: score 0.50"
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend == ["true salt", "predicted salt"]


def test_coverage_kinds_worked_by_hand():
    assert [coverage_kind(share) for share in (0, 0.001, 0.1, 0.1001, 0.5, 0.7, 1.0)] == [
        "empty", "small", "small", "medium", "medium", "large", "large"]


def test_the_coverage_plot_has_a_column_per_kind(tmp_path):
    kinds = ["empty", "empty", "small", "large"]
    figure = plot_score_by_coverage(kinds, [1.0, 0.0, 0.3, 0.9], str(tmp_path / "c.png"),
                                    list(COVERAGE_KINDS))
    axes = figure.axes[0]
    labels = [label.get_text() for label in axes.get_xticklabels()]
    assert labels == ["empty\nn = 2", "small\nn = 1", "medium\nn = 0", "large\nn = 1"]
    assert [round(bar.get_height(), 6) for bar in axes.patches] == [0.5, 0.3, 0.9]
