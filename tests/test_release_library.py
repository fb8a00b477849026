"""Code written against the release's modules and names keeps importing and computing the same."""
import math

import pytest
import timm
import torch

import model  # noqa: F401
from utils import Config


def test_backbone_nets_names():
    from backbone.nets import (CameraCoordEstimator, CameraProjection, CameraProps, reverse_camera_props,
                               rotation_tensor, uvd_to_xyz)
    # the release's matrices are built column by column (torch.cat along dim 2): Rx(theta) has columns
    # (1, 0, 0), (0, c, s), (0, -s, c), the textbook one; Rz(psi) has columns (c, -s, 0), (s, c, 0), (0, 0, 1)
    z = rotation_tensor(torch.zeros(1), torch.zeros(1), torch.tensor([math.pi / 2]))
    torch.testing.assert_close(z[0], torch.tensor([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
                               atol=1e-6, rtol=0)
    x = rotation_tensor(torch.tensor([math.pi / 2]), torch.zeros(1), torch.zeros(1))
    torch.testing.assert_close(x[0], torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]),
                               atol=1e-6, rtol=0)
    rot, trans = torch.eye(3), torch.tensor([[1.0, 2.0, 3.0]])
    inv_rot, inv_trans = reverse_camera_props(rot, trans)
    assert torch.equal(inv_rot, rot) and inv_trans.flatten().tolist() == [1.0, 2.0, 3.0]
    u, v, d = torch.tensor([[1.0]]), torch.tensor([[2.0]]), torch.tensor([[[3.0]]])
    assert uvd_to_xyz(u, v, d).flatten().tolist() == [3.0, 6.0, 3.0]
    config = Config(embed_dim=8, pred_campos_from="both-sep")
    assert CameraCoordEstimator(config, dim=1).net[-1].out_features == 1
    assert CameraProps(config).mode == "both-sep"
    assert torch.equal(CameraProjection()(torch.ones(1, 2, 3), rot[None], trans[None]), torch.ones(1, 2, 3) + trans)


def test_three_d_trl_from_a_config_and_the_release_call():
    from model import ThreeDTRL
    config = Config(has_cls=True, input_size=(3, 224, 224), pred_depth=True, pred_campos_from="both-sep",
                    patch_size=16, embed_dim=32)
    torch.manual_seed(0)
    layer = ThreeDTRL(config)
    torch.manual_seed(0)
    same = ThreeDTRL(32, (14, 14))
    assert layer.estimator.grid_size == (14, 14)
    tokens, pe2d = torch.randn(2, 197, 32), torch.randn(1, 197, 32)
    torch.testing.assert_close(layer(tokens, pe2d, x2d=False), same(tokens, (14, 14), pe2d))
    torch.testing.assert_close(layer(tokens, pe2d, x2d=True), same(tokens, (14, 14)))


def test_release_utils_names():
    from PIL import Image
    from utils import cos_distance, distance, normalize, normalize_vector, to_tensor
    assert distance(torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0]])).item() == 25.0
    image = to_tensor(Image.new("RGB", (2, 2), (255, 0, 0)))
    assert image.shape == (3, 2, 2) and image[0].max() == 1.0
    torch.testing.assert_close(normalize(image)[:, 0, 0], torch.tensor([(1 - 0.485) / 0.229, -0.456 / 0.224,
                                                                        -0.406 / 0.225]))
    assert torch.allclose(normalize_vector(torch.tensor([[3.0, 4.0]])), torch.tensor([[0.6, 0.8]]))
    assert cos_distance(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]])).item() == pytest.approx(1.0)


def test_release_global_pool_boolean():
    net = timm.create_model("vit_3dtrl_tiny_patch16_224", global_pool=False, img_size=32, depth=2, trl_depth=1)
    assert net.global_pool == "token"
    assert timm.create_model("vit_3dtrl_tiny_patch16_224", global_pool=True, img_size=32, depth=2,
                             trl_depth=1).global_pool == "avg"
    assert timm.create_model("tnt_3dtrl_s_patch16_224", global_pool=False).global_pool == "token"


def test_release_trajectory_dataset(tmp_path):
    """The release's classes read an FTPV trajectory as it did: 224 px, ImageNet-normalised, triplets."""
    import numpy as np
    from PIL import Image
    from data_pipeline.trajectory_dataset import TrajectoryDataset, TripletDataset
    traj = tmp_path / "set" / "tr_0000"
    rng = np.random.default_rng(0)
    for folder in ("fpv", "tpv/view_0000", "tpv/view_0001"):
        (traj / folder).mkdir(parents=True)
        for t in range(8):
            Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(traj / folder / f"{t:06d}.jpg")
    data = TrajectoryDataset("set", ["tr_0000"], [0, 1], data_root=str(tmp_path))
    x = data[0]
    assert x.shape == (3, 8, 3, 224, 224)
    from utils import normalize, to_tensor
    first = normalize(to_tensor(Image.open(traj / "fpv" / "000000.jpg").resize((224, 224), Image.BICUBIC)))
    torch.testing.assert_close(x[0, 0], first, atol=1e-5, rtol=1e-5)
    triplets = TripletDataset(x, window=2)
    assert len(triplets) == 3 * 8
    np.random.seed(0)
    a, b = triplets[5]
    assert a.shape == (3, 3, 224, 224) and b.shape == a.shape
