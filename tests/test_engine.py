import os
import subprocess
import sys

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from pyimagesearch import engine, hardware
from pyimagesearch.engine import (TrainingDiverged, equal_average, evaluate, predict_logits,
                                  train_one_epoch, weight_average)
from pyimagesearch.losses import CombinedLoss, DeepSupervisionLoss
from pyimagesearch.model import UNet, unet_arguments

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def data():
    torch.manual_seed(0)
    images = torch.rand(7, 1, 32, 32)
    masks = (torch.rand(7, 1, 32, 32) > 0.6).float()
    return TensorDataset(images, masks)


def model():
    torch.manual_seed(1)
    return UNet(**unet_arguments(1, 1, 2, 4, (32, 32), "aligned"))


def full_batch_loss(net, data):
    images, masks = data.tensors
    with torch.no_grad():
        return torch.nn.BCEWithLogitsLoss()(net.eval()(images), masks).item()


def test_epoch_loss_is_the_mean_over_images_with_a_short_last_batch(data):
    # 7 images in batches of 3: 3 + 3 + 1. Averaging the batch means would
    # give the single last image the weight of three.
    net = model()
    expected = full_batch_loss(net, data)
    frozen = torch.optim.SGD(net.parameters(), lr=0.0)
    loss = train_one_epoch(net, DataLoader(data, batch_size=3), torch.nn.BCEWithLogitsLoss(),
                           frozen, "cpu", description=None)
    assert loss == pytest.approx(expected, rel=1e-5)
    totals = evaluate(net, DataLoader(data, batch_size=3), torch.nn.BCEWithLogitsLoss(), "cpu",
                      0.5, description=None)
    assert totals.count == 7
    assert totals.means()["loss"] == pytest.approx(expected, rel=1e-5)


def test_deep_supervision_trains_on_every_part_of_a_gated_network(data):
    torch.manual_seed(1)
    net = UNet(**unet_arguments(1, 1, 2, 4, (32, 32), image_gate=True))
    images, masks = data.tensors
    loss_fn = DeepSupervisionLoss(CombinedLoss("bce"))
    with torch.no_grad():
        expected = loss_fn(net.train()(images, parts=True), masks).item()
        gated_only = loss_fn(net(images), masks).item()
    frozen = torch.optim.SGD(net.parameters(), lr=0.0)
    loss = train_one_epoch(net, DataLoader(data, batch_size=7), loss_fn, frozen, "cpu",
                           description=None)
    assert loss == pytest.approx(expected, rel=1e-5)
    assert loss > gated_only


def test_training_lowers_the_loss(data):
    net = model()
    before = full_batch_loss(net, data)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(15):
        train_one_epoch(net, DataLoader(data, batch_size=4), torch.nn.BCEWithLogitsLoss(),
                        optimizer, "cpu", description=None)
    assert full_batch_loss(net, data) < before


def test_evaluation_results_do_not_depend_on_the_batch_size(data):
    net = model()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    one = evaluate(net, DataLoader(data, batch_size=1), loss_fn, "cpu", 0.5,
                   description=None).means()
    all_at_once = evaluate(net, DataLoader(data, batch_size=7), loss_fn, "cpu", 0.5,
                           description=None).means()
    assert one == pytest.approx(all_at_once, rel=1e-5)


def test_channels_last_computes_the_same_as_the_plain_layout(data):
    loss_fn = torch.nn.BCEWithLogitsLoss()
    plain = evaluate(model(), DataLoader(data, batch_size=4), loss_fn, "cpu", 0.5,
                     description=None).means()
    fast_model = model().to(memory_format=torch.channels_last)
    fast = evaluate(fast_model, DataLoader(data, batch_size=4), loss_fn, "cpu", 0.5,
                    channels_last=True, description=None).means()
    assert fast == pytest.approx(plain, rel=1e-4)


