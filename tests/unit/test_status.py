from __future__ import annotations

import datetime

from packagestats import status
from packagestats.api import DailyCount, PackageRef, PackageStatsStatus, VersionDownloads

T0 = datetime.datetime(2026, 9, 1, 10, 0, tzinfo=datetime.UTC)
A = PackageRef(name="app")
B = PackageRef(name="lib", type="npm", repository="repo")


def ok(downloads: int, url: str = "http://gh/a") -> status.Scraped:
    return status.Scraped(url=url, downloads=downloads,
                          daily=[DailyCount(date=datetime.date(2026, 8, 31), count=3)],
                          versions=[VersionDownloads(id=str(i), tags=[f"v{i}"], downloads=i) for i in range(5)])


def build(prev: PackageStatsStatus | None, outcomes: dict[tuple[str, str], status.Outcome],
          now: datetime.datetime = T0, targets: list[PackageRef] | None = None, **kw: object) -> status.Result:
    return status.build(prev, targets if targets is not None else [A, B], outcomes, generation=2, now=now,
                        history_days=kw.pop("history_days", 3), max_versions=3, **kw)  # type: ignore[arg-type]


def cond(s: PackageStatsStatus, type_: str) -> tuple[str, str]:
    c = s.condition(type_)  # type: ignore[arg-type]
    assert c is not None
    return c.status, c.reason


def test_first_good_scrape() -> None:
    r = build(None, {("container", "app"): ok(10), ("npm", "lib"): ok(5)})
    s = r.status
    assert s.total_downloads == 15
    assert s.observed_generation == 2
    assert s.last_scrape_time == T0
    assert [(p.name, p.downloads, p.error) for p in s.packages] == [("app", 10, None), ("lib", 5, None)]
    assert [v.version for v in s.packages[0].versions] == ["v0", "v1", "v2"]  # bounded by max_versions
    assert s.packages[0].last30_days == 3
    assert s.packages[0].latest_day == DailyCount(date=datetime.date(2026, 8, 31), count=3)
    assert s.daily == [DailyCount(date=datetime.date(2026, 8, 31), count=6)]  # summed over packages
    assert [p for _, p in r.scraped] == [ok(10), ok(5)]  # the good scrapes, for the history database
    assert [(h.date, h.downloads) for h in s.history] == [(T0.date(), 15)]
    assert cond(s, "Ready") == ("True", "Succeeded")
    assert cond(s, "Stalled") == ("False", "Progressing")
    assert cond(s, "Reconciling") == ("False", "Idle")
    assert [(e.type, e.reason) for e in r.events] == [("Normal", "DownloadsChanged")]
    assert "app: none -> 10" in r.events[0].message


def test_failure_keeps_last_good_values_and_says_why() -> None:
    good = build(None, {("container", "app"): ok(10), ("npm", "lib"): ok(5)}).status
    later = T0 + datetime.timedelta(hours=1)
    r = build(good, {("container", "app"): status.Failure("NotFound", "404 at http://gh/a", permanent=True),
                     ("npm", "lib"): ok(5)}, now=later)
    s = r.status
    app = s.packages[0]
    assert app.downloads == 10 and app.last_scrape_time == T0 and app.error == "404 at http://gh/a"
    assert app.error_reason == "NotFound"
    assert app.versions == good.packages[0].versions
    assert s.total_downloads == 15
    assert cond(s, "Ready") == ("False", "PartiallyFailed")
    ready = s.condition("Ready")
    assert ready is not None and "app: 404 at http://gh/a" in ready.message
    assert ready.last_transition_time == later
    assert cond(s, "Stalled") == ("True", "NotFound")  # every failure is permanent
    assert [(e.type, e.reason) for e in r.events] == [("Warning", "PartiallyFailed")]


def test_never_scraped_package_is_not_written_as_zero() -> None:
    r = build(None, {("container", "app"): status.Failure("Timeout", "timed out", permanent=False),
                     ("npm", "lib"): status.Failure("Timeout", "timed out", permanent=False)})
    s = r.status
    assert s.total_downloads is None
    assert all(p.downloads is None for p in s.packages)
    assert s.history == [] and s.last_scrape_time is None
    assert cond(s, "Ready") == ("False", "ScrapeFailed")
    assert cond(s, "Stalled") == ("False", "Progressing")  # transient: retrying may help
    dumped = s.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert "totalDownloads" not in dumped and "downloads" not in dumped["packages"][0]


def test_repeat_scrape_keeps_transition_times_and_one_history_point_per_day() -> None:
    first = build(None, {("container", "app"): ok(10), ("npm", "lib"): ok(5)}).status
    same_day = T0 + datetime.timedelta(hours=5)
    second = build(first, {("container", "app"): ok(12), ("npm", "lib"): ok(5)}, now=same_day)
    s = second.status
    assert [(h.date, h.downloads) for h in s.history] == [(T0.date(), 17)]
    assert s.conditions == first.conditions  # nothing changed state: same transition times
    assert [e.message for e in second.events] == ["app: 10 -> 12"]
    unchanged = build(s, {("container", "app"): ok(12), ("npm", "lib"): ok(5)}, now=same_day)
    assert unchanged.status == s and unchanged.events == []


def test_history_is_bounded_and_ordered() -> None:
    s: PackageStatsStatus | None = None
    for day in range(5):
        s = build(s, {("container", "app"): ok(10 + day), ("npm", "lib"): ok(1)},
                  now=T0 + datetime.timedelta(days=day)).status
    assert s is not None
    assert [h.downloads for h in s.history] == [13, 14, 15]
    assert [h.date.day for h in s.history] == [3, 4, 5]


def test_removed_package_drops_out_and_discovery_error_keeps_known_packages() -> None:
    good = build(None, {("container", "app"): ok(10), ("npm", "lib"): ok(5)}).status
    only_a = build(good, {("container", "app"): ok(10)}, targets=[A]).status
    assert [p.name for p in only_a.packages] == ["app"] and only_a.total_downloads == 10
    failure = status.Failure("DiscoveryFailed", "listing: 500", permanent=False)
    r = build(good, {}, discovery_error=failure, now=T0 + datetime.timedelta(hours=1))
    assert r.status.total_downloads == 15
    assert [p.downloads for p in r.status.packages] == [10, 5]
    assert r.status.last_scrape_time == T0
    assert cond(r.status, "Ready") == ("False", "DiscoveryFailed")
    assert r.events[0].type == "Warning"


def test_reconciling_marks_a_new_generation() -> None:
    good = build(None, {("container", "app"): ok(10), ("npm", "lib"): ok(5)}).status
    r = status.reconciling(good, 3, T0 + datetime.timedelta(minutes=1))
    assert cond(r, "Reconciling") == ("True", "Scraping")
    assert cond(r, "Ready") == ("True", "Succeeded")
    assert r.total_downloads == 15
    fresh = status.reconciling(None, 1, T0)
    assert cond(fresh, "Ready") == ("Unknown", "Scraping")


def test_requested_at_is_remembered() -> None:
    r = build(None, {("container", "app"): ok(1), ("npm", "lib"): ok(1)}, requested_at="now-1")
    assert r.status.last_handled_requested_at == "now-1"
    kept = build(r.status, {("container", "app"): ok(1), ("npm", "lib"): ok(1)})
    assert kept.status.last_handled_requested_at == "now-1"
