"""ImageNet-style classification with timm: argument/config parsing, data checks, model building,
and the viewpoint (perspective) perturbation used for IN-1K-perturbed style evaluation."""
import threedtrl.runtime.compat  # noqa: F401  (before its modules import timm or torchvision)
