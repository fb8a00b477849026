"""Optimizer, learning-rate policies and the loss, as the config selects them."""
import math

import torch
from timm.optim import create_optimizer_v2, param_groups_weight_decay
from timm.utils import unwrap_model
from torch import nn


def get_epoch_lr(cfg, epoch: float) -> float:
    """Learning rate at fractional ``epoch``: linear warm-up, then the policy."""
    s = cfg.SOLVER
    lr = _policy_lr(cfg, epoch)
    if epoch < s.WARMUP_EPOCHS:
        end = _policy_lr(cfg, s.WARMUP_EPOCHS)
        lr = s.WARMUP_START_LR + (end - s.WARMUP_START_LR) * epoch / s.WARMUP_EPOCHS
    return lr


def _policy_lr(cfg, epoch: float) -> float:
    s = cfg.SOLVER
    if s.LR_POLICY == "cosine":
        return s.COSINE_END_LR + (s.BASE_LR - s.COSINE_END_LR) * (math.cos(math.pi * epoch / s.MAX_EPOCH) + 1) / 2
    # steps_with_relative_lrs: BASE_LR * LRS[i] from epoch STEPS[i] on
    index = max(i for i, step in enumerate(s.STEPS) if step <= epoch) if epoch >= s.STEPS[0] else 0
    return s.BASE_LR * s.LRS[index]


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def build_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    """timm's optimizer factory: SGD (Nesterov when ``SOLVER.NESTEROV``), Adam or AdamW, as the release's.

    The release's parameter groups by default: parameters whose names contain ``bn`` (none in a ViT)
    without weight decay, then all others with ``SOLVER.WEIGHT_DECAY``. With ``SOLVER.ZERO_WD_1D_PARAM``:
    the decayed group first, then 1-D parameters and the model's ``no_weight_decay`` names without
    decay (this project's earlier groups, which its earlier checkpoints hold)."""
    s = cfg.SOLVER
    inner = unwrap_model(model)
    if s.ZERO_WD_1D_PARAM:
        skip = [f"model.{name}" for name in inner.model.no_weight_decay()]
        no_decay, decay = param_groups_weight_decay(inner, s.WEIGHT_DECAY, no_weight_decay_list=skip)
        groups = [decay, no_decay]
    else:
        named = list(inner.named_parameters())
        groups = [{"params": [p for n, p in named if "bn" in n], "weight_decay": 0.0},
                  {"params": [p for n, p in named if "bn" not in n], "weight_decay": s.WEIGHT_DECAY}]
    if s.OPTIMIZING_METHOD == "sgd":
        name = "sgd" if s.NESTEROV and s.MOMENTUM > 0 else "momentum"  # timm: sgd = Nesterov momentum
        return create_optimizer_v2(groups, name, lr=s.BASE_LR, momentum=s.MOMENTUM, dampening=s.DAMPENING)
    return create_optimizer_v2(groups, s.OPTIMIZING_METHOD, lr=s.BASE_LR)  # adam (L2 decay) or adamw


def build_loss(cfg) -> nn.Module:
    return nn.CrossEntropyLoss()
