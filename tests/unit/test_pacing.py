"""The request budget, the per-host breaker and the schedules, on a clock the tests move by hand."""

from __future__ import annotations

import asyncio

import pytest

from packagestats.pacing import Breaker, TokenBucket, next_scrape, retry_delay, schedule_offset


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_never_lends_more_than_its_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(60, clock)  # one a second, bursts of one
    delays = [bucket.reserve() for _ in range(5)]
    assert delays == [0.0, 1.0, 2.0, 3.0, 4.0]  # reserved in arrival order, one second apart
    clock.now += 10
    # Ten idle seconds refill only up to the capacity: the backlog of 4 is paid, then one is free.
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(1.0)
    assert bucket.waits == 5 and bucket.granted == 7


def test_bucket_burst_is_one_seconds_worth() -> None:
    clock = Clock()
    bucket = TokenBucket(600, clock)  # ten a second
    assert [bucket.reserve() for _ in range(10)] == [0.0] * 10
    assert bucket.reserve() == pytest.approx(0.1)
    with pytest.raises(ValueError):
        TokenBucket(0)


async def test_bucket_acquire_waits() -> None:
    bucket = TokenBucket(1200)  # 20 a second
    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.gather(*(bucket.acquire() for _ in range(40)))
    # 20 at once, then 20 more at 20 a second
    assert loop.time() - start >= 0.9
    assert bucket.waited_seconds > 0


async def test_breaker_counts_a_burst_once_and_doubles_after_a_failed_probe() -> None:
    clock = Clock()
    b = Breaker(base=30, max=100, clock=clock)
    assert await b.admit() and b.state == "closed"
    sent = clock.now
    clock.now += 1
    assert b.failure(sent) == 30  # the first failure of an outage: the base
    # Eight more that were in flight when it opened: the same outage.
    for _ in range(8):
        assert b.failure(sent) == pytest.approx(30)
    assert b.opened == 1 and b.state == "open"
    assert not await b.admit()
    clock.now += 30
    assert b.state == "half_open"
    assert await b.admit()  # the probe
    probe_sent = clock.now
    waiter = asyncio.ensure_future(b.admit())  # others wait for the probe's answer
    await asyncio.sleep(0)
    assert not waiter.done()
    assert b.failure(probe_sent) == 60  # the probe failed: double
    assert await waiter is False
    clock.now += 60
    assert await b.admit()
    assert b.failure(clock.now) == 100  # bounded by max
    clock.now += 100
    assert await b.admit()
    b.success()  # one success resets
    assert b.state == "closed" and await b.admit()
    assert b.failure(clock.now) == 30


async def test_breaker_honours_retry_after_as_given() -> None:
    clock = Clock()
    b = Breaker(base=30, max=900, clock=clock)
    assert b.failure(clock.now, retry_after=10) == 10
    assert b.remaining() == 10
    # A later answer of the same burst asking for longer wins; shorter does not shorten it.
    assert b.failure(clock.now - 1, retry_after=20) == 20
    assert b.failure(clock.now - 1, retry_after=5) == 20
    assert b.failure(clock.now, retry_after=5000) == 900  # bounded by max


async def test_breaker_lets_another_probe_go_when_one_is_cancelled() -> None:
    clock = Clock()
    b = Breaker(base=5, clock=clock)
    b.failure(clock.now)
    clock.now += 5
    assert await b.admit()
    waiter = asyncio.ensure_future(b.admit())
    await asyncio.sleep(0)
    b.neutral()  # the probe ended without an answer
    assert await waiter is True  # the waiter probes now


def test_retry_delay_doubles_up_to_the_interval_and_waits_for_the_cooldown() -> None:
    assert [retry_delay(n, 60, 3600) for n in (1, 2, 3, 6, 7, 20)] == [60, 120, 240, 1920, 3600, 3600]
    assert retry_delay(1, 60, 3600, not_before=300) == 300
    assert retry_delay(1, 60, 30) == 30


def test_schedule_offset_is_stable_and_spread() -> None:
    uids = [f"uid-{i}" for i in range(200)]
    offsets = [schedule_offset(u, 3600, 0.1) for u in uids]
    assert offsets == [schedule_offset(u, 3600, 0.1) for u in uids]
    assert all(0 <= o < 360 for o in offsets)
    assert len({int(o // 36) for o in offsets}) == 10  # every tenth of the window gets some
    assert schedule_offset("x", 3600, 0) == 0


def test_next_scrape_keeps_a_grid() -> None:
    anchor = 10_000.0 + 100  # created at 10,000, offset 100
    assert next_scrape(10_000, 3600, anchor) == anchor + 3600  # the first: interval plus the offset
    assert next_scrape(anchor + 3600, 3600, anchor) == anchor + 7200  # on the grid: one interval apart
    # An out-of-turn scrape moves the next by at most half an interval.
    assert next_scrape(anchor + 3600 + 1000, 3600, anchor) == anchor + 7200
    assert next_scrape(anchor + 3600 + 2000, 3600, anchor) == anchor + 10800
