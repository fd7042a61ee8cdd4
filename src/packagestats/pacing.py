"""How often the operator may ask GitHub, and when: the request budget, the per-host breaker and the
per-package retry schedule.

- `TokenBucket`: one per process, shared by every resource. A request waits for a token instead of
  failing, so a burst of work becomes a steady stream at the budget's rate.
- `Breaker`: one per host. A 429 (or 403 with Retry-After), a 5xx, a timeout or a refused connection
  opens it: no request is sent to the host until the cooldown is over (`Retry-After` when given, else
  `base` seconds). The first request after a cooldown is a probe; the others wait for its answer. If the
  probe fails too, the next cooldown doubles (up to `max`); one success closes the breaker and resets
  the doubling. Failures of requests that were already in flight when the breaker opened are the same
  outage and count once.
- `retry_delay` and `Schedule`: when a resource and each of its packages are due again.

Everything here is pure bookkeeping over a monotonic clock (injectable for tests); nothing does I/O.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]


@dataclass(frozen=True)
class BreakerFigures:
    host: str
    state: str  # closed | open | half_open
    remaining: float  # seconds of cooldown left
    opened: int  # cooldowns started since start-up


@dataclass(frozen=True)
class PacingFigures:
    """The budget and the breakers now, for metrics."""

    budget_per_minute: float
    tokens: float  # negative: reserved ahead by waiting requests
    granted: int
    waits: int
    waited_seconds: float
    breakers: list[BreakerFigures]


class TokenBucket:
    """At most `per_minute` requests a minute on average, in bursts of at most one second's worth
    (at least one request). Waiters are served in arrival order: a token is reserved at once and the
    caller sleeps until it is due, so no waiter can be starved by later ones."""

    def __init__(self, per_minute: float, clock: Clock = time.monotonic) -> None:
        if per_minute <= 0:
            raise ValueError("the request budget must be positive")
        self.rate = per_minute / 60.0  # tokens per second
        self.capacity = max(1.0, self.rate)
        self._clock = clock
        self._tokens = self.capacity
        self._stamp = clock()
        self.waited_seconds = 0.0  # in all, for metrics
        self.waits = 0  # requests that had to wait
        self.granted = 0

    def _refill(self) -> float:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        return now

    def reserve(self) -> float:
        """Take a token; the seconds to wait before using it (0: now)."""
        self._refill()
        self._tokens -= 1.0
        self.granted += 1
        if self._tokens >= 0:
            return 0.0
        delay = -self._tokens / self.rate
        self.waits += 1
        self.waited_seconds += delay
        return delay

    async def acquire(self) -> float:
        """Wait for a token; the seconds waited."""
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)
        return delay

    def available(self) -> float:
        """Tokens available now (negative: reserved ahead by waiting requests)."""
        self._refill()
        return self._tokens


@dataclass
class Breaker:
    """The circuit breaker of one host; see the module's docstring."""

    base: float = 30.0
    max: float = 1800.0
    clock: Clock = time.monotonic
    open_until: float = 0.0  # monotonic deadline of the cooldown
    opened_at: float = -math.inf  # when the current or last cooldown began
    last_cooldown: float = 0.0  # the length of the last cooldown of this outage (0: closed)
    opened: int = 0  # cooldowns started, for metrics
    _probe: asyncio.Future[bool] | None = field(default=None, repr=False)

    def remaining(self) -> float:
        return max(0.0, self.open_until - self.clock())

    @property
    def state(self) -> str:
        if self.remaining() > 0:
            return "open"
        return "half_open" if self.last_cooldown > 0 else "closed"

    async def admit(self) -> bool:
        """Before a request: False while the host cools down (the caller fails fast). After a cooldown
        the first caller is let through as the probe; the others wait for its answer."""
        while True:
            if self.remaining() > 0:
                return False
            if self.last_cooldown == 0:
                return True
            if self._probe is None or self._probe.done():
                self._probe = asyncio.get_running_loop().create_future()
                return True
            ok = await asyncio.shield(self._probe)
            if ok:
                return True
            # The probe failed: a new cooldown runs; report it.

    def success(self) -> None:
        """The host answered (anything that is not an outage): close and reset."""
        self.last_cooldown = 0.0
        self.open_until = 0.0
        self._settle(True)

    def failure(self, started: float, retry_after: float | None = None) -> float:
        """A request sent at monotonic time `started` met an outage (429, 5xx, timeout, refused).
        Returns the cooldown now in force (seconds from now)."""
        now = self.clock()
        if started < self.opened_at or now < self.open_until:
            # In flight when the breaker opened, or while it is open: the same outage, counted once. A
            # longer Retry-After still wins: it is what the host asked for.
            if retry_after is not None:
                self.open_until = max(self.open_until, now + min(retry_after, self.max))
            return self.remaining()
        # A request after a cooldown failed again: double; the first failure of an outage: the base.
        seconds = min(self.max, 2 * self.last_cooldown) if self.last_cooldown > 0 else min(self.base, self.max)
        self.last_cooldown = seconds
        if retry_after is not None:
            seconds = min(retry_after, self.max)
        self.open_until = now + seconds
        self.opened_at = now
        self.opened += 1
        self._settle(False)
        return seconds

    def neutral(self) -> None:
        """The request ended with neither verdict (cancelled, refused locally): let another probe go."""
        if self._probe is not None and not self._probe.done():
            self._probe.set_result(self.remaining() == 0 and self.last_cooldown == 0)
            self._probe = None

    def _settle(self, ok: bool) -> None:
        if self._probe is not None and not self._probe.done():
            self._probe.set_result(ok)
        self._probe = None


def retry_delay(failures: int, retry_interval: float, interval: float, not_before: float = 0.0) -> float:
    """Seconds until the next try of a package after its `failures`-th transient failure in a row:
    retry_interval, doubling, capped at the interval; never before the host's cooldown (`not_before`)."""
    backoff = min(interval, retry_interval * 2.0 ** max(0, failures - 1))
    return max(backoff, not_before)


def schedule_offset(uid: str, interval: float, spread: float) -> float:
    """A stable offset in [0, spread * interval) from the object's uid, so that resources created
    together scrape at different times (and keep doing so across restarts and replicas)."""
    digest = hashlib.sha256(uid.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * spread * interval


def next_scrape(last: float, interval: float, anchor: float) -> float:
    """The next scheduled scrape after one at `last` (all wall-clock seconds): the first point of the
    grid `anchor + k * interval` at least half an interval after `last`. Scrapes on the schedule come
    exactly one interval apart; one asked for out of turn (requestedAt, a spec change) moves the next
    by at most half an interval either way."""
    k = math.ceil((last + interval / 2 - anchor) / interval)
    return anchor + k * interval
