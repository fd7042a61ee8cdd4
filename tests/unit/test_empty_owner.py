"""An owner with no public packages: its listing says so, and the resource is NoPackages, not a failure."""

from __future__ import annotations

from packagestats.api import PackageStatsSpec
from packagestats.github import GitHubClient
from packagestats.reconcile import Scraper
from packagestats.sandbox import Sandbox
from packagestats.settings import Settings
from tests.support.fake_github import FakeGitHub


async def test_an_owner_without_packages() -> None:
    with FakeGitHub() as gh:
        gh.add_owner("empty-org")
        settings = Settings(github_url=gh.base_url, retries=0, backoff_seconds=0, cache_dir=None)
        async with GitHubClient(settings) as client:
            scraper = Scraper(settings, client, Sandbox.from_settings(settings))
            report = await scraper.scrape(PackageStatsSpec(owner="empty-org"), None, generation=1, requested_at=None)
    ready = report.status.condition("Ready")
    assert ready is not None and (ready.status, ready.reason) == ("False", "NoPackages")
    assert report.status.packages == [] and report.status.total_downloads is None
    assert not [e for e in report.events if e.reason == "DiscoveryFailed"]
