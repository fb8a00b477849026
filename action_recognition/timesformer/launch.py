"""Train and/or test a TimeSformer (+3DTRL) as the config says (the command line of ``tools/run_net.py``).

    python tools/run_net.py --cfg configs/TimeSformer_3DTRL_demo_cpu.yaml \
        DATA.PATH_TO_DATA_DIR data/panda_actions OUTPUT_DIR out/demo

Runs ``NUM_GPUS`` processes on this node (CPU processes with gloo when there is no GPU).
Multi-node: start the same command on every node with ``--init_method tcp://HOST:PORT``,
``NUM_SHARDS`` nodes and ``--shard_id`` 0 .. NUM_SHARDS-1.
"""
import threedtrl.runtime.compat  # noqa: F401  (a process entry, also of spawned processes: the torchvision remedy before timm)

import argparse
import socket

import torch
import torch.multiprocessing as mp

from threedtrl.runtime import UserError, load_checkpoint_file, user_message

from .config import load_config
from .dataset import VideoDataset, check_readable


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", dest="cfg_file", required=True, help="YAML config file")
    parser.add_argument("--init_method", default="", help="tcp://HOST:PORT of shard 0 (multi-node runs)")
    parser.add_argument("--shard_id", type=int, default=None, help="this node's index (overrides SHARD_ID)")
    parser.add_argument("--num_shards", type=int, default=None, help="number of nodes (overrides NUM_SHARDS)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser.parse_args(argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_inputs(cfg) -> None:
    """Fail in one line, before any process starts, on missing or bad lists, videos and weights."""
    splits = (["train"] + (["val"] if cfg.TRAIN.EVAL_PERIOD > 0 else [])) if cfg.TRAIN.ENABLE else []
    splits += ["test"] if cfg.TEST.ENABLE else []
    for split in splits:
        dataset = VideoDataset(cfg, split)
        if split != "train":  # found now, not after the whole training (training reads its videos at once)
            check_readable(dataset.videos)
    for key, path in (("TIMESFORMER.PRETRAINED_MODEL", cfg.TIMESFORMER.PRETRAINED_MODEL),
                      ("TRAIN.CHECKPOINT_FILE_PATH", cfg.TRAIN.CHECKPOINT_FILE_PATH),
                      ("TEST.CHECKPOINT_FILE_PATH", cfg.TEST.CHECKPOINT_FILE_PATH)):
        if path:
            load_checkpoint_file(path, key)  # missing, unreadable or unsafe: one line, before any process starts
    if cfg.NUM_GPUS > 0 and torch.cuda.is_available() and cfg.NUM_GPUS > torch.cuda.device_count():
        raise UserError(f"NUM_GPUS {cfg.NUM_GPUS} but only {torch.cuda.device_count()} GPU(s) visible")


def run_process(rank: int, cfg, init_method: str) -> None:
    """One training process. Spawned processes start here, so this module (with the torchvision
    remedy first) is what they import before timm."""
    from .trainer import run
    run(rank, cfg, init_method)


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = load_config(args.cfg_file, args.opts)
    if args.num_shards is not None:
        cfg.NUM_SHARDS = args.num_shards
    if args.shard_id is not None:
        cfg.SHARD_ID = args.shard_id
    if cfg.NUM_SHARDS > 1 and not args.init_method:
        raise UserError("a multi-node run (NUM_SHARDS > 1) needs --init_method tcp://HOST:PORT")
    check_inputs(cfg)
    # The model and training code (timm, the models: about 5 s) load only once the config and the
    # inputs passed, so a mistake in either is reported in the time torch takes to import.
    from .checkpoint import output_layout
    from .trainer import run, world_size
    output_layout(cfg.OUTPUT_DIR).prepare()
    init_method = args.init_method or f"tcp://127.0.0.1:{free_port()}"
    processes = max(cfg.NUM_GPUS, 1)
    if world_size(cfg) == 1:
        run(0, cfg, init_method)
    else:
        try:
            mp.spawn(run_process, args=(cfg, init_method), nprocs=processes, join=True)
        except mp.ProcessRaisedException as err:
            raise UserError(user_message(err)) from None
        except mp.ProcessExitedException as err:
            raise UserError(f"a training process exited with code {err.exit_code}") from None
