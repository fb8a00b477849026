"""A cross-view action data set rendered with pybullet: a Panda arm performs scripted actions.

Every episode is one action with randomised parameters (object position, amplitude, speed,
direction, start delay). It is simulated once kinematically (inverse kinematics per frame, no
physics stepping, so it is exactly reproducible) and rendered by the CPU TinyRenderer from
every camera of the preset. Cameras ``0 .. n-2`` are the training views; the last camera is
never seen in training (cross-view protocol, like NTU's CV split).

Layout written under ``out``::

    videos/<action>/e0007_c2.mp4      episode 7 seen from camera 2 (mp4v)
    train.csv  val.csv  test.csv      "videos/<action>/e0007_c2.mp4 <label>" per line
    meta.json                         classes, cameras, preset, seed

train: training episodes x training cameras; val: held-out episodes x training cameras;
test: all episodes x the unseen camera.
"""
import json
import math
import os
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from utils import UserError, prepare_output_dir, refuse_foreign_folder, write_json_atomic

ACTIONS = ("reach", "push", "lift", "wave", "circle", "wipe")
HOME = np.array([0.35, 0.0, 0.45])
EE_LINK = 11
ARM_JOINTS = tuple(range(7))
FINGER_JOINTS = (9, 10)
REST_POSE = (0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.79)
DOWN = (1.0, 0.0, 0.0, 0.0)  # gripper pointing down (quaternion x, y, z, w)
CUBE_HALF = 0.04


@dataclass(frozen=True)
class Camera:
    """A third-person camera looking at the workspace (pybullet yaw/pitch in degrees)."""
    yaw: float
    pitch: float
    distance: float


CAMERAS = (
    Camera(yaw=0.0, pitch=-25.0, distance=1.0),
    Camera(yaw=55.0, pitch=-35.0, distance=0.95),
    Camera(yaw=110.0, pitch=-20.0, distance=1.05),
    Camera(yaw=-55.0, pitch=-40.0, distance=0.95),
    Camera(yaw=-120.0, pitch=-30.0, distance=1.0),  # the unseen test view
)


@dataclass(frozen=True)
class Preset:
    episodes_per_action: int
    val_episodes_per_action: int
    num_frames: int
    size: int
    num_cameras: int


PRESETS = {
    "tiny": Preset(episodes_per_action=2, val_episodes_per_action=1, num_frames=8, size=40, num_cameras=3),
    "small": Preset(episodes_per_action=24, val_episodes_per_action=4, num_frames=16, size=80, num_cameras=5),
    "medium": Preset(episodes_per_action=60, val_episodes_per_action=10, num_frames=16, size=112, num_cameras=5),
}
FPS = 10


def cameras_for(preset: Preset) -> Tuple[Camera, ...]:
    """The training cameras of the preset followed by the unseen test camera (always the last)."""
    return CAMERAS[:preset.num_cameras - 1] + CAMERAS[-1:]


# ----------------------------------------------------------------------------- action scripts

def _smooth(s: np.ndarray) -> np.ndarray:
    """Smoothstep of ``s`` clipped to [0, 1]."""
    s = np.clip(s, 0.0, 1.0)
    return s * s * (3 - 2 * s)


def _piecewise(s: np.ndarray, knots: Sequence[float], points: Sequence[np.ndarray]) -> np.ndarray:
    """Smoothly move through ``points`` with arrival times ``knots`` (both length K); ``(F, 3)``."""
    out = np.repeat(points[0][None], len(s), axis=0).astype(np.float64)
    for (t0, t1), (a, b) in zip(zip(knots[:-1], knots[1:]), zip(points[:-1], points[1:])):
        w = _smooth((s - t0) / max(t1 - t0, 1e-6))[:, None]
        out = np.where((s >= t0)[:, None], a + (b - a) * w, out)
    return out


