"""ImageNet training/evaluation: configs, data checks, perturbation, resume, determinism, bad input."""
import glob
import json
import os
import re
import shutil
import sys
import subprocess
import tempfile

import numpy as np
import pytest
import torch
from PIL import Image

import imagenet_train
import imagenet_val
from threedtrl.classification.data import perspective_warp, perturb_rng
from threedtrl.tools import render_objects
from threedtrl.runtime import UserError, seed_everything

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "i1k_configs", "*.yaml")))
SMALL_MODEL = ["--model", "vit_3dtrl_tiny_patch16_224", "--img-size", "32", "--model-kwargs", "patch_size=8",
               "depth=2", "--trl-depth", "1"]
QUICK = ["-b", "4", "-j", "0", "--warmup-epochs", "0", "--cooldown-epochs", "0", "--no-progress", "--lr", "1e-3"]


@pytest.fixture(scope="module")
def objects(tmp_path_factory):
    """The tiny rendered ImageFolder: 3 classes, 8 train and 4 val images each, 32 px."""
    out = str(tmp_path_factory.mktemp("objects"))
    render_objects.main(["--out", out, "--preset", "tiny", "--workers", "1", "--no-progress"])
    return out


def run_script(*args, check_error=True):
    result = subprocess.run(list(args), cwd=ROOT, capture_output=True, text=True)
    if check_error:
        lines = result.stderr.strip().splitlines()
        assert result.returncode != 0, result.stdout
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return result


# ----------------------------------------------------------------------------- configs

def test_sixteen_release_configs():
    names = {os.path.splitext(os.path.basename(p))[0] for p in CONFIGS}
    assert names == {
        "vit_1k_scratch", "vit_1k_nomixup", "vit_b_1k_scratch", "vit_3dtrl_1k_scratch", "vit_3dtrl_1k_nomixup",
        "vit_3dtrl_t_savecheck", "vit_3dtrl_s_1k_scratch", "vit_3dtrl_s_1k_nomixup", "vit_3dtrl_b_1k_scratch",
        "vit_3dtrlcat_1k_scratch", "vit_3dtrlcat_s_1k_scratch", "swin_t_scratch", "swin_s_scratch",
        "swin_3dtrl_s_scratch", "swin_3dtrl_t_nomixup", "swin_3dtrl_s_nomixup"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.basename(p))
def test_release_config_builds_its_model(path, objects):
    args = imagenet_train.parse_args([objects, "-c", path])
    with torch.device("meta"):
        net = imagenet_train.create_model(args, 1000)
    assert net.num_classes == 1000
    if "3dtrl" in args.model:
        assert net.trl_depth == args.trl_depth
        assert net.three_d_trl.cat == ("3dtrlcat" in path)
    if args.model.startswith("vit"):
        assert (args.opt, args.opt_eps, args.weight_decay, args.clip_grad) == ("adamw", 1e-6, 0.3, 1.0)
        assert args.model_ema and args.model_ema_decay == 0.99992 and args.aa == "rand-m15-n2-mstd1.0-inc1"
        assert args.warmup_epochs == 15 and args.ratio == (0.67, 1.5)
    else:
        assert (args.opt_eps, args.weight_decay, args.clip_grad, args.reprob) == (1e-8, 0.05, 5.0, 0.25)
        assert not args.model_ema and args.warmup_epochs == 20 and args.drop_path == 0.1


def test_release_values_of_main_configs(objects):
    cfg = os.path.join(ROOT, "i1k_configs")
    args = imagenet_train.parse_args([objects, "-c", os.path.join(cfg, "vit_3dtrl_1k_scratch.yaml")])
    assert (args.model, args.trl_depth, args.batch_size, args.lr) == ("vit_3dtrl_tiny_patch16_224", 4, 512, 1.5e-3)
    assert (args.mixup, args.cutmix, args.smoothing, args.epochs, args.min_lr) == (0.5, 1.0, 0.1, 300, 1e-5)
    args = imagenet_train.parse_args([objects, "-c", os.path.join(cfg, "swin_3dtrl_t_nomixup.yaml")])
    assert (args.trl_depth, args.batch_size, args.lr, args.mixup, args.cutmix) == (2, 128, 1e-3, 0.0, 0.0)
    args = imagenet_train.parse_args([objects, "-c", os.path.join(cfg, "swin_3dtrl_s_scratch.yaml")])
    assert (args.trl_depth, args.mixup, args.cutmix) == (1, 0.8, 1.0)


def test_override_order(tmp_path, objects):
    config = tmp_path / "c.yaml"
    config.write_text("lr: 0.1\nbatch-size: 8\nmodel_ema: true\nscale: [0.5, 1.0]\nnpl_depth: 3\n")
    args = imagenet_train.parse_args([objects, "--lr", "0.2", "-c", str(config), "--no-model-ema"])
    assert args.lr == 0.2                    # command line beats the config
    assert args.batch_size == 8              # config beats the default (key spelt with '-')
    assert args.model_ema is False           # boolean flags can be switched off
    assert args.scale == (0.5, 1.0) and args.trl_depth == 3  # npl_depth is the release's trl_depth
    assert args.weight_decay == 0.05         # default where neither sets it
    assert args.experiment == "c"


