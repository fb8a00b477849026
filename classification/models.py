"""Build timm classifiers by name; 3DTRL settings (``trl_depth``/``npl_depth``, ``cat``) go to 3DTRL models."""
from typing import Optional

import timm
import torch

import model as trl_models
from model import check_input_size
from threedtrl.runtime import UserError


def is_3dtrl(name: str) -> bool:
    return name in trl_models.TRL_MODEL_NAMES


def build_classifier(name: str, num_classes: int, img_size: Optional[int] = None, trl_depth: Optional[int] = None,
                     cat: Optional[bool] = None, pretrained: bool = False, model_kwargs: Optional[dict] = None,
                     **timm_kwargs) -> torch.nn.Module:
    """``timm.create_model`` with one-line errors for names, 3DTRL options and bad arguments."""
    if not timm.is_model(name):
        raise UserError(f"unknown model '{name}' (see timm.list_models())")
    kwargs = dict(model_kwargs or {})
    kwargs.update({k: v for k, v in timm_kwargs.items() if v is not None})
    if img_size is not None:
        kwargs["img_size"] = img_size
    if is_3dtrl(name):
        if trl_depth is not None:
            kwargs["trl_depth"] = trl_depth
        if cat:
            kwargs["cat"] = True
    elif trl_depth is not None or cat:
        raise UserError(f"--trl-depth/--npl-depth/--cat apply to 3DTRL models only, not to '{name}'")
    try:
        net = timm.create_model(name, pretrained=pretrained, num_classes=num_classes, **kwargs)
    except OSError as err:  # pretrained weights neither cached nor reachable (huggingface_hub's errors are OSErrors)
        raise UserError(f"pretrained weights of '{name}' are not available here: "
                        f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    except (TypeError, ValueError, AssertionError, ArithmeticError, RuntimeError) as err:
        # user-given model arguments reach timm's and torch's constructors (negative widths: RuntimeError)
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"cannot build '{name}' with {kwargs}: {why}") from None
    try:
        check_input_size(net, net.pretrained_cfg.get("input_size", (3, 224, 224))[-1] if img_size is None else img_size)
    except ValueError as err:
        raise UserError(f"image size: {err}") from None
    return net
