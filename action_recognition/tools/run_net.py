"""Train and/or test a TimeSformer (+3DTRL) as the config says.

    python tools/run_net.py --cfg configs/TimeSformer_3DTRL_demo_cpu.yaml \
        DATA.PATH_TO_DATA_DIR data/panda_actions OUTPUT_DIR out/demo

Runs ``NUM_GPUS`` processes on this node (CPU processes with gloo when there is no GPU).
Multi-node: start the same command on every node with ``--init_method tcp://HOST:PORT``,
``NUM_SHARDS`` nodes and ``--shard_id`` 0 .. NUM_SHARDS-1.
"""
import threedtrl.runtime.compat  # noqa: F401  (the torchvision remedy, before the first timm/torchvision import)
from threedtrl.timesformer.launch import main
from threedtrl.runtime import run_cli

if __name__ == "__main__":
    run_cli(main)
