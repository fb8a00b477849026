"""The scenes: a plane and bodies posed kinematically (no dynamics); the Panda scene adds a Franka
Panda on a fixed base and one cube, so every frame is a pure function of the poses set.

pybullet is imported where it is used: its import prints a banner, which a command that stops on
a bad flag should not."""
import contextlib
import os
import sys
from typing import Optional, Sequence, Tuple

import numpy as np

ARM_JOINTS = tuple(range(7))
FINGER_JOINTS = (9, 10)
HAND_LINK = 8
GRASP_LINK = 11                # between the fingertips
REST_POSE = (0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.785)
FINGER_OPEN = 0.04             # finger opening in metres, fully open
_CUBE_URDF_HALF = 0.025        # half side of pybullet_data's cube_small.urdf


def connect() -> int:
    """A new pybullet client (DIRECT: no window) that finds pybullet_data's models."""
    import pybullet as pb
    import pybullet_data

    client = pb.connect(pb.DIRECT)
    pb.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=client)
    return client


@contextlib.contextmanager
def silenced_stdout():
    """Silence the C-level stdout (pybullet's URDF importer prints warnings for links without inertia)."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


class Scene:
    """One pybullet client with a plane: the bodies, their looks and the renderer the scenes share."""

    def __init__(self):
        import pybullet as pb

        self.pb = pb
        self.client = connect()
        self.plane = pb.loadURDF("plane.urdf", physicsClientId=self.client)

    def load(self, urdf: str, scale: float = 1.0, fixed: bool = False) -> int:
        """Body id of ``urdf`` (a pybullet_data path) scaled by ``scale``."""
        with silenced_stdout():
            return self.pb.loadURDF(urdf, globalScaling=scale, useFixedBase=fixed, physicsClientId=self.client)

    def set_floor(self, rgba: Sequence[float]) -> None:
        """A plain floor of colour ``rgba`` (the checker texture removed)."""
        self.pb.changeVisualShape(self.plane, -1, textureUniqueId=-1, rgbaColor=list(rgba),
                                  physicsClientId=self.client)

    def set_colour(self, body: int, link: int, rgba: Sequence[float]) -> None:
        self.pb.changeVisualShape(body, link, rgbaColor=list(rgba), physicsClientId=self.client)

    def set_pose(self, body: int, position: Sequence[float], orientation: Sequence[float] = (0.0, 0.0, 0.0, 1.0)
                 ) -> None:
        self.pb.resetBasePositionAndOrientation(body, list(position), list(orientation), physicsClientId=self.client)

    def set_joints(self, body: int, joints: Sequence[int], angles: Sequence[float]) -> None:
        for j, q in zip(joints, angles):
            self.pb.resetJointState(body, j, float(q), physicsClientId=self.client)

    def body_link_pose(self, body: int, link: int) -> Tuple[tuple, tuple]:
        """World position and orientation (quaternion) of ``link`` of ``body`` (-1: its base)."""
        if link < 0:
            return self.pb.getBasePositionAndOrientation(body, physicsClientId=self.client)
        state = self.pb.getLinkState(body, link, computeForwardKinematics=True, physicsClientId=self.client)
        return state[4], state[5]

    def render(self, view: list, proj: list, size: int, shadows: Optional[bool] = None,
               light_direction: Optional[Sequence[float]] = None) -> Tuple[np.ndarray, np.ndarray]:
        """``(size, size, 3)`` uint8 RGB image and ``(size, size)`` float64 depth buffer in [0, 1]
        (TinyRenderer; pybullet's default light unless ``light_direction`` is given)."""
        kwargs = {}
        if shadows is not None:
            kwargs["shadow"] = int(shadows)
        if light_direction is not None:
            kwargs["lightDirection"] = list(light_direction)
        _, _, rgba, zbuffer, _ = self.pb.getCameraImage(size, size, view, proj, renderer=self.pb.ER_TINY_RENDERER,
                                                        physicsClientId=self.client, **kwargs)
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(size, size, 4)[:, :, :3]
        return rgb, np.asarray(zbuffer, dtype=np.float64).reshape(size, size)

    def close(self) -> None:
        self.pb.disconnect(physicsClientId=self.client)


class PandaScene(Scene):
    """The plane, the Panda and a cube of half side ``cube_half`` metres in one pybullet client."""

    def __init__(self, cube_half: float):
        super().__init__()
        pb = self.pb
        self.cube_half = cube_half
        self.robot = pb.loadURDF("franka_panda/panda.urdf", useFixedBase=True, physicsClientId=self.client)
        self.cube = pb.loadURDF("cube_small.urdf", globalScaling=cube_half / _CUBE_URDF_HALF,
                                physicsClientId=self.client)
        self.joint_limits = [pb.getJointInfo(self.robot, j, physicsClientId=self.client)[8:10] for j in ARM_JOINTS]

    # ------------------------------------------------------------------ appearance

    def set_link_colour(self, link: int, rgba: Sequence[float]) -> None:
        self.set_colour(self.robot, link, rgba)

    def set_cube_colour(self, rgba: Sequence[float]) -> None:
        self.set_colour(self.cube, -1, rgba)

    @property
    def num_links(self) -> int:
        return self.pb.getNumJoints(self.robot, physicsClientId=self.client)

    # ------------------------------------------------------------------ poses

    def set_arm(self, joints: Sequence[float], finger: Optional[float] = None) -> None:
        """Set the 7 arm joints (radians) and, when given, both fingers' opening (metres)."""
        self.set_joints(self.robot, ARM_JOINTS, joints)
        if finger is not None:
            self.set_joints(self.robot, FINGER_JOINTS, [finger] * len(FINGER_JOINTS))

    def solve_ik(self, position: Sequence[float], orientation: Sequence[float], iterations: int = 100,
                 threshold: Optional[float] = 1e-4, limits: bool = False) -> list:
        """The 7 arm joint angles that put the grasp point at ``position`` with ``orientation``
        (quaternion x, y, z, w), starting from the current pose and pulled towards ``REST_POSE``;
        ``limits`` keeps the joints within the URDF's limits."""
        kwargs = dict(maxNumIterations=iterations)
        if threshold is not None:
            kwargs["residualThreshold"] = threshold
        if limits:
            lower, upper = zip(*self.joint_limits)
            kwargs.update(lowerLimits=lower, upperLimits=upper, jointRanges=[u - lo for lo, u in self.joint_limits],
                          restPoses=REST_POSE)
        else:
            kwargs["restPoses"] = list(REST_POSE) + [0.0] * 5
        joints = self.pb.calculateInverseKinematics(self.robot, GRASP_LINK, list(position), list(orientation),
                                               physicsClientId=self.client, **kwargs)
        return list(joints[:7])

    def link_pose(self, link: int) -> Tuple[tuple, tuple]:
        """World position and orientation (quaternion) of the arm's ``link``."""
        return self.body_link_pose(self.robot, link)

    def set_cube(self, position: Sequence[float], orientation: Sequence[float] = (0.0, 0.0, 0.0, 1.0)) -> None:
        self.set_pose(self.cube, position, orientation)
