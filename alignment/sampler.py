"""The epoch sampler of alignment training (triplets or clips), shared out over processes."""
import math

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler):
    """A fresh permutation every epoch (seeded), optionally cut to ``limit`` items, split across ranks
    in equal shares (wrapping around) so every process runs the same number of steps."""

    def __init__(self, size: int, seed: int, rank: int = 0, world: int = 1, limit: int = 0):
        self.size, self.seed, self.rank, self.world = size, seed, rank, world
        self.total = min(limit, size) if limit else size
        self.per_rank = math.ceil(self.total / world)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        order = torch.randperm(self.size, generator=generator)[:self.total].tolist()
        order += order[:self.per_rank * self.world - len(order)]
        return iter(order[self.rank::self.world])

    def __len__(self) -> int:
        return self.per_rank
