"""Logging, progress bars and running averages on the main process only (rank 0)."""
import logging
import sys
from typing import Iterable, Optional

from tqdm import tqdm


def setup_logging(rank: int, fmt: str = "%(asctime)s %(message)s") -> None:
    """INFO on rank 0, warnings only elsewhere, to stdout."""
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, format=fmt, datefmt="%H:%M:%S",
                        stream=sys.stdout)


def progress_bar(iterable: Optional[Iterable] = None, desc: str = "", enabled: bool = True, rank: int = 0,
                 **kwargs) -> tqdm:
    """A transient tqdm bar, shown when ``enabled`` (the task's progress switch) on rank 0."""
    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True, disable=not enabled or rank != 0, **kwargs)


class AverageMeter:
    """Running sum, count and average of a scalar."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.val, self.sum, self.count = 0.0, 0.0, 0

    def update(self, val: float, n: int = 1) -> None:
        self.val = float(val)
        self.sum += float(val) * n
        self.count += n

    @property
    def avg(self) -> float:
        return self.sum / max(self.count, 1)
