from __future__ import annotations

import datetime

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from packagestats.api import DailyCount, PackageStatsStatus, PackageStatus, VersionCount
from packagestats.metrics import Metrics, Observations

TODAY = datetime.date(2026, 9, 24)
T = datetime.datetime(2026, 9, 24, 8, 0, tzinfo=datetime.UTC)


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_series_follow_the_status_and_go_with_the_resource() -> None:
    obs = Observations()
    metrics = Metrics(obs, max_versions=1, today=lambda: TODAY)
    status = PackageStatsStatus(total_downloads=302, packages=[PackageStatus(
        name="insights", type="container", downloads=302, last_scrape_time=T,
        error="timed out", error_reason="Timeout",
        last30_days=13, latest_day=DailyCount(date=TODAY - datetime.timedelta(days=1), count=4),
        versions=[VersionCount(version="v2", downloads=7), VersionCount(version="1", downloads=3)],
    )])
    obs.update(("ns", "r"), "ICICLE-ai", status)
    metrics.record_scrape(("ns", "r"), "ICICLE-ai", status, 0.2)
    pkg = (("name", "r"), ("namespace", "ns"), ("owner", "ICICLE-ai"), ("package", "insights"), ("type", "container"))
    got = samples(metrics)
    assert got[("packagestats_package_downloads", pkg)] == 302
    assert got[("packagestats_package_latest_day_downloads", pkg)] == 4
    assert got[("packagestats_package_last_success_timestamp_seconds", pkg)] == T.timestamp()
    assert got[("packagestats_version_downloads", tuple(sorted((*pkg, ("version", "v2")))))] == 7
    assert not any(k[0] == "packagestats_version_downloads" and ("version", "1") in k[1] for k in got)  # bounded
    assert got[("packagestats_total_downloads", (("name", "r"), ("namespace", "ns"), ("owner", "ICICLE-ai")))] == 302
    assert got[("packagestats_fetch_errors_total", tuple(sorted((*pkg, ("reason", "Timeout")))))] == 1
    assert got[("packagestats_scrape_duration_seconds_count", (("name", "r"), ("namespace", "ns")))] == 1

    obs.forget(("ns", "r"))
    metrics.forget(("ns", "r"))
    left = [k for k in samples(metrics) if ("namespace", "ns") in k[1]]
    assert left == []
