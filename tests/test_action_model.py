"""TimeSformer (+3DTRL) for action recognition: config, model, weight loading, checkpoints."""
import os

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer as TimmViT


from model import ThreeDTRL
from threedtrl.timesformer import checkpoint as cu
from threedtrl.timesformer.config import get_defaults, load_config, model_depth
from threedtrl.timesformer.model import TimeSformer, build_model
from threedtrl.timesformer.optim import get_epoch_lr
from threedtrl.timesformer.weights import load_pretrained
from threedtrl.runtime import UserError

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "action_recognition", "configs")
TINY = dict(img_size=32, patch_size=8, num_classes=5, embed_dim=48, depth=3, num_heads=3, num_frames=4)


def tiny_model(**kwargs) -> TimeSformer:
    torch.manual_seed(0)
    return TimeSformer(**dict(TINY, **kwargs))


# ----------------------------------------------------------------------------- config

def test_config_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("SOLVER:\n  BASE_LR: 0.01\nTRL:\n  LOC: 3\nDATA:\n  NUM_FRAMES: 4\n")
    cfg = load_config(str(path), ["SOLVER.BASE_LR", "0.5", "DATA.TRAIN_JITTER_SCALES", "[224, 256]", "TRL.ENABLE", "False"])
    assert cfg.SOLVER.BASE_LR == 0.5 and cfg.TRL.LOC == 3 and cfg.DATA.NUM_FRAMES == 4
    assert cfg.DATA.TRAIN_JITTER_SCALES == [224, 256] and cfg.TRL.ENABLE is False
    assert cfg.SOLVER.MOMENTUM == get_defaults().SOLVER.MOMENTUM
    assert model_depth(cfg) == 12
    assert model_depth(load_config(None, [])) == 16          # the release's 3DTRL TimeSformer


@pytest.mark.parametrize("where", ["yaml", "override"])
def test_unknown_config_key_is_an_error(tmp_path, where):
    path = tmp_path / "c.yaml"
    path.write_text("SOLVER:\n  BASE_LRR: 0.01\n" if where == "yaml" else "SOLVER:\n  BASE_LR: 0.01\n")
    with pytest.raises(UserError, match="unknown config key: SOLVER.BASE_LRR"):
        load_config(str(path), ["SOLVER.BASE_LRR", "1"] if where == "override" else [])


def test_bad_config_values_are_errors():
    with pytest.raises(UserError, match="ATTENTION_TYPE"):
        load_config(None, ["TIMESFORMER.ATTENTION_TYPE", "divided"])
    with pytest.raises(UserError, match="TRL.LOC"):
        load_config(None, ["TIMESFORMER.DEPTH", "4", "TRL.LOC", "4"])


def test_all_shipped_configs_load():
    names = sorted(n for n in os.listdir(CONFIGS) if n.endswith(".yaml"))
    assert "TimeSformer_3DTRL_demo_cpu.yaml" in names and len(names) >= 12
    for name in names:
        cfg = load_config(os.path.join(CONFIGS, name), [])
        # the project's names say whether 3DTRL is on; the release's (TimeSformer_ST_*, *_pretrained, ...)
        # always build it, as the release's model did
        project_name = name.startswith(("TimeSformer_3DTRL_", "TimeSformer_NTU", "TimeSformer_Smarthome",
                                        "TimeSformer_demo")) or name in (
            "TimeSformer_divST_8x32_224.yaml", "TimeSformer_jointST_8x32_224.yaml",
            "TimeSformer_spaceOnly_8x32_224.yaml")
        assert cfg.TRL.ENABLE == ("3DTRL" in name or not project_name), name


def test_lr_policies():
    cfg = load_config(None, ["SOLVER.LR_POLICY", "steps_with_relative_lrs", "SOLVER.BASE_LR", "1.0", "SOLVER.STEPS",
                             "[0, 11, 14]", "SOLVER.LRS", "[1, 0.1, 0.01]"])
    assert [get_epoch_lr(cfg, e) for e in (0, 10.9, 11, 14.5)] == pytest.approx([1, 1, 0.1, 0.01])
    cfg = load_config(None, ["SOLVER.LR_POLICY", "cosine", "SOLVER.BASE_LR", "1.0", "SOLVER.MAX_EPOCH", "10",
                             "SOLVER.WARMUP_EPOCHS", "2", "SOLVER.WARMUP_START_LR", "0.0"])
    assert get_epoch_lr(cfg, 0) == 0.0 and get_epoch_lr(cfg, 5) == pytest.approx(0.5)
    assert get_epoch_lr(cfg, 1) == pytest.approx(0.5 * get_epoch_lr(cfg, 2))


