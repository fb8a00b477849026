"""``torch.compile`` with options checked before anything starts."""
from typing import Optional

import torch

from .errors import UserError

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def check_compile_options(backend: str, mode: Optional[str] = None) -> None:
    """Reject an unknown ``torch.compile`` backend or mode in one line."""
    import torch._dynamo

    backends = torch._dynamo.list_backends(exclude_tags=())
    if backend not in backends:
        raise UserError(f"unknown torch.compile backend {backend!r}; choose one of {', '.join(sorted(backends))}")
    if mode is not None and mode not in COMPILE_MODES:
        raise UserError(f"unknown torch.compile mode {mode!r}; choose one of {', '.join(COMPILE_MODES)}")


def compile_model(module: torch.nn.Module, backend: str = "inductor", mode: Optional[str] = None) -> torch.nn.Module:
    """``torch.compile(module)`` with checked options. The 3DTRL models compile whole (no graph
    breaks), forward and backward; the first steps are slow while the graphs are built.
    Checkpoints store the original module's weights (``timm.utils.unwrap_model``)."""
    check_compile_options(backend, mode)
    return torch.compile(module, backend=backend, mode=mode)
