"""User errors: one line on stderr, exit status 2, no traceback; Ctrl-C and SIGTERM: one line."""
import os
import signal
import sys
import time
from typing import Any, Callable


class Terminated(KeyboardInterrupt):
    """SIGTERM (what a cluster scheduler sends) arrived: handled like Ctrl-C, so every task stops at
    the same points and its last checkpoint stays intact."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


class UserError(Exception):
    """A problem with the user's input (files, flags, config): reported in one line, no traceback."""


def user_message(err: BaseException) -> str:
    """The one-line message of a :class:`UserError`, also when a DataLoader worker or a spawned
    process raised it (they put the original traceback in front of the message)."""
    lines = str(err).strip().splitlines()
    if len(lines) > 1 and "Traceback" in str(err):
        return lines[-1].split("UserError: ", 1)[-1]
    return lines[0] if lines else type(err).__name__


def run_cli(main: Callable[[], Any]) -> None:
    """Run ``main``; a :class:`UserError` prints ``error: <message>`` to stderr and exits with 2;
    Ctrl-C and SIGTERM print one line each and exit with 130 and 143, as the shell reports them."""
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        try:
            main()
        except RuntimeError:
            _wait_for_the_launchers_signal()
            raise
    except UserError as err:
        print(f"error: {user_message(err)}", file=sys.stderr)
        sys.exit(2)
    except Terminated:
        _say_unless_launched("error: terminated (SIGTERM); resume from the last checkpoint")
        sys.exit(143)
    except KeyboardInterrupt:
        _say_unless_launched("error: interrupted")
        sys.exit(130)


# How long a launched process whose run failed waits for the launcher's signal before it reports
# the failure as its own. torchrun signals its processes one after another, so a process inside a
# collective can find its peer gone (gloo: "Connection closed by peer") before its own SIGTERM arrives.
LAUNCHER_SIGNAL_WAIT_S = 10.0


def _wait_for_the_launchers_signal() -> None:
    """In one of several processes started by torchrun: sleep until the launcher's SIGTERM or
    Ctrl-C arrives (raised from the sleep, so the run ends in the launcher's one line) or the wait
    ends (the failure is this process's own and is reported as usual)."""
    if "TORCHELASTIC_RUN_ID" in os.environ and int(os.environ.get("WORLD_SIZE", 1)) > 1:
        time.sleep(LAUNCHER_SIGNAL_WAIT_S)


def _say_unless_launched(line: str) -> None:
    """A signal reaches every process torchrun started and torchrun itself, which says it once
    (runtime/torchrun.py); a process on its own says it."""
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        print(line, file=sys.stderr)
