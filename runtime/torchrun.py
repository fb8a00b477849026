"""torchrun for ``i1k.sh``, with its outcome in one line.

``python -m threedtrl.runtime.torchrun ARGS`` takes torchrun's arguments. The training processes print their
own errors (one line each for a user error); torchrun's launcher would add a traceback of its own
on every failure and on Ctrl-C. Here Ctrl-C and SIGTERM end in one line (exit 130 and 143), a user
error of the processes in their line alone (exit 2), and any other failure in one line naming the
first process that failed and its exit code.
"""
import signal
import sys
from typing import Optional, Sequence

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import parse_args, run

from .errors import UserError

# The exit codes of the processes that already said what went wrong (see runtime.errors.run_cli).
_REPORTED = {2: 2, 130: 130, 143: 143}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        run(args)
    except SignalException as err:
        terminated = err.sigval == signal.SIGTERM
        print("error: terminated (SIGTERM); resume from the last checkpoint" if terminated else "error: interrupted",
              file=sys.stderr)
        return 143 if terminated else 130
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        if failure.exitcode in _REPORTED:
            return _REPORTED[failure.exitcode]
        print(f"error: training process {rank} failed with exit code {failure.exitcode} (its output is above; "
              f"torchrun's logs: {args.log_dir or 'not kept'})", file=sys.stderr)
        return 1
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
