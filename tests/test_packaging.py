"""The installed project: the release's top-level names and the ``threedtrl`` namespace import from a
folder outside the repository, and nothing generic of the project lands at the top level."""
import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the release's top-level names (its packages, utils and its scripts), kept where the release has them
RELEASE_NAMES = ("backbone", "model", "data_pipeline", "utils", "imagenet_train", "imagenet_val",
                 "multiview_video_alignment")
# the project's own packages: inside the namespace package only
OWN = ("alignment", "runtime", "simulation", "classification", "visualization", "tools", "timesformer")
MODULES = RELEASE_NAMES + ("data_pipeline.render_ftpv", "threedtrl.alignment.evaluation", "threedtrl.alignment.metrics",
                           "threedtrl.classification", "threedtrl.visualization.cli", "threedtrl.tools.render_objects",
                           "threedtrl.runtime.compat", "threedtrl.simulation", "threedtrl.timesformer.launch",
                           "threedtrl.timesformer.render")


def _run_outside(code, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env)


def test_every_package_imports_from_outside_the_repository(tmp_path):
    code = ("import importlib, os\n"
            "import model, timm\n"  # model first: it makes torchvision importable before timm needs it
            f"for name in {MODULES!r}:\n"
            "    module = importlib.import_module(name)\n"
            f"    assert os.path.abspath(module.__file__).startswith({ROOT!r}), (name, module.__file__)\n"
            "assert timm.create_model('vit_3dtrl_tiny_patch16_224', img_size=32, patch_size=8) is not None\n"
            "print('ok')\n")
    result = _run_outside(code, tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_no_generic_top_level_name_is_installed(tmp_path):
    code = ("import importlib.util\n"
            f"print([n for n in {OWN + ('compat', 'visualize')!r} if importlib.util.find_spec(n) is not None])\n")
    result = _run_outside(code, tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "[]", (result.stdout, result.stderr)
    top_level = {name.split(".")[0] for name in _installed_names()}
    assert top_level == set(RELEASE_NAMES) | {"threedtrl"}, top_level


def _installed_names():
    """What the package metadata says setuptools installs (packages and modules)."""
    import tomllib
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        tool = tomllib.load(f)["tool"]["setuptools"]
    return tool["packages"] + tool["py-modules"]


def _source_files():
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("data", "output", "__pycache__")]
        for name in files:
            if name.endswith(".py"):
                yield os.path.join(folder, name)


def test_sources_import_the_project_by_its_installed_names():
    # A bare ``import runtime`` would work from the repository root only, and load a second copy of
    # the package beside ``threedtrl.runtime`` (two UserError classes, two sets of module state).
    offenders = [f"{os.path.relpath(path, ROOT)}: {name}" for path in _source_files() for name in _imported_names(path)
                 if name.split(".")[0] in OWN + ("compat",)]
    assert offenders == []


def _imported_names(path):
    """Absolute module names imported anywhere in the file (at the top or inside functions)."""
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


PACKAGE_FOLDERS = {"backbone": "backbone", "model": "model", "data_pipeline": "data_pipeline", "alignment": "alignment",
                   "runtime": "runtime", "simulation": "simulation", "classification": "classification",
                   "visualization": "visualization", "timesformer": os.path.join("action_recognition", "timesformer")}


def _package_of_file(path):
    rel = os.path.relpath(path, ROOT)
    if rel == "utils.py":
        return "utils"
    return next((name for name, folder in PACKAGE_FOLDERS.items() if rel.startswith(folder + os.sep)), None)


def _package_of_import(name):
    parts = name.split(".")
    head = parts[1] if parts[0] == "threedtrl" and len(parts) > 1 else parts[0]
    return head if head in PACKAGE_FOLDERS or head == "utils" else None


def test_no_package_imports_one_that_imports_it_back():
    edges = {}
    for path in _source_files():
        source = _package_of_file(path)
        for name in _imported_names(path) if source else ():
            target = _package_of_import(name)
            if target and target != source:
                edges.setdefault(source, set()).add(target)

    def reachable(start):
        seen, stack = set(), [start]
        while stack:
            for nxt in edges.get(stack.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    assert edges and [(a, b) for a in edges for b in edges[a] if a in reachable(b)] == []


def test_no_source_file_edits_sys_path():
    offenders = []
    for path in _source_files():
        if os.path.basename(path) != os.path.basename(__file__):
            text = open(path, encoding="utf-8").read()
            if "sys.path.insert" in text or "sys.path[:0]" in text or "sys.path.append" in text:
                offenders.append(os.path.relpath(path, ROOT))
    assert offenders == []