def test_a_loss_that_becomes_nan_stops_training(data):
    net = model()
    images, masks = data.tensors
    poisoned = TensorDataset(images.clone().fill_(float("nan")), masks)
    with pytest.raises(TrainingDiverged, match="INIT_LR"):
        train_one_epoch(net, DataLoader(poisoned, batch_size=4), torch.nn.BCEWithLogitsLoss(),
                        torch.optim.Adam(net.parameters()), "cpu", description=None)


class _Mirror(torch.nn.Module):
    """A "model" whose output is its input: any flip left undone would show."""

    def forward(self, x):
        return x * 1.0


def test_flip_tta_undoes_its_flip():
    images = torch.rand(2, 1, 5, 7)
    assert torch.equal(predict_logits(_Mirror(), images, "cpu", tta=True), images)


def test_flip_tta_averages_the_two_views(data):
    net = model().eval()
    images = data.tensors[0][:3]
    with torch.no_grad():
        expected = (net(images) + net(images.flip(-1)).flip(-1)) / 2
    assert torch.allclose(predict_logits(net, images, "cpu", tta=True), expected, atol=1e-6)
    assert not torch.allclose(expected, predict_logits(net, images, "cpu"), atol=1e-4)


def test_a_scheduler_steps_once_per_batch(data):
    net = model()
    optimizer = torch.optim.SGD(net.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (step + 1))
    train_one_epoch(net, DataLoader(data, batch_size=3), torch.nn.BCEWithLogitsLoss(),
                    optimizer, "cpu", scheduler=scheduler, description=None)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1 / 4)  # 3 batches


@pytest.mark.parametrize("loss_name", ["bce", "bce+lovasz"])
def test_micro_batches_take_the_step_of_the_whole_batch(data, loss_name):
    # 7 images in batches of 4 (4 + 3), passed in pieces of 3 (3 + 1, then 3)
    results = []
    for micro_batch in (0, 3):
        net = model()
        optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
        loss = train_one_epoch(net, DataLoader(data, batch_size=4), CombinedLoss(loss_name),
                               optimizer, "cpu", micro_batch=micro_batch, description=None)
        results.append((loss, net.state_dict()))
    (whole_loss, whole), (pieces_loss, pieces) = results
    assert pieces_loss == pytest.approx(whole_loss, rel=1e-6)
    assert all(torch.allclose(whole[name], pieces[name], atol=1e-6) for name in whole)
    assert not torch.allclose(whole["head.weight"], model().state_dict()["head.weight"])


def _one_sgd_step(data, max_grad_norm):
    net = model()
    before = torch.nn.utils.parameters_to_vector(net.parameters()).detach().clone()
    train_one_epoch(net, DataLoader(data, batch_size=7), torch.nn.BCEWithLogitsLoss(),
                    torch.optim.SGD(net.parameters(), lr=0.1), "cpu",
                    max_grad_norm=max_grad_norm, description=None)
    return torch.nn.utils.parameters_to_vector(net.parameters()).detach() - before


def test_clipping_limits_the_norm_of_a_step_and_keeps_its_direction(data):
    free = _one_sgd_step(data, 0)
    # SGD moves the weights by lr * gradient: the step's norm is 0.1 * the
    # gradient's, so a clip at 1/10 of that norm makes the step 10 times shorter
    gradient_norm = free.norm().item() / 0.1
    clipped = _one_sgd_step(data, gradient_norm / 10)
    assert clipped.norm().item() == pytest.approx(free.norm().item() / 10, rel=1e-4)
    assert torch.allclose(clipped * 10, free, atol=1e-6)
    assert torch.allclose(_one_sgd_step(data, gradient_norm * 2), free)


