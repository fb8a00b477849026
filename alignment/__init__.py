"""Multi-view video alignment: losses (``losses``), the epoch sampler (``sampler``), the embedder and
its checkpoints (``embedder``), one training epoch (``engine``), evaluation and the nearest-frame
plot (``evaluation``). ``multiview_video_alignment.py`` is the command line; ``visualize.py`` and
the benchmarks use the same modules."""
import threedtrl.runtime.compat  # noqa: F401  (before its modules import timm or torchvision)
