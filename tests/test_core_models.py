"""3DTRL models in timm: registration, sizes, checkpoints, timm conventions, input sizes."""
import argparse
import logging

import pytest
import timm
import torch

import model
from model import TRL_MODEL_NAMES, Swin_3DTRL, TNT_3DTRL, ViT_3DTRL


def _layer_params(dim):
    return 6 * dim ** 2 + 44 * dim + 1287


def _count(net):
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("name, base, dim, expected", [
    ("vit_3dtrl_tiny_patch16_224", "vit_tiny_patch16_224", 192, 5_948_335),
    ("vit_3dtrl_small_patch16_224", "vit_small_patch16_224", 384, 22_953_583),
    ("vit_3dtrl_base_patch16_224", "vit_base_patch16_224", 768, 90_141_679),
])
def test_parameter_counts_match_table_1_and_the_formula(name, base, dim, expected):
    net = timm.create_model(name)
    assert _count(net) == expected
    assert _count(net) - _count(timm.create_model(base)) == _layer_params(dim)
    assert _count(net.three_d_trl) == _layer_params(dim)


RELEASE_TRL_KEYS = [
    "pos_emb_world_cls",
    "pos_emb_world.0.weight", "pos_emb_world.0.bias", "pos_emb_world.2.weight", "pos_emb_world.2.bias",
    "estimator.u", "estimator.v",
    "estimator.camera_coord.net.0.weight", "estimator.camera_coord.net.0.bias",
    "estimator.camera_coord.net.2.weight", "estimator.camera_coord.net.2.bias",
    "estimator.camera_props.cls_proj.0.weight", "estimator.camera_props.cls_proj.0.bias",
    "estimator.camera_props.cls_proj.2.weight", "estimator.camera_props.cls_proj.2.bias",
    "estimator.camera_props.token_proj_1.0.weight", "estimator.camera_props.token_proj_1.0.bias",
    "estimator.camera_props.token_proj_2.0.weight", "estimator.camera_props.token_proj_2.0.bias",
    "estimator.camera_props.mix_proj.0.weight", "estimator.camera_props.mix_proj.0.bias",
    "estimator.camera_props.mix_proj.2.weight", "estimator.camera_props.mix_proj.2.bias",
    "estimator.camera_props.rot.weight", "estimator.camera_props.rot.bias",
    "estimator.camera_props.trans.weight", "estimator.camera_props.trans.bias",
]


def _release_shape(key, dim, num_patches):
    """Shape of a release 3DTRL tensor, derived from its name alone."""
    if key == "pos_emb_world_cls":
        return (1, 1, dim)
    if key in ("estimator.u", "estimator.v"):
        return (num_patches, 1)
    module, kind = key.rsplit(".", 1)
    shapes = {
        "pos_emb_world.0": (dim, 3), "pos_emb_world.2": (dim, dim),
        "estimator.camera_coord.net.0": (dim, dim), "estimator.camera_coord.net.2": (1, dim),
        "estimator.camera_props.cls_proj.0": (dim, dim), "estimator.camera_props.cls_proj.2": (dim, dim),
        "estimator.camera_props.token_proj_1.0": (dim, dim), "estimator.camera_props.token_proj_2.0": (dim, dim),
        "estimator.camera_props.mix_proj.0": (32, dim), "estimator.camera_props.mix_proj.2": (32, 32),
        "estimator.camera_props.rot": (3, 32), "estimator.camera_props.trans": (3, 32),
    }
    out_features, in_features = shapes[module]
    return (out_features, in_features) if kind == "weight" else (out_features,)


