"""The alignment experiments' drivers: the transfer start points and fine-tuning a held-out family,
view augmentation, the held-out comparison, and the geometry objectives and their comparison."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

import multiview_video_alignment as mva
from threedtrl.alignment.embedder import MODEL_DEFAULTS, create_embedder, init_from_file
from conftest import TINY_FTPV, render_ftpv_root, train_alignment
from data_pipeline import TrajectoryDataset, open_split
from data_pipeline.render_ftpv import Preset, render_dataset
from threedtrl.runtime import UserError, load_checkpoint_file, seed_everything

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("model", ["vit_3dtrl_tiny_patch16_224", "vit_plain_tiny_patch16_224"])
def test_transfer_start_points_initialise_every_tensor(model):
    """weights/transfer_*.safetensors (make transfer-weights) fit the recipe's model completely and
    record a pretraining that lowered its held-out alignment error."""
    short = "vit_3dtrl" if "3dtrl" in model else "deit_tcn"
    path = os.path.join(ROOT, "weights", f"transfer_{short}.safetensors")
    saved = load_checkpoint_file(path)
    assert saved["model_cfg"]["model"] == model
    embedder = create_embedder(dict(MODEL_DEFAULTS, **saved["model_cfg"]))
    report = init_from_file(embedder.net, path)
    assert report["left_at_init"] == [] and report["ignored"] == [] and report["loaded"] == len(saved["model"])
    history = saved["history"]
    assert history[-1]["held_out_alignment_error"] < history[0]["held_out_alignment_error"]


def test_fine_tuning_from_the_transfer_start_point_learns_a_held_out_family(tmp_path_factory, tmp_path):
    """The recipe of `make demo FTPV_ROOT=DIR` on a tiny render of a family no start point saw: the
    validation alignment error of the last epoch is below that of the start point."""
    preset = Preset("Pandav1_Train_Frame", trajectories=20, views=4, frames=12, size=64, family="kuka")
    root = str(tmp_path_factory.mktemp("heldout"))
    render_dataset(root, preset, seed=7, workers=1, progress=False)
    out = tmp_path / "run"
    mva.main(["--data", "panda", "--data_root", root, "--train_views", "3", "--img_size", "64", "--loss", "npairs",
              "--depth", "4", "--trl_depth", "1", "--global_pool", "avg", "--views_per_clip", "0", "--clip_frames", "8",
              "--batch_size", "2", "--triplets_per_epoch", "16", "--epochs", "3", "--lr", "1e-3", "--center_in_time",
              "--init", os.path.join(ROOT, "weights", "transfer_vit_3dtrl.safetensors"), "--seed", "0",
              "--num_workers", "0", "--device", "cpu", "--xpar", "--output_dir", str(out)])
    with open(out / "results.json") as f:
        epochs = json.load(f)["epochs"]
    assert epochs[-1]["val"]["alignment_error"] < epochs[0]["val"]["alignment_error"] - 0.02, epochs


def test_view_augmentation_is_one_change_per_view_and_reproducible(mc_root):
    from data_pipeline import ClipDataset
    from data_pipeline.datasets import augment_view

    frame = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    frames = frame.repeat(3, 1, 1, 1)
    out = augment_view(frames, np.random.default_rng(5))
    assert out.shape == frames.shape and out.dtype == torch.uint8
    assert torch.equal(out[0], out[2]) and not torch.equal(out[0], frames[0])  # one warp for the clip's frames
    assert torch.equal(out, augment_view(frames, np.random.default_rng(5)))
    trajectories, _ = open_split(mc_root, "mc", "train", train_views=2)
    data = TrajectoryDataset(trajectories, 32, progress=False)
    plain, augmented = ClipDataset(data, 4, 0, seed=1), ClipDataset(data, 4, 0, seed=1, augment=True)
    (a, _, _), (b, _, _) = plain[0], augmented[0]
    assert a.shape == b.shape and not torch.equal(a, b)
    assert torch.equal(b, augmented[0][0])
    # --augment_distortion scales the same draws: every corner moves further, so the frames change more
    stronger = ClipDataset(data, 4, 0, seed=1, augment=True, distortion=0.8)[0][0]
    assert (stronger.float() - a.float()).abs().mean() > (b.float() - a.float()).abs().mean()
    parser = mva.build_parser()
    for extra, message in ((["--augment_distortion", "0.5"], "give both"),
                           (["--augment_views", "--augment_distortion", "1"], r"must be in \(0, 1\)")):
        argv = ["--data", "mc", "--data_root", str(mc_root), "--loss", "npairs", *extra]
        with pytest.raises(UserError, match=message):
            mva.check_args(parser.parse_args(argv), argv)


def test_heldout_comparison_reports_start_fine_tuned_and_scratch_per_family(tmp_path_factory, tmp_path):
    from threedtrl.tools import compare_heldout

    recipe = ("--img_size 32 --patch_size 8 --depth 2 --trl_depth 1 --global_pool avg --loss npairs --views_per_clip 0 "
              "--clip_frames 4 --batch_size 2 --triplets_per_epoch 4 --epochs 1 --lr 1e-3 --center_in_time")
    preset = Preset("Pandav1_Train_Frame", trajectories=20, views=3, frames=4, size=32)
    roots = []
    for family in ("rolling", "stacking"):
        out = tmp_path_factory.mktemp("cmp_roots") / family
        render_dataset(str(out), Preset(**{**preset.__dict__, "family": family}), seed=1, workers=1, progress=False)
        roots.append(str(out))
    inits = []
    for short, name in (("vit_3dtrl", "vit_3dtrl_tiny_patch16_224"), ("deit_tcn", "vit_plain_tiny_patch16_224")):
        cfg = dict(MODEL_DEFAULTS, model=name, img_size=32, patch_size=8, depth=2, trl_depth=1, global_pool="avg")
        torch.save({"model": create_embedder(cfg).net.state_dict()}, str(tmp_path / f"{short}.pth"))
        inits += ["--init", f"{short}={tmp_path / f'{short}.pth'}"]
    compare_heldout.main(["--roots", *roots, *inits, "--seeds", "0", "--scratch_seeds", "0", "--out",
                          str(tmp_path / "cmp"), "--train_args", recipe, "--scratch_args", recipe, "--unseen_train_views",
                          "2"])
    table = json.loads((tmp_path / "cmp" / "table.json").read_text())
    assert set(table["families"]) == {"rolling", "stacking"}
    row = table["families"]["rolling"]["vit_3dtrl"]
    assert len(row["finetuned"]["alignment_error"]["values"]) == 1 and len(row["scratch"]["alignment_error"]["values"]) == 1
    assert row["start"]["alignment_error"]["values"] != row["finetuned"]["alignment_error"]["values"]
    pooled = table["pooled"]["alignment_error"]
    assert len(pooled["differences"]) == 2                                   # (family, seed) pairs
    assert "| stacking | deit_tcn |" in (tmp_path / "cmp" / "table.md").read_text()


def test_geometry_objectives_train_and_the_oracle_learns_its_targets(mc_root, tmp_path):
    flags = ["--loss", "npairs", "--clip_frames", "4", "--views_per_clip", "0", "--depth", "2", "--trl_depth", "1",
             "--num_workers", "0",
             "--geometry_loss", "consistency", "reprojection", "equivariance", "oracle"]
    result = train_alignment(mc_root, tmp_path / "geometry", "--epochs", "4", *flags)
    names = ("consistency", "reprojection", "equivariance", "oracle")
    terms = [[e[f"{name}_loss"] for e in result["epochs"][1:]] for name in names]
    assert all(len(t) == 4 and all(np.isfinite(t)) for t in terms)
    assert terms[3][-1] < terms[3][0], terms[3]  # the oracle's depth and rotation targets are being learned
    with pytest.raises(UserError, match="need a 3DTRL model"):
        train_alignment(mc_root, tmp_path / "plain", "--model", "deit_tcn", "--epochs", "1", *flags)


def test_state_pretraining_with_geometry_objectives_records_the_layer_options(tmp_path_factory, tmp_path):
    """``tools/pretrain_state.py --geometry_loss``: the oracle's term falls on the clips of every view, and
    the layer's options travel in the output's model_cfg to whatever loads it."""
    from threedtrl.tools import pretrain_state
    data = render_ftpv_root(tmp_path_factory, TINY_FTPV, 5, "Pandav1_Train_Frame")
    out = tmp_path / "w" / "geometry.pth"
    pretrain_state.main(["--data_root", data, "--train_views", "2", "--img_size", "32", "--patch_size", "8",
                         "--depth", "2", "--epochs", "4", "--batch_size", "16", "--lr", "3e-3", "--held_out", "2",
                         "--align_weight", "1", "--align_frames", "4", "--geometry_loss", "oracle", "consistency", "reprojection",
                         "--depth_activation", "softplus", "--focal", "2", "--out", str(out), "--xpar"])
    history = json.loads((tmp_path / "w" / "geometry.pth.json").read_text())["history"]
    oracle = [h["train_oracle"] for h in history[1:]]
    assert oracle[-1] < oracle[0], oracle
    assert all(np.isfinite(h["train_consistency"]) and np.isfinite(h["train_reprojection"]) and h["train_npairs"] > 0
               for h in history[1:])
    saved = load_checkpoint_file(str(out))
    assert saved["model_cfg"]["trl_geometry"] == {"depth_activation": "softplus", "focal": 2.0}
    embedder = create_embedder(dict(MODEL_DEFAULTS, **saved["model_cfg"]))
    embedder.net.load_state_dict(saved["model"])
    _, _, geometry = embedder(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), with_geometry=True)
    assert (geometry.depth > 0).all()                                       # softplus, as trained
    with pytest.raises(UserError, match="need a 3DTRL model"):
        pretrain_state.main(["--data_root", data, "--model", "deit_tcn", "--geometry_loss", "oracle",
                             "--out", str(tmp_path / "plain.pth"), "--xpar"])


def test_geometry_comparison_gives_each_option_its_start_point(tmp_path_factory, tmp_path):
    from threedtrl.tools import compare_geometry
    root = render_ftpv_root(tmp_path_factory, Preset("Pandav1_Train_Frame", trajectories=20, views=3, frames=4,
                                                      size=32), 2, "Pandav1_Train_Frame")
    cfg = dict(MODEL_DEFAULTS, model="vit_3dtrl_tiny_patch16_224", img_size=32, patch_size=8, depth=2, trl_depth=1,
               global_pool="avg")
    starts = []
    for seed in (0, 1):
        seed_everything(seed)
        starts.append(str(tmp_path / f"start{seed}.pth"))
        torch.save({"model": create_embedder(cfg).net.state_dict(), "model_cfg": cfg}, starts[-1])
    recipe = ("--img_size 32 --patch_size 8 --depth 2 --trl_depth 1 --global_pool avg --loss npairs "
              "--views_per_clip 0 --clip_frames 4 --batch_size 2 --triplets_per_epoch 4 --epochs 1 --lr 1e-3")
    argv = ["--data_root", root, "--init", starts[0], "--option", "release=", "--option",
            "oracle=--geometry_loss oracle", "--seeds", "0", "--train_args", recipe, "--unseen_train_views", "2",
            "--out", str(tmp_path / "cmp")]
    with pytest.raises(UserError, match="--option_init takes NAME=FILE"):
        compare_geometry.main(argv + ["--option_init", f"other={starts[1]}"])
    compare_geometry.main(argv + ["--option_init", f"oracle={starts[1]}"])
    table = json.loads((tmp_path / "cmp" / "table.json").read_text())
    assert table["settings"]["inits"] == {"release": starts[0], "oracle": starts[1]}
    release, oracle = table["options"]["release"], table["options"]["oracle"]
    assert release["start"]["depth_spearman"] != oracle["start"]["depth_spearman"]   # two start points measured
    text = (tmp_path / "cmp" / "table.md").read_text()
    assert "paired" in oracle and "| oracle: start point |" in text
    assert "reprojection_error" in oracle["start"] and "reprojection error of the true geometry" in text


def test_view_pairs_groups_every_pair_and_recovers_the_unseen_view_metric(mc_root, tmp_path):
    """tools/view_pairs.py on a start point (a safetensors file, as --test takes it): the mean of its fpv and
    unseen-camera pairs is the unseen setting's test metric of multiview_video_alignment.py --test."""
    from threedtrl.tools import view_pairs

    start = os.path.join(ROOT, "weights", "transfer_vit_3dtrl.safetensors")
    mva.main(["--data", "mc", "--data_root", mc_root, "--train_views", "1", "--test", start, "--device", "cpu",
              "--xpar", "--output_dir", str(tmp_path / "unseen")])
    with open(tmp_path / "unseen" / "test.json") as f:
        unseen = json.load(f)
    assert unseen["views"]["test"] == ["fpv", "view_1", "view_2"] and unseen["epoch"] is None

    view_pairs.main(["--data", "mc", "--data_root", mc_root, "--train_views", "1", "--out", str(tmp_path / "pairs"),
                     start, start])
    with open(tmp_path / "pairs" / "view_pairs.json") as f:
        table = json.load(f)
    groups = table["groups"]
    assert set(groups) == {"fpv-training", "fpv-unseen", "training-unseen", "unseen-unseen", "unseen-view metric"}
    for metric in ("alignment_error", "kendalls_tau"):
        assert groups["unseen-view metric"][metric]["mean"] == pytest.approx(unseen["test"][metric])
        assert groups["unseen-view metric"][metric]["std"] == 0.0  # the same file twice
    assert list(table["views"]) == ["fpv", "view_0", "view_1", "view_2"]
    with pytest.raises(UserError, match="no checkpoint file"):
        view_pairs.main(["--data_root", mc_root, "--train_views", "1", "--out", str(tmp_path / "x"),
                         str(tmp_path / "missing.pth")])


