"""Map a function over items in order, optionally in a thread/process pool, with a progress bar."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor


@contextlib.contextmanager
def map_with_progress(function: Callable, items: Iterable, *, workers: int = 1, processes: bool = False,
                      total: int | None = None, progress: bool = False, desc: str | None = None,
                      unit: str = "it", chunksize: int = 1) -> Iterator[Iterator]:
    """Yield an iterator of ``function(item)`` in the order of ``items``.

    ``workers > 1`` runs the calls in a pool of threads (or of processes with ``processes=True``),
    shut down when the ``with`` block ends; ``progress`` wraps the results in a tqdm bar.
    """
    pool: Executor | None = None
    if workers > 1:
        pool = ProcessPoolExecutor(workers) if processes else ThreadPoolExecutor(workers)
        results = pool.map(function, items, chunksize=chunksize)
    else:
        results = map(function, items)
    if progress:
        from tqdm import tqdm

        results = tqdm(results, total=total, desc=desc, unit=unit)
    try:
        yield results
    finally:
        if pool is not None:
            pool.shutdown()