def _release_state_dict(dim=192, depth=12, num_patches=196, seed=0):
    """A state_dict laid out as the release saves a DeiT-T + 3DTRL, built from key names only."""
    g = torch.Generator().manual_seed(seed)
    keys = {"cls_token": (1, 1, dim), "pos_embed": (1, 1 + num_patches, dim),
            "patch_embed.proj.weight": (dim, 3, 16, 16), "patch_embed.proj.bias": (dim,),
            "norm.weight": (dim,), "norm.bias": (dim,), "head.weight": (1000, dim), "head.bias": (1000,)}
    for i in range(depth):
        p = f"blocks.{i}."
        keys.update({p + "norm1.weight": (dim,), p + "norm1.bias": (dim,), p + "norm2.weight": (dim,),
                     p + "norm2.bias": (dim,), p + "attn.qkv.weight": (3 * dim, dim), p + "attn.qkv.bias": (3 * dim,),
                     p + "attn.proj.weight": (dim, dim), p + "attn.proj.bias": (dim,),
                     p + "mlp.fc1.weight": (4 * dim, dim), p + "mlp.fc1.bias": (4 * dim,),
                     p + "mlp.fc2.weight": (dim, 4 * dim), p + "mlp.fc2.bias": (dim,)})
    for key in RELEASE_TRL_KEYS:
        keys["three_d_trl." + key] = _release_shape(key, dim, num_patches)
    state = {k: torch.randn(shape, generator=g) * 0.05 for k, shape in keys.items()}
    side = int(num_patches ** 0.5)
    state["three_d_trl.estimator.u"] = (torch.arange(side).repeat(side) - (side - 1) / 2).float().unsqueeze(1)
    state["three_d_trl.estimator.v"] = (torch.arange(side).repeat_interleave(side) - (side - 1) / 2).float().unsqueeze(1)
    return state


def test_state_dict_keys_are_timm_keys_plus_the_release_3dtrl_keys():
    net = timm.create_model("vit_3dtrl_tiny_patch16_224")
    base = timm.create_model("vit_tiny_patch16_224")
    keys = set(net.state_dict())
    assert keys - set(base.state_dict()) == {"three_d_trl." + k for k in RELEASE_TRL_KEYS}
    assert set(base.state_dict()) <= keys


def test_release_checkpoint_loads_strictly_and_reproduces_outputs():
    state = _release_state_dict()
    first = timm.create_model("vit_3dtrl_tiny_patch16_224").eval()
    second = timm.create_model("vit_3dtrl_tiny_patch16_224").eval()
    first.load_state_dict(state, strict=True)
    second.load_state_dict(state, strict=True)
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(first(images), second(images))
        torch.testing.assert_close(first.three_d_trl.estimator.camera_props.rot.weight,
                                   state["three_d_trl.estimator.camera_props.rot.weight"])


def test_grid_buffers_in_a_file_never_override_the_models_grid():
    state = _release_state_dict()
    small = timm.create_model("vit_3dtrl_tiny_patch16_224", img_size=112)
    state["pos_embed"] = small.pos_embed.detach().clone()
    small.load_state_dict(state, strict=True)
    assert small.three_d_trl.estimator.u.shape == (49, 1)


def test_npl_depth_alias_and_constructor_arguments():
    net = timm.create_model("vit_3dtrl_tiny_patch16_224", npl_depth=2, img_size=64, pred_depth=False,
                            pred_campos_from="cls", x2d=True)
    assert net.trl_depth == 2 and net.three_d_trl.x2d and not net.three_d_trl.estimator.pred_depth
    assert net.three_d_trl.estimator.camera_props.mode == "cls"
    assert timm.create_model("vit_3dtrl_tiny_patch16_224", trl_depth=6, img_size=64).trl_depth == 6
    cat = timm.create_model("vit_3dtrl_tiny_patch16_224", cat=True, img_size=64)
    assert hasattr(cat.three_d_trl, "proj_world")
    with pytest.raises(ValueError, match="different values"):
        timm.create_model("vit_3dtrl_tiny_patch16_224", trl_depth=3, npl_depth=4)
    with pytest.raises(ValueError, match="out of range"):
        timm.create_model("vit_3dtrl_tiny_patch16_224", trl_depth=12)
    assert timm.create_model("vit_3dtrl_tiny_patch16_224", img_size=64).three_d_trl.estimator.camera_props.mode \
        == "both-sep"
    # without a CLS token the camera comes from the tokens, as in Swin; asking for the CLS token is an error
    no_cls = timm.create_model("vit_3dtrl_tiny_patch16_224", img_size=64, class_token=False, global_pool="avg")
    assert no_cls.three_d_trl.estimator.camera_props.mode == "tok" and not no_cls.three_d_trl.has_cls
    assert no_cls(torch.randn(2, 3, 64, 64)).shape == (2, 1000)
    with pytest.raises(ValueError, match="needs a CLS token"):
        timm.create_model("vit_3dtrl_tiny_patch16_224", img_size=64, class_token=False, global_pool="avg",
                          pred_campos_from="both-sep")


