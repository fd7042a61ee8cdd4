"""Prometheus metrics, and what the operator knows now about each resource (also read by badges).

Per-package series are produced at scrape time from the latest statuses, so a resource or package
that goes away takes its series with it; the few cumulative series (errors, durations) are removed
explicitly when their resource goes.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from packagestats.api import PackageStatsStatus

Key = tuple[str, str]  # (namespace, name)
PACKAGE_LABELS = ["namespace", "name", "owner", "package", "type"]


@dataclass
class Observed:
    owner: str
    status: PackageStatsStatus
    badge: bool = False


def latest_complete_day(status_daily: list[tuple[datetime.date, int]], today: datetime.date) -> int | None:
    """Downloads of the newest day of the sparkline that is over (today's bar is still growing)."""
    done = [(d, n) for d, n in status_daily if d < today]
    return max(done)[1] if done else None


class Observations:
    """The latest status the operator applied, per resource."""

    def __init__(self) -> None:
        self._items: dict[Key, Observed] = {}

    def update(self, key: Key, owner: str, status: PackageStatsStatus) -> None:
        old = self._items.get(key)
        self._items[key] = Observed(owner, status, old.badge if old else False)

    def set_badge(self, key: Key, enabled: bool) -> None:
        if key in self._items:
            self._items[key].badge = enabled

    def get(self, key: Key) -> Observed | None:
        return self._items.get(key)

    def forget(self, key: Key) -> None:
        self._items.pop(key, None)

    def items(self) -> list[tuple[Key, Observed]]:
        return list(self._items.items())


class _StatusCollector(Collector):
    def __init__(self, observations: Observations, max_versions: int,
                 today: Callable[[], datetime.date]) -> None:
        self._observations = observations
        self._max_versions = max_versions
        self._today = today

    def collect(self) -> Iterator[Metric]:
        downloads = GaugeMetricFamily("packagestats_package_downloads",
                                      "Total downloads of a package (exact, from its last good scrape).",
                                      labels=PACKAGE_LABELS)
        day = GaugeMetricFamily("packagestats_package_latest_day_downloads",
                                "Downloads of a package on the latest complete UTC day of its page's chart.",
                                labels=PACKAGE_LABELS)
        success = GaugeMetricFamily("packagestats_package_last_success_timestamp_seconds",
                                    "Unix time of a package's last good scrape.", labels=PACKAGE_LABELS)
        versions = GaugeMetricFamily("packagestats_version_downloads", "Downloads of one version of a package.",
                                     labels=[*PACKAGE_LABELS, "version"])
        total = GaugeMetricFamily("packagestats_total_downloads", "Sum of the downloads of a resource's packages.",
                                  labels=["namespace", "name", "owner"])
        today = self._today()
        for (namespace, name), seen in self._observations.items():
            if seen.status.total_downloads is not None:
                total.add_metric([namespace, name, seen.owner], seen.status.total_downloads)
            for p in seen.status.packages:
                labels = [namespace, name, seen.owner, p.name, p.type]
                if p.downloads is not None:
                    downloads.add_metric(labels, p.downloads)
                latest = latest_complete_day([(d.date, d.count) for d in p.daily], today)
                if latest is not None:
                    day.add_metric(labels, latest)
                if p.last_scrape_time is not None:
                    success.add_metric(labels, p.last_scrape_time.timestamp())
                for v in p.versions[: self._max_versions]:
                    version = v.tags[0] if v.tags else (v.name or v.id or "")
                    versions.add_metric([*labels, version], v.downloads)
        yield from (downloads, day, success, versions, total)


class Metrics:
    def __init__(self, observations: Observations, max_versions: int,
                 today: Callable[[], datetime.date] | None = None) -> None:
        self.registry = CollectorRegistry()
        self._labelled: dict[Key, set[tuple[str, ...]]] = {}
        self.registry.register(_StatusCollector(
            observations, max_versions, today or (lambda: datetime.datetime.now(datetime.UTC).date())))
        self.scrape_duration = Histogram(
            "packagestats_scrape_duration_seconds", "Time of one scrape of a resource (all its packages).",
            ["namespace", "name"], registry=self.registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
        self.fetch_errors = Counter(
            "packagestats_fetch_errors", "Failed scrapes of a package, by reason (HTTP status, timeout, parse, limit).",
            [*PACKAGE_LABELS, "reason"], registry=self.registry)
        self.parser_duration = Histogram(
            "packagestats_parser_duration_seconds", "Time of one run of the wasm parser.", ["kind"],
            registry=self.registry, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5))
        self.parser_fuel = Histogram(
            "packagestats_parser_fuel_consumed", "Fuel (wasm instructions) used by one run of the parser.",
            ["kind"], registry=self.registry,
            buckets=(1e5, 1e6, 5e6, 1e7, 5e7, 1e8, 5e8, 1e9, 5e9))
        self.cooldown = Gauge("packagestats_github_cooldown_seconds",
                              "Seconds left of the cooldown GitHub asked for with HTTP 429 (0: none).",
                              registry=self.registry)

    def record_scrape(self, key: Key, owner: str, status: PackageStatsStatus, seconds: float) -> None:
        """One scrape's duration, and an error for each package whose scrape failed this time (those
        with an `error` in the status it produced)."""
        self.scrape_duration.labels(*key).observe(seconds)
        for p in status.packages:
            if p.error is None:
                continue
            labels = (*key, owner, p.name, p.type, p.error_reason or "Unknown")
            self.fetch_errors.labels(*labels).inc()
            self._labelled.setdefault(key, set()).add(labels)

    def forget(self, key: Key) -> None:
        for labels in self._labelled.pop(key, set()):
            self.fetch_errors.remove(*labels)
        with contextlib.suppress(KeyError):
            self.scrape_duration.remove(*key)
