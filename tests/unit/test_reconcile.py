"""One scrape without a cluster: the GitHub stand-in, the real wasm parser, the status rules."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from packagestats.api import PackageRef, PackageStatsSpec
from packagestats.github import GitHubClient
from packagestats.reconcile import Scraper
from packagestats.sandbox import Sandbox
from packagestats.settings import Settings
from packagestats.status import Failure, Scraped
from tests.support.fake_github import FakeGitHub, make_versions


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox.from_settings(Settings(cache_dir=None))


@pytest.fixture
def gh() -> Iterator[FakeGitHub]:
    with FakeGitHub(versions_per_page=2) as server:
        yield server


@pytest.fixture
def parsed() -> list[str]:
    return []


@pytest.fixture
async def scraper(gh: FakeGitHub, sandbox: Sandbox, parsed: list[str]) -> AsyncIterator[Scraper]:
    settings = Settings(github_url=gh.base_url, retries=0, backoff_seconds=0, max_version_pages=2,
                        max_versions_in_status=6, cache_dir=None)
    async with GitHubClient(settings) as client:
        yield Scraper(settings, client, sandbox, lambda kind, seconds, fuel: parsed.append(kind))


async def test_package_with_paginated_versions(gh: FakeGitHub, scraper: Scraper, parsed: list[str]) -> None:
    gh.add_package("acme", "tool", repository="tool", total=17_118, daily=list(range(30)),
                   versions=make_versions(5))
    out = await scraper.scrape_package("acme", PackageRef(name="tool", repository="tool"))
    assert isinstance(out, Scraped)
    assert out.downloads == 17_118 and not out.approximate
    assert [d.count for d in out.daily] == list(range(30))
    newest = make_versions(5)[:4]  # two versions pages of two rows each
    assert [(v.tags[0], v.downloads) for v in out.versions] == [(v.tags[0], v.downloads) for v in newest]
    assert gh.count("/acme/tool/pkgs/container/tool/versions") == 2  # pages 1 and 2 of 3: the setting's bound
    assert parsed == ["package", "versions", "versions"]


async def test_failures_are_per_package_and_say_why(gh: FakeGitHub, scraper: Scraper) -> None:
    gh.add_package("acme", "ok", total=5)
    gh.add_package("acme", "broken", total=6)
    gh.add_fault("no_total", owner="acme", name="broken")
    spec = PackageStatsSpec(owner="acme", packages=[PackageRef(name="ok"), PackageRef(name="broken"),
                                                    PackageRef(name="gone")])
    result = await scraper.scrape(spec, None, generation=1, requested_at=None)
    by_name = {p.name: p for p in result.status.packages}
    assert by_name["ok"].downloads == 5 and by_name["ok"].error is None
    assert by_name["broken"].downloads is None and by_name["broken"].error_reason == "NoCount"
    assert by_name["gone"].error_reason == "NotFound"
    assert result.status.total_downloads == 5


async def test_discovery_lists_every_package(gh: FakeGitHub, scraper: Scraper) -> None:
    gh.add_package("acme", "a", total=1)
    gh.add_package("acme", "team/b", repository="b", total=2)
    gh.add_package("acme", "c", type="npm", total=3)
    result = await scraper.scrape(PackageStatsSpec(owner="acme"), None, generation=1, requested_at=None)
    assert sorted((p.type, p.name, p.downloads) for p in result.status.packages) == [
        ("container", "a", 1), ("container", "team/b", 2), ("npm", "c", 3)]


async def test_discovery_failure_keeps_nothing_as_zero(gh: FakeGitHub, scraper: Scraper) -> None:
    result = await scraper.scrape(PackageStatsSpec(owner="nobody"), None, generation=1, requested_at=None)
    ready = result.status.condition("Ready")
    assert ready is not None and ready.reason == "DiscoveryFailed"
    assert result.status.total_downloads is None and result.status.packages == []
    assert isinstance(await scraper.scrape_package("nobody", PackageRef(name="x")), Failure)
