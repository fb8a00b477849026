"""The manifest of a rendered folder: a folder holds one rendering configuration, which a re-run
with the same settings completes (resumes) and one with other settings may not touch."""
import os
from typing import Optional, Sequence

from threedtrl.runtime import UserError, prepare_output_dir, read_json, refuse_foreign_folder


def claim_folder(folder: str, manifest: str, record: dict, compare: Optional[Sequence[str]] = None,
                 defaults: Optional[dict] = None) -> str:
    """Make ``folder`` ready for a rendering described by ``record``: new, empty, or holding an
    earlier rendering with the same ``compare`` keys of its ``manifest`` (all keys by default).
    ``defaults`` gives the values of keys that manifests written before those keys existed lack.
    Returns the manifest's path (the caller writes it, atomically)."""
    refuse_foreign_folder(folder, manifest)
    prepare_output_dir(folder)
    path = os.path.join(folder, manifest)
    if not os.path.isfile(path):
        return path
    existing = {**(defaults or {}), **read_json(path)}
    keys = list(compare) if compare is not None else sorted(set(existing) | set(record))
    changed = [k for k in keys if existing.get(k) != record.get(k)]
    if changed:
        shown = [f"{k} {existing.get(k)}" for k in (keys if compare is not None else changed)]
        described = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]
        raise UserError(f"{folder} was rendered with {described}, other settings than these "
                        f"({', '.join(changed)} differ{'s' if len(changed) == 1 else ''}); use another --out "
                        f"or the same settings")
    return path
