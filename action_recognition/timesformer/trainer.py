"""Train, validate and test a TimeSformer as the config says; one function per process.

Processes: ``NUM_GPUS`` per node on ``NUM_SHARDS`` nodes (``torch.distributed``; NCCL on GPUs,
gloo on the CPU). With one process in total nothing distributed is initialised.
Outputs in ``OUTPUT_DIR``: ``checkpoints/checkpoint_epoch_XXXXX.pyth`` (atomic, auto-resumed),
``tensorboard/``, ``stats.json`` (per epoch) and ``results.json`` (the test metrics).
"""
import logging
import os
import time
from typing import Dict, List, Optional

import cv2
import numpy as np
import torch
import yaml
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset
from timm.utils import accuracy

from threedtrl.runtime import (Runtime, UserError, all_reduce_sum, amp_policy, check_finite_loss, check_finite_weights,
                               compile_model, init_runtime, load_checkpoint_file, progress_bar, seed_everything,
                               setup_logging, user_message, write_json_atomic)
from threedtrl.runtime.config import load_yaml
from threedtrl.runtime.logs import AverageMeter

from . import checkpoint as cu
from .config import EARLIER_BEHAVIOUR
from .dataset import VideoDataset
from .meters import VideoScores
from .model import build_model
from .optim import build_loss, build_optimizer, get_epoch_lr, set_lr
from .weights import load_pretrained

log = logging.getLogger("timesformer")


# ----------------------------------------------------------------------------- processes

def world_size(cfg) -> int:
    return max(cfg.NUM_GPUS, 1) * cfg.NUM_SHARDS


def use_cuda(cfg) -> bool:
    return cfg.NUM_GPUS > 0 and torch.cuda.is_available()


def init_process(local_rank: int, cfg, init_method: str) -> Runtime:
    """Join the process group (when there is more than one process) and pick this process's device:
    TimeSformer's launcher numbers the processes ``SHARD_ID * NUM_GPUS + local_rank``."""
    rt = init_runtime("cuda" if use_cuda(cfg) else "cpu", rank=cfg.SHARD_ID * max(cfg.NUM_GPUS, 1) + local_rank,
                      world=world_size(cfg), local_rank=local_rank, init_method=init_method,
                      backend=cfg.DIST_BACKEND)
    if rt.device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(cpu_threads(cfg))
    return rt


