"""One scrape of one PackageStats: which packages, fetch, parse in the sandbox, and the new status.

Failures are per package: a 404, an unparseable page or any unexpected error of one package becomes a
`Failure` for that package only, and `status.build` keeps its last good values. A scrape may be of a
few packages only (`only`: the retries of those that failed); the others are `Kept` as they are.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TypeVar

from packagestats import drift, pages, status
from packagestats.api import (
    DailyCount,
    PackageRef,
    PackageStatsSpec,
    PackageStatsStatus,
    PackageStatus,
    VersionDownloads,
)
from packagestats.github import FetchError, GitHubClient
from packagestats.sandbox import BadOutputError, Kind, LimitExceeded, NoCountError, ParserError, Sandbox
from packagestats.settings import Settings
from packagestats.status import Event

log = logging.getLogger(__name__)

# Fetch failures that retrying on the interval will not fix.
_PERMANENT_FETCH = {"not_found", "too_large", "redirect"}
_FETCH_REASONS = {
    "not_found": "NotFound", "http_status": "HTTPError", "timeout": "Timeout", "connection": "ConnectionFailed",
    "too_large": "PageTooLarge", "redirect": "RedirectRefused", "rate_limited": "RateLimited",
}


# Reasons of package failures that retrying soon will not fix (status keeps only the reason).
PERMANENT_REASONS = frozenset({"NotFound", "PageTooLarge", "RedirectRefused", "NoCount", "ParserLimit",
                               "ParseFailed"})

ParseObserver = Callable[[str, float, int], None]  # (kind, seconds, fuel)
Key = tuple[str, str]  # (type, name)
P = TypeVar("P", pages.PackagePage, pages.VersionsPage, pages.ListingPage)


def _version_rows(rows: list[pages.VersionRow]) -> list[VersionDownloads]:
    return [VersionDownloads(id=v.id, name=v.name, tags=list(v.tags), downloads=v.downloads,
                             approximate=v.approximate) for v in rows]


@dataclass(frozen=True)
class Scraper:
    settings: Settings
    github: GitHubClient
    sandbox: Sandbox
    observe_parse: ParseObserver | None = None
    # Parses in flight: each may use up to wasm_memory_bytes, so this bounds the process's memory.
    parse_slots: asyncio.Semaphore = field(init=False, repr=False)
    # Packages in progress, in all: one holds its page and parsed page while it waits for a fetch or a
    # parse, so without a bound 10,000 packages created at once held 10,000 pages (617 MB). A few per
    # fetch slot keep the fetches busy.
    package_slots: asyncio.Semaphore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parse_slots", asyncio.Semaphore(self.settings.max_parses))
        object.__setattr__(self, "package_slots", asyncio.Semaphore(4 * self.settings.max_concurrency))

    async def _parse(self, body: bytes, kind: Kind, expected: type[P]) -> P:
        return (await self._parse_labelled(body, kind, expected))[0]

    async def _parse_labelled(self, body: bytes, kind: Kind, expected: type[P]) -> tuple[P, str | None]:
        """The page, and which parser module read it (the module may be replaced between two parses)."""
        async with self.parse_slots:
            result = await asyncio.to_thread(self.sandbox.parse, body, kind)
        if self.observe_parse is not None:
            self.observe_parse(kind, result.seconds, result.fuel_consumed)
        if not isinstance(result.page, expected):
            raise BadOutputError(f"the parser answered a {result.page.kind} page for a {kind} page")
        return result.page, result.parser.label if result.parser is not None else None

    async def discover(self, owner: str) -> status.Discovered:
        """The owner's public packages from its paginated listing, checked and capped (status.discovered)."""
        entries: list[tuple[str, str, str | None]] = []
        page_count = 1
        page = 1
        while page <= min(page_count, self.settings.max_listing_pages):
            _, body = await self.github.fetch_listing_page(owner, page)
            listing = await self._parse(body, "listing", pages.ListingPage)
            entries.extend((entry.name, entry.type, entry.repository) for entry in listing.packages)
            page_count = listing.page_count
            page += 1
        return status.discovered(owner, entries)

    async def scrape_package(self, owner: str, ref: PackageRef, prev: PackageStatus | None = None,
                             versions_due: bool = True, accept: bool = False) -> status.Outcome:
        """One package. The versions list is read when `versions_due`, when the package published since
        `prev` (its last status), or when nothing is known of its versions; else prev's rows stay.
        A suspect total (drift.py) is held back unless it agrees with the one held before or `accept`."""
        async with self.package_slots:
            return await self._scrape_package(owner, ref, prev, versions_due, accept)

    async def _scrape_package(self, owner: str, ref: PackageRef, prev: PackageStatus | None,
                              versions_due: bool, accept: bool) -> status.Outcome:
        url: str | None = None
        try:
            url, body = await self.github.fetch_package_page(owner, ref.name, ref.type, ref.repository)
            page, parser = await self._parse_labelled(body, "package", pages.PackagePage)
            versions = _version_rows(page.versions)
            changed = prev is None or not prev.versions or prev.last_published != page.last_published
            if self.settings.max_version_pages > 0 and (versions_due or changed):
                versions = await self._versions(url) or versions
            elif prev is not None and prev.versions:
                versions = [VersionDownloads(name=v.version, downloads=v.downloads, approximate=bool(v.approximate))
                            for v in prev.versions]
            reading = drift.Reading(page.downloads, page.approximate, [d.count for d in page.daily],
                                    [(v.downloads, v.approximate) for v in versions])
            verdict = drift.judge(reading, prev.downloads if prev else None, prev.held if prev else None,
                                  self.settings.drift_jump_factor, accept)
            if verdict.hold is not None:
                return status.Failure("MarkupSuspect", f"{verdict.hold.reason}: {verdict.hold.message} on {url}",
                                      permanent=False, url=url, held=page.downloads)
            if verdict.accepted is not None:
                log.info("%s/%s: suspect total %d accepted (%s)", owner, ref.name, page.downloads,
                         "by annotation" if accept else "two scrapes agree")
            return status.Scraped(
                url=url, downloads=page.downloads, approximate=page.approximate,
                daily=[DailyCount(date=d.date, count=d.count) for d in page.daily],
                versions=versions, last_published=page.last_published, parser=parser,
            )
        except FetchError as e:
            return status.Failure(_FETCH_REASONS.get(e.reason, "FetchFailed"), str(e),
                                  permanent=e.reason in _PERMANENT_FETCH, url=e.url or url)
        except NoCountError as e:
            # The page came back but holds no count: GitHub's markup has probably changed.
            return status.Failure("NoCount", f"no download count on {url}: {e.reason}", permanent=True, url=url)
        except LimitExceeded as e:
            return status.Failure("ParserLimit", f"parser {e.limit} limit exceeded on {url}", permanent=True,
                                  url=url)
        except ParserError as e:
            return status.Failure("ParseFailed", f"parsing {url} failed: {e.reason}", permanent=True, url=url)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug or odd parser output: this package's failure, not the resource's
            log.exception("scraping %s/%s failed unexpectedly", owner, ref.name)
            return status.Failure("InternalError", f"unexpected {type(e).__name__}: {e}", permanent=False, url=url)

    async def _versions(self, package_url: str) -> list[VersionDownloads]:
        """Per-version counts from the tagged versions list, as many pages as it has up to the setting;
        a failure here keeps the package page's own rows."""
        rows: list[VersionDownloads] = []
        n, page_count, enough = 1, 1, self.settings.max_versions_in_status
        while n <= min(page_count, self.settings.max_version_pages) and len(rows) < enough:
            try:
                body = await self.github.fetch_versions_page(package_url, n)
                listing = await self._parse(body, "versions", pages.VersionsPage)
            except (FetchError, ParserError) as e:
                log.info("versions page %d of %s skipped: %s", n, package_url, e)
                return rows
            rows.extend(_version_rows(listing.versions))
            page_count, n = listing.page_count, n + 1
        return rows

    async def scrape(
        self, spec: PackageStatsSpec, prev: PackageStatsStatus | None, *, generation: int,
        requested_at: str | None, now: datetime.datetime | None = None, only: Collection[Key] | None = None,
        versions_due: Callable[[Key], bool] | None = None, accepted_at: str | None = None,
    ) -> Report:
        """Scrape the resource: every package, or those in `only` (no discovery then: the packages are
        the ones the status knows); the others keep their status, failures included."""
        discovery_error: status.Failure | None = None
        discovery: status.Discovered | None = None
        previous = {(p.type, p.name): p for p in (prev.packages if prev else [])}
        known = [PackageRef(name=p.name, type=p.type, repository=p.repository) for p in previous.values()]
        targets = list(spec.packages)
        if not targets and only is not None:
            targets = known
        elif not targets:
            try:
                discovery = await self.discover(spec.owner)
                targets = discovery.refs
            except (FetchError, ParserError) as e:
                permanent = isinstance(e, NoCountError) or (isinstance(e, FetchError) and e.reason == "not_found")
                discovery_error = status.Failure("DiscoveryFailed", str(e), permanent=permanent)
                targets = known  # keep what was known about the owner's packages
        outcomes: dict[Key, status.Outcome] = {}
        if discovery_error is None:
            todo = [ref for ref in targets if only is None or (ref.type, ref.name) in only]
            results = await asyncio.gather(*(
                self.scrape_package(spec.owner, ref, previous.get((ref.type, ref.name)),
                                    versions_due((ref.type, ref.name)) if versions_due else True,
                                    accept=accepted_at is not None)
                for ref in todo))
            outcomes = {(ref.type, ref.name): r for ref, r in zip(todo, results, strict=True)}
            for ref in targets:
                key = (ref.type, ref.name)
                if key not in outcomes:
                    outcomes[key] = _kept(previous.get(key))
        result = status.build(
            prev, targets, outcomes,
            generation=generation, now=now or datetime.datetime.now(datetime.UTC).replace(microsecond=0),
            history_days=self.settings.history_days, max_versions=self.settings.max_versions_in_status,
            requested_at=requested_at, discovery_error=discovery_error, accepted_at=accepted_at,
            discovered=discovery,
        )
        return Report(result, outcomes, discovery_error)


def _kept(prev: PackageStatus | None) -> status.Outcome:
    """A package not scraped this time: as it was, its last failure included."""
    if prev is None:
        return status.Failure("NotScraped", "not scraped yet", permanent=False)
    if prev.error is not None:
        reason = prev.error_reason or "Unknown"
        return status.Failure(reason, prev.error, permanent=reason in PERMANENT_REASONS, url=prev.url,
                              held=prev.held)
    return status.Kept()


@dataclass(frozen=True)
class Report:
    """A scrape's new status and Events, and what each package's scrape gave (for the retry schedule)."""

    result: status.Result
    outcomes: dict[Key, status.Outcome]
    discovery_error: status.Failure | None

    @property
    def status(self) -> PackageStatsStatus:
        return self.result.status

    @property
    def events(self) -> list[Event]:
        return self.result.events
