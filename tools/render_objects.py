"""Render an ImageFolder of pybullet objects whose validation views lie outside the training range.

Every class is one object shipped with ``pybullet_data``. A camera looks at the object from a
random azimuth, elevation and distance, under a random light, in front of a random background.
The training split sees the object from the front half (azimuth -90..90 degrees) at low
elevation (0..30 degrees); the validation split from all around, at elevations of 40..65
degrees that training never shows, so validation accuracy measures how well a classifier
generalises to new viewpoints.

    python tools/render_objects.py --out data/objects --preset small

writes ``data/objects/{train,val}/<class>/<index>.png`` and ``data/objects/render.json``.
Every image is a function of (seed, split, class, index) only, so the output is the same for
any ``--workers``; existing images are kept, so an interrupted run resumes where it stopped.
"""
import argparse
import hashlib
import math
import os
from dataclasses import asdict, dataclass
from typing import Dict, List, Tuple

import cv2
import numpy as np

from threedtrl import simulation
from threedtrl.runtime import UserError, atomic_write, progress_bar, run_cli, write_json_atomic

# class name -> (URDF inside pybullet_data, global scaling)
OBJECTS: Dict[str, Tuple[str, float]] = {
    "duck": ("duck_vhacd.urdf", 1.0),
    "teddy": ("teddy_vhacd.urdf", 1.0),
    "r2d2": ("r2d2.urdf", 1.0),
    "soccerball": ("soccerball.urdf", 1.0),
    "lego": ("lego/lego.urdf", 1.0),
    "jenga": ("jenga/jenga.urdf", 1.0),
    "racecar": ("racecar/racecar.urdf", 1.0),
    "table": ("table/table.urdf", 1.0),
    "husky": ("husky/husky.urdf", 1.0),
    "panda": ("franka_panda/panda.urdf", 1.0),
}


@dataclass(frozen=True)
class Preset:
    classes: int
    train_per_class: int
    val_per_class: int
    size: int


PRESETS = {
    "tiny": Preset(classes=3, train_per_class=8, val_per_class=4, size=32),
    "small": Preset(classes=10, train_per_class=100, val_per_class=30, size=64),
    "medium": Preset(classes=10, train_per_class=300, val_per_class=100, size=112),
}


@dataclass(frozen=True)
class ViewRange:
    """Camera ranges in degrees; distance is in multiples of the object's bounding radius."""
    azimuth: Tuple[float, float]
    elevation: Tuple[float, float]
    distance: Tuple[float, float]


VIEWS = {
    "train": ViewRange(azimuth=(-90.0, 90.0), elevation=(0.0, 30.0), distance=(2.2, 3.0)),
    "val": ViewRange(azimuth=(-180.0, 180.0), elevation=(40.0, 65.0), distance=(2.2, 3.0)),
}
FOV_DEG = 40.0
OVERSAMPLE = 2  # render at 2x and downsample with area averaging (anti-aliasing)