def test_flags_timm_0_6_12_added_are_taken(tmp_path, objects):
    from timm.scheduler import create_scheduler_v2, scheduler_kwargs
    config = tmp_path / "args.yaml"   # what timm 0.6.12's train.py writes beside its checkpoints
    config.write_text("sched: multistep\ndecay_milestones: [2, 4]\ndecay_rate: 0.1\nwarmup_epochs: 0\n"
                      "fast_norm: true\naot_autograd: false\nepochs: 6\nlr: 1.0\n")
    args = imagenet_train.parse_args([objects, "-c", str(config)])
    assert args.decay_milestones == [2, 4] and args.fast_norm is True
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=args.lr)
    scheduler, _ = create_scheduler_v2(optimizer, **scheduler_kwargs(args))
    rates = []
    for epoch in range(6):
        scheduler.step(epoch)
        rates.append(optimizer.param_groups[0]["lr"])
    # timm (0.6.12 and 1.x alike) drops the rate at the end of the epoch before each milestone
    assert rates == pytest.approx([1.0, 0.1, 0.1, 0.01, 0.01, 0.01])
    config.write_text("aot_autograd: true\n")
    with pytest.raises(UserError, match="aot_autograd True: not supported here"):
        imagenet_train.parse_args([objects, "-c", str(config)])
    checkpoint = tmp_path / "w.pth"
    torch.save({"state_dict": {}}, checkpoint)
    args = imagenet_val.parse_args([objects, "--checkpoint", str(checkpoint), "--fast-norm", "--use-train-size"])
    assert args.fast_norm and args.use_train_size
    with pytest.raises(UserError, match="retry True: not supported here"):
        imagenet_val.parse_args([objects, "--checkpoint", str(checkpoint), "--retry"])


def test_unknown_config_key(tmp_path, objects):
    config = tmp_path / "bad.yaml"
    config.write_text("lr: 0.1\nlearning_rate: 0.2\n")
    with pytest.raises(UserError, match="unknown key 'learning_rate'"):
        imagenet_train.parse_args([objects, "-c", str(config)])
    result = run_script("bash", "i1k.sh", "2", objects, "-c", str(config), "--output", str(tmp_path / "out"))
    assert "unknown key 'learning_rate'" in result.stderr and not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- perturbation

def test_perturbation_is_seeded_and_keeps_size():
    image = Image.fromarray(np.full((40, 56, 3), 200, dtype=np.uint8))
    a = np.asarray(perspective_warp(image, perturb_rng(0, 7)))
    b = np.asarray(perspective_warp(image, perturb_rng(0, 7)))
    c = np.asarray(perspective_warp(image, perturb_rng(1, 7)))
    d = np.asarray(perspective_warp(image, perturb_rng(0, 8)))
    assert a.shape == (40, 56, 3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)
    assert (a == 0).all(axis=-1).mean() > 0.02  # black fill outside the warped frame
    assert (a[20, 28] == 200).all()              # the centre stays inside the frame


def test_perturbed_eval_is_deterministic(objects, tmp_path):
    ckpt = train_quick(objects, tmp_path, "p")
    results = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.json"
        imagenet_val.main([objects, "--checkpoint", ckpt, "--perturbed", "-j", "0", "--no-progress",
                           "--results-file", str(out)])
        results.append(json.loads(out.read_text()))
    assert results[0]["top1"] == results[1]["top1"] and results[0]["loss"] == results[1]["loss"]
    assert results[0]["perturbed"] and results[0]["num_images"] == 12


# ----------------------------------------------------------------------------- training

def train_quick(objects, tmp_path, experiment, *extra):
    imagenet_train.main([objects, *SMALL_MODEL, *QUICK, "--output", str(tmp_path), "--experiment", experiment,
                         "--epochs", "1", *extra])
    return str(tmp_path / experiment / "last.pth.tar")


def test_resume_continues_epochs_and_optimizer(objects, tmp_path):
    last = train_quick(objects, tmp_path, "r", "--model-ema")
    first = torch.load(last, map_location="cpu", weights_only=False)
    steps = {s["step"].item() for s in first["optimizer"]["state"].values()}
    assert first["epoch"] == 0 and steps == {6.0}  # 24 images / batch 4
    imagenet_train.main([objects, *SMALL_MODEL, *QUICK, "--output", str(tmp_path), "--experiment", "r",
                         "--epochs", "2", "--model-ema", "--resume", last])
    second = torch.load(last, map_location="cpu", weights_only=False)
    assert second["epoch"] == 1
    assert {s["step"].item() for s in second["optimizer"]["state"].values()} == {12.0}
    assert "state_dict_ema" in second
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics["epochs"]] == [0, 1]
    assert (tmp_path / "r" / "summary.csv").read_text().count("\n") == 3
    with pytest.raises(UserError, match="already holds a run"):
        train_quick(objects, tmp_path, "r")


