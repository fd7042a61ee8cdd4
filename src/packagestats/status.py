"""Pure functions: the results of one scrape + the previous status -> the new status and its Events.

Nothing here does I/O, so every rule about keeping good values is unit-tested without a cluster:
a failed or unparseable package keeps its last good counts, nothing is ever written as 0 for lack of
data, and a condition's lastTransitionTime moves only when its status does. Every list and string is
cut here to the bounds of `api`, so the status stays within its size budget whatever the pages say.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import pydantic

from packagestats import api
from packagestats.api import (
    Condition,
    ConditionStatus,
    ConditionType,
    DailyCount,
    HistoryPoint,
    PackageRef,
    PackageStatsStatus,
    PackageStatus,
    VersionCount,
    VersionDownloads,
)

# The apiserver refuses an Event whose message is longer than 1024 characters.
MAX_EVENT_MESSAGE = 1024
MAX_MESSAGE = api.MAX_CONDITION_MESSAGE
OUR_CONDITIONS = ("Ready", "Reconciling", "Stalled", "History", "MarkupSuspect", "ParserRefused")


@dataclass(frozen=True)
class Scraped:
    """What a good scrape of one package gave."""

    url: str
    downloads: int
    approximate: bool = False
    daily: Sequence[DailyCount] = ()
    versions: Sequence[VersionDownloads] = ()
    last_published: datetime.datetime | None = None
    parser: str | None = None  # which parser module read it (sandbox.ParserInfo.label)


@dataclass(frozen=True)
class Failure:
    """Why the scrape of one package failed. `permanent`: retrying will not help until something changes
    (404, a page without a count); the rest (timeouts, 5xx, 429) are expected to pass."""

    reason: str
    message: str
    permanent: bool
    url: str | None = None
    held: int | None = None  # MarkupSuspect: the suspect total held back (see drift.py)


@dataclass(frozen=True)
class Kept:
    """Not scraped this time (a retry of other packages of the resource): the package stays as it was."""


Outcome = Scraped | Failure | Kept


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Discovered:
    """What an owner listing gave: the packages kept (at most MAX_PACKAGES, in listing order), how many
    the listing had, and the entries skipped because they fail the spec's patterns (with why)."""

    refs: list[PackageRef]
    listed: int
    skipped: list[str] = field(default_factory=list)


def discovered(owner: str, entries: Sequence[tuple[str, str, str | None]]) -> Discovered:
    """An owner listing's (name, type, repository) entries, in listing order -> the packages to track:
    each checked as spec.packages are (patterns, type, a repository of the same owner), at most
    MAX_PACKAGES of them, the first ones."""
    refs: list[PackageRef] = []
    skipped: list[str] = []
    seen: set[tuple[str, str]] = set()
    for name, type_, repository in entries:
        if (type_, name) in seen:
            continue
        seen.add((type_, name))
        problem: str | None = None
        try:
            ref = PackageRef.model_validate({"name": name, "type": type_, "repository": repository})
        except pydantic.ValidationError as e:
            first = e.errors()[0]
            problem = f"{'.'.join(str(x) for x in first['loc'])}: {first['msg']}"
        else:
            if ref.repository and "/" in ref.repository and \
                    not ref.repository.lower().startswith(owner.lower() + "/"):
                problem = f"repository {ref.repository} does not belong to {owner}"
            elif ref.type == "container" and ref.name != ref.name.lower():
                problem = "container package names are lowercase"
        if problem is not None:
            skipped.append(f"{type_} {_cut(name, 80)}: {problem}")
        elif len(refs) < api.MAX_PACKAGES:
            refs.append(ref)
    return Discovered(refs, len(seen), skipped)


@dataclass(frozen=True)
class Result:
    status: PackageStatsStatus
    events: list[Event] = field(default_factory=list)
    # The good scrapes of this run, for the history database.
    scraped: list[tuple[PackageRef, Scraped]] = field(default_factory=list)


def _key(type_: str, name: str) -> tuple[str, str]:
    return (type_, name)


