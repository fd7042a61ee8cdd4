"""Polite to GitHub, on the real control plane with the operator in its own process: the breaker
through a 429 storm and a 500 outage, per-package retries, and the request budget under 1,000 packages."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from tests.support.cluster import Cluster
from tests.support.fake_github import FakeGitHub
from tests.support.operator import (
    apply_packagestats,
    condition,
    get,
    running_operator,
    wait_for,
)

pytestmark = pytest.mark.cluster

# The scenario tests run the breaker's default cooldown (the other modules shorten it).
DEFAULT_BREAKER = {"PACKAGESTATS_BREAKER_COOLDOWN_SECONDS": "30"}


def ready_status(kube: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    obj = get(kube, namespace, name)
    c = condition(obj, "Ready")
    return obj if c is not None and c["status"] == "True" else None


def bursts(times: list[float], gap: float = 1.0) -> list[list[float]]:
    """Request times grouped into bursts (requests less than `gap` apart)."""
    groups: list[list[float]] = []
    for t in sorted(times):
        if groups and t - groups[-1][-1] < gap:
            groups[-1].append(t)
        else:
            groups.append([t])
    return groups


def test_429_storm_then_recovery(crd: Cluster, namespace: str, github: FakeGitHub) -> None:
    for name in ("a", "b"):
        github.add_package("storm", name, total=100)
    github.add_fault("status", owner="storm", status=429, retry_after="10")
    with running_operator(crd.kubeconfig, github.base_url, DEFAULT_BREAKER, namespace=namespace) as op:
        apply_packagestats(crd, namespace, "storm", {"owner": "storm", "retryInterval": "5s",
                                                     "packages": [{"name": "a"}, {"name": "b"}]})

        def not_ready_with_next_try() -> dict[str, Any] | None:
            c = condition(get(crd, namespace, "storm"), "Ready")
            return c if c is not None and c["status"] == "False" and "Next try at" in c["message"] else None
        ready_cond = wait_for("Ready=False saying when the next try is", not_ready_with_next_try, 90, op=op)
        assert "RateLimited" in str(get(crd, namespace, "storm")["status"]["packages"])
        assert ready_cond["reason"] == "ScrapeFailed"
        time.sleep(25)  # the storm goes on: the operator must wait out each Retry-After
        storm_times = [r.time for r in github.requests]
        storm_log = [(round(r.time, 3), r.path) for r in github.requests]
        github.clear_faults()
        storm_end = time.monotonic()
        obj = wait_for("Ready after the storm", lambda: ready_status(crd, namespace, "storm"), 60, op=op)
    assert time.monotonic() - storm_end < 60
    assert obj["status"]["totalDownloads"] == 200
    groups = bursts(storm_times)
    # Each 429 said "retry in 10 s": no request during a cooldown, only a burst after each one.
    assert len(groups) >= 2, groups
    for before, after in itertools.pairwise(groups):
        assert after[0] - before[-1] >= 9.5, groups
    # Only the probe asks after a cooldown; the other package waits for its answer.
    assert all(len(g) <= 2 for g in groups), storm_log


def test_500_for_30s_then_recovery(crd: Cluster, namespace: str, github: FakeGitHub) -> None:
    for name in ("a", "b", "c"):
        github.add_package("down", name, total=7)
    outage = github.add_fault("status", status=500)
    with running_operator(crd.kubeconfig, github.base_url, DEFAULT_BREAKER, namespace=namespace) as op:
        apply_packagestats(crd, namespace, "down", {"owner": "down", "retryInterval": "5s",
                                                    "packages": [{"name": n} for n in ("a", "b", "c")]})
        wait_for("the first request", lambda: github.count() > 0, 90, op=op)
        # 30 s of 500s from the first request on, ended by the stand-in itself: a timer started when
        # this test noticed the first request would stretch the outage past the breaker's first probe.
        started = min(r.time for r in github.requests)
        outage.until = storm_end = started + 30
        time.sleep(max(0.0, storm_end - time.monotonic()))
        during = [r.time for r in github.requests if r.time < storm_end]
        obj = wait_for("Ready after the outage", lambda: ready_status(crd, namespace, "down"), 60, op=op)
    assert time.monotonic() - storm_end < 60
    assert obj["status"]["totalDownloads"] == 21
    groups = bursts(during)
    # The first burst (three packages, one retry each) opens the breaker for 30 s: one outage, one
    # cooldown, whatever the number of failures in it.
    assert len(groups[0]) <= 6, groups
    assert all(after[0] - before[-1] >= 29 for before, after in itertools.pairwise(groups)), groups
    assert time.monotonic() - started < 100


def test_a_failed_package_is_retried_alone(crd: Cluster, namespace: str, github: FakeGitHub) -> None:
    github.add_package("retry", "good", total=1)
    github.add_package("retry", "flaky", total=2)
    # Three failed requests (the operator retries once in a request): two scrapes fail, the third works.
    github.add_fault("status", owner="retry", name="flaky", status=503, times=4)
    with running_operator(crd.kubeconfig, github.base_url, namespace=namespace) as op:  # breaker cooldown 1 s
        apply_packagestats(crd, namespace, "retry", {"owner": "retry", "retryInterval": "2s",
                                                     "packages": [{"name": "good"}, {"name": "flaky"}]})
        obj = wait_for("Ready once flaky recovers", lambda: ready_status(crd, namespace, "retry"), 90, op=op)
    assert obj["status"]["totalDownloads"] == 3
    assert github.count("/orgs/retry/packages/container/package/good") == 1  # never re-fetched for flaky
    flaky = [r.time for r in github.requests if r.path.startswith("/orgs/retry/packages/container/package/flaky")]
    assert len(flaky) == 5
    # Retries 2 s, then 4 s after the failures (the in-request retry comes at once).
    tries = bursts(flaky, gap=0.5)
    assert len(tries) == 3, tries
    assert 1.8 <= tries[1][0] - tries[0][-1] < 3.5 and 3.8 <= tries[2][0] - tries[1][-1] < 6, tries


def test_1000_packages_under_a_small_budget(crd: Cluster, namespace: str, github: FakeGitHub) -> None:
    per_minute = 1200  # 20 a second, bursts of 20: 1,000 packages take 50 s
    names = [f"p{i}" for i in range(200)]
    for r in range(5):
        for n in names:
            github.add_package(f"bulk{r}", n, total=1)
    settings = {"PACKAGESTATS_REQUESTS_PER_MINUTE": str(per_minute), "PACKAGESTATS_MAX_VERSION_PAGES": "0",
                "PACKAGESTATS_MAX_CONCURRENCY": "32", "PACKAGESTATS_MAX_CONCURRENCY_PER_HOST": "32",
                "PACKAGESTATS_REQUEST_TIMEOUT_SECONDS": "10"}
    with running_operator(crd.kubeconfig, github.base_url, settings, namespace=namespace) as op:
        for r in range(5):
            apply_packagestats(crd, namespace, f"bulk{r}", {"owner": f"bulk{r}", "retryInterval": "5s",
                                                           "packages": [{"name": n} for n in names]})

        def all_ready() -> bool:
            return all(ready_status(crd, namespace, f"bulk{r}") for r in range(5))
        wait_for("1,000 packages Ready", all_ready, 150, op=op)
    times = sorted(r.time for r in github.requests)
    # One request per package (a slow answer of the loaded stand-in may cost a retry).
    assert 1000 <= len(times) <= 1010
    rate = per_minute / 60
    # Over every window the requests stay within the budget: its rate plus one burst, plus a second's
    # worth for the stand-in seeing them late (it stamps a request when a thread of its own takes it,
    # on a busy machine). Unpaced, the operator sends them about twice as fast.
    for window in (10.0, 30.0):
        j = 0
        for i, t in enumerate(times):
            while times[j] < t - window:
                j += 1
            assert i - j + 1 <= rate * (window + 1) + rate, (window, i - j + 1)
    assert times[-1] - times[0] >= (1000 - rate) / rate * 0.95  # the budget, not the operator, set the pace