def test_same_seed_same_numbers(objects, tmp_path):
    for name in ("a", "b"):
        train_quick(objects, tmp_path, name, "--mixup", "0.5", "--cutmix", "1.0", "--aa", "rand-m15-n2-mstd1.0-inc1")
    rows = [json.loads((tmp_path / n / "metrics.json").read_text())["epochs"][0] for n in ("a", "b")]
    assert rows[0]["train_loss"] == rows[1]["train_loss"] and rows[0]["eval_loss"] == rows[1]["eval_loss"]


def test_torchcompile_trains_like_eager_and_saves_plain_keys(objects, tmp_path):
    eager = torch.load(train_quick(objects, tmp_path, "eager"), map_location="cpu", weights_only=False)
    compiled = torch.load(train_quick(objects, tmp_path, "compiled", "--torchcompile", "aot_eager"),
                          map_location="cpu", weights_only=False)
    assert list(compiled["state_dict"]) == list(eager["state_dict"])
    rows = [json.loads((tmp_path / n / "metrics.json").read_text())["epochs"][0] for n in ("eager", "compiled")]
    assert rows[1]["train_loss"] == pytest.approx(rows[0]["train_loss"], rel=1e-4)
    imagenet_val.main([objects, "--checkpoint", str(tmp_path / "compiled" / "last.pth.tar"), "-j", "0",
                       "--no-progress", "--torchcompile", "aot_eager",
                       "--results-file", str(tmp_path / "val.json")])
    assert json.loads((tmp_path / "val.json").read_text())["loss"] == pytest.approx(rows[0]["eval_loss"], rel=1e-4)
    with pytest.raises(UserError, match="unknown torch.compile backend 'nope'"):
        train_quick(objects, tmp_path, "bad", "--torchcompile", "nope")


# ----------------------------------------------------------------------------- bad input

def make_folder(root, train_classes, val_classes, empty=()):
    for split, classes in (("train", train_classes), ("val", val_classes)):
        os.makedirs(root / split, exist_ok=True)
        for name in classes:
            os.makedirs(root / split / name)
            if name not in empty:
                Image.new("RGB", (8, 8)).save(root / split / name / "0.png")
    return str(root)


def bad_inputs(tmp_path):
    return {
        "missing folder": ([str(tmp_path / "nope")], "data folder not found"),
        "empty folder": ([make_folder(tmp_path / "empty", [], [])], "no class folders"),
        "empty class": ([make_folder(tmp_path / "ec", ["a", "b"], ["a", "b"], empty=("b",))], "holds no images"),
        "class mismatch": ([make_folder(tmp_path / "mm", ["a", "b"], ["a", "c"])], "class folders differ"),
        "unknown model": ([make_folder(tmp_path / "ok", ["a"], ["a"]), "--model", "vit_nonexistent"],
                          "unknown model"),
        "batch too large": ([make_folder(tmp_path / "few", ["a"], ["a"]), "-b", "2"], "no full batch"),
    }


@pytest.mark.parametrize("case", ["missing folder", "empty folder", "empty class", "class mismatch", "unknown model",
                                  "batch too large"])
def test_bad_input_in_process(case, tmp_path):
    argv, message = bad_inputs(tmp_path)[case]
    with pytest.raises(UserError, match=message):
        imagenet_train.main(argv + ["--check-only", "--output", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["missing folder", "class mismatch", "unknown model"])
def test_bad_input_through_i1k_sh(case, tmp_path):
    argv, message = bad_inputs(tmp_path)[case]
    result = run_script("bash", "i1k.sh", "2", *argv, "--output", str(tmp_path / "out"))
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "out").exists()


def test_i1k_sh_argument_checks(tmp_path):
    assert "usage" in run_script("bash", "i1k.sh", "2").stderr
    assert "NUM_PROC" in run_script("bash", "i1k.sh", "zero", str(tmp_path)).stderr
    late = run_script("bash", "i1k.sh", "2", "--output", str(tmp_path / "out"), str(tmp_path / "nope"))
    assert late.returncode == 2 and late.stderr.strip() == f"error: data folder not found: {tmp_path / 'nope'}"
    assert not (tmp_path / "out").exists()


def test_val_bad_input(objects, tmp_path):
    with pytest.raises(UserError, match="checkpoint not found"):
        imagenet_val.main([objects, "--checkpoint", str(tmp_path / "none.pth.tar")])
    ckpt = train_quick(objects, tmp_path, "v")
    other = make_folder(tmp_path / "other", ["x", "y"], ["x", "y"])
    with pytest.raises(UserError, match="differ from the 3 classes"):
        imagenet_val.main([other, "--checkpoint", ckpt, "-j", "0", "--no-progress"])


