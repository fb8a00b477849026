"""Seeding: one seed per process, and one per (seed, rank, epoch) so a resumed run repeats the epochs
of the uninterrupted one."""
import os
import random

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices); optionally ask torch for deterministic kernels."""
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def epoch_seed(seed: int, rank: int, epoch: int) -> int:
    """A 32-bit seed that depends only on ``(seed, rank, epoch)``."""
    return int(np.random.SeedSequence([seed, rank, epoch]).generate_state(1)[0])