def _heldout_table(path, train_args, seeds, errors, family="quadruped"):
    """A table.json as tools/compare_heldout.py writes it (the entries data_size_table.py reads)."""
    def entry(values):
        return {"values": values, "mean": float(np.mean(values))}
    families = {family: {model: {"start": {"alignment_error": entry([0.33]), "kendalls_tau": entry([-0.3])},
                                 "finetuned": {"alignment_error": entry(errors[model]),
                                               "kendalls_tau": entry([-e for e in errors[model]])}}
                         for model in ("deit_tcn", "vit_3dtrl")}}
    path.write_text(json.dumps({"settings": {"train_args": train_args, "seeds": seeds,
                                             "inits": ["vit_3dtrl=a", "deit_tcn=b"]}, "families": families}))
    return str(path)


def test_data_size_table_pairs_the_seeds_of_each_size_and_checks_the_recipe(tmp_path):
    from threedtrl.tools import data_size_table
    recipe = "--lr 1e-3 --center_in_time"
    small = recipe + " --train_videos 2 --train_videos_everywhere"
    two = _heldout_table(tmp_path / "n2.json", small, [0, 1, 2],
                         {"deit_tcn": [0.30, 0.31, 0.32], "vit_3dtrl": [0.29, 0.31, 0.30]})
    stacking_two = _heldout_table(tmp_path / "s2.json", small, [0, 1],
                                  {"deit_tcn": [0.1, 0.2], "vit_3dtrl": [0.1, 0.1]}, family="stacking")
    # the full recipe had seeds 0-4: only the seeds every table of a family has are paired
    ten = _heldout_table(tmp_path / "n10.json", recipe, [0, 1, 2, 3, 4],
                         {"deit_tcn": [0.28, 0.29, 0.27, 0.5, 0.5], "vit_3dtrl": [0.22, 0.24, 0.23, 0.1, 0.1]})
    stacking_ten = _heldout_table(tmp_path / "s10.json", recipe, [0, 1, 2],
                                  {"deit_tcn": [0.1, 0.1, 0.1], "vit_3dtrl": [0.05, 0.1, 0.1]}, family="stacking")
    out = tmp_path / "sizes.json"
    data_size_table.main(["--table", f"10={ten}", "--table", f"2={two}", "--table", f"2={stacking_two}",
                          "--table", f"10={stacking_ten}", "--out", str(out)])
    result = json.loads(out.read_text())
    quadruped, stacking = result["families"]["quadruped"], result["families"]["stacking"]
    assert quadruped["seeds"] == [0, 1, 2] and stacking["seeds"] == [0, 1]
    assert list(quadruped["sizes"]) == ["2", "10"]
    ten_ae = quadruped["sizes"]["10"]["alignment_error"]
    assert ten_ae["vit_3dtrl"]["values"] == [0.22, 0.24, 0.23]
    assert ten_ae["paired"]["differences"] == pytest.approx([-0.06, -0.05, -0.04])
    assert 0.01 < ten_ae["paired"]["p_value"] < 0.02  # t = -8.7 with 2 degrees of freedom
    assert quadruped["sizes"]["10"]["kendalls_tau"]["vit_3dtrl"]["mean"] == pytest.approx(-0.23)
    assert stacking["sizes"]["10"]["alignment_error"]["vit_3dtrl"]["values"] == [0.05, 0.1]
    text = (tmp_path / "sizes.md").read_text()
    assert "| quadruped | 2 | 0.310 ± 0.010 | 0.300 ± 0.010 | 0.23 |" in text and "| stacking | 10 |" in text
    chart = np.asarray(Image.open(tmp_path / "sizes.png"))
    for panel in (chart[:, :340], chart[:, 340:]):  # one per family, each with both models' lines
        colours = {tuple(c) for c in panel.reshape(-1, 3)}
        assert {(31, 119, 180), (255, 127, 14)} <= colours  # matplotlib's first two tab10 colours

    other = _heldout_table(tmp_path / "other.json", "--lr 1e-4 --center_in_time", [0],
                           {"deit_tcn": [0.3], "vit_3dtrl": [0.3]})
    (tmp_path / "empty.json").write_text(json.dumps({"settings": {}, "families": {}}))
    for tables, message in (([f"10={ten}", f"2={other}"], "another recipe"),
                            ([f"2={tmp_path / 'empty.json'}"], "is not a table.json of tools/compare_heldout.py"),
                            ([f"5={two}"], "run with --train_videos 2, not 5"),
                            ([f"2={two}", f"2={two}"], "two tables for 2 training videos hold quadruped"),
                            ([f"2={stacking_two}", f"10={ten}"], "no family is in a table of every size"),
                            ([f"two={two}"], "--table takes N=FILE"),
                            ([f"2={tmp_path / 'missing.json'}"], "no table file")):
        with pytest.raises(UserError, match=message):
            data_size_table.main([arg for table in tables for arg in ("--table", table)] + ["--out", str(out)])


