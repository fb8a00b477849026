"""Trust: no file a user gives runs code, bad input is one line with nothing half-made, no user file is
deleted, interrupted saves leave nothing behind (ImageNet-specific cases are in test_imagenet.py)."""
import glob
import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

import imagenet_train
import imagenet_val
import multiview_video_alignment as mva
from conftest import render_ftpv_root
from data_pipeline.ftpv import split_names
from data_pipeline.render_ftpv import Preset, render_dataset
from threedtrl.tools import render_objects
from threedtrl.runtime import (UserError, load_checkpoint_file, load_plain_pickle, prepare_output_dir, run_cli,
                               save_checkpoint_atomic)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACTION = os.path.join(REPO, "action_recognition")

from threedtrl.timesformer.checkpoint import resume
from threedtrl.timesformer.config import load_config
from threedtrl.timesformer.render import render_dataset as render_actions
from threedtrl.timesformer.trainer import changed_keys
from threedtrl.timesformer.weights import load_state

TINY = Preset("Pandav1_Train_Frame", trajectories=8, views=3, frames=8, size=32)
MC = "MineRLReachGoalGroundStatic-v0_Frame"


class KeywordBuilt:
    """Pickled with keyword arguments to ``__new__`` (a call of a built placeholder at protocols 2-3)."""

    def __new__(cls, a, b=0):
        return super().__new__(cls)

    def __getnewargs_ex__(self):
        return (1,), {"b": 2}


