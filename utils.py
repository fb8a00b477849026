"""The release's ``utils`` names, where the project implements them.

``Config`` (its config object), ``AverageMeter``, ``seed_everything`` and the distances are here;
its frame transforms and alignment metrics (whose code is in ``threedtrl.alignment.metrics``) are
loaded on first use, so importing this module loads neither torchvision nor the alignment package."""
from threedtrl.runtime import seed_everything  # noqa: F401
from threedtrl.runtime.config import Config  # noqa: F401
from threedtrl.runtime.logs import AverageMeter  # noqa: F401


def distance(x1, x2):
    """Squared Euclidean distance over the last dimension (the release's)."""
    return (x1 - x2).pow(2).sum(dim=-1)


def cos_distance(x1, x2):
    """Cosine similarity over dimension 1 (the release's name)."""
    import torch.nn.functional as F
    return F.cosine_similarity(x1, x2, dim=1, eps=1e-6)


def normalize_vector(x):
    """Rows of ``x`` scaled to unit length (the release's ``1e-10`` guard)."""
    return x / (x.pow(2).sum(dim=1) + 1e-10).sqrt().view(-1, 1)


_METRICS = ("alignment_error", "alignment_metrics", "cycle_error", "kendalls_tau", "kendalls_tau_b", "nearest_frames",
            "nearest_frames_both_ways")


def __getattr__(name: str):
    """The release's frame transforms (``to_tensor``: PIL image -> float tensor in [0, 1];
    ``normalize``: ImageNet mean/std) and alignment metrics, loaded on first use."""
    if name in ("to_tensor", "normalize"):
        import threedtrl.runtime.compat  # noqa: F401  (must precede the first torchvision import)
        import torchvision.transforms as T
        globals().update(to_tensor=T.Compose([T.ToTensor()]),
                         normalize=T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))
        return globals()[name]
    if name in _METRICS:
        from threedtrl.alignment import metrics
        return getattr(metrics, name)
    raise AttributeError(f"module 'utils' has no attribute {name!r}")