def _with_point(points: Sequence[HistoryPoint], day: datetime.date, value: int,
                keep: int) -> list[HistoryPoint]:
    """One point per UTC day: the day's last value replaces an earlier one of the same day."""
    kept = [p for p in points if p.date != day]
    kept.append(HistoryPoint(date=day, downloads=value))
    kept.sort(key=lambda p: p.date)
    return kept[-keep:]


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ascii(text: str, limit: int) -> str:
    """Printable ASCII of at most `limit` characters (the CRD's pattern for a package's error)."""
    clean = "".join(ch if " " <= ch <= "~" else "?" for ch in text)
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


def _url(url: str | None) -> str | None:
    # Informational only: an absurdly long URL is left out rather than refused with the whole status.
    return url if url is not None and len(url) <= api.MAX_URL else None


def version_label(v: VersionDownloads) -> str:
    return v.tags[0] if v.tags else (v.name or v.id or "")


def _versions(rows: Sequence[VersionDownloads], max_versions: int) -> list[VersionCount]:
    keep = min(max_versions, api.MAX_STATUS_VERSIONS)
    return [VersionCount(version=_ascii(version_label(v), api.MAX_VERSION_LABEL), downloads=v.downloads,
                         approximate=True if v.approximate else None)
            for v in rows[:keep]]


def _latest_day(daily: Sequence[DailyCount], today: datetime.date) -> DailyCount | None:
    """The newest day of the chart that is over (today's bar is still growing)."""
    done = [d for d in daily if d.date < today]
    return max(done, key=lambda d: d.date) if done else None


def _package(ref: PackageRef, prev: PackageStatus | None, outcome: Outcome, now: datetime.datetime,
             max_versions: int) -> PackageStatus:
    if isinstance(outcome, Kept):
        return prev or PackageStatus(name=ref.name, type=ref.type, repository=ref.repository)
    if isinstance(outcome, Failure):
        error = {"error": _ascii(outcome.message, api.MAX_ERROR), "error_reason": outcome.reason,
                 "held": outcome.held}
        if prev is None:
            return PackageStatus(name=ref.name, type=ref.type, repository=ref.repository,
                                 url=_url(outcome.url), **error)
        return prev.model_copy(update={**error, "repository": ref.repository})
    return PackageStatus(
        name=ref.name,
        type=ref.type,
        repository=ref.repository,
        url=_url(outcome.url),
        downloads=outcome.downloads,
        approximate=outcome.approximate,
        last_scrape_time=now,
        last_published=outcome.last_published,
        last30_days=sum(d.count for d in outcome.daily) if outcome.daily else None,
        latest_day=_latest_day(outcome.daily, now.date()),
        versions=_versions(outcome.versions, max_versions),
        parser=outcome.parser,
    )


def _daily_sum(scraped: Sequence[Scraped]) -> list[DailyCount]:
    per_day: dict[datetime.date, int] = {}
    for outcome in scraped:
        for d in outcome.daily:
            per_day[d.date] = per_day.get(d.date, 0) + d.count
    return [DailyCount(date=day, count=n) for day, n in sorted(per_day.items())][-api.MAX_STATUS_DAILY:]


def _condition(prev: PackageStatsStatus | None, type_: ConditionType, status: ConditionStatus,
               reason: str, message: str, now: datetime.datetime, generation: int) -> Condition:
    old = prev.condition(type_) if prev else None
    since = old.last_transition_time if old is not None and old.status == status else now
    return Condition(type=type_, status=status, reason=reason, message=_cut(message, MAX_MESSAGE),
                     last_transition_time=since, observed_generation=generation)


def _label(ref: PackageRef) -> str:
    return ref.name if ref.type == "container" else f"{ref.name} ({ref.type})"


def summary(parts: Sequence[str], limit: int = MAX_EVENT_MESSAGE, prefix: str = "") -> str:
    """`prefix` and as many whole parts as fit in `limit` characters, then "and N more"."""
    text = prefix + "; ".join(parts)
    if len(text) <= limit:
        return text
    shown: list[str] = []
    for i, part in enumerate(parts):
        more = f"; and {len(parts) - i - 1} more"
        if len(prefix + "; ".join([*shown, part]) + more) > limit:
            break
        shown.append(part)
    head = prefix + "; ".join(shown)
    return _cut(f"{head}{'; ' if shown else ''}and {len(parts) - len(shown)} more", limit)


