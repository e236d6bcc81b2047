"""`DynamicBatcher`: concurrent requests share model calls, in order, with errors kept apart."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from transferkit.errors import InputError
from transferkit.serving.batching import DynamicBatcher, PredictError


class SlowEcho:
    """A predictor that takes `delay` seconds per call and answers `[item, 2 * item]` per item;
    an item equal to `fail_on` makes the whole call raise. Records every call and its thread."""

    def __init__(self, delay=0.02, fail_on=None):
        self.delay = delay
        self.fail_on = fail_on
        self.calls: list[list] = []
        self.threads: set[int] = set()

    def predict(self, items):
        self.calls.append(list(items))
        self.threads.add(threading.get_ident())
        time.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError(f"cannot handle {self.fail_on}")
        values = np.asarray(items, dtype=np.float32)
        return np.stack([values, 2 * values], axis=1)


async def _submit_all(batcher, requests, stagger=0.0):
    async def one(index, items):
        await asyncio.sleep(stagger * index)
        return await batcher.submit(items)

    try:
        return await asyncio.gather(
            *(one(i, items) for i, items in enumerate(requests)), return_exceptions=True
        )
    finally:
        await batcher.aclose()


def test_concurrent_requests_share_model_calls_and_keep_their_rows():
    predictor = SlowEcho()
    batcher = DynamicBatcher(predictor, max_batch=8, max_wait_ms=20)
    requests = [[float(i)] for i in range(20)]
    results = asyncio.run(_submit_all(batcher, requests))
    assert len(predictor.calls) < len(requests)
    assert all(len(call) <= 8 for call in predictor.calls)
    assert sorted(x for call in predictor.calls for x in call) == list(range(20))
    for items, rows in zip(requests, results):
        np.testing.assert_array_equal(rows, [[items[0], 2 * items[0]]])
    stats = batcher.stats()
    assert stats["requests"] == 20 and stats["items"] == 20
    assert stats["batches"] == len(predictor.calls)
    assert stats["mean_batch_size"] == pytest.approx(20 / len(predictor.calls), abs=1e-3)
    assert stats["largest_batch"] == max(len(call) for call in predictor.calls)


def test_requests_of_several_items_are_never_split_and_keep_their_order():
    predictor = SlowEcho()
    batcher = DynamicBatcher(predictor, max_batch=5, max_wait_ms=20)
    sizes = [3, 2, 4, 1, 5, 2, 3]
    requests, start = [], 0
    for size in sizes:
        requests.append([float(v) for v in range(start, start + size)])
        start += size
    results = asyncio.run(_submit_all(batcher, requests))
    for items, rows in zip(requests, results):
        np.testing.assert_array_equal(rows[:, 0], items)
        np.testing.assert_array_equal(rows[:, 1], 2 * np.asarray(items))
        # All the items of a request went to the model together, in order.
        holders = [call for call in predictor.calls if items[0] in call]
        assert len(holders) == 1
        first = holders[0].index(items[0])
        assert holders[0][first:first + len(items)] == items
    assert len(predictor.calls) < len(requests)


def test_a_request_larger_than_max_batch_runs_in_chunks():
    predictor = SlowEcho(delay=0.0)
    batcher = DynamicBatcher(predictor, max_batch=4, max_wait_ms=1)
    items = [float(v) for v in range(11)]
    (rows, small) = asyncio.run(_submit_all(batcher, [items, [100.0]]))
    np.testing.assert_array_equal(rows[:, 0], items)
    np.testing.assert_array_equal(small, [[100.0, 200.0]])
    assert all(len(call) <= 4 for call in predictor.calls)
    assert [x for call in predictor.calls for x in call if x < 100] == items


def test_an_error_reaches_only_the_requests_of_its_batch():
    predictor = SlowEcho(fail_on=13.0)
    batcher = DynamicBatcher(predictor, max_batch=1, max_wait_ms=0)
    results = asyncio.run(_submit_all(batcher, [[1.0], [13.0], [2.0]]))
    assert isinstance(results[1], PredictError) and results[1].index == 0
    assert isinstance(results[1].error, ValueError) and "cannot handle 13.0" in str(results[1])
    np.testing.assert_array_equal(results[0], [[1.0, 2.0]])
    np.testing.assert_array_equal(results[2], [[2.0, 4.0]])
    assert batcher.stats()["failed_batches"] == 1 and batcher.stats()["batches"] == 2


def test_the_batcher_keeps_serving_after_a_failed_batch():
    predictor = SlowEcho(delay=0.0, fail_on=13.0)

    async def scenario():
        batcher = DynamicBatcher(predictor, max_batch=4, max_wait_ms=1)
        try:
            with pytest.raises(PredictError, match="item 0: ValueError: cannot handle"):
                await batcher.submit([13.0, 1.0])
            return await batcher.submit([3.0])
        finally:
            await batcher.aclose()

    np.testing.assert_array_equal(asyncio.run(scenario()), [[3.0, 6.0]])


def test_a_batch_waits_for_requests_within_max_wait_ms():
    predictor = SlowEcho(delay=0.0)
    batcher = DynamicBatcher(predictor, max_batch=8, max_wait_ms=400)
    asyncio.run(_submit_all(batcher, [[1.0], [2.0], [3.0]], stagger=0.03))
    assert predictor.calls == [[1.0, 2.0, 3.0]]

    predictor = SlowEcho(delay=0.0)
    batcher = DynamicBatcher(predictor, max_batch=8, max_wait_ms=0)
    asyncio.run(_submit_all(batcher, [[1.0], [2.0], [3.0]], stagger=0.05))
    assert predictor.calls == [[1.0], [2.0], [3.0]]


def test_a_full_batch_does_not_wait():
    predictor = SlowEcho(delay=0.0)
    batcher = DynamicBatcher(predictor, max_batch=2, max_wait_ms=1_000)  # the longest allowed
    started = time.monotonic()
    asyncio.run(_submit_all(batcher, [[1.0], [2.0]]))
    assert time.monotonic() - started < 0.5
    assert predictor.calls == [[1.0, 2.0]]


def test_predict_runs_in_one_thread_off_the_event_loop():
    predictor = SlowEcho(delay=0.005)
    batcher = DynamicBatcher(predictor, max_batch=2, max_wait_ms=1)
    asyncio.run(_submit_all(batcher, [[float(i)] for i in range(9)]))
    assert len(predictor.threads) == 1
    assert threading.get_ident() not in predictor.threads


def test_a_predictor_that_loses_rows_is_an_error_of_that_request():
    class Short(SlowEcho):
        def predict(self, items):
            return super().predict(items)[:-1]

    batcher = DynamicBatcher(Short(delay=0.0), max_batch=4, max_wait_ms=0)
    (result,) = asyncio.run(_submit_all(batcher, [[1.0, 2.0]]))
    # Every item fails alone too: the first one is named.
    assert isinstance(result, PredictError) and "item 0: RuntimeError" in str(result)
    assert "0 rows for 1 inputs" in str(result)


def test_bad_settings_and_empty_requests_say_what_to_do():
    with pytest.raises(InputError, match=r"`max_batch` must be an int from 1 to 1024. Received: "
                                         r"max_batch=0"):
        DynamicBatcher(SlowEcho(), max_batch=0)
    with pytest.raises(InputError, match=r"`max_wait_ms` must be .* Received: max_wait_ms=-1"):
        DynamicBatcher(SlowEcho(), max_wait_ms=-1)
    batcher = DynamicBatcher(SlowEcho())
    (result,) = asyncio.run(_submit_all(batcher, [[]]))
    assert isinstance(result, InputError) and "at least one" in str(result)
