"""Figures of recovered geometry and alignments, drawn with matplotlib (Agg) into RGB arrays.

Images are uint8 ``(S, S, 3)`` arrays. 3D plots show a world point ``(x, y, z)`` at
``(x, z, -y)``: the camera-frame ``y`` axis points down the image, so a camera with ``R = I``
looks along the plot's depth axis with its image upright.
"""
from typing import Dict, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from threedtrl.runtime import atomic_write  # noqa: E402

DEPTH_CMAP = "viridis"
VIEW_COLOURS = plt.get_cmap("tab10").colors
DPI = 100
TURN_PANEL = 2.6  # inches per side of a rotating-GIF frame


# ----------------------------------------------------------------------------- writing

def figure_to_array(fig: plt.Figure) -> np.ndarray:
    """Render ``fig`` and close it: ``(H, W, 3)`` uint8."""
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image


def save_png(image: np.ndarray, path: str) -> None:
    """Write ``(H, W, 3)`` uint8 as an optimised PNG, atomically."""
    atomic_write(path, lambda tmp: Image.fromarray(image).save(tmp, format="PNG", optimize=True))


def save_gif(frames: Sequence[np.ndarray], path: str, fps: float) -> None:
    """Write ``(H, W, 3)`` uint8 frames as a looping GIF with one shared 64-colour palette, atomically."""
    strip = Image.fromarray(np.concatenate(frames, axis=0))
    palette = strip.quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    images = [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    duration = int(round(1000 / fps))
    atomic_write(path, lambda tmp: images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                                                  duration=duration, loop=0, optimize=True, disposal=1))


def to_hwc(images: np.ndarray) -> np.ndarray:
    """uint8 ``(..., 3, S, S)`` -> ``(..., S, S, 3)``."""
    return np.moveaxis(images, -3, -1)


# ----------------------------------------------------------------------------- pseudo-depth

def depth_limits(depth: np.ndarray) -> Tuple[float, float]:
    """Colour-scale limits of ``depth`` (2nd and 98th percentile, never an empty range)."""
    lo, hi = np.percentile(depth, [2, 98])
    if hi - lo < 1e-6:
        lo, hi = lo - 0.5, hi + 0.5
    return float(lo), float(hi)


def colour_depth(depth: np.ndarray, limits: Tuple[float, float], size: int) -> np.ndarray:
    """Token depth ``(h, w)`` -> ``(size, size, 3)`` uint8 colour map, one flat block per token."""
    lo, hi = limits
    rgb = plt.get_cmap(DEPTH_CMAP)(np.clip((depth - lo) / (hi - lo), 0, 1))[..., :3]
    block = Image.fromarray((rgb * 255).astype(np.uint8)).resize((size, size), Image.Resampling.NEAREST)
    return np.asarray(block)


def overlay_depth(image: np.ndarray, depth: np.ndarray, limits: Tuple[float, float], alpha: float = 0.6
                  ) -> np.ndarray:
    """The colour-mapped token depth ``(h, w)`` blended over ``image (S, S, 3)``."""
    colours = colour_depth(depth, limits, image.shape[0]).astype(np.float32)
    return (alpha * colours + (1 - alpha) * image.astype(np.float32)).round().astype(np.uint8)


def depth_figure(images: np.ndarray, depth: np.ndarray, names: Sequence[str], limits: Sequence[Tuple[float, float]],
                 title: str) -> np.ndarray:
    """Images ``(V, S, S, 3)`` above their pseudo-depth overlays ``(V, h, w)``, one column per view."""
    h, w = depth.shape[-2:]
    return depth_rows_figure(images, [(f"pseudo-depth\n({h}x{w} tokens)", depth, limits)], names, title)


def depth_rows_figure(images: np.ndarray, rows: Sequence[Tuple[str, np.ndarray, Sequence[Tuple[float, float]]]],
                      names: Sequence[str], title: str) -> np.ndarray:
    """Images ``(V, S, S, 3)`` above one overlay row per ``(label, depth (V, h, w), limits per view)``,
    one column per view."""
    views = len(images)
    fig, axes = plt.subplots(1 + len(rows), views, figsize=(1.6 * views, 1.75 * (1 + len(rows))), dpi=DPI,
                             squeeze=False)
    for k in range(views):
        axes[0, k].imshow(images[k])
        axes[0, k].set_title(names[k], fontsize=8)
        for r, (_, depth, limits) in enumerate(rows):
            axes[1 + r, k].imshow(overlay_depth(images[k], depth[k], limits[k]))
        for ax in axes[:, k]:
            ax.set_xticks([])
            ax.set_yticks([])
    for r, (label, _, _) in enumerate(rows):
        axes[1 + r, 0].set_ylabel(label, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(pad=0.4)
    return figure_to_array(fig)


# ----------------------------------------------------------------------------- tokens and cameras in 3D

def to_plot_axes(points: np.ndarray) -> np.ndarray:
    """World ``(..., 3)`` -> plot coordinates ``(x, z, -y)``."""
    return np.stack([points[..., 0], points[..., 2], -points[..., 1]], axis=-1)


def set_equal_limits(ax, points: np.ndarray) -> None:
    """Same scale on all three axes, framing ``points (M, 3)`` (plot coordinates)."""
    lo, hi = points.min(0), points.max(0)
    centre, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2, 1e-3)
    for axis, c in zip("xyz", centre):
        getattr(ax, f"set_{axis}lim")(c - half, c + half)
    ax.set_box_aspect((1, 1, 1))