def image_rng(seed: int, split: str, name: str, index: int) -> np.random.Generator:
    """A generator that depends only on the image's identity, not on the worker that renders it."""
    digest = hashlib.sha256(f"{seed}/{split}/{name}/{index}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def object_bounds(client: int, body: int) -> Tuple[np.ndarray, float]:
    """Centre ``(3,)`` and bounding radius of a body over all its links."""
    import pybullet as pb

    boxes = [pb.getAABB(body, link, physicsClientId=client) for link in range(-1, pb.getNumJoints(body, physicsClientId=client))]
    lo = np.min([b[0] for b in boxes], axis=0)
    hi = np.max([b[1] for b in boxes], axis=0)
    return (lo + hi) / 2, float(np.linalg.norm(hi - lo) / 2)


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random vertical two-colour gradient ``(size, size, 3)`` uint8."""
    top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = np.linspace(0, 1, size)[:, None, None]
    return np.broadcast_to(top * (1 - t) + bottom * t, (size, size, 3)).astype(np.uint8)


def sample_camera(rng: np.random.Generator, view: ViewRange) -> Tuple[float, float, float]:
    """``(azimuth, elevation, distance)`` of an image's camera: degrees, degrees, bounding radii
    (the first draws of the image's generator)."""
    return rng.uniform(*view.azimuth), rng.uniform(*view.elevation), rng.uniform(*view.distance)


def render_view(client: int, body: int, centre: np.ndarray, radius: float, view: ViewRange,
                rng: np.random.Generator, size: int) -> np.ndarray:
    """One RGB image ``(size, size, 3)`` uint8 of ``body`` from a random camera in ``view``."""
    import pybullet as pb

    azimuth, elevation, radii = sample_camera(rng, view)
    distance = radius * radii
    target = centre + rng.normal(0, 0.05 * radius, 3)
    az, el = math.radians(azimuth), math.radians(elevation)
    eye = target + distance * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    light_dir = rng.normal(size=3)
    light_dir[2] = abs(light_dir[2]) + 0.3
    full = size * OVERSAMPLE
    view_matrix = simulation.look_at_view(eye, target)
    proj_matrix = simulation.projection(FOV_DEG, 0.01 * distance, 10 * distance)
    _, _, rgba, _, seg = pb.getCameraImage(
        full, full, view_matrix, proj_matrix, lightDirection=light_dir.tolist(),
        lightColor=rng.uniform(0.7, 1.0, 3).tolist(), lightAmbientCoeff=rng.uniform(0.3, 0.6),
        lightDiffuseCoeff=rng.uniform(0.4, 0.8), lightSpecularCoeff=rng.uniform(0.0, 0.3),
        shadow=0, renderer=pb.ER_TINY_RENDERER, physicsClientId=client)
    rgb = np.asarray(rgba, dtype=np.uint8).reshape(full, full, 4)[..., :3]
    mask = (np.asarray(seg).reshape(full, full) == body)[..., None]
    image = np.where(mask, rgb, background(rng, full))
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def render_chunk(job: Tuple[str, str, str, List[int], int, int]) -> int:
    """Render images ``indices`` of one class and split; returns how many were written."""
    import pybullet as pb

    out, split, name, indices, size, seed = job
    client = simulation.connect()
    try:
        urdf, scale = OBJECTS[name]
        with simulation.silenced_stdout():
            body = pb.loadURDF(urdf, globalScaling=scale, useFixedBase=True, physicsClientId=client)
        centre, radius = object_bounds(client, body)
        folder = os.path.join(out, split, name)
        for index in indices:
            rng = image_rng(seed, split, name, index)
            image = render_view(client, body, centre, radius, VIEWS[split], rng, size)
            atomic_write(os.path.join(folder, f"{index:05d}.png"), lambda tmp: simulation.write_image(tmp, image))
    finally:
        pb.disconnect(physicsClientId=client)
    return len(indices)


def pending_jobs(out: str, preset: Preset, size: int, seed: int, chunk: int) -> List[tuple]:
    """Chunks of images not on disk yet."""
    jobs = []
    names = list(OBJECTS)[:preset.classes]
    for split, count in (("train", preset.train_per_class), ("val", preset.val_per_class)):
        for name in names:
            missing = [i for i in range(count) if not os.path.isfile(os.path.join(out, split, name, f"{i:05d}.png"))]
            jobs += [(out, split, name, missing[k:k + chunk], size, seed) for k in range(0, len(missing), chunk)]
    return jobs


def write_cameras(out: str, preset: Preset, seed: int) -> None:
    """``cameras.csv`` beside train/ and val/ (image folders ignore it): one row per image with its
    split, class, file and camera azimuth and elevation (degrees, around the object's centre, azimuth
    0 along world x) and distance (in bounding radii of the object)."""
    rows = ["split,class,file,azimuth_deg,elevation_deg,distance_radii"]
    for split, count in (("train", preset.train_per_class), ("val", preset.val_per_class)):
        for name in list(OBJECTS)[:preset.classes]:
            for index in range(count):
                azimuth, elevation, radii = sample_camera(image_rng(seed, split, name, index), VIEWS[split])
                rows.append(f"{split},{name},{index:05d}.png,{azimuth:.4f},{elevation:.4f},{radii:.4f}")
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write("\n".join(rows) + "\n")
    atomic_write(os.path.join(out, "cameras.csv"), write)


def write_record(out: str, record: dict, complete: bool) -> None:
    """``render.json``: the settings, class names and camera ranges; ``complete`` once all images exist."""
    write_json_atomic(dict(record, class_names=list(OBJECTS)[:record["classes"]], fov_deg=FOV_DEG,
                           views={k: asdict(v) for k, v in VIEWS.items()}, complete=complete),
                      os.path.join(out, "render.json"))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output folder (gets train/ and val/)")
    parser.add_argument("--preset", default="small", choices=sorted(PRESETS))
    parser.add_argument("--size", type=int, default=None, help="image side in pixels (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="rendering processes")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    preset = PRESETS[args.preset]
    size = args.size or preset.size
    if not 8 <= size <= 1024:
        raise UserError(f"--size must be between 8 and 1024, got {size}")
    if args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    record = dict(preset=args.preset, size=size, seed=args.seed, **{k: v for k, v in asdict(preset).items() if k != "size"})
    simulation.claim_folder(args.out, "render.json", record, compare=list(record))
    write_record(args.out, record, complete=False)
    jobs = pending_jobs(args.out, preset, size, args.seed, chunk=16)
    total = sum(len(job[3]) for job in jobs)
    with progress_bar(total=total, desc="render", unit="img", enabled=not args.no_progress) as bar:
        for done in simulation.run_jobs(render_chunk, jobs, args.workers):
            bar.update(done)
    write_cameras(args.out, preset, args.seed)
    write_record(args.out, record, complete=True)
    print(f"{args.out}: {preset.classes} classes, {preset.train_per_class} train and "
          f"{preset.val_per_class} val images per class at {size} px")


if __name__ == "__main__":
    run_cli(main)