# ----------------------------------------------------------------------------- model

@pytest.mark.parametrize("attention", ["divided_space_time", "joint_space_time", "space_only"])
@pytest.mark.parametrize("trl_loc", [None, 1])
def test_forward_backward_every_attention_and_frame_count(attention, trl_loc):
    net = tiny_model(attention_type=attention, trl_loc=trl_loc)
    assert hasattr(net.model, "three_d_trl") == (trl_loc is not None)
    for frames in (1, 4, 8):
        logits = net(torch.randn(2, 3, frames, 32, 32))
        assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert net.model.patch_embed.proj.weight.grad.abs().sum() > 0
    if trl_loc is not None:
        assert net.model.three_d_trl.pos_emb_world[0].weight.grad.abs().sum() > 0


def test_layout_and_initialisation_follow_timesformer():
    net = tiny_model(trl_loc=1)
    keys = net.state_dict().keys()
    assert net.model.pos_embed.shape == (1, 1 + 16, 48) and net.model.time_embed.shape == (1, 4, 48)
    for name in ("model.blocks.2.temporal_norm1.weight", "model.blocks.2.temporal_attn.qkv.weight",
                 "model.blocks.2.temporal_fc.bias", "model.three_d_trl.estimator.camera_props.rot.weight"):
        assert name in keys
    assert net.model.blocks[0].temporal_fc.weight.abs().sum() > 0
    assert all(b.temporal_fc.weight.abs().sum() == 0 and b.temporal_fc.bias.abs().sum() == 0
               for b in net.model.blocks[1:])
    assert isinstance(net.model.three_d_trl, ThreeDTRL)                # the shared layer, not a copy


def test_3dtrl_gets_the_models_initialisation_as_in_the_release():
    """The release builds the layer before ``self.apply(self._init_weights)``: truncated normal 0.02 on
    every Linear (bias 0), the rotation and translation heads included."""
    layer = tiny_model(trl_loc=1).model.three_d_trl
    linears = [m for m in layer.modules() if isinstance(m, torch.nn.Linear)]
    weights = torch.cat([m.weight.flatten() for m in linears])
    assert all(m.bias.abs().sum() == 0 for m in linears)
    assert 0.017 < weights.std().item() < 0.023 and weights.abs().max().item() < 0.15
    camera = layer.estimator.camera_props
    assert camera.rot.weight.abs().sum() > 0 and (camera.trans.weight != 1).all()
    project = tiny_model(trl_loc=1, trl_init="project").model.three_d_trl.estimator.camera_props
    assert project.rot.weight.abs().sum() == 0 and project.rot.bias.abs().sum() == 0  # R = I at start
    assert (project.trans.weight == 1).all()


def test_trl_sees_clip_tokens_and_spatial_pos_embed():
    """3DTRL gets (B, 1 + N*T, D) in (h w t) order, one camera per clip, pe2d = spatial pos_embed."""
    net = tiny_model(trl_loc=1).eval()
    seen = {}

    def hook(module, args, kwargs, output):
        seen.update(tokens=args[0].shape, grid=args[1], pe2d=kwargs["pe2d"], frames=kwargs["num_frames"],
                    rotation=output[1].rotation.shape)
    net.model.three_d_trl.register_forward_hook(hook, with_kwargs=True)
    net(torch.randn(2, 3, 4, 32, 32))
    assert seen["tokens"] == (2, 1 + 16 * 4, 48) and tuple(seen["grid"]) == (4, 4) and seen["frames"] == 4
    assert seen["pe2d"] is net.model.pos_embed and seen["rotation"] == (2, 3, 3)


def test_demo_config_builds_release_depth_defaults():
    cfg = load_config(os.path.join(CONFIGS, "TimeSformer_3DTRL_NTU.yaml"), ["TIMESFORMER.EMBED_DIM", "48",
                                                                            "TIMESFORMER.NUM_HEADS", "3"])
    net = build_model(cfg)
    assert len(net.model.blocks) == 16 and net.model.trl_loc == 12 and net.model.head.out_features == 60


# ----------------------------------------------------------------------------- weights