# (decay, the decays of the second and third steps): min(decay, (1 + n) / (10 + n))
# after n updates, 2/11 and 3/12 when the decay is larger than that
@pytest.mark.parametrize("decay, decays", [(0.99, (2 / 11, 3 / 12)), (0.1, (0.1, 0.1))])
def test_the_weight_average_follows_every_step_with_its_decay(data, decay, decays):
    # the average starts as the weights after the first step; batch-norm
    # running statistics are averaged alike
    torch.manual_seed(1)
    net = UNet(**unet_arguments(1, 1, 2, 4, (32, 32), "aligned", True))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    after_each_step = []
    optimizer.register_step_post_hook(lambda *_: after_each_step.append(
        {name: value.detach().clone() for name, value in net.state_dict().items()}))
    average = weight_average(net, decay)
    train_one_epoch(net, DataLoader(data, batch_size=3), torch.nn.BCEWithLogitsLoss(),
                    optimizer, "cpu", average=average, description=None)
    assert len(after_each_step) == 3
    first, second, third = after_each_step
    averaged = average.module.state_dict()
    for name in ("encoder.encBlocks.0.conv1.weight", "encoder.encBlocks.0.norm1.running_mean"):
        expected = first[name]
        for step_decay, weights in zip(decays, (second[name], third[name])):
            expected = step_decay * expected + (1 - step_decay) * weights
        assert torch.allclose(averaged[name], expected, atol=1e-6)
        assert not torch.allclose(averaged[name], third[name], atol=1e-4)


def test_the_equal_average_is_the_mean_of_the_weights_it_was_given(data):
    torch.manual_seed(1)
    net = UNet(**unet_arguments(1, 1, 2, 4, (32, 32), "aligned", True))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    average = equal_average(net)
    seen = []
    for _ in range(3):
        train_one_epoch(net, DataLoader(data, batch_size=3), torch.nn.BCEWithLogitsLoss(),
                        optimizer, "cpu", description=None)
        average.update_parameters(net)
        seen.append({name: value.detach().clone() for name, value in net.state_dict().items()})
    averaged = average.module.state_dict()
    for name in ("encoder.encBlocks.0.conv1.weight", "encoder.encBlocks.0.norm1.running_var"):
        expected = (seen[0][name] + seen[1][name] + seen[2][name]) / 3
        assert torch.allclose(averaged[name], expected, atol=1e-6)
        assert not torch.allclose(averaged[name], seen[2][name], atol=1e-4)


def test_no_decay_means_no_average():
    assert weight_average(model(), 0) is None


FAULT_COUNTER = """
import resource, sys
import torch
from pyimagesearch.engine import reuse_freed_memory
from pyimagesearch.model import UNet, unet_arguments
if sys.argv[1] == "reuse" and not reuse_freed_memory():
    sys.exit(3)
torch.manual_seed(0)
model = UNet(**unet_arguments(1, 1, 3, 8, (64, 64), "aligned", True))
images = torch.rand(16, 1, 64, 64)
model(images).mean().backward()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    model(images).mean().backward()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults_of_training_steps(mode):
    result = subprocess.run([sys.executable, "-c", FAULT_COUNTER, mode], capture_output=True,
                            text=True, cwd=PROJECT, env=dict(os.environ, OMP_NUM_THREADS="1"))
    if result.returncode == 3:
        pytest.skip("the C library is not glibc")
    assert result.returncode == 0, result.stderr[-2000:]
    return int(result.stdout.split()[-1])


def test_reusing_freed_memory_spares_the_page_faults_of_each_step():
    # measured: about 7x fewer (45,000 against 6,300 page faults in five steps)
    plain = _page_faults_of_training_steps("plain")
    reused = _page_faults_of_training_steps("reuse")
    assert reused < plain / 3


@pytest.mark.parametrize("native, expected", [(False, None), (True, torch.bfloat16)])
def test_auto_precision_on_a_cpu_follows_its_bf16_hardware(monkeypatch, native, expected):
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: native)
    assert engine.autocast_dtype("cpu", "auto") is expected
    assert engine.autocast_dtype("cpu", "fp32") is None  # a precision given is kept
    assert engine.autocast_dtype("cpu", "bf16") is torch.bfloat16
    assert ("bf16 units:" in engine.choose_precision("cpu", "auto")[1]) is native
