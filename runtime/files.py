"""Atomic writes and output folders: readers never see a half-written file, nothing is written
into a folder that cannot take it, and one run at a time writes a folder."""
import atexit
import contextlib
import errno
import glob
import json
import math
import os
import shutil
import socket
import tempfile
from typing import Any, Callable, Optional

from .errors import UserError


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    Readers never see a half-written file; on failure nothing is left behind.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # torch's zip writer reports a full disk as a RuntimeError
        full = getattr(err, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or _nearly_full(directory)
        if os.path.exists(tmp):
            os.remove(tmp)
        if full:
            raise UserError(f"no space left on the device of {directory} while writing {os.path.basename(path)}: "
                            f"nothing of it was kept, earlier files are intact; free some space and resume") from None
        raise
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


# A write that failed with less than this left on its device ran out of space (whatever the error says).
FULL_BELOW_BYTES = 1 << 20


def _nearly_full(directory: str) -> bool:
    try:
        return shutil.disk_usage(directory).free < FULL_BELOW_BYTES
    except OSError:
        return False


def write_text_atomic(text: str, path: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)
    atomic_write(path, write)


def write_json_atomic(obj: Any, path: str) -> None:
    """Write ``obj`` as indented JSON, atomically; NaN and infinities (not JSON) are written as null."""
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(_json_safe(obj), f, indent=2, allow_nan=False)
            f.write("\n")
    atomic_write(path, write)


def _json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (containers copied, others unchanged)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: _json_safe(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(value) for value in obj]
    return obj


def read_json(path: str) -> Any:
    """The JSON value in ``path``; a file that is not JSON is a one-line ``UserError``."""
    with open(path) as f:
        try:
            return json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError(f"{path} is not valid JSON") from None


def remove_stale_temporaries(directory: str) -> None:
    """Delete the ``.tmp-*`` files an interrupted :func:`atomic_write` left in ``directory``
    (called by the writers at start-up, before they write there)."""
    for path in glob.glob(os.path.join(glob.escape(directory), ".tmp-*")):
        if os.path.isfile(path):
            os.remove(path)


# The file by which a run holds its output folder: the holder's process id and host.
LOCK_NAME = ".run.lock"


def _lock_holder(lock: str) -> Optional[str]:
    """Who holds ``lock``: ``"process PID"`` (on another host: ``"process PID on HOST"``), or None when
    the file is gone or its process has ended (a run that crashed)."""
    try:
        with open(lock) as f:
            pid_text, _, host = f.read().strip().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    if host and host != socket.gethostname():
        return f"process {pid} on {host}"  # cannot be checked from here: taken as running
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return f"process {pid}"


def _refuse_held(path: str, holder: str) -> None:
    raise UserError(f"{path} is in use by another run ({holder}): wait for it, or choose another output folder "
                    f"(remove {os.path.join(path, LOCK_NAME)} if no run uses it)")


def hold_output_dir(path: str) -> None:
    """Make this process the run that writes ``path`` (an existing folder): a lock file with its
    process id, removed when the process exits. A folder that another live process holds is a
    one-line :class:`UserError`; a lock left by a process that has ended is taken over."""
    lock, me = os.path.join(path, LOCK_NAME), f"{os.getpid()} {socket.gethostname()}"
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _lock_holder(lock)
            if holder == f"process {os.getpid()}":
                return
            if holder is not None:
                _refuse_held(path, holder)
            with contextlib.suppress(FileNotFoundError):
                os.remove(lock)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(me + "\n")
        atexit.register(_release, lock, me)
        return


def _release(lock: str, me: str) -> None:
    with contextlib.suppress(OSError):
        with open(lock) as f:
            if f.read().strip() == me:
                os.remove(lock)


def check_output_dir(path: str, run_folder: bool = True) -> None:
    """Without creating anything: a :class:`UserError` unless ``path`` is, or can be made as, a
    writable folder (its nearest existing ancestor is a writable folder) that, as a ``run_folder``,
    no other live run holds."""
    holder = _lock_holder(os.path.join(path, LOCK_NAME)) if run_folder else None
    if holder is not None and holder != f"process {os.getpid()}":
        _refuse_held(path, holder)
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write to output folder {path}: {existing} is not a writable folder")


def prepare_output_dir(path: str) -> str:
    """Create the output folder ``path`` if needed (a one-line :class:`UserError` when it cannot be
    made or written) and remove the temporary files an interrupted atomic write left there."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".tmp-probe")
        probe.close()
    except OSError as err:
        raise UserError(f"cannot write to output folder {path}: {err.strerror or type(err).__name__}") from None
    remove_stale_temporaries(path)
    return path


def refuse_foreign_folder(folder: str, manifest: str) -> None:
    """A renderer writes only into a new or empty folder, or one that holds its ``manifest`` (its own
    earlier output, which it completes): a folder of someone else's files is refused, not mixed into."""
    if os.path.isdir(folder) and os.listdir(folder) and not os.path.isfile(os.path.join(folder, manifest)):
        raise UserError(f"{folder} holds files this renderer did not write (no {manifest}); "
                        f"render into a new or empty folder")