def reconciling(prev: PackageStatsStatus | None, generation: int, now: datetime.datetime) -> PackageStatsStatus:
    """The status to apply when a scrape of a new generation starts: Reconciling=True, all else kept."""
    base = prev or PackageStatsStatus()
    # Only our own condition types: applying another manager's would take co-ownership of it.
    conditions = [c for c in base.conditions if c.type in OUR_CONDITIONS and c.type != "Reconciling"]
    conditions.append(_condition(prev, "Reconciling", "True", "Scraping",
                                 f"Scraping for generation {generation}", now, generation))
    if base.condition("Ready") is None:
        conditions.append(_condition(prev, "Ready", "Unknown", "Scraping", "First scrape in progress",
                                     now, generation))
    return base.model_copy(update={"conditions": _ordered(conditions)})


def suspended(prev: PackageStatsStatus | None, generation: int, now: datetime.datetime) -> PackageStatsStatus:
    """The status of a suspended resource whose spec changed: every value kept, the new generation
    observed (kstatus, and so a Flux Kustomization's `wait`, waits for that), Reconciling=False."""
    base = prev or PackageStatsStatus()
    conditions = [c.model_copy(update={"observed_generation": generation}) for c in base.conditions
                  if c.type in OUR_CONDITIONS and c.type != "Reconciling"]
    conditions.append(_condition(prev, "Reconciling", "False", "Suspended",
                                 "Suspended: no scrapes until spec.suspend is false", now, generation))
    return base.model_copy(update={"observed_generation": generation, "conditions": _ordered(conditions)})