def test_val_compares_the_layers_cameras_with_the_rendered_ones(objects, tmp_path):
    """--cameras: every val image's camera from cameras.csv, pairs of one class (3 classes x 6 pairs of 4
    images), the model beside its references; refused for a model without 3DTRL, with --perturbed
    and for an image the file has no camera for."""
    ckpt = train_quick(objects, tmp_path, "cam")
    cameras = os.path.join(objects, "cameras.csv")
    out = tmp_path / "cam.json"
    imagenet_val.main([objects, "--checkpoint", ckpt, "--cameras", cameras, "-j", "0", "--no-progress",
                       "--results-file", str(out)])
    scores = json.loads(out.read_text())["cameras"]
    assert scores["pairs"]["count"] == 3 * 6
    errors = scores["relative_rotation_error_deg"]
    assert set(errors) == {"model", "shuffled_model", "identical_cameras", "random_rotations", "best_constant_rotation"}
    assert all(0 <= v <= 180 for v in errors.values()) and errors["best_constant_rotation"] <= errors["identical_cameras"]
    with pytest.raises(UserError, match="not with --perturbed"):
        imagenet_val.main([objects, "--checkpoint", ckpt, "--cameras", cameras, "--perturbed"])
    partial = tmp_path / "partial.csv"
    partial.write_text("".join(line for line in open(cameras) if "val,duck,00002.png" not in line))
    with pytest.raises(UserError, match="no val camera for duck/00002.png"):
        imagenet_val.main([objects, "--checkpoint", ckpt, "--cameras", str(partial), "-j", "0", "--no-progress"])
    imagenet_train.main([objects, "--model", "vit_plain_tiny_patch16_224", "--img-size", "32", "--model-kwargs",
                         "patch_size=8", "depth=2", *QUICK, "--output", str(tmp_path), "--experiment", "plaincam",
                         "--epochs", "1"])
    plain = str(tmp_path / "plaincam" / "last.pth.tar")
    with pytest.raises(UserError, match="one 3DTRL layer"):
        imagenet_val.main([objects, "--checkpoint", plain, "--cameras", cameras, "-j", "0", "--no-progress"])


# ----------------------------------------------------------------------------- two processes

def test_i1k_sh_two_processes_then_val(objects, tmp_path, capsys):
    """A 2-process gloo run through i1k.sh with a release config, the data folder after the flags (the
    release's launcher passed every argument to timm's parser); imagenet_val.py evaluates its checkpoint."""
    config = os.path.join(ROOT, "i1k_configs", "vit_3dtrl_1k_scratch.yaml")
    elastic_before = set(glob.glob(os.path.join(tempfile.gettempdir(), "torchelastic_*")))
    result = subprocess.run(
        ["bash", "i1k.sh", "2", "-c", config, "--epochs", "1", *SMALL_MODEL, *QUICK,
         "--output", str(tmp_path), "--experiment", "ddp", objects],
        cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 processes on cpu" in result.stdout and "AMP is off" in result.stdout
    run_dir = tmp_path / "ddp"
    assert (run_dir / "torchrun_logs").is_dir()       # torchrun's logs beside the run, nothing left in /tmp
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "torchelastic_*"))) == elastic_before
    for name in ("last.pth.tar", "model_best.pth.tar", "summary.csv", "metrics.json", "args.yaml"):
        assert (run_dir / name).is_file(), name
    assert glob.glob(str(run_dir / "events.out.tfevents.*"))
    checkpoint = torch.load(run_dir / "last.pth.tar", map_location="cpu", weights_only=False)
    steps = {s["step"].item() for s in checkpoint["optimizer"]["state"].values()}
    assert steps == {3.0} and checkpoint["args"].world_size == 2  # 24 images / (2 processes x batch 4)
    assert checkpoint["args"].mixup == 0.5 and "state_dict_ema" in checkpoint

    capsys.readouterr()
    out = tmp_path / "val.json"
    imagenet_val.main([objects, "--checkpoint", str(run_dir / "model_best.pth.tar"), "-j", "0", "--no-progress",
                       "--results-file", str(out)])
    printed = capsys.readouterr().out
    match = re.search(r"top1 ([0-9.]+) top5 ([0-9.]+)", printed)
    assert match, printed
    trained = json.loads((run_dir / "metrics.json").read_text())["epochs"][0]
    assert float(match.group(1)) == pytest.approx(trained["eval_top1"], abs=1e-3)
    assert json.loads(out.read_text())["top5"] == pytest.approx(float(match.group(2)), abs=1e-3)


# ----------------------------------------------------------------------------- rendered data

def test_render_is_deterministic_and_resumable(objects, tmp_path):
    out = str(tmp_path / "again")
    render_objects.main(["--out", out, "--preset", "tiny", "--workers", "2", "--no-progress"])
    files = sorted(glob.glob(os.path.join(objects, "*", "*", "*.png")))
    assert len(files) == 3 * (8 + 4)
    victim = os.path.join(out, "val", "duck", "00002.png")
    os.remove(victim)
    render_objects.main(["--out", out, "--preset", "tiny", "--workers", "1", "--no-progress"])
    for path in files:
        copy = os.path.join(out, os.path.relpath(path, objects))
        np.testing.assert_array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(copy)))
    assert Image.open(victim).size == (32, 32)
    record = json.loads(open(os.path.join(out, "render.json")).read())
    assert record["complete"] and record["class_names"] == ["duck", "teddy", "r2d2"]
    train, val = record["views"]["train"]["elevation"], record["views"]["val"]["elevation"]
    assert train[1] < val[0]  # validation viewpoints lie outside the training range
    with pytest.raises(UserError, match="other settings"):
        render_objects.main(["--out", out, "--preset", "tiny", "--seed", "1", "--no-progress"])


