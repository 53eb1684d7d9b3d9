import math

import pytest
import torch
import torch.nn.functional as F

from pyimagesearch.model import (Block, Decoder, Encoder, Ensemble, HypercolumnHead,
                                 ResidualBlock, UNet, gate_by_image, unet_arguments)


def build(variant, levels=3, channels=1, size=(128, 128), classes=1):
    return UNet(**unet_arguments(channels, classes, levels, 8, size, variant)).eval()


@pytest.mark.parametrize("variant", ["aligned", "tutorial"])
@pytest.mark.parametrize("levels", [2, 3, 4])
@pytest.mark.parametrize("size", [(128, 128), (101, 101), (96, 160)])
def test_output_has_the_configured_size(variant, levels, size):
    if variant == "tutorial" and levels == 4 and min(size) < 128:
        pytest.skip("too small for 4 unpadded levels (tested below)")
    model = build(variant, levels, size=size)
    with torch.no_grad():
        out = model(torch.rand(2, 1, *size))
    assert out.shape == (2, 1, *size)


@pytest.mark.parametrize("channels, classes", [(1, 1), (3, 1), (3, 2)])
def test_channels_in_and_classes_out(channels, classes):
    model = build("aligned", channels=channels, classes=classes, size=(64, 64))
    with torch.no_grad():
        assert model(torch.rand(1, channels, 64, 64)).shape == (1, classes, 64, 64)


def test_num_levels_sets_the_depth():
    assert len(build("aligned", levels=5).encoder.encBlocks) == 5
    assert len(build("aligned", levels=5).decoder.dec_blocks) == 4


def test_aligned_output_follows_a_shift_of_the_input():
    # output pixel i must label input pixel i: shifting the input by a multiple
    # of the pooling stride shifts the output by the same amount, wherever the
    # receptive field (about 30 pixels here) stays clear of the image's sides
    torch.manual_seed(0)
    model = build("aligned", levels=3, size=(128, 128))
    image = torch.rand(1, 1, 128, 128)
    shifted = torch.roll(image, shifts=8, dims=-1)
    with torch.no_grad():
        out, out_shifted = model(image), model(shifted)
    assert torch.allclose(out[..., 40:80], out_shifted[..., 48:88], atol=1e-5)
    assert not torch.allclose(out[..., 40:80], out_shifted[..., 40:80], atol=1e-3)


def test_tutorial_output_is_stretched_from_a_smaller_map():
    model = build("tutorial", size=(128, 128))
    model.retainDim = False
    with torch.no_grad():
        assert model(torch.rand(1, 1, 128, 128)).shape == (1, 1, 88, 88)


def test_tutorial_variant_refuses_inputs_too_small_for_its_depth():
    model = build("tutorial", levels=4, size=(64, 64))
    with pytest.raises(ValueError, match="too small"):
        model(torch.rand(1, 1, 64, 64))


def test_parts_keep_the_tutorial_interfaces():
    block = Block(3, 16)
    assert block(torch.rand(1, 3, 20, 20)).shape == (1, 16, 16, 16)
    features = Encoder((3, 16, 32))(torch.rand(1, 3, 64, 64))
    assert [f.shape[1] for f in features] == [16, 32]
    out = Decoder((32, 16))(features[-1], features[-2::-1])
    assert out.shape[1] == 16


def test_the_default_decoder_mirrors_the_encoder_as_older_model_files_do():
    arguments = unet_arguments(1, 1, 4, 8, (64, 64), bottleneck_filters=96)
    assert arguments["encChannels"] == [1, 8, 16, 32, 96]
    assert arguments["decChannels"] == [96, 32, 16, 8]


