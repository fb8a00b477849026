"""The output folder of a run: checkpoints, TensorBoard scalars and a results JSON, under names
each task takes from its anchor (timm, the release, TimeSformer; see the README's table)."""
import os
from dataclasses import dataclass
from typing import Any

from .files import hold_output_dir, prepare_output_dir, write_json_atomic


@dataclass(frozen=True)
class OutputLayout:
    """``root/`` holds the run; ``checkpoints`` and ``tensorboard`` are subfolders of it ('' = the
    root itself) and ``results`` the name of the results JSON."""

    root: str
    checkpoints: str = ""
    tensorboard: str = ""
    results: str = "results.json"

    @property
    def checkpoint_dir(self) -> str:
        return os.path.join(self.root, self.checkpoints) if self.checkpoints else self.root

    @property
    def tensorboard_dir(self) -> str:
        return os.path.join(self.root, self.tensorboard) if self.tensorboard else self.root

    @property
    def results_path(self) -> str:
        return os.path.join(self.root, self.results)

    def checkpoint(self, name: str) -> str:
        """The path of checkpoint file ``name``."""
        return os.path.join(self.checkpoint_dir, name)

    def prepare(self) -> "OutputLayout":
        """Create the run's folder and its checkpoint folder (one-line error when they cannot be
        written), hold the folder for this process (another live run there is a one-line error) and
        remove what interrupted atomic writes left there. Called on rank 0."""
        prepare_output_dir(self.root)
        hold_output_dir(self.root)
        if self.checkpoints:
            prepare_output_dir(self.checkpoint_dir)
        return self

    def tensorboard_writer(self):
        """A TensorBoard writer for the run (imported here: the import is slow)."""
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(log_dir=self.tensorboard_dir)

    def write_results(self, results: Any) -> str:
        """Write the results JSON atomically; returns its path."""
        write_json_atomic(results, self.results_path)
        return self.results_path
