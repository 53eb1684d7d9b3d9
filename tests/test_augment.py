"""Training augmentation keeps each image and its mask aligned."""
import torch
from torchvision import tv_tensors

from pyimagesearch.augment import training_transforms
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