class Payload:
    """Unpickling this runs ``touch MARKER``: the attack a checkpoint file can carry."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return render_ftpv_root(tmp_path_factory, TINY, 5, MC)


def _align(root, out, *extra):
    mva.main(["--data", "mc", "--data_root", root, "--img_size", "32", "--train_views", "2", "--lr", "1e-3",
              "--batch_size", "8", "--triplets_per_epoch", "8", "--epochs", "1", "--device", "cpu", "--xpar",
              "--num_workers", "0", "--output_dir", str(out), *extra])


# ----------------------------------------------------------------------------- 1. no code runs from a file

def _payload_checkpoint(tmp_path, **plain):
    marker = tmp_path / "code_ran"
    path = str(tmp_path / "evil.pth")
    torch.save({**plain, "extra": Payload(marker)}, path)
    return path, marker


def test_checkpoint_payload_never_runs(tmp_path, root):
    from threedtrl.visualization.inference import load_embedder
    import imagenet_train
    import imagenet_val

    path, marker = _payload_checkpoint(tmp_path, model={}, model_cfg={"model": "vit_3dtrl_tiny_patch16_224"},
                                       model_state={}, state_dict={})
    loads = [
        lambda: load_checkpoint_file(path),
        lambda: mva.main(["--test", path, "--data", "mc", "--data_root", root, "--output_dir", str(tmp_path / "t")]),
        lambda: load_embedder(path, "vit_3dtrl_tiny_patch16_224", 32, 0),
        lambda: resume(path, torch.nn.Linear(1, 1), None),
        lambda: imagenet_val.main([str(tmp_path), "--checkpoint", path]),
        lambda: imagenet_train.parse_args([str(tmp_path), "--resume", path]),
        lambda: imagenet_train.parse_args([str(tmp_path), "--initial-checkpoint", path]),
    ]
    for load in loads:
        with pytest.raises(UserError, match="could run code"):
            load()
    assert not marker.exists()
    # the same file through the command line: one line, exit 2, nothing ran
    proc = subprocess.run([sys.executable, "imagenet_val.py", str(tmp_path), "--checkpoint", path], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "posix.system" in proc.stderr
    assert not marker.exists()


def test_own_and_public_checkpoint_contents_still_load(tmp_path):
    import argparse
    path = str(tmp_path / "ok.pth")
    save_checkpoint_atomic({"state_dict": {"w": torch.ones(2)}, "args": argparse.Namespace(model="m", lr=0.1),
                            "history": [{"loss": np.float64(1.5), "n": np.int64(3)}], "epoch": 2, "cfg": "A: 1"},
                           path)
    loaded = load_checkpoint_file(path)
    assert loaded["args"].model == "m" and float(loaded["history"][0]["loss"]) == 1.5
    assert torch.equal(loaded["state_dict"]["w"], torch.ones(2))


def test_pouring_split_pickle_objects_are_never_built(tmp_path):
    """Split files keep their names readable whatever else they hold (CARL's Pouring pickles carry
    tensors of frame labels), and nothing in them runs."""
    marker = tmp_path / "code_ran"
    dataset = tmp_path / "pouring"
    os.makedirs(dataset)
    with open(dataset / "val.pkl", "wb") as f:
        pickle.dump([{"name": "pour_99_real_0"}], f)
    records = [{"id": i, "name": f"pour_{i}_real_0", "x": Payload(marker), "frame_label": torch.arange(5),
                "labels": np.arange(3), "seq_len": 5, "video_file": f"videos/pour_{i}_real_0.mp4"} for i in range(12)]
    with open(dataset / "train.pkl", "wb") as f:
        pickle.dump(records, f)
    assert split_names("pouring", str(dataset), "train") == ["pour_0", "pour_1"]
    assert not marker.exists()
    first = load_plain_pickle(str(dataset / "train.pkl"))[0]
    assert first["seq_len"] == 5 and first["video_file"] == "videos/pour_0_real_0.mp4"
    assert all(type(first[key]).__name__ == "Unread" for key in ("x", "frame_label", "labels"))
    with open(dataset / "train.pkl", "wb") as f:  # plain data reads as it is, old protocols' sets included
        pickle.dump([{"name": f"pour_{i}_real_0", "n": 1.5, "t": (1, 2), "s": {3}, "b": b"\x00"} for i in range(12)],
                    f, protocol=2)
    assert split_names("pouring", str(dataset), "train") == [f"pour_{i}" for i in range(2)]
    loaded = load_plain_pickle(str(dataset / "train.pkl"))[0]
    assert loaded["t"] == (1, 2) and loaded["s"] == {3} and loaded["b"] == b"\x00"
    with open(dataset / "train.pkl", "wb") as f:  # an object built with keyword arguments, at protocol 2
        pickle.dump([{"name": f"pour_{i}_real_0", "k": KeywordBuilt(1)} for i in range(12)], f, protocol=2)
    assert split_names("pouring", str(dataset), "train") == [f"pour_{i}" for i in range(2)]
    with open(dataset / "train.pkl", "wb") as f:  # a name that is an object: one line
        pickle.dump([{"name": Payload(marker)} for _ in range(12)], f)
    with pytest.raises(UserError, match="'name' must be a string"):
        split_names("pouring", str(dataset), "train")
    assert not marker.exists()


# ----------------------------------------------------------------------------- 5. finished runs are kept

def test_finished_alignment_run_is_not_overwritten(root, tmp_path):
    out = tmp_path / "run"
    _align(root, out)
    before = (out / "best.pth").read_bytes(), (out / "results.json").read_text()
    with pytest.raises(UserError, match="already holds a run"):
        _align(root, out)
    assert ((out / "best.pth").read_bytes(), (out / "results.json").read_text()) == before
    _align(root, out, "--overwrite", "--seed", "3")
    assert json.loads((out / "results.json").read_text())["config"]["seed"] == 3


# ----------------------------------------------------------------------------- 6. typed action configs

@pytest.mark.parametrize("key, value, message", [
    ("SOLVER.BASE_LR", "abc", "SOLVER.BASE_LR must be a float"),
    ("TRAIN.BATCH_SIZE", "x", "TRAIN.BATCH_SIZE must be a int"),
    ("SOLVER.MAX_EPOCH", "three", "SOLVER.MAX_EPOCH must be a int"),
    ("TRL.ENABLE", "maybe", "TRL.ENABLE must be true or false"),
    ("SOLVER.MAX_EPOCH", "-1", "SOLVER.MAX_EPOCH must be at least 1"),
    ("SOLVER.BASE_LR", "0", "SOLVER.BASE_LR must be positive"),
    ("DATA.STD", "[0.0, 0.0, 0.0]", r"DATA.STD must be positive, got \[0.0, 0.0, 0.0\]"),
    ("DATA.TRAIN_CROP_SIZE", "0", "DATA.TRAIN_CROP_SIZE must be at least 1"),
    ("TIMESFORMER.NUM_HEADS", "0", "TIMESFORMER.NUM_HEADS must be at least 1"),  # before EMBED_DIM % NUM_HEADS
    ("MODEL.DROPOUT_RATE", "1.5", r"MODEL.DROPOUT_RATE must be in \[0, 1\)"),
    ("SOLVER.WEIGHT_DECAY", "-1.0", "SOLVER.WEIGHT_DECAY must be at least 0"),
    ("LOG.PERIOD", "0", "LOG.PERIOD must be at least 1"),
    ("SOLVER.BASE_LR", "!!python/object/apply:os.system ['true']", "not a plain YAML value"),
])
def test_action_config_values_are_typed(key, value, message):
    with pytest.raises(UserError, match=message):
        load_config(os.path.join(ACTION, "configs", "TimeSformer_demo_cpu.yaml"), [key, value])
    assert load_config(None, ["SOLVER.BASE_LR", "1"]).SOLVER.BASE_LR == 1.0  # an int where a float goes


def test_changed_hyper_parameters_are_named():
    old = {"SOLVER": {"BASE_LR": 0.005, "MAX_EPOCH": 15}, "OUTPUT_DIR": "a"}
    new = {"SOLVER": {"BASE_LR": 0.01, "MAX_EPOCH": 15}, "OUTPUT_DIR": "a"}
    assert changed_keys(old, new) == ["SOLVER.BASE_LR 0.005 -> 0.01"]
    assert changed_keys(old, old) == []


def test_pretrained_model_matching_nothing_is_refused():
    from threedtrl.timesformer.model import build_model
    cfg = load_config(os.path.join(ACTION, "configs", "TimeSformer_3DTRL_demo_cpu.yaml"),
                      ["TIMESFORMER.EMBED_DIM", "48", "TIMESFORMER.DEPTH", "2", "TRL.LOC", "1"])
    with pytest.raises(UserError, match="none of its 2 tensors"):
        load_state(build_model(cfg), {"foo.weight": torch.ones(1), "bar": torch.ones(1)}, "other.pth")


# ----------------------------------------------------------------------------- 7. one line, nothing half-made

@pytest.mark.parametrize("flags, message", [
    (["--img-size", "-3"], "--img-size must be at least 1, got -3"),
    (["--input-size", "3", "-5", "32"], r"--input-size must be at least 1, got \[3, -5, 32\]"),
    (["--std", "0", "0", "0"], "--std must be positive"),
    (["--mean", "0.5", "nan", "0.5"], "--mean must be a finite number"),
    (["--crop-pct", "0"], "--crop-pct must be positive"),
    (["--lr", "-1"], "--lr must be at least 0"),
    (["--lr", "inf"], "--lr must be a finite number"),
    (["--smoothing", "1"], r"--smoothing must be in \[0, 1\)"),
    (["--drop-path", "1.5"], r"--drop-path must be in \[0, 1\)"),
    (["--reprob", "2"], r"--reprob must be in \[0, 1\]"),
    (["--warmup-epochs", "-2"], "--warmup-epochs must be at least 0"),
    (["--scale", "0.9", "0.1"], "--scale must be"),
    (["--opt", "nosuchopt"], "optimizer .*nosuchopt"),
    (["--sched", "nosuch"], "schedule .*nosuch"),
    (["--aa", "garbage"], "training augmentation .*garbage"),
    (["--train-interpolation", "xx"], "training augmentation .*'xx'"),
    (["--interpolation", "yy"], "validation transform .*'yy'"),
])
def test_imagenet_values_torch_or_timm_would_stop_on_are_one_line(flags, message, tmp_path):
    """Each of these stopped with a traceback inside torch or timm after the run had started."""
    with pytest.raises(UserError, match=message):
        imagenet_train.parse_args([str(tmp_path), *flags])
    if flags[0] in ("--img-size", "--std", "--mean", "--crop-pct", "--interpolation"):
        checkpoint = tmp_path / "model.pth"
        torch.save({"state_dict": {}}, checkpoint)
        with pytest.raises(UserError, match=message):
            imagenet_val.parse_args([str(tmp_path), "--checkpoint", str(checkpoint), *flags])


@pytest.mark.parametrize("model_kwargs", [{"embed_dim": -1}, {"patch_size": 0}, {"num_heads": 0}])
def test_model_arguments_torch_stops_on_are_one_line(model_kwargs):
    from threedtrl.classification.models import build_classifier
    with pytest.raises(UserError, match="cannot build 'vit_3dtrl_tiny_patch16_224'"):
        build_classifier("vit_3dtrl_tiny_patch16_224", 10, img_size=32, model_kwargs=model_kwargs)


@pytest.mark.parametrize("flags, message", [
    (["--std", "0", "0", "0"], "--std must be positive"),
    (["--mean", "1", "nan", "1"], "--mean must be a finite number"),
    (["--wise_alpha", "2"], r"--wise_alpha must be in \[0, 1\]"),
])
def test_alignment_values_are_checked(root, tmp_path, flags, message):
    with pytest.raises(UserError, match=message):
        _align(root, tmp_path / "run", *flags)
    assert not (tmp_path / "run").exists()


def test_alignment_bad_inputs_are_one_line(root, tmp_path):
    other = str(tmp_path / "other.pth")
    torch.save({"state_dict": {}, "epoch": 1}, other)  # a checkpoint of another task
    with pytest.raises(UserError, match="not a checkpoint of multiview_video_alignment.py"):
        mva.main(["--test", other, "--data", "mc", "--data_root", root])
    with pytest.raises(UserError, match="smaller than one patch"):
        _align(root, tmp_path / "small", "--img_size", "7")
    assert not (tmp_path / "small").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="cannot write to output folder"):
        _align(root, tmp_path / "file" / "out")
    with pytest.raises(UserError, match="torchrun --nproc_per_node 4 .* --data mc"):
        mva.main(["--distributed", "1", "--gpus", "4", "--data", "mc"])


def test_user_error_from_a_loader_worker_is_one_line(capsys):
    wrapped = UserError("Caught UserError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                        "last):\n  File \"x.py\", line 1\nutils.UserError: cannot decode image a.png: OSError")

    def main():
        raise wrapped
    with pytest.raises(SystemExit):
        run_cli(main)
    assert capsys.readouterr().err == "error: cannot decode image a.png: OSError\n"


# ----------------------------------------------------------------------------- 8. nothing of the user's deleted

def test_ftpv_renderer_keeps_user_files(root, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(os.path.join(root, MC), out / TINY.folder)
    user_file = out / TINY.folder / "tr_0001" / "fpv" / "notes.txt"
    user_file.write_text("mine")
    with pytest.raises(UserError, match="notes.txt"):
        render_dataset(str(out), TINY, seed=5, workers=1, progress=False)
    assert user_file.read_text() == "mine"
    foreign = tmp_path / "foreign"
    os.makedirs(foreign / TINY.folder / "my_stuff")
    with pytest.raises(UserError, match="did not write"):
        render_dataset(str(foreign), TINY, seed=5, workers=1, progress=False)
    assert os.listdir(foreign / TINY.folder) == ["my_stuff"]


def test_action_and_object_renderers_refuse_user_folders(tmp_path):
    user = tmp_path / "mine"
    os.makedirs(user / "train" / "cat")
    (user / "train.csv").write_text("my list\n")
    with pytest.raises(UserError, match="did not write"):
        render_actions(str(user), "tiny", seed=0, workers=1, progress=False)
    with pytest.raises(UserError, match="did not write"):
        render_objects.main(["--out", str(user), "--preset", "tiny", "--workers", "1", "--no-progress"])
    assert (user / "train.csv").read_text() == "my list\n" and os.listdir(user / "train") == ["cat"]


def test_demo_targets_delete_nothing():
    with open(os.path.join(REPO, "Makefile")) as f:
        recipes = [line for line in f if line.startswith("\t")]
    assert not [line for line in recipes if "rm -rf" in line and "output" in line]


# ----------------------------------------------------------------------------- 9. no leftovers

def test_stale_temporaries_are_removed_on_the_next_start(root, tmp_path):
    out = tmp_path / "run"
    os.makedirs(out)
    (out / ".tmp-abc123last.pth").write_bytes(b"half a checkpoint")
    (out / "mine.txt").write_text("kept")
    prepare_output_dir(str(out))
    assert sorted(os.listdir(out)) == ["mine.txt"]
    (out / ".tmp-xyzbest.pth").write_bytes(b"half")
    _align(root, out)
    assert not [name for name in os.listdir(out) if name.startswith(".tmp-")]


# ----------------------------------------------------------------------------- 10. smaller

def test_compat_with_an_existing_torchvision_namespace():
    code = ("import ctypes, torch\n"
            "lib = torch.library.Library('torchvision', 'DEF')\n"
            "lib.define('nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')\n"
            "def refuse(*a, **k):\n    raise OSError('extension does not load')\n"
            "ctypes.CDLL = refuse\n"
            "import threedtrl.runtime.compat\n"
            "assert hasattr(torch.ops.torchvision, 'qnms')\n"
            "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_unwritable_output_folders_are_one_line(tmp_path):
    import imagenet_train
    from threedtrl.timesformer import launch as run_net
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot write to output folder"):
        render_dataset(str(blocker / "data"), TINY, seed=5, workers=1, progress=False)
    with pytest.raises(UserError, match="cannot write to output folder"):
        render_objects.main(["--out", str(blocker / "objects"), "--preset", "tiny", "--workers", "1",
                             "--no-progress"])
    with pytest.raises(UserError, match="cannot write to output folder"):
        render_actions(str(blocker / "actions"), "tiny", seed=0, workers=1, progress=False)
    objects = str(tmp_path / "objects")
    render_objects.main(["--out", objects, "--preset", "tiny", "--workers", "1", "--no-progress"])
    with pytest.raises(UserError, match="cannot write to output folder"):
        imagenet_train.main([objects, "--model", "vit_tiny_patch16_224", "--img-size", "32", "--model-kwargs",
                             "patch_size=8", "depth=1", "-b", "4", "-j", "0", "--epochs", "1", "--no-progress",
                             "--output", str(blocker / "out")])
    result = subprocess.run(["bash", "i1k.sh", "1", objects, "--output", str(blocker / "out")], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith("error: cannot write to output folder")
    assert result.stderr.count("\n") == 1
    actions = str(tmp_path / "actions")
    render_actions(actions, "tiny", seed=0, workers=1, progress=False)
    with pytest.raises(UserError, match="cannot write to output folder"):
        run_net.main(["--cfg", os.path.join(ACTION, "configs", "TimeSformer_3DTRL_demo_cpu.yaml"),
                      "DATA.PATH_TO_DATA_DIR", actions, "OUTPUT_DIR", str(blocker / "run")])


# ----------------------------------------------------------------------------- hostile configs

ALIAS_BOMB = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8))


def test_yaml_aliases_are_refused_everywhere(tmp_path):
    """Nine levels of ten-fold aliases would expand to 10^9 items; every YAML reader refuses aliases."""
    import resource
    import imagenet_train
    from threedtrl.runtime.config import Config, load_yaml
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(yaml.YAMLError, match="aliases"):
        load_yaml(ALIAS_BOMB)
    config = tmp_path / "bomb.yaml"
    config.write_text("lr: 0.1\nmodel_kwargs:\n  " + ALIAS_BOMB.replace("\n", "\n  "))
    with pytest.raises(UserError, match="aliases"):
        imagenet_train.parse_args([str(tmp_path), "-c", str(config)])
    with pytest.raises(UserError, match="aliases"):
        Config({"SOLVER": {"LRS": [1]}}).merge_list(["SOLVER.LRS", "&a [1, *a]"])
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # kB: nothing was expanded


def test_string_overrides_keep_a_hash(tmp_path):
    """``OUT #3`` is a folder name, not ``OUT`` and a YAML comment."""
    from threedtrl.timesformer.config import load_config
    cfg = load_config(None, ["OUTPUT_DIR", "OUT #3", "DATA.PATH_TO_DATA_DIR", "DATA #x", "SOLVER.BASE_LR", "0.1 # c"])
    assert cfg.OUTPUT_DIR == "OUT #3" and cfg.DATA.PATH_TO_DATA_DIR == "DATA #x" and cfg.SOLVER.BASE_LR == 0.1


