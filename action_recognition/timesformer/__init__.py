"""TimeSformer with an optional 3DTRL layer: model, data, training and evaluation."""
import compat  # noqa: F401  (must precede the first timm/torchvision import, also in spawned processes)