# ----------------------------------------------------------------------------- trust

def test_corrupt_image_stops_val_and_training_naming_it(objects, tmp_path):
    data = tmp_path / "objects"
    shutil.copytree(objects, data)
    victim = sorted(glob.glob(str(data / "val" / "*" / "*.png")))[0]
    with open(victim, "wb") as f:
        f.write(np.random.default_rng(0).bytes(512))
    ckpt = train_quick(objects, tmp_path, "c")
    with pytest.raises(UserError, match=f"cannot decode image {re.escape(victim)}"):
        imagenet_val.main([str(data), "--checkpoint", ckpt, "-j", "0", "--no-progress"])
    result = run_script(sys.executable, "imagenet_val.py", str(data), "--checkpoint", ckpt, "-j", "1",
                        "--no-progress")
    assert victim in result.stderr and result.returncode == 2
    with pytest.raises(UserError, match="cannot decode image"):
        train_quick(str(data), tmp_path, "c2")


def test_resume_reproduces_the_uninterrupted_run(objects, tmp_path):
    extra = ["--aa", "rand-m15-n2-mstd1.0-inc1", "--mixup", "0.5", "-j", "1"]
    imagenet_train.main([objects, *SMALL_MODEL, *QUICK, *extra, "--output", str(tmp_path), "--experiment", "full",
                         "--epochs", "2"])
    imagenet_train.main([objects, *SMALL_MODEL, *QUICK, *extra, "--output", str(tmp_path), "--experiment", "cut",
                         "--epochs", "1"])
    last = str(tmp_path / "cut" / "last.pth.tar")
    imagenet_train.main([objects, *SMALL_MODEL, *QUICK, *extra, "--output", str(tmp_path), "--experiment", "cut",
                         "--epochs", "2", "--resume", last])
    full, cut = (json.loads((tmp_path / n / "metrics.json").read_text())["epochs"] for n in ("full", "cut"))
    keys = ("train_loss", "eval_loss", "eval_top1")
    assert [{k: r[k] for k in keys} for r in full] == [{k: r[k] for k in keys} for r in cut]


def test_bad_checkpoints_and_sizes_are_one_line(objects, tmp_path):
    ckpt = train_quick(objects, tmp_path, "b")
    truncated = str(tmp_path / "truncated.pth.tar")
    with open(ckpt, "rb") as src, open(truncated, "wb") as dst:
        dst.write(src.read()[:5000])
    result = run_script("bash", "i1k.sh", "1", objects, *SMALL_MODEL, *QUICK, "--resume", truncated,
                        "--output", str(tmp_path / "o"))
    assert "cannot read --resume checkpoint" in result.stderr
    tensor_file = str(tmp_path / "tensor.pth")
    torch.save(torch.ones(3), tensor_file)
    with pytest.raises(UserError, match="not a checkpoint or state dict"):
        imagenet_val.main([objects, "--checkpoint", tensor_file])
    with pytest.raises(UserError, match="not a checkpoint or state dict"):
        imagenet_train.main([objects, *SMALL_MODEL, "--initial-checkpoint", tensor_file, "--check-only"])
    with pytest.raises(UserError, match="smaller than one patch"):
        imagenet_train.main([objects, "--model", "vit_tiny_patch16_224", "--img-size", "7", "--check-only",
                             "--output", str(tmp_path / "seven")])
    assert not (tmp_path / "seven").exists()


