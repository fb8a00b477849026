import compat  # noqa: F401  (must precede the first timm/torchvision import)