def _style_3d(ax) -> None:
    ax.set_xlabel("x", fontsize=7, labelpad=-10)
    ax.set_ylabel("z", fontsize=7, labelpad=-10)
    ax.set_zlabel("-y", fontsize=7, labelpad=-10)
    ax.tick_params(labelsize=5, pad=-3)


def scatter_tokens(ax, points: np.ndarray, colours: np.ndarray, size: float = 14) -> None:
    """Tokens ``(M, 3)`` (world) as dots in their patch colours ``(M, 3)``."""
    p = to_plot_axes(points)
    ax.scatter(p[:, 0], p[:, 1], p[:, 2], c=colours, s=size, depthshade=False, edgecolors="0.3", linewidths=0.2)


def tokens_figure(points: np.ndarray, colours: np.ndarray, azimuths: Sequence[float], title: str,
                  elevation: float = 20.0, panel: float = 2.4) -> np.ndarray:
    """Tokens ``(M, 3)`` in the world frame seen from each azimuth, side by side."""
    fig = plt.figure(figsize=(panel * len(azimuths), panel + 0.45), dpi=DPI)
    for k, azimuth in enumerate(azimuths):
        ax = fig.add_subplot(1, len(azimuths), k + 1, projection="3d")
        scatter_tokens(ax, points, colours)
        set_equal_limits(ax, to_plot_axes(points))
        ax.view_init(elev=elevation, azim=azimuth)
        _style_3d(ax)
        ax.set_title(f"azimuth {azimuth:.0f}°", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=0.84, wspace=0)
    return figure_to_array(fig)


def frustum_lines(rotation: np.ndarray, translation: np.ndarray, depth: float, grid_size: Tuple[int, int]
                  ) -> Tuple[np.ndarray, np.ndarray]:
    """World-frame outline of a camera's viewing pyramid out to pseudo-depth ``depth``.

    The image-plane corners are the grid's outer corners ``(u, v) = (+-w/2, +-h/2)`` back-projected
    like the tokens, ``(u d, v d, d)``, then moved by ``p R + t``.

    Returns:
        segments ``(8, 2, 3)`` (apex to corners, then the image rectangle) and the top edge ``(2, 3)``.
    """
    h, w = grid_size
    corners = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
    cam = np.concatenate([corners * depth, np.full((4, 1), depth)], axis=1)
    world = cam @ rotation + translation
    apex = translation
    segments = [(apex, c) for c in world] + [(world[i], world[(i + 1) % 4]) for i in range(4)]
    return np.array(segments), world[:2]