def _processes_running(needle: str):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if needle.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def test_kill_9_of_i1k_sh_stops_its_workers(objects, tmp_path):
    import signal
    import time
    out = str(tmp_path / "killed")
    proc = subprocess.Popen(["bash", "i1k.sh", "1", objects, *SMALL_MODEL, *QUICK, "--epochs", "200",
                             "--output", out], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not glob.glob(os.path.join(out, "*", "last.pth.tar")):
        time.sleep(0.5)
    workers = [pid for pid in _processes_running(out) if pid != proc.pid]
    assert workers, "the worker did not start"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 30
    while time.time() < deadline and _processes_running(out):
        time.sleep(0.5)
    assert not _processes_running(out)


# ----------------------------------------------------------------------------- the release's files and flags

# The release's i1k_configs/vit_3dtrl_1k_scratch.yaml, key for key (its values; timm 0.6 train.py keys).
RELEASE_VIT_3DTRL_1K_SCRATCH = dict(
    npl_depth=4, data_dir="/data/imagenet", dataset="ImageFolder", train_split="train", val_split="val",
    model="vit_3dtrl_tiny_patch16_224", pretrained=False, initial_checkpoint="", resume="", no_resume_opt=False,
    num_classes=1000, gp=None, img_size=224, input_size=None, crop_pct=0.9, mean=[0.485, 0.456, 0.406],
    std=[0.229, 0.224, 0.225], interpolation="", batch_size=512, validation_batch_size_multiplier=1, opt="adamw",
    opt_eps=1.0e-06, opt_betas=None, momentum=0.9, weight_decay=0.3, clip_grad=1.0, clip_mode="norm",
    sched="cosine", lr=1.5e-3, lr_noise=None, lr_noise_pct=0.67, lr_noise_std=1.0, lr_cycle_mul=1.0,
    lr_cycle_limit=1, warmup_lr=1.0e-6, min_lr=1.0e-5, epochs=300, epoch_repeats=0.0, start_epoch=None,
    decay_epochs=1.0, warmup_epochs=15, cooldown_epochs=10, patience_epochs=10, decay_rate=0.988, no_aug=False,
    scale=[0.08, 1.0], ratio=[0.67, 1.5], hflip=0.5, vflip=0.0, color_jitter=0.4, aa="rand-m15-n2-mstd1.0-inc1",
    aug_splits=0, jsd=False, reprob=0.0, remode="pixel", recount=3, resplit=False, mixup=0.5, cutmix=1.0,
    cutmix_minmax=None, mixup_prob=1.0, mixup_switch_prob=0.5, mixup_mode="batch", mixup_off_epoch=0, smoothing=0.1,
    train_interpolation="random", drop=0.0, drop_connect=None, drop_path=0.0, drop_block=None, bn_tf=False,
    bn_momentum=None, bn_eps=None, sync_bn=True, dist_bn="", split_bn=False, model_ema=True, model_ema_force_cpu=False,
    model_ema_decay=0.99992, seed=42, log_interval=50, recovery_interval=0, checkpoint_hist=10, workers=8,
    save_images=False, amp=False, apex_amp=False, native_amp=True, channels_last=False, pin_mem=True,
    no_prefetcher=False, output="runs", experiment="", eval_metric="top1", tta=0, local_rank=0,
    use_multi_epochs_loader=True, torchscript=False, log_wandb=False)
# What the two files may differ in: where a run writes, the class count of the data, the names of settings
# that mean the same (amp and native_amp, trl_depth and npl_depth), the log notes.
NOT_RECIPE = {"output", "experiment", "config", "num_classes", "release_notes", "native_amp", "npl_depth", "dist_bn",
              "use_multi_epochs_loader", "tta", "local_rank"}


def test_a_release_config_file_loads_as_it_is_and_matches_our_copy(tmp_path, objects):
    import yaml
    release = tmp_path / "vit_3dtrl_1k_scratch.yaml"
    release.write_text(yaml.safe_dump(RELEASE_VIT_3DTRL_1K_SCRATCH))
    theirs = vars(imagenet_train.parse_args([objects, "-c", str(release)]))
    ours = vars(imagenet_train.parse_args([objects, "-c", os.path.join(ROOT, "i1k_configs", "vit_3dtrl_1k_scratch.yaml")]))
    differ = {k: (theirs[k], ours.get(k)) for k in theirs if k not in NOT_RECIPE and theirs[k] != ours.get(k)}
    assert differ == {}
    assert theirs["amp"] and theirs["trl_depth"] == 4 and theirs["dataset"] == ""
    notes = " ".join(theirs["release_notes"])
    for key in ("validation_batch_size_multiplier", "bn_tf", "jsd", "aug_splits", "torchscript", "log_wandb"):
        assert f"{key}: accepted, no effect here" in notes


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.basename(p))
def test_every_config_normalises_as_the_release(path, objects):
    args = imagenet_train.parse_args([objects, "-c", path])
    assert (args.mean, args.std) == ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    assert args.ratio == (0.67, 1.5) and args.train_interpolation == "random"
    assert args.sync_bn and args.amp


def test_inert_release_key_with_an_active_value_is_refused(tmp_path, objects):
    config = tmp_path / "c.yaml"
    config.write_text("aug_splits: 3\n")
    with pytest.raises(UserError, match="aug_splits 3: not supported here"):
        imagenet_train.parse_args([objects, "-c", str(config)])
    with pytest.raises(UserError, match="bce_loss True: not supported"):
        imagenet_train.parse_args([objects, "--bce-loss"])


def test_release_flags_are_accepted(objects):
    args = imagenet_train.parse_args([
        objects, "--input-size", "3", "48", "48", "--native-amp", "--sync-bn", "--local_rank=0", "--lr-noise", "0.4",
        "0.9", "--dr", "0.9", "--drop-connect", "0.2", "--patience-epochs", "4", "-d", "ImageFolder", "--tta", "0",
        "--use-multi-epochs-loader", "True", "--no-ddp-bb", "--grad-checkpointing", "--lr-cycle-limit", "2"])
    assert args.img_size == 48 and args.input_size == [3, 48, 48] and args.amp and args.decay_rate == 0.9
    assert args.drop_path == 0.2 and args.lr_noise == [0.4, 0.9] and args.dataset == "" and args.lr_cycle_decay == 0.5
    assert any(note.startswith("local_rank: accepted") for note in args.release_notes)


