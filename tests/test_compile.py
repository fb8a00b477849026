"""torch.compile: every 3DTRL model compiles whole (``fullgraph=True``), forward and backward.

AOTAutograd traces forward and backward into one graph each, as it does for the inductor
backend, but without generating code, so a graph break or an untraceable op fails here in
seconds. Outputs and gradients must equal eager ones.
"""
import pytest
import timm
import torch


import model  # noqa: F401
from threedtrl.timesformer.model import TimeSformer

IMAGE_MODELS = {
    "vit": ("vit_3dtrl_tiny_patch16_224", dict(img_size=64, depth=2, trl_depth=1)),
    "swin": ("swin_3dtrl_tiny_patch4_window7_224",
             dict(img_size=64, window_size=4, depths=(1, 1, 1, 1), embed_dim=32, num_heads=(1, 2, 4, 8))),
    "tnt": ("tnt_3dtrl_s_patch16_224", dict(img_size=64, depth=2, trl_depth=1)),
}


def _compiled_matches_eager(net: torch.nn.Module, inputs: torch.Tensor) -> None:
    torch._dynamo.reset()
    net.eval()  # no dropout / drop-path randomness; gradients still flow
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")
    x1, x2 = inputs.clone().requires_grad_(), inputs.clone().requires_grad_()
    eager_out, compiled_out = net(x1), compiled(x2)
    torch.testing.assert_close(compiled_out, eager_out, rtol=1e-5, atol=1e-5)
    eager_out.square().sum().backward()
    eager_grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    compiled_out.square().sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-4, atol=1e-5)
    for p, expected in zip(net.parameters(), eager_grads):
        torch.testing.assert_close(p.grad, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", sorted(IMAGE_MODELS))
def test_image_models_compile_whole(family):
    name, kwargs = IMAGE_MODELS[family]
    torch.manual_seed(0)
    net = timm.create_model(name, num_classes=5, **kwargs)
    _compiled_matches_eager(net, torch.randn(2, 3, 64, 64))


def test_timesformer_3dtrl_compiles_whole():
    torch.manual_seed(0)
    net = TimeSformer(img_size=32, patch_size=8, num_classes=5, embed_dim=48, depth=2, num_heads=3, num_frames=4,
                      trl_loc=1)
    _compiled_matches_eager(net, torch.randn(2, 3, 4, 32, 32))
