"""See what 3DTRL recovers: pseudo-depth, tokens in 3D, cameras and multi-view video alignment
(``python visualize.py --help``; the code is in ``threedtrl.visualization.cli``)."""
from threedtrl.runtime import run_cli
from threedtrl.visualization.cli import main

if __name__ == "__main__":
    run_cli(main)