def _ordered(conditions: list[Condition]) -> list[Condition]:
    order = {t: i for i, t in enumerate(OUR_CONDITIONS)}
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
    discovered: Discovered | None = None,
    accepted_at: str | None = None,
) -> Result:
    """The whole status after one scrape of `targets`; packages no longer targeted drop out."""
    previous = {_key(p.type, p.name): p for p in (prev.packages if prev else [])}
    targets = list(targets)[: api.MAX_PACKAGES]
    packages: list[PackageStatus] = []
    failures: list[tuple[PackageRef, Failure]] = []
    scraped: list[tuple[PackageRef, Scraped]] = []
    changes: list[str] = []
    kept = 0
    for ref in targets:
        key = _key(ref.type, ref.name)
        old = previous.get(key)
        outcome = outcomes.get(key) or discovery_error or Failure("NotScraped", "not scraped", permanent=False)
        new = _package(ref, old, outcome, now, max_versions)
        packages.append(new)
        if isinstance(outcome, Failure):
            failures.append((ref, outcome))
            continue
        if isinstance(outcome, Kept):
            kept += 1
            continue
        scraped.append((ref, outcome))
        if old is None or old.downloads != new.downloads:
            before = "none" if old is None or old.downloads is None else f"{old.downloads}"
            changes.append(f"{_label(ref)}: {before} -> {new.downloads}")

    known = [p.downloads for p in packages if p.downloads is not None]
    total = sum(known) if known else None
    succeeded = len(targets) - len(failures)
    history = list(prev.history) if prev else []
    if total is not None and succeeded:
        history = _with_point(history, now.date(), total, min(history_days, api.MAX_STATUS_HISTORY))
    # A sum with packages missing would show a dip that never happened: keep the last complete one.
    daily = _daily_sum([s for _, s in scraped]) if targets and not failures and not kept \
        else (list(prev.daily) if prev else [])

    events: list[Event] = []
    notes: list[str] = []
    if discovered is not None and discovered.listed > len(discovered.refs) + len(discovered.skipped):
        notes.append(f"the owner lists {discovered.listed} packages, only the first {api.MAX_PACKAGES} "
                     "in listing order are tracked")
    if discovered is not None and discovered.skipped:
        skipped = summary(discovered.skipped, prefix=f"{len(discovered.skipped)} listed packages skipped: ")
        notes.append(f"{len(discovered.skipped)} listed packages skipped (see Events)")
        events.append(Event("Warning", "DiscoverySkipped", skipped))
    note = "".join(f"; {n}" for n in notes)
    if discovery_error is not None:
        ready = _condition(prev, "Ready", "False", "DiscoveryFailed",
                           f"Listing the owner's packages failed: {discovery_error.message}", now, generation)
        stalled_reason = discovery_error.reason if discovery_error.permanent else None
        events.append(Event("Warning", "DiscoveryFailed", _cut(ready.message, MAX_EVENT_MESSAGE)))
    elif failures:
        reason = "ScrapeFailed" if succeeded == 0 else "PartiallyFailed"
        head = f"{len(failures)} of {len(targets)} packages failed, last good values kept{note}: "
        parts = [f"{_label(ref)}: {f.message}" for ref, f in failures]
        ready = _condition(prev, "Ready", "False", reason, summary(parts, MAX_MESSAGE, head), now, generation)
        permanent = [f for _, f in failures if f.permanent]
        stalled_reason = permanent[0].reason if len(permanent) == len(failures) else None
        events.append(Event("Warning", reason, summary(parts, MAX_EVENT_MESSAGE, head)))
    elif not targets:
        ready = _condition(prev, "Ready", "False", "NoPackages", f"The owner has no public packages{note}",
                           now, generation)
        stalled_reason = "NoPackages"
    else:
        ready = _condition(prev, "Ready", "True", "Succeeded",
                           f"Scraped {len(targets)} package{'s' if len(targets) != 1 else ''}{note}",
                           now, generation)
        stalled_reason = None
    if changes:
        events.append(Event("Normal", "DownloadsChanged", summary(changes)))

    stalled = (_condition(prev, "Stalled", "True", stalled_reason,
                          "Retrying on the interval will not help until the spec or the page changes",
                          now, generation)
               if stalled_reason else
               _condition(prev, "Stalled", "False", "Progressing", "", now, generation))
    reconciling_done = _condition(prev, "Reconciling", "False", "Idle", "", now, generation)
    conditions = [ready, reconciling_done, stalled]
    # The History condition is the database writer's: kept as it was until it reports again.
    old_history = prev.condition("History") if prev else None
    if old_history is not None:
        conditions.append(old_history)
    suspect = _markup_suspect(prev, failures, now, generation)
    if suspect is not None:
        conditions.append(suspect)
        if suspect.status == "True":
            events.append(Event("Warning", "MarkupSuspect", _cut(suspect.message, MAX_EVENT_MESSAGE)))

    status = PackageStatsStatus(
        observed_generation=generation,
        last_handled_requested_at=requested_at if requested_at is not None
        else (prev.last_handled_requested_at if prev else None),
        last_handled_accept_downloads=accepted_at if accepted_at is not None
        else (prev.last_handled_accept_downloads if prev else None),
        total_downloads=total,
        last_scrape_time=now if succeeded and discovery_error is None else (prev.last_scrape_time if prev else None),
        packages=packages,
        daily=daily,
        history=history,
        conditions=conditions,
    )
    return Result(status=status, events=events, scraped=scraped)


def _markup_suspect(prev: PackageStatsStatus | None, failures: Sequence[tuple[PackageRef, Failure]],
                    now: datetime.datetime, generation: int) -> Condition | None:
    """MarkupSuspect=True while a package's total is held back; False once none is (absent until the
    first suspicion, so that a status without one stays small)."""
    held = [(ref, f) for ref, f in failures if f.reason == "MarkupSuspect"]
    if held:
        head = (f"{len(held)} suspect total{'s' if len(held) != 1 else ''} held back, last good values kept "
                f"until the next scrape agrees or {api.ACCEPT_DOWNLOADS_ANNOTATION} is set: ")
        return _condition(prev, "MarkupSuspect", "True", "MarkupSuspect",
                          summary([f"{_label(ref)}: {f.message}" for ref, f in held], MAX_MESSAGE, head),
                          now, generation)
    if prev is not None and prev.condition("MarkupSuspect") is not None:
        return _condition(prev, "MarkupSuspect", "False", "Consistent", "No suspect totals", now, generation)
    return None