def test_error_messages_cut_long_values():
    from utils import Config
    with pytest.raises(UserError) as err:
        Config({"A": 1.0}).merge_list(["A", "[" + ", ".join(["1"] * 5000) + "]"])
    assert len(str(err.value)) < 200


# ----------------------------------------------------------------------------- one run per folder

def test_a_run_holds_its_folder_and_a_stale_lock_is_taken_over(tmp_path):
    from threedtrl.runtime import check_output_dir, hold_output_dir
    from threedtrl.runtime.files import LOCK_NAME
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from threedtrl.runtime import hold_output_dir; "
                               "hold_output_dir(sys.argv[1]); print('held', flush=True); time.sleep(60)", str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=f"in use by another run \\(process {holder.pid}\\)"):
            hold_output_dir(str(tmp_path))
        with pytest.raises(UserError, match="in use by another run"):
            check_output_dir(str(tmp_path))
        with pytest.raises(UserError, match="in use by another run"):
            mva.main(["--data", "mc", "--data_root", str(tmp_path), "--output_dir", str(tmp_path), "--device", "cpu"])
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / LOCK_NAME).is_file()  # killed: the lock is left behind, and taken over
    hold_output_dir(str(tmp_path))
    assert (tmp_path / LOCK_NAME).read_text().split()[0] == str(os.getpid())
    hold_output_dir(str(tmp_path))  # the holder may come back to its folder


