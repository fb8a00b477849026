import json
import os
import shutil

import threedtrl.runtime.compat  # noqa: F401  (must precede the first timm/torchvision import)
import pytest

from data_pipeline.render_ftpv import Preset, render_dataset

# The alignment tests' data: a tiny Panda render, read under the MineRL task's folder name (``--data mc``).
TINY_FTPV = Preset("Pandav1_Train_Frame", trajectories=8, views=3, frames=8, size=32)
MC_FOLDER = "MineRLReachGoalGroundStatic-v0_Frame"

# Under pytest-xdist two test processes may start i1k.sh at the same moment: each gets a rendezvous
# port of its own instead of i1k.sh's default 29500 (a port in use is refused in one line).
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER:
    os.environ.setdefault("MASTER_PORT", str(29611 + 17 * int(_WORKER.removeprefix("gw"))))


# `make test` hands whole files to its two processes in collection order (--dist loadfile
# --no-loadscope-reorder), each process holding two files at a time. The files whose tests take longest
# (minutes, mostly subprocesses that start torch) are collected first, so that neither process is left
# with a long file at the end while the other one waits.
LONGEST_FIRST = ("test_alignment_experiments.py", "test_alignment_train.py", "test_imagenet.py", "test_gpu_check.py",
                 "test_action_data.py", "test_trust.py")


def pytest_collection_modifyitems(items):
    """Order the files by ``LONGEST_FIRST`` (the rest after them, as collected); a file's tests keep
    their order."""
    def rank(item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)
    items.sort(key=rank)


def render_ftpv_root(tmp_path_factory, preset, seed: int, dataset_folder: str) -> str:
    """Render ``preset`` and move it under a data root as ``dataset_folder``; returns the root."""
    out = tmp_path_factory.mktemp("ftpv")
    render_dataset(str(out / "render"), preset, seed=seed, workers=1, progress=False)
    os.makedirs(out / "root")
    shutil.move(str(out / "render" / preset.folder), str(out / "root" / dataset_folder))
    return str(out / "root")


@pytest.fixture(scope="module")
def mc_root(tmp_path_factory) -> str:
    """A data root holding ``TINY_FTPV`` as the ``--data mc`` task."""
    return render_ftpv_root(tmp_path_factory, TINY_FTPV, 11, MC_FOLDER)


def train_alignment(root: str, out, *extra) -> dict:
    """``multiview_video_alignment.py`` on ``root``'s mc task with a small CPU recipe (``extra`` adds to
    or overrides it); returns the run's results.json."""
    import multiview_video_alignment as mva
    mva.main(["--data", "mc", "--data_root", root, "--img_size", "32", "--train_views", "2", "--lr", "1e-3",
              "--batch_size", "8", "--triplets_per_epoch", "16", "--device", "cpu", "--xpar",
              "--output_dir", str(out), *extra])
    with open(os.path.join(out, "results.json")) as f:
        return json.load(f)
