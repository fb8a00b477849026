"""Render a First-Third Person View (FTPV) data set of a simulated Panda arm with pybullet.

Each trajectory is a randomised pick-and-place (or reach) episode. One camera rides on the
Panda's hand (first-person view) and fixed cameras around the arm watch the same episode
(third-person views) from about a metre, so the arm fills much of every frame; the floor is
plain, so what changes over time (the arm and the cube) is what a frame shows most. The arm moves
at one speed along its path (``--pacing even``), so consecutive frames differ visibly; ``--pacing
eased`` stops it at every key pose (the earlier data). Frames are written in the FTPV layout the
alignment task reads:

    OUT/Pandav1_Train_Frame/tr_0000/fpv/000000.jpg ...
    OUT/Pandav1_Train_Frame/tr_0000/tpv/view_0000/000000.jpg ...
    OUT/Pandav1_Train_Frame/tr_0000/ground_truth.npz       (true cameras, depth, arm state; readers ignore it)
    OUT/Pandav1_Train_Frame/splits.json                    (only with --extra_train_videos)

``ground_truth.npz`` holds, for the views in the order fpv, view_0000, view_0001, ...:
``intrinsics (3, 3)`` in pixels of the written frames (pixel (c, r) covers [c, c+1) x [r, r+1));
``world_to_camera (V, T, 4, 4)``, world (metres, z up, origin at the robot's base) to the camera
frame x right, y down, z forward, per frame (the first-person camera moves); ``depth_mm (V, T, S, S)``
uint16, each pixel's depth along the optical axis in millimetres (0: nothing within the far plane);
``view_names (V,)``; and the scene's state per frame, the same in every view: ``arm_state (T, 8)``
(the 7 arm joint angles in radians and the finger opening in metres) and ``cube_position (T, 3)``
(metres).

Rendering uses pybullet's CPU TinyRenderer (the shared Panda scene of ``simulation``), so it runs
anywhere. A trajectory depends only on
the seed and its index, so the output is the same for any number of worker processes, and a
re-run keeps trajectories that are already complete (resumable).

    python -m data_pipeline.render_ftpv --out data/ftpv --preset demo
"""
import argparse
import math
import os
import shutil
from dataclasses import asdict, dataclass, replace
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from threedtrl import simulation
from data_pipeline.ftpv import (SPLIT_FILE, SPLITS, TPV, frame_name, resolve_dataset, trajectory_name,
                                trajectory_view_dirs, view_folder_names)
from threedtrl.runtime import UserError, progress_bar, run_cli, write_json_atomic
from threedtrl.simulation import FINGER_OPEN, HAND_LINK, REST_POSE, PandaScene

MANIFEST = "render.json"
# what folders rendered before an option existed were rendered with
MANIFEST_DEFAULTS = {"random_cameras": False, "pacing": "eased", "family": "panda", "extra_train_videos": 0}
SCENE_VERSION = 2  # 2: cameras at about 1 m, plain floor, optional shadows, ground truth (1: the first scene)
_WORKSPACE_TARGET = (0.35, 0.0, 0.25)
_FLOOR_RGBA = (0.55, 0.55, 0.5, 1.0)
_CUBE_HALF = 0.03
_CUBE_COLOURS = ((0.85, 0.15, 0.15), (0.15, 0.6, 0.2), (0.15, 0.3, 0.85), (0.9, 0.75, 0.1),
                 (0.75, 0.2, 0.75), (0.1, 0.7, 0.75))


@dataclass(frozen=True)
class Preset:
    """What a rendered data set looks like. ``folder`` is the data set folder under ``--out``."""
    folder: str
    trajectories: int
    views: int
    frames: int
    size: int
    jpeg_quality: int = 95
    shadows: bool = False
    random_cameras: bool = False   # third-person cameras drawn anew for every trajectory (pretraining data)
    pacing: str = "even"           # how the key poses are spread over the frames (PACINGS)
    family: str = "panda"          # panda (the pick task) or a family of simulation.families
    # trajectories rendered after the preset's and added to its training split (splits.json), so that
    # validation and test stay the Pick set's
    extra_train_videos: int = 0

    @property
    def total_trajectories(self) -> int:
        return self.trajectories + self.extra_train_videos


