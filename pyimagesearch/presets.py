"""Named sets of settings, chosen with ``--preset NAME``.

A preset replaces the config.py defaults it names; flags given on the same
command line still win, so ``--preset salt --num-epochs 5`` is the salt recipe
trained for 5 epochs.
"""
from pyimagesearch import hardware

# the recommended TGS salt recipe for a CPU hour (docs/results.md)
SALT = {
    "MODEL_VARIANT": "aligned",
    "BATCH_NORM": True,
    # 5 levels, deep enough to see whole salt bodies; 16 channels at the first:
    # the network underfits, and twice the width of 8 in the same hour (about
    # 120 epochs instead of 200) gained +0.006 on unseen images (3 seeds,
    # docs/results.md) on a CPU with bf16 units; see WITHOUT_BF16 for the others
    "NUM_LEVELS": 5,
    "BASE_FILTERS": 16,
    # each block's input added back to its output: +0.007 (kept model) and
    # +0.004 (last epoch) on unseen images in the same hour, 3 seeds; fewer,
    # 1.15x longer epochs (docs/results.md)
    "RESIDUAL_BLOCKS": True,
    # the tiles' own size: the network pads 101 to 112 by reflection, which
    # keeps every pixel as it is and fits more epochs in the hour than resizing
    # to 128, whose fewer epochs outlined the salt worse (docs/results.md)
    "INPUT_IMAGE_WIDTH": 101,
    "INPUT_IMAGE_HEIGHT": 101,
    # channel and pixel attention in the decoder, every decoder level feeding
    # the last convolution, and a per-image salt gate: +0.035 on unseen images
    # at equal epochs, for about 20% more time per epoch (docs/results.md)
    "DECODER_ATTENTION": True,
    "HYPERCOLUMN": True,
    "IMAGE_GATE": True,
    # the gate's two heads also learn apart (whether an image holds salt; where,
    # on the images that do): +0.011 on unseen images at 30 epochs (5 seeds) and
    # +0.003 over the whole budget (1 seed), for 2% more time per step (docs/results.md)
    "DEEP_SUPERVISION": True,
    "AUGMENT": True,
    # BCE for every pixel, Lovasz for each image's IoU, which the score rewards
    "LOSS": "bce+lovasz",
    "INIT_LR": 0.002,
    "WEIGHT_DECAY": 0.0001,
    # the recipe's gradients are heavy-tailed; clipping keeps the rare huge
    # step from throwing the training back
    "GRAD_CLIP": 1.0,
    "LR_SCHEDULE": "cosine",
    # 16, twice the steps for the same time, did no better over the whole
    # budget (2 seeds, docs/results.md)
    "BATCH_SIZE": 32,
    # batch norm over the whole batch, not over pieces of it
    "MICRO_BATCH_SIZE": 0,
    # the run trains as many of 200 epochs as fit in 55 minutes (about 100
    # on a fast 2-core CPU with bf16 units under torchrun)
    "NUM_EPOCHS": 200,
    "TIME_BUDGET": 55.0,
    "TTA": True,
    # threshold 0.5 and no minimum salt area: values chosen on the validation
    # images did worse on unseen ones (docs/results.md)
    "TUNE_THRESHOLD": False,
}

PRESETS = {
    "salt": SALT,
    # one GPU runs the salt network's steps at the pace of its kernel launches,
    # not of its arithmetic, so a network twice as wide costs it little time;
    # 14 minutes in all. Not yet measured on a GPU (docs/results.md)
    "salt-gpu": {**SALT, "BASE_FILTERS": 32, "NUM_EPOCHS": 300, "TIME_BUDGET": 14.0},
}

# what a preset changes on a CPU without bf16 units (AVX2 only), where every
# step runs in fp32 at about a third of the speed: width 16 fits only about 20
# epochs in the hour there, and width 8, three times as many, scored higher on
# unseen images (docs/results.md)
WITHOUT_BF16 = {"salt": {"BASE_FILTERS": 8}}


def preset_settings(name, device):
    """(settings, adapted): the preset ``name``'s settings for a run on
    ``device`` (a name such as "cpu" or "cuda:0"), and those of them that differ
    from the preset as written because of this machine. Both are empty for no
    preset."""
    adapted = {}
    if str(device).startswith("cpu") and not hardware.cpu_has_native_bf16():
        adapted = WITHOUT_BF16.get(name, {})
    return {**PRESETS.get(name, {}), **adapted}, dict(adapted)


# what --help says of each
DESCRIPTIONS = {
    "salt": "the recommended TGS recipe for a 2-core CPU hour (base-filters 8 on CPUs "
            "without bf16 units)",
    "salt-gpu": "the salt recipe widened for 15 minutes on one GPU (not yet measured on one)",
}