def cpu_threads(cfg) -> int:
    """Threads per CPU training process: the cores left by the loader workers, shared by the processes
    (more threads than cores makes PyTorch's CPU kernels many times slower)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(cfg.NUM_GPUS, 1) - cfg.DATA_LOADER.NUM_WORKERS)


def worker_init(_: int) -> None:
    """Loader workers decode one clip at a time: one thread each."""
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


# ----------------------------------------------------------------------------- data

def build_loader(cfg, split: str, dataset: Optional[VideoDataset] = None) -> DataLoader:
    dataset = dataset or VideoDataset(cfg, split)
    replicas, index = (dist.get_world_size(), dist.get_rank()) if dist.is_initialized() else (1, 0)
    per_process = max(1, (cfg.TRAIN.BATCH_SIZE if split == "train" else cfg.TEST.BATCH_SIZE) // replicas)
    if split == "train":
        sampler = DistributedSampler(dataset, replicas, index, shuffle=True, seed=cfg.RNG_SEED, drop_last=True)
        shard = dataset
    else:
        sampler, shard = None, Subset(dataset, range(index, len(dataset), replicas))
    return DataLoader(shard, batch_size=per_process, sampler=sampler, shuffle=False,
                      num_workers=cfg.DATA_LOADER.NUM_WORKERS, pin_memory=cfg.DATA_LOADER.PIN_MEMORY and use_cuda(cfg),
                      drop_last=split == "train" and len(dataset) >= per_process * replicas,
                      worker_init_fn=worker_init)


def iterate(loader: DataLoader, desc: str, cfg):
    """Batches with a progress bar on the main process (``LOG.PROGRESS``); loader errors stay one line."""
    bar = progress_bar(loader, desc, enabled=cfg.LOG.PROGRESS and is_main())
    try:
        yield from bar
    except UserError as err:
        raise UserError(user_message(err)) from None
    finally:
        bar.close()


def autocast(cfg, device: torch.device):
    """bf16 autocast on GPUs when ``TRAIN.MIXED_PRECISION`` (the shared AMP policy)."""
    return amp_policy(cfg.TRAIN.MIXED_PRECISION, "bfloat16", device)[0]()


# ----------------------------------------------------------------------------- epochs

def train_epoch(model, loader, optimizer, loss_fn, epoch: int, cfg, device, writer) -> Dict[str, float]:
    """One epoch; ``epoch`` is 0-based. The LR follows the policy per iteration."""
    model.train()
    loader.sampler.set_epoch(epoch)
    loader.dataset.set_epoch(epoch)
    loss_meter, top1_meter = AverageMeter(), AverageMeter()
    num_iters = len(loader)
    lr = get_epoch_lr(cfg, epoch)
    for it, (clips, labels, _) in enumerate(iterate(loader, f"train {epoch + 1}/{cfg.SOLVER.MAX_EPOCH}", cfg)):
        lr = get_epoch_lr(cfg, epoch + it / num_iters)
        set_lr(optimizer, lr)
        clips, labels = clips.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with autocast(cfg, device):
            logits = model(clips)
        loss = loss_fn(logits.float(), labels)
        check_finite_loss(loss, f"epoch {epoch + 1}, iteration {it + 1}", "lower SOLVER.BASE_LR")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.SOLVER.CLIP_GRAD_NORM:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.SOLVER.CLIP_GRAD_NORM)
        optimizer.step()
        loss_meter.update(loss.item(), len(labels))
        top1_meter.update(accuracy(logits.detach(), labels, topk=(1,))[0].item(), len(labels))
        step = epoch * num_iters + it
        if writer is not None and step % cfg.LOG.PERIOD == 0:
            writer.add_scalar("train/loss", loss.item(), step)
            writer.add_scalar("train/lr", lr, step)
    totals = all_reduce_sum([loss_meter.sum, top1_meter.sum, loss_meter.count], device).tolist()
    count = max(totals[2], 1)
    return {"loss": totals[0] / count, "top1": totals[1] / count, "lr": lr}


@torch.no_grad()
def evaluate(model, loader, cfg, device, desc: str) -> Dict[str, float]:
    """Video-level metrics over each video's views (their logits summed, or their softmax scores
    averaged: ``DATA.ENSEMBLE_METHOD``), gathered from all processes."""
    model.eval()
    dataset = loader.dataset.dataset
    scores = VideoScores(len(dataset.videos), cfg.MODEL.NUM_CLASSES)
    for clips, labels, video_index in iterate(loader, desc, cfg):
        with autocast(cfg, device):
            logits = model(clips.to(device, non_blocking=True)).float()
        scores.update(logits if cfg.DATA.ENSEMBLE_METHOD == "sum" else logits.softmax(dim=1), labels, video_index)
    scores.sums = all_reduce_sum(scores.sums, device)
    scores.counts = all_reduce_sum(scores.counts, device).astype(np.int64)
    labels = all_reduce_sum(np.where(scores.labels >= 0, scores.labels + 1, 0), device).astype(np.int64)
    scores.labels = np.where(labels > 0, labels - 1, -1)
    metrics = scores.metrics()
    metrics["views_per_video"] = dataset.views_per_video
    if cfg.TEST.SAVE_RESULTS_PATH and desc == "test" and is_main():
        np.savez(os.path.join(cfg.OUTPUT_DIR, cfg.TEST.SAVE_RESULTS_PATH), scores=scores.scores(), labels=scores.labels)
    return metrics


# ----------------------------------------------------------------------------- model set-up

def prepare_model(cfg, device):
    """Build the model and load the configured initial weights: ImageNet ViT, then a TimeSformer
    checkpoint (adapted to this model when ``TRAIN.FINETUNE``, loaded exactly otherwise)."""
    seed_everything(cfg.RNG_SEED)
    model = build_model(cfg)
    if cfg.TIMESFORMER.PRETRAINED_MODEL:
        load_pretrained(model, cfg.TIMESFORMER.PRETRAINED_MODEL)
    elif cfg.TRAIN.ENABLE and is_main():
        log.info("TIMESFORMER.PRETRAINED_MODEL is empty: the model starts from its initialisation (the release "
                 "downloads timm's ImageNet ViT-B/16 weights here; give that file as TIMESFORMER.PRETRAINED_MODEL "
                 "to do the same)")
    if cfg.TRAIN.CHECKPOINT_FILE_PATH and cfg.TRAIN.FINETUNE:
        load_pretrained(model, cfg.TRAIN.CHECKPOINT_FILE_PATH)
    elif cfg.TRAIN.CHECKPOINT_FILE_PATH:
        cu.resume(cfg.TRAIN.CHECKPOINT_FILE_PATH, model, None)
    return model.to(device)


def wrap(model, cfg, device):
    """The model as the steps run it: DistributedDataParallel under torchrun, compiled when
    ``MODEL.COMPILE`` (checkpoints keep saving ``model`` itself)."""
    if dist.is_initialized():
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return compile_model(model, cfg.MODEL.COMPILE_BACKEND) if cfg.MODEL.COMPILE else model


def changed_keys(old: Dict, new: Dict, prefix: str = "") -> List[str]:
    """Dotted keys whose values differ between two nested config dicts, as ``KEY old -> new``."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} {a!r} -> {b!r}")
    return out


def stored_config(checkpoint: dict) -> Dict:
    """The config a checkpoint was trained with: a dict (this project's) or the YAML text that the
    release's SlowFast checkpoints hold (read as plain YAML: nothing in it runs)."""
    stored = checkpoint.get("cfg")
    if isinstance(stored, str):
        try:
            stored = load_yaml(stored)
        except yaml.YAMLError:
            return {}
    return stored if isinstance(stored, dict) else {}