SMALL = {"img_size": 64}
REDUCED = {"vit_3dtrl_large_patch16_224": dict(depth=2, trl_depth=1, img_size=64),
           "vit_3dtrl_huge_patch14_224": dict(depth=2, trl_depth=1, img_size=56),
           "vit_3dtrl_giant_patch14_224": dict(depth=2, trl_depth=1, img_size=56),
           "vit_3dtrl_gigantic_patch14_224": dict(depth=2, trl_depth=1, img_size=56),
           "swin_3dtrl_tiny_patch4_window7_224": dict(img_size=112),
           "swin_3dtrl_small_patch4_window7_224": dict(img_size=112, depths=(2, 2, 2, 2)),
           "swin_3dtrl_base_patch4_window7_224": dict(img_size=112, depths=(2, 2, 2, 2))}


def test_every_name_is_registered_with_a_default_config():
    registered = set(timm.list_models("*3dtrl*"))
    assert set(TRL_MODEL_NAMES) <= registered
    for name in TRL_MODEL_NAMES:
        cfg = timm.get_pretrained_cfg(name)
        assert cfg.input_size == (3, 224, 224) and cfg.first_conv and cfg.classifier
        assert len(cfg.mean) == 3 and len(cfg.std) == 3 and 0 < cfg.crop_pct <= 1


@pytest.mark.parametrize("name", TRL_MODEL_NAMES)
def test_every_registered_model_builds_and_runs(name):
    kwargs = REDUCED.get(name, SMALL)
    net = timm.create_model(name, num_classes=7, **kwargs)
    size = kwargs.get("img_size", 64)
    logits = net(torch.randn(2, 3, size, size))
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()
    cfg = net.pretrained_cfg
    assert net.get_submodule(cfg["first_conv"]) is not None
    assert net.get_classifier() is net.get_submodule(cfg["classifier"])
    assert isinstance(net.three_d_trl, model.ThreeDTRL)


def test_widths_and_heads_follow_timm():
    for size, dim, heads in (("large", 1024, 16), ("huge", 1280, 16), ("giant", 1408, 16), ("gigantic", 1664, 16)):
        patch = 16 if size == "large" else 14
        net = timm.create_model(f"vit_3dtrl_{size}_patch{patch}_224", depth=1, trl_depth=0, img_size=patch * 2)
        assert net.embed_dim == dim and net.blocks[0].attn.num_heads == heads


@pytest.mark.parametrize("name, size", [("vit_3dtrl_tiny_patch16_224", 64),
                                        ("swin_3dtrl_tiny_patch4_window7_224", 112),
                                        ("tnt_3dtrl_s_patch16_224", 64)])
def test_backward_reaches_every_parameter(name, size):
    net = timm.create_model(name, num_classes=3, img_size=size)
    net(torch.randn(2, 3, size, size)).square().sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing


def test_swin_inserts_after_patch_merging_of_the_stage():
    net = timm.create_model("swin_3dtrl_tiny_patch4_window7_224")
    assert net.three_d_trl.estimator.grid_size == (28, 28)
    assert net.three_d_trl.estimator.camera_coord.net[0].in_features == 192
    assert not hasattr(net.three_d_trl, "pos_emb_world_cls")
    _, geometry = net.forward_features(torch.randn(1, 3, 224, 224), return_geometry=True)
    assert geometry.grid_size == (28, 28) and geometry.depth.shape == (1, 1, 784)
    deeper = timm.create_model("swin_3dtrl_tiny_patch4_window7_224", trl_depth=2, img_size=112)
    assert deeper.three_d_trl.estimator.grid_size == (7, 7)


