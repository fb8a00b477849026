"""Scene families other than the Panda pick task, for FTPV renderings of scenes a model has never
seen (``HELD_OUT``) and for pretraining on many looks and motions (``PRETRAINING``).

A family is a :class:`~simulation.scene.Scene` that draws an episode from a random generator
(``sample``, a pure function of the generator), dresses the scene for it (``prepare``), poses
every body at normalised time ``s`` in [0, 1] and returns the scene's state there (``pose``), and
gives the moving first-person camera's view matrix at that time (``first_person_view``). The
fixed third-person cameras look at ``TARGET`` from about ``DISTANCE`` metres. Everything moves
monotonically in time (no periodic motion alone), so frames far apart in time look different:
what time-contrastive alignment needs.

Held-out families differ from the Panda pick task and from the pretraining family in objects,
motion and look:

- ``kuka``: a KUKA iiwa sweeping through random joint poses while a ball rolls on a blue floor;
  first-person camera on its flange, watching the ball.
- ``rolling``: a ball, a duck, a teddy and a sphere rolling and sliding across the checker floor,
  no robot; first-person camera chasing the ball.
- ``quadruped``: a Laikago walking along a curve on sand (an articulated body, no arm);
  first-person camera on its head.
- ``stacking``: four blocks lifting off the floor one by one and landing on a stack, no robot, on
  dark wood; first-person camera circling the stack.

The pretraining family ``shapes`` is domain-randomised: two to four of pybullet_data's 1000 random
objects, of random colours and sizes, tumbling along random curves above a floor of random colour
under a random light, watched by a camera flying its own path.
"""
import math
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .cameras import look_at_view
from .motion import piecewise, smoothstep
from .scene import Scene

Episode = Dict[str, object]


def _yaw_quaternion(yaw: float) -> Tuple[float, float, float, float]:
    return (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))


def _axis_angle_quaternion(axis: Sequence[float], angle: float) -> Tuple[float, float, float, float]:
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / max(float(np.linalg.norm(axis)), 1e-9)
    return (*(axis * math.sin(angle / 2)), math.cos(angle / 2))


