"""The U-Net, built from small parts: Block -> Encoder / Decoder -> UNet.

Two variants share these parts:
- "tutorial": unpadded 3x3 convolutions, skip connections center-cropped to the
  decoder's size, and the small output stretched to ``outSize`` by nearest
  interpolation. A 128x128 input gives a 88x88 map that covers only the centre
  of the image, so every output pixel is shifted from the pixel it labels.
- "aligned": padded convolutions, so output pixel i is the prediction for
  input pixel i; inputs whose sides are not a multiple of 2**(levels-1) are
  padded evenly on both sides by reflection (a 101x101 TGS image becomes
  112x112 at 5 levels) and the padding is cropped off the output.
Either variant can put batch normalisation after each convolution (``batchNorm``).

Four options add capacity where the TGS salt task loses its score:
``residual`` adds each block's input, projected by a 1x1 convolution, to its
output, a path that carries gradients past the convolutions; ``attention``
reweights each decoder block's channels and pixels (scSE);
``hypercolumn`` feeds every decoder level's output, upsampled, to the last
convolution, so coarse context shapes the outline; ``imageGate`` predicts from
the deepest level whether the image holds any of the class at all, and a pixel's
probability becomes that of the image times its own.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import CenterCrop

VARIANTS = ("aligned", "tutorial")


class Block(nn.Module):
    """Two 3x3 convolutions with a ReLU between them, as in the tutorial.

    With ``batchNorm`` each convolution is followed by batch normalisation and
    a ReLU, which lets a deeper network train at a higher learning rate.
    """

    def __init__(self, inChannels, outChannels, padding=0, batchNorm=False):
        super().__init__()
        # a convolution followed by batch normalisation needs no bias of its own
        self.conv1 = nn.Conv2d(inChannels, outChannels, 3, padding=padding, bias=not batchNorm)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(outChannels, outChannels, 3, padding=padding, bias=not batchNorm)
        self.norm1 = nn.BatchNorm2d(outChannels) if batchNorm else nn.Identity()
        self.norm2 = nn.Sequential(nn.BatchNorm2d(outChannels), nn.ReLU()) if batchNorm \
            else nn.Identity()

    def forward(self, x):
        return self.norm2(self.conv2(self.relu(self.norm1(self.conv1(x)))))


class ResidualBlock(nn.Module):
    """Block's two 3x3 convolutions (padded) with the input added back before
    the last ReLU, through a 1x1 convolution where the width changes."""

    def __init__(self, inChannels, outChannels, batchNorm=False):
        super().__init__()
        self.conv1 = nn.Conv2d(inChannels, outChannels, 3, padding=1, bias=not batchNorm)
        self.norm1 = nn.BatchNorm2d(outChannels) if batchNorm else nn.Identity()
        self.conv2 = nn.Conv2d(outChannels, outChannels, 3, padding=1, bias=not batchNorm)
        self.norm2 = nn.BatchNorm2d(outChannels) if batchNorm else nn.Identity()
        self.relu = nn.ReLU()
        self.shortcut = nn.Identity() if inChannels == outChannels else nn.Sequential(
            nn.Conv2d(inChannels, outChannels, 1, bias=not batchNorm),
            nn.BatchNorm2d(outChannels) if batchNorm else nn.Identity())

    def forward(self, x):
        body = self.norm2(self.conv2(self.relu(self.norm1(self.conv1(x)))))
        return self.relu(body + self.shortcut(x))


def make_block(inChannels, outChannels, padding, batchNorm, residual):
    """A Block, or with ``residual`` a ResidualBlock (padded by definition)."""
    if residual:
        return ResidualBlock(inChannels, outChannels, batchNorm)
    return Block(inChannels, outChannels, padding, batchNorm)


class SCSE(nn.Module):
    """Concurrent channel and spatial squeeze-and-excitation: the map is
    reweighted per channel (from its global average) and per pixel (from all
    its channels there), and the two reweighted maps are added."""

    def __init__(self, channels, reduction=4):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.channel_gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, hidden, 1), nn.ReLU(),
            nn.Conv2d(hidden, channels, 1), nn.Sigmoid())
        self.spatial_gate = nn.Sequential(nn.Conv2d(channels, 1, 1), nn.Sigmoid())

    def forward(self, x):
        return x * self.channel_gate(x) + x * self.spatial_gate(x)


class Encoder(nn.Module):
    """A Block per level, halving the resolution between levels.

    Returns every level's output, from the finest to the coarsest.
    """

    def __init__(self, channels=(3, 16, 32, 64), padding=0, batchNorm=False, residual=False):
        super().__init__()
        self.encBlocks = nn.ModuleList(
            make_block(channels[i], channels[i + 1], padding, batchNorm, residual)
            for i in range(len(channels) - 1))
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        features = []
        for level, block in enumerate(self.encBlocks):
            if level:
                x = self.pool(x)
            x = block(x)
            features.append(x)
        return features


class Decoder(nn.Module):
    """Upsample, join the encoder's features of the same level, then a Block.

    ``channels`` starts with the width of the map it upsamples first (the
    deepest encoder level's) and gives each decoder level's width after it.
    ``skipChannels`` gives the widths of the encoder maps joined at those
    levels; by default the same as the decoder's (the tutorial's mirror).
    """

    def __init__(self, channels=(64, 32, 16), padding=0, batchNorm=False, attention=False,
                 residual=False, skipChannels=None):
        super().__init__()
        self.channels = channels
        skips = channels[1:] if skipChannels is None else skipChannels
        self.upconvs = nn.ModuleList(
            nn.ConvTranspose2d(channels[i], channels[i + 1], 2, 2)
            for i in range(len(channels) - 1))
        self.dec_blocks = nn.ModuleList(
            make_block(channels[i + 1] + skips[i], channels[i + 1], padding, batchNorm, residual)
            for i in range(len(channels) - 1))
        # kept apart from the blocks, so that the weights of a network without
        # attention keep the names model files have always given them
        self.attention = (nn.ModuleList(SCSE(width) for width in channels[1:]) if attention
                          else None)

    def forward(self, x, encFeatures):
        return self.level_outputs(x, encFeatures)[-1]

    def level_outputs(self, x, encFeatures):
        """Every level's output, from the coarsest to the finest."""
        outputs = []
        for level, (upconv, block, skip) in enumerate(zip(self.upconvs, self.dec_blocks,
                                                          encFeatures)):
            x = upconv(x)
            if skip.shape[-2:] != x.shape[-2:]:
                skip = CenterCrop(list(x.shape[-2:]))(skip)
            x = block(torch.cat([x, skip], dim=1))
            if self.attention is not None:
                x = self.attention[level](x)
            outputs.append(x)
        return outputs