def test_trl_is_applied_exactly_once_before_block_trl_depth():
    net = timm.create_model("vit_3dtrl_tiny_patch16_224", img_size=64).eval()
    images = torch.randn(2, 3, 64, 64)
    calls = []
    net.three_d_trl.register_forward_hook(lambda *_: calls.append("trl"))
    for i, block in enumerate(net.blocks):
        block.register_forward_hook(lambda *_, i=i: calls.append(i))
    net(images)
    assert calls == [0, 1, 2, 3, "trl", 4, 5, 6, 7, 8, 9, 10, 11]


@pytest.mark.parametrize("name, size, prefix", [("vit_3dtrl_tiny_patch16_224", 64, 1),
                                                ("tnt_3dtrl_s_patch16_224", 64, 1)])
def test_forward_intermediates_follow_timm_and_include_3dtrl(name, size, prefix):
    net = timm.create_model(name, img_size=size).eval()
    images = torch.randn(2, 3, size, size)
    with torch.no_grad():
        final, inter = net.forward_intermediates(images, indices=[3, 4, 11])
        torch.testing.assert_close(final, net.forward_features(images))
        assert [t.shape for t in inter] == [(2, net.embed_dim, 4, 4)] * 3
        nlc = net.forward_intermediates(images, indices=2, output_fmt="NLC", intermediates_only=True,
                                        return_prefix_tokens=True)
        assert nlc[0][0].shape == (2, 16, net.embed_dim) and nlc[0][1].shape == (2, prefix, net.embed_dim)
        # 3DTRL changes block 4's input: removing its effect changes block 4's output, not block 3's
        changed = timm.create_model(name, img_size=size).eval()
        changed.load_state_dict(net.state_dict())
        torch.nn.init.zeros_(changed.three_d_trl.pos_emb_world[2].weight)
        other = changed.forward_intermediates(images, indices=[3, 4], intermediates_only=True)
        torch.testing.assert_close(other[0], inter[0])
        assert not torch.allclose(other[1], inter[1])


def test_features_only_models():
    vit = timm.create_model("vit_3dtrl_tiny_patch16_224", features_only=True, img_size=64, out_indices=(3, 11))
    assert [f.shape[1:] for f in vit(torch.randn(1, 3, 64, 64))] == [(192, 4, 4)] * 2
    swin = timm.create_model("swin_3dtrl_tiny_patch4_window7_224", features_only=True, img_size=112)
    feats = swin(torch.randn(1, 3, 112, 112))
    assert [f.shape[1] for f in feats] == [96, 192, 384, 768] and feats[1].shape[-1] == 14
    final, inter = timm.create_model("swin_3dtrl_tiny_patch4_window7_224", img_size=112).forward_intermediates(
        torch.randn(1, 3, 112, 112))
    assert final.shape == (1, 4, 4, 768) and len(inter) == 4


@pytest.mark.parametrize("size", [112, 128, 224, 384])
def test_vit_at_other_input_sizes(size):
    net = timm.create_model("vit_3dtrl_tiny_patch16_224", img_size=size, num_classes=5).eval()
    with torch.no_grad():
        features, geometry = net.forward_features(torch.randn(1, 3, size, size), return_geometry=True)
    grid = size // 16
    assert geometry.grid_size == (grid, grid) and features.shape == (1, 1 + grid * grid, 192)
    assert geometry.points_cam[0, 0, :, 0].abs().max() > 0


