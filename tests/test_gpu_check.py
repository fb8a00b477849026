"""The GPU check's reduced CPU version runs end to end, so the check cannot rot between GPU sessions."""
import json

from threedtrl.tools import gpu_check


def test_gpu_check_runs_every_step_on_the_cpu(tmp_path):
    data, out = str(tmp_path / "data"), str(tmp_path / "out")
    gpu_check.main(["--prepare", "--data", data])
    gpu_check.main(["--data", data, "--out", out, "--cpu"])
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
