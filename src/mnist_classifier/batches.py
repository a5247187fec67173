"""Batches cut by index from in-memory tensors: what a DataLoader gives, without per-sample work."""

from collections.abc import Iterator
from typing import Any

import torch

Batch = tuple[torch.Tensor, torch.Tensor]


class TensorBatches:
    """Batches of (images, labels) cut from two tensors on their own device.

    A DataLoader fetches samples one `__getitem__` at a time and collates them, and its sampler
    makes the indices on the CPU; here one permutation per epoch is drawn on the tensors' device (a
    GPU keeps the whole data set and never copies a batch from the host). Each process of a
    data-parallel run takes its own shard of every epoch: training shards are cut to equal sizes,
    so every process steps the same number of times; evaluation shards keep every image once, so
    metrics summed across processes equal a single-process evaluation.

    Lightning saves `state_dict()` in checkpoints and gives it back on resume (its protocol for
    stateful loaders): a run resumed mid-epoch goes on with the batches that epoch had not reached,
    in the same order. `taken` counts the batches training has taken; the data module counts them,
    since Lightning fetches one batch ahead of the one it trains on.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.images, self.labels = images, labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.taken = 0  # batches of this epoch that training has taken
        self.skip = 0  # batches of the next epoch to leave out: taken before the run was resumed
        count = len(labels)
        self.shard_size = count // world_size if shuffle else len(range(rank, count, world_size))

    # The DataLoader attributes Lightning reads: it calls `loader.sampler.set_epoch(epoch)` at the
    # start of every epoch, and looks for a batch sampler when it checks evaluation for shuffling.
    batch_sampler = None

    @property
    def sampler(self) -> "TensorBatches":
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.shard_size // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        device = self.labels.device
        count = len(self.labels)
        if self.shuffle:
            # The same permutation in every process: seeded by seed and epoch, not by process.
            generator = torch.Generator(device).manual_seed(self.seed + self.epoch)
            order = torch.randperm(count, generator=generator, device=device)
            shard = order[self.rank :: self.world_size][: self.shard_size]
        else:
            shard = torch.arange(self.rank, count, self.world_size, device=device)
        batches, self.taken, self.skip = shard.split(self.batch_size)[self.skip :], self.skip, 0
        for index in batches:
            yield self.images[index], self.labels[index]

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "taken": self.taken}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = state["epoch"]
        self.skip = state["taken"] if state["taken"] < len(self) else 0
