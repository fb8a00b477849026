"""The overview diagram of the 3DTRL layer in a ViT, drawn with matplotlib."""
from typing import Tuple

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

from .plots import figure_to_array, save_png  # noqa: E402

BACKBONE = "#dde6f3"
LAYER = "#f6d7a7"
DEPTH = "#cfe8cf"
CAMERA = "#e8d3ea"
EMBED = "#f3e3a8"


def box(ax, centre: Tuple[float, float], size: Tuple[float, float], text: str, colour: str,
        fontsize: float = 8, bold: bool = False) -> None:
    (x, y), (w, h) = centre, size
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.3,rounding_size=1.2",
                                facecolor=colour, edgecolor="0.3", lw=0.8))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, weight="bold" if bold else "normal")


def arrow(ax, start: Tuple[float, float], end: Tuple[float, float], style: str = "-|>", colour: str = "0.25") -> None:
    ax.annotate("", xy=end, xytext=start,
                arrowprops=dict(arrowstyle=style, color=colour, lw=1.0, shrinkA=0, shrinkB=0))


def draw_backbone(ax, top: float) -> None:
    """The ViT the layer sits in, left to right."""
    stages = [(7, "image\n(B, 3, H, W)", BACKBONE), (22, "patch embedding\n+ CLS + 2D pos.", BACKBONE),
              (38, "ViT blocks\n0 … 3", BACKBONE), (54, "3DTRL", LAYER), (70, "ViT blocks\n4 … 11", BACKBONE),
              (87, "CLS token →\nhead / embedding", BACKBONE)]
    for k, (x, text, colour) in enumerate(stages):
        box(ax, (x, top), (11, 5), text, colour, fontsize=8, bold=text == "3DTRL")
        if k:
            arrow(ax, (stages[k - 1][0] + 6.1, top), (x - 6.1, top))


def draw_layer(ax) -> None:
    """Inside 3DTRL: depth and camera branches, lifting to the world frame, the 3D embedding."""
    ax.add_patch(FancyBboxPatch((2, 1.5), 96, 30, boxstyle="round,pad=0.2,rounding_size=2", facecolor="#fbf3e6",
                                edgecolor="#c98b2b", lw=1.0, linestyle="--"))
    ax.plot([48.2, 2.5], [39.2, 31.8], color="#c98b2b", lw=0.8, ls="--")
    ax.plot([59.8, 97.5], [39.2, 31.8], color="#c98b2b", lw=0.8, ls="--")
    ax.text(4, 29.6, "3DTRL (one layer, placed before block 4)", fontsize=8, color="#8a5a12", weight="bold",
            va="center")

    box(ax, (9.5, 16), (10, 7), "tokens x\nCLS + N patches\n(B, 1+N, D)", BACKBONE)
    box(ax, (30, 23), (19, 6.5), "pseudo-depth estimator\nLinear–ReLU–Linear per patch\n→ depth d, (B, N)", DEPTH)
    box(ax, (30, 8.5), (19, 7.5), "camera estimator\nMLP(CLS) + MLP(mean of patches)\n→ MLP → Euler angles "
        "(θ, φ, ψ)\nand translation t", CAMERA)
    box(ax, (52, 23), (15, 6.5), "back-project\np_cam = (u·d, v·d, d)\n(u, v): token's grid cell", DEPTH)
    box(ax, (52, 8.5), (15, 6.5), "camera pose\nR = Rz(ψ) Ry(φ) Rx(θ)\nt ∈ ℝ³, one per image", CAMERA)
    box(ax, (70.5, 16), (12.5, 6.5), "to the world frame\np_world = p_cam R + t\n(B, N, 3)", LAYER)
    box(ax, (88, 23), (13, 6.5), "3D positional\nembedding\nLinear–ReLU–Linear", EMBED)
    box(ax, (88, 8.5), (13, 6.5), "x + [e_cls, e_3D]\n+ 2D pos. embedding\n→ next block", EMBED)

    arrow(ax, (15, 18), (20, 22))
    arrow(ax, (15, 14), (20, 9.5))
    arrow(ax, (39.9, 23), (44, 23))
    arrow(ax, (39.9, 8.5), (44, 8.5))
    arrow(ax, (60, 22), (63.8, 17.5))
    arrow(ax, (60, 9.5), (63.8, 14.5))
    arrow(ax, (77.2, 17.5), (81, 22))
    arrow(ax, (88, 19.3), (88, 12.2))
    ax.text(78, 2.6, "e_3D: (B, N, D); e_cls: learned", fontsize=6.5, color="0.35", ha="center")


def layer_diagram() -> np.ndarray:
    """``(H, W, 3)`` uint8 image of the diagram."""
    fig = plt.figure(figsize=(11, 4.8), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 46)
    ax.axis("off")
    draw_backbone(ax, top=41.5)
    draw_layer(ax)
    return figure_to_array(fig)


def draw_layer_diagram(path: str) -> None:
    """Write the diagram as a PNG."""
    save_png(layer_diagram(), path)
