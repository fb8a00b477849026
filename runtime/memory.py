"""Peak accelerator memory of a step, for the benchmarks and the GPU check."""
from typing import Callable, Dict, Optional

import torch


def peak_memory_mb(step: Callable[[], None], device: torch.device) -> Optional[float]:
    """Peak CUDA memory (MiB) allocated during one call of ``step``, from a clean peak counter;
    None on the CPU, where torch keeps no such counter."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2 ** 20


def peak_memory_table(steps: Dict[str, Callable[[], None]], device: torch.device) -> Dict[str, float]:
    """:func:`peak_memory_mb` of every step (empty on the CPU)."""
    peaks = {key: peak_memory_mb(step, device) for key, step in steps.items()}
    return {key: value for key, value in peaks.items() if value is not None}