def test_validation_split_is_found_by_its_synonyms(tmp_path, capsys):
    """The release's default --val-split is 'validation', which timm 0.6 finds as val/ (and the reverse)."""
    root = tmp_path / "data"
    for split in ("train", "validation"):
        for name in ("a", "b"):
            os.makedirs(root / split / name)
            for i in range(2):
                Image.new("RGB", (8, 8)).save(root / split / name / f"{i}.png")
    imagenet_train.main([str(root), "--val-split", "val", "--check-only", "-b", "2", "--output", str(tmp_path / "out"),
                         *SMALL_MODEL[:2]])
    assert "ok: 2 classes" in capsys.readouterr().out


def test_ema_weights_pick_the_best_checkpoint_as_in_the_release(objects, tmp_path):
    common = [objects, *SMALL_MODEL, *QUICK, "--epochs", "2", "--model-ema", "--model-ema-decay", "0.5",
              "--output", str(tmp_path)]
    imagenet_train.main(common + ["--experiment", "ema"])
    metrics = json.loads((tmp_path / "ema" / "metrics.json").read_text())
    assert metrics["best_by"] == "ema_top1"
    best = max(metrics["epochs"], key=lambda row: (row["eval_ema_top1"], -row["epoch"]))
    assert metrics["best_top1"] == best["eval_ema_top1"]
    imagenet_train.main(common + ["--experiment", "raw", "--no-model-ema-eval"])
    assert json.loads((tmp_path / "raw" / "metrics.json").read_text())["best_by"] == "top1"


@pytest.mark.parametrize("warmup", [False, True])
def test_ema_averages_from_the_initial_weights_as_timm_06(warmup):
    """timm 0.6's ModelEmaV2 (the release's EMA) averages every update with the weights it started from;
    with ``--model-ema-warmup`` the decay ramps up from 0, so the first update copies the weights."""
    import argparse
    import contextlib
    from timm.utils import ModelEmaV3
    from threedtrl.classification.engine import train_one_epoch
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    initial = {k: v.clone() for k, v in net.state_dict().items()}
    ema = ModelEmaV3(net, decay=0.5, use_warmup=warmup)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    args = argparse.Namespace(mixup_off_epoch=0, no_progress=True, rank=0, channels_last=False, clip_grad=None,
                              clip_mode="norm", model_ema_warmup=warmup, log_interval=50)
    loader = [(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]))]
    scheduler = type("NoSchedule", (), {"step_update": lambda self, **kwargs: None})()
    train_one_epoch(0, net, loader, optimizer, torch.nn.CrossEntropyLoss(), args, torch.device("cpu"),
                    contextlib.nullcontext, None, scheduler, 0, model_ema=ema)
    for key, value in net.state_dict().items():
        expected = value if warmup else 0.5 * initial[key] + 0.5 * value
        torch.testing.assert_close(ema.module.state_dict()[key], expected)
    assert not torch.equal(net.weight, initial["weight"])


def test_val_takes_a_folder_of_checkpoints(objects, tmp_path):
    ckpt = train_quick(objects, tmp_path, "folder")
    out = tmp_path / "all.json"
    imagenet_val.main([objects, "--checkpoint", os.path.dirname(ckpt), "-j", "0", "--no-progress",
                       "--results-file", str(out)])
    results = json.loads(out.read_text())
    names = [os.path.basename(r["checkpoint"]) for r in results]
    assert "last.pth.tar" in names and "model_best.pth.tar" in names and len({r["top1"] for r in results}) >= 1


@pytest.mark.parametrize("line, message", [
    ("lr: .nan", "lr must be finite"), ("smoothing: [1, 2]", "smoothing must be a single value"),
    ("mean: 0.5", "mean must be a list"), ("mean: [0.5]", "mean must have 3 values"), ("aa: [1]", "aa must be a single"),
    ("model_ema: maybe", "model_ema must be true or false"), ("opt_betas: [a, b]", "opt_betas must be numbers"),
    ("clip_mode: sideways", "clip_mode must be one of"), ("lr: 0.1\nlr: 0.2", "duplicate key 'lr'"),
    ("model_kwargs: [1]", "model_kwargs must be a mapping")])
def test_config_values_are_checked_like_their_flags(line, message, tmp_path, objects):
    config = tmp_path / "c.yaml"
    config.write_text(line + "\n")
    with pytest.raises(UserError, match=message):
        imagenet_train.parse_args([objects, "-c", str(config)])


def test_config_model_kwargs_mapping_is_taken(tmp_path, objects):
    config = tmp_path / "c.yaml"
    config.write_text("model_kwargs:\n  depth: 2\n")
    assert imagenet_train.parse_args([objects, "-c", str(config)]).model_kwargs == {"depth": 2}


