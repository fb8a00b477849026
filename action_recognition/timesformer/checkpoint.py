"""Checkpoints in TimeSformer's format (``model_state``, ``optimizer_state``, ``epoch``), written atomically,
and TimeSformer's output layout."""
import glob
import re
from typing import Optional

from timm.utils import unwrap_model
from torch import nn

from threedtrl.runtime import OutputLayout, UserError, load_checkpoint_file, save_checkpoint_atomic


def output_layout(output_dir: str) -> OutputLayout:
    """TimeSformer's layout: ``checkpoints/``, ``tensorboard/`` and ``results.json`` in ``OUTPUT_DIR``
    (``stats.json`` beside them, per epoch)."""
    return OutputLayout(output_dir, checkpoints="checkpoints", tensorboard="tensorboard", results="results.json")


def checkpoint_path(output_dir: str, epoch: int) -> str:
    """``OUTPUT_DIR/checkpoints/checkpoint_epoch_00005.pyth`` for 1-based ``epoch``."""
    return output_layout(output_dir).checkpoint(f"checkpoint_epoch_{epoch:05d}.pyth")


def last_checkpoint(output_dir: str) -> Optional[str]:
    """The checkpoint with the highest epoch in ``OUTPUT_DIR/checkpoints``, if any."""
    found = glob.glob(output_layout(output_dir).checkpoint("checkpoint_epoch_*.pyth"))
    return max(found, key=lambda p: int(re.findall(r"(\d+)\.pyth$", p)[0])) if found else None


def save_checkpoint(output_dir: str, model: nn.Module, optimizer, epoch: int, cfg, history=()) -> str:
    """Save after ``epoch`` (1-based number of finished epochs), with the per-epoch ``history``."""
    path = checkpoint_path(output_dir, epoch)
    save_checkpoint_atomic({
        "epoch": epoch,
        "model_state": unwrap_model(model).state_dict(),
        "optimizer_state": optimizer.state_dict(),
        "cfg": cfg.to_dict(),
        "history": list(history),
    }, path)
    return path


def resume(path: str, model: nn.Module, optimizer) -> int:
    """Restore model and optimizer from ``path``; returns the number of finished epochs."""
    state = load_checkpoint_file(path, "TimeSformer checkpoint", keys=("model_state",))
    try:
        unwrap_model(model).load_state_dict(state["model_state"])
    except RuntimeError as err:
        raise UserError(f"{path} does not fit this model: {str(err).splitlines()[1].strip()}") from None
    if optimizer is not None and "optimizer_state" in state:
        optimizer.load_state_dict(state["optimizer_state"])
    return int(state.get("epoch", 0))