@pytest.mark.parametrize("variant", ["aligned", "tutorial"])
def test_a_narrower_decoder_joins_the_full_width_encoder_maps(variant):
    arguments = unet_arguments(1, 1, 3, 8, (128, 128), variant, batch_norm=True,
                               decoder_width=0.5, attention=True, hypercolumn=True,
                               image_gate=True, residual=variant == "aligned")
    # the deepest level (32) is the decoder's input; its levels are half the
    # encoder's (16 and 8) and each joins the encoder's map of its level
    assert arguments["decChannels"] == [32, 8, 4]
    model = UNet(**arguments).eval()
    blocks = model.decoder.dec_blocks
    assert [block.conv1.in_channels for block in blocks] == [8 + 16, 4 + 8]
    assert [block.conv2.out_channels for block in blocks] == [8, 4]
    full = UNet(**unet_arguments(1, 1, 3, 8, (128, 128), variant, batch_norm=True))
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in full.parameters())
    with torch.no_grad():
        gated, pixel, image = model(torch.rand(2, 1, 128, 128), parts=True)
    assert gated.shape == pixel.shape == (2, 1, 128, 128) and image.shape == (2,)


def test_dropout_zeroes_whole_channels_before_the_head_in_training_only():
    torch.manual_seed(0)
    arguments = unet_arguments(1, 1, 3, 8, (32, 32), batch_norm=True, residual=True)
    plain = UNet(**arguments)
    dropped = UNet(**{**arguments, "dropout": 0.5})
    dropped.load_state_dict(plain.state_dict())
    seen = {}
    for name, model in (("plain", plain), ("dropped", dropped)):
        model.head.register_forward_pre_hook(
            lambda module, inputs, name=name: seen.__setitem__(name, inputs[0]))
    x = torch.rand(4, 1, 32, 32)
    plain(x)
    dropped(x)
    # each (image, channel) map is either zeroed whole or scaled by 1 / (1 - p)
    kept = seen["dropped"].abs().amax(dim=(-2, -1)) > 0
    assert 0 < kept.float().mean() < 1
    expected = seen["plain"] * kept[..., None, None] / 0.5
    assert torch.allclose(seen["dropped"], expected, atol=1e-6)
    plain.eval()
    dropped.eval()
    with torch.no_grad():
        assert torch.equal(plain(x), dropped(x))


def test_a_decoder_width_rounds_but_keeps_a_channel():
    assert unet_arguments(1, 1, 3, 3, (32, 32), decoder_width=0.1)["decChannels"] == [12, 1, 1]


def test_mismatched_channel_lists_are_refused():
    with pytest.raises(ValueError, match="deepest width"):
        UNet(encChannels=(1, 16, 32), decChannels=(64, 32))
    with pytest.raises(ValueError, match="one width per level"):
        UNet(encChannels=(1, 16, 32), decChannels=(32, 16, 8))


@pytest.mark.parametrize("levels", [3, 5])
@pytest.mark.parametrize("size", [(101, 101), (64, 80)])
def test_batch_norm_network_keeps_the_size(levels, size):
    model = UNet(**unet_arguments(1, 1, levels, 4, size, "aligned", batch_norm=True))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    out = model(torch.rand(2, 1, *size))
    assert out.shape == (2, 1, *size)