def test_sigterm_on_i1k_sh_is_one_line(objects, tmp_path):
    """What a cluster scheduler sends to the launcher reaches every process; one line, exit 143."""
    import signal
    import time
    out = tmp_path / "out"
    proc = subprocess.Popen(["bash", "i1k.sh", "2", objects, *SMALL_MODEL, *QUICK, "--epochs", "50", "--output", str(out),
                             "--experiment", "t"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (out / "t" / "last.pth.tar").is_file():
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 143 and errors == ["error: terminated (SIGTERM); resume from the last checkpoint"], stderr
    assert "Traceback" not in stderr and (out / "t" / "last.pth.tar").is_file()


# ----------------------------------------------------------------------------- the release's timm 0.6 recipe

TIMM06 = json.load(open(os.path.join(ROOT, "tests", "fixtures", "release_timm06_recipes.json")))


class _OneImage(torch.utils.data.Dataset):
    """One seeded 260 x 300 RGB image; ``create_loader`` sets ``transform``."""
    image = Image.fromarray((np.random.default_rng(0).random((300, 260, 3)) * 255).astype(np.uint8))

    def __init__(self):
        self.transform = None

    def __len__(self):
        return 1

    def __getitem__(self, index):
        return self.transform(self.image), 0


def _timm06_name(name: str) -> str:
    """A parameter name of timm 1.x's Swin in timm 0.6's layout (patch merging ends the stage before)."""
    name = re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", name)
    return name.replace("head.fc.", "head.")


@pytest.mark.parametrize("config", sorted(TIMM06["configs"]))
def test_configs_train_with_the_releases_timm_06_recipe(config, tmp_path):
    """What timm 0.6.12 does with the arguments of a config, called as the release's ``imagenet_train.py``
    calls it, recorded once (``tests/fixtures/release_timm06_recipes.json``; the release's ViT and Swin +
    3DTRL classes for the model-dependent parts, 0-bit posterize as Pillow < 11 made it): the learning
    rate of every epoch, the parameters without weight decay, the data configuration, 24 seeded training
    augmentations of one image (RandAugment, random-interpolation crops, random erasing), the validation
    transform and Mixup/CutMix. This project's training script gives the same."""
    from timm.data import resolve_data_config
    from timm.optim import create_optimizer_v2, optimizer_kwargs
    expected = TIMM06["configs"][config]
    args = imagenet_train.parse_args([str(tmp_path), "-c", os.path.join(ROOT, "i1k_configs", f"{config}.yaml")])

    optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=args.lr)
    scheduler, num_epochs = imagenet_train.create_schedule(args, optimizer, 100, 0)
    lrs = []
    for epoch in range(num_epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        scheduler.step(epoch + 1, 0.5)
    np.testing.assert_allclose(lrs, expected["lr_per_epoch"], rtol=1e-9, atol=0)

    model = imagenet_train.create_model(args, 10)
    optimizer = create_optimizer_v2(model, **optimizer_kwargs(cfg=args))
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay = sorted(_timm06_name(names[id(p)]) for g in optimizer.param_groups if g["weight_decay"] == 0
                      for p in g["params"])
    assert no_decay == expected["no_decay"] and type(optimizer).__name__ == expected["optimizer"]
    assert {k: optimizer.defaults[k] for k in expected["optimizer_defaults"]} == \
        {k: tuple(v) if isinstance(v, list) else v for k, v in expected["optimizer_defaults"].items()}

    data_config = resolve_data_config(vars(args), model=model)
    assert data_config.pop("crop_mode") == "center"  # timm 0.6 had no other
    assert {k: list(v) if isinstance(v, tuple) else v for k, v in data_config.items()} == expected["data_config"]
    args.distributed, args.workers = False, 0  # set by the launch (join_runtime); no loader processes here
    train, val = imagenet_train.create_loaders(args, _OneImage(), _OneImage(), data_config, torch.device("cpu"))
    images = []
    for seed in range(24):
        seed_everything(seed)
        images.append(train.dataset[0][0])
    images = torch.stack(images).double()
    np.testing.assert_allclose(images.flatten(1).sum(1).numpy(), expected["train_sum"], rtol=1e-6)
    np.testing.assert_allclose(images.square().flatten(1).sum(1).numpy(), expected["train_sq"], rtol=1e-6)
    image = val.dataset[0][0].double()
    np.testing.assert_allclose([image.sum(), image.square().sum()], [expected["val_sum"], expected["val_sq"]],
                               rtol=1e-6)
    mixup = imagenet_train.create_mixup(args, 10)
    assert (mixup is None) == ("mixup" not in expected)
    # timm 1.x centres a CutMix box of odd size one pixel further (its rand_bbox fix): a box side may be one
    # pixel longer than timm 0.6's, so the label weights of CutMix batches agree within one row and one
    # column of the 224 px image (0.9 x 2 x 224 / 224^2 with label smoothing 0.1); Mixup batches agree exactly.
    one_row_and_column = 0.9 * 2 * 224 / 224 ** 2
    for seed, (total, squares, targets) in enumerate(expected.get("mixup", [])):
        seed_everything(seed)
        x, y = mixup(images[:8].float().clone(), torch.arange(8))
        np.testing.assert_allclose([x.double().sum(), x.double().square().sum()], [total, squares], rtol=1e-3)
        np.testing.assert_allclose(y.numpy(), targets, rtol=0, atol=one_row_and_column)
