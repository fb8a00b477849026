"""What the three tasks share when they run: one-line user errors, process groups, seeding, logging
and progress bars on rank 0, the AMP policy, checkpoint reading and atomic writing, the output
folder layout and ``torch.compile``.

Each task keeps its anchor's flag names (timm's, the release's, TimeSformer's) and passes their
values here; docs/runtime.md lists them side by side."""
from .amp import amp_policy
from .checkpoint import (CHECKPOINT_SAFE_GLOBALS, check_finite, check_finite_loss, check_finite_weights,
                         load_checkpoint_file, load_safetensors, save_safetensors_atomic,
                         load_plain_pickle, save_checkpoint_atomic)
from .compile import COMPILE_MODES, check_compile_options, compile_model
from .distributed import Runtime, all_reduce_sum, init_runtime, resolve_device, stop_with_launcher
from .errors import (COUNT, FINITE, FRACTION, NOT_NEGATIVE, POSITIVE, PROBABILITY, UserError, check_flag_ranges,
                     check_range, run_cli, user_message)
from .files import (atomic_write, check_output_dir, hold_output_dir, prepare_output_dir, read_json,
                    refuse_foreign_folder, remove_stale_temporaries, write_json_atomic, write_text_atomic)
from .logs import progress_bar, setup_logging
from .output import OutputLayout
from .seeding import epoch_seed, seed_everything

__all__ = ["amp_policy", "CHECKPOINT_SAFE_GLOBALS", "check_finite", "check_finite_loss", "check_finite_weights",
           "load_checkpoint_file", "load_safetensors", "save_safetensors_atomic", "load_plain_pickle",
           "save_checkpoint_atomic", "COMPILE_MODES", "check_compile_options", "compile_model", "Runtime",
           "all_reduce_sum", "init_runtime", "resolve_device", "stop_with_launcher", "UserError", "run_cli",
           "user_message", "check_flag_ranges", "check_range", "COUNT", "FINITE", "FRACTION", "NOT_NEGATIVE",
           "POSITIVE", "PROBABILITY",
           "atomic_write", "check_output_dir", "hold_output_dir", "prepare_output_dir", "read_json", "refuse_foreign_folder",
           "remove_stale_temporaries", "write_json_atomic", "write_text_atomic", "progress_bar", "setup_logging", "OutputLayout",
           "epoch_seed", "seed_everything"]
