"""Drift alarms: the pure rules of drift.py, and a scrape of a drifted page through the GitHub stand-in,
the real wasm parser and the status rules: the suspect total is held back (the last good one stays),
MarkupSuspect says why, and the hold ends when the next scrape agrees or the user accepts it."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Iterator

import pytest

from packagestats import drift
from packagestats.api import PackageRef, PackageStatsSpec, PackageStatsStatus
from packagestats.github import GitHubClient
from packagestats.reconcile import Scraper
from packagestats.sandbox import Sandbox
from packagestats.settings import Settings
from packagestats.status import Failure, Scraped
from tests.support.fake_github import FakeGitHub, captured_page

R = drift.Reading
NOW = datetime.datetime(2026, 12, 1, 12, tzinfo=datetime.UTC)


# -- the rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reading", "last_good", "reason"),
    [
        (R(1000, False), 1000, None),
        (R(1200, False), 1000, None),
        (R(999, False), 1000, "TotalDecreased"),
        (R(1_400_000, True), 1_418_338, None),  # "1.4M" rounds the exact total down
        (R(1_000_000, True), 1_418_338, "TotalDecreased"),
        (R(10_001, False), 1000, "TotalJumped"),
        (R(10_000, False), 1000, None),
        (R(500, False, daily=[300, 300]), None, "DailyAboveTotal"),
        (R(600, False, daily=[300, 300]), None, None),
        (R(500, False, versions=[(400, False), (200, False)]), None, "VersionsAboveTotal"),
        (R(500, False, versions=[(400, False), (200, True)]), None, None),  # "200" may be "0.2K" rounded up
        (R(5, False), 0, None),  # from nothing, any total is a start
    ],
)
def test_rules(reading: drift.Reading, last_good: int | None, reason: str | None) -> None:
    found = drift.check(reading, last_good, jump_factor=10)
    assert (found.reason if found else None) == reason
    if found is not None:
        assert str(reading.downloads) in found.message


def test_the_jump_check_can_be_switched_off() -> None:
    assert drift.check(R(10**9, False), 1, jump_factor=0) is None


def test_two_scrapes_agree_within_what_a_package_gains() -> None:
    assert drift.agrees(800, 800) and drift.agrees(800, 900) and drift.agrees(100_000, 101_000)
    assert not drift.agrees(800, 799) and not drift.agrees(800, 901) and not drift.agrees(None, 800)


def test_judge() -> None:
    assert drift.judge(R(900, False), 1000, None, 10, accept=False).hold is not None
    agreed = drift.judge(R(905, False), 1000, 900, 10, accept=False)
    assert agreed.hold is None and agreed.accepted is not None
    accepted = drift.judge(R(900, False), 1000, None, 10, accept=True)
    assert accepted.hold is None and accepted.accepted is not None
    assert drift.judge(R(1001, False), 1000, 900, 10, accept=False) == drift.Verdict(None)


# -- a scrape of a drifted page -------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox.from_settings(Settings(cache_dir=None))


@pytest.fixture
def gh() -> Iterator[FakeGitHub]:
    with FakeGitHub() as server:
        yield server


@pytest.fixture
async def scraper(gh: FakeGitHub, sandbox: Sandbox) -> AsyncIterator[Scraper]:
    settings = Settings(github_url=gh.base_url, retries=0, backoff_seconds=0, max_version_pages=0, cache_dir=None)
    async with GitHubClient(settings) as client:
        yield Scraper(settings, client, sandbox)


SPEC = PackageStatsSpec(owner="juanfont", packages=[PackageRef(name="headscale", repository="headscale")])


async def scrape(scraper: Scraper, prev: PackageStatsStatus | None, minutes: int,
                 accepted_at: str | None = None) -> PackageStatsStatus:
    report = await scraper.scrape(SPEC, prev, generation=1, requested_at=None,
                                  now=NOW + datetime.timedelta(minutes=minutes), accepted_at=accepted_at)
    return report.status


def drifted(total: int) -> bytes:
    """The real headscale page as a changed markup might read: the heading's exact title is another number."""
    page = captured_page("headscale-2026-07.html")
    assert page.count(b'title="1418338"') == 1
    return page.replace(b'title="1418338"', f'title="{total}"'.encode())


