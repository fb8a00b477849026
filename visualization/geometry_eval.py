"""Does 3DTRL recover geometry? Its pseudo-depth and cameras against a renderer's ground truth.

Conventions. 3DTRL moves a camera-frame token ``p_cam`` (x right, y down, z forward: ``(u d, v d, d)``)
to the world as the row vector ``p_world = p_cam R + t``. In column form that is
``p_world = R^T p_cam + t``: ``R`` is the world-to-camera rotation and ``t`` the camera centre.
The renderers store ``world_to_camera`` 4x4 matrices in the same camera axes. The estimated world
frame and its scale are arbitrary, so only quantities that a similarity transform of the world
leaves unchanged are compared: the relative rotation of two cameras, ``R_b R_a^T``, and the
direction from camera a to camera b seen from camera a, ``R_a (c_b - c_a) / |c_b - c_a|``.
Pseudo-depth is compared by rank (Spearman) with the true mean depth of each token's patch.

Beside these, the field's measures: depth AbsRel and the share of tokens with
``max(d / d*, d* / d) < 1.25`` after per-image median scaling (monocular depth's convention) and
after a per-image least-squares scale and shift; relative rotation accuracy at 15 and 30 degrees and
the area under the accuracy curve up to 30 degrees (relative pose's convention). References: random
rotations, one identical camera for every view, the best constant relative rotation (one rotation for
every view pair, the chordal mean of the true ones) and the model's own predictions shuffled across
images (how much of a score is the prediction's dependence on its input).
"""
import itertools
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from scipy.stats import spearmanr

from data_pipeline.ground_truth import GROUND_TRUTH, cameras_from_world_to_camera, token_depth
from threedtrl.alignment.geometry_objectives import photometric_reprojection
from threedtrl.runtime import UserError


# ----------------------------------------------------------------------------- ground truth

def token_camera_points(truth: Dict[str, np.ndarray], grid_size: Tuple[int, int], fill_empty: bool = False
                        ) -> np.ndarray:
    """True position ``(V, T, h*w, 3)`` of each token in its own camera's frame: its patch centre's ray
    at the patch's mean true depth. Where the patch shows nothing: nan, or with ``fill_empty`` the
    farthest true depth of the trajectory (the nearest guess for what lies beyond the renderer's far
    plane)."""
    h, w = grid_size
    size = truth["depth"].shape[-1]
    depth = token_depth(truth["depth"], grid_size).reshape(*truth["depth"].shape[:2], h * w)
    if fill_empty:
        depth = np.where(np.isfinite(depth), depth, np.nanmax(truth["depth"]))
    cols, rows = np.meshgrid((np.arange(w) + 0.5) * size / w, (np.arange(h) + 0.5) * size / h)
    rays = np.linalg.inv(truth["intrinsics"]) @ np.stack([cols.ravel(), rows.ravel(), np.ones(h * w)])
    return rays.T * depth[..., None]


def token_world_points(truth: Dict[str, np.ndarray], grid_size: Tuple[int, int], fill_empty: bool = False
                       ) -> np.ndarray:
    """:func:`token_camera_points` moved to the world with the true cameras: ``(V, T, h*w, 3)``."""
    rotation, centre = cameras_from_world_to_camera(truth["world_to_camera"])
    return np.einsum("vtji,vtnj->vtni", rotation, token_camera_points(truth, grid_size, fill_empty)) \
        + centre[:, :, None]


# ----------------------------------------------------------------------------- comparisons