def test_weights_that_diverge_in_the_last_step_are_never_saved(tmp_path):
    """A huge lr makes the weights non-finite after the epoch's last update (the per-step loss check
    cannot see it): the run stops in one line and no checkpoint of that epoch is written."""
    import imagenet_train
    data = str(tmp_path / "objects")
    render_objects.main(["--out", data, "--preset", "tiny", "--workers", "1", "--no-progress"])
    args = [data, "--model", "vit_3dtrl_tiny_patch16_224", "--img-size", "32", "--model-kwargs", "patch_size=8",
            "depth=2", "--trl-depth", "1", "-b", "24", "-j", "0", "--warmup-epochs", "0", "--cooldown-epochs", "0",
            "--no-progress", "--epochs", "1", "--lr", "1e4",
            "--output", str(tmp_path / "out"), "--experiment", "nan"]
    with pytest.raises(UserError, match="training diverged"):
        imagenet_train.main(args)
    assert not glob.glob(str(tmp_path / "out" / "nan" / "*.pth.tar"))


def test_a_new_lr_is_applied_on_resume(tmp_path):
    """``--lr`` given with ``--resume`` replaces the checkpoint's rate (ImageNet), with a line saying so."""
    import imagenet_train
    data = str(tmp_path / "objects")
    render_objects.main(["--out", data, "--preset", "tiny", "--workers", "1", "--no-progress"])
    common = [data, "--model", "vit_3dtrl_tiny_patch16_224", "--img-size", "32", "--model-kwargs", "patch_size=8",
              "depth=2", "--trl-depth", "1", "-b", "8", "-j", "0", "--warmup-epochs", "0", "--cooldown-epochs", "0",
              "--no-progress", "--sched", "step", "--decay-epochs", "100", "--output", str(tmp_path / "out"),
              "--experiment", "lr"]
    imagenet_train.main(common + ["--epochs", "1", "--lr", "0.2"])
    last = str(tmp_path / "out" / "lr" / "last.pth.tar")
    imagenet_train.main(common + ["--epochs", "2", "--lr", "1e-3", "--resume", last])
    rows = json.loads((tmp_path / "out" / "lr" / "metrics.json").read_text())["epochs"]
    assert [row["lr"] for row in rows] == pytest.approx([0.2, 1e-3])


