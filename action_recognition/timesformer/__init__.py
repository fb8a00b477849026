"""TimeSformer with an optional 3DTRL layer: model, data, training and evaluation."""
import threedtrl.runtime.compat  # noqa: F401  (before its modules import timm or torchvision)