def _quaternion_product(a: Sequence[float], b: Sequence[float]) -> Tuple[float, float, float, float]:
    """Hamilton product ``a b`` of quaternions (x, y, z, w): rotation ``b`` then ``a``."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return (aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz)


class Family(Scene):
    """A scene family (see the module's docstring); subclasses load their bodies in ``__init__``."""
    TARGET: Tuple[float, float, float] = (0.0, 0.0, 0.2)
    DISTANCE = 1.5
    LIGHT = (0.6, -0.4, 2.0)
    STATE_SIZE = 0

    def sample(self, rng: np.random.Generator) -> Episode:
        raise NotImplementedError

    def prepare(self, episode: Episode) -> None:
        """Dress the scene for ``episode`` (colours, bodies); the default has nothing to change."""

    def pose(self, episode: Episode, s: float) -> np.ndarray:
        raise NotImplementedError

    def first_person_view(self, episode: Episode, s: float) -> list:
        raise NotImplementedError

    def light(self, episode: Episode) -> Sequence[float]:
        return episode.get("light", self.LIGHT)  # type: ignore[return-value]


class KukaFamily(Family):
    TARGET = (0.15, 0.0, 0.5)
    DISTANCE = 1.5
    LIGHT = (-0.8, 0.5, 1.6)
    STATE_SIZE = 10   # 7 joint angles (radians), ball position (metres)
    BALL_RADIUS = 0.07

    def __init__(self):
        super().__init__()
        self.set_floor((0.32, 0.4, 0.52, 1.0))
        self.robot = self.load("kuka_iiwa/model.urdf", fixed=True)
        for link in range(-1, 7):
            self.set_colour(self.robot, link, (0.95, 0.45, 0.1, 1.0) if link % 2 else (0.9, 0.9, 0.88, 1.0))
        self.ball = self.load("sphere2red.urdf", scale=2 * self.BALL_RADIUS)

    def sample(self, rng):
        lower = np.array([-1.6, 0.25, -1.2, -1.9, -1.5, -1.2, -2.0])
        upper = np.array([1.6, 1.1, 1.2, -0.4, 1.5, 1.2, 2.0])
        start_angle = rng.uniform(-math.pi, math.pi)
        start = np.array([math.cos(start_angle), math.sin(start_angle)]) * rng.uniform(0.45, 0.75)
        end_angle = start_angle + rng.choice([-1, 1]) * rng.uniform(1.2, 2.4)
        end = np.array([math.cos(end_angle), math.sin(end_angle)]) * rng.uniform(0.45, 0.75)
        return {"keys": rng.uniform(lower, upper, size=(4, 7)), "ball": (start, end),
                "colour": tuple(rng.uniform(0.1, 0.9, 3))}

    def prepare(self, episode):
        self.set_colour(self.ball, -1, (*episode["colour"], 1.0))

    def pose(self, episode, s):
        joints = piecewise(np.array([s]), [0.0, 0.3, 0.65, 1.0], episode["keys"])[0]
        self.set_joints(self.robot, range(7), joints)
        start, end = episode["ball"]
        w = float(smoothstep(np.array(s)))
        xy = start + (end - start) * w
        step = end - start
        axis = (-step[1], step[0], 0.0)
        angle = float(np.linalg.norm(step)) * w / self.BALL_RADIUS
        position = (*xy, self.BALL_RADIUS)
        self.set_pose(self.ball, position, _axis_angle_quaternion(axis, angle))
        return np.concatenate([joints, position])

    def first_person_view(self, episode, s):
        """From the flange, looking at the ball (the arm's own links would fill a view along its axis)."""
        flange, ball = (np.asarray(self.body_link_pose(body, link)[0]) for body, link in ((self.robot, 6), (self.ball, -1)))
        towards = (ball - flange) / max(float(np.linalg.norm(ball - flange)), 1e-9)
        return look_at_view(flange + 0.15 * towards, ball)


class RollingFamily(Family):
    TARGET = (0.0, 0.0, 0.05)
    DISTANCE = 1.4
    LIGHT = (0.3, 0.9, 1.5)
    STATE_SIZE = 12   # four objects' positions (metres)
    # (urdf, scale, radius when it rolls, else 0: it slides and spins)
    OBJECTS = (("soccerball.urdf", 0.24, 0.12), ("duck_vhacd.urdf", 3.5, 0.0), ("teddy_vhacd.urdf", 2.5, 0.0),
               ("sphere2red.urdf", 0.16, 0.08))

    def __init__(self):
        super().__init__()  # the checker floor kept: another look than the plain floors
        self.bodies = [self.load(urdf, scale=scale) for urdf, scale, _ in self.OBJECTS]

    def sample(self, rng):
        paths = []
        for _ in self.OBJECTS:
            start = rng.uniform(-0.45, 0.45, 2)
            heading = rng.uniform(-math.pi, math.pi)
            end = np.clip(start + rng.uniform(0.35, 0.7) * np.array([math.cos(heading), math.sin(heading)]), -0.6, 0.6)
            t0 = rng.uniform(0.0, 0.4)
            paths.append((start, end, t0, t0 + rng.uniform(0.4, 0.6), rng.uniform(-math.pi, math.pi)))
        return {"paths": paths}

    def pose(self, episode, s):
        state = []
        for body, (_, _, radius), (start, end, t0, t1, yaw) in zip(self.bodies, self.OBJECTS, episode["paths"]):
            w = float(smoothstep(np.array((s - t0) / (t1 - t0))))
            step = end - start
            xy = start + step * w
            if radius > 0:
                orientation = _axis_angle_quaternion((-step[1], step[0], 0.0), float(np.linalg.norm(step)) * w / radius)
                position = (*xy, radius)
            else:
                orientation = _yaw_quaternion(yaw + 2.5 * w)
                position = (*xy, 0.0)
            self.set_pose(body, position, orientation)
            state += position
        return np.array(state)

    def first_person_view(self, episode, s):
        start, end, *_ = episode["paths"][0]
        position, _ = self.body_link_pose(self.bodies[0], -1)
        direction = (end - start) / max(float(np.linalg.norm(end - start)), 1e-9)
        eye = (position[0] - 0.45 * direction[0], position[1] - 0.45 * direction[1], 0.3)
        return look_at_view(eye, (position[0] + 0.3 * direction[0], position[1] + 0.3 * direction[1], 0.05))


class QuadrupedFamily(Family):
    TARGET = (0.0, 0.0, 0.3)
    DISTANCE = 2.0
    LIGHT = (1.0, 0.2, 1.2)
    STATE_SIZE = 15   # base x, y, heading; 12 leg joint angles (radians)
    LANDMARK_COLOURS = ((0.85, 0.2, 0.15), (0.15, 0.45, 0.85), (0.95, 0.9, 0.85))
    LEG_JOINTS = (0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14)
    BASE_HEIGHT = 0.48
    # the URDF is y-up: this turns it z-up, facing +x
    UPRIGHT = (0.5, 0.5, 0.5, 0.5)

    def __init__(self):
        super().__init__()
        self.set_floor((0.78, 0.7, 0.5, 1.0))
        self.robot = self.load("laikago/laikago_toes.urdf")
        # static posts: what the walker's own camera sees pass by
        self.landmarks = [self.load("cube_small.urdf", scale=4.0) for _ in self.LANDMARK_COLOURS]
        for body, colour in zip(self.landmarks, self.LANDMARK_COLOURS):
            self.set_colour(body, -1, (*colour, 1.0))

    def sample(self, rng):
        start = rng.uniform(-0.5, 0.5, 2)
        angles = rng.uniform(-math.pi, math.pi) + np.arange(3) * 2 * math.pi / 3 + rng.uniform(-0.5, 0.5, 3)
        posts = [rng.uniform(0.9, 1.3) * np.array([math.cos(a), math.sin(a)]) for a in angles]
        return {"posts": posts, "start": start, "heading": rng.uniform(-math.pi, math.pi), "turn": rng.uniform(-1.2, 1.2),
                "length": rng.uniform(0.7, 1.1), "steps": rng.uniform(2.0, 3.5), "stride": rng.uniform(0.25, 0.45)}

    def base(self, episode, s) -> Tuple[np.ndarray, float]:
        """Base position (x, y) and heading at time ``s``: a circular arc of the episode's turn."""
        heading = episode["heading"] + episode["turn"] * s
        if abs(episode["turn"]) < 1e-6:
            offset = episode["length"] * s * np.array([math.cos(heading), math.sin(heading)])
        else:
            radius = episode["length"] / episode["turn"]
            offset = radius * np.array([math.sin(heading) - math.sin(episode["heading"]),
                                        math.cos(episode["heading"]) - math.cos(heading)])
        return episode["start"] + offset, heading

    def prepare(self, episode):
        for body, xy in zip(self.landmarks, episode["posts"]):
            self.set_pose(body, (*xy, 0.1))

    def pose(self, episode, s):
        xy, heading = self.base(episode, s)
        self.set_pose(self.robot, (*xy, self.BASE_HEIGHT), _quaternion_product(_yaw_quaternion(heading), self.UPRIGHT))
        phase = 2 * math.pi * episode["steps"] * s
        angles = []
        for leg in range(4):  # trot: diagonal legs together
            p = phase + (math.pi if leg in (1, 2) else 0.0)
            angles += [0.0, -0.7 + episode["stride"] * math.sin(p), 1.2 + 0.35 * max(0.0, math.cos(p))]
        self.set_joints(self.robot, self.LEG_JOINTS, angles)
        return np.array([*xy, heading, *angles])

    def first_person_view(self, episode, s):
        xy, heading = self.base(episode, s)
        forward = np.array([math.cos(heading), math.sin(heading)])
        eye = (*(xy + 0.3 * forward), self.BASE_HEIGHT + 0.1)
        return look_at_view(eye, (*(xy + 1.0 * forward), 0.15))


class StackingFamily(Family):
    TARGET = (0.0, 0.0, 0.15)
    DISTANCE = 1.1
    LIGHT = (-0.4, -0.9, 1.4)
    STATE_SIZE = 12   # four blocks' positions (metres)
    HALF = 0.06
    COLOURS = ((0.95, 0.85, 0.2), (0.2, 0.75, 0.9), (0.9, 0.3, 0.5), (0.5, 0.9, 0.35))

    def __init__(self):
        super().__init__()
        self.set_floor((0.36, 0.25, 0.17, 1.0))
        self.blocks = [self.load("cube_small.urdf", scale=self.HALF / 0.025) for _ in self.COLOURS]
        for block, colour in zip(self.blocks, self.COLOURS):
            self.set_colour(block, -1, (*colour, 1.0))

    def sample(self, rng):
        angles = rng.permutation(4) * math.pi / 2 + rng.uniform(-0.4, 0.4, 4)
        starts = [rng.uniform(0.25, 0.4) * np.array([math.cos(a), math.sin(a)]) for a in angles]
        return {"starts": starts, "stack": rng.uniform(-0.1, 0.1, 2), "yaws": rng.uniform(-math.pi, math.pi, 4),
                "orbit": (rng.uniform(-math.pi, math.pi), rng.choice([-1, 1]) * rng.uniform(0.8, 1.6))}

    def pose(self, episode, s):
        state = []
        for k, block in enumerate(self.blocks):
            w = float(smoothstep(np.array(s * 4.0 - k)))
            start, goal = episode["starts"][k], episode["stack"]
            xy = start + (goal - start) * w
            z = self.HALF * (1 + 2 * k * w) + 0.25 * 4 * w * (1 - w)
            position = (*xy, z)
            self.set_pose(block, position, _yaw_quaternion(episode["yaws"][k] * (1 - w)))
            state += position
        return np.array(state)

    def first_person_view(self, episode, s):
        angle0, sweep = episode["orbit"]
        angle = angle0 + sweep * s
        eye = (0.75 * math.cos(angle), 0.75 * math.sin(angle), 0.45)
        return look_at_view(eye, (*episode["stack"], 0.12))


class ShapesFamily(Family):
    """Domain-randomised pretraining scenes (see the module's docstring)."""
    TARGET = (0.0, 0.0, 0.3)
    DISTANCE = 1.5
    STATE_SIZE = 12   # up to four objects' positions (metres); zeros for absent ones
    MAX_OBJECTS = 4

    def __init__(self):
        super().__init__()
        self.bodies: List[int] = []

    def sample(self, rng):
        count = int(rng.integers(2, self.MAX_OBJECTS + 1))
        objects = []
        for _ in range(count):
            keys = np.column_stack([rng.uniform(-0.5, 0.5, (3, 2)), rng.uniform(0.05, 0.6, (3, 1))])
            objects.append({"index": int(rng.integers(1000)), "scale": float(rng.uniform(3.0, 6.0)),
                            "colour": tuple(rng.uniform(0.05, 0.95, 3)), "keys": keys,
                            "axis": tuple(rng.normal(size=3)), "spin": float(rng.uniform(-4.0, 4.0))})
        eye_angle = rng.uniform(-math.pi, math.pi)
        return {"objects": objects, "floor": tuple(rng.uniform(0.15, 0.85, 3)),
                "light": (float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1)), float(rng.uniform(0.8, 2.0))),
                "eye": (eye_angle, eye_angle + rng.uniform(-1.5, 1.5), rng.uniform(0.7, 1.1), rng.uniform(0.3, 0.8))}

    def prepare(self, episode):
        for body in self.bodies:
            self.pb.removeBody(body, physicsClientId=self.client)
        self.bodies = []
        for obj in episode["objects"]:
            body = self.load(f"random_urdfs/{obj['index']:03d}/{obj['index']:03d}.urdf", scale=obj["scale"])
            self.set_colour(body, -1, (*obj["colour"], 1.0))
            self.bodies.append(body)
        self.set_floor((*episode["floor"], 1.0))

    def pose(self, episode, s):
        state = np.zeros(self.STATE_SIZE)
        for k, (body, obj) in enumerate(zip(self.bodies, episode["objects"])):
            position = piecewise(np.array([s]), [0.0, 0.5, 1.0], obj["keys"])[0]
            self.set_pose(body, position, _axis_angle_quaternion(obj["axis"], obj["spin"] * s))
            state[3 * k:3 * k + 3] = position
        return state

    def first_person_view(self, episode, s):
        a0, a1, radius, height = episode["eye"]
        angle = a0 + (a1 - a0) * s
        return look_at_view((radius * math.cos(angle), radius * math.sin(angle), height), self.TARGET)


HELD_OUT = {"kuka": KukaFamily, "rolling": RollingFamily, "quadruped": QuadrupedFamily, "stacking": StackingFamily}
PRETRAINING = {"shapes": ShapesFamily}
FAMILIES = {**HELD_OUT, **PRETRAINING}


def family_cameras(family: type, num_views: int) -> List[Tuple[float, float, float]]:
    """``(yaw, pitch, distance)`` of a held-out family's fixed cameras: azimuths spread around the
    scene, distances within 10 % of the family's ``DISTANCE`` (as the Panda set's), and elevations
    of which a third lie above and a third below the pretraining cameras' (pitch in [-55, -15])."""
    pitches = (-12.0, -32.0, -62.0)
    scales = (1.0, 0.9, 1.1)
    return [(-17.0 + 360.0 * k / num_views + 9.0 * (k % 3), pitches[k % 3], family.DISTANCE * scales[(k // 3) % 3])
            for k in range(num_views)]