def test_odd_and_dynamic_grids():
    odd = timm.create_model("vit_3dtrl_tiny_patch16_224", img_size=(80, 48))
    _, geometry = odd.forward_features(torch.randn(1, 3, 80, 48), return_geometry=True)
    assert geometry.grid_size == (5, 3)
    dynamic = timm.create_model("vit_3dtrl_tiny_patch16_224", dynamic_img_size=True, num_classes=2)
    for shape in ((96, 160), (224, 224), (48, 48)):
        out, geometry = dynamic.forward_features(torch.randn(1, 3, *shape), return_geometry=True)
        assert geometry.grid_size == (shape[0] // 16, shape[1] // 16)
    swin = timm.create_model("swin_3dtrl_tiny_patch4_window7_224", img_size=(112, 224))
    _, geometry = swin.forward_features(torch.randn(1, 3, 112, 224), return_geometry=True)
    assert geometry.grid_size == (14, 28)


def test_pretrained_backbone_from_a_local_file(tmp_path, caplog):
    source = timm.create_model("vit_tiny_patch16_224", img_size=64)
    path = tmp_path / "vit_tiny.pth"
    torch.save(source.state_dict(), path)
    with caplog.at_level(logging.WARNING):
        net = timm.create_model("vit_3dtrl_tiny_patch16_224", pretrained=True, img_size=64,
                                pretrained_cfg_overlay=dict(file=str(path)))
    torch.testing.assert_close(net.blocks[5].attn.qkv.weight, source.blocks[5].attn.qkv.weight)
    torch.testing.assert_close(net.pos_embed, source.pos_embed)
    message = " ".join(r.getMessage() for r in caplog.records)
    assert "three_d_trl.estimator.camera_props.rot.weight" in message
    assert "estimator.u" not in message and "blocks.0" not in message


def test_plain_baseline_matches_timm():
    torch.manual_seed(0)
    reference = timm.create_model("vit_tiny_patch16_224", img_size=64, num_classes=4).eval()
    plain = timm.create_model("vit_plain_tiny_patch16_224", img_size=64, num_classes=4).eval()
    plain.load_state_dict(reference.state_dict(), strict=True)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(plain(images), reference(images))
        features, geometry = plain.forward_features(images, return_geometry=True)
        assert geometry is None
        torch.testing.assert_close(model.embed(plain, images), reference.forward_features(images)[:, 0])
        torch.testing.assert_close(model.embed(reference, images), features[:, 0])


def test_classes_are_timm_subclasses():
    from timm.models.swin_transformer import SwinTransformer
    from timm.models.tnt import TNT
    from timm.models.vision_transformer import VisionTransformer
    assert issubclass(ViT_3DTRL, VisionTransformer) and issubclass(Swin_3DTRL, SwinTransformer)
    assert issubclass(TNT_3DTRL, TNT)


@pytest.mark.parametrize("name,kwargs,neighbour", [
    ("vit_3dtrl_tiny_patch16_224", dict(img_size=32, patch_size=8, depth=4, trl_depth=2), "blocks.2."),
    ("tnt_3dtrl_s_patch16_224", dict(img_size=32, depth=4, trl_depth=2), "blocks.2."),
    ("swin_3dtrl_tiny_patch4_window7_224",
     dict(img_size=64, window_size=4, depths=(1, 2, 2, 1), embed_dim=32, num_heads=(1, 2, 4, 8), trl_depth=2),
     "layers.2.blocks.0."),
])
def test_layer_decay_gives_three_d_trl_the_scale_of_the_block_it_feeds(name, kwargs, neighbour):
    from timm.optim._param_groups import param_groups_layer_decay

    net = timm.create_model(name, num_classes=3, **kwargs)
    names = {id(p): n for n, p in net.named_parameters()}
    scale = {names[id(p)]: group["lr_scale"] for group in param_groups_layer_decay(net, layer_decay=0.5)
             for p in group["params"]}
    layer = {scale[n] for n in scale if n.startswith("three_d_trl.")}
    assert layer == {scale[n] for n in scale if n.startswith(neighbour)}
    assert len(layer) == 1 and layer.pop() < scale["head.weight" if "head.weight" in scale else "head.fc.weight"]
    coarse = net.group_matcher(coarse=True)
    assert any(spec[0].startswith("^three_d_trl") for spec in coarse["blocks"])


def test_model_kwargs_read_numbers_as_yaml_1_2():
    from threedtrl.classification.cli import ParseKwargs

    parser = argparse.ArgumentParser()
    parser.add_argument("--model-kwargs", nargs="*", default={}, action=ParseKwargs)
    assert parser.parse_args(["--model-kwargs", "drop_path_rate=1e-1", "depth=2", "x=abc"]).model_kwargs == \
        {"drop_path_rate": 0.1, "depth": 2, "x": "abc"}


def test_3dtrl_names_come_from_the_registry():
    assert set(TRL_MODEL_NAMES) == {n for n in timm.list_models() if "_3dtrl_" in n}
    assert len(TRL_MODEL_NAMES) == 12
