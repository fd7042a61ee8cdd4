"""One scrape of one PackageStats: which packages, fetch, parse in the sandbox, and the new status.

Failures are per package: a 404 or an unparseable page of one package becomes a `Failure` for that
package only, and `status.build` keeps its last good values.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from packagestats import pages, status
from packagestats.api import (
    PACKAGE_TYPES,
    DailyCount,
    PackageRef,
    PackageStatsSpec,
    PackageStatsStatus,
    VersionDownloads,
)
from packagestats.github import FetchError, GitHubClient
from packagestats.sandbox import BadOutputError, Kind, LimitExceeded, NoCountError, ParserError, Sandbox
from packagestats.settings import Settings

log = logging.getLogger(__name__)

# Fetch failures that retrying on the interval will not fix.
_PERMANENT_FETCH = {"not_found", "too_large", "redirect"}
_FETCH_REASONS = {
    "not_found": "NotFound", "http_status": "HTTPError", "timeout": "Timeout", "connection": "ConnectionFailed",
    "too_large": "PageTooLarge", "redirect": "RedirectRefused", "rate_limited": "RateLimited",
}


ParseObserver = Callable[[str, float, int], None]  # (kind, seconds, fuel)
P = TypeVar("P", pages.PackagePage, pages.VersionsPage, pages.ListingPage)


def _version_rows(rows: list[pages.VersionRow]) -> list[VersionDownloads]:
    return [VersionDownloads(id=v.id, name=v.name, tags=list(v.tags), downloads=v.downloads) for v in rows]


@dataclass(frozen=True)
class Scraper:
    settings: Settings
    github: GitHubClient
    sandbox: Sandbox
    observe_parse: ParseObserver | None = None

    async def _parse(self, body: bytes, kind: Kind, expected: type[P]) -> P:
        result = await asyncio.to_thread(self.sandbox.parse, body, kind)
        if self.observe_parse is not None:
            self.observe_parse(kind, result.seconds, result.fuel_consumed)
        if not isinstance(result.page, expected):
            raise BadOutputError(f"the parser answered a {result.page.kind} page for a {kind} page")
        return result.page

    async def discover(self, owner: str) -> list[PackageRef]:
        """Every public package of the owner, from its paginated listing."""
        found: dict[tuple[str, str], PackageRef] = {}
        page_count = 1
        page = 1
        while page <= min(page_count, self.settings.max_listing_pages):
            _, body = await self.github.fetch_listing_page(owner, page)
            listing = await self._parse(body, "listing", pages.ListingPage)
            for entry in listing.packages:
                if entry.type not in PACKAGE_TYPES:
                    continue
                repo = entry.repository
                found.setdefault((entry.type, entry.name), PackageRef(name=entry.name, type=entry.type,
                                                                      repository=repo))
            page_count = listing.page_count
            page += 1
        return list(found.values())

    async def scrape_package(self, owner: str, ref: PackageRef) -> status.Outcome:
        url: str | None = None
        try:
            url, body = await self.github.fetch_package_page(owner, ref.name, ref.type, ref.repository)
            page = await self._parse(body, "package", pages.PackagePage)
            versions = _version_rows(page.versions)
            if self.settings.max_version_pages > 0:
                versions = await self._versions(url) or versions
            return status.Scraped(
                url=url, downloads=page.downloads, approximate=page.approximate,
                daily=[DailyCount(date=d.date, count=d.count) for d in page.daily],
                versions=versions, last_published=page.last_published,
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
        requested_at: str | None, now: datetime.datetime | None = None,
    ) -> status.Result:
        discovery_error: status.Failure | None = None
        targets = list(spec.packages)
        if not targets:
            try:
                targets = await self.discover(spec.owner)
            except (FetchError, ParserError) as e:
                permanent = isinstance(e, NoCountError) or (isinstance(e, FetchError) and e.reason == "not_found")
                discovery_error = status.Failure("DiscoveryFailed", str(e), permanent=permanent)
                # Keep what was known about the owner's packages.
                targets = [PackageRef(name=p.name, type=p.type, repository=p.repository)
                           for p in (prev.packages if prev else [])]
        outcomes: dict[tuple[str, str], status.Outcome] = {}
        if discovery_error is None:
            results = await asyncio.gather(*(self.scrape_package(spec.owner, ref) for ref in targets))
            outcomes = {(ref.type, ref.name): r for ref, r in zip(targets, results, strict=True)}
        return status.build(
            prev, targets, outcomes,
            generation=generation, now=now or datetime.datetime.now(datetime.UTC).replace(microsecond=0),
            history_days=self.settings.history_days, max_versions=self.settings.max_versions_in_status,
            requested_at=requested_at, discovery_error=discovery_error,
        )
