"""The time-contrastive and n-pairs losses, training, resume, results, checkpoint-only testing, start points
and the two-model comparison of the alignment task."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import multiview_video_alignment as mva
from threedtrl.alignment.embedder import MODEL_DEFAULTS, create_embedder, freeze_first_groups, init_from_file
from threedtrl.alignment.engine import WeightEnsemble
from threedtrl.alignment.losses import npairs_loss, time_contrastive_loss
from threedtrl.alignment.sampler import EpochSampler
from conftest import TINY_FTPV, render_ftpv_root, train_alignment
from data_pipeline import TrajectoryDataset, TripletDataset, open_split
from data_pipeline.render_ftpv import Preset, render_dataset
from threedtrl.runtime import UserError, load_checkpoint_file, seed_everything

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _embeddings(rows):
    """``(B, 2, 3, 2)`` from scalars per (view, frame), second coordinate 0."""
    z = torch.tensor(rows, dtype=torch.float64).view(len(rows), 2, 3, 1)
    return torch.cat([z, torch.zeros_like(z)], dim=-1)


def test_loss_against_hand_computed_values():
    # a1 p1 n1 / a2 p2 n2. Row 1, formula of the paper:
    #   pull = .25 + .25 + 1 + 1 + 2.25 + .25 = 5;  push = 6.25 + 2.25 + 4 + 4 = 16.5;  5 - 16.5 + 30 = 18.5
    # release variant (p2 := p1, n2 := n1):
    #   pull = .25 + 0 + 1 + .25 + 1 + .25 = 2.75;  push = 4 + 2.25 + 4 + 2.25 = 12.5;  2.75 - 12.5 + 30 = 20.25
    # Row 2: far negatives, the hinge is 0 in both variants.
    z = _embeddings([[[0, 1, 2], [0.5, 1.5, 2.5]], [[0, 0, 10], [0, 0, 10]]])
    assert time_contrastive_loss(z).item() == pytest.approx((18.5 + 0) / 2)
    assert time_contrastive_loss(z, release=True).item() == pytest.approx((20.25 + 0) / 2)
    assert time_contrastive_loss(z[:1], margin=0.0).item() == pytest.approx(0.0)


def test_short_training_lowers_the_loss(mc_root):
    trajectories, _ = open_split(mc_root, "mc", "train")
    triplets = TripletDataset(TrajectoryDataset(trajectories, 32, progress=False), window=3, seed=0)
    frames = torch.stack([triplets[i][0] for i in range(0, len(triplets), 12)])
    seed_everything(0)
    embedder = create_embedder(dict(model="vit_3dtrl_tiny_patch16_224", img_size=32, pred_depth=1,
                                        pred_campos_from="both-sep"))
    optimizer = torch.optim.Adam(embedder.parameters(), lr=1e-3)

    def loss():
        return time_contrastive_loss(embedder(frames.flatten(0, 2)).view(len(frames), 2, 3, -1))

    losses = []
    for _ in range(8):
        value = loss()
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        losses.append(value.item())
    assert losses[-1] < losses[0] - 1.0 and min(losses[1:]) < losses[0], losses


def test_train_resume_results_and_test_only(mc_root, tmp_path, capsys):
    straight = train_alignment(mc_root, tmp_path / "straight", "--epochs", "2", "--num_workers", "1")
    assert [e["epoch"] for e in straight["epochs"]] == [0, 1, 2]
    for name in ("test", "val", "test_seen_views"):
        assert set(straight[name]) == {"alignment_error", "cycle_error", "kendalls_tau", "kendalls_tau_b"}
        assert all(0 <= straight[name][m] <= 1 for m in ("alignment_error", "cycle_error"))
    assert straight["views"] == {"train": ["fpv", "view_0", "view_1"], "test": ["fpv", "view_2"],
                                 "test_seen_views": ["fpv", "view_0", "view_1"]}
    assert os.path.isfile(straight["plot"]) and os.listdir(tmp_path / "straight" / "tb")
    printed = capsys.readouterr().out
    assert "seen views" in printed and "unseen views, alignment error per view (mean over its pairs): fpv" in printed
    # every view pair on its own: the test split's one pair is its metric; the seen views' three pairs average
    # to theirs (every trajectory has every view)
    pairs = straight["view_pairs"]
    assert [p["views"] for p in pairs["test"]] == [["fpv", "view_2"]]
    assert pairs["test"][0]["alignment_error"] == pytest.approx(straight["test"]["alignment_error"])
    assert [p["views"] for p in pairs["test_seen_views"]] == [["fpv", "view_0"], ["fpv", "view_1"], ["view_0", "view_1"]]
    for metric in ("alignment_error", "kendalls_tau"):
        assert np.mean([p[metric] for p in pairs["test_seen_views"]]) == pytest.approx(straight["test_seen_views"][metric])
    assert {p["trajectories"] for p in pairs["test_seen_views"]} == {2}

    first = train_alignment(mc_root, tmp_path / "resumed", "--epochs", "1", "--num_workers", "0")
    assert [e["epoch"] for e in first["epochs"]] == [0, 1]
    resumed = train_alignment(mc_root, tmp_path / "resumed", "--epochs", "2", "--num_workers", "0", "--resume")
    assert [e["epoch"] for e in resumed["epochs"]] == [0, 1, 2]
    for a, b in zip(straight["epochs"][1:], resumed["epochs"][1:]):  # same numbers as without the break
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val"] == pytest.approx(b["val"], rel=1e-5)
    assert resumed["test"] == pytest.approx(straight["test"], rel=1e-5)

    mva.main(["--data", "mc", "--data_root", mc_root, "--train_views", "2", "--device", "cpu", "--xpar",
              "--output_dir", str(tmp_path / "resumed"), "--test"])
    with open(tmp_path / "resumed" / "test.json") as f:
        tested = json.load(f)
    assert tested["epoch"] == resumed["best_epoch"]
    assert tested["test"] == pytest.approx(resumed["test"], rel=1e-5)


def test_weight_ensemble_interpolates_with_the_start_and_restores_the_trained_weights():
    net = torch.nn.Linear(3, 2)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    ensemble = WeightEnsemble(net, 0.25)
    with torch.no_grad():
        net.weight.add_(1.0)
        net.bias.mul_(3.0)
    trained = {k: v.clone() for k, v in net.state_dict().items()}
    expected = {k: 0.75 * start[k] + 0.25 * trained[k] for k in start}
    torch.testing.assert_close(ensemble.state_dict(), expected)
    with ensemble.applied():
        torch.testing.assert_close(net.state_dict(), expected)
    torch.testing.assert_close(net.state_dict(), trained, rtol=0, atol=0)
    assert WeightEnsemble(net, 1.0).start is None
    torch.testing.assert_close(WeightEnsemble(net, 1.0).state_dict(), trained, rtol=0, atol=0)
    with pytest.raises(ValueError, match="lie in"):
        WeightEnsemble(net, 1.5)


def test_wise_alpha_validates_keeps_and_tests_the_ensemble(mc_root, tmp_path):
    start_only = train_alignment(mc_root, tmp_path / "alpha0", "--epochs", "2", "--num_workers", "0",
                                 "--wise_alpha", "0")
    # alpha 0: every epoch validates the start point itself, although the weights train
    assert [e["val"] for e in start_only["epochs"]] == [start_only["epochs"][0]["val"]] * 3
    assert start_only["epochs"][1]["train_loss"] != start_only["epochs"][2]["train_loss"]
    assert start_only["test"] == pytest.approx(start_only["initial"]["test"], rel=1e-6)

    straight = train_alignment(mc_root, tmp_path / "straight", "--epochs", "2", "--num_workers", "0",
                               "--wise_alpha", "0.5")
    train_alignment(mc_root, tmp_path / "resumed", "--epochs", "1", "--num_workers", "0", "--wise_alpha", "0.5")
    resumed = train_alignment(mc_root, tmp_path / "resumed", "--epochs", "2", "--num_workers", "0",
                              "--wise_alpha", "0.5", "--resume")
    for a, b in zip(straight["epochs"], resumed["epochs"]):
        assert a["val"] == pytest.approx(b["val"], rel=1e-5)
    assert resumed["test"] == pytest.approx(straight["test"], rel=1e-5)
    last = load_checkpoint_file(str(tmp_path / "resumed" / "last.pth"))
    if resumed["best_epoch"] == 2:   # best.pth holds the ensemble of the last weights with the start
        best = load_checkpoint_file(str(tmp_path / "resumed" / "best.pth"))
        for key, value in best["model"].items():
            torch.testing.assert_close(value, torch.lerp(last["wise_start"][key], last["model"][key], 0.5))
    mva.main(["--data", "mc", "--data_root", mc_root, "--train_views", "2", "--device", "cpu", "--xpar",
              "--output_dir", str(tmp_path / "resumed"), "--test"])
    tested = json.loads((tmp_path / "resumed" / "test.json").read_text())
    assert tested["test"] == pytest.approx(resumed["test"], rel=1e-5)
    with pytest.raises(UserError, match="--wise_alpha 0.5, not 1.0"):
        train_alignment(mc_root, tmp_path / "resumed", "--epochs", "3", "--num_workers", "0", "--resume")
    with pytest.raises(UserError, match="must be in"):
        train_alignment(mc_root, tmp_path / "bad", "--wise_alpha", "2")


def test_compile_trains_like_eager(mc_root, tmp_path):
    eager = train_alignment(mc_root, tmp_path / "eager", "--epochs", "1", "--num_workers", "0")
    compiled = train_alignment(mc_root, tmp_path / "compiled", "--epochs", "1", "--num_workers", "0",
                               "--compile", "aot_eager")
    assert compiled["epochs"][1]["train_loss"] == pytest.approx(eager["epochs"][1]["train_loss"], rel=1e-4)
    saved = torch.load(tmp_path / "compiled" / "last.pth", map_location="cpu", weights_only=True)
    assert not any("_orig_mod" in key for key in saved["model"])
    with pytest.raises(UserError, match="unknown torch.compile backend"):
        train_alignment(mc_root, tmp_path / "bad", "--epochs", "1", "--compile", "nope")


def test_epoch_sampler_shards_cover_the_epoch():
    shards = [list(EpochSampler(10, seed=1, rank=r, world=3)) for r in range(3)]
    assert len({len(s) for s in shards}) == 1
    assert set(sum(shards, [])) == set(range(10))
    limited = EpochSampler(10, seed=1, limit=4)
    first = list(limited)
    limited.set_epoch(1)
    assert len(first) == 4 and list(limited) != first


def test_torchrun_two_processes_match_single_process_evaluation(mc_root, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           os.path.join(ROOT, "multiview_video_alignment.py"), "--data", "mc", "--data_root", mc_root,
           "--img_size", "32", "--train_views", "2", "--lr", "1e-3", "--batch_size", "8",
           "--triplets_per_epoch", "32", "--epochs", "1", "--device", "cpu", "--xpar", "--num_workers", "0",
           "--output_dir", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(out / "results.json") as f:
        results = json.load(f)
    assert [e["epoch"] for e in results["epochs"]] == [0, 1]
    assert results["epochs"][1]["steps"] == 2  # 32 triplets, 8 per step, split over 2 processes
    mva.main(["--data", "mc", "--data_root", mc_root, "--train_views", "2", "--device", "cpu", "--xpar",
              "--output_dir", str(out), "--test"])
    with open(out / "test.json") as f:
        tested = json.load(f)
    assert tested["test"] == pytest.approx(results["test"], rel=1e-5)  # sharded evaluation = whole evaluation
    for name in ("test", "test_seen_views"):  # the view pairs too, each gathered over both processes
        for sharded, whole in zip(results["view_pairs"][name], tested["view_pairs"][name], strict=True):
            assert sharded.pop("views") == whole.pop("views")
            assert sharded == pytest.approx(whole, rel=1e-5)


def test_init_from_an_imagenet_train_checkpoint(mc_root, tmp_path):
    import imagenet_train
    from threedtrl.tools import render_objects
    objects = str(tmp_path / "objects")
    render_objects.main(["--out", objects, "--preset", "tiny", "--workers", "1", "--no-progress"])
    small = ["--img-size", "32", "--model-kwargs", "patch_size=8", "depth=2", "-b", "4", "-j", "0", "--epochs", "1",
             "--warmup-epochs", "0", "--cooldown-epochs", "0", "--no-progress", "--output", str(tmp_path / "in")]
    imagenet_train.main([objects, "--model", "vit_plain_tiny_patch16_224", "--experiment", "plain", *small])
    ckpt = str(tmp_path / "in" / "plain" / "last.pth.tar")
    results = train_alignment(mc_root, tmp_path / "aligned", "--epochs", "1", "--init", ckpt, "--patch_size", "8",
                              "--depth", "2", "--trl_depth", "1", "--num_workers", "0")
    report = results["init"]
    trained = load_checkpoint_file(ckpt)["state_dict"]
    assert report["loaded"] == len(trained) - 2 and report["ignored"] == ["head.bias", "head.weight"]
    assert report["left_at_init"] and all(k.startswith("three_d_trl.") for k in report["left_at_init"])
    with pytest.raises(mva.UserError, match="holds no state dict"):
        torch.save(torch.ones(2), str(tmp_path / "tensor.pth"))
        train_alignment(mc_root, tmp_path / "misfit", "--init", str(tmp_path / "tensor.pth"))


def test_state_pretraining_learns_and_initialises_alignment(mc_root, tmp_path_factory, tmp_path):
    from threedtrl.tools import pretrain_state
    data = render_ftpv_root(tmp_path_factory, TINY_FTPV, 5, "Pandav1_Train_Frame")
    out = tmp_path / "w" / "state.pth"
    pretrain_state.main(["--data_root", data, "--train_views", "2", "--img_size", "32", "--patch_size", "8",
                         "--depth", "2", "--epochs", "8", "--batch_size", "16", "--lr", "3e-3", "--held_out", "2",
                         "--out", str(out), "--xpar"])
    history = json.loads((tmp_path / "w" / "state.pth.json").read_text())["history"]
    assert [h["epoch"] for h in history] == list(range(9))
    # it fits the state of its frames (six trajectories are too few to generalise to the held-out two)
    assert history[-1]["train_mse"] < 0.75 * history[1]["train_mse"], history
    saved = load_checkpoint_file(str(out))
    assert saved["model"] and not any(k.startswith("head.") for k in saved["model"])
    assert saved["head"]["weight"].shape == (11, saved["model"]["cls_token"].shape[-1])   # 8 arm + 3 cube values
    results = train_alignment(mc_root, tmp_path / "aligned", "--epochs", "1", "--init", str(out), "--patch_size", "8",
                              "--depth", "2", "--trl_depth", "1", "--global_pool", "avg", "--num_workers", "0")
    assert results["init"]["left_at_init"] == [] and results["init"]["ignored"] == []
    assert results["init"]["loaded"] == len(saved["model"])                   # every backbone tensor
    with pytest.raises(UserError, match="exists"):
        pretrain_state.main(["--data_root", data, "--out", str(out), "--xpar"])
    # a second stage with the multi-view n-pairs term starts exactly where the first ended (backbone and head)
    stage2 = tmp_path / "w" / "align.pth"
    pretrain_state.main(["--data_root", data, "--train_views", "2", "--img_size", "32", "--patch_size", "8",
                         "--depth", "2", "--epochs", "1", "--batch_size", "16", "--lr", "1e-3", "--held_out", "2",
                         "--init", str(out), "--align_weight", "1", "--align_frames", "4", "--out", str(stage2),
                         "--xpar"])
    second = json.loads((tmp_path / "w" / "align.pth.json").read_text())
    assert second["init"]["loaded"] == len(saved["model"]) and second["init"]["left_at_init"] == []
    assert second["history"][0]["held_out_mse"] == pytest.approx(history[-1]["held_out_mse"], rel=1e-5)
    assert second["history"][0]["held_out_alignment_error"] == history[-1]["held_out_alignment_error"]
    assert second["history"][1]["train_npairs"] > 0


@pytest.mark.parametrize("name", ["state_vit_3dtrl.pth", "align_vit_3dtrl.pth"])
def test_committed_weights_initialise_the_demo_model_completely(name):
    """The committed start points (make weights: the state stage, then the alignment stage that the demo
    starts from) fit the model of the demo's recipe, every tensor of it, and record what their stage improved."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights", name)
    saved = load_checkpoint_file(path)
    recipe = dict(model="vit_3dtrl_tiny_patch16_224", img_size=64, depth=4, trl_depth=1, global_pool="avg",
                  patch_size=16)
    assert {k: saved["model_cfg"][k] for k in recipe} == recipe
    embedder = create_embedder(dict(MODEL_DEFAULTS, **recipe, normalize_embedding=True))
    report = init_from_file(embedder.net, path)
    assert report["left_at_init"] == [] and report["ignored"] == [] and report["loaded"] == len(saved["model"])
    first, last = saved["history"][0], saved["history"][-1]
    if saved["args"].get("align_weight", 0) > 0:
        assert saved["args"]["init"] and last["held_out_alignment_error"] < 0.9 * first["held_out_alignment_error"]
    else:
        assert last["held_out_mse"] < 0.5 * first["held_out_mse"]