# ----------------------------------------------------------------------------- full disk

def test_a_full_disk_is_one_line_and_keeps_earlier_files(tmp_path, monkeypatch):
    import errno
    from threedtrl.runtime import atomic_write, save_checkpoint_atomic
    import threedtrl.runtime.files as files
    save_checkpoint_atomic({"w": torch.ones(3)}, str(tmp_path / "last.pth"))

    def no_space(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(UserError, match="no space left on the device"):
        atomic_write(str(tmp_path / "last.pth"), no_space)
    # torch's zip writer says only "file write failed": a device with almost no room left tells
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10, 10, 0))
    def failing_save(obj, f):
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")
    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(UserError, match="no space left on the device"):
        save_checkpoint_atomic({"w": torch.zeros(3)}, str(tmp_path / "last.pth"))
    assert sorted(os.listdir(tmp_path)) == ["last.pth"]
    assert torch.equal(torch.load(tmp_path / "last.pth")["w"], torch.ones(3))


def test_a_failed_image_write_is_an_error_not_an_empty_file(tmp_path, monkeypatch):
    import cv2
    out = tmp_path / "objects"
    monkeypatch.setattr(cv2, "imwrite", lambda *args, **kwargs: False)
    with pytest.raises(UserError, match="cannot write image"):
        render_objects.main(["--out", str(out), "--preset", "tiny", "--workers", "1", "--no-progress"])
    assert not [p for p in out.rglob("*.png")]


