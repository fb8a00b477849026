"""Atomic writes and output folders: readers never see a half-written file, and nothing is written
into a folder that cannot take it."""
import glob
import json
import os
import tempfile
from typing import Any, Callable

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
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json_atomic(obj: Any, path: str) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
    atomic_write(path, write)


def read_json(path: str) -> Any:
    """The JSON value in ``path``; a file that is not JSON is a one-line ``UserError``."""
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError:
            raise UserError(f"{path} is not valid JSON") from None


def remove_stale_temporaries(directory: str) -> None:
    """Delete the ``.tmp-*`` files an interrupted :func:`atomic_write` left in ``directory``
    (called by the writers at start-up, before they write there)."""
    for path in glob.glob(os.path.join(glob.escape(directory), ".tmp-*")):
        if os.path.isfile(path):
            os.remove(path)


def check_output_dir(path: str) -> None:
    """Without creating anything: a :class:`UserError` unless ``path`` is, or can be made as, a
    writable folder (its nearest existing ancestor is a writable folder)."""
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
