"""A thread pool that takes turns between requests, so that a large one cannot starve the others.

A plain executor runs jobs first come, first served: a request with 64 large images queues 64
decodes, and a one-image request sent a moment later waits for all of them. `FairPool` keeps one
queue per `map` call and hands each free thread to the call that has had the fewest jobs started
so far (the earliest of those on a tie): large calls take turns, a new small one goes next, and
a call alone still uses every thread.

Example:
    pool = FairPool(threads=4)
    images = await pool.map([functools.partial(decode, blob) for blob in blobs])
    pool.shutdown()
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import itertools
from dataclasses import dataclass

__all__ = ["FairPool"]


@dataclass
class _Queue:
    """The jobs of one `map` call not started yet, and how many of its jobs have started."""

    order: int
    jobs: collections.deque
    started: int = 0


class FairPool:
    """Runs the jobs of concurrent `map` calls on `threads` threads, the least served call first.
    Use it from one event loop.

    Args:
        threads: how many jobs run at once.
        name: the threads' name prefix. Defaults to "transferkit-decode".
    """

    def __init__(self, threads: int, name: str = "transferkit-decode"):
        self.threads = threads
        self._executor = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix=name)
        self._free = threads
        self._waiting: list[_Queue] = []
        self._order = itertools.count()

    async def map(self, jobs) -> list:
        """The results of calling each of `jobs` (functions without arguments), in order.

        Raises:
            Exception: the first job's exception, in order; jobs not started by then are dropped.
        """
        loop = asyncio.get_running_loop()
        queue = _Queue(next(self._order), collections.deque(
            (job, loop.create_future()) for job in jobs
        ))
        futures = [future for _, future in queue.jobs]
        if futures:
            self._waiting.append(queue)
            self._dispatch()
        try:
            return [await future for future in futures]
        finally:  # an error, or the client went away: what has not started never will
            for future in futures:
                future.cancel()

    async def run(self, job):
        """The result of `job()`, run in its turn."""
        (result,) = await self.map([job])
        return result

    def shutdown(self) -> None:
        """Stops taking jobs; those waiting fail with a `RuntimeError`, those running finish."""
        while self._waiting:
            for _, future in self._waiting.pop().jobs:
                if not future.done():
                    future.set_exception(RuntimeError("The server is shutting down."))
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _dispatch(self) -> None:
        while self._free and self._waiting:
            queue = min(self._waiting, key=lambda waiting: (waiting.started, waiting.order))
            job, future = queue.jobs.popleft()
            if not queue.jobs:
                self._waiting.remove(queue)
            if future.done():  # cancelled: its request failed or went away
                continue
            queue.started += 1
            self._free -= 1
            running = asyncio.get_running_loop().run_in_executor(self._executor, job)
            running.add_done_callback(
                lambda done, future=future, queue=queue: self._finished(done, future, queue)
            )

    def _finished(self, done: asyncio.Future, future: asyncio.Future, queue: _Queue) -> None:
        self._free += 1
        if done.cancelled() or done.exception() is not None:
            while queue.jobs:  # the call fails: none of its other jobs is worth starting
                queue.jobs.popleft()[1].cancel()
            if queue in self._waiting:
                self._waiting.remove(queue)
        if not future.done():
            if done.cancelled():
                future.cancel()
            elif done.exception() is not None:
                future.set_exception(done.exception())
            else:
                future.set_result(done.result())
        self._dispatch()
