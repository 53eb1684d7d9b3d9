"""Figures, always saved as PNG files (and shown only where there is a screen)."""
import os
import sys

import matplotlib

from pyimagesearch.files import atomic_path


def display_available():
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


if not display_available():
    # without a screen an interactive backend would fail or show nothing
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)


def _save(figure, path):
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100, bbox_inches="tight")


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
    plt.close(figure)


def plot_prediction(image, true_mask, predicted_mask, path, title, keep_open=False):
    """Image / true mask / predicted mask in one row."""
    figure, axes = plt.subplots(1, 3, figsize=(10, 3.6))
    panels = (("image", image), ("true mask", true_mask), ("predicted mask", predicted_mask))
    for ax, (name, pixels) in zip(axes, panels):
        ax.imshow(pixels, cmap="gray", vmin=0, vmax=255 if name == "image" else 1)
        ax.set_title(name)
        ax.axis("off")
    figure.suptitle(title)
    figure.tight_layout()
    _save(figure, path)
    if not keep_open:
        plt.close(figure)


def show_open_figures():
    plt.show()
