"""Overlapping image decoding with inference.

Pillow releases the GIL while decoding and resizing, so a small thread pool keeps the
second core busy preparing images while the main thread runs the model. Work is submitted
a bounded window ahead so memory stays flat however many images there are.
"""

from __future__ import annotations

import collections
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def prefetch_map(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None, depth: int = 32) -> Iterator[R]:
    """``map(fn, items)`` in order, computed by ``workers`` threads up to ``depth`` items ahead.

    An exception raised by ``fn`` surfaces when its item is reached, after which pending
    work is cancelled.
    """
    workers = workers or default_workers()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="edgemobile-decode") as pool:
        pending: collections.deque = collections.deque()
        iterator = iter(items)
        try:
            for item in iterator:
                pending.append(pool.submit(fn, item))
                if len(pending) >= depth:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
