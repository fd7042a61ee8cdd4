"""Pure functions: the results of one scrape + the previous status -> the new status and its Events.

Nothing here does I/O, so every rule about keeping good values is unit-tested without a cluster:
a failed or unparseable package keeps its last good counts, nothing is ever written as 0 for lack of
data, and a condition's lastTransitionTime moves only when its status does.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field

from packagestats.api import (
    Condition,
    ConditionStatus,
    ConditionType,
    DailyCount,
    HistoryPoint,
    PackageRef,
    PackageStatsStatus,
    PackageStatus,
    VersionDownloads,
)

MAX_MESSAGE = 2000


@dataclass(frozen=True)
class Scraped:
    """What a good scrape of one package gave."""

    url: str
    downloads: int
    approximate: bool = False
    daily: Sequence[DailyCount] = ()
    versions: Sequence[VersionDownloads] = ()
    last_published: datetime.datetime | None = None


@dataclass(frozen=True)
class Failure:
    """Why the scrape of one package failed. `permanent`: retrying will not help until something changes
    (404, a page without a count); the rest (timeouts, 5xx, 429) are expected to pass."""

    reason: str
    message: str
    permanent: bool
    url: str | None = None


Outcome = Scraped | Failure


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Result:
    status: PackageStatsStatus
    events: list[Event] = field(default_factory=list)


def _key(type_: str, name: str) -> tuple[str, str]:
    return (type_, name)


def _with_point(points: Sequence[HistoryPoint], day: datetime.date, value: int,
                keep: int) -> list[HistoryPoint]:
    """One point per UTC day: the day's last value replaces an earlier one of the same day."""
    kept = [p for p in points if p.date != day]
    kept.append(HistoryPoint(date=day, downloads=value))
    kept.sort(key=lambda p: p.date)
    return kept[-keep:]


def _package(ref: PackageRef, prev: PackageStatus | None, outcome: Outcome, now: datetime.datetime,
             history_days: int, max_versions: int) -> PackageStatus:
    if isinstance(outcome, Failure):
        if prev is None:
            return PackageStatus(name=ref.name, type=ref.type, repository=ref.repository,
                                 url=outcome.url, error=outcome.message, error_reason=outcome.reason)
        return prev.model_copy(update={"error": outcome.message, "error_reason": outcome.reason,
                                       "repository": ref.repository})
    return PackageStatus(
        name=ref.name,
        type=ref.type,
        repository=ref.repository,
        url=outcome.url,
        downloads=outcome.downloads,
        approximate=outcome.approximate,
        last_scrape_time=now,
        last_published=outcome.last_published,
        daily=list(outcome.daily),
        versions=list(outcome.versions)[:max_versions],
        history=_with_point(prev.history if prev else [], now.date(), outcome.downloads, history_days),
    )


def _condition(prev: PackageStatsStatus | None, type_: ConditionType, status: ConditionStatus,
               reason: str, message: str, now: datetime.datetime, generation: int) -> Condition:
    old = prev.condition(type_) if prev else None
    since = old.last_transition_time if old is not None and old.status == status else now
    return Condition(type=type_, status=status, reason=reason, message=message[:MAX_MESSAGE],
                     last_transition_time=since, observed_generation=generation)


def _label(ref: PackageRef) -> str:
    return ref.name if ref.type == "container" else f"{ref.name} ({ref.type})"


def _summary(parts: list[str]) -> str:
    text = "; ".join(parts)
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def reconciling(prev: PackageStatsStatus | None, generation: int, now: datetime.datetime) -> PackageStatsStatus:
    """The status to apply when a scrape of a new generation starts: Reconciling=True, all else kept."""
    base = prev or PackageStatsStatus()
    # Only our own condition types: applying another manager's would take co-ownership of it.
    conditions = [c for c in base.conditions if c.type in ("Ready", "Stalled")]
    conditions.append(_condition(prev, "Reconciling", "True", "Scraping",
                                 f"Scraping for generation {generation}", now, generation))
    if base.condition("Ready") is None:
        conditions.append(_condition(prev, "Ready", "Unknown", "Scraping", "First scrape in progress",
                                     now, generation))
    return base.model_copy(update={"conditions": _ordered(conditions)})


