"""3DTRL models. Importing this package registers them with timm.

    import model, timm
    net = timm.create_model("vit_3dtrl_tiny_patch16_224", num_classes=10, img_size=112)
"""
import threedtrl.runtime.compat  # noqa: F401  (before timm: torchvision next to a torch it was not built for)

import timm

from backbone import TokenGeometry
from .swin_3dtrl import Swin_3DTRL
from .three_d_trl import ThreeDTRL
from .tnt_3dtrl import TNT_3DTRL
from .factory import check_input_size, checkpoint_state_dict, embed, load_checkpoint_weights, load_weights
from .vit import ViT
from .vit_3dtrl import ViT_3DTRL

# Every model registered by this package's modules (vit_3dtrl, swin_3dtrl, tnt_3dtrl), from timm's registry.
TRL_MODEL_NAMES = tuple(timm.list_models(module=["vit_3dtrl", "swin_3dtrl", "tnt_3dtrl"]))

__all__ = ["check_input_size", "checkpoint_state_dict", "load_checkpoint_weights", "load_weights", "ThreeDTRL", "TokenGeometry", "ViT_3DTRL", "Swin_3DTRL", "TNT_3DTRL", "ViT", "embed", "TRL_MODEL_NAMES"]