def test_imagenet_vit_weights_load_with_temporal_copies(tmp_path):
    torch.manual_seed(1)
    vit = TimmViT(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, num_classes=10)
    path = tmp_path / "vit.pth"
    torch.save(vit.state_dict(), path)
    net = tiny_model(img_size=48, trl_loc=2)          # 6x6 grid, 3 blocks, 5 classes
    before = {k: v.clone() for k, v in net.state_dict().items()}
    missing, _ = load_pretrained(net, str(path))
    sd, ref = net.state_dict(), vit.state_dict()
    for block in range(2):
        for name in ("qkv.weight", "qkv.bias", "proj.weight"):
            assert torch.equal(sd[f"model.blocks.{block}.attn.{name}"], ref[f"blocks.{block}.attn.{name}"])
            assert torch.equal(sd[f"model.blocks.{block}.temporal_attn.{name}"], ref[f"blocks.{block}.attn.{name}"])
        assert torch.equal(sd[f"model.blocks.{block}.temporal_norm1.weight"], ref[f"blocks.{block}.norm1.weight"])
    assert sd["model.pos_embed"].shape == (1, 37, 48)
    assert torch.equal(sd["model.pos_embed"][:, 0], ref["pos_embed"][:, 0])
    assert torch.equal(sd["model.head.weight"], before["model.head.weight"])          # 10 vs 5 classes: kept
    assert torch.equal(sd["model.blocks.2.attn.qkv.weight"], before["model.blocks.2.attn.qkv.weight"])
    assert sd["model.blocks.1.temporal_fc.weight"].abs().sum() == 0
    assert "model.time_embed" in missing and "model.three_d_trl.pos_emb_world.0.weight" in missing
    net(torch.randn(1, 3, 4, 48, 48))


def test_timesformer_checkpoint_round_trip_and_resizing(tmp_path):
    net = tiny_model(trl_loc=1)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.randn(2, 3, 4, 32, 32)).sum().backward()
    optimizer.step()
    cfg = load_config(None, [])
    path = cu.save_checkpoint(str(tmp_path), net, optimizer, 3, cfg, history=[{"epoch": 3}])
    assert cu.last_checkpoint(str(tmp_path)) == path and os.listdir(os.path.dirname(path)) == [os.path.basename(path)]
    state = torch.load(path, map_location="cpu", weights_only=False)
    assert "model_state" in state and all(k.startswith("model.") for k in state["model_state"])

    other = tiny_model(trl_loc=1)
    other_opt = torch.optim.SGD(other.parameters(), lr=0.1, momentum=0.9)
    assert cu.resume(path, other, other_opt) == 3
    x = torch.randn(1, 3, 4, 32, 32)
    assert torch.equal(net.eval()(x), other.eval()(x))
    assert other_opt.state_dict()["state"].keys() == optimizer.state_dict()["state"].keys()

    # fine-tuning at another size, frame count and class count: embeddings resized, head left out
    resized = tiny_model(trl_loc=1, img_size=48, num_frames=8, num_classes=7)
    load_pretrained(resized, path)
    sd = resized.state_dict()
    assert sd["model.pos_embed"].shape == (1, 37, 48) and sd["model.time_embed"].shape == (1, 8, 48)
    assert torch.equal(sd["model.time_embed"][:, ::2], net.state_dict()["model.time_embed"])
    assert torch.equal(sd["model.blocks.2.mlp.fc1.weight"], net.state_dict()["model.blocks.2.mlp.fc1.weight"])


RELEASE_CHECKPOINT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "release_timesformer_3dtrl.pyth")


