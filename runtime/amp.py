"""The AMP policy: autocast on CUDA only (float16 with a loss scaler, or bfloat16 without one);
on the CPU the run trains in float32 and says so."""
import contextlib
import logging
from functools import partial
from typing import Callable, Optional, Tuple

import torch

AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def amp_policy(enabled: bool, dtype: str, device: torch.device) -> Tuple[Callable, Optional[object], bool]:
    """``(autocast context factory, timm NativeScaler or None, whether AMP is on)`` for ``device``."""
    if not enabled:
        return contextlib.nullcontext, None, False
    if device.type != "cuda":
        logging.getLogger(__name__).warning("AMP is off: it runs on CUDA only, so this CPU run trains in float32")
        return contextlib.nullcontext, None, False
    from timm.utils import NativeScaler

    scaler = NativeScaler(device="cuda") if AMP_DTYPES[dtype] == torch.float16 else None
    logging.getLogger(__name__).info("AMP on (%s)", dtype)
    return partial(torch.autocast, device_type="cuda", dtype=AMP_DTYPES[dtype]), scaler, True
