"""Dynamic batching: concurrent requests share one model call, as TF Serving and Ray Serve do.

`DynamicBatcher(predictor)` collects the items of concurrent `await batcher.submit(items)` calls
into one `predictor.predict(batch)` call of at most `max_batch` items. A batch leaves when it is
full, or `max_wait_ms` after its oldest request arrived, whichever comes first; requests that
arrive while the model is busy wait for the next batch, so under load batches fill up on their own
and at low load a lone request waits at most `max_wait_ms`.

* A request is never split across batches unless it holds more than `max_batch` items; then it is
  run in chunks of `max_batch` and its rows are put back together in order.
* `predict` runs in one background thread (predictors are not thread-safe) and never on the event
  loop.
* One request's input never fails another's: when a batch fails, its halves are run again, down
  to single items, so the other requests still get their rows and the request holding the item
  the model fails on gets a `PredictError` that names it. The next batch runs as usual.
* `drain()` (the server calls it when it begins to shut down) stops waiting for company: what is
  queued runs at once, so shutting down never waits `max_wait_ms`.
* `stats()` counts requests, items, batches and the mean batch size, for `/health`.

Example:
    batcher = DynamicBatcher(predictor, max_batch=32, max_wait_ms=5.0)
    probabilities = await batcher.submit([image_a, image_b])  # (2, num_classes)
    await batcher.aclose()
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from transferkit.errors import InputError
from transferkit.serving import MAX_BATCH, MAX_WAIT_MS

__all__ = ["DynamicBatcher", "PredictError", "MAX_BATCH_RANGE", "MAX_WAIT_MS_RANGE"]

MAX_BATCH_RANGE = (1, 1024)
MAX_WAIT_MS_RANGE = (0.0, 1000.0)  # a batch that waits longer only delays its first request


class PredictError(RuntimeError):
    """The model failed on one item of a request (run alone, so it is that item's failure).

    Attributes:
        index: the item's position in the request.
        error: what `predict` raised for it (also the `__cause__`).
    """

    def __init__(self, index: int, error: BaseException):
        super().__init__(f"item {index}: {type(error).__name__}: {error}")
        self.index = index
        self.error = error


@dataclass
class _Entry:
    """One request (or one chunk of a large request) waiting for the model."""

    items: list
    future: asyncio.Future
    offset: int = 0  # where `items` start in the request (a chunk of a large request)
    arrived: float = field(default_factory=time.monotonic)


class DynamicBatcher:
    """Groups concurrent requests into batched `predictor.predict` calls.

    Args:
        predictor: anything with `predict(items: list) -> array (len(items), ...)`; a
            `transferkit.serving.predictors.Predictor`.
        max_batch: the most items in one `predict` call. Defaults to 32.
        max_wait_ms: how long a batch waits for more requests after its first one arrived, in
            milliseconds. Defaults to 5.0; 0 runs whatever is waiting at once.

    Both are bounded (`MAX_BATCH_RANGE`, `MAX_WAIT_MS_RANGE`).

    The batcher binds to the event loop of its first `submit`; `aclose()` stops it.
    """

    def __init__(self, predictor, *, max_batch: int = MAX_BATCH,
                 max_wait_ms: float = MAX_WAIT_MS):
        self.check(max_batch, max_wait_ms)
        self.predictor = predictor
        self.max_batch = max_batch
        self.max_wait_ms = float(max_wait_ms)
        self._pending: collections.deque[_Entry] = collections.deque()
        self._pending_items = 0
        self._arrived: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: asyncio.Task | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._draining = False
        self._counts = collections.Counter()
        self._largest_batch = 0
        self._lock = threading.Lock()  # stats() may be read from any thread

    # -- public ------------------------------------------------------------------------------

    async def submit(self, items) -> np.ndarray:
        """Runs `items` through the model with whatever else is waiting.

        Args:
            items: a non-empty list of model inputs (images or strings).

        Returns:
            `predictor.predict`'s rows for `items`, in order: an array `(len(items), ...)`.

        Raises:
            InputError: `items` is empty.
            PredictError: `predict` failed on one of `items`, run alone.
        """
        items = list(items)
        if not items:
            raise InputError("`items` is empty: send at least one image or text.")
        self._start()
        loop = self._loop
        futures = []
        for start in range(0, len(items), self.max_batch):
            entry = _Entry(items[start:start + self.max_batch], loop.create_future(), start)
            self._pending.append(entry)
            self._pending_items += len(entry.items)
            futures.append(entry.future)
        with self._lock:
            self._counts["requests"] += 1
        self._arrived.set()
        parts = await asyncio.gather(*futures)
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    async def run_alone(self, function):
        """Runs `function()` in the model's thread, between batches (predictors are not
        thread-safe): for work on the model that is not a batch of predictions (explanations)."""
        self._start()
        return await self._loop.run_in_executor(self._executor, function)

    @staticmethod
    def check(max_batch, max_wait_ms) -> None:
        """Raises `InputError` for a `max_batch` or `max_wait_ms` outside its range (so a server
        can say so before it loads a model)."""
        low, high = MAX_BATCH_RANGE
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) \
                or not low <= max_batch <= high:
            raise InputError(
                f"`max_batch` must be an int from {low} to {high}. Received: "
                f"max_batch={max_batch!r}."
            )
        low, high = MAX_WAIT_MS_RANGE
        if isinstance(max_wait_ms, bool) or not isinstance(max_wait_ms, (int, float)) \
                or not low <= max_wait_ms <= high:
            raise InputError(
                f"`max_wait_ms` must be a number of milliseconds from {low:g} to {high:g}. "
                f"Received: max_wait_ms={max_wait_ms!r}."
            )

    def drain(self) -> None:
        """Stops waiting for more requests: what is queued, and what comes later, runs at once.
        For a server that is shutting down (safe to call from the event loop only)."""
        self._draining = True
        if self._arrived is not None:
            self._arrived.set()

    def stats(self) -> dict:
        """`requests`, `items`, `batches`, `failed_batches` (model calls that raised, retries
        included), `failed_items`, `mean_batch_size`, `largest_batch`, `queued_items`,
        `max_batch` and `max_wait_ms`: plain numbers, for `/health`."""
        with self._lock:
            counts = dict(self._counts)
            largest = self._largest_batch
        batches = counts.get("batches", 0)
        return {
            "requests": counts.get("requests", 0),
            "items": counts.get("items", 0),
            "batches": batches,
            "failed_batches": counts.get("failed_batches", 0),
            "failed_items": counts.get("failed_items", 0),
            "mean_batch_size": round(counts.get("items", 0) / batches, 3) if batches else 0.0,
            "largest_batch": largest,
            "queued_items": self._pending_items,
            "max_batch": self.max_batch,
            "max_wait_ms": self.max_wait_ms,
        }

    async def aclose(self) -> None:
        """Stops the worker; requests still waiting get a `RuntimeError`. Does not wait for a
        model call in progress."""
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None
        while self._pending:
            entry = self._pending.popleft()
            if not entry.future.done():
                entry.future.set_exception(RuntimeError("The server is shutting down."))
        self._pending_items = 0
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # -- the worker ----------------------------------------------------------------------------

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            raise RuntimeError(
                "This DynamicBatcher runs on another event loop; make one batcher per loop."
            )
        if self._worker is None:
            self._loop = loop
            self._arrived = asyncio.Event()
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="transferkit-model"
            )
            self._worker = loop.create_task(self._work(), name="transferkit-batcher")

    async def _work(self) -> None:
        while True:
            batch = await self._next_batch()
            if batch:
                await self._run(batch)

    async def _next_batch(self) -> list[_Entry]:
        """Waits for a first request, then for more until the batch is full or the oldest
        request has waited `max_wait_ms`; takes whole requests up to `max_batch` items."""
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        deadline = self._pending[0].arrived + self.max_wait_ms / 1000
        while self._pending_items < self.max_batch and not self._draining:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                break
        batch, size = [], 0
        while self._pending and size + len(self._pending[0].items) <= self.max_batch:
            entry = self._pending.popleft()
            self._pending_items -= len(entry.items)
            if entry.future.done():  # its client went away: do not spend the model on it
                continue
            batch.append(entry)
            size += len(entry.items)
        return batch

    async def _run(self, batch: list[_Entry]) -> None:
        items = [item for entry in batch for item in entry.items]
        try:
            rows = await self._isolated(items)
        except asyncio.CancelledError:
            for entry in batch:
                if not entry.future.done():
                    entry.future.set_exception(RuntimeError("The server is shutting down."))
            raise
        start = 0
        for entry in batch:
            own = rows[start:start + len(entry.items)]
            start += len(entry.items)
            if entry.future.done():
                continue
            failed = [i for i, row in enumerate(own) if isinstance(row, BaseException)]
            if failed:
                error = PredictError(entry.offset + failed[0], own[failed[0]])
                error.__cause__ = own[failed[0]]
                entry.future.set_exception(error)
            else:
                entry.future.set_result(np.stack(own))

    async def _isolated(self, items: list) -> list:
        """One row per item, or the exception `predict` raised for that item alone: a failed
        call is run again in halves, so a failing item costs about 2 log2(len(items)) calls."""
        try:
            outputs = await self._loop.run_in_executor(self._executor, self._predict, items)
        except Exception as exc:  # noqa: BLE001 - it belongs to the item that caused it
            with self._lock:
                self._counts["failed_batches"] += 1
            if len(items) == 1:
                with self._lock:
                    self._counts["failed_items"] += 1
                return [exc]
            middle = len(items) // 2
            return await self._isolated(items[:middle]) + await self._isolated(items[middle:])
        with self._lock:
            self._counts["batches"] += 1
            self._counts["items"] += len(items)
            self._largest_batch = max(self._largest_batch, len(items))
        return list(outputs)

    def _predict(self, items: list) -> np.ndarray:
        """`predictor.predict`, checked: one row per item (runs in the model thread)."""
        outputs = np.asarray(self.predictor.predict(items))
        if outputs.ndim < 1 or outputs.shape[0] != len(items):
            raise RuntimeError(
                f"The predictor returned {outputs.shape[0] if outputs.ndim else 'a scalar'} rows "
                f"for {len(items)} inputs; `predict` must return one row per input."
            )
        return outputs
