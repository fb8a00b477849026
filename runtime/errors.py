"""User errors: one line on stderr, exit status 2, no traceback; Ctrl-C and SIGTERM: one line."""
import math
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


# The ranges most flags and config keys take, as keyword arguments of check_range.
COUNT = dict(low=1)
NOT_NEGATIVE = dict(low=0)
POSITIVE = dict(low=0, open_low=True)
FRACTION = dict(low=0, high=1, open_high=True)
PROBABILITY = dict(low=0, high=1)
FINITE = dict()


def check_range(name: str, value, low=None, high=None, *, open_low: bool = False, open_high: bool = False) -> None:
    """One-line error unless ``low <= value <= high`` (``open_low``/``open_high`` exclude the bound);
    ``value`` may be a number, a list of numbers (each is checked) or None (an unset flag: accepted).
    Without bounds it checks only that the numbers are finite."""
    for item in value if isinstance(value, (list, tuple)) else [value]:
        if item is None:
            continue
        if not math.isfinite(item):
            raise UserError(f"{name} must be a finite number, got {value}")
        above = low is None or (item > low if open_low else item >= low)
        below = high is None or (item < high if open_high else item <= high)
        if not (above and below):
            raise UserError(f"{name} must be {_range_words(low, high, open_low, open_high)}, got {value}")


def check_flag_ranges(args, ranges, separator: str = "-") -> None:
    """:func:`check_range` for every flag of ``ranges`` (``((kind, (dest, ...)), ...)``, a kind being
    one of the ranges above); the flag is named ``--dest`` with ``_`` written as ``separator``."""
    for kind, flags in ranges:
        for flag in flags:
            check_range("--" + flag.replace("_", separator), getattr(args, flag), **kind)


def _range_words(low, high, open_low: bool, open_high: bool) -> str:
    if high is None:
        return "positive" if (low, open_low) == (0, True) else f"{'above' if open_low else 'at least'} {low}"
    if low is None:
        return f"{'below' if open_high else 'at most'} {high}"
    return f"in {'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"


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
