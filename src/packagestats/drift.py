"""Drift alarms: does a freshly parsed count look like the page's markup changed under the parser?

A parse that goes wrong can still yield a number: a smaller total, a look-alike heading, a sparkline
or versions list read from the wrong block. Pure rules decide whether a scrape's numbers are
suspicious against the package's last good status; a suspicious total is held back (the last good one
stays) until the next scrape agrees with it or a user accepts it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# An abbreviated total ("1.4M") may read below the exact total it rounds: allow its precision.
_APPROXIMATE_SLACK = 0.05
# Two scrapes agree when the second is the held value plus what a package gains between two scrapes.
_AGREE_RELATIVE = 0.01
_AGREE_ABSOLUTE = 100


@dataclass(frozen=True)
class Reading:
    """What one scrape of a package gave."""

    downloads: int
    approximate: bool
    daily: Sequence[int] = ()
    versions: Sequence[tuple[int, bool]] = ()  # (downloads, approximate) per version row


@dataclass(frozen=True)
class Suspicion:
    reason: str  # CamelCase: TotalDecreased, DailyAboveTotal, VersionsAboveTotal, TotalJumped
    message: str


def check(reading: Reading, last_good: int | None, jump_factor: float) -> Suspicion | None:
    """Why `reading` looks wrong against the last good total, or None when it looks right."""
    total = reading.downloads
    if last_good is not None:
        floor = last_good * (1 - _APPROXIMATE_SLACK) if reading.approximate else last_good
        if total < floor:
            return Suspicion("TotalDecreased", f"total {total} is below the last good total {last_good}")
        if jump_factor > 0 and last_good > 0 and total > last_good * jump_factor:
            return Suspicion("TotalJumped", f"total {total} is more than {jump_factor:g} times the last good "
                                            f"total {last_good}")
    slack = total * _APPROXIMATE_SLACK if reading.approximate else 0
    daily = sum(reading.daily)
    if daily > total + slack:
        return Suspicion("DailyAboveTotal", f"the 30 days sum to {daily}, above the total {total}")
    # Abbreviated rows ("1.2K") round up as often as down: only exact rows count against the total.
    versions = sum(n for n, approximate in reading.versions if not approximate)
    if versions > total + slack:
        return Suspicion("VersionsAboveTotal", f"versions sum to {versions}, above the total {total}")
    return None


def agrees(held: int | None, total: int) -> bool:
    """Whether `total` confirms the value held back at the previous scrape."""
    if held is None:
        return False
    return held <= total <= held + max(held * _AGREE_RELATIVE, _AGREE_ABSOLUTE)


@dataclass(frozen=True)
class Verdict:
    """`hold`: the suspicion to report, with the value to hold back; None: write the reading."""

    hold: Suspicion | None
    accepted: Suspicion | None = None  # a suspicion overruled (agreement or the user), for an Event


def judge(reading: Reading, last_good: int | None, held: int | None, jump_factor: float,
          accept: bool) -> Verdict:
    """Hold a suspicious reading back, unless it agrees with the one held at the previous scrape or the
    user accepted it (`accept`)."""
    suspicion = check(reading, last_good, jump_factor)
    if suspicion is None:
        return Verdict(None)
    if accept or agrees(held, reading.downloads):
        return Verdict(None, accepted=suspicion)
    return Verdict(suspicion)
