"""`FairPool`: the least-served call goes next; a failed call starts no more of its jobs."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from transferkit.serving.fair_pool import FairPool


def _job(name, log, delay=0.02, error=None):
    def run():
        log.append(name)
        time.sleep(delay)
        if error is not None:
            raise error
        return name
    return run


def test_a_call_sent_later_goes_before_the_rest_of_a_large_one():
    log = []

    async def scenario():
        pool = FairPool(threads=1)
        try:
            large = asyncio.ensure_future(pool.map([_job(f"a{i}", log) for i in range(5)]))
            await asyncio.sleep(0.005)  # a0 runs
            small = await pool.map([_job("b0", log)])
            return await large, small
        finally:
            pool.shutdown()

    large, small = asyncio.run(scenario())
    assert large == [f"a{i}" for i in range(5)] and small == ["b0"]
    assert log[:2] == ["a0", "b0"]


def test_large_calls_take_turns_and_a_call_alone_uses_every_thread():
    log, threads = [], set()

    def job(name):
        def run():
            threads.add(threading.get_ident())
            log.append(name)
            time.sleep(0.01)
        return run

    async def scenario():
        pool = FairPool(threads=2)
        try:
            await pool.map([job(f"solo{i}") for i in range(4)])
            log.clear()
            await asyncio.gather(pool.map([job(f"a{i}") for i in range(3)]),
                                 pool.map([job(f"b{i}") for i in range(3)]))
        finally:
            pool.shutdown()

    asyncio.run(scenario())
    assert len(threads) == 2
    # a0 and a1 take both threads before b arrives; then b, which has had none, then turns.
    assert sorted(log[:2]) == ["a0", "a1"] and sorted(log[2:4]) == ["b0", "b1"]
    assert sorted(log[4:]) == ["a2", "b2"]


def test_a_failed_job_raises_and_the_jobs_not_started_never_run():
    log = []

    async def scenario():
        pool = FairPool(threads=1)
        try:
            jobs = [_job("a0", log), _job("a1", log, error=ValueError("bad image")),
                    _job("a2", log), _job("a3", log)]
            with pytest.raises(ValueError, match="bad image"):
                await pool.map(jobs)
            assert await pool.run(_job("b0", log)) == "b0"
        finally:
            pool.shutdown()

    asyncio.run(scenario())
    assert log == ["a0", "a1", "b0"]