def keep_earlier_behaviour(cfg, stored: Dict, path: str) -> None:
    """A run resumed from a checkpoint of this project written before a key of
    :data:`EARLIER_BEHAVIOUR` existed continues with the behaviour it was trained with."""
    for (section, key), value in EARLIER_BEHAVIOUR.items():
        if key not in (stored.get(section) or {}) and cfg[section][key] != value:
            cfg[section][key] = value
            if is_main():
                log.info("%s.%s %r: %s was trained before this key existed, so it continues as it was trained",
                         section, key, value, path)


def train(cfg, model, device, writer) -> Dict:
    """Train for ``SOLVER.MAX_EPOCH`` epochs (resuming from the last checkpoint); returns the history."""
    start, history = 0, []
    last = cu.last_checkpoint(cfg.OUTPUT_DIR) if cfg.TRAIN.AUTO_RESUME else None
    stored = load_checkpoint_file(last) if last else {}
    trained_cfg = stored_config(stored)
    if last and "history" in stored:  # this project's checkpoint (the release's hold no history)
        keep_earlier_behaviour(cfg, trained_cfg, last)
    optimizer = build_optimizer(model, cfg)
    if last:
        start = cu.resume(last, model, optimizer)
        history = stored.get("history", [])
        if is_main():
            log.info("resumed from %s (epoch %d)", last, start)
            changed = changed_keys(trained_cfg, cfg.to_dict())
            if changed:
                log.warning("warning: the config differs from the one %s was trained with: %s", last,
                            ", ".join(changed))
    net = wrap(model, cfg, device)
    train_loader = build_loader(cfg, "train")
    val_loader = build_loader(cfg, "val") if cfg.TRAIN.EVAL_PERIOD > 0 else None
    loss_fn = build_loss(cfg)
    for epoch in range(start, cfg.SOLVER.MAX_EPOCH):
        tic = time.time()
        stats = {"epoch": epoch + 1, **train_epoch(net, train_loader, optimizer, loss_fn, epoch, cfg, device, writer)}
        check_finite_weights(model, f"after epoch {epoch + 1}")
        if val_loader is not None and ((epoch + 1) % cfg.TRAIN.EVAL_PERIOD == 0 or epoch + 1 == cfg.SOLVER.MAX_EPOCH):
            val = evaluate(net, val_loader, cfg, device, "val")
            stats.update({f"val_{k}": v for k, v in val.items() if k in ("top1", "top5", "mean_class_acc")})
        stats["seconds"] = time.time() - tic
        history.append({key: float(value) if isinstance(value, np.floating) else value for key, value in stats.items()})
        if is_main():
            for key, value in stats.items():
                if key not in ("epoch", "seconds") and writer is not None:
                    writer.add_scalar(f"epoch/{key}", value, epoch + 1)
            log.info("epoch %d: %s", epoch + 1, " ".join(f"{k} {v:.4g}" for k, v in stats.items() if k != "epoch"))
            if (epoch + 1) % cfg.TRAIN.CHECKPOINT_PERIOD == 0 or epoch + 1 == cfg.SOLVER.MAX_EPOCH:
                cu.save_checkpoint(cfg.OUTPUT_DIR, model, optimizer, epoch + 1, cfg, history=history)
            write_json_atomic(history, os.path.join(cfg.OUTPUT_DIR, "stats.json"))
        if dist.is_initialized():
            dist.barrier()
    return history


def test(cfg, model, device, writer) -> Dict[str, float]:
    """Multi-view test of ``TEST.CHECKPOINT_FILE_PATH`` (or of the given model)."""
    if cfg.TEST.CHECKPOINT_FILE_PATH:
        cu.resume(cfg.TEST.CHECKPOINT_FILE_PATH, model, None)
    elif not cfg.TRAIN.ENABLE and cu.last_checkpoint(cfg.OUTPUT_DIR):
        cu.resume(cu.last_checkpoint(cfg.OUTPUT_DIR), model, None)
    metrics = evaluate(wrap(model, cfg, device), build_loader(cfg, "test"), cfg, device, "test")
    if is_main() and writer is not None:
        for key in ("top1", "top5", "mean_class_acc"):
            writer.add_scalar(f"test/{key}", metrics[key], 0)
    return metrics


def run(local_rank: int, cfg, init_method: str = "") -> Optional[Dict]:
    """Everything one process does: train (if enabled), then test (if enabled), then write results."""
    rt = init_process(local_rank, cfg, init_method)
    setup_logging(rt.rank, fmt="[%(asctime)s] %(message)s")
    device = rt.device
    try:
        model = prepare_model(cfg, device)
        writer = cu.output_layout(cfg.OUTPUT_DIR).tensorboard_writer() if rt.main else None
        results = {"config": cfg.to_dict(), "world_size": world_size(cfg), "device": device.type}
        if cfg.TRAIN.ENABLE:
            results["train"] = train(cfg, model, device, writer)
        if cfg.TEST.ENABLE:
            results["test"] = test(cfg, model, device, writer)
            if is_main():
                log.info("test %s", " ".join(f"{k} {v:.4g}" for k, v in results["test"].items()))
        if rt.main:
            cu.output_layout(cfg.OUTPUT_DIR).write_results(results)
            writer.close()
        return results
    finally:
        rt.close()