def spearman_per_image(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of ``pred`` and ``true`` ``(M, N)`` per row over the tokens where
    ``true`` is known; 0 where either side is constant or fewer than 3 tokens are known."""
    out = np.zeros(len(pred))
    for k, (p, t) in enumerate(zip(pred, true)):
        known = np.isfinite(t)
        if known.sum() >= 3 and np.ptp(p[known]) > 0 and np.ptp(t[known]) > 0:
            out[k] = spearmanr(p[known], t[known]).statistic
    return out


def rotation_angle_deg(rotation: np.ndarray) -> np.ndarray:
    """Angle in degrees of rotation matrices ``(..., 3, 3)``."""
    cos = (np.trace(rotation, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def angle_between_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees between vectors ``(..., 3)``; NaN where either has zero length (two cameras
    placed at the same point have no direction between them)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def cameras_from_layer(rotation: np.ndarray, translation: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """3DTRL's ``(R, t)`` (``p_world = p_cam R + t``) -> world-to-camera rotation and camera centre."""
    return rotation, translation


def view_pairs(views: int) -> List[Tuple[int, int]]:
    return list(itertools.combinations(range(views), 2))


def relative_rotations(rotation: np.ndarray) -> np.ndarray:
    """``R_b R_a^T`` for every pair ``a < b`` of the views axis: ``(V, ..., 3, 3)`` -> ``(P, ..., 3, 3)``."""
    return np.stack([rotation[b] @ np.swapaxes(rotation[a], -1, -2) for a, b in view_pairs(len(rotation))])


def relative_directions(rotation: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """``R_a (c_b - c_a)`` for every pair ``a < b``: ``(V, ..., 3, 3)``, ``(V, ..., 3)`` -> ``(P, ..., 3)``."""
    return np.stack([np.einsum("...ij,...j->...i", rotation[a], centre[b] - centre[a])
                     for a, b in view_pairs(len(rotation))])


def relative_rotation_errors(est: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Angle (degrees) between estimated and true relative rotations of every view pair at every
    instant: world-to-camera rotations ``(V, T, 3, 3)`` each -> ``(P, T)``."""
    return rotation_angle_deg(np.swapaxes(relative_rotations(est), -1, -2) @ relative_rotations(true))


def translation_direction_errors(est_rotation: np.ndarray, est_centre: np.ndarray, true_rotation: np.ndarray,
                                 true_centre: np.ndarray) -> np.ndarray:
    """Angle (degrees) between estimated and true directions from camera a to camera b, seen from a,
    for every view pair at every instant -> ``(P, T)``."""
    return angle_between_deg(relative_directions(est_rotation, est_centre),
                             relative_directions(true_rotation, true_centre))


def random_rotations(shape: Tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Uniformly distributed rotations ``(*shape, 3, 3)`` (QR of Gaussian matrices, signs fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(*shape, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[..., None, :]
    return q * np.sign(np.linalg.det(q))[..., None, None]


def mean_pairwise(values: np.ndarray, distance) -> float:
    """Mean of ``distance(values[i], values[j])`` over pairs ``i < j`` of the first axis."""
    pairs = view_pairs(len(values))
    return float(np.mean([distance(values[i], values[j]) for i, j in pairs])) if pairs else 0.0


def rotation_spread(rotation: np.ndarray) -> float:
    """Mean angle (degrees) between the rotations ``(K, ..., 3, 3)`` of a set, over pairs of the first axis."""
    return mean_pairwise(rotation, lambda a, b: rotation_angle_deg(np.swapaxes(a, -1, -2) @ b).mean())


def centre_spread(centre: np.ndarray) -> float:
    """Mean distance between the camera centres ``(K, ..., 3)`` of a set, over pairs of the first axis."""
    return mean_pairwise(centre, lambda a, b: np.linalg.norm(a - b, axis=-1).mean())


ROTATION_THRESHOLDS_DEG = (15.0, 30.0)
AUC_MAX_DEG = 30.0
DELTA = 1.25


def rotation_accuracy(errors: np.ndarray, threshold: float) -> float:
    """Share of the (finite) rotation errors, in degrees, at most ``threshold``."""
    errors = errors[np.isfinite(errors)]
    return float(np.mean(errors <= threshold)) if errors.size else float("nan")


def rotation_auc(errors: np.ndarray, max_deg: float = AUC_MAX_DEG) -> float:
    """Area under the accuracy-vs-threshold curve from 0 to ``max_deg``, normalised to [0, 1]:
    ``mean(max(0, 1 - e / max_deg))`` (the integral of the errors' distribution function)."""
    errors = errors[np.isfinite(errors)]
    return float(np.mean(np.clip(1.0 - errors / max_deg, 0.0, None))) if errors.size else float("nan")


def _depth_scores(fitted: np.ndarray, true: np.ndarray) -> Tuple[float, float]:
    """AbsRel and the share with ``max(d/d*, d*/d) < DELTA`` of fitted depths against true ones
    (known, positive true values; a fitted depth at or below zero counts as a miss)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(fitted > 0, np.maximum(fitted / true, true / fitted), np.inf)
    return float(np.mean(np.abs(fitted - true) / true)), float(np.mean(ratio < DELTA))


def depth_errors(pred: np.ndarray, true: np.ndarray) -> Dict[str, np.ndarray]:
    """Per image (rows of ``(M, N)``, tokens where ``true`` is known): AbsRel and delta < 1.25 after
    median scaling (``pred * median(true) / median(pred)``) and after a least-squares scale and shift;
    NaN where an image has fewer than 3 known tokens or a median prediction of 0."""
    names = ("absrel_median", "delta_median", "absrel_scale_shift", "delta_scale_shift")
    out = {name: np.full(len(pred), np.nan) for name in names}
    for k, (p, t) in enumerate(zip(pred, true)):
        known = np.isfinite(t) & (t > 0)
        if known.sum() < 3:
            continue
        p, t = p[known].astype(np.float64), t[known]
        if np.median(p) != 0:
            out["absrel_median"][k], out["delta_median"][k] = _depth_scores(p * np.median(t) / np.median(p), t)
        design = np.stack([p, np.ones_like(p)], axis=1)
        scale, shift = np.linalg.lstsq(design, t, rcond=None)[0]
        out["absrel_scale_shift"][k], out["delta_scale_shift"][k] = _depth_scores(scale * p + shift, t)
    return out


def matched_point_distances(features: np.ndarray, points: np.ndarray, rng: np.random.Generator
                            ) -> Dict[str, np.ndarray]:
    """How far apart in the true world are the tokens that feature matching pairs across views.

    For every instant, every ordered pair of views ``(a, b)`` and every token of ``a`` with a true
    world point, the token of ``b`` matched to it is the one of highest cosine similarity (what
    ``--geometry_loss consistency`` matches, at zero temperature). Its true distance is divided by the
    instant's median distance between true token points. Beside the features' match (``features``):
    the token at the same grid cell (``same_cell``, what one camera for every view assumes), a random
    token (``random_token``) and the nearest true point of ``b`` (``nearest_point``, the floor).

    Args:
        features: ``(V, T, N, D)`` output tokens; points: ``(V, T, N, 3)`` true world points (nan: none).

    Returns:
        Each kind's normalised distances, flat.
    """
    views, length, tokens = points.shape[:3]
    out: Dict[str, List[np.ndarray]] = {k: [] for k in ("features", "same_cell", "random_token", "nearest_point")}
    unit = features / np.maximum(np.linalg.norm(features, axis=-1, keepdims=True), 1e-12)
    for t in range(length):
        p = points[:, t]                                                       # (V, N, 3)
        flat = p.reshape(-1, 3)
        flat = flat[np.isfinite(flat).all(-1)]
        scale = np.median(np.linalg.norm(flat[:, None] - flat[None], axis=-1)[np.triu_indices(len(flat), 1)])
        for a in range(views):
            for b in range(views):
                if a == b:
                    continue
                distance = np.linalg.norm(p[a][:, None] - p[b][None], axis=-1) / scale      # (N, N)
                picks = {"features": (unit[a, t] @ unit[b, t].T).argmax(-1), "same_cell": np.arange(tokens),
                         "random_token": rng.integers(tokens, size=tokens)}
                for kind, m in picks.items():
                    out[kind].append(distance[np.arange(tokens), m])
                with np.errstate(all="ignore"):
                    out["nearest_point"].append(np.where(np.isfinite(distance).any(-1),
                                                         np.nanmin(np.where(np.isfinite(distance), distance, np.inf),
                                                                   axis=-1), np.nan))
    return {kind: np.concatenate(values) for kind, values in out.items()}


def true_pinhole(truth: Dict[str, np.ndarray], grid_size: Tuple[int, int]) -> Tuple[float, Tuple[float, float]]:
    """The renderer's camera as the layer's pinhole: focal length in patches and principal point in
    patches from the grid's centre (``PointEstimator.pinhole``'s terms)."""
    h, w = grid_size
    size = truth["depth"].shape[-1]
    k = truth["intrinsics"]
    return float(k[0, 0] / (size / w)), (float((k[0, 2] - size / 2) / (size / w)),
                                         float((k[1, 2] - size / 2) / (size / h)))


def reprojection_error(points: np.ndarray, rotation: np.ndarray, translation: np.ndarray, colours: np.ndarray,
                       grid_size: Tuple[int, int], pinhole: Tuple) -> float:
    """The value of ``--geometry_loss reprojection`` for one trajectory's geometry.

    Args:
        points: ``(V, T, N, 3)`` world points; rotation ``(V, T, 3, 3)``; translation ``(V, T, 3)``;
        colours: ``(V, T, N, 3)`` each token's mean colour; pinhole: ``(focal, principal_point)``.
    """
    views, length = points.shape[:2]
    per_instant = [torch.from_numpy(np.ascontiguousarray(np.swapaxes(a, 0, 1))).float()
                   for a in (points, rotation, translation[:, :, None], colours)]
    per_instant[3] = per_instant[3].transpose(-1, -2).reshape(length, views, 3, *grid_size)
    with torch.no_grad():
        return float(photometric_reprojection(*per_instant, *pinhole))


PATH_FRACTIONS = tuple(np.linspace(0.0, 1.0, 11))


def cameras_towards_truth(rotation: np.ndarray, centre: np.ndarray, fraction: float) -> Tuple[np.ndarray, np.ndarray]:
    """Cameras ``fraction`` of the way from one identical camera for every view (0) to the true ones (1).

    Args:
        rotation: ``(V, T, 3, 3)`` true world-to-camera rotations; centre: ``(V, T, 3)`` true centres.

    Returns:
        Rotations and centres in the first view's camera frame (the world frame is free): each view's
        pose relative to the first view's, its rotation taken ``fraction`` along the geodesic from the
        identity and its centre ``fraction`` of the way from the first view's.
    """
    relative = rotation @ np.swapaxes(rotation[:1], -1, -2)                    # R_v R_0^T
    offset = np.einsum("vtj,tij->vti", centre - centre[:1], rotation[0])       # (c_v - c_0) R_0^T
    turned = Rotation.from_rotvec(fraction * Rotation.from_matrix(relative.reshape(-1, 3, 3)).as_rotvec())
    return turned.as_matrix().reshape(relative.shape), fraction * offset


def chordal_mean_rotation(rotations: np.ndarray) -> np.ndarray:
    """The rotation nearest (in Frobenius norm) to the mean of ``(..., 3, 3)`` rotations."""
    u, _, vt = np.linalg.svd(rotations.reshape(-1, 3, 3).mean(axis=0))
    fix = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    return u @ fix @ vt


# ----------------------------------------------------------------------------- one trajectory

class GeometryScores:
    """Accumulates the comparisons of every evaluated trajectory, for the model and its references.

    The relative rotations are scored over every view pair and, apart, over the pairs of
    third-person cameras (``*_third_person``): view 0 is the first-person camera, as FTPV's views
    are read, and it turns with the hand, so its pairs ask more than the fixed cameras' do."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.depth: Dict[str, List[np.ndarray]] = {}
        self.rotation: Dict[str, List[np.ndarray]] = {}    # name -> per trajectory, (P, T) errors
        self.direction: Dict[str, List[np.ndarray]] = {}
        self.spread: Dict[str, List[float]] = {}
        self.depth_fit: Dict[str, Dict[str, List[np.ndarray]]] = {}
        self.matching: Dict[str, List[np.ndarray]] = {}
        self.reprojection: Dict[str, List[float]] = {}     # name -> per trajectory
        self.reprojection_path: Dict[str, List[float]] = {}   # fraction of the way to the truth -> per trajectory
        self.true_relative: List[np.ndarray] = []         # per trajectory, (P, T, 3, 3)
        self.third_person_pairs: List[np.ndarray] = []    # per trajectory, (P,): the pair leaves out view 0

    def _add(self, table: Dict[str, list], name: str, value) -> None:
        table.setdefault(name, []).append(value)

    def add(self, name: str, depth: np.ndarray, rotation: np.ndarray, translation: np.ndarray,
            truth: Dict[str, np.ndarray], tokens: Optional[np.ndarray] = None) -> None:
        """One trajectory seen by model ``name``: pseudo-depth ``(V, T, h, w)``, 3DTRL's rotation
        ``(V, T, 3, 3)`` and translation ``(V, T, 3)``, its ground truth (``load_ground_truth``) and,
        where given, the output tokens ``(V, T, h*w, D)`` (how well they match across views)."""
        if tokens is not None:
            distances = matched_point_distances(tokens, token_world_points(truth, depth.shape[-2:]), self.rng)
            self._add(self.matching, name, distances.pop("features"))
            for kind, values in distances.items():  # references: once per trajectory, by its first model
                if len(self.matching.get(kind, [])) < len(self.matching[name]):
                    self._add(self.matching, kind, values)
        true_depth = token_depth(truth["depth"], depth.shape[-2:])
        pred, true = depth.reshape(-1, depth[0, 0].size), true_depth.reshape(-1, true_depth[0, 0].size)
        self._add(self.depth, name, spearman_per_image(pred, true))
        shuffled = self.rng.permuted(pred, axis=1)  # each image's tokens in a random order
        for label, values in ((name, pred), (f"shuffled_{name}", shuffled)):
            for key, errors in depth_errors(values, true).items():
                self.depth_fit.setdefault(key, {}).setdefault(label, []).append(errors)
        est_r, est_c = cameras_from_layer(rotation, translation)
        true_r, true_c = cameras_from_world_to_camera(truth["world_to_camera"])
        self._add(self.rotation, name, relative_rotation_errors(est_r, true_r))
        est_rel, true_rel = relative_rotations(est_r), relative_rotations(true_r)
        order = self.rng.permutation(est_rel[..., 0, 0].size)   # another image pair's prediction
        shuffled_rel = est_rel.reshape(-1, 3, 3)[order].reshape(est_rel.shape)
        self._add(self.rotation, f"shuffled_{name}", rotation_angle_deg(np.swapaxes(shuffled_rel, -1, -2) @ true_rel))
        self._add(self.direction, name, translation_direction_errors(est_r, est_c, true_r, true_c).ravel())
        self._add_spread(name, est_r, est_c)

    def add_reprojection(self, name: str, points: np.ndarray, rotation: np.ndarray, translation: np.ndarray,
                         colours: np.ndarray, grid_size: Tuple[int, int], pinhole: Tuple) -> None:
        """The reprojection objective on model ``name``'s geometry of one trajectory (``Recovered``'s
        points_world, rotation, translation and patch_colours; the layer's pinhole)."""
        self._add(self.reprojection, name, reprojection_error(points, rotation, translation, colours, grid_size,
                                                              pinhole))

    def add_reprojection_references(self, truth: Dict[str, np.ndarray], colours: np.ndarray,
                                    grid_size: Tuple[int, int]) -> None:
        """Once per trajectory: the reprojection objective with the true depths and the true pinhole along
        the path from one identical camera for every view (``identical_cameras``: each token stays on its
        own grid cell in every view) to the true cameras (``truth``: where the objective would pull if it
        could get there), at :data:`PATH_FRACTIONS` of the way (``reprojection_path``)."""
        in_camera = token_camera_points(truth, grid_size, fill_empty=True)
        rotation, centre = cameras_from_world_to_camera(truth["world_to_camera"])
        pinhole = true_pinhole(truth, grid_size)
        for fraction in PATH_FRACTIONS:
            r, c = cameras_towards_truth(rotation, centre, fraction)
            world = np.einsum("vtni,vtij->vtnj", in_camera, r) + c[:, :, None]           # p_cam R + c
            self._add(self.reprojection_path, f"{fraction:.1f}",
                      reprojection_error(world, r, c, colours, grid_size, pinhole))
        self._add(self.reprojection, "identical_cameras", self.reprojection_path["0.0"][-1])
        self._add(self.reprojection, "truth", self.reprojection_path["1.0"][-1])

    def _add_spread(self, name: str, rotation: np.ndarray, centre: np.ndarray) -> None:
        """How much the cameras ``(V, T, ...)`` differ across the views of an instant and across the
        frames of a view: mean pairwise rotation angle (degrees) and centre distance (own units)."""
        self._add(self.spread, f"{name}_rotation_across_views_deg", rotation_spread(rotation))
        self._add(self.spread, f"{name}_rotation_across_frames_deg", rotation_spread(np.swapaxes(rotation, 0, 1)))
        self._add(self.spread, f"{name}_centre_across_views", centre_spread(centre))
        self._add(self.spread, f"{name}_centre_across_frames", centre_spread(np.swapaxes(centre, 0, 1)))

    def add_references(self, truth: Dict[str, np.ndarray]) -> None:
        """Once per trajectory: the true cameras' spread, and cameras that know nothing: uniformly
        random rotations and directions, and one identical camera for every view (relative rotation
        the identity)."""
        true_r, true_c = cameras_from_world_to_camera(truth["world_to_camera"])
        self._add_spread("truth", true_r, true_c)
        self.true_relative.append(relative_rotations(true_r))
        self.third_person_pairs.append(np.array([a > 0 for a, _ in view_pairs(len(true_r))]))
        identical = np.broadcast_to(np.eye(3), true_r.shape)
        self._add(self.rotation, "identical_cameras", relative_rotation_errors(identical, true_r))
        self._add(self.rotation, "random_rotations",
                  relative_rotation_errors(random_rotations(true_r.shape[:2], self.rng), true_r))
        directions = relative_directions(true_r, true_c)
        self._add(self.direction, "random_directions",
                  angle_between_deg(self.rng.normal(size=directions.shape), directions).ravel())

    def summary(self) -> Dict[str, Dict[str, float]]:
        """Means (and standard deviations for depth) of every comparison, over its defined values."""
        def mean(table):
            return {k: float(np.nanmean(np.concatenate(v))) for k, v in table.items()}

        def mean_of_scalars(table):
            return {k: float(np.mean(v)) for k, v in table.items()}
        return {
            "depth_spearman": mean(self.depth),
            "depth_spearman_std": {k: float(np.std(np.concatenate(v))) for k, v in self.depth.items()},
            **{f"depth_{key}": mean(table) for key, table in self.depth_fit.items()},
            **self._rotation_summary(third_person_only=False),
            **(self._rotation_summary(third_person_only=True)
               if self.third_person_pairs and all(mask.any() for mask in self.third_person_pairs) else {}),
            "translation_direction_error_deg": mean(self.direction),
            **({"match_distance": mean(self.matching)} if self.matching else {}),
            **({"reprojection_error": mean_of_scalars(self.reprojection)} if self.reprojection else {}),
            **({"reprojection_path": mean_of_scalars(self.reprojection_path)} if self.reprojection_path else {}),
            "camera_spread": mean_of_scalars(self.spread),
        }

    def _rotation_summary(self, third_person_only: bool) -> Dict[str, Dict[str, float]]:
        """Rotation error, accuracies and AUC over every view pair, or over the pairs of third-person
        cameras only (keys with ``_third_person``)."""
        def kept(per_trajectory: List[np.ndarray]) -> np.ndarray:  # (P, T, ...) each -> the chosen pairs, flat
            chosen = ([v[mask] for v, mask in zip(per_trajectory, self.third_person_pairs)] if third_person_only
                      else per_trajectory)
            return np.concatenate([v.reshape(-1, *v.shape[2:]) for v in chosen])
        rotation = {k: kept(v) for k, v in self.rotation.items()}
        if self.true_relative:  # the best single relative rotation, given every view pair the truth has
            true_rel = kept(self.true_relative)
            rotation["best_constant_rotation"] = rotation_angle_deg(chordal_mean_rotation(true_rel).T[None] @ true_rel)
        suffix = "_third_person" if third_person_only else ""
        return {f"relative_rotation_error_deg{suffix}": {k: float(np.nanmean(v)) for k, v in rotation.items()},
                **{f"rotation_accuracy_at_{t:g}_deg{suffix}": {k: rotation_accuracy(v, t) for k, v in rotation.items()}
                   for t in ROTATION_THRESHOLDS_DEG},
                f"rotation_auc_{AUC_MAX_DEG:g}_deg{suffix}": {k: rotation_auc(v) for k, v in rotation.items()}}


def format_table(summary: Dict[str, Dict[str, float]]) -> str:
    """The summary as aligned text rows: one line per measure, one column per model or reference."""
    lines = []
    for key in ("depth_spearman", "depth_absrel_median", "depth_delta_median", "depth_absrel_scale_shift",
                "depth_delta_scale_shift", "relative_rotation_error_deg", "rotation_accuracy_at_15_deg",
                "rotation_accuracy_at_30_deg", "rotation_auc_30_deg", "relative_rotation_error_deg_third_person",
                "rotation_accuracy_at_30_deg_third_person", "translation_direction_error_deg", "match_distance",
                "reprojection_error", "reprojection_path", "camera_spread"):
        if key not in summary:
            continue
        cells = "  ".join(f"{name} {value:.3f}" for name, value in summary[key].items())
        lines.append(f"{key:32s} {cells}")
    return "\n".join(lines)


def check_has_ground_truth(traj_paths: Sequence[str]) -> List[str]:
    """The trajectories with ground truth; a :class:`UserError` when none has any."""
    found = [p for p in traj_paths if os.path.isfile(os.path.join(p, GROUND_TRUTH))]
    if not found:
        where = os.path.dirname(traj_paths[0]) if traj_paths else "the split"
        raise UserError(f"no trajectory of {where} has ground truth ({GROUND_TRUTH}); render it with "
                        f"python -m data_pipeline.render_ftpv")
    return found


# ----------------------------------------------------------------------------- classification: rendered objects

def orbit_camera_rotations(azimuth_deg: np.ndarray, elevation_deg: np.ndarray) -> np.ndarray:
    """World-to-camera rotations ``(M, 3, 3)`` (x right, y down, z forward) of cameras that look at the
    world's origin from ``azimuth`` (about z, 0 along x) and ``elevation`` degrees, z up: the cameras of
    ``tools/render_objects.py`` (``cameras.csv``), whose rows are the camera's axes in the world."""
    az, el = np.radians(np.asarray(azimuth_deg, float)), np.radians(np.asarray(elevation_deg, float))
    forward = -np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right, axis=-1, keepdims=True)
    down = np.cross(forward, right)
    return np.stack([right, down, forward], axis=-2)


def same_class_pairs(labels: Sequence, max_pairs: int, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Indices ``(a, b)`` of image pairs ``a < b`` of one class (one object, one world frame), at most
    ``max_pairs`` drawn at random."""
    labels = np.asarray(labels)
    a, b = np.triu_indices(len(labels), k=1)
    keep = labels[a] == labels[b]
    a, b = a[keep], b[keep]
    if len(a) > max_pairs:
        pick = np.sort(rng.choice(len(a), max_pairs, replace=False))
        a, b = a[pick], b[pick]
    return a, b


def object_camera_scores(rotation: np.ndarray, true_rotation: np.ndarray, labels: Sequence,
                         seed: int = 0, max_pairs: int = 20000) -> Dict[str, Dict[str, float]]:
    """3DTRL's cameras of single images of objects against the cameras they were rendered from.

    Every object sits in a world frame of its own, so the relative rotation ``R_b R_a^T`` is compared
    for pairs of images of the same class. Args: estimated and true world-to-camera rotations
    ``(M, 3, 3)`` and each image's class. Returns, per measure, the model's value beside the
    references (identical cameras, random rotations, the best constant relative rotation and the
    model's relative rotations given to other pairs)."""
    rng = np.random.default_rng(seed)
    a, b = same_class_pairs(labels, max_pairs, rng)
    if not len(a):
        raise UserError("no two images of one class to compare cameras between")
    true_rel = true_rotation[b] @ np.swapaxes(true_rotation[a], -1, -2)

    def errors(est_rel: np.ndarray) -> np.ndarray:
        return rotation_angle_deg(np.swapaxes(est_rel, -1, -2) @ true_rel)
    est_rel = rotation[b] @ np.swapaxes(rotation[a], -1, -2)
    random = random_rotations((len(rotation),), rng)
    table = {"model": errors(est_rel),
             "shuffled_model": errors(est_rel[rng.permutation(len(est_rel))]),
             "identical_cameras": errors(np.broadcast_to(np.eye(3), est_rel.shape)),
             "random_rotations": errors(random[b] @ np.swapaxes(random[a], -1, -2)),
             "best_constant_rotation": errors(np.broadcast_to(chordal_mean_rotation(true_rel), est_rel.shape))}
    return {"relative_rotation_error_deg": {k: float(np.mean(v)) for k, v in table.items()},
            **{f"rotation_accuracy_at_{t:g}_deg": {k: rotation_accuracy(v, t) for k, v in table.items()}
               for t in ROTATION_THRESHOLDS_DEG},
            f"rotation_auc_{AUC_MAX_DEG:g}_deg": {k: rotation_auc(v) for k, v in table.items()},
            "camera_spread": {"model_rotation_deg": rotation_spread(rotation[:, None][:200]),
                              "truth_rotation_deg": rotation_spread(true_rotation[:, None][:200])},
            "pairs": {"count": int(len(a))}}