PRESETS = {
    # Shaped like the paper's Pick set: 20 trajectories (split 10/5/5), 9 third-person views;
    # short episodes so that several CPU trainings fit in an afternoon.
    "panda": Preset("Pandav1_Train_Frame", trajectories=20, views=9, frames=20, size=96, shadows=True),
    # Same layout and splits, smaller frames without shadows (half the rendering time): the CPU
    # demo renders and trains on it in minutes.
    "demo": Preset("Pandav1_Train_Frame", trajectories=20, views=9, frames=20, size=64),
    # The held-out scene families (--family): the demo's layout with 24 frames, in the folder the
    # alignment script reads with --data panda, so `make demo FTPV_ROOT=...` runs on them as they are.
    "heldout": Preset("Pandav1_Train_Frame", trajectories=20, views=9, frames=24, size=64),
}
FAMILIES = ("panda", *simulation.FAMILIES)


# ----------------------------------------------------------------------------- cameras

def third_person_cameras(num_views: int) -> List[Tuple[float, float, float]]:
    """``(yaw, pitch, distance)`` of each fixed camera: azimuths spread around the arm,
    elevations and distances cycling so that no two views look alike."""
    pitches = (-20.0, -35.0, -50.0)
    distances = (1.0, 0.9, 1.1)
    return [(30.0 + 360.0 * k / num_views + 13.0 * (k % 2), pitches[k % 3], distances[(k // 3) % 3])
            for k in range(num_views)]


def random_cameras(rng: np.random.Generator, num_views: int) -> List[Tuple[float, float, float]]:
    """``(yaw, pitch, distance)`` of ``num_views`` cameras drawn all around the arm, with the fixed
    cameras' ranges of elevation and distance."""
    return [(float(rng.uniform(0.0, 360.0)), float(rng.uniform(-55.0, -15.0)), float(rng.uniform(0.85, 1.15)))
            for _ in range(num_views)]


NEAR, FAR, FOV_DEG = 0.02, 5.0, 55.0
LIGHT_DIRECTION = (0.6, -0.4, 2.0)
GROUND_TRUTH = "ground_truth.npz"


def first_person_view(scene: PandaScene) -> list:
    """View matrix of a camera fixed to the hand, looking along the gripper towards the fingers."""
    import pybullet as pb

    position, orientation = scene.link_pose(HAND_LINK)
    rotation = np.array(pb.getMatrixFromQuaternion(orientation)).reshape(3, 3)
    forward, up = rotation[:, 2], rotation[:, 0]
    eye = np.asarray(position) - 0.05 * forward + 0.07 * up
    return simulation.look_at_view(eye, eye + forward, up)


# ----------------------------------------------------------------------------- scene and motion

def build_scene() -> PandaScene:
    """The shared Panda scene dressed for FTPV: plain floor, links in alternating greys (so the
    arm's pose reads in every view), dark hand and fingers."""
    scene = PandaScene(cube_half=_CUBE_HALF)
    scene.set_floor(_FLOOR_RGBA)
    for link in range(-1, scene.num_links):
        shade = 0.92 if link % 2 else 0.55
        scene.set_link_colour(link, (0.2, 0.2, 0.22, 1.0) if link >= HAND_LINK else (shade, shade, shade, 1.0))
    return scene


def camera_views(cameras: Sequence[Tuple[float, float, float]]) -> List[list]:
    """View matrices of third-person cameras ``(yaw, pitch, distance)`` around the workspace."""
    return [simulation.orbit_view(_WORKSPACE_TARGET, dist, yaw, pitch) for yaw, pitch, dist in cameras]


@dataclass(frozen=True)
class Episode:
    """Random parameters of one trajectory."""
    kind: str                          # "pick" (grasp, lift and carry) or "reach" (touch and retreat)
    cube_xy: Tuple[float, float]
    cube_yaw: float
    goal: Tuple[float, float, float]
    colour: Tuple[float, float, float]
    start_offset: Tuple[float, ...]


def sample_episode(rng: np.random.Generator) -> Episode:
    radius, angle = rng.uniform(0.4, 0.62), rng.uniform(-0.6, 0.6)
    goal_radius, goal_angle = rng.uniform(0.35, 0.6), rng.uniform(-0.9, 0.9)
    return Episode(
        kind="pick" if rng.random() < 0.75 else "reach",
        cube_xy=(radius * math.cos(angle), radius * math.sin(angle)),
        cube_yaw=float(rng.uniform(-math.pi / 4, math.pi / 4)),
        goal=(goal_radius * math.cos(goal_angle), goal_radius * math.sin(goal_angle), float(rng.uniform(0.2, 0.4))),
        colour=_CUBE_COLOURS[int(rng.integers(len(_CUBE_COLOURS)))],
        start_offset=tuple(float(v) for v in rng.uniform(-0.25, 0.25, size=7)),
    )


def episode_keyframes(scene: PandaScene, episode: Episode) -> List[Tuple[List[float], float, bool]]:
    """``(joints, finger opening, cube attached)`` at the key moments of the episode."""
    import pybullet as pb

    x, y = episode.cube_xy
    above, at = (x, y, _CUBE_HALF + 0.15), (x, y, _CUBE_HALF)
    down = pb.getQuaternionFromEuler((math.pi, 0.0, episode.cube_yaw))
    start = [q + d for q, d in zip(REST_POSE, episode.start_offset)]
    scene.set_arm(start, FINGER_OPEN)
    q_above = scene.solve_ik(above, down)
    scene.set_arm(q_above, FINGER_OPEN)
    q_at = scene.solve_ik(at, down)
    scene.set_arm(q_at, FINGER_OPEN)
    q_goal = scene.solve_ik(episode.goal, down)
    if episode.kind == "pick":
        return [(start, FINGER_OPEN, False), (q_above, FINGER_OPEN, False), (q_at, FINGER_OPEN, False),
                (q_at, _CUBE_HALF, True), (q_above, _CUBE_HALF, True), (q_goal, _CUBE_HALF, True)]
    return [(start, FINGER_OPEN, False), (q_above, FINGER_OPEN, False), (q_at, 0.0, False),
            (q_above, 0.0, False), (q_goal, 0.02, False)]


# "even": one speed along the whole path, every segment given time in proportion to its length
# (joint-space distance in radians + FINGER_TIME_PER_M x finger travel + KEY_POSE_TIME), so that
# consecutive frames differ visibly; "eased": every segment the same time, starting and stopping at
# rest (smoothstep), so the arm dwells at each key pose and the frames around it nearly repeat.
PACINGS = ("even", "eased")
FINGER_TIME_PER_M = 10.0
KEY_POSE_TIME = 0.05


def segment_times(keyframes: List[Tuple[List[float], float, bool]], pacing: str) -> np.ndarray:
    """``(K,)`` times at which the ``K`` key poses are reached (first 0)."""
    if pacing not in PACINGS:
        raise ValueError(f"unknown pacing {pacing!r} (one of {', '.join(PACINGS)})")
    if pacing == "eased":
        return np.arange(len(keyframes), dtype=np.float64)
    lengths = [float(np.linalg.norm(np.subtract(q1, q0))) + FINGER_TIME_PER_M * abs(f1 - f0) + KEY_POSE_TIME
               for (q0, f0, _), (q1, f1, _) in zip(keyframes[:-1], keyframes[1:])]
    return np.concatenate([[0.0], np.cumsum(lengths)])


def interpolate(keyframes: List[Tuple[List[float], float, bool]], frames: int, pacing: str = "even"
                ) -> List[Tuple[np.ndarray, float, bool]]:
    """Resample the key poses into ``frames`` poses ``(joints, finger opening, cube attached)``,
    paced as ``pacing`` says (``PACINGS``)."""
    knots = segment_times(keyframes, pacing)
    segments = len(keyframes) - 1
    out = []
    for t in np.linspace(0.0, knots[-1], frames):
        k = min(int(np.searchsorted(knots, t, side="right")) - 1, segments - 1)
        s = float(np.clip((t - knots[k]) / (knots[k + 1] - knots[k]), 0.0, 1.0))
        if pacing == "eased":
            s = float(simulation.smoothstep(np.array(s)))
        (q0, f0, a0), (q1, f1, a1) = keyframes[k], keyframes[k + 1]
        joints = (1 - s) * np.asarray(q0) + s * np.asarray(q1)
        out.append((joints, (1 - s) * f0 + s * f1, a1 if s >= 0.5 else a0))
    return out


# ----------------------------------------------------------------------------- writing

def view_dirs(traj_dir: str, num_views: int) -> List[str]:
    """First-person folder, then the third-person folders."""
    return trajectory_view_dirs(traj_dir, range(num_views))


def is_complete(traj_dir: str, preset: Preset) -> bool:
    """True when every view folder holds exactly the preset's frames."""
    expected = {frame_name(t) for t in range(preset.frames)}
    for d in view_dirs(traj_dir, preset.views):
        if not os.path.isdir(d) or set(os.listdir(d)) != expected:
            return False
    return True


def foreign_files(traj_dir: str, preset: Preset) -> List[str]:
    """Paths under ``traj_dir`` that are not frames this renderer writes (an incomplete trajectory
    holding only its own frames is re-rendered; one with anything else is left alone)."""
    dirs_of_views = view_dirs(traj_dir, preset.views)
    ours = {os.path.join(traj_dir, GROUND_TRUTH),
            *(os.path.join(d, frame_name(t)) for d in dirs_of_views for t in range(preset.frames))}
    folders = {traj_dir, os.path.join(traj_dir, TPV), *dirs_of_views}
    found = []
    for parent, dirs, files in os.walk(traj_dir):
        found += [os.path.join(parent, d) for d in dirs if os.path.join(parent, d) not in folders]
        found += [os.path.join(parent, f) for f in files if os.path.join(parent, f) not in ours]
    return sorted(found)


def render_trajectory(scene: PandaScene, preset: Preset, seed: int, index: int) -> Tuple[np.ndarray, dict]:
    """``(1 + views, frames, size, size, 3)`` uint8 RGB frames of trajectory ``index`` and its ground
    truth (the arrays of ``ground_truth.npz``)."""
    import pybullet as pb

    rng = np.random.default_rng([seed, index])
    episode = sample_episode(rng)
    if preset.random_cameras:  # a stream of its own: the episodes are those of the fixed-camera render
        third_person = camera_views(random_cameras(np.random.default_rng([seed, index, 1]), preset.views))
    else:
        third_person = camera_views(third_person_cameras(preset.views))
    proj = simulation.projection(FOV_DEG, NEAR, FAR)
    cube_orientation = pb.getQuaternionFromEuler((0.0, 0.0, episode.cube_yaw))
    cube_rest = (*episode.cube_xy, _CUBE_HALF)
    poses = interpolate(episode_keyframes(scene, episode), preset.frames, preset.pacing)
    images = np.empty((1 + preset.views, preset.frames, preset.size, preset.size, 3), dtype=np.uint8)
    depth = np.empty((1 + preset.views, preset.frames, preset.size, preset.size), dtype=np.uint16)
    cameras = np.empty((1 + preset.views, preset.frames, 4, 4))
    arm_state = np.array([[*joints, finger] for joints, finger, _ in poses], dtype=np.float32)
    cube_position = np.empty((preset.frames, 3), dtype=np.float32)
    scene.set_cube_colour((*episode.colour, 1.0))
    grasp_offset = None
    for t, (joints, finger, attached) in enumerate(poses):
        scene.set_arm(joints, finger)
        if attached:
            hand_pos, hand_orn = scene.link_pose(simulation.GRASP_LINK)
            if grasp_offset is None:
                inv_pos, inv_orn = pb.invertTransform(hand_pos, hand_orn)
                grasp_offset = pb.multiplyTransforms(inv_pos, inv_orn, cube_rest, cube_orientation)
            position, orientation = pb.multiplyTransforms(hand_pos, hand_orn, *grasp_offset)
        else:
            position, orientation = cube_rest, cube_orientation
        scene.set_cube(position, orientation)
        cube_position[t] = position
        views = [first_person_view(scene)] + third_person
        images[:, t], depth[:, t], cameras[:, t] = render_views(scene, views, proj, preset, LIGHT_DIRECTION)
    return images, {"intrinsics": simulation.intrinsics(preset.size, FOV_DEG), "world_to_camera": cameras,
                    "depth_mm": depth, "view_names": np.array(view_folder_names(range(preset.views))),
                    "arm_state": arm_state, "cube_position": cube_position}


def render_views(scene: simulation.Scene, views: Sequence[list], proj: list, preset: Preset,
                 light: Sequence[float]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every view of the posed scene: ``(V, S, S, 3)`` RGB, ``(V, S, S)`` depth in mm and ``(V, 4, 4)``
    world-to-camera transforms."""
    rendered = [scene.render(view, proj, preset.size, preset.shadows, light) for view in views]
    images = np.stack([rgb for rgb, _ in rendered])
    depth = np.stack([simulation.depth_to_mm(simulation.metric_depth(z, NEAR, FAR)) for _, z in rendered])
    return images, depth, np.stack([simulation.world_to_camera(view) for view in views])


def family_views(family: simulation.Family, preset: Preset, seed: int, index: int) -> List[list]:
    """View matrices of a family's third-person cameras: its fixed ones, or random ones around it."""
    if preset.random_cameras:
        cameras = [(yaw, pitch, dist * family.DISTANCE) for yaw, pitch, dist in
                   random_cameras(np.random.default_rng([seed, index, 1]), preset.views)]
    else:
        cameras = simulation.family_cameras(type(family), preset.views)
    return [simulation.orbit_view(family.TARGET, dist, yaw, pitch) for yaw, pitch, dist in cameras]


def render_family_trajectory(family: simulation.Family, preset: Preset, seed: int, index: int
                             ) -> Tuple[np.ndarray, dict]:
    """Trajectory ``index`` of a scene family: frames as :func:`render_trajectory`, ground truth with
    the family's ``state (T, D)`` in place of the Panda's arm and cube."""
    episode = family.sample(np.random.default_rng([seed, index]))
    family.prepare(episode)
    third_person = family_views(family, preset, seed, index)
    proj = simulation.projection(FOV_DEG, NEAR, FAR)
    per_frame = []
    for s in np.linspace(0.0, 1.0, preset.frames):
        state = family.pose(episode, float(s))
        views = [family.first_person_view(episode, float(s))] + third_person
        per_frame.append((*render_views(family, views, proj, preset, family.light(episode)), state))
    images, depth, cameras, states = zip(*per_frame)
    images, depth, cameras = (np.stack(parts, axis=1) for parts in (images, depth, cameras))  # (V, T, ...)
    return images, {"intrinsics": simulation.intrinsics(preset.size, FOV_DEG), "world_to_camera": cameras,
                    "depth_mm": depth, "view_names": np.array(view_folder_names(range(preset.views))),
                    "state": np.stack(states).astype(np.float32)}


def write_trajectory(images: np.ndarray, ground_truth: dict, traj_dir: str, quality: int) -> None:
    """Write into a temporary folder and rename it, so an interrupted run leaves no partial trajectory.
    An existing ``traj_dir`` holds only this renderer's frames (checked by :func:`foreign_files`)."""
    tmp = traj_dir + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    for view_images, d in zip(images, view_dirs(tmp, images.shape[0] - 1)):
        os.makedirs(d)
        for t, rgb in enumerate(view_images):
            simulation.write_image(os.path.join(d, frame_name(t)), rgb, [cv2.IMWRITE_JPEG_QUALITY, quality])
    np.savez_compressed(os.path.join(tmp, GROUND_TRUTH), **ground_truth)
    shutil.rmtree(traj_dir, ignore_errors=True)
    os.replace(tmp, traj_dir)


def render_job(job: Tuple[Preset, int, int, str]) -> int:
    """Render and write one trajectory in this process's scene; returns the number of images."""
    preset, seed, index, traj_dir = job
    if preset.family == "panda":
        rendered = render_trajectory(simulation.worker_scene("ftpv", build_scene), preset, seed, index)
    else:
        family = simulation.worker_scene(f"ftpv-{preset.family}", simulation.FAMILIES[preset.family])
        rendered = render_family_trajectory(family, preset, seed, index)
    write_trajectory(*rendered, traj_dir, preset.jpeg_quality)
    return preset.frames * (1 + preset.views)


# ----------------------------------------------------------------------------- driver

def render_dataset(out: str, preset: Preset, seed: int = 0, workers: int = 1, progress: bool = True) -> str:
    """Render (or complete) ``preset`` under ``out``; returns the data set folder."""
    dataset_dir = os.path.join(out, preset.folder)
    splits = splits_with_extra_training(preset) if preset.extra_train_videos else None
    manifest = dict(asdict(preset), seed=seed, scene=SCENE_VERSION)
    manifest_path = simulation.claim_folder(dataset_dir, MANIFEST, manifest, defaults=MANIFEST_DEFAULTS)
    jobs = [(preset, seed, i, os.path.join(dataset_dir, trajectory_name(i))) for i in range(preset.total_trajectories)]
    todo = [job for job in jobs if not is_complete(job[3], preset)]
    for job in todo:
        foreign = foreign_files(job[3], preset)
        if foreign:
            raise UserError(f"{job[3]} holds files this renderer does not write ({foreign[0]}); "
                            f"move them away (nothing in the folder is replaced) or render into another --out")
    write_json_atomic(manifest, manifest_path)
    total = len(jobs) * preset.frames * (1 + preset.views)
    with progress_bar(total=total, initial=total - len(todo) * preset.frames * (1 + preset.views), unit="img",
                      desc=f"render {preset.folder}", enabled=progress) as bar:
        for done in simulation.run_jobs(render_job, todo, workers):
            bar.update(done)
    if splits is not None:
        write_json_atomic(splits, os.path.join(dataset_dir, SPLIT_FILE))
    return dataset_dir


def splits_with_extra_training(preset: Preset) -> dict:
    """The Pick set's splits of the preset's trajectories, with the extra ones appended to training;
    the preset must have every trajectory those splits name."""
    ranges = resolve_dataset(preset.folder)[1].ranges
    needed = ranges[-1][1]
    if preset.trajectories < needed:
        raise UserError(f"--extra_train_videos keeps the preset's validation and test trajectories, so it needs "
                        f"its {needed} trajectories (--trajectories {preset.trajectories})")
    splits = {split: [trajectory_name(i) for i in range(*ranges[k])] for k, split in enumerate(SPLITS)}
    splits["train"] += [trajectory_name(i) for i in range(preset.trajectories, preset.total_trajectories)]
    return splits


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", default="data/ftpv", help="data root; the data set folder is created in it")
    parser.add_argument("--preset", default="demo", choices=sorted(PRESETS))
    parser.add_argument("--size", type=int, default=None, help="image side in pixels (default: the preset's)")
    parser.add_argument("--frames", type=int, default=None, help="frames per trajectory (default: the preset's)")
    parser.add_argument("--views", type=int, default=None, help="third-person views (default: the preset's)")
    parser.add_argument("--trajectories", type=int, default=None, help="trajectories (default: the preset's)")
    parser.add_argument("--extra_train_videos", type=int, default=0,
                        help="render this many more trajectories and add them to the training split (written to "
                             "splits.json); validation and test stay the preset's")
    parser.add_argument("--workers", type=int, default=1, help="rendering processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--random_cameras", action="store_true",
                        help="draw new third-person cameras all around the arm for every trajectory (e.g. for "
                             "tools/pretrain_state.py); the default is the fixed cameras of the alignment sets")
    parser.add_argument("--pacing", default="even", choices=PACINGS,
                        help="even: one speed along the path; eased: the arm stops at every key pose (the data "
                             "the committed weights were pretrained on)")
    parser.add_argument("--family", default="panda", choices=FAMILIES,
                        help="panda: the pick task; kuka, rolling, quadruped, stacking: the held-out scene families "
                             "(never used for pretraining); shapes: the randomised pretraining family "
                             "(simulation/families.py)")
    parser.add_argument("--xpar", action="store_true", help="no progress bar")
    return parser


def preset_from_args(args: argparse.Namespace) -> Preset:
    preset = PRESETS[args.preset]
    overrides = {k: getattr(args, k) for k in ("size", "frames", "views", "trajectories")
                 if getattr(args, k) is not None}
    for key, value in overrides.items():
        if value < 1:
            raise UserError(f"--{key} must be positive, got {value}")
    if overrides.get("size", preset.size) < 16:
        raise UserError("--size must be at least 16 pixels")
    if args.extra_train_videos < 0:
        raise UserError(f"--extra_train_videos must be 0 or more, got {args.extra_train_videos}")
    return replace(preset, **overrides, random_cameras=args.random_cameras, pacing=args.pacing, family=args.family,
                   extra_train_videos=args.extra_train_videos)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    if args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    preset = preset_from_args(args)
    dataset_dir = render_dataset(args.out, preset, args.seed, args.workers, progress=not args.xpar)
    print(f"{dataset_dir}: {preset.total_trajectories} trajectories, 1 first-person + {preset.views} third-person "
          f"views, {preset.frames} frames of {preset.size}x{preset.size}")


if __name__ == "__main__":
    run_cli(main)