def _alignment_table(path, seeds, errors, seconds=100.0):
    """A table.json as tools/compare_alignment.py writes it in the unseen setting (what compare_arms.py reads);
    ``errors[model]``: the unseen-view alignment errors per seed, the training views' are 0.1 lower."""
    def row(model, shift):
        values = [e - shift for e in errors[model]]
        return {"alignment_error": {"values": values}, "kendalls_tau": {"values": [1 - 2 * v for v in values]},
                "seconds": [seconds] * len(seeds)}
    models = ("vit_plain_tiny_patch16_224", "vit_3dtrl_tiny_patch16_224")
    table = {"unseen": {"test": {m: row(m, 0.0) for m in models}, "test_seen_views": {m: row(m, 0.1) for m in models}}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"settings": {"seeds": seeds, "train_args": f"--lr 1e-3 --seconds {seconds}"},
                                "table": table}))


def test_compare_arms_pairs_each_seed_of_the_two_arms(tmp_path):
    from threedtrl.tools import compare_arms
    plain, trl = "vit_plain_tiny_patch16_224", "vit_3dtrl_tiny_patch16_224"
    # the long arm's table lists its seeds in another order and holds one more: pairing goes by seed
    _alignment_table(tmp_path / "short" / "quadruped" / "table.json", [0, 1, 2],
                     {plain: [0.30, 0.32, 0.31], trl: [0.25, 0.27, 0.26]})
    _alignment_table(tmp_path / "long" / "quadruped" / "table.json", [2, 0, 1, 3],
                     {plain: [0.28, 0.26, 0.29, 0.9], trl: [0.20, 0.22, 0.24, 0.9]}, seconds=300.0)
    out = tmp_path / "arms.json"
    compare_arms.main(["--arm", f"short={tmp_path}/short/{{family}}/table.json", "--arm",
                       f"long={tmp_path}/long/{{family}}/table.json", "--families", "quadruped", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["settings"]["seeds"] == [0, 1, 2] and result["settings"]["baseline"] == "short"
    vit = result["families"]["quadruped"][""]["deit_tcn"]["unseen"]["alignment_error"]
    assert vit["long"]["values"] == [0.26, 0.29, 0.28]
    assert vit["paired"]["differences"] == pytest.approx([-0.04, -0.03, -0.03])
    assert 0.005 < vit["paired"]["p_value"] < 0.05  # t = -11.3 with 2 degrees of freedom
    training = result["families"]["quadruped"][""]["vit_3dtrl"]["training"]
    assert training["alignment_error"]["short"]["values"] == pytest.approx([0.15, 0.17, 0.16])
    assert training["seconds"] == {"short": [100.0] * 3, "long": [300.0] * 3}
    versus = result["families"]["quadruped"][""]["3dtrl_vs_vit"]["unseen"]["alignment_error"]
    assert versus["short"]["differences"] == pytest.approx([-0.05] * 3) and versus["short"]["p_value"] == 1.0
    assert "| quadruped |  | ViT | unseen | 0.310 ± 0.010 | 0.277 ± 0.015 |" in (tmp_path / "arms.md").read_text()
    arms = ["--arm", f"short={tmp_path}/short/{{family}}/table.json", "--arm", f"long={tmp_path}/long/{{family}}/table.json"]
    for extra, message in ((["--families", "stacking"], "no table file"),
                           (["--families", "quadruped", "--seeds", "0", "3"], r"holds no run of seed\(s\) \[3\]"),
                           (["--families", "quadruped", "--arm", "x=y"], "give two --arm")):
        with pytest.raises(UserError, match=message):
            compare_arms.main(arms + extra + ["--out", str(tmp_path / "bad.json")])
    with pytest.raises(UserError, match=r"only \{family\} and \{group\}"):
        compare_arms.main(["--arm", "a={family}/{seed}", "--arm", "b={family}", "--families", "q",
                           "--out", str(tmp_path / "bad.json")])
    (tmp_path / "short" / "quadruped" / "table.json").write_text(json.dumps({"settings": {}, "table": {}}))
    with pytest.raises(UserError, match="is not a table.json of tools/compare_alignment.py"):
        compare_arms.main(arms + ["--families", "quadruped", "--out", str(tmp_path / "bad.json")])
    assert not (tmp_path / "bad.json").exists()


def test_seed_statistics_pair_the_seeds_and_print_small_p_values_as_a_bound():
    from threedtrl.tools.seed_stats import format_p, paired, summarise
    assert summarise([0.2, 0.4])["std"] == pytest.approx(0.1414, abs=1e-4) and summarise([0.3])["std"] == 0.0
    same_shift = paired([0.30, 0.31, 0.29, 0.35], [0.20, 0.21, 0.19, 0.25])
    assert same_shift["mean_difference"] == pytest.approx(-0.1) and same_shift["p_value"] == 1.0  # no spread
    shifted = paired([0.30, 0.31, 0.29, 0.35], [0.20, 0.22, 0.19, 0.24])
    assert shifted["p_value"] < 0.005 and format_p(shifted["p_value"]) == "< 0.01"
    assert format_p(0.0049) == "< 0.01" and format_p(0.05) == "0.05" and format_p(0.714) == "0.71"
