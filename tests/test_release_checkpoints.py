"""Checkpoints in the release's layout load into the default models through every loader and give
the release's outputs.

The fixtures were made by the release's own model files (elicassion/3DTRL at 2865620: its ViT, TnT and
Swin + 3DTRL classes, small widths and depths, the release's fixed 224 px geometry) under timm 0.6.12,
the timm it was written for: weights perturbed from their initialisation, saved as timm 0.6's
``CheckpointSaver`` does (``state_dict`` and a different ``state_dict_ema``), with the logits of both on
one seeded image (``torch.randn(1, 3, 224, 224)`` from a generator seeded with 1). Two more come from
the same files: the concatenation layer in the release's ViT, and the release's layer alone with each of
its options.
"""
import os

import pytest
import timm
import torch

import imagenet_val
from model import ThreeDTRL, load_weights
from threedtrl.runtime import UserError

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
# The same architectures in this project's (timm 1.x) spelling.
OURS = {
    "vit": ("vit_3dtrl_tiny_patch16_224", dict(embed_dim=48, depth=2, num_heads=2)),
    "tnt": ("tnt_3dtrl_s_patch16_224", dict(embed_dim=48, inner_dim=8, depth=2, num_heads_outer=2, num_heads_inner=2)),
    "swin": ("swin_3dtrl_tiny_patch4_window7_224", dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2))),
}


def _fixture(family):
    checkpoint = os.path.join(FIXTURES, f"release_{family}_3dtrl.pth.tar")
    expected = torch.load(os.path.join(FIXTURES, f"release_{family}_3dtrl_logits.pth"), weights_only=True)
    return checkpoint, expected


def _image():
    return torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))


def _logits(net):
    with torch.no_grad():
        return net.eval()(_image())


@pytest.mark.parametrize("family", sorted(OURS))
def test_release_checkpoint_gives_the_release_logits(family):
    checkpoint, expected = _fixture(family)
    name, kwargs = OURS[family]
    net = timm.create_model(name, num_classes=10, trl_depth=1, **kwargs)
    assert load_weights(net, checkpoint) is True  # the EMA weights, which the release evaluates
    torch.testing.assert_close(_logits(net), expected["logits_ema"], atol=1e-4, rtol=1e-4)
    assert load_weights(net, checkpoint, use_ema=False) is False
    torch.testing.assert_close(_logits(net), expected["logits_raw"], atol=1e-4, rtol=1e-4)


def test_release_concatenation_variant_gives_the_release_logits():
    """The release has the concatenation layer (``ThreeDTRLCat``) but its ViT never builds it: its
    ``vit_3dtrlcat_*`` configs' ``cat: True`` is read by no code. The fixture is its ViT (24 wide, 2 blocks,
    3DTRL before block 1) with ``ThreeDTRLCat`` put in place of the layer and called as its ViT calls the
    layer, written under timm 0.6.12 with the logits it gives; ``cat=True`` here gives them."""
    checkpoint = os.path.join(FIXTURES, "release_vit_3dtrlcat.pth.tar")
    expected = torch.load(os.path.join(FIXTURES, "release_vit_3dtrlcat_logits.pth"), weights_only=True)
    net = timm.create_model("vit_3dtrl_tiny_patch16_224", num_classes=10, trl_depth=1, cat=True, embed_dim=24,
                            depth=2, num_heads=2)
    assert load_weights(net, checkpoint) is False  # raw weights: the file has no EMA
    torch.testing.assert_close(_logits(net), expected["logits"], atol=1e-4, rtol=1e-4)


LAYER_MODES = torch.load(os.path.join(FIXTURES, "release_layer_modes.pth"), weights_only=True)


@pytest.mark.parametrize("case", sorted(LAYER_MODES))
def test_every_layer_option_gives_the_release_layers_output(case):
    """The release's image layer (its ``model/three_d_trl.py``, 24 wide, 224 px: a 14 x 14 grid) for every
    camera mode, with a depth or a camera-frame point per token (``pred_depth``), with and without a CLS
    token: weights moved from their initialisation, and the first 8 channels of its output for seeded
    tokens and 2D position embedding."""
    mode, target, prefix = case.split("/")
    has_cls = prefix == "cls"
    layer = ThreeDTRL(24, (14, 14), has_cls=has_cls, pred_depth=target == "depth", pred_campos_from=mode)
    layer.load_state_dict(LAYER_MODES[case]["state"], strict=False)
    assert set(layer.state_dict()) - set(LAYER_MODES[case]["state"]) == {"estimator.u", "estimator.v"}
    tokens = torch.randn(2, 196 + has_cls, 24, generator=torch.Generator().manual_seed(1))
    pe2d = torch.randn(1, 196 + has_cls, 24, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = layer(tokens, (14, 14), pe2d)
    torch.testing.assert_close(out[..., :8], LAYER_MODES[case]["out"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", sorted(OURS))
def test_timm_pretrained_file_path_loads_every_key(family):
    checkpoint, expected = _fixture(family)
    name, kwargs = OURS[family]
    net = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=checkpoint), num_classes=10,
                            trl_depth=1, **kwargs)
    torch.testing.assert_close(_logits(net), expected["logits_ema"], atol=1e-4, rtol=1e-4)


def test_release_tnt_is_the_default_tnt():
    # timm 0.6's TnT-S + 3DTRL: 23,755,336 backbone parameters + the layer's 6 d^2 + 44 d + 1287 at d = 384
    assert sum(p.numel() for p in timm.create_model("tnt_3dtrl_s_patch16_224").parameters()) == 24_658_255
    assert sum(p.numel() for p in timm.create_model("tnt_3dtrl_s_patch16_224", legacy=False).parameters()) \
        == 24_671_503


def test_checkpoint_of_another_width_is_one_line(tmp_path):
    checkpoint, _ = _fixture("vit")
    net = timm.create_model("vit_3dtrl_tiny_patch16_224", num_classes=10, trl_depth=1, depth=2, num_heads=2)
    with pytest.raises(UserError, match="does not fit ViT_3DTRL"):
        load_weights(net, checkpoint)


def test_imagenet_val_evaluates_the_ema_weights_of_a_release_checkpoint(tmp_path):
    import json
    from PIL import Image
    checkpoint, _ = _fixture("vit")
    root = tmp_path / "data" / "val"
    for c in range(10):
        (root / f"c{c}").mkdir(parents=True)
        Image.new("RGB", (224, 224), (25 * c, 20, 200)).save(root / f"c{c}" / "a.png")
    results = {}
    for flag in ("--use-ema", "--no-use-ema"):
        out = tmp_path / f"{flag}.json"
        imagenet_val.main([str(tmp_path / "data"), "--checkpoint", checkpoint, "-m", OURS["vit"][0],
                           "--model-kwargs", "embed_dim=48", "depth=2", "num_heads=2", "--npl_depth", "1",
                           "--num-classes", "10", "-j", "0", "--no-progress", flag, "--results-file", str(out)])
        results[flag] = json.loads(out.read_text())
    assert results["--use-ema"]["weights"] == "ema" and results["--no-use-ema"]["weights"] == "raw"
    assert results["--use-ema"]["loss"] != results["--no-use-ema"]["loss"]
    # no training arguments in this file: the model's own data settings, recorded with the results
    assert results["--use-ema"]["crop_pct"] == 0.9 and results["--use-ema"]["interpolation"] == "bicubic"
