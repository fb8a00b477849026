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
import math
import os
from dataclasses import asdict, dataclass
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

from threedtrl import simulation
from threedtrl.runtime import UserError, atomic_write, progress_bar, write_json_atomic, write_text_atomic
from threedtrl.simulation import PandaScene, piecewise

ACTIONS = ("reach", "push", "lift", "wave", "circle", "wipe")
HOME = np.array([0.35, 0.0, 0.45])
DOWN = (1.0, 0.0, 0.0, 0.0)  # gripper pointing down (quaternion x, y, z, w)
CUBE_HALF = 0.04              # a larger cube than the FTPV scenes', to read at the clips' small sizes
TARGET = (0.3, 0.0, 0.3)      # where the cameras look
NEAR, FAR, FOV_DEG = 0.05, 5.0, 55.0


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
        ee = piecewise(s, [0.0, 0.45, 0.7, 1.0], [home, above, touch, touch + [0, 0, 0.04]])
    elif action == "push":
        angle = rng.uniform(0, 2 * math.pi)
        direction = np.array([math.cos(angle), math.sin(angle), 0.0])
        start = cube0 - direction * (CUBE_HALF + 0.03) + [0, 0, 0.0]
        distance = rng.uniform(0.12, 0.2)
        ee = piecewise(s, [0.0, 0.3, 0.45, 0.9, 1.0],
                        [home, start + [0, 0, 0.15], start, start + direction * distance, start + direction * distance])
        pushed = np.clip(((ee - start) @ direction), 0.0, distance)
        cube = cube0 + pushed[:, None] * direction
    elif action == "lift":
        height = rng.uniform(0.2, 0.3)
        ee = piecewise(s, [0.0, 0.35, 0.5, 0.6, 1.0],
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
        ee = piecewise(s, [0.0, raise_end], [home, centre]) + sway
    elif action == "circle":
        centre = np.array([rng.uniform(0.4, 0.55), rng.uniform(-0.08, 0.08), rng.uniform(0.3, 0.45)])
        radius = rng.uniform(0.1, 0.16)
        sign = rng.choice([-1.0, 1.0])
        start = centre + [radius, 0, 0]
        phase = np.clip((s - 0.2) / 0.8, 0, 1) * 2 * math.pi * sign
        loop = centre + np.stack([radius * np.cos(phase), radius * np.sin(phase), np.zeros_like(s)], 1)
        ee = np.where((s < 0.2)[:, None], piecewise(s, [0.0, 0.2], [home, start]), loop)
    elif action == "wipe":
        centre = np.array([rng.uniform(0.45, 0.6), rng.uniform(-0.1, 0.1), 0.04])
        amplitude, cycles = rng.uniform(0.1, 0.16), rng.uniform(2.0, 3.0)
        phase = np.clip((s - 0.3) / 0.7, 0, 1)
        stroke = np.stack([np.zeros_like(s), amplitude * np.sin(2 * math.pi * cycles * phase), np.zeros_like(s)], 1)
        ee = piecewise(s, [0.0, 0.3], [home, centre]) + stroke
        cube = np.repeat((cube0 + [0.0, 0.0, -1.0])[None], num_frames, axis=0)  # no object in the scene
    else:
        raise ValueError(f"unknown action {action!r}")
    return {"ee": ee, "grip": grip, "cube": cube}


# ----------------------------------------------------------------------------- rendering

def reset_scene(scene: PandaScene, rng: np.random.Generator) -> None:
    """Start an episode: the arm at rest, a cube and floor of random colours."""
    scene.set_arm(simulation.REST_POSE)
    scene.set_cube_colour(list(rng.uniform(0.1, 0.9, 3)) + [1.0])
    scene.set_floor(list(rng.uniform(0.35, 0.55) + rng.uniform(-0.05, 0.05, 3)) + [1.0])


def pose_scene(scene: PandaScene, ee: np.ndarray, grip: float, cube: np.ndarray) -> None:
    """Move the gripper to ``ee`` (inverse kinematics within the joint limits), set the fingers,
    place the cube."""
    scene.set_arm(scene.solve_ik(ee, DOWN, iterations=60, threshold=None, limits=True), grip)
    scene.set_cube(cube)


def render_camera(scene: PandaScene, camera: Camera, size: int, jitter: np.ndarray) -> np.ndarray:
    """``(size, size, 3)`` uint8 RGB image from ``camera`` perturbed by ``jitter`` (yaw, pitch, dist)."""
    view = simulation.orbit_view(TARGET, camera.distance + jitter[2], camera.yaw + jitter[0], camera.pitch + jitter[1])
    return scene.render(view, simulation.projection(FOV_DEG, NEAR, FAR), size)[0]


def write_video(frames: Sequence[np.ndarray], path: str) -> None:
    """Write RGB frames as an mp4v video, atomically."""
    height, width = frames[0].shape[:2]

    def write(tmp: str) -> None:
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), FPS, (width, height))
        if not writer.isOpened():
            raise UserError(f"cannot open a video writer for {path}")
        try:
            for frame in frames:
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
    atomic_write(path, write)


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


def build_scene() -> PandaScene:
    return PandaScene(cube_half=CUBE_HALF)


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
    scene = simulation.worker_scene("actions", build_scene)
    reset_scene(scene, rng)
    for _ in range(4):  # let inverse kinematics settle into the first pose
        pose_scene(scene, script["ee"][0], script["grip"][0], script["cube"][0])
    frames = [[] for _ in cameras]
    for t in range(preset.num_frames):
        pose_scene(scene, script["ee"][t], script["grip"][t], script["cube"][t])
        for cam, camera in enumerate(cameras):
            frames[cam].append(render_camera(scene, camera, preset.size, jitters[cam]))
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
    write_text_atomic("".join(f"{p} {label}\n" for p, label in rows), path)


def render_dataset(out: str, preset_name: str = "small", seed: int = 0, workers: int = 1,
                   progress: bool = True) -> Dict[str, int]:
    """Render (or complete) the data set in ``out``; returns the number of clips per split."""
    if preset_name not in PRESETS:
        raise UserError(f"unknown preset {preset_name!r}; choose one of {', '.join(PRESETS)}")
    preset = PRESETS[preset_name]
    meta = {"classes": list(ACTIONS), "cameras": [asdict(c) for c in cameras_for(preset)],
            "test_camera": preset.num_cameras - 1, "preset": preset_name, "seed": seed, "fps": FPS,
            **asdict(preset)}
    meta_path = simulation.claim_folder(out, "meta.json", meta, compare=("preset", "seed"))
    write_json_atomic(meta, meta_path)
    jobs = [(out, episode, preset, seed) for episode in list_episodes(preset)]
    with progress_bar(total=len(jobs), desc="render episodes", unit="ep", enabled=progress) as bar:
        for _ in simulation.run_jobs(render_episode, jobs, workers):
            bar.update()
    lists = split_lists(preset)
    for split, rows in lists.items():
        _write_list(rows, os.path.join(out, f"{split}.csv"))
    return {split: len(rows) for split, rows in lists.items()}