def script_action(action: str, num_frames: int, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """Randomised end-effector path of one episode.

    Returns ``ee`` ``(F, 3)`` gripper positions, ``grip`` ``(F,)`` finger opening and ``cube``
    ``(F, 3)`` cube centre positions (the cube follows the gripper while held or pushed).
    """
    delay = rng.uniform(0.0, 0.15)
    speed = rng.uniform(0.75, 1.0)
    s = np.clip((np.linspace(0.0, 1.0, num_frames) - delay) / speed, 0.0, 1.0)
    home = HOME + rng.uniform(-0.05, 0.05, 3)
    cube0 = np.array([rng.uniform(0.42, 0.62), rng.uniform(-0.2, 0.2), CUBE_HALF])
    above = cube0 + [0.0, 0.0, 0.2]
    touch = cube0 + [0.0, 0.0, CUBE_HALF + 0.01]
    grip = np.full(num_frames, 0.04)
    cube = np.repeat(cube0[None], num_frames, axis=0)

    if action == "reach":
        ee = _piecewise(s, [0.0, 0.45, 0.7, 1.0], [home, above, touch, touch + [0, 0, 0.04]])
    elif action == "push":
        angle = rng.uniform(0, 2 * math.pi)
        direction = np.array([math.cos(angle), math.sin(angle), 0.0])
        start = cube0 - direction * (CUBE_HALF + 0.03) + [0, 0, 0.0]
        distance = rng.uniform(0.12, 0.2)
        ee = _piecewise(s, [0.0, 0.3, 0.45, 0.9, 1.0],
                        [home, start + [0, 0, 0.15], start, start + direction * distance, start + direction * distance])
        pushed = np.clip(((ee - start) @ direction), 0.0, distance)
        cube = cube0 + pushed[:, None] * direction
    elif action == "lift":
        height = rng.uniform(0.2, 0.3)
        ee = _piecewise(s, [0.0, 0.35, 0.5, 0.6, 1.0],
                        [home, above, touch, touch, touch + [0, 0, height]])
        held = s >= 0.55
        grip = np.where(held, 0.022, 0.04)
        cube = np.where(held[:, None], ee - [0, 0, 0.01], cube0)
    elif action == "wave":
        centre = np.array([rng.uniform(0.3, 0.45), 0.0, rng.uniform(0.55, 0.62)])
        amplitude, cycles = rng.uniform(0.12, 0.22), rng.uniform(2.0, 3.0)
        raise_end = 0.25
        phase = np.clip((s - raise_end) / (1 - raise_end), 0, 1)
        sway = np.stack([np.zeros_like(s), amplitude * np.sin(2 * math.pi * cycles * phase), np.zeros_like(s)], 1)
        ee = _piecewise(s, [0.0, raise_end], [home, centre]) + sway
    elif action == "circle":
        centre = np.array([rng.uniform(0.4, 0.55), rng.uniform(-0.08, 0.08), rng.uniform(0.3, 0.45)])
        radius = rng.uniform(0.1, 0.16)
        sign = rng.choice([-1.0, 1.0])
        start = centre + [radius, 0, 0]
        phase = np.clip((s - 0.2) / 0.8, 0, 1) * 2 * math.pi * sign
        loop = centre + np.stack([radius * np.cos(phase), radius * np.sin(phase), np.zeros_like(s)], 1)
        ee = np.where((s < 0.2)[:, None], _piecewise(s, [0.0, 0.2], [home, start]), loop)
    elif action == "wipe":
        centre = np.array([rng.uniform(0.45, 0.6), rng.uniform(-0.1, 0.1), 0.04])
        amplitude, cycles = rng.uniform(0.1, 0.16), rng.uniform(2.0, 3.0)
        phase = np.clip((s - 0.3) / 0.7, 0, 1)
        stroke = np.stack([np.zeros_like(s), amplitude * np.sin(2 * math.pi * cycles * phase), np.zeros_like(s)], 1)
        ee = _piecewise(s, [0.0, 0.3], [home, centre]) + stroke
        cube = np.repeat((cube0 + [0.0, 0.0, -1.0])[None], num_frames, axis=0)  # no object in the scene
    else:
        raise ValueError(f"unknown action {action!r}")
    return {"ee": ee, "grip": grip, "cube": cube}


# ----------------------------------------------------------------------------- rendering

class Scene:
    """A pybullet DIRECT client holding the plane, the Panda and a cube."""

    def __init__(self):
        import pybullet
        import pybullet_data
        self.p = pybullet
        self.client = pybullet.connect(pybullet.DIRECT)
        pybullet.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=self.client)
        self.plane = pybullet.loadURDF("plane.urdf", physicsClientId=self.client)
        self.robot = pybullet.loadURDF("franka_panda/panda.urdf", useFixedBase=True, physicsClientId=self.client)
        self.cube = pybullet.loadURDF("cube_small.urdf", globalScaling=CUBE_HALF / 0.025, physicsClientId=self.client)
        self.limits = [self.p.getJointInfo(self.robot, j, physicsClientId=self.client)[8:10] for j in ARM_JOINTS]

    def reset(self, rng: np.random.Generator) -> None:
        for joint, angle in zip(ARM_JOINTS, REST_POSE):
            self.p.resetJointState(self.robot, joint, angle, physicsClientId=self.client)
        colour = list(rng.uniform(0.1, 0.9, 3)) + [1.0]
        self.p.changeVisualShape(self.cube, -1, rgbaColor=colour, physicsClientId=self.client)
        floor = list(rng.uniform(0.35, 0.55) + rng.uniform(-0.05, 0.05, 3)) + [1.0]
        self.p.changeVisualShape(self.plane, -1, textureUniqueId=-1, rgbaColor=floor, physicsClientId=self.client)

    def pose(self, ee: np.ndarray, grip: float, cube: np.ndarray) -> None:
        """Move the gripper to ``ee`` (inverse kinematics), set the fingers, place the cube."""
        lower, upper = zip(*self.limits)
        angles = self.p.calculateInverseKinematics(
            self.robot, EE_LINK, ee.tolist(), DOWN, lowerLimits=lower, upperLimits=upper,
            jointRanges=[u - lo for lo, u in self.limits], restPoses=REST_POSE, maxNumIterations=60,
            physicsClientId=self.client)
        for joint, angle in zip(ARM_JOINTS, angles):
            self.p.resetJointState(self.robot, joint, angle, physicsClientId=self.client)
        for joint in FINGER_JOINTS:
            self.p.resetJointState(self.robot, joint, grip, physicsClientId=self.client)
        self.p.resetBasePositionAndOrientation(self.cube, cube.tolist(), (0, 0, 0, 1), physicsClientId=self.client)

    def render(self, camera: Camera, size: int, jitter: np.ndarray) -> np.ndarray:
        """``(size, size, 3)`` uint8 RGB image from ``camera`` perturbed by ``jitter`` (yaw, pitch, dist)."""
        view = self.p.computeViewMatrixFromYawPitchRoll(
            cameraTargetPosition=[0.3, 0.0, 0.3], distance=camera.distance + jitter[2],
            yaw=camera.yaw + jitter[0], pitch=camera.pitch + jitter[1], roll=0.0, upAxisIndex=2)
        projection = self.p.computeProjectionMatrixFOV(fov=55.0, aspect=1.0, nearVal=0.05, farVal=5.0)
        _, _, rgba, _, _ = self.p.getCameraImage(size, size, view, projection, renderer=self.p.ER_TINY_RENDERER,
                                                 physicsClientId=self.client)
        return np.asarray(rgba, dtype=np.uint8).reshape(size, size, 4)[..., :3]