def test_without_batch_norm_the_block_is_the_tutorials():
    names = set(Block(1, 4).state_dict())
    assert names == {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"}


def test_padded_input_is_cropped_back_at_the_same_pixels():
    # a 101-wide input at 3 levels is padded by 3 columns, 1 left and 2 right;
    # the output must be the network's answer for exactly the original
    # columns, as if the padded image had been given and cropped by hand
    torch.manual_seed(0)
    model = build("aligned", levels=3, size=(40, 101))
    model.retainDim = False
    image = torch.rand(1, 1, 40, 101)
    padded = torch.nn.functional.pad(image, (1, 2, 0, 0), mode="reflect")
    with torch.no_grad():
        out, by_hand = model(image), model(padded)[..., 1:102]
    assert out.shape == (1, 1, 40, 101)
    assert torch.allclose(out, by_hand, atol=1e-6)


@pytest.mark.parametrize("variant", ["aligned", "tutorial"])
@pytest.mark.parametrize("bottleneck", [16, 96])
def test_bottleneck_filters_widen_only_the_deepest_level(variant, bottleneck):
    arguments = unet_arguments(1, 1, 4, 8, (128, 128), variant, bottleneck_filters=bottleneck)
    assert arguments["encChannels"] == [1, 8, 16, 32, bottleneck]
    model = UNet(**arguments)
    assert model.decoder.upconvs[0].in_channels == bottleneck
    with torch.no_grad():
        assert model(torch.rand(2, 1, 128, 128)).shape == (2, 1, 128, 128)


@pytest.mark.parametrize("option", ["attention", "hypercolumn", "image_gate", "residual"])
@pytest.mark.parametrize("size", [(101, 101), (64, 80)])
def test_each_option_keeps_the_output_aligned(option, size):
    torch.manual_seed(0)
    model = UNet(**unet_arguments(1, 1, 4, 8, size, batch_norm=True, **{option: True})).eval()
    plain = UNet(**unet_arguments(1, 1, 4, 8, size, batch_norm=True)).eval()
    x = torch.rand(2, 1, *size)
    with torch.no_grad():
        assert model(x).shape == plain(x).shape == (2, 1, *size)
    assert sum(p.numel() for p in model.parameters()) > sum(p.numel() for p in plain.parameters())


@pytest.mark.parametrize("batch_norm", [False, True])
def test_a_residual_block_adds_its_input_back_before_the_last_relu(batch_norm):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 9, 9)
    same = ResidualBlock(4, 4, batch_norm).eval()
    with torch.no_grad():
        body = same.norm2(same.conv2(same.relu(same.norm1(same.conv1(x)))))
        assert torch.equal(same(x), torch.relu(body + x))
        # silenced convolutions leave the input itself, through the ReLU
        for conv in (same.conv1, same.conv2):
            conv.weight.zero_()
            if conv.bias is not None:
                conv.bias.zero_()
        assert torch.equal(same(x), torch.relu(x))
    # a change of width goes through a learnt 1x1 projection
    wider = ResidualBlock(4, 8, batch_norm).eval()
    assert wider.shortcut[0].kernel_size == (1, 1) and wider(x).shape == (2, 8, 9, 9)


def test_residual_blocks_are_refused_for_the_unpadded_tutorial_variant():
    with pytest.raises(ValueError, match="aligned variant"):
        UNet(**unet_arguments(1, 1, 3, 8, (128, 128), "tutorial", residual=True))


def test_the_image_gate_multiplies_the_two_probabilities():
    # worked by hand: sigmoid(0) * sigmoid(0) = 1/4, whose logit is log(1/3);
    # sigmoid(log 3) = 3/4, so with an image at sigmoid(0) = 1/2: 3/8, logit log(3/5);
    # both at log 3: 9/16, logit log(9/7)
    log3 = math.log(3)
    gated = gate_by_image(torch.tensor([[[[0.0, log3]]]]), torch.tensor([[0.0]]))
    assert gated.flatten().tolist() == pytest.approx([math.log(1 / 3), math.log(3 / 5)],
                                                     abs=1e-6)
    both = gate_by_image(torch.tensor([[[[log3]]]]), torch.tensor([[log3]]))
    assert both.item() == pytest.approx(math.log(9 / 7), abs=1e-5)
    # an image the gate is sure holds nothing has no pixel above its own chance
    closed = torch.sigmoid(gate_by_image(torch.full((1, 1, 4, 4), 30.0), torch.tensor([[-6.0]])))
    assert closed.max().item() <= torch.sigmoid(torch.tensor(-6.0)).item() + 1e-6
    # sure pixels stay finite and exact: both at 200 give the odds
    # 1 / (2e^-200 + e^-400), logit 200 - log 2; a pixel at -200 in an even image
    # 1 / (e^200 + 1 + e^200), logit -200 - log 2
    sure = gate_by_image(torch.tensor([[[[200.0, -200.0]]]]), torch.tensor([[200.0]]))
    assert sure.flatten().tolist() == pytest.approx([200 - math.log(2), -200.0], abs=1e-4)
    even = gate_by_image(torch.tensor([[[[-200.0]]]]), torch.tensor([[0.0]]))
    assert even.item() == pytest.approx(-200 - math.log(2), abs=1e-4)