def cameras_figure(points: np.ndarray, rotation: np.ndarray, translation: np.ndarray, depth: np.ndarray,
                   grid_size: Tuple[int, int], names: Sequence[str], azimuths: Sequence[float], title: str,
                   panel: float = 3.0) -> np.ndarray:
    """Estimated cameras of views of one instant as frusta in one world frame, with their tokens.

    Args:
        points: ``(V, N, 3)`` world tokens; rotation ``(V, 3, 3)``; translation ``(V, 3)``;
        depth: ``(V, N)`` pseudo-depth (each frustum reaches its view's median token depth).
    """
    fig = plt.figure(figsize=(panel * len(azimuths), panel + 0.4), dpi=DPI)
    everything = [points.reshape(-1, 3), translation]
    outlines = []
    for k in range(len(names)):
        segments, top = frustum_lines(rotation[k], translation[k], float(np.median(depth[k])), grid_size)
        outlines.append((segments, top))
        everything.append(segments.reshape(-1, 3))
    extent = to_plot_axes(np.concatenate(everything))
    for a, azimuth in enumerate(azimuths):
        ax = fig.add_subplot(1, len(azimuths), a + 1, projection="3d")
        for k, (segments, top) in enumerate(outlines):
            colour = VIEW_COLOURS[k % len(VIEW_COLOURS)]
            p = to_plot_axes(points[k])
            ax.scatter(p[:, 0], p[:, 1], p[:, 2], color=colour, s=4, alpha=0.35, depthshade=False)
            for seg in to_plot_axes(segments):
                ax.plot(seg[:, 0], seg[:, 1], seg[:, 2], color=colour, lw=1)
            edge = to_plot_axes(top)
            ax.plot(edge[:, 0], edge[:, 1], edge[:, 2], color=colour, lw=3, label=names[k] if a == 0 else None)
        set_equal_limits(ax, extent)
        ax.view_init(elev=20, azim=azimuth)
        _style_3d(ax)
    columns = min(len(names), 3 * len(azimuths))    # as many names as fit under the panels
    fig.legend(loc="lower center", ncol=columns, fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0, right=1, bottom=0.03 + 0.06 * -(-len(names) // columns),
                        top=0.9 - 0.05 * title.count("\n"), wspace=0)
    return figure_to_array(fig)


# ----------------------------------------------------------------------------- alignment

def alignment_frame(first: np.ndarray, truth: np.ndarray, matches: Dict[str, Tuple[np.ndarray, int]], t: int,
                    length: int, third_name: str) -> np.ndarray:
    """First-person frame ``t``, the third-person frame at the same time and each model's nearest
    third-person frame (``matches[name] = (image, index)``), side by side."""
    panels = [(first, f"first person, t={t}", "0.2"), (truth, f"{third_name}, t={t} (truth)", "0.2")]
    for name, (image, index) in matches.items():
        off = abs(index - t)
        panels.append((image, f"{name}: t={index}", "tab:green" if off <= 1 else "tab:red"))
    fig, axes = plt.subplots(1, len(panels), figsize=(1.7 * len(panels), 2.05), dpi=DPI)
    for ax, (image, label, colour) in zip(axes, panels):
        ax.imshow(image)
        ax.set_title(label, fontsize=7, color=colour)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"nearest third-person frame to first-person frame {t} of {length}", fontsize=8)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.78, wspace=0.04)
    return figure_to_array(fig)


def alignment_plot(nearest: Dict[Tuple[str, str], Dict[str, np.ndarray]],
                   errors: Dict[Tuple[str, str], Dict[str, float]], title: str, columns: int = 4) -> np.ndarray:
    """Nearest-frame index vs frame index, one panel per view pair, one line per model (the
    diagonal is perfect alignment); at most ``columns`` panels per row.

    Args:
        nearest: ``nearest[(view a, view b)][model]`` = ``(T,)`` index of the nearest frame of view b
            for every frame of view a; errors: the matching alignment errors.
    """
    pairs = list(nearest)
    cols = min(columns, len(pairs))
    rows = -(-len(pairs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.8 * rows), dpi=DPI, squeeze=False)
    for ax, (view_a, view_b) in zip(axes.flat, pairs):
        models = nearest[(view_a, view_b)]
        length = len(next(iter(models.values())))
        ax.plot([0, length - 1], [0, length - 1], color="0.75", lw=1, label="perfect")
        for m, (name, idx) in enumerate(models.items()):
            ax.plot(np.arange(length), idx, marker="os^"[m % 3], ms=3, lw=1,
                    label=f"{name} (err {errors[(view_a, view_b)][name]:.3f})")
        ax.set_title(f"{view_a} -> {view_b}", fontsize=8)
        ax.set_xlabel(f"frame of {view_a}", fontsize=7)
        ax.set_ylabel(f"nearest frame of {view_b}", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6, loc="upper left")
    for ax in list(axes.flat)[len(pairs):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(pad=0.4)
    return figure_to_array(fig)


def metric_by_size_plot(panels: Dict[str, Dict[str, Dict[int, Tuple[float, float]]]],
                        starts: Dict[str, Dict[str, float]], ylabel: str) -> np.ndarray:
    """A metric against the training-set size: one panel per family, one line per model with the
    seeds' mean and standard deviation as error bars, each model's start point as a dashed level.

    Args:
        panels: ``panels[family][model][size]`` = ``(mean, std)``; starts: ``starts[family][model]``.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.0), dpi=DPI, squeeze=False)
    for ax, (family, models) in zip(axes.flat, panels.items()):
        sizes = sorted(next(iter(models.values())))
        for m, (name, by_size) in enumerate(models.items()):
            mean, std = (np.array([by_size[s][i] for s in sizes]) for i in (0, 1))
            colour = VIEW_COLOURS[m]
            ax.errorbar(sizes, mean, yerr=std, marker="os^"[m % 3], ms=4, lw=1.2, capsize=3, color=colour, label=name)
            ax.axhline(starts[family][name], color=colour, lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.minorticks_off()
        ax.set_title(family, fontsize=9)
        ax.set_xlabel("training videos", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, title="dashed: start point", title_fontsize=6)
    fig.tight_layout(pad=0.4)
    return figure_to_array(fig)