async def test_a_smaller_total_is_held_back_until_two_scrapes_agree(gh: FakeGitHub, scraper: Scraper) -> None:
    gh.add_captured("headscale-2026-07.html")
    good = await scrape(scraper, None, 0)
    assert good.packages[0].downloads == 1418338
    assert good.packages[0].parser == scraper.sandbox.info.label
    assert good.condition("MarkupSuspect") is None

    gh.update_package("juanfont", "headscale", page_html=drifted(248))
    report = await scraper.scrape(SPEC, good, generation=1, requested_at=None, now=NOW + datetime.timedelta(hours=1))
    held = report.status
    pkg = held.packages[0]
    assert (pkg.downloads, pkg.held, pkg.error_reason) == (1418338, 248, "MarkupSuspect")
    assert pkg.last_scrape_time == good.packages[0].last_scrape_time  # nothing of the suspect page written
    assert held.total_downloads == 1418338
    suspect = held.condition("MarkupSuspect")
    assert suspect is not None and suspect.status == "True"
    # The 30 days of the real page sum to 195,120: above 248, and 248 is below the last good total.
    assert "TotalDecreased: total 248 is below the last good total 1418338" in suspect.message
    assert [e.reason for e in report.events if e.type == "Warning"] == ["ScrapeFailed", "MarkupSuspect"]
    assert report.result.scraped == []  # so the history database does not get it either

    # The same number again: still suspect by the daily sum, but two scrapes agree, so it is written.
    agreed = await scrape(scraper, held, 120)
    pkg = agreed.packages[0]
    assert (pkg.downloads, pkg.held, pkg.error) == (248, None, None)
    cleared = agreed.condition("MarkupSuspect")
    assert cleared is not None and (cleared.status, cleared.reason) == ("False", "Consistent")


async def test_a_user_accepts_a_held_total(gh: FakeGitHub, scraper: Scraper) -> None:
    gh.add_captured("headscale-2026-07.html")
    good = await scrape(scraper, None, 0)
    gh.update_package("juanfont", "headscale", page_html=drifted(99_000_000))
    held = await scrape(scraper, good, 60)
    assert held.packages[0].held == 99_000_000 and held.packages[0].downloads == 1418338
    suspect = held.condition("MarkupSuspect")
    assert suspect is not None and "TotalJumped" in suspect.message
    # Another suspect value that does not agree: still held, now the new one.
    gh.update_package("juanfont", "headscale", page_html=drifted(50_000_000))
    again = await scrape(scraper, held, 61)
    assert again.packages[0].held == 50_000_000 and again.packages[0].downloads == 1418338
    accepted = await scrape(scraper, again, 62, accepted_at="2026-12-01T12:02:00Z")
    assert accepted.packages[0].downloads == 50_000_000 and accepted.packages[0].held is None
    assert accepted.last_handled_accept_downloads == "2026-12-01T12:02:00Z"


async def test_a_first_scrape_of_an_impossible_page_is_held(gh: FakeGitHub, scraper: Scraper) -> None:
    gh.add_captured("headscale-2026-07.html")
    gh.update_package("juanfont", "headscale", page_html=drifted(1000))
    out = await scraper.scrape_package("juanfont", PackageRef(name="headscale"))
    assert isinstance(out, Failure) and out.reason == "MarkupSuspect" and out.held == 1000
    assert "DailyAboveTotal: the 30 days sum to 195120, above the total 1000" in out.message


async def test_an_honest_page_passes(gh: FakeGitHub, scraper: Scraper) -> None:
    gh.add_captured("headscale-2026-07.html")
    out = await scraper.scrape_package("juanfont", PackageRef(name="headscale"))
    assert isinstance(out, Scraped) and out.downloads == 1418338