def _ordered(conditions: list[Condition]) -> list[Condition]:
    order = {"Ready": 0, "Reconciling": 1, "Stalled": 2}
    return sorted(conditions, key=lambda c: order.get(c.type, len(order)))


def build(
    prev: PackageStatsStatus | None,
    targets: Sequence[PackageRef],
    outcomes: dict[tuple[str, str], Outcome],
    *,
    generation: int,
    now: datetime.datetime,
    history_days: int,
    max_versions: int,
    requested_at: str | None = None,
    discovery_error: Failure | None = None,
) -> Result:
    """The whole status after one scrape of `targets`; packages no longer targeted drop out."""
    previous = {_key(p.type, p.name): p for p in (prev.packages if prev else [])}
    packages: list[PackageStatus] = []
    failures: list[tuple[PackageRef, Failure]] = []
    changes: list[str] = []
    for ref in targets:
        key = _key(ref.type, ref.name)
        old = previous.get(key)
        outcome = outcomes.get(key) or discovery_error or Failure("NotScraped", "not scraped", permanent=False)
        new = _package(ref, old, outcome, now, history_days, max_versions)
        packages.append(new)
        if isinstance(outcome, Failure):
            failures.append((ref, outcome))
        elif old is None or old.downloads != new.downloads:
            before = "none" if old is None or old.downloads is None else f"{old.downloads}"
            changes.append(f"{_label(ref)}: {before} -> {new.downloads}")

    known = [p.downloads for p in packages if p.downloads is not None]
    total = sum(known) if known else None
    succeeded = len(targets) - len(failures)
    history = list(prev.history) if prev else []
    if total is not None and succeeded:
        history = _with_point(history, now.date(), total, history_days)

    events: list[Event] = []
    if discovery_error is not None:
        ready = _condition(prev, "Ready", "False", "DiscoveryFailed",
                           f"Listing the owner's packages failed: {discovery_error.message}", now, generation)
        stalled_reason = discovery_error.reason if discovery_error.permanent else None
        events.append(Event("Warning", "DiscoveryFailed", ready.message))
    elif failures:
        reason = "ScrapeFailed" if succeeded == 0 else "PartiallyFailed"
        detail = _summary([f"{_label(ref)}: {f.message}" for ref, f in failures])
        message = f"{len(failures)} of {len(targets)} packages failed, last good values kept: {detail}"
        ready = _condition(prev, "Ready", "False", reason, message, now, generation)
        permanent = [f for _, f in failures if f.permanent]
        stalled_reason = permanent[0].reason if len(permanent) == len(failures) else None
        events.append(Event("Warning", reason, message))
    elif not targets:
        ready = _condition(prev, "Ready", "False", "NoPackages", "The owner has no public packages",
                           now, generation)
        stalled_reason = "NoPackages"
    else:
        ready = _condition(prev, "Ready", "True", "Succeeded",
                           f"Scraped {len(targets)} package{'s' if len(targets) != 1 else ''}", now, generation)
        stalled_reason = None
    if changes:
        events.append(Event("Normal", "DownloadsChanged", _summary(changes)))

    stalled = (_condition(prev, "Stalled", "True", stalled_reason,
                          "Retrying on the interval will not help until the spec or the page changes",
                          now, generation)
               if stalled_reason else
               _condition(prev, "Stalled", "False", "Progressing", "", now, generation))
    reconciling_done = _condition(prev, "Reconciling", "False", "Idle", "", now, generation)

    status = PackageStatsStatus(
        observed_generation=generation,
        last_handled_requested_at=requested_at if requested_at is not None
        else (prev.last_handled_requested_at if prev else None),
        total_downloads=total,
        last_scrape_time=now if succeeded and discovery_error is None else (prev.last_scrape_time if prev else None),
        packages=packages,
        history=history,
        conditions=[ready, reconciling_done, stalled],
    )
    return Result(status=status, events=events)
