"""The worker pool of the renderers: jobs run in ``workers`` spawned processes (or in this one),
each process keeping one scene per scenario for all its jobs. A job's output depends only on the
job, so the result is the same for any number of workers."""
import os
from multiprocessing import get_context
from typing import Any, Callable, Dict, Iterator, Sequence

from threedtrl.runtime.distributed import die_with_parent

_SCENES: Dict[str, Any] = {}


def worker_scene(key: str, build: Callable[[], Any]) -> Any:
    """This process's scene for scenario ``key``, built by ``build()`` on first use (each job sets
    everything it renders, so scenes are reused across jobs)."""
    if key not in _SCENES:
        _SCENES[key] = build()
    return _SCENES[key]


def run_jobs(fn: Callable[[Any], Any], jobs: Sequence[Any], workers: int = 1) -> Iterator[Any]:
    """``fn(job)`` for every job, in order with one worker, in completion order with several
    (spawned processes: ``fn`` must be a module-level function)."""
    if workers <= 1:
        for job in jobs:
            yield fn(job)
        return
    # the workers end with the main process, however it ends (kill -9 included, and before they have started)
    with get_context("spawn").Pool(workers, initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
        yield from pool.imap_unordered(fn, jobs)
