"""Action recognition data and training: the rendered Panda set, clip sampling, multi-view test,
one epoch of the demo config (resumed, repeated, on two processes) and bad input."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACTION = os.path.join(REPO, "action_recognition")

from threedtrl.timesformer.config import load_config
from threedtrl.timesformer.dataset import VideoDataset, VideoReader, clip_indices, decode_frames, spatial_crop
from threedtrl.timesformer.render import (PRESETS, episode_paths, list_episodes, render_dataset, render_episode,
                                          split_lists)
from threedtrl.runtime import UserError

DEMO = os.path.join(ACTION, "configs", "TimeSformer_3DTRL_demo_cpu.yaml")
from threedtrl.timesformer import launch as run_net


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("actions") / "tiny")
    render_dataset(out, "tiny", seed=0, workers=1, progress=False)
    return out


def read_all(path):
    capture, frames = cv2.VideoCapture(path), []
    while True:
        ok, frame = capture.read()
        if not ok:
            return np.stack(frames)
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))


def demo_args(data, out, *extra):
    return ["--cfg", DEMO, "DATA.PATH_TO_DATA_DIR", data, "OUTPUT_DIR", out, "LOG.PROGRESS", "False",
            "DATA_LOADER.NUM_WORKERS", "0", *extra]


# ----------------------------------------------------------------------------- rendered set

def test_rendered_set_is_cross_view_deterministic_and_resumable(tiny_set, tmp_path):
    preset = PRESETS["tiny"]
    lists = {s: open(os.path.join(tiny_set, f"{s}.csv")).read().split("\n")[:-1] for s in ("train", "val", "test")}
    assert {s: len(v) for s, v in lists.items()} == {"train": 12, "val": 12, "test": 12}
    test_cam = f"_c{preset.num_cameras - 1}.mp4"
    assert all(test_cam in line for line in lists["test"])
    assert not any(test_cam in line for line in lists["train"] + lists["val"])
    assert sorted({int(line.split()[1]) for line in lists["test"]}) == list(range(6))
    video = os.path.join(tiny_set, lists["test"][0].split()[0])
    frames = read_all(video)
    assert frames.shape == (preset.num_frames, preset.size, preset.size, 3) and frames.std() > 10

    mtimes = {p: os.path.getmtime(os.path.join(tiny_set, p)) for p, _ in split_lists(preset)["test"]}
    render_dataset(tiny_set, "tiny", seed=0, progress=False)                 # resume: nothing re-rendered
    assert mtimes == {p: os.path.getmtime(os.path.join(tiny_set, p)) for p in mtimes}
    with pytest.raises(UserError, match="rendered with preset tiny and seed 0"):
        render_dataset(tiny_set, "tiny", seed=1, progress=False)

    episode = next(e for e in list_episodes(preset) if episode_paths(e, preset.num_cameras)[-1] in video)
    render_episode((str(tmp_path), episode, preset, 0))                      # same seed, same pixels
    np.testing.assert_array_equal(read_all(os.path.join(str(tmp_path), os.path.relpath(video, tiny_set))), frames)


# ----------------------------------------------------------------------------- sampling

def test_clip_indices_clamp_short_videos():
    np.testing.assert_array_equal(clip_indices(8, 4, 4, 0), [0, 4, 7, 7])
    np.testing.assert_array_equal(clip_indices(100, 4, 8, 10), [10, 18, 26, 34])


def test_decode_picks_requested_frames(tiny_set):
    path = os.path.join(tiny_set, open(os.path.join(tiny_set, "train.csv")).readline().split()[0])
    every = read_all(path)
    with VideoReader(path) as video:
        assert video.length == len(every)
    np.testing.assert_array_equal(decode_frames(path, [5, 0, 7, 7, 30]), every[[5, 0, 7, 7, 7]])


def test_seeking_reads_the_frames_that_decoding_in_order_reads(tmp_path):
    path = str(tmp_path / "long.mp4")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 30, (64, 48))
    rng = np.random.default_rng(0)
    for t in range(150):  # every frame different: a moving bar over noise
        frame = rng.integers(0, 60, (48, 64, 3), dtype=np.uint8)
        frame[:, (t * 3) % 64:(t * 3) % 64 + 4] = 255
        writer.write(frame)
    writer.release()
    every = read_all(path)
    assert len(every) == 150
    for trial in range(6):
        start = int(rng.integers(0, 100))
        indices = list(start + np.arange(8) * int(rng.integers(1, 8)))
        with VideoReader(path, seek_ahead=0) as seeking, VideoReader(path, seek_ahead=10 ** 9) as in_order:
            assert seeking.length == 150
            clipped = np.minimum(indices, 149)
            np.testing.assert_array_equal(seeking.frames(indices), every[clipped])
            np.testing.assert_array_equal(in_order.frames(indices), every[clipped])


def test_train_clips_are_seeded_per_epoch_and_item(tiny_set):
    cfg = load_config(DEMO, ["DATA.PATH_TO_DATA_DIR", tiny_set])
    data = VideoDataset(cfg, "train")
    clip, label, index = data[3]
    assert clip.shape == (3, 4, 64, 64) and clip.dtype == torch.float32 and index == 3
    assert label == int(open(os.path.join(tiny_set, "train.csv")).read().split("\n")[3].split()[1])
    assert torch.equal(data[3][0], clip)
    data.set_epoch(1)
    assert not torch.equal(data[3][0], clip)


def test_three_crops_cover_the_long_side(tiny_set):
    path = os.path.join(tiny_set, open(os.path.join(tiny_set, "test.csv")).readline().split()[0])
    frames = np.stack([cv2.resize(f, (48, 32)) for f in read_all(path)])      # a wide (32 x 48) clip
    crops = [spatial_crop(frames, 32, i, 3) for i in range(3)]
    for crop, left in zip(crops, (0, 8, 16)):
        np.testing.assert_array_equal(crop, frames[:, :, left:left + 32])
    np.testing.assert_array_equal(spatial_crop(frames, 32, 0, 1), crops[1])
    np.testing.assert_array_equal(spatial_crop(frames.transpose(0, 2, 1, 3), 32, 2, 3),
                                  frames.transpose(0, 2, 1, 3)[:, 16:48])


def test_test_views_enumerate_clips_and_crops(tiny_set):
    cfg = load_config(DEMO, ["DATA.PATH_TO_DATA_DIR", tiny_set, "TEST.NUM_ENSEMBLE_VIEWS", "2",
                             "DATA.SAMPLING_RATE", "1"])
    data = VideoDataset(cfg, "test")
    assert data.views_per_video == 6 and len(data) == 12 * 6
    items = [data[i] for i in range(6, 12)]
    assert {item[2] for item in items} == {1} and {item[1] for item in items} == {data.labels[1]}
    assert not torch.equal(items[0][0], items[3][0])          # two temporal positions: frames 1-4 and 3-6


# ----------------------------------------------------------------------------- training

def test_demo_config_trains_and_tests_one_epoch(tiny_set, tmp_path):
    out = str(tmp_path / "run")
    run_net.main(demo_args(tiny_set, out))
    results = json.load(open(os.path.join(out, "results.json")))
    test = results["test"]
    assert test["num_videos"] == 12 and test["views_per_video"] == 3
    assert 0 <= test["top1"] <= test["top5"] <= 100 and 0 <= test["mean_class_acc"] <= 100
    assert len(results["train"]) == 1 and np.isfinite(results["train"][0]["loss"])
    assert os.listdir(os.path.join(out, "checkpoints")) == ["checkpoint_epoch_00001.pyth"]
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(os.path.join(out, "tensorboard")))


SMALL = ("TIMESFORMER.EMBED_DIM", "48", "TIMESFORMER.DEPTH", "2", "TRL.LOC", "1", "TEST.ENABLE", "False")


def test_training_resumes_and_repeats(tiny_set, tmp_path, caplog):
    out = str(tmp_path / "run")
    run_net.main(demo_args(tiny_set, out, *SMALL))
    first = json.load(open(os.path.join(out, "stats.json")))
    with caplog.at_level("INFO"):
        run_net.main(demo_args(tiny_set, out, *SMALL, "SOLVER.MAX_EPOCH", "2"))   # resumes at epoch 2
    assert "SOLVER.MAX_EPOCH 1 -> 2" in caplog.text                           # what changed is named
    assert "epoch 2: loss" in caplog.text and "epoch epoch" not in caplog.text
    history = json.load(open(os.path.join(out, "stats.json")))
    assert [h["epoch"] for h in history] == [1, 2] and history[0] == first[0]

    again = str(tmp_path / "again")                                            # same seed, same numbers
    run_net.main(demo_args(tiny_set, again, *SMALL))
    repeat = json.load(open(os.path.join(again, "stats.json")))[0]
    assert {k: v for k, v in repeat.items() if k != "seconds"} == {k: v for k, v in first[0].items() if k != "seconds"}


def test_compiled_model_trains_like_eager(tiny_set, tmp_path):
    runs = {}
    for name, extra in (("eager", ()), ("compiled", ("MODEL.COMPILE", "True", "MODEL.COMPILE_BACKEND", "aot_eager"))):
        run_net.main(demo_args(tiny_set, str(tmp_path / name), *SMALL, *extra))
        runs[name] = json.load(open(tmp_path / name / "stats.json"))[0]
    assert runs["compiled"]["loss"] == pytest.approx(runs["eager"]["loss"], rel=1e-4)
    assert runs["compiled"]["val_top1"] == runs["eager"]["val_top1"]
    with pytest.raises(UserError, match="unknown torch.compile backend"):
        load_config(DEMO, ["MODEL.COMPILE", "True", "MODEL.COMPILE_BACKEND", "nope"])


def test_two_cpu_processes_with_gloo(tiny_set, tmp_path):
    out = str(tmp_path / "ddp")
    run_net.main(demo_args(tiny_set, out, *SMALL, "NUM_GPUS", "2", "TRAIN.EVAL_PERIOD", "0", "TEST.ENABLE", "True"))
    results = json.load(open(os.path.join(out, "results.json")))
    assert results["world_size"] == 2 and results["test"]["num_videos"] == 12


# ----------------------------------------------------------------------------- bad input

def copy_lists(tiny_set, tmp_path):
    data = str(tmp_path / "data")
    os.makedirs(data)
    for split in ("train", "val", "test"):
        with open(os.path.join(tiny_set, f"{split}.csv")) as src, open(os.path.join(data, f"{split}.csv"), "w") as dst:
            dst.writelines(f"{os.path.join(tiny_set, line.split()[0])} {line.split()[1]}\n" for line in src)
    return data


@pytest.mark.parametrize("problem, message", [
    ("missing list", "video list not found"),
    ("missing video", "video not found"),
    ("label out of range", "label 6 out of range"),
    ("comma-separated list", r"separated by ' ' \(DATA.PATH_LABEL_SEPARATOR\)"),
    ("unknown key", "unknown config key: SOLVER.LEARNING_RATE"),
])
def test_bad_input_is_one_line_error(tiny_set, tmp_path, problem, message):
    data = copy_lists(tiny_set, tmp_path)
    extra = []
    if problem == "missing list":
        os.remove(os.path.join(data, "val.csv"))
    elif problem == "missing video":
        with open(os.path.join(data, "train.csv"), "a") as f:
            f.write("no/such/video.mp4 1\n")
    elif problem == "label out of range":
        with open(os.path.join(data, "test.csv"), "a") as f:
            f.write(open(os.path.join(data, "test.csv")).readline().split()[0] + " 6\n")
    elif problem == "comma-separated list":
        lines = open(os.path.join(data, "val.csv")).read().splitlines()
        with open(os.path.join(data, "val.csv"), "w") as f:
            f.writelines(line.replace(" ", ",") + "\n" for line in lines)
    else:
        extra = ["SOLVER.LEARNING_RATE", "0.1"]
    out = str(tmp_path / "out")
    with pytest.raises(UserError, match=message) as err:
        run_net.main(demo_args(data, out, *extra))
    assert "\n" not in str(err.value)
    assert not os.path.exists(out)


def broken_video(tmp_path):
    path = str(tmp_path / "broken.mp4")
    with open(path, "wb") as f:
        f.write(b"\x00not a video" * 64)
    return path


def test_unreadable_video_exits_with_one_line(tiny_set, tmp_path):
    data = copy_lists(tiny_set, tmp_path)
    broken = broken_video(tmp_path)
    with open(os.path.join(data, "train.csv"), "w") as f:
        f.write(f"{broken} 0\n" * 8)
    proc = subprocess.run([sys.executable, os.path.join(ACTION, "tools", "run_net.py"),
                           *demo_args(data, str(tmp_path / "out"), "DATA_LOADER.NUM_WORKERS", "1")],
                          capture_output=True, text=True, cwd=REPO)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and lines[-1] == f"error: cannot decode video: {broken}", proc.stderr
    assert not any("Traceback" in line for line in lines)


def test_corrupt_test_video_is_found_before_training(tiny_set, tmp_path):
    data = copy_lists(tiny_set, tmp_path)
    broken = broken_video(tmp_path)
    with open(os.path.join(data, "test.csv"), "a") as f:
        f.write(f"{broken} 0\n")
    out = str(tmp_path / "out")
    with pytest.raises(UserError, match=f"cannot decode video: {broken}"):
        run_net.main(demo_args(data, out))
    assert not os.path.exists(out)


def test_script_sh_takes_a_config_name_or_path(tmp_path):
    name = os.path.basename(DEMO)
    own = tmp_path / "mine.yaml"
    own.write_text(open(DEMO).read())

    def script(config, cwd, *extra):
        return subprocess.run(["bash", os.path.join(ACTION, "script.sh"), config, str(tmp_path), str(tmp_path / "out"),
                               *extra], cwd=cwd, capture_output=True, text=True,
                              env=dict(os.environ, PYTHON=sys.executable))

    # the config is found and read in all three forms: the bad override is the first thing reported
    for config, cwd in ((name, str(tmp_path)), (f"configs/{name}", ACTION), (str(own), str(tmp_path))):
        result = script(config, cwd, "BOGUS.KEY", "1")
        assert result.returncode == 2
        assert result.stderr.strip().splitlines()[-1] == "error: unknown config key: BOGUS.KEY", (config, result.stderr)
    missing = script("configs/none.yaml", ACTION)
    assert missing.returncode == 2 and "config file not found" in missing.stderr
    assert "configs/configs" not in missing.stderr


def test_script_sh_names_a_python_without_the_project(tmp_path):
    """A Python that lacks the project (or torch) is refused in one line before anything starts."""
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    result = subprocess.run(["bash", os.path.join(ACTION, "script.sh"), os.path.basename(DEMO), str(tmp_path),
                             str(tmp_path / "out")], capture_output=True, text=True,
                            env=dict(os.environ, PYTHON=str(bare / "bin" / "python")))
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: the project is not installed in "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- the release's recipe

RELEASE_CONFIGS = ["TimeSformer_ST_8x32_224_4gpus.yaml", "TimeSformer_ST_8x32_224_NTU.yaml",
                   "TimeSformer_ST_8x32_224_SH.yaml", "TimeSformer_ST_8x32_224_SH_test.yaml",
                   "TimeSformer_divST_8x32_224_no_pretrained.yaml", "TimeSformer_divST_8x32_224_pretrained.yaml"] + [
    f"Kinetics/TimeSformer_{n}.yaml" for n in ("divST_16x16_448", "divST_8x32_224", "divST_8x32_224_4gpus",
                                               "divST_8x32_224_TEST", "divST_96x4_224", "jointST_8x32_224",
                                               "spaceOnly_8x32_224")]


@pytest.mark.parametrize("name", RELEASE_CONFIGS)
def test_the_release_config_names_load(name):
    cfg = load_config(os.path.join(ACTION, "configs", name))
    assert cfg.TRL.ENABLE and cfg.MODEL.ARCH == "vit"
    assert (cfg.DATA.TEMPORAL_SAMPLING, cfg.DATA.ENSEMBLE_METHOD, cfg.SOLVER.ZERO_WD_1D_PARAM,
            cfg.MODEL.HEAD_DROPOUT, cfg.TRL.INIT) == ("slowfast", "sum", False, False, "release")


def test_the_release_ntu_config_keeps_its_values():
    cfg = load_config(os.path.join(ACTION, "configs", "TimeSformer_ST_8x32_224_NTU.yaml"))
    assert (cfg.TRAIN.EVAL_PERIOD, cfg.TRAIN.CHECKPOINT_PERIOD, cfg.DATA.SAMPLING_RATE, cfg.SOLVER.STEPS,
            cfg.MODEL.NUM_CLASSES, cfg.NUM_GPUS, cfg.TEST.BATCH_SIZE) == (5, 5, 4, [0, 71, 90], 60, 4, 4)


def test_defaults_are_the_release_defaults_where_they_change_a_run():
    from threedtrl.timesformer.config import NOT_THE_RELEASE_DEFAULT, get_defaults
    release = json.loads(open(os.path.join(os.path.dirname(__file__), "fixtures",
                                           "release_timesformer_defaults.json")).read())["defaults"]
    ours = get_defaults()
    differ = {}
    for dotted, value in release.items():
        node = ours
        for key in dotted.split("."):
            node = node[key]
        if node != value and not (isinstance(value, float) and node == pytest.approx(value)):
            differ[dotted] = value
    assert differ == {k: v for k, (v, _) in NOT_THE_RELEASE_DEFAULT.items()}


def test_keys_only_the_release_has_are_accepted_where_they_change_nothing(tmp_path):
    config = tmp_path / "release_style.yaml"
    config.write_text("TENSORBOARD:\n  ENABLE: True\n  CLASS_NAMES_PATH: classes.json\nMIXUP:\n  ENABLED: False\n"
                      "DATA:\n  NUM_FRAMES: 4\n  REVERSE_INPUT_CHANNEL: False\nMODEL:\n  FC_INIT_STD: 0.5\n"
                      "LOG_PERIOD: 3\n")
    cfg = load_config(str(config), ["DETECTION.ENABLE", "False", "X3D.WIDTH_FACTOR", "2.0"])
    assert cfg.DATA.NUM_FRAMES == 4 and "TENSORBOARD" not in cfg and "REVERSE_INPUT_CHANNEL" not in cfg.DATA
    with pytest.raises(UserError, match=r"MIXUP.ENABLED True: the release's key is not supported here except at "
                                        r"its default \(False\)"):
        load_config(str(config), ["MIXUP.ENABLED", "True"])
    config.write_text("MODEL:\n  HEAD_ACT: softmax\n")                 # the release's single-label default
    assert load_config(str(config)).MODEL.ARCH == "vit"
    config.write_text("DATA:\n  REVERSE_INPUT_CHANNEL: True\n")
    with pytest.raises(UserError, match="DATA.REVERSE_INPUT_CHANNEL True"):
        load_config(str(config))
    with pytest.raises(UserError, match="unknown config key: DATA.NOT_A_KEY"):
        load_config(None, ["DATA.NOT_A_KEY", "1"])


@pytest.mark.parametrize("name", ["Kinetics/SLOWFAST_8x8_R50.yaml", "TimeSformer_divST_8x32_224_Charades.yaml"])
def test_slowfast_and_charades_names_are_refused_in_one_line(name, tmp_path):
    result = subprocess.run(["bash", os.path.join(ACTION, "script.sh"), name, str(tmp_path), str(tmp_path / "o")],
                            capture_output=True, text=True, env=dict(os.environ, PYTHON=sys.executable))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "not part of this project" in lines[0]
    config = tmp_path / "sf.yaml"
    config.write_text("SLOWFAST:\n  ALPHA: 4\nRESNET:\n  DEPTH: 50\n")
    with pytest.raises(UserError, match="SlowFast models are not part of this project"):
        load_config(str(config))


def test_slowfast_temporal_sampling_matches_the_release():
    """SlowFast's get_start_end_idx + temporal_sampling: linspace over rate * frames * fps / target_fps."""
    from threedtrl.timesformer.dataset import slowfast_clip_indices
    # 100 frames at 30 fps, 8 frames at rate 4 (clip of 32 frames): delta 68; test clip 1 of 2 starts at 34
    expected = np.linspace(34, 34 + 32 - 1, 8).astype(np.int64)
    np.testing.assert_array_equal(slowfast_clip_indices(100, 8, 4, 30.0, 30, 1, 2, None), expected)
    assert slowfast_clip_indices(100, 8, 4, 30.0, 30, 0, 2, None)[0] == 0
    # a 60 fps video: the clip spans twice the frames; a short video is clamped to its last frame
    assert slowfast_clip_indices(200, 8, 4, 60.0, 30, 0, 1, None)[-1] == 63
    assert slowfast_clip_indices(10, 8, 4, 30.0, 30, 0, 1, None)[-1] == 9
    rng = np.random.default_rng(0)
    drawn = slowfast_clip_indices(100, 8, 4, 30.0, 30, 0, 1, rng)
    assert 0 <= drawn[0] <= 68 and drawn[-1] - drawn[0] in (30, 31)


