"""Training augmentation keeps each image and its mask aligned."""
import numpy as np
import torch
from torchvision import tv_tensors

from pyimagesearch import synthetic
from pyimagesearch.augment import augmentation_seed, training_transforms
from pyimagesearch.metrics import iou_per_image


def test_no_augmentation_means_no_transform():
    assert training_transforms((32, 32), False) is None


def test_image_and_mask_move_together():
    torch.manual_seed(0)
    transform = training_transforms((48, 48), True)
    mask = torch.zeros(1, 48, 48, dtype=torch.uint8)
    mask[:, 10:30, 5:20] = 1   # an off-centre, asymmetric body
    mask[:, 35:45, 30:46] = 1
    # the image shows the mask itself (bright salt on dark ground), so after
    # any joint change the bright pixels must still be the mask's pixels
    image = (mask * 180 + 40).to(torch.uint8)
    changed = 0
    for _ in range(40):
        out_image, out_mask = transform(tv_tensors.Image(image), tv_tensors.Mask(mask))
        assert out_mask.shape == mask.shape and set(out_mask.unique().tolist()) <= {0, 1}
        bright = out_image.float() > out_image.float().mean()
        assert iou_per_image(bright[None], out_mask[None].bool()).item() > 0.85
        changed += not torch.equal(out_mask, mask)
    assert changed >= 20  # it does change most samples


def test_the_zoom_keeps_masks_on_their_images_pixel_grid():
    # an image that shows its own mask: after any zoom, flip and change of
    # brightness, the image thresholded halfway must still be the mask
    torch.manual_seed(1)
    rng = np.random.default_rng(5)
    transform = training_transforms((101, 101), True)
    zoomed = 0
    while zoomed < 30:
        _, mask = synthetic.make_sample(rng)
        if not mask.any():
            continue
        mask = torch.from_numpy(mask)[None]
        out_image, out_mask = transform(tv_tensors.Image(mask * 255), tv_tensors.Mask(mask))
        zoomed += bool(out_image.float().unique().numel() > 2)  # resampling blends pixels
        out_image = out_image.float()
        halfway = (out_image.min() + out_image.max()) / 2
        assert iou_per_image((out_image > halfway)[None], out_mask[None].bool()).item() >= 0.99


def test_each_process_and_epoch_draws_its_own_changes():
    seeds = {(rank, epoch): augmentation_seed(42, rank, epoch)
             for rank in range(4) for epoch in range(1, 4)}
    assert len(set(seeds.values())) == len(seeds)
    assert augmentation_seed(42, 1, 2) == seeds[1, 2]  # the same again after a resume
    assert augmentation_seed(7, 1, 2) != seeds[1, 2]