@pytest.mark.parametrize("attention", ["divided_space_time", "joint_space_time"])
def test_release_timesformer_checkpoint_gives_the_release_logits(attention):
    """The fixture was written by the release's own TimeSformer + 3DTRL (elicassion/3DTRL at 2865620,
    ``action_recognition/timesformer/models/vit.py``: its fixed depth 16, 3DTRL before block 12, 224 px,
    here 24 wide with 2 frames and 5 classes), weights moved away from their initialisation, saved as its
    ``save_checkpoint`` does (``model_state`` with ``model.`` keys, ``cfg`` as YAML text), with the logits
    it gives for one seeded clip; the joint model's logits come from the same file, whose temporal
    weights it does not have. Every documented way in (``PRETRAINED_MODEL``, ``TRAIN.CHECKPOINT_FILE_PATH``
    and ``TEST.CHECKPOINT_FILE_PATH``) gives them."""
    expected = torch.load(RELEASE_CHECKPOINT.replace(".pyth", "_logits.pth"), weights_only=True)
    expected = expected["logits" if attention == "divided_space_time" else "logits_joint"]
    clip = torch.randn(1, 3, 2, 224, 224, generator=torch.Generator().manual_seed(1))
    net = TimeSformer(img_size=224, patch_size=16, num_classes=5, embed_dim=24, depth=16, num_heads=2,
                      num_frames=2, trl_loc=12, attention_type=attention)
    missing, unexpected = load_pretrained(net, RELEASE_CHECKPOINT)
    assert missing == [] and all(".temporal_" in key for key in unexpected)
    assert (unexpected == []) == (attention == "divided_space_time")
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(clip), expected, atol=1e-5, rtol=1e-5)
        if attention == "divided_space_time":
            assert cu.resume(RELEASE_CHECKPOINT, net, None) == 3
            torch.testing.assert_close(net(clip), expected, atol=1e-5, rtol=1e-5)
            # the release's layer ran one clip per GPU only (its configs: BATCH_SIZE = NUM_GPUS); any batch here
            torch.testing.assert_close(net(clip.expand(3, -1, -1, -1, -1)), expected.expand(3, -1),
                                       atol=1e-5, rtol=1e-5)


def test_bad_checkpoint_files(tmp_path):
    net = tiny_model()
    with pytest.raises(UserError, match="checkpoint not found"):
        load_pretrained(net, str(tmp_path / "nope.pyth"))
    (tmp_path / "junk.pyth").write_text("not a checkpoint")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        load_pretrained(net, str(tmp_path / "junk.pyth"))
    torch.save({"model_state": {"model.patch_embed.proj.weight": torch.zeros(48, 3, 4, 4)}}, tmp_path / "bad.pyth")
    with pytest.raises(UserError, match="patch_embed.proj.weight has shape"):
        load_pretrained(net, str(tmp_path / "bad.pyth"))


def test_release_recipe_no_head_dropout_and_every_parameter_decays():
    from threedtrl.timesformer.optim import build_optimizer
    cfg = load_config(None, ["TIMESFORMER.EMBED_DIM", "48", "TIMESFORMER.DEPTH", "2", "TRL.LOC", "1",
                             "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32",
                             "DATA.TRAIN_JITTER_SCALES", "[32, 40]", "MODEL.NUM_CLASSES", "5"])
    assert cfg.MODEL.DROPOUT_RATE == 0.5 and build_model(cfg).model.head_drop.p == 0.0  # never applied
    groups = build_optimizer(build_model(cfg), cfg).param_groups
    model = build_model(cfg)
    assert [len(g["params"]) for g in groups] == [0, len(list(model.parameters()))]  # "bn" names only are exempt
    assert groups[1]["weight_decay"] == cfg.SOLVER.WEIGHT_DECAY
    cfg.merge_list(["MODEL.HEAD_DROPOUT", "True", "SOLVER.ZERO_WD_1D_PARAM", "True"])
    assert build_model(cfg).model.head_drop.p == 0.5
    decay, no_decay = build_optimizer(build_model(cfg), cfg).param_groups
    assert no_decay["weight_decay"] == 0 and len(no_decay["params"]) > 0
    # the release's three optimizers: SGD with its Nesterov and dampening settings, Adam (L2 decay), AdamW
    for method, kind, extra in [("sgd", torch.optim.SGD, {"nesterov": True}), ("adam", torch.optim.Adam, {}),
                                ("adamw", torch.optim.AdamW, {})]:
        cfg.merge_list(["SOLVER.OPTIMIZING_METHOD", method])
        optimizer = build_optimizer(build_model(cfg), cfg)
        assert type(optimizer) is kind and all(optimizer.defaults[k] == v for k, v in extra.items())


@pytest.mark.parametrize("key, value, message", [
    ("SOLVER.BASE_LR", ".nan", "SOLVER.BASE_LR must be finite"), ("DATA.MEAN", "[0.5]", "one value per input channel"),
    ("DATA.STD", "[a, b, c]", "DATA.STD must be a list of numbers"), ("SOLVER.LRS", "[1, .inf]", "must be finite")])
def test_config_values_are_checked(key, value, message):
    with pytest.raises(UserError, match=message):
        load_config(None, [key, value])
