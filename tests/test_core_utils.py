"""utils: alignment metrics against plain loops, Config, atomic files, seeding."""
import json
import os

import numpy as np
import pytest
import torch

from threedtrl import runtime
import utils
from threedtrl.alignment import metrics


def _nn_loop(z1, z2):
    out = []
    for i in range(len(z1)):
        best, best_j = None, 0
        for j in range(len(z2)):
            d = float(((z1[i] - z2[j]) ** 2).sum())
            if best is None or d < best:
                best, best_j = d, j
        out.append(best_j)
    return out


def _loop_metrics(z1, z2):
    length = len(z1)
    nn12, nn21 = _nn_loop(z1, z2), _nn_loop(z2, z1)
    align = sum(abs(i - nn12[i]) for i in range(length)) / length / length
    cycle = sum(abs(i - nn21[nn12[i]]) for i in range(length)) / length / length
    concordant = sum(1 for i in range(length) for j in range(i + 1, length) if nn12[i] < nn12[j])
    total = length * (length - 1) // 2
    return align, cycle, (concordant - (total - concordant)) / total


def _pairs():
    g = torch.Generator().manual_seed(0)
    yield torch.randn(23, 5, generator=g), torch.randn(23, 5, generator=g)
    z = torch.randn(17, 4, generator=g)
    yield z, z + 0.3 * torch.randn(17, 4, generator=g)
    # ties: repeated rows on both sides and a constant sequence
    base = torch.randn(4, 3, generator=g)
    yield base.repeat_interleave(3, dim=0), base.repeat(3, 1)
    yield torch.zeros(9, 2), torch.randint(0, 2, (9, 2), generator=g).float()
    yield torch.randint(0, 3, (30, 2), generator=g).float(), torch.randint(0, 3, (30, 2), generator=g).float()
    # exact ties between random float rows, and embeddings far from the origin
    rows = torch.randn(10, 7, generator=g)
    yield torch.randn(15, 7, generator=g), torch.cat([rows, rows])
    yield 1e3 + torch.randn(12, 5, generator=g), 1e3 + torch.randn(12, 5, generator=g)


@pytest.mark.parametrize("index", range(7))
def test_metrics_equal_plain_loops(index):
    z1, z2 = list(_pairs())[index]
    expected = _loop_metrics(z1, z2)
    got = (utils.alignment_error(z1, z2), utils.cycle_error(z1, z2), utils.kendalls_tau(z1, z2))
    assert got == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("index", range(7))
def test_tau_b_equals_scipy_and_metrics_share_one_matrix(index):
    from scipy.stats import kendalltau

    z1, z2 = list(_pairs())[index]
    nearest = utils.nearest_frames(z1, z2).numpy()
    expected = 0.0 if (nearest == nearest[0]).all() else kendalltau(np.arange(len(nearest)), nearest).statistic
    assert utils.kendalls_tau_b(z1, z2) == pytest.approx(expected, abs=1e-12)
    together = utils.alignment_metrics(z1, z2)
    assert together == {"alignment_error": utils.alignment_error(z1, z2), "cycle_error": utils.cycle_error(z1, z2),
                        "kendalls_tau": utils.kendalls_tau(z1, z2), "kendalls_tau_b": utils.kendalls_tau_b(z1, z2)}


def test_metrics_on_perfect_and_reversed_alignment():
    z = torch.randn(10, 3).cumsum(0) * 10
    assert utils.alignment_error(z, z) == 0 and utils.cycle_error(z, z) == 0 and utils.kendalls_tau(z, z) == 1
    assert utils.kendalls_tau(z, z.flip(0)) == -1
    assert utils.alignment_error(z, z.flip(0)) == pytest.approx(sum(abs(i - (9 - i)) for i in range(10)) / 100)


def test_metrics_return_python_floats_and_chunking_agrees():
    z1, z2 = torch.randn(40, 6), torch.randn(40, 6)
    assert isinstance(utils.alignment_error(z1, z2), float)
    full = metrics._squared_distances(z1, z2)
    chunked = metrics._squared_distances(z1, z2, chunk_elems=6 * 40 * 3)
    assert torch.equal(full, chunked)


def test_config_merge_and_overrides():
    cfg = utils.Config({"TRAIN": {"BATCH_SIZE": 8, "ENABLE": True}, "LR": 0.1})
    cfg.merge({"TRAIN": {"BATCH_SIZE": 4}})
    cfg.merge_list(["TRAIN.ENABLE", "False", "LR", "1e-3"])
    assert cfg.TRAIN.BATCH_SIZE == 4 and cfg.TRAIN.ENABLE is False and cfg.LR == 1e-3
    with pytest.raises(runtime.UserError, match="unknown config key: TRAIN.BOGUS"):
        cfg.merge_list(["TRAIN.BOGUS", "1"])
    with pytest.raises(runtime.UserError, match="unknown config key: NOPE"):
        cfg.merge({"NOPE": 1})
    with pytest.raises(runtime.UserError, match="odd number"):
        cfg.merge_list(["LR"])
    assert cfg.to_dict() == {"TRAIN": {"BATCH_SIZE": 4, "ENABLE": False}, "LR": 1e-3}


def test_config_from_yaml_errors(tmp_path):
    with pytest.raises(runtime.UserError, match="not found"):
        utils.Config.from_yaml(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(runtime.UserError, match="not valid YAML"):
        utils.Config.from_yaml(str(bad))


def test_atomic_writes_leave_no_partial_file(tmp_path):
    path = tmp_path / "out" / "ckpt.pth"
    runtime.save_checkpoint_atomic({"epoch": 3}, str(path))
    assert torch.load(path)["epoch"] == 3
    runtime.write_json_atomic({"a": 1}, str(tmp_path / "m.json"))
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 1}

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        runtime.save_checkpoint_atomic({"x": Unpicklable()}, str(path))
    assert torch.load(path)["epoch"] == 3
    assert sorted(os.listdir(path.parent)) == ["ckpt.pth"]


def test_seed_everything_repeats_random_streams():
    runtime.seed_everything(7)
    first = torch.randn(3)
    runtime.seed_everything(7)
    assert torch.equal(first, torch.randn(3))


def test_run_cli_turns_user_errors_into_one_line(capsys):
    def main():
        raise runtime.UserError("data folder not found: nowhere")
    with pytest.raises(SystemExit) as exit_info:
        runtime.run_cli(main)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: data folder not found: nowhere\n"


def test_yaml_numbers_without_a_dot_are_floats(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-3\nwarmup_lr: 1.0e-6\nepochs: 300\nname: vit\n")
    cfg = utils.Config.from_yaml(str(path))
    assert cfg.lr == 1e-3 and cfg.warmup_lr == 1e-6 and cfg.epochs == 300 and cfg.name == "vit"
    assert isinstance(cfg.epochs, int)