class HypercolumnHead(nn.Module):
    """A 1x1 convolution over every decoder level's output, each upsampled
    bilinearly to the finest level's size and all joined.

    Upsampling and a 1x1 convolution are both linear, so each coarse level is
    convolved first, at its own size, and only its few output channels are
    upsampled: the same function at a fraction of the cost of upsampling
    every channel (which doubled a training step on a CPU).
    """

    def __init__(self, channels, nbClasses):
        super().__init__()
        self.finest = nn.Conv2d(channels[-1], nbClasses, 1)
        self.coarser = nn.ModuleList(nn.Conv2d(c, nbClasses, 1, bias=False)
                                     for c in channels[:-1])

    def forward(self, outputs):
        out = self.finest(outputs[-1])
        for conv, level in zip(self.coarser, outputs[:-1]):
            out = out + F.interpolate(conv(level), size=out.shape[-2:], mode="bilinear",
                                      align_corners=False)
        return out


def gate_by_image(pixel_logits, image_logits):
    """Logits of sigmoid(pixel) * sigmoid(image): a pixel is salt when the
    image holds salt and the pixel is salt given that it does.

    With a = pixel and b = image, p / (1 - p) = 1 / (e^-a + e^-b + e^-(a+b)),
    so the logit is one log-sum-exp: finite for any finite logits, and exported
    to ONNX as one stable operator (log(sigmoid) and expm1 are not).
    """
    pixel = pixel_logits.float()
    image = image_logits.float()[..., None, None].expand_as(pixel)
    return -torch.logsumexp(torch.stack([-pixel, -image, -(pixel + image)]), 0)


def log_sigmoid(logits):
    """log(sigmoid(x)) written so that ONNX export keeps it finite: the
    exporter turns F.logsigmoid into log(sigmoid(x)), which onnxruntime makes
    -inf already at x = -50, but softplus into a stable operator."""
    return -F.softplus(-logits)


class Ensemble(nn.Module):
    """Several trained networks as one: the logits of their mean probability.

    The mean is taken in log space (log of a sum of exponentials), so members
    that are sure of a pixel (a logit of 20, whose float32 sigmoid is exactly
    1) still give a finite logit.
    """

    def __init__(self, members):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x):
        logits = torch.stack([member(x).float() for member in self.members])
        if logits.shape[2] == 1:
            # log of the summed salt and not-salt probabilities: the count they
            # would each be divided by cancels in the logit
            return (torch.logsumexp(log_sigmoid(logits), 0)
                    - torch.logsumexp(log_sigmoid(-logits), 0))
        return torch.logsumexp(F.log_softmax(logits, dim=2), 0) - math.log(len(self.members))


def tutorial_output_side(side, levels):
    """Side of the tutorial variant's map before stretching, or 0 if the input is too small."""
    for _ in range(levels - 1):
        side = (side - 4) // 2
    side -= 4
    for _ in range(levels - 1):
        side = side * 2 - 4
    return max(side, 0)


