"""Build a 3DTRL model of each backbone at 112 px and run one forward pass on the CPU."""
import time

import threedtrl.runtime.compat  # noqa: F401

import timm
import torch

import model  # noqa: F401


def main() -> None:
    torch.manual_seed(0)
    images = torch.randn(2, 3, 112, 112)
    for name in ("vit_3dtrl_tiny_patch16_224", "swin_3dtrl_tiny_patch4_window7_224", "tnt_3dtrl_s_patch16_224"):
        net = timm.create_model(name, num_classes=10, img_size=112).eval()
        start = time.perf_counter()
        with torch.no_grad():
            features, geometry = net.forward_features(images, return_geometry=True)
            logits = net.forward_head(features)
        print(f"{name}: logits {tuple(logits.shape)}, token grid {geometry.grid_size}, "
              f"world points {tuple(geometry.points_world.shape)}, {time.perf_counter() - start:.2f}s")


if __name__ == "__main__":
    main()
