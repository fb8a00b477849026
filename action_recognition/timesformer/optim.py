"""Optimizer, learning-rate policies and the loss, as the config selects them."""
import math

import torch
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


def param_groups(model: nn.Module, weight_decay: float):
    """No weight decay on biases, norms and embeddings (1-D parameters and ``no_weight_decay`` names)."""
    inner = model.module if hasattr(model, "module") else model
    skip = {f"model.{name}" for name in inner.model.no_weight_decay()}
    decay, no_decay = [], []
    for name, param in inner.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or name in skip else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    s = cfg.SOLVER
    groups = param_groups(model, s.WEIGHT_DECAY)
    if s.OPTIMIZING_METHOD == "sgd":
        return torch.optim.SGD(groups, lr=s.BASE_LR, momentum=s.MOMENTUM, dampening=s.DAMPENING,
                               nesterov=s.NESTEROV and s.MOMENTUM > 0)
    return torch.optim.AdamW(groups, lr=s.BASE_LR, betas=(0.9, 0.999))


def build_loss(cfg) -> nn.Module:
    return nn.CrossEntropyLoss()
