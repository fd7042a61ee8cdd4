"""Faults contained, on the real control plane: the operator SIGKILLed mid-scrape, hostile pages at
once, and the apiserver away for five minutes."""

from __future__ import annotations

import datetime
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import Cluster
from tests.support.fake_github import FakeGitHub
from tests.support.operator import (
    apply_packagestats,
    condition,
    get,
    request_scrape,
    running_operator,
    wait_for,
)

pytestmark = pytest.mark.cluster


def ready(kube: Cluster, namespace: str, name: str, downloads: int | None = None) -> dict[str, Any] | None:
    obj = get(kube, namespace, name)
    c = condition(obj, "Ready")
    if c is None or c["status"] != "True":
        return None
    if downloads is not None and obj["status"].get("totalDownloads") != downloads:
        return None
    return obj


def one_point_per_day(obj: dict[str, Any]) -> None:
    days = [p["date"] for p in obj["status"].get("history", [])]
    assert len(days) == len(set(days)), days


def test_sigkill_mid_scrape_then_restart(crd: Cluster, namespace: str, github: FakeGitHub) -> None:
    github.add_package("kill", "app", total=10)
    lease = {"PACKAGESTATS_LEASE_NAME": f"packagestats-kill-{uuid.uuid4().hex[:8]}"}
    with running_operator(crd.kubeconfig, github.base_url, lease, namespace=namespace) as op:
        apply_packagestats(crd, namespace, "kill", {"owner": "kill", "packages": [{"name": "app"}]})
        wait_for("Ready", lambda: ready(crd, namespace, "kill", 10), 90, op=op)
        github.set_total("kill", "app", 11)
        github.add_fault("slow", owner="kill", delay=1.5, times=1)
        github.reset()
        request_scrape(crd, namespace, "kill")
        wait_for("the scrape to be in flight", lambda: github.in_flight > 0, 15, op=op)
        op.proc.send_signal(signal.SIGKILL)
        op.proc.wait(10)
    before = get(crd, namespace, "kill")
    assert before["status"]["totalDownloads"] == 10  # the killed scrape wrote nothing
    with running_operator(crd.kubeconfig, github.base_url, lease, namespace=namespace) as op:
        # The killed process still holds the Lease: its successor takes over when it runs out (15 s).
        obj = wait_for("the restarted operator to finish the scrape", lambda: ready(crd, namespace, "kill", 11),
                       90, op=op)
    reconciling = condition(obj, "Reconciling")
    assert reconciling is not None and reconciling["status"] == "False"
    assert obj["status"]["lastHandledRequestedAt"] == obj["metadata"]["annotations"]["packagestats.dev/requestedAt"]
    one_point_per_day(obj)


def test_hostile_pages_at_once_are_each_a_parser_limit(crd: Cluster, namespace: str, github: FakeGitHub) -> None:
    hostile = [f"bomb{i}" for i in range(6)]
    github.add_package("hostile", "fine", total=3)
    for name in hostile:
        github.add_package("hostile", name, total=1)
        # A million elements: more than 16 MiB of wasm memory can hold.
        github.set_page("hostile", name, b"<b>x</b>" * 1_000_000)
    settings = {"PACKAGESTATS_WASM_MEMORY_BYTES": str(16 << 20), "PACKAGESTATS_MAX_PARSES": "2",
                "PACKAGESTATS_MAX_RESPONSE_BYTES": str(9 << 20), "PACKAGESTATS_MAX_CONCURRENCY": "8",
                "PACKAGESTATS_MAX_CONCURRENCY_PER_HOST": "8", "PACKAGESTATS_REQUEST_TIMEOUT_SECONDS": "30"}
    with running_operator(crd.kubeconfig, github.base_url, settings, namespace=namespace) as op:
        apply_packagestats(crd, namespace, "hostile", {
            "owner": "hostile", "packages": [{"name": n} for n in ["fine", *hostile]]})

        def failed() -> dict[str, Any] | None:
            obj = get(crd, namespace, "hostile")
            c = condition(obj, "Ready")
            return obj if c is not None and c["reason"] == "PartiallyFailed" else None
        obj = wait_for("the hostile pages to fail", failed, 120, op=op)
        assert op.proc.poll() is None  # alive
        pkgs = {p["name"]: p for p in obj["status"]["packages"]}
        assert pkgs["fine"]["downloads"] == 3 and "error" not in pkgs["fine"]
        assert {pkgs[n].get("errorReason") for n in hostile} == {"ParserLimit"}
        assert all("memory" in pkgs[n]["error"] for n in hostile)
        assert obj["status"]["totalDownloads"] == 3
        rss_kib = next(int(line.split()[1]) for line in Path(f"/proc/{op.pid}/status").read_text().splitlines()
                       if line.startswith("VmHWM"))
    # Two parses in flight of 16 MiB each, plus the process: far below what six at once could take.
    assert rss_kib < 400 * 1024


def test_apiserver_away_for_five_minutes(crd: Cluster, namespace: str, github: FakeGitHub) -> None:
    cp = crd.control_plane
    if cp is None:
        pytest.skip("needs the local control plane (its apiserver is stopped and started)")
    github.add_package("outage", "app", total=100)
    with running_operator(crd.kubeconfig, github.base_url, namespace=namespace) as op:
        apply_packagestats(crd, namespace, "outage", {"owner": "outage", "interval": "1m",
                                                      "retryInterval": "10s", "packages": [{"name": "app"}]})
        wait_for("Ready", lambda: ready(crd, namespace, "outage", 100), 90, op=op)
        github.set_total("outage", "app", 150)
        cp.stop_apiserver()
        stopped = time.monotonic()
        try:
            # The operator goes on scraping on its interval and keeps what it could not write.
            wait_for("a scrape during the outage", lambda: github.count("/orgs/outage/") > 1, 90, op=op)
            time.sleep(max(0.0, 300 - (time.monotonic() - stopped)))
            assert op.proc.poll() is None
        finally:
            cp.start_apiserver()
        back = time.monotonic()
        obj = wait_for("the status written after the outage", lambda: ready(crd, namespace, "outage", 150), 60,
                       op=op)
        caught_up = time.monotonic() - back
        # The watch reconnected: a new requestedAt is handled at once.
        github.set_total("outage", "app", 160)
        value = request_scrape(crd, namespace, "outage")
        obj = wait_for("a new requestedAt after the outage",
                       lambda: (o := ready(crd, namespace, "outage", 160))
                       and o["status"]["lastHandledRequestedAt"] == value and o, 30, op=op)
        assert op.proc.poll() is None  # survived without a restart
    assert caught_up < 60
    one_point_per_day(obj)
    last = datetime.datetime.fromisoformat(obj["status"]["lastScrapeTime"])
    assert last > datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=2)