# ----------------------------------------------------------------------------- silently wrong data

def test_sixteen_bit_greyscale_images_are_scaled_not_clipped(tmp_path):
    from PIL import Image
    from threedtrl.classification.data import StrictImageFolder
    (tmp_path / "a").mkdir()
    levels = np.array([[0, 257 * 100], [257 * 200, 65535]], dtype=np.uint16)
    Image.fromarray(levels).save(tmp_path / "a" / "x.png")
    assert Image.open(tmp_path / "a" / "x.png").mode.startswith("I")
    image, _ = StrictImageFolder(str(tmp_path))[0]
    assert np.asarray(image)[:, :, 0].tolist() == [[0, 100], [200, 255]]


def test_json_results_hold_null_for_nan(tmp_path):
    from threedtrl.runtime import write_json_atomic
    write_json_atomic({"a": float("nan"), "b": [1.0, float("inf")], "c": 2}, str(tmp_path / "r.json"))
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": None, "b": [1.0, None], "c": 2}
    assert "NaN" not in (tmp_path / "r.json").read_text()


def test_a_byte_order_mark_is_not_part_of_the_first_path(tmp_path):
    from threedtrl.timesformer.dataset import read_video_list
    (tmp_path / "v.mp4").write_bytes(b"x")
    (tmp_path / "train.csv").write_text("\ufeffv.mp4 0\n", encoding="utf-8")
    assert read_video_list(str(tmp_path / "train.csv"), str(tmp_path), 1) == [(str(tmp_path / "v.mp4"), 0)]


