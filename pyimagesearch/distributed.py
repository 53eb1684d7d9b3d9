"""Running under torchrun: one process per GPU (or CPU slot), kept in step by
DistributedDataParallel. Without torchrun everything here is a no-op, so
`python train.py` runs exactly as a single process.
"""
import dataclasses
import datetime
import os

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, Subset

from pyimagesearch.dataset import DataError


class LaunchError(RuntimeError):
    """torchrun started processes this machine cannot serve; the message says
    what to change."""


@dataclasses.dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self):
        """Only the main process writes files and shows progress."""
        return self.rank == 0

    @property
    def distributed(self):
        return self.world_size > 1


def launched_by_torchrun():
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device_name):
    """Join the process group torchrun describes; each rank gets its own GPU."""
    device = torch.device(device_name)
    if not launched_by_torchrun():
        return Context(device=device)
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        _check_enough_gpus()
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    # NCCL for GPUs; Gloo runs anywhere, including CPU-only machines
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=10))
    return Context(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device)


def _check_enough_gpus():
    # every rank checks before joining the group, so all of them stop at once
    # instead of the ranks without a GPU failing while the others wait for them
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
    gpus = torch.cuda.device_count()
    if processes > gpus:
        fix = (f"use --nproc_per_node {gpus}, or give --device cpu to train in CPU processes"
               if gpus else "give --device cpu to train in CPU processes")
        raise LaunchError(f"torchrun started {processes} processes on this machine but "
                          f"{gpus} GPU(s) are visible, and each process needs its own: {fix}")


def teardown(context):
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(context):
    if context.distributed:
        dist.barrier()


def _all_reduce(tensor, context, op):
    # NCCL takes only tensors on the process's GPU, Gloo CPU tensors: every
    # collective gets its tensor on the context's device
    tensor = tensor.to(context.device)
    if context.distributed:
        dist.all_reduce(tensor, op=op)
    return tensor


def all_reduce_sum(tensor, context):
    """The sum of ``tensor`` over every process, on the context's device."""
    return _all_reduce(tensor, context, dist.ReduceOp.SUM)


def all_reduce_max(tensor, context):
    """The largest value of ``tensor`` over every process, on the context's device."""
    return _all_reduce(tensor, context, dist.ReduceOp.MAX)


def shard(indices, context):
    """This rank's share of ``indices``: every world_size-th, starting at its rank.

    Unlike DistributedSampler, nothing is repeated to even out the shares, so
    a metric summed over the shards counts each validation image exactly once.
    """
    return list(indices)[context.rank::context.world_size]


def make_loaders(train_set, test_set, batch_size, context, *, seed, eval_batch_size,
                 num_workers=0, pin_memory=False):
    """The training loader (shuffled each epoch) and the validation loader.

    ``batch_size`` is the global batch: under torchrun each process takes
    batch_size / world_size images of it, and its own share of the
    validation images, ``eval_batch_size`` at a time.
    """
    if batch_size % context.world_size:
        raise DataError(f"BATCH_SIZE {batch_size} is the global batch and must be "
                        f"a multiple of the {context.world_size} processes")
    options = {"num_workers": num_workers, "pin_memory": pin_memory}
    batch_size //= context.world_size
    if context.distributed:
        sampler = DistributedSampler(train_set, context.world_size, context.rank, shuffle=True,
                                     seed=seed)
        train_loader = DataLoader(train_set, batch_size=batch_size, sampler=sampler, **options)
        test_set = Subset(test_set, shard(range(len(test_set)), context))
    else:
        generator = torch.Generator().manual_seed(seed)
        train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True,
                                  generator=generator, **options)
    test_loader = DataLoader(test_set, batch_size=eval_batch_size, **options)
    return train_loader, test_loader


def check_same_network(arguments, context):
    """Refuse to train when the processes would build different networks
    (other settings on one machine, or a preset that adapts to each machine's
    CPU): DistributedDataParallel would stop at it from deep inside."""
    if not context.distributed:
        return
    everyone = [None] * context.world_size
    dist.all_gather_object(everyone, arguments)
    for rank, theirs in enumerate(everyone):
        differences = [f"{key} {everyone[0].get(key)} on process 0, {theirs.get(key)} on "
                       f"process {rank}" for key in sorted(set(everyone[0]) | set(theirs))
                       if everyone[0].get(key) != theirs.get(key)]
        if differences:
            raise LaunchError(f"the processes would build different networks: "
                              f"{'; '.join(differences)}. Give every machine the same "
                              f"settings (with --preset salt on CPUs of different kinds, "
                              f"give --base-filters)")


def wrap_model(model, context, sync_batchnorm):
    if not context.distributed:
        return model
    # PyTorch's SyncBatchNorm runs on GPUs only; on CPUs each process
    # normalises its own share of the batch
    if sync_batchnorm and context.device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def share_buffers(model, context):
    """Give every rank the first rank's buffers (batch-norm running statistics).

    Without synchronised batch norm each rank's running statistics follow its
    own share of the data; the first rank's are the ones saved, so evaluating
    with them on every rank keeps the metrics those of the saved model.
    """
    if context.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def replicas_identical(model, context):
    """True when every rank holds the same weights (a check after training)."""
    if not context.distributed:
        return True
    flat = torch.cat([p.detach().double().flatten() for p in model.parameters()])
    fingerprint = torch.stack([flat.sum(), (flat * flat).sum(),
                               (flat * torch.arange(len(flat), dtype=torch.float64,
                                                    device=flat.device)).sum()])
    gathered = [torch.zeros_like(fingerprint) for _ in range(context.world_size)]
    dist.all_gather(gathered, fingerprint)
    return all(torch.equal(gathered[0], other) for other in gathered[1:])
