"""Figures, always saved as PNG files (and shown only where there is a screen)."""
import math
import os
import sys

import matplotlib
import numpy as np

from pyimagesearch.files import atomic_path


def display_available():
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


if not display_available():
    # without a screen an interactive backend would fail or show nothing
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.lines import Line2D  # noqa: E402


def _save(figure, path, keep_open=False):
    """Write ``figure`` as PNG and close it unless it is to be shown; returns it."""
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100, bbox_inches="tight")
    if not keep_open:
        plt.close(figure)
    return figure


def plot_history(history, path):
    """Loss curves and validation metrics per epoch, side by side."""
    epochs = [row["epoch"] for row in history]
    figure, (loss_axes, metric_axes) = plt.subplots(1, 2, figsize=(12, 4.5))
    loss_axes.plot(epochs, [row["train_loss"] for row in history], label="train loss")
    loss_axes.plot(epochs, [row["val_loss"] for row in history], label="validation loss")
    loss_axes.set(title="Loss per image", xlabel="epoch", ylabel="loss (LOSS setting)")
    for key, label in (("val_iou", "mean IoU"), ("val_dice", "mean Dice"),
                       ("val_score", "competition score")):
        metric_axes.plot(epochs, [row[key] for row in history], label=label)
    metric_axes.set(title="Validation metrics", xlabel="epoch", ylim=(0, 1))
    for axes in (loss_axes, metric_axes):
        axes.grid(alpha=0.3)
        axes.legend(loc="best")
    _save(figure, path)


# outline colours that stay apart on gray images and for most colour-blind eyes
TRUE_COLOUR, PREDICTED_COLOUR = "#00d0ff", "#ff9000"


def _draw_outlines(axes, image, true_mask, predicted_mask, title):
    """The image with the true and the predicted mask outlined over it."""
    axes.imshow(image, cmap="gray", vmin=0, vmax=255)
    for mask, colour, style in ((true_mask, TRUE_COLOUR, "solid"),
                                (predicted_mask, PREDICTED_COLOUR, "dashed")):
        if mask.any() and not mask.all():
            axes.contour(mask, levels=[0.5], colors=colour, linewidths=1.5, linestyles=style)
    axes.set_title(title, fontsize=9)
    axes.axis("off")


def _outline_legend(figure):
    handles = [Line2D([], [], color=TRUE_COLOUR, label="true salt"),
               Line2D([], [], color=PREDICTED_COLOUR, linestyle="dashed", label="predicted salt")]
    figure.legend(handles=handles, loc="lower center", ncol=2, frameon=False)


def plot_prediction(image, true_mask, predicted_mask, probability, path, title,
                    keep_open=False):
    """The image with both outlines, and the probability map; returns the figure."""
    figure, (outlined, probabilities) = plt.subplots(1, 2, figsize=(8, 4.4))
    _draw_outlines(outlined, image, true_mask, predicted_mask, "image")
    shown = probabilities.imshow(probability, cmap="magma", vmin=0, vmax=1)
    probabilities.set_title("salt probability", fontsize=9)
    probabilities.axis("off")
    figure.colorbar(shown, ax=probabilities, fraction=0.046)
    figure.suptitle(title)
    _outline_legend(figure)
    return _save(figure, path, keep_open)


def class_colours(num_classes, palette=()):
    """An RGB uint8 colour per class: the palette given, or black for the
    background and matplotlib's tab10 colours for the others."""
    if palette:
        return np.array(palette, dtype=np.uint8)
    table = plt.get_cmap("tab10").colors
    colours = [(0, 0, 0)] + [table[index % len(table)] for index in range(num_classes - 1)]
    return np.round(np.array(colours) * 255).astype(np.uint8)


def colour_mask(mask, colours):
    """An RGB picture of a class-index mask."""
    return colours[mask]


def plot_classes(image, true_mask, predicted_mask, colours, path, title, keep_open=False):
    """Image, true classes and predicted classes in colour; returns the figure."""
    figure, axes = plt.subplots(1, 3, figsize=(10, 3.8))
    axes[0].imshow(image, cmap="gray", vmin=0, vmax=255)
    for axis, mask, name in ((axes[1], true_mask, "true classes"),
                             (axes[2], predicted_mask, "predicted classes")):
        axis.imshow(colour_mask(mask, colours))
        axis.set_title(name, fontsize=9)
    for axis in axes:
        axis.axis("off")
    axes[0].set_title("image", fontsize=9)
    figure.suptitle(title)
    return _save(figure, path, keep_open)


def plot_gallery(panels, path, columns=4):
    """A grid of images with their outlines; ``panels`` holds (image, true
    mask, predicted mask, title) tuples. Returns the figure."""
    rows = max(1, math.ceil(len(panels) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.8 * rows + 0.4),
                                squeeze=False)
    for axis in axes.flat[len(panels):]:
        figure.delaxes(axis)
    for axis, (image, true_mask, predicted_mask, title) in zip(axes.flat, panels):
        _draw_outlines(axis, image, true_mask, predicted_mask, title)
    _outline_legend(figure)
    return _save(figure, path)


def plot_score_by_coverage(kinds, scores, path, order):
    """Each image's score (a dot) and the mean (a bar) per kind of image,
    ``order`` naming the kinds from left to right. Returns the figure."""
    figure, axes = plt.subplots(figsize=(7, 4))
    rng = np.random.default_rng(0)  # the dots' sideways jitter, the same every time
    labels = []
    for position, kind in enumerate(order):
        chosen = [score for k, score in zip(kinds, scores) if k == kind]
        labels.append(f"{kind}\nn = {len(chosen)}")
        if chosen:
            axes.bar(position, np.mean(chosen), width=0.6, alpha=0.3, color="tab:blue")
            axes.scatter(position + rng.uniform(-0.25, 0.25, len(chosen)), chosen, s=6,
                         color="tab:blue")
    axes.set_xticks(range(len(order)), labels)
    axes.set(title="Competition score by salt coverage", ylabel="score per image",
             ylim=(-0.05, 1.05))
    axes.grid(axis="y", alpha=0.3)
    return _save(figure, path)


def show_open_figures():
    plt.show()
