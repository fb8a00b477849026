"""The runtime shared by the three tasks: checkpoint reading, output layouts, process groups, AMP, seeds."""
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from threedtrl import runtime
from threedtrl.runtime import OutputLayout, UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_truncated_checkpoint_is_one_line(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save({"model": {"w": torch.randn(64, 64)}, "epoch": 3}, path)
    data = path.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    script = ("from threedtrl.runtime import load_checkpoint_file, run_cli; "
              f"run_cli(lambda: load_checkpoint_file({str(tmp_path / 'cut.pth')!r}))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: cannot read checkpoint") and "truncated" in done.stderr
    assert runtime.load_checkpoint_file(str(path), keys=("model", "epoch"))["epoch"] == 3
    with pytest.raises(UserError, match="no optimizer"):
        runtime.load_checkpoint_file(str(path), "run", keys=("model", "optimizer"))


@pytest.mark.parametrize("layout, checkpoint, tensorboard, results", [
    (OutputLayout("run", "", "", "metrics.json"), "run/last.pth.tar", "run", "run/metrics.json"),
    (OutputLayout("run", "", "tb"), "run/last.pth.tar", "run/tb", "run/results.json"),
    (OutputLayout("run", "checkpoints", "tensorboard"), "run/checkpoints/last.pth.tar", "run/tensorboard",
     "run/results.json"),
])
def test_output_layouts(tmp_path, layout, checkpoint, tensorboard, results):
    assert layout.checkpoint("last.pth.tar") == checkpoint
    assert layout.tensorboard_dir == tensorboard and layout.results_path == results
    placed = OutputLayout(str(tmp_path / layout.root), layout.checkpoints, layout.tensorboard, layout.results)
    os.makedirs(placed.checkpoint_dir)
    stale = os.path.join(placed.checkpoint_dir, ".tmp-x.pth")
    open(stale, "w").close()
    placed.prepare()
    assert os.path.isdir(placed.checkpoint_dir) and not os.path.exists(stale)
    assert placed.write_results({"a": 1}) == placed.results_path and os.path.isfile(placed.results_path)


def test_unwritable_layout_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot write to output folder"):
        OutputLayout(str(blocker / "run"), "checkpoints").prepare()


def test_single_process_runtime(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    rt = runtime.init_runtime("cpu")
    assert (rt.rank, rt.world, rt.main, rt.distributed, rt.device.type) == (0, 1, True, False, "cpu")
    assert rt.all_sum([1.5, 2]) == [1.5, 2.0]
    np.testing.assert_array_equal(runtime.all_reduce_sum(np.arange(3)), [0.0, 1.0, 2.0])
    with pytest.raises(UserError, match="unknown --device"):
        runtime.init_runtime("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            runtime.init_runtime("cuda")


def _two_processes(rank: int, init_method: str, out: str) -> None:
    rt = runtime.init_runtime("cpu", rank=rank, world=2, init_method=init_method)
    try:
        total = rt.all_sum([rank + 1.0, 10.0 * rank])
        torch.save({"total": total, "main": rt.main, "rank": rt.rank}, f"{out}.{rank}")
    finally:
        rt.close()


def test_two_process_group_sums_over_ranks(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "r")
    mp.spawn(_two_processes, args=(f"tcp://127.0.0.1:{port}", out), nprocs=2, join=True)
    results = [torch.load(f"{out}.{r}") for r in range(2)]
    assert [r["total"] for r in results] == [[3.0, 10.0], [3.0, 10.0]]
    assert [r["main"] for r in results] == [True, False]


def test_amp_policy_is_float32_on_the_cpu():
    autocast, scaler, on = runtime.amp_policy(True, "float16", torch.device("cpu"))
    assert (scaler, on) == (None, False)
    with autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    assert runtime.amp_policy(False, "bfloat16", torch.device("cpu"))[2] is False


def test_epoch_seeds_differ_by_rank_and_epoch_and_repeat():
    seeds = {runtime.epoch_seed(42, rank, epoch) for rank in range(3) for epoch in range(4)}
    assert len(seeds) == 12 and runtime.epoch_seed(42, 1, 2) == runtime.epoch_seed(42, 1, 2)


def test_utils_keeps_the_release_names_and_loads_them_on_use():
    code = ("import sys, utils\n"
            "assert 'torchvision' not in sys.modules and 'threedtrl.alignment.metrics' not in sys.modules\n"
            "from utils import alignment_error, cos_distance, cycle_error, distance, kendalls_tau, normalize, to_tensor\n"
            "from utils import seed_everything\n"
            "from threedtrl.alignment import metrics\n"
            "assert alignment_error is metrics.alignment_error and normalize.mean == (0.485, 0.456, 0.406)\n"
            "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.stdout.strip() == "ok", result.stderr


def test_safetensors_round_trip_and_damaged_file(tmp_path):
    path = str(tmp_path / "w.safetensors")
    tensors = {"a": torch.arange(6.0).view(2, 3), "b": torch.ones(1, dtype=torch.int64)}
    runtime.save_safetensors_atomic(tensors, {"model_cfg": {"model": "m", "depth": 4}}, path)
    loaded = runtime.load_checkpoint_file(path, "--init file")
    assert loaded["model_cfg"] == {"model": "m", "depth": 4}
    assert all(torch.equal(loaded["model"][k], v) for k, v in tensors.items())
    with open(path, "r+b") as f:
        f.truncate(40)
    with pytest.raises(UserError, match="cannot read --init file .*safetensors file"):
        runtime.load_checkpoint_file(path, "--init file")


@pytest.mark.parametrize("signalled, expected_code", [(True, 143), (False, 1)])
def test_launched_process_whose_peer_left_waits_for_the_launchers_signal(signalled, expected_code):
    """torchrun signals its processes one after another: a process whose collective failed because
    a peer already stopped ends quietly once its own SIGTERM arrives; without one, its error is shown."""
    script = ("import os, signal, threading\n"
              "from threedtrl.runtime import errors\n"
              "errors.LAUNCHER_SIGNAL_WAIT_S = 3.0\n"
              f"if {signalled}:\n"
              "    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()\n"
              "def main():\n"
              "    raise RuntimeError('Connection closed by peer')\n"
              "errors.run_cli(main)\n")
    env = dict(os.environ, TORCHELASTIC_RUN_ID="t", WORLD_SIZE="2")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == expected_code, done.stderr
    assert ("Connection closed by peer" in done.stderr) == (not signalled), done.stderr
