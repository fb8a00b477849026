"""The GPU check's reduced CPU version runs end to end, and the commands of its GPU version pass each
script's own argument and input checks, so the check cannot rot between GPU sessions."""
import importlib.util
import json
import os

import pytest

import imagenet_train
import imagenet_val
import multiview_video_alignment as mva
from threedtrl.timesformer.config import load_config
from threedtrl.timesformer.launch import check_inputs, parse_args as parse_action_args
from threedtrl.runtime import UserError
from threedtrl.tools import gpu_check

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("gpu_check") / "data")
    gpu_check.main(["--prepare", "--data", path])
    return path


def test_gpu_check_runs_every_step_on_the_cpu(data, tmp_path):
    gpu_check.main(["--data", data, "--out", str(tmp_path / "out"), "--cpu"])
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["environment"]["mode"] == "cpu (reduced)"
    steps = report["steps"]
    assert set(steps) == {"i1k_fp32", "imagenet_val", "imagenet_val_perturbed", "alignment", "action", "bench_models",
                          "bench_timesformer"}
    assert all(record["exit"] == 0 for record in steps.values())
    for name in ("i1k_fp32", "alignment", "action"):
        assert steps[name]["shows"]["learned"] is True, (name, steps[name]["shows"])
    assert steps["imagenet_val"]["shows"]["weights"] == "raw"
    assert 0 < steps["bench_models"]["shows"]["vit_tiny_train_ratio"]["value"] < 3


def _script_module(path: str):
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_command(command) -> None:
    """Run the checks a script makes on its arguments and inputs before it starts work (raises on a
    flag, config key or input it refuses)."""
    if command[:2] == ["bash", "i1k.sh"]:
        imagenet_train.main([command[3], *command[4:], "--check-only"])
        return
    script, argv = os.path.relpath(command[1], ROOT), command[2:]
    if script == "imagenet_val.py":
        imagenet_val.parse_args(argv)
    elif script == "multiview_video_alignment.py":
        mva.check_args(mva.build_parser().parse_args(argv), argv)
    elif script == "action_recognition/tools/run_net.py":
        args = parse_action_args(argv)
        check_inputs(load_config(args.cfg_file, args.opts))
    elif script in ("benchmarks/bench_models.py", "action_recognition/benchmarks/bench_timesformer.py"):
        _script_module(script).parse_args(argv)
    else:
        raise AssertionError(f"no check for {script}")


def test_the_gpu_version_s_commands_pass_each_script_s_checks(data, tmp_path, capsys):
    """Built here without a GPU: a flag, config key or path that a script would refuse is found now, not
    on a lent GPU."""
    paths, out = gpu_check.check_data(data), str(tmp_path / "out")
    steps = gpu_check.all_steps(paths, out, gpu=True)
    assert [s["name"] for s in steps] == ["i1k_amp_fp16", "i1k_amp_bf16_compiled", "imagenet_val",
                                          "imagenet_val_perturbed", "alignment", "action", "bench_models",
                                          "bench_timesformer"]
    for step in steps:
        if step["name"].startswith("imagenet_val"):  # the checkpoint the first i1k.sh run will write
            checkpoint = step["command"][step["command"].index("--checkpoint") + 1]
            os.makedirs(os.path.dirname(checkpoint), exist_ok=True)
            open(checkpoint, "wb").close()
        check_command(step["command"])
    assert capsys.readouterr().out.count("ok: ") == 2  # both i1k.sh runs passed imagenet_train's check
    with pytest.raises(UserError, match="unrecognized arguments: --amp-dtpye"):  # the checks do refuse
        check_command([*steps[0]["command"], "--amp-dtpye", "bfloat16"])
