"""The loops of ImageNet classification: one training epoch (``imagenet_train.py``) and the
top-1/top-5 evaluation that both ``imagenet_train.py`` (every epoch) and ``imagenet_val.py`` run."""
import time
from typing import Callable, Dict

import torch
from timm.models import model_parameters
from timm.utils import accuracy, dispatch_clip_grad, unwrap_model

from threedtrl.runtime import all_reduce_sum, check_finite_loss, progress_bar
from threedtrl.runtime.logs import AverageMeter


def train_one_epoch(epoch: int, model, loader, optimizer, loss_fn, args, device, autocast: Callable,
                    loss_scaler, scheduler, num_updates: int, mixup=None, model_ema=None, writer=None):
    """One pass over ``loader`` (batches of images ``(B, 3, H, W)`` and labels ``(B,)``); returns the
    epoch's metrics (mean loss and images per second over all processes) and the update count."""
    if mixup is not None and args.mixup_off_epoch and epoch >= args.mixup_off_epoch:
        mixup.mixup_enabled = False
    model.train()
    loss_meter = AverageMeter()
    seen, start = 0, None
    bar = progress_bar(loader, f"train {epoch}", enabled=not args.no_progress, rank=args.rank)
    for batch_idx, (images, targets) in enumerate(bar):
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        if mixup is not None:
            images, targets = mixup(images, targets)
        if args.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast():
            loss = loss_fn(model(images), targets)
        check_finite_loss(loss, f"epoch {epoch}, batch {batch_idx}", "lower --lr or set --clip-grad")
        optimizer.zero_grad(set_to_none=True)
        # adaptive clipping (agc) leaves the classifier out, as timm's train script does
        clipped = model_parameters(model, exclude_head="agc" in args.clip_mode)
        if loss_scaler is not None:
            loss_scaler(loss, optimizer, clip_grad=args.clip_grad, clip_mode=args.clip_mode, parameters=clipped)
        else:
            loss.backward()
            if args.clip_grad is not None:
                dispatch_clip_grad(clipped, value=args.clip_grad, mode=args.clip_mode)
            optimizer.step()
        num_updates += 1
        if model_ema is not None:
            # Without warm-up the update is timm 0.6's ModelEmaV2 (the release's): a step would make
            # ModelEmaV3 copy the weights at the first updates instead of averaging from the initial ones.
            model_ema.update(unwrap_model(model), step=num_updates if args.model_ema_warmup else None)
        scheduler.step_update(num_updates=num_updates, metric=loss_meter.avg)
        loss_meter.update(loss.item(), images.shape[0])
        if batch_idx == 0:
            start = time.perf_counter()  # throughput counts from the second batch (loader warm)
        else:
            seen += images.shape[0]
        lr = optimizer.param_groups[0]["lr"]
        bar.set_postfix(loss=f"{loss_meter.avg:.3f}", lr=f"{lr:.2e}")
        if writer is not None and num_updates % args.log_interval == 0:
            writer.add_scalar("train/loss_step", loss.item(), num_updates)
            writer.add_scalar("train/lr_step", lr, num_updates)
    elapsed = time.perf_counter() - start if start is not None else 0.0
    loss_sum, count, seen = all_reduce_sum([loss_meter.sum, loss_meter.count, seen], device).tolist()
    rate = seen / elapsed if elapsed > 0 and seen else float("nan")
    return {"loss": loss_sum / max(count, 1), "img_per_s": rate}, num_updates


@torch.no_grad()
def evaluate(model, loader, device, autocast: Callable, channels_last: bool = False, progress: bool = True,
             rank: int = 0, desc: str = "eval") -> Dict[str, float]:
    """Top-1/top-5 accuracy (%), mean cross-entropy and images per second over ``loader``, summed over
    all processes of a run (each evaluates its share). With fewer than five classes, top-5 is top-k
    over all of them."""
    model.eval()
    sums = [0.0, 0.0, 0.0, 0.0]  # loss * n, correct@1, correct@k, n
    start = time.perf_counter()
    for images, targets in progress_bar(loader, desc, enabled=progress, rank=rank):
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast():
            logits = model(images).float()
        n = images.shape[0]
        acc1, acc_k = accuracy(logits, targets, topk=(1, min(5, logits.shape[-1])))
        loss = torch.nn.functional.cross_entropy(logits, targets)
        for i, value in enumerate((loss.item() * n, acc1.item() * n / 100, acc_k.item() * n / 100, n)):
            sums[i] += value
    elapsed = time.perf_counter() - start
    loss_sum, correct1, correct_k, n = all_reduce_sum(sums, device).tolist()
    return {"loss": loss_sum / n, "top1": 100 * correct1 / n, "top5": 100 * correct_k / n,
            "img_per_s": n / elapsed}
