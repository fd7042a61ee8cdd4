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
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from packagestats.api import PackageStatsStatus
from packagestats.pacing import PacingFigures

Key = tuple[str, str]  # (namespace, name)
PACKAGE_LABELS = ["namespace", "name", "owner", "package", "type"]


@dataclass
class Observed:
    owner: str
    status: PackageStatsStatus
    badge: bool = False


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
        suspect = GaugeMetricFamily("packagestats_package_markup_suspect",
                                    "1 while a package's suspect total is held back (MarkupSuspect).",
                                    labels=PACKAGE_LABELS)
        today = self._today()
        for (namespace, name), seen in self._observations.items():
            if seen.status.total_downloads is not None:
                total.add_metric([namespace, name, seen.owner], seen.status.total_downloads)
            for p in seen.status.packages:
                labels = [namespace, name, seen.owner, p.name, p.type]
                if p.downloads is not None:
                    downloads.add_metric(labels, p.downloads)
                if p.latest_day is not None and p.latest_day.date < today:
                    day.add_metric(labels, p.latest_day.count)
                if p.last_scrape_time is not None:
                    success.add_metric(labels, p.last_scrape_time.timestamp())
                if p.held is not None:
                    suspect.add_metric(labels, 1)
                for v in p.versions[: self._max_versions]:
                    versions.add_metric([*labels, v.version], v.downloads)
        yield from (downloads, day, success, versions, total, suspect)


class _PacingCollector(Collector):
    def __init__(self, figures: Callable[[], PacingFigures]) -> None:
        self._figures = figures

    def collect(self) -> Iterator[Metric]:
        f = self._figures()
        yield GaugeMetricFamily("packagestats_github_budget_requests_per_minute",
                                "The request budget to GitHub (PACKAGESTATS_REQUESTS_PER_MINUTE).",
                                value=f.budget_per_minute)
        yield GaugeMetricFamily("packagestats_github_budget_tokens",
                                "Requests the budget allows at once now (negative: reserved by waiting requests).",
                                value=f.tokens)
        yield CounterMetricFamily("packagestats_github_budget_requests", "Requests that took a token of the budget.",
                                  value=f.granted)
        yield CounterMetricFamily("packagestats_github_budget_waits", "Requests that waited for the budget.",
                                  value=f.waits)
        yield CounterMetricFamily("packagestats_github_budget_wait_seconds",
                                  "Seconds requests waited for the budget, in all.", value=f.waited_seconds)
        state = GaugeMetricFamily("packagestats_github_breaker_open",
                                  "1 while the host's circuit breaker is open (no requests sent), else 0.",
                                  labels=["host"])
        left = GaugeMetricFamily("packagestats_github_breaker_cooldown_seconds",
                                 "Seconds left of the host's cooldown (429, 5xx, timeouts).", labels=["host"])
        opened = CounterMetricFamily("packagestats_github_breaker_opened",
                                     "Cooldowns the host's breaker started (a burst of failures counts once).",
                                     labels=["host"])
        for b in f.breakers:
            state.add_metric([b.host], 1 if b.state == "open" else 0)
            left.add_metric([b.host], b.remaining)
            opened.add_metric([b.host], b.opened)
        yield from (state, left, opened)


class Metrics:
    def __init__(self, observations: Observations, max_versions: int,
                 today: Callable[[], datetime.date] | None = None) -> None:
        self.registry = CollectorRegistry()
        self._labelled: dict[Key, set[tuple[str, ...]]] = {}
        self._failures: dict[Key, set[tuple[Counter, str]]] = {}
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
        self.status_write_failures = Counter(
            "packagestats_status_write_failures", "Status writes the apiserver refused, by reason.",
            ["namespace", "name", "reason"], registry=self.registry)
        self.history_write_failures = Counter(
            "packagestats_history_write_failures", "Scrapes that could not be written to the history database.",
            ["namespace", "name", "reason"], registry=self.registry)
        self.history_write_duration = Histogram(
            "packagestats_history_write_duration_seconds", "Time of one scrape's write to the history database.",
            registry=self.registry, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))
        self.parser_module = Gauge(
            "packagestats_parser_module", "1 for the parser module in use: its version, digest and source.",
            ["version", "digest", "source"], registry=self.registry)
        self.parser_refused = Counter(
            "packagestats_parser_refused", "Parser modules refused (digest, interface, self-test, download).",
            ["source", "reason"], registry=self.registry)
        self.cooldown = Gauge("packagestats_github_cooldown_seconds",
                              "Seconds left of the cooldown GitHub asked for with HTTP 429 (0: none).",
                              registry=self.registry)
        self.leader = Gauge("packagestats_leader",
                            "1 while this process holds the leader Lease (only the leader scrapes), else 0.",
                            ["identity"], registry=self.registry)

    def set_leader(self, identity: str, leading: bool) -> None:
        self.leader.labels(identity).set(1 if leading else 0)

    def watch_pacing(self, figures: Callable[[], PacingFigures]) -> None:
        """Export the request budget and the per-host breakers, read when Prometheus scrapes."""
        self.registry.register(_PacingCollector(figures))

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

    def count_failure(self, counter: Counter, key: Key, reason: str) -> None:
        counter.labels(*key, reason).inc()
        self._failures.setdefault(key, set()).add((counter, reason))

    def forget(self, key: Key) -> None:
        for labels in self._labelled.pop(key, set()):
            self.fetch_errors.remove(*labels)
        for counter, reason in self._failures.pop(key, set()):
            with contextlib.suppress(KeyError):
                counter.remove(*key, reason)
        with contextlib.suppress(KeyError):
            self.scrape_duration.remove(*key)