def test_more_mistakes_are_one_line_before_the_work(tmp_path, monkeypatch):
    import imagenet_val
    from data_pipeline import TrajectoryDataset
    with pytest.raises(UserError, match="is a folder; give a file name"):
        imagenet_val.main([str(tmp_path), "--checkpoint", __file__, "--results-file", str(tmp_path)])
    import cv2

    def small_shm(self):
        raise RuntimeError("unable to write to file </torch_1>: No space left on device (28)")
    monkeypatch.setattr(torch.Tensor, "share_memory_", small_shm)
    traj_root = tmp_path / "set" / "tr_0000"
    for folder in ("fpv", "tpv/view_0000"):
        (traj_root / folder).mkdir(parents=True)
        for t in range(2):
            cv2.imwrite(str(traj_root / folder / f"{t:06d}.jpg"), np.zeros((8, 8, 3), np.uint8))
    from data_pipeline.ftpv import open_trajectory
    trajectory = open_trajectory(str(tmp_path / "set"), "tr_0000", [0])
    with pytest.raises(UserError, match="shared memory .*--num_workers 0"):
        TrajectoryDataset([trajectory], 8, progress=False)
    assert TrajectoryDataset([trajectory], 8, progress=False, shared=False)[0].shape == (2, 2, 3, 8, 8)