class UNet(nn.Module):
    def __init__(self, encChannels=(3, 16, 32, 64), decChannels=(64, 32, 16),
                 nbClasses=1, retainDim=True, outSize=(128, 128), variant="aligned",
                 batchNorm=False, attention=False, hypercolumn=False, imageGate=False,
                 residual=False, dropout=0.0):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown U-Net variant {variant!r}; use one of {VARIANTS}")
        if imageGate and nbClasses != 1:
            raise ValueError("imageGate is for one class (salt or not); several classes "
                             "share each pixel's probability among themselves")
        if len(decChannels) != len(encChannels) - 1 or decChannels[0] != encChannels[-1]:
            raise ValueError(f"decChannels {tuple(decChannels)} must start with the deepest "
                             f"width of encChannels {tuple(encChannels)} and have one width "
                             f"per level after it")
        if residual and variant == "tutorial":
            raise ValueError("residual blocks add each block's input to its output, which "
                             "the tutorial variant's unpadded convolutions make smaller; "
                             "use the aligned variant")
        padding = 1 if variant == "aligned" else 0
        self.encoder = Encoder(encChannels, padding, batchNorm, residual)
        self.decoder = Decoder(decChannels, padding, batchNorm, attention, residual,
                               skipChannels=encChannels[-2:0:-1])
        self.head = (HypercolumnHead(decChannels[1:], nbClasses) if hypercolumn
                     else nn.Conv2d(decChannels[-1], nbClasses, 1))
        self.hypercolumn = hypercolumn
        self.dropout = dropout
        self.image_head = nn.Linear(encChannels[-1], 1) if imageGate else None
        self.retainDim = retainDim
        self.outSize = tuple(outSize)
        self.variant = variant
        self.levels = len(encChannels) - 1

    def forward(self, x, parts=False):
        """The logits of every pixel; with ``parts`` and the image gate, also
        those it combines: (gated, pixel, image), for a loss on each."""
        height, width = x.shape[-2:]
        if self.variant == "tutorial":
            if min(tutorial_output_side(height, self.levels),
                   tutorial_output_side(width, self.levels)) == 0:
                raise ValueError(f"a {width}x{height} input is too small for the tutorial "
                                 f"U-Net with {self.levels} levels (its unpadded convolutions "
                                 f"shrink it to nothing); use fewer levels or larger inputs")
        else:
            # every level but the last halves the size: pad to a multiple so
            # the skip connections line up exactly. Even padding keeps a
            # horizontally flipped image's padding (nearly) where it was.
            multiple = 2 ** (self.levels - 1)
            pad_h, pad_w = -height % multiple, -width % multiple
            top, left = pad_h // 2, pad_w // 2
            # reflection needs the image to be larger than the padding
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            if pad_h or pad_w:
                x = F.pad(x, (left, pad_w - left, top, pad_h - top), mode=mode)
        features = self.encoder(x)
        outputs = self.decoder.level_outputs(features[-1], features[-2::-1])
        if self.training and self.dropout:
            # whole channels, not pixels: a pixel dropped alone is guessed from
            # its neighbours. Only before the last convolution, which no batch
            # norm follows, so the maps' statistics stay those it was trained on.
            outputs = [F.dropout2d(level, self.dropout) for level in outputs]
        pixel = self.head(outputs if self.hypercolumn else outputs[-1])
        if self.variant != "tutorial":
            pixel = pixel[..., top:top + height, left:left + width]
        if self.retainDim and tuple(pixel.shape[-2:]) != self.outSize:
            pixel = F.interpolate(pixel, self.outSize)
        if self.image_head is None:
            return pixel
        image = self.image_head(features[-1].mean(dim=(-2, -1)))
        gated = gate_by_image(pixel, image)
        return (gated, pixel, image[:, 0]) if parts else gated


def unet_arguments(num_channels=1, num_classes=1, num_levels=3, base_filters=16,
                   size=(128, 128), variant="aligned", batch_norm=False, bottleneck_filters=0,
                   attention=False, hypercolumn=False, image_gate=False, residual=False,
                   decoder_width=1.0, dropout=0.0):
    """The UNet constructor arguments for a configuration; stored with the model.

    ``decoder_width`` scales each decoder level's width from the encoder's at
    that level (at least 1 channel); the deepest level is the decoder's input.
    """
    widths = [base_filters * 2 ** level for level in range(num_levels)]
    if bottleneck_filters:
        widths[-1] = bottleneck_filters
    decoder = [widths[-1]] + [max(1, round(width * decoder_width)) for width in widths[-2::-1]]
    return {"encChannels": [num_channels, *widths], "decChannels": decoder,
            "nbClasses": num_classes, "retainDim": True, "outSize": list(size),
            "variant": variant, "batchNorm": batch_norm, "attention": attention,
            "hypercolumn": hypercolumn, "imageGate": image_gate, "residual": residual,
            "dropout": dropout}


def arguments_from_settings(settings):
    return unet_arguments(settings.NUM_CHANNELS, settings.NUM_CLASSES, settings.NUM_LEVELS,
                          settings.BASE_FILTERS,
                          (settings.INPUT_IMAGE_HEIGHT, settings.INPUT_IMAGE_WIDTH),
                          settings.MODEL_VARIANT, settings.BATCH_NORM,
                          settings.BOTTLENECK_FILTERS, settings.DECODER_ATTENTION,
                          settings.HYPERCOLUMN, settings.IMAGE_GATE, settings.RESIDUAL_BLOCKS,
                          settings.DECODER_WIDTH, settings.DROPOUT)