class _GlobalNumpyDraws:
    """The draws SlowFast makes from numpy's global generator, behind the ``Generator`` methods the
    spatial sampling here calls, so that both make the same draws in the same order."""
    uniform = staticmethod(np.random.uniform)
    integers = staticmethod(np.random.randint)

    @staticmethod
    def random():
        return np.random.uniform()


def test_slowfast_spatial_sampling_matches_the_release():
    """The release's ``spatial_sampling`` (SlowFast's ``datasets/utils.py``, after its ``tensor_normalize``),
    recorded on seeded clips of several shapes (``tests/fixtures/release_spatial_sampling.json``): training
    (shorter side jittered in [36, 44], 32 px crop, flip; numpy's global generator seeded per clip) and the
    three test crops (shorter side 36, 32 px crops, odd slacks included). The same numbers here."""
    from threedtrl.timesformer.dataset import slowfast_test_crop, slowfast_train_crop, to_tensor
    expected = json.load(open(os.path.join(REPO, "tests", "fixtures", "release_spatial_sampling.json")))

    def clip(height, width, seed):
        frames = np.random.default_rng(seed).integers(0, 256, (2, height, width, 3), dtype=np.uint8)
        return to_tensor(frames, [0.45] * 3, [0.225] * 3)

    def check(out, case):
        flat = out.double().flatten()
        assert list(out.shape) == case["shape"]
        np.testing.assert_allclose([flat.sum(), flat.square().sum()], [case["sum"], case["sq"]], rtol=1e-6)
        np.testing.assert_allclose(flat[:: max(1, flat.numel() // 16)][:16].numpy(), case["probe"], atol=1e-5)

    for case in expected["train"]:
        np.random.seed(case["seed"])
        check(slowfast_train_crop(clip(case["height"], case["width"], case["seed"]), [36, 44], 32, True,
                                  _GlobalNumpyDraws()), case)
    for case in expected["test"]:
        check(slowfast_test_crop(clip(case["height"], case["width"], 100), 36, 32, case["index"]), case)


def test_spatial_sampling_switch_and_single_test_crop(tiny_set):
    """``DATA.SPATIAL_SAMPLING opencv`` keeps the earlier (uint8 OpenCV) pipeline; a single test crop comes
    from frames scaled to the smallest training scale, which must hold it."""
    cfg = load_config(DEMO, ["DATA.PATH_TO_DATA_DIR", tiny_set, "TEST.NUM_SPATIAL_CROPS", "1"])
    assert cfg.DATA.SPATIAL_SAMPLING == "slowfast"
    release, earlier = (VideoDataset(load_config(DEMO, ["DATA.PATH_TO_DATA_DIR", tiny_set, "DATA.SPATIAL_SAMPLING",
                                                        mode]), "train") for mode in ("slowfast", "opencv"))
    a, b = release[0][0], earlier[0][0]
    assert a.shape == b.shape == (3, cfg.DATA.NUM_FRAMES, 64, 64) and not torch.equal(a, b)
    assert VideoDataset(cfg, "test")[0][0].shape == (3, cfg.DATA.NUM_FRAMES, 64, 64)
    with pytest.raises(UserError, match="at least TEST_CROP_SIZE"):
        load_config(DEMO, ["TEST.NUM_SPATIAL_CROPS", "1", "DATA.TEST_CROP_SIZE", "80"])


def test_test_views_are_combined_by_summing_logits():
    from threedtrl.timesformer.meters import VideoScores
    logits = torch.tensor([[10.0, 0.0], [0.0, 3.0], [0.0, 3.0]])  # one confident view against two mild ones
    summed, softmax = VideoScores(1, 2), VideoScores(1, 2)
    index, labels = torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long)
    summed.update(logits, labels, index)
    softmax.update(logits.softmax(dim=1), labels, index)
    assert summed.scores().argmax() == 0 and softmax.scores().argmax() == 1


def test_resume_from_a_release_checkpoint_with_a_yaml_config(tiny_set, tmp_path):
    """SlowFast checkpoints store ``cfg`` as YAML text; auto-resume reads it instead of crashing."""
    import yaml
    from threedtrl.timesformer.checkpoint import checkpoint_path
    out = str(tmp_path / "run")
    run_net.main(demo_args(tiny_set, out, *SMALL))
    path = checkpoint_path(out, 1)
    state = torch.load(path, weights_only=False)
    release = {"epoch": 1, "model_state": state["model_state"], "optimizer_state": state["optimizer_state"],
               "cfg": yaml.safe_dump(state["cfg"])}
    torch.save(release, path)
    run_net.main(demo_args(tiny_set, out, *SMALL, "SOLVER.MAX_EPOCH", "2"))
    assert [h["epoch"] for h in json.load(open(os.path.join(out, "stats.json")))] == [2]


def test_relative_list_paths_are_also_found_where_the_release_ran(tmp_path, monkeypatch):
    from threedtrl.timesformer.dataset import find_video
    (tmp_path / "ran_here" / "videos").mkdir(parents=True)
    (tmp_path / "ran_here" / "videos" / "a.mp4").write_bytes(b"x")
    (tmp_path / "data").mkdir()
    assert find_video("videos/a.mp4", str(tmp_path / "data"), [str(tmp_path / "ran_here")]) == \
        str(tmp_path / "ran_here" / "videos" / "a.mp4")
    assert find_video("videos/b.mp4", str(tmp_path / "data"), [str(tmp_path / "ran_here")]) == \
        str(tmp_path / "data" / "videos" / "b.mp4")  # not found anywhere: the error names the prefix's path


def test_cross_view_experiment_summarises_finished_runs_without_rerunning_them(tmp_path):
    """Runs with a results.json are read, not trained again; the summary has each model's mean and
    sample spread over seeds and the paired 3DTRL - plain differences."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "test.csv").write_text("")
    top1 = {"TimeSformer_demo_cpu": [30.0, 40.0, 35.0], "TimeSformer_3DTRL_demo_cpu": [34.0, 41.0, 42.0]}
    for config, values in top1.items():
        for seed, value in enumerate(values):
            run = tmp_path / "out" / f"{config}_seed{seed}"
            run.mkdir(parents=True)
            (run / "results.json").write_text(json.dumps({"test": {"top1": value, "mean_class_acc": value - 1}}))
    script = os.path.join(ACTION, "tools", "cross_view_experiment.py")
    done = subprocess.run([sys.executable, script, "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"),
                           "--seeds", "0", "1", "2", "--jobs", "2"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.load(open(tmp_path / "out" / "summary.json"))
    differences = summary["paired"]["top1"]
    assert differences["differences"] == [4.0, 1.0, 7.0] and differences["mean_difference"] == 4.0
    assert 0.05 < differences["p_value"] < 0.5
    markdown = (tmp_path / "out" / "summary.md").read_text()
    assert "| TimeSformer | 35.0 ± 5.0 | 34.0 ± 5.0 | 3 |" in markdown
    assert "| TimeSformer + 3DTRL | 39.0 ± 4.4 | 38.0 ± 4.4 | 3 |" in markdown
    assert "3DTRL - plain, top1: +4.0 ± 3.0 over seeds [0, 1, 2]" in markdown
    assert list(summary["runs"]["TimeSformer"]) == ["0", "1", "2"] and summary["inits"] == {}
    missing = subprocess.run([sys.executable, script, "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"),
                              "--init_3dtrl", str(tmp_path / "none.safetensors")], capture_output=True, text=True,
                             timeout=120)
    assert missing.returncode == 2 and missing.stderr.strip().endswith("none.safetensors")
