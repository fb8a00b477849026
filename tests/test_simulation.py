"""The simulator shared by the renderers: manifests, easing, the FTPV names and the one Panda scene."""
import json
import os

import numpy as np
import pytest

from threedtrl import simulation
from data_pipeline import ftpv
from threedtrl.runtime import UserError


def test_claim_folder_resumes_same_settings_and_refuses_others(tmp_path):
    folder = str(tmp_path / "set")
    record = {"preset": "tiny", "seed": 0, "size": 32}
    path = simulation.claim_folder(folder, "meta.json", record)
    with open(path, "w") as f:
        json.dump(record, f)
    assert simulation.claim_folder(folder, "meta.json", dict(record)) == path
    assert simulation.claim_folder(folder, "meta.json", dict(record, size=64), compare=("preset", "seed")) == path
    with pytest.raises(UserError, match=r"rendered with seed 0, other settings than these \(seed differs\)"):
        simulation.claim_folder(folder, "meta.json", dict(record, seed=1))
    with pytest.raises(UserError, match="rendered with preset tiny and seed 0"):
        simulation.claim_folder(folder, "meta.json", dict(record, seed=1), compare=("preset", "seed"))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="did not write"):
        simulation.claim_folder(str(foreign), "meta.json", record)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_easing_starts_and_stops_at_rest():
    s = np.linspace(0, 1, 101)
    eased = simulation.smoothstep(s)
    assert eased[0] == 0 and eased[-1] == 1 and np.all(np.diff(eased) >= 0)
    assert abs(eased[1] - eased[0]) < 1e-3 and abs(eased[-1] - eased[-2]) < 1e-3   # zero velocity at both ends
    path = simulation.piecewise(s, [0.0, 0.5, 1.0], [np.zeros(3), np.ones(3), np.full(3, 3.0)])
    np.testing.assert_allclose(path[[0, 50, 100]], [[0] * 3, [1] * 3, [3] * 3])


def test_ftpv_names_have_one_owner(tmp_path):
    dirs = ftpv.trajectory_view_dirs(str(tmp_path / ftpv.trajectory_name(3)), [0, 2])
    assert [os.path.relpath(d, tmp_path) for d in dirs] == ["tr_0003/fpv", "tr_0003/tpv/view_0000",
                                                            "tr_0003/tpv/view_0002"]
    assert ftpv.frame_name(7) == "000007.jpg"
    for name in ("tr_0001", "tr_0000", "tr_12345", "tr_x", "notes"):
        (tmp_path / name).mkdir()
    assert ftpv.numbered_trajectories(str(tmp_path)) == ["tr_0000", "tr_0001", "tr_12345"]


def test_the_scenarios_share_one_panda_scene():
    from data_pipeline import render_ftpv
    from threedtrl.timesformer import render

    ftpv_scene, action_scene = render_ftpv.build_scene(), render.build_scene()
    try:
        assert type(ftpv_scene) is type(action_scene) is simulation.PandaScene
        target = (0.45, 0.05, 0.2)
        for scene in (ftpv_scene, action_scene):
            scene.set_arm(simulation.REST_POSE, simulation.FINGER_OPEN)
            for _ in range(3):
                scene.set_arm(scene.solve_ik(target, (1.0, 0.0, 0.0, 0.0)))
            position, _ = scene.link_pose(simulation.GRASP_LINK)
            assert np.linalg.norm(np.subtract(position, target)) < 0.01
    finally:
        ftpv_scene.close()
        action_scene.close()
