"""The installed project: every package and module imports from a folder outside the repository."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = ("alignment.evaluation", "alignment.metrics", "backbone", "model", "classification", "data_pipeline",
           "data_pipeline.render_ftpv", "visualization", "tools.render_objects", "runtime", "simulation",
           "timesformer.launch", "timesformer.render", "utils", "imagenet_train", "imagenet_val", "multiview_video_alignment", "visualize")


def test_every_package_imports_from_outside_the_repository(tmp_path):
    code = ("import compat, importlib, os\n"
            f"for name in {MODULES!r}:\n"
            "    module = importlib.import_module(name)\n"
            f"    assert os.path.abspath(module.__file__).startswith({ROOT!r}), (name, module.__file__)\n"
            "import model, timm\n"
            "assert timm.create_model('vit_3dtrl_tiny_patch16_224', img_size=32, patch_size=8) is not None\n"
            "print('ok')\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_no_source_file_edits_sys_path():
    offenders = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("data", "output", "__pycache__")]
        for name in files:
            if name.endswith(".py") and name != os.path.basename(__file__):
                text = open(os.path.join(folder, name), encoding="utf-8").read()
                if "sys.path.insert" in text or "sys.path[:0]" in text or "sys.path.append" in text:
                    offenders.append(os.path.relpath(os.path.join(folder, name), ROOT))
    assert offenders == []
