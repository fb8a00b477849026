import os

import threedtrl.runtime.compat  # noqa: F401  (must precede the first timm/torchvision import)

# Under pytest-xdist two test processes may start i1k.sh at the same moment: each gets a rendezvous
# port of its own instead of i1k.sh's default 29500 (a port in use is refused in one line).
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER:
    os.environ.setdefault("MASTER_PORT", str(29611 + 17 * int(_WORKER.removeprefix("gw"))))


def render_ftpv_root(tmp_path_factory, preset, seed: int, dataset_folder: str) -> str:
    """Render ``preset`` and move it under a data root as ``dataset_folder``; returns the root."""
    import shutil
    from data_pipeline.render_ftpv import render_dataset
    out = tmp_path_factory.mktemp("ftpv")
    render_dataset(str(out / "render"), preset, seed=seed, workers=1, progress=False)
    os.makedirs(out / "root")
    shutil.move(str(out / "render" / preset.folder), str(out / "root" / dataset_folder))
    return str(out / "root")