def test_resume_of_bare_weights_is_refused_and_i1k_sh_keeps_odd_paths(tmp_path):
    import imagenet_train
    data = str(tmp_path / "objects")
    render_objects.main(["--out", data, "--preset", "tiny", "--workers", "1", "--no-progress"])
    torch.save({"w": torch.ones(1)}, tmp_path / "weights.pth")
    with pytest.raises(UserError, match="holds no training state"):
        imagenet_train.parse_args([data, "--resume", str(tmp_path / "weights.pth")])
    out = tmp_path / "a output b"
    result = subprocess.run(["bash", "i1k.sh", "1", data, "--model", "vit_3dtrl_tiny_patch16_224", "--img-size", "32",
                             "--model-kwargs", "patch_size=8", "depth=2", "--trl-depth", "1", "-b", "8", "-j", "0",
                             "--epochs", "1", "--warmup-epochs", "0", "--cooldown-epochs", "0", "--no-progress",
                             "--output", str(out), "--experiment", "e"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (out / "e" / "torchrun_logs").is_dir() and (out / "e" / "last.pth.tar").is_file()


def test_a_busy_master_port_is_one_line(tmp_path):
    import socket
    data = str(tmp_path / "objects")
    render_objects.main(["--out", data, "--preset", "tiny", "--workers", "1", "--no-progress"])
    with socket.socket() as held:
        held.bind(("", 0))
        held.listen()
        port = held.getsockname()[1]
        result = subprocess.run(["bash", "i1k.sh", "1", data, "--model", "vit_3dtrl_tiny_patch16_224", "--img-size",
                                 "32", "-b", "8", "--output", str(tmp_path / "out")], cwd=REPO, capture_output=True,
                                text=True, env=dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and lines == [f"error: MASTER_PORT {port} is in use on this machine: "
                                                f"set MASTER_PORT to a free port"], result.stderr


def _process_state(pid: int):
    """``(state letter, parent pid)`` of a live process from ``/proc``, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1])
    except (OSError, ValueError, IndexError):
        return None


def test_a_process_whose_parent_died_during_its_start_up_ends():
    """die_with_parent(PID) of a process whose parent is no longer PID (it died while this one started)."""
    code = "import time; from threedtrl.runtime.distributed import die_with_parent; die_with_parent(1); time.sleep(30)"
    result = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert result.returncode == -15  # SIGTERM, at once


def test_render_workers_end_with_the_main_process(tmp_path):
    """kill -9 of render_ftpv leaves no worker rendering on."""
    import signal
    import time
    proc = subprocess.Popen([sys.executable, "-m", "data_pipeline.render_ftpv", "--out", str(tmp_path / "r"), "--preset",
                             "demo", "--workers", "2"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def children():
        return [int(p) for p in filter(str.isdigit, os.listdir("/proc"))
                if (_process_state(int(p)) or ("", 0))[1] == proc.pid]

    def alive(pid):
        state = _process_state(pid)
        return state is not None and state[0] != "Z"
    deadline = time.time() + 60
    while time.time() < deadline and len(children()) < 2:
        time.sleep(0.2)
    workers = children()
    assert len(workers) >= 2
    while time.time() < deadline and not any((tmp_path / "r").rglob("*.jpg")):
        time.sleep(0.2)  # the workers are rendering
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 60  # a worker still starting up ends when its start-up is done
    while time.time() < deadline and any(alive(pid) for pid in workers):
        time.sleep(0.2)
    assert not [pid for pid in workers if alive(pid)]