def test_the_parts_of_a_gated_network_combine_into_its_output():
    torch.manual_seed(0)
    model = UNet(**unet_arguments(1, 1, 3, 4, (45, 45), image_gate=True)).eval()
    x = torch.rand(3, 1, 45, 45)
    with torch.no_grad():
        gated, pixel, image = model(x, parts=True)
        assert torch.equal(gated, model(x))
    assert pixel.shape == (3, 1, 45, 45) and image.shape == (3,)
    assert torch.allclose(gated, gate_by_image(pixel, image[:, None]))


def test_the_image_gate_is_for_one_class():
    with pytest.raises(ValueError, match="one class"):
        UNet(**unet_arguments(1, 3, 3, 8, (32, 32), image_gate=True))


def test_the_hypercolumn_head_is_a_1x1_convolution_over_the_joined_levels():
    torch.manual_seed(0)
    head = HypercolumnHead([32, 16, 8], 1)
    levels = [torch.rand(2, 32, 7, 7), torch.rand(2, 16, 14, 14), torch.rand(2, 8, 28, 28)]
    joined = torch.cat([F.interpolate(level, size=(28, 28), mode="bilinear",
                                      align_corners=False) for level in levels], dim=1)
    conv = torch.nn.Conv2d(56, 1, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.cat([c.weight for c in (*head.coarser, head.finest)], dim=1))
        conv.bias.copy_(head.finest.bias)
        assert torch.allclose(head(levels), conv(joined), atol=1e-5)


class _Fixed(torch.nn.Module):
    """A stand-in network whose logits are fixed."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits)

    def forward(self, x):
        return self.logits.expand(len(x), -1, 2, 2)


def test_an_ensemble_predicts_its_members_mean_probability():
    # salt probabilities 0.5 and 0.75: the mean 0.625 is odds 5:3
    ensemble = Ensemble([_Fixed([[[0.0]]]), _Fixed([[[math.log(3)]]])])
    logits = ensemble(torch.zeros(2, 1, 2, 2))
    assert logits.shape == (2, 1, 2, 2)
    assert torch.allclose(logits, torch.full_like(logits, math.log(5 / 3)))


def test_an_ensemble_of_sure_members_keeps_finite_logits():
    # the float32 sigmoid of 40 is exactly 1; the mean with that of -40 is 1/2
    split = Ensemble([_Fixed([[[40.0]]]), _Fixed([[[-40.0]]])])(torch.zeros(1, 1, 2, 2))
    agreed = Ensemble([_Fixed([[[100.0]]]), _Fixed([[[100.0]]])])(torch.zeros(1, 1, 2, 2))
    assert torch.allclose(split, torch.zeros(1, 1, 2, 2), atol=1e-6)
    assert torch.allclose(agreed, torch.full((1, 1, 2, 2), 100.0))


def test_an_ensemble_of_several_classes_averages_their_probabilities():
    first, second = [[[1.0]], [[0.0]], [[-2.0]]], [[[0.0]], [[3.0]], [[0.5]]]
    logits = Ensemble([_Fixed(first), _Fixed(second)])(torch.zeros(1, 3, 2, 2))
    expected = (torch.tensor(first).softmax(0) + torch.tensor(second).softmax(0)) / 2
    assert torch.allclose(logits.softmax(1)[0], expected.expand(3, 2, 2))