def write_video(frames: Sequence[np.ndarray], path: str) -> None:
    """Write RGB frames as an mp4v video, atomically (temporary name in the same folder)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = os.path.join(os.path.dirname(path), ".part-" + os.path.basename(path))
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), FPS, (width, height))
    if not writer.isOpened():
        raise UserError(f"cannot open a video writer for {path}")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- episodes

@dataclass(frozen=True)
class Episode:
    index: int          # global episode number (seeds the episode)
    action: int         # label
    number: int         # episode number within the action


def episode_paths(episode: Episode, num_cameras: int) -> List[str]:
    """Relative video paths of one episode, one per camera."""
    name = ACTIONS[episode.action]
    return [f"videos/{name}/e{episode.number:04d}_c{cam}.mp4" for cam in range(num_cameras)]


def list_episodes(preset: Preset) -> List[Episode]:
    episodes = []
    for action in range(len(ACTIONS)):
        for number in range(preset.episodes_per_action):
            episodes.append(Episode(len(episodes), action, number))
    return episodes


_SCENE = []


def _process_scene() -> Scene:
    """One scene per process, reused by its episodes (every episode resets what it changes)."""
    if not _SCENE:
        _SCENE.append(Scene())
    return _SCENE[0]


def render_episode(args) -> int:
    """Render one episode from every camera (skipped when all its videos exist); returns its index."""
    out, episode, preset, seed = args
    cameras = cameras_for(preset)
    paths = [os.path.join(out, p) for p in episode_paths(episode, len(cameras))]
    if all(os.path.isfile(p) for p in paths):
        return episode.index
    rng = np.random.default_rng([seed, episode.index])
    script = script_action(ACTIONS[episode.action], preset.num_frames, rng)
    jitters = rng.uniform([-8, -5, -0.08], [8, 5, 0.08], size=(len(cameras), 3))
    scene = _process_scene()
    scene.reset(rng)
    for _ in range(4):  # let inverse kinematics settle into the first pose
        scene.pose(script["ee"][0], script["grip"][0], script["cube"][0])
    frames = [[] for _ in cameras]
    for t in range(preset.num_frames):
        scene.pose(script["ee"][t], script["grip"][t], script["cube"][t])
        for cam, camera in enumerate(cameras):
            frames[cam].append(scene.render(camera, preset.size, jitters[cam]))
    for cam_frames, path in zip(frames, paths):
        write_video(cam_frames, path)
    return episode.index


def split_lists(preset: Preset) -> Dict[str, List[Tuple[str, int]]]:
    """The cross-view lists: ``{"train"|"val"|"test": [(relative path, label), ...]}``."""
    num_cameras = preset.num_cameras
    lists = {"train": [], "val": [], "test": []}
    for episode in list_episodes(preset):
        paths = episode_paths(episode, num_cameras)
        held_out = episode.number >= preset.episodes_per_action - preset.val_episodes_per_action
        for path in paths[:-1]:
            lists["val" if held_out else "train"].append((path, episode.action))
        lists["test"].append((paths[-1], episode.action))
    return lists


def _write_list(rows: List[Tuple[str, int]], path: str) -> None:
    tmp = path + ".part"
    with open(tmp, "w") as f:
        f.writelines(f"{p} {label}\n" for p, label in rows)
    os.replace(tmp, path)


def render_dataset(out: str, preset_name: str = "small", seed: int = 0, workers: int = 1,
                   progress: bool = True) -> Dict[str, int]:
    """Render (or complete) the data set in ``out``; returns the number of clips per split."""
    if preset_name not in PRESETS:
        raise UserError(f"unknown preset {preset_name!r}; choose one of {', '.join(PRESETS)}")
    preset = PRESETS[preset_name]
    meta_path = os.path.join(out, "meta.json")
    refuse_foreign_folder(out, "meta.json")
    meta = {"classes": list(ACTIONS), "cameras": [asdict(c) for c in cameras_for(preset)],
            "test_camera": preset.num_cameras - 1, "preset": preset_name, "seed": seed, "fps": FPS,
            **asdict(preset)}
    if os.path.isfile(meta_path):
        with open(meta_path) as f:
            old = json.load(f)
        if (old.get("preset"), old.get("seed")) != (preset_name, seed):
            raise UserError(f"{out} holds a data set rendered with preset {old.get('preset')} and seed "
                            f"{old.get('seed')}; use another --out or the same --preset/--seed")
    prepare_output_dir(out)
    write_json_atomic(meta, meta_path)
    jobs = [(out, episode, preset, seed) for episode in list_episodes(preset)]
    bar = tqdm(total=len(jobs), desc="render episodes", unit="ep", disable=not progress)
    if workers > 1:
        with get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(render_episode, jobs):
                bar.update()
    else:
        for job in jobs:
            render_episode(job)
            bar.update()
    bar.close()
    lists = split_lists(preset)
    for split, rows in lists.items():
        _write_list(rows, os.path.join(out, f"{split}.csv"))
    return {split: len(rows) for split, rows in lists.items()}