def with_history(status: PackageStatsStatus, prev: PackageStatsStatus | None, ok: bool, reason: str,
                 message: str, now: datetime.datetime) -> PackageStatsStatus:
    """`status` with the History condition: whether this scrape reached the history database."""
    generation = status.observed_generation or 0
    history = _condition(prev, "History", "True" if ok else "False", reason, message, now, generation)
    others = [c for c in status.conditions if c.type != "History"]
    return status.model_copy(update={"conditions": _ordered([*others, history])})


@dataclass(frozen=True)
class ParserRefusal:
    """Why the parser source's latest candidate is not the module in use (parser_source.Refused)."""

    reason: str  # one CamelCase word: DigestMismatch, InterfaceMismatch, SelfTestFailed, ...
    message: str
    revision: str | None = None  # which version of the source; None: not known (it could not be read)


@dataclass(frozen=True)
class ParserState:
    """The operator's parser, the same for every resource: the module in use and where it came from,
    the source it follows, and the refusal of that source's latest candidate, if any."""

    label: str  # version@12 hex of its sha256, as in packages[].parser
    digest: str  # sha256:...
    origin: str  # where the module in use came from (builtin, file:PATH, ocirepository:NS/NAME@REVISION)
    source: str  # the source followed (PACKAGESTATS_PARSER_SOURCE)
    refused: ParserRefusal | None = None


_REASON = re.compile(r"[A-Za-z][A-Za-z0-9]*")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def parser_condition(prev: PackageStatsStatus | None, parser: ParserState | None, generation: int,
                     now: datetime.datetime) -> Condition | None:
    """ParserRefused=True while the source's latest candidate is refused (the module in use stays, so
    Ready is not touched), False once a candidate passes again; absent until the first refusal, as
    MarkupSuspect is. None for `parser`: not known here, the previous condition stays as it was."""
    old = prev.condition("ParserRefused") if prev else None
    if parser is None:
        return old
    in_use = f"parser {parser.label} ({parser.digest}) from {_one_line(parser.origin)}"
    if parser.refused is not None:
        refused = parser.refused
        revision = f" (revision {_one_line(refused.revision)})" if refused.revision else ""
        head = f"The parser module from {_one_line(parser.source)}{revision} was refused: "
        tail = f"; {in_use} stays in use"
        # The detail gives way first: which module stays in use must survive the cut.
        detail = _cut(_one_line(refused.message), max(MAX_MESSAGE - len(head) - len(tail), 40))
        # A reason the CRD's pattern refuses would cost the whole status write.
        reason = refused.reason if _REASON.fullmatch(refused.reason) and len(refused.reason) <= 64 else "Refused"
        return _condition(prev, "ParserRefused", "True", reason, head + detail + tail, now, generation)
    if old is None:
        return None
    return _condition(prev, "ParserRefused", "False", "Accepted",
                      f"The latest module from {_one_line(parser.source)} passed its checks; {in_use} is in use",
                      now, generation)


def with_parser(status: PackageStatsStatus, prev: PackageStatsStatus | None, parser: ParserState | None,
                now: datetime.datetime) -> PackageStatsStatus:
    """`status` with the ParserRefused condition of `parser` (see parser_condition)."""
    condition = parser_condition(prev, parser, status.observed_generation or 0, now)
    others = [c for c in status.conditions if c.type != "ParserRefused"]
    if condition is None and len(others) == len(status.conditions):
        return status
    return status.model_copy(update={"conditions": _ordered([*others, *([condition] if condition else [])])})


def write_failed(prev: PackageStatsStatus | None, generation: int, message: str,
                 now: datetime.datetime) -> PackageStatsStatus:
    """The minimal status applied when the apiserver refused the whole one: Ready=False and why."""
    ready = _condition(prev, "Ready", "False", "StatusWriteFailed",
                       f"The apiserver refused the status: {message}", now, generation)
    return PackageStatsStatus(conditions=[ready])