def test_state_pretraining_resume_reproduces_the_uninterrupted_run(tmp_path_factory, tmp_path, monkeypatch):
    from threedtrl.tools import pretrain_state
    data = render_ftpv_root(tmp_path_factory, TINY_FTPV, 5, "Pandav1_Train_Frame")
    flags = ["--data_root", data, "--train_views", "1", "--img_size", "32", "--patch_size", "8", "--depth", "2",
             "--trl_depth", "1", "--epochs", "3", "--batch_size", "32", "--held_out", "2", "--align_weight", "0.5",
             "--align_frames", "4", "--xpar"]
    pretrain_state.main(flags + ["--out", str(tmp_path / "whole.pth")])
    save = pretrain_state.save_checkpoint_atomic

    def interrupted_after_epoch_two(obj, path):
        save(obj, path)
        if obj.get("epoch") == 2:
            raise KeyboardInterrupt
    monkeypatch.setattr(pretrain_state, "save_checkpoint_atomic", interrupted_after_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        pretrain_state.main(flags + ["--out", str(tmp_path / "resumed.pth")])
    monkeypatch.setattr(pretrain_state, "save_checkpoint_atomic", save)
    pretrain_state.main(flags + ["--out", str(tmp_path / "resumed.pth"), "--resume"])
    whole, resumed = (load_checkpoint_file(str(tmp_path / f"{name}.pth")) for name in ("whole", "resumed"))
    for key, value in whole["model"].items():
        torch.testing.assert_close(resumed["model"][key], value, rtol=0, atol=0)
    def without_time(history):
        return [{k: v for k, v in h.items() if k != "seconds"} for h in history]
    assert without_time(resumed["history"]) == without_time(whole["history"])   # losses and held-out metrics


def test_random_cameras_change_the_views_not_the_episodes(tmp_path):
    from dataclasses import replace
    small = Preset("Pandav1_Train_Frame", trajectories=2, views=2, frames=4, size=32)
    truth = {}
    for name, preset in (("fixed", small), ("random", replace(small, random_cameras=True))):
        folder = render_dataset(str(tmp_path / name), preset, seed=3, workers=1, progress=False)
        truth[name] = [np.load(os.path.join(folder, f"tr_{i:04d}", "ground_truth.npz")) for i in range(2)]
    for fixed, random in zip(truth["fixed"], truth["random"]):
        np.testing.assert_array_equal(fixed["arm_state"], random["arm_state"])       # same episode
        np.testing.assert_array_equal(fixed["world_to_camera"][0], random["world_to_camera"][0])  # same hand camera
        assert not np.allclose(fixed["world_to_camera"][1:], random["world_to_camera"][1:])
    assert not np.allclose(truth["random"][0]["world_to_camera"][1:], truth["random"][1]["world_to_camera"][1:])
    np.testing.assert_array_equal(truth["fixed"][0]["world_to_camera"][1:], truth["fixed"][1]["world_to_camera"][1:])


def test_npairs_loss_against_hand_computed_values():
    # two views, two instants, unit embeddings e1, e2 in both views, temperature 1:
    # logits [[1, 0], [0, 1]]; each row's cross-entropy is log(1 + e^-1) = 0.31326
    e = torch.eye(2, dtype=torch.float64)
    z = torch.stack([e, e])[None]                                  # (1, 2 views, 2 instants, 2)
    assert npairs_loss(z, temperature=1.0).item() == pytest.approx(0.313262, abs=1e-6)
    # three identical views: every ordered pair gives the same value
    assert npairs_loss(torch.stack([e, e, e])[None], 1.0).item() == pytest.approx(0.313262, abs=1e-6)
    # swapped instants in view 2: the positive has logit 0, the negative 1 -> log(1 + e) = 1.31326
    assert npairs_loss(torch.stack([e, e.flip(0)])[None], 1.0).item() == pytest.approx(1.313262, abs=1e-6)
    # Gaussian targets, sigma 1, instants 0 and 1: target row softmax([0, -1/2]) = [0.62246, 0.37754];
    # 0.62246 * 0.31326 + 0.37754 * 1.31326 = 0.69080
    times = torch.tensor([[0, 1]])
    assert npairs_loss(z, 1.0, times, sigma=1.0).item() == pytest.approx(0.690804, abs=1e-5)


def test_clip_dataset_draws_aligned_views(mc_root):
    from data_pipeline import ClipDataset
    trajectories, _ = open_split(mc_root, "mc", "train", 2)
    data = TrajectoryDataset(trajectories, 32, progress=False)
    clips = ClipDataset(data, clip_frames=5, views_per_clip=0, seed=1)
    frames, times, views = clips[4]
    assert frames.shape == (3, 5, 3, 32, 32) and sorted(views.tolist()) == [0, 1, 2]
    assert times.tolist() == sorted(times.tolist()) and len(set(times.tolist())) == 5
    k = int(clips.index[4][0])
    assert torch.equal(frames[1, 2], data[k][int(views[1]), int(times[2])])   # same instant in every view
    before = [clips.draw(i) for i in range(10)]
    assert before == [clips.draw(i) for i in range(10)]                          # seeded
    clips.set_epoch(1)
    assert before != [clips.draw(i) for i in range(10)]                          # drawn anew each epoch


def test_comparison_starts_each_model_from_its_own_weights_and_keeps_its_settings(mc_root, tmp_path):
    from threedtrl.tools import compare_alignment
    recipe = ("--img_size 32 --patch_size 8 --depth 2 --trl_depth 1 --global_pool avg --loss npairs --views_per_clip 0 "
              "--clip_frames 4 --batch_size 2 --triplets_per_epoch 4 --epochs 1 --lr 1e-3")
    cfg = dict(MODEL_DEFAULTS, model="vit_3dtrl_tiny_patch16_224", img_size=32, patch_size=8, depth=2, trl_depth=1,
               global_pool="avg")
    start = tmp_path / "start.pth"
    torch.save({"model": create_embedder(cfg).net.state_dict()}, str(start))
    out = tmp_path / "cmp"
    argv = ["--data", "mc", "--data_root", mc_root, "--out", str(out), "--seeds", "0", "--unseen_train_views", "2",
            "--init", f"vit_3dtrl={start}", "--jobs", "2", "--train_args", recipe, "--xpar"]
    compare_alignment.main(argv)
    table = json.loads((out / "table.json").read_text())
    rows = table["table"]["unseen"]
    assert set(rows) == {"test_seen_views", "test"}
    assert set(rows["test"]) == {"vit_plain_tiny_patch16_224", "vit_3dtrl_tiny_patch16_224"}
    runs = out / "runs"
    trl = json.loads((runs / "unseen_vit_3dtrl_tiny_patch16_224_seed0" / "results.json").read_text())
    plain = json.loads((runs / "unseen_vit_plain_tiny_patch16_224_seed0" / "results.json").read_text())
    assert trl["init"]["loaded"] == len(torch.load(str(start))["model"]) and plain["init"] is None
    for model in rows["test"]:
        assert rows["test"][model]["alignment_error"]["values"][0] == json.loads(
            (runs / f"unseen_{model}_seed0" / "results.json").read_text())["test"]["alignment_error"]
    with pytest.raises(UserError, match=r"other settings \(train_args\)"):
        compare_alignment.main([a if a != recipe else recipe.replace("1e-3", "1e-4") for a in argv])
    compare_alignment.main(argv)                    # the same settings reuse the finished runs
    assert json.loads((out / "table.json").read_text())["table"] == table["table"]
    (out / "comparison.json").write_text("{not json")
    with pytest.raises(UserError, match="comparison.json is not valid JSON"):
        compare_alignment.main(argv)


# ----------------------------------------------------------------------------- the release's recipe

def test_release_defaults_batch_normalisation_and_best_epoch(mc_root, tmp_path):
    args = mva.build_parser().parse_args([])
    assert (args.batch_size, args.frame_resize, args.mean, args.pred_campos_from) == (1, "pil", None, None)
    results = train_alignment(mc_root, tmp_path / "r", "--epochs", "2", "--num_workers", "0", "--lr", "1e-9")
    # the release keeps the best trained epoch, never the untrained start (here nearly unchanged by lr 1e-9)
    assert results["best_epoch"] >= 1
    best = load_checkpoint_file(str(tmp_path / "r" / "best.pth"))
    assert best["model_cfg"]["mean"] == [0.485, 0.456, 0.406] and best["model_cfg"]["std"] == [0.229, 0.224, 0.225]
    train_alignment(mc_root, tmp_path / "s", "--epochs", "1", "--num_workers", "0", "--lr", "1e-9",
                    "--start_can_be_best", "--init", str(tmp_path / "r" / "best.pth"))
    assert load_checkpoint_file(str(tmp_path / "s" / "last.pth"))["model_cfg"]["mean"] == [0.485, 0.456, 0.406]


def test_init_keeps_the_normalisation_its_file_was_trained_with(tmp_path):
    """A start point of the project that records no mean/std was trained with the model's own (0.5)."""
    args = mva.build_parser().parse_args(["--init", os.path.join(ROOT, "weights", "align_vit_3dtrl.pth")])
    assert mva.init_normalisation(args) == (None, None)
    embedder = create_embedder(dict(MODEL_DEFAULTS, model="vit_3dtrl_tiny_patch16_224", img_size=32, mean=None))
    assert embedder.mean == (0.5, 0.5, 0.5)


def test_frames_are_resized_as_the_release_does(tmp_path):
    from PIL import Image
    from data_pipeline import read_frame
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    path = str(tmp_path / "f.jpg")
    image.save(path, quality=95)
    expected = np.asarray(Image.open(path).resize((32, 32), Image.BICUBIC)).transpose(2, 0, 1)
    np.testing.assert_array_equal(read_frame(path, 32), expected)
    assert np.abs(read_frame(path, 32, "opencv").astype(int) - expected).mean() > 1


def test_test_only_takes_a_release_state_dict_and_swin_defaults(mc_root, tmp_path):
    """The release saves bare state dicts with its 1000-class head; Swin's camera comes from its tokens."""
    import timm
    net = timm.create_model("vit_3dtrl_tiny_patch16_224", img_size=32, num_classes=1000)
    torch.save(net.state_dict(), tmp_path / "release_best.pth")
    mva.main(["--data", "mc", "--data_root", mc_root, "--img_size", "32", "--train_views", "2", "--device", "cpu",
              "--xpar", "--output_dir", str(tmp_path / "t"), "--test", str(tmp_path / "release_best.pth")])
    assert json.loads((tmp_path / "t" / "test.json").read_text())["test"]["alignment_error"] >= 0
    swin = create_embedder(dict(MODEL_DEFAULTS, model="swin_3dtrl_tiny_patch4_window7_224", img_size=224,
                                pred_campos_from=None))
    assert swin.net.three_d_trl.estimator.camera_props.mode == "tok"


def test_a_new_lr_is_applied_on_resume(mc_root, tmp_path, capsys):
    train_alignment(mc_root, tmp_path / "r", "--epochs", "1", "--num_workers", "0")
    train_alignment(mc_root, tmp_path / "r", "--epochs", "2", "--num_workers", "0", "--resume", "--lr", "1e-4")
    assert "--lr 0.0001 applied to the resumed run (its checkpoint ran with 0.001)" in capsys.readouterr().out
    last = load_checkpoint_file(str(tmp_path / "r" / "last.pth"))
    assert {group["lr"] for group in last["optimizer"]["param_groups"]} == {1e-4}


def test_freeze_groups_trains_only_the_later_groups(mc_root, tmp_path):
    """--freeze_groups N: the stem and the first blocks (3DTRL with the block it feeds) keep the start
    weights, the rest trains; a resume with another N and an N past the last block are refused."""
    cfg = dict(MODEL_DEFAULTS, model="vit_3dtrl_tiny_patch16_224", img_size=32, patch_size=8, depth=3, trl_depth=1)
    net = create_embedder(cfg).net
    assert freeze_first_groups(net, 2) == 4 + 12                               # the stem, block 0
    assert all(p.requires_grad for n, p in net.named_parameters() if n.startswith(("three_d_trl", "blocks.1")))
    assert freeze_first_groups(net, 3) > 16 and not any(p.requires_grad for p in net.three_d_trl.parameters())
    with pytest.raises(UserError, match="--freeze_groups 4: ViT_3DTRL has 4 parameter groups"):  # stem, 3 blocks
        freeze_first_groups(create_embedder(cfg).net, 4)

    start = create_embedder(cfg).net.state_dict()
    torch.save({"model": start}, str(tmp_path / "start.pth"))
    flags = ["--num_workers", "0", "--patch_size", "8", "--depth", "3", "--trl_depth", "1", "--init",
             str(tmp_path / "start.pth"), "--freeze_groups", "2"]
    train_alignment(mc_root, tmp_path / "r", "--epochs", "1", *flags)
    trained = load_checkpoint_file(str(tmp_path / "r" / "last.pth"))["model"]
    frozen = [n for n in start if n.startswith(("cls_token", "pos_embed", "patch_embed", "blocks.0."))]
    assert frozen and all(torch.equal(trained[n], start[n]) for n in frozen)
    assert not torch.equal(trained["blocks.1.attn.qkv.weight"], start["blocks.1.attn.qkv.weight"])
    with pytest.raises(UserError, match="was trained with --freeze_groups 2, not 1"):
        train_alignment(mc_root, tmp_path / "r", "--epochs", "2", *flags[:-1], "1", "--resume")


def test_sigterm_stops_like_ctrl_c_and_the_resume_is_identical(mc_root, tmp_path):
    """What a cluster scheduler sends: one line, exit 143, the last checkpoint intact, and the resumed
    run gives the numbers of the uninterrupted one."""
    import signal
    import time
    args = ["--data", "mc", "--data_root", mc_root, "--img_size", "32", "--train_views", "2", "--lr", "1e-3",
            "--batch_size", "8", "--triplets_per_epoch", "16", "--device", "cpu", "--xpar", "--num_workers", "0",
            "--epochs", "4"]
    straight = train_alignment(mc_root, tmp_path / "straight", "--epochs", "4", "--num_workers", "0")
    out = tmp_path / "stopped"
    proc = subprocess.Popen([sys.executable, "multiview_video_alignment.py", *args, "--output_dir", str(out)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        last = out / "last.pth"
        if last.is_file() and load_checkpoint_file(str(last))["state"]["epoch"] >= 1:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1].startswith("error: terminated (SIGTERM)") and "Traceback" not in stderr
    resumed = train_alignment(mc_root, out, "--epochs", "4", "--num_workers", "0", "--resume")
    assert resumed["test"] == pytest.approx(straight["test"], rel=1e-5)
    assert [e["epoch"] for e in resumed["epochs"]] == [0, 1, 2, 3, 4]


def test_centring_in_time_removes_what_a_camera_adds_to_every_frame():
    """Two views share a time signal, each adds a large offset of its own: nearest frames are wrong
    without centring and exact with it (the evaluation's metric)."""
    from threedtrl.alignment.embedder import Embedder, center_in_time
    from threedtrl.alignment.evaluation import pair_metrics

    t = torch.linspace(0.0, 1.0, 12)
    signal = torch.stack([torch.cos(3 * t), torch.sin(3 * t), torch.zeros_like(t)], dim=-1)   # (T, 3)
    offsets = torch.tensor([[0.0, 0.0, 4.0], [3.0, -2.0, 0.0]])[:, None]                      # (V, 1, 3)
    z = signal[None] + offsets                                                                 # (V, T, 3)
    centred = center_in_time(z, unit=False)
    assert torch.allclose(centred.mean(dim=1), torch.zeros(2, 3), atol=1e-6)
    assert torch.allclose(center_in_time(z, unit=True).norm(dim=-1), torch.ones(2, 12))
    assert pair_metrics(z)[0][0] > 0.05 and pair_metrics(centred)[0][0] == 0.0
    plain = Embedder(torch.nn.Identity(), (0, 0, 0), (1, 1, 1))
    assert torch.equal(plain.video_embeddings(z), z)
    assert torch.equal(Embedder(torch.nn.Identity(), (0, 0, 0), (1, 1, 1), center=True).video_embeddings(z), centred)


def test_centring_in_time_needs_the_npairs_loss(mc_root, tmp_path):
    with pytest.raises(UserError, match="--center_in_time works on the clips of the n-pairs loss"):
        mva.main(["--data", "mc", "--data_root", mc_root, "--center_in_time", "--loss", "triplet",
                  "--output_dir", str(tmp_path / "o")])


def test_an_unknown_model_is_refused_before_the_data_is_read(tmp_path):
    with pytest.raises(UserError, match="unknown model 'vit_nope'"):  # the data root does not exist either
        mva.main(["--data_root", str(tmp_path / "missing"), "--model", "vit_nope", "--output_dir", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


def test_the_script_loads_without_the_plotting_and_statistics_libraries():
    # matplotlib and scipy cost over a second to import; a refused command must not wait for them
    code = ("import sys, multiview_video_alignment\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', 'scipy'}))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def _demo_command(*make_vars):
    """The alignment command ``make demo`` would run with these variables, parsed by the script's own parser."""
    proc = subprocess.run(["make", "-n", "-s", "demo", *make_vars, "VENV=.venv"], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    lines = proc.stdout.replace("\\\n", " ").splitlines()
    command = next(line for line in lines if "multiview_video_alignment.py" in line).split()
    return mva.build_parser().parse_args(command[command.index("multiview_video_alignment.py") + 1:])


def test_demo_args_override_the_recipe_and_the_command():
    """``DEMO_ARGS`` comes last, so a flag given there wins over the recipe's (``--triplets_per_epoch``) and the
    command's own (``--device``); without it the held-out recipe is the one documented."""
    plain = _demo_command("FTPV_ROOT=data/mine")
    assert (plain.data_root, plain.triplets_per_epoch, plain.lr, plain.center_in_time, plain.device) == \
        ("data/mine", 32, 1e-3, True, "cpu")
    assert plain.init == "weights/transfer_vit_3dtrl.safetensors"
    more = _demo_command("FTPV_ROOT=data/mine", "DEMO_ARGS=--triplets_per_epoch 96 --device cuda")
    assert (more.triplets_per_epoch, more.device, more.lr) == (96, "cuda", 1e-3)
