"""The simulator the three tasks' renderers share: one Panda scene (pybullet, CPU TinyRenderer), the
scene families of the held-out and pretraining FTPV sets, cameras, motion easing, the worker pool
and the manifest that makes a rendering resumable.

Scenarios (thin modules that use this package): FTPV episodes (``data_pipeline.render_ftpv``),
action clips (``timesformer.render``) and object views (``tools.render_objects``)."""
from .cameras import (depth_to_mm, intrinsics, look_at_view, metric_depth, orbit_view, projection,
                      world_to_camera)
from .families import FAMILIES, HELD_OUT, PRETRAINING, Family, family_cameras
from .images import write_image
from .manifest import claim_folder
from .motion import piecewise, smoothstep
from .pool import run_jobs, worker_scene
from .scene import (ARM_JOINTS, FINGER_JOINTS, FINGER_OPEN, GRASP_LINK, HAND_LINK, REST_POSE, PandaScene, Scene,
                    connect, silenced_stdout)

__all__ = ["depth_to_mm", "intrinsics", "look_at_view", "metric_depth", "orbit_view", "projection",
           "world_to_camera", "FAMILIES", "HELD_OUT", "PRETRAINING", "Family", "family_cameras", "write_image", "claim_folder", "piecewise", "smoothstep", "run_jobs", "worker_scene",
           "ARM_JOINTS", "FINGER_JOINTS", "FINGER_OPEN", "GRASP_LINK", "HAND_LINK", "REST_POSE", "PandaScene", "Scene", "connect",
           "silenced_stdout"]
