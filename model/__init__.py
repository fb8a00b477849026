"""3DTRL models. Importing this package registers them with timm.

    import model, timm
    net = timm.create_model("vit_3dtrl_tiny_patch16_224", num_classes=10, img_size=112)
"""
import compat  # noqa: F401  (must precede the first timm/torchvision import)

from backbone import TokenGeometry
from .swin_3dtrl import Swin_3DTRL
from .three_d_trl import ThreeDTRL
from .tnt_3dtrl import TNT_3DTRL
from ._factory import check_input_size, embed
from .vit import ViT
from .vit_3dtrl import ViT_3DTRL

TRL_MODEL_NAMES = (
    "vit_3dtrl_tiny_patch16_224", "vit_3dtrl_small_patch16_224", "vit_3dtrl_base_patch16_224",
    "vit_3dtrl_large_patch16_224", "vit_3dtrl_huge_patch14_224", "vit_3dtrl_giant_patch14_224",
    "vit_3dtrl_gigantic_patch14_224",
    "swin_3dtrl_tiny_patch4_window7_224", "swin_3dtrl_small_patch4_window7_224",
    "swin_3dtrl_base_patch4_window7_224",
    "tnt_3dtrl_s_patch16_224", "tnt_3dtrl_b_patch16_224",
)

__all__ = ["check_input_size", "ThreeDTRL", "TokenGeometry", "ViT_3DTRL", "Swin_3DTRL", "TNT_3DTRL", "ViT", "embed", "TRL_MODEL_NAMES"]
