"""The operator end to end: a real kube-apiserver, `packagestats run` in its own process, and the GitHub
stand-in serving real captured pages and generated ones."""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import Cluster
from tests.support.fake_github import FakeGitHub, make_versions
from tests.support.operator import (
    apply_packagestats,
    condition,
    events,
    get,
    request_scrape,
    running_operator,
    wait_for,
)

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as gh:
        gh.add_captured("headscale-2026-07.html")
        gh.add_captured("icicle-insights-2026-09.html")
        yield gh


@pytest.fixture(scope="module")
def operator_log(crd: Cluster, github: FakeGitHub) -> Iterator[Path]:
    with running_operator(crd.kubeconfig, github.base_url) as op:
        yield op.log


def ready(kube: Cluster, namespace: str, name: str, log: Path, timeout: float = 30.0,
          downloads: int | None = None) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj = get(kube, namespace, name)
        c = condition(obj, "Ready")
        if c is None or c["status"] != "True":
            return None
        if downloads is not None and obj["status"].get("totalDownloads") != downloads:
            return None
        return obj
    return wait_for(f"{namespace}/{name} Ready", probe, timeout, log)


def not_ready(kube: Cluster, namespace: str, name: str, log: Path, reason: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj = get(kube, namespace, name)
        c = condition(obj, "Ready")
        return obj if c is not None and c["status"] == "False" and c["reason"] == reason else None
    return wait_for(f"{namespace}/{name} Ready=False/{reason}", probe, 30, log)


def test_apply_gives_exact_counts_in_status_and_columns(crd: Cluster, namespace: str, github: FakeGitHub,
                                                        operator_log: Path) -> None:
    apply_packagestats(crd, namespace, "headscale", {
        "owner": "juanfont", "packages": [{"name": "headscale", "repository": "headscale"}]})
    apply_packagestats(crd, namespace, "icicle", {"owner": "ICICLE-ai", "packages": [{"name": "insights"}]})
    obj = ready(crd, namespace, "headscale", operator_log)
    st = obj["status"]
    assert st["totalDownloads"] == 1418338
    assert st["observedGeneration"] == obj["metadata"]["generation"]
    [pkg] = st["packages"]
    assert pkg["downloads"] == 1418338 and pkg["approximate"] is False
    assert pkg["url"] == f"{github.base_url}/juanfont/headscale/pkgs/container/headscale"
    assert pkg["last30Days"] == 195120  # the page's 30-day chart, summed
    assert pkg["latestDay"]["date"] == "2026-07-21"  # its newest complete day
    assert len(st["daily"]) == 30  # the resource's chart
    assert st["daily"][0]["date"] == "2026-06-22" and st["daily"][-1]["date"] == "2026-07-21"
    assert sum(d["count"] for d in st["daily"]) == 195120
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    assert st["history"] == [{"date": today, "downloads": 1418338}]
    # owner-scoped: found under /orgs/ and redirected to the linked repository's page, like GitHub
    icicle = ready(crd, namespace, "icicle", operator_log)
    assert icicle["status"]["totalDownloads"] == 302
    assert icicle["status"]["packages"][0]["url"].endswith("/ICICLE-ai/icicle-insights/pkgs/container/insights")

    table = crd.kubectl("get", "packagestats", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "OWNER", "DOWNLOADS", "READY", "LAST", "SCRAPE", "AGE"]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert rows["headscale"][1:4] == ["juanfont", "1418338", "True"]
    assert rows["icicle"][1:4] == ["ICICLE-ai", "302", "True"]


def test_versions_and_discovery(crd: Cluster, namespace: str, github: FakeGitHub, operator_log: Path) -> None:
    github.add_owner("gen-org")
    github.add_package("gen-org", "tools/cli", repository="cli", total=123456,
                       daily=list(range(30)), versions=make_versions(4))
    github.add_package("gen-org", "lib", type="npm", total=77)
    apply_packagestats(crd, namespace, "discover", {"owner": "gen-org"})
    obj = ready(crd, namespace, "discover", operator_log)
    pkgs = {(p["type"], p["name"]): p for p in obj["status"]["packages"]}
    assert set(pkgs) == {("container", "tools/cli"), ("npm", "lib")}
    assert obj["status"]["totalDownloads"] == 123456 + 77
    cli = pkgs[("container", "tools/cli")]
    assert cli["downloads"] == 123456 and cli["repository"] == "gen-org/cli"
    assert cli["last30Days"] == sum(range(30))
    expected = {v.tags[0]: v.downloads for v in make_versions(4)}
    assert {v["version"]: v["downloads"] for v in cli["versions"]} == expected
    assert "%2F" in cli["url"]


def test_requested_at_scrapes_now_and_a_change_is_recorded(crd: Cluster, namespace: str, github: FakeGitHub,
                                                          operator_log: Path) -> None:
    github.add_package("chg-org", "app", total=1000)
    apply_packagestats(crd, namespace, "chg", {"owner": "chg-org", "packages": [{"name": "app"}]})
    first = ready(crd, namespace, "chg", operator_log, downloads=1000)
    path = "/orgs/chg-org/packages/container/package/app"
    before = github.count(path)
    github.set_total("chg-org", "app", 1500)
    value = request_scrape(crd, namespace, "chg")
    obj = ready(crd, namespace, "chg", operator_log, downloads=1500)
    assert github.count(path) == before + 1
    assert obj["status"]["lastHandledRequestedAt"] == value
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    assert obj["status"]["history"] == [{"date": today, "downloads": 1500}]  # one point per day
    ready_before = condition(first, "Ready")
    ready_after = condition(obj, "Ready")
    assert ready_before is not None and ready_after is not None
    assert ready_after["lastTransitionTime"] == ready_before["lastTransitionTime"]
    changed = wait_for("DownloadsChanged event", lambda: [
        e for e in events(crd, namespace, "chg") if e["reason"] == "DownloadsChanged"
        and "app: 1000 -> 1500" in e["message"]], 15, operator_log)
    assert changed[0]["type"] == "Normal"


def test_changed_interval_takes_effect_without_restart(crd: Cluster, namespace: str, github: FakeGitHub,
                                                       operator_log: Path) -> None:
    github.add_package("int-org", "app", total=5)
    apply_packagestats(crd, namespace, "int", {"owner": "int-org", "interval": "168h",
                                                "packages": [{"name": "app"}]})
    ready(crd, namespace, "int", operator_log)
    path = "/orgs/int-org/packages/container/package/app"
    apply_packagestats(crd, namespace, "int", {"owner": "int-org", "interval": "1m",
                                                "packages": [{"name": "app"}]})
    # A new generation scrapes at once; then the interval alone brings the next scrape.
    wait_for("scrape of generation 2", lambda: get(crd, namespace, "int")["status"]["observedGeneration"] == 2,
             15, operator_log)
    after_spec_change = github.count(path)
    started = time.monotonic()
    wait_for("a scrape on the 1m interval", lambda: github.count(path) > after_spec_change, 90, operator_log)
    assert time.monotonic() - started > 45  # not before the interval was due


FAULTS: list[tuple[str, dict[str, Any], str]] = [
    ("status", {"status": 404}, "NotFound"),
    ("status", {"status": 500}, "HTTPError"),
    ("status", {"status": 429, "retry_after": "1"}, "RateLimited"),
    ("slow", {"delay": 4.0}, "Timeout"),
    ("truncate", {}, "ConnectionFailed"),
    ("huge", {"size": 3 * 1024 * 1024}, "PageTooLarge"),
    ("no_total", {}, "NoCount"),
]


@pytest.mark.parametrize(("kind", "params", "reason"), FAULTS, ids=[f[2] for f in FAULTS])
def test_a_fault_keeps_the_last_good_values_and_says_why(
    crd: Cluster, namespace: str, github: FakeGitHub, operator_log: Path,
    kind: str, params: dict[str, Any], reason: str,
) -> None:
    owner = f"f-{reason.lower()}"
    github.add_package(owner, "good", total=10)
    github.add_package(owner, "flaky", total=20_000, versions=make_versions(2))
    apply_packagestats(crd, namespace, "f", {"owner": owner, "packages": [{"name": "good"}, {"name": "flaky"}]})
    good = ready(crd, namespace, "f", operator_log, downloads=20_010)
    github.add_fault(kind, owner=owner, name="flaky", **params)  # type: ignore[arg-type]
    github.set_total(owner, "good", 11)
    request_scrape(crd, namespace, "f")
    obj = not_ready(crd, namespace, "f", operator_log, "PartiallyFailed")
    pkgs = {p["name"]: p for p in obj["status"]["packages"]}
    assert pkgs["good"]["downloads"] == 11 and "error" not in pkgs["good"]  # the others still update
    flaky_before = next(p for p in good["status"]["packages"] if p["name"] == "flaky")
    flaky = pkgs["flaky"]
    assert flaky["downloads"] == 20_000  # kept, never 0
    assert flaky["lastScrapeTime"] == flaky_before["lastScrapeTime"]
    assert flaky["versions"] == flaky_before["versions"]
    assert flaky["error"]
    assert obj["status"]["totalDownloads"] == 20_011
    message = condition(obj, "Ready")["message"]  # type: ignore[index]
    assert "1 of 2 packages failed" in message and "flaky:" in message
    warning = wait_for("Warning event", lambda: [e for e in events(crd, namespace, "f")
                                                 if e["type"] == "Warning" and "flaky:" in e["message"]],
                       15, operator_log)
    assert warning[0]["reason"] == "PartiallyFailed"
    stalled = condition(obj, "Stalled")
    assert stalled is not None
    assert stalled["status"] == ("True" if reason in ("NotFound", "PageTooLarge", "NoCount") else "False")
    github.clear_faults()
    if reason in ("RateLimited", "HTTPError", "Timeout", "ConnectionFailed"):
        time.sleep(1.2)  # let the host's breaker cooldown (1 s in tests) pass: it is shared by every test
    request_scrape(crd, namespace, "f")
    recovered = ready(crd, namespace, "f", operator_log)
    assert all("error" not in p for p in recovered["status"]["packages"])
    crd.kubectl("delete", "packagestats", "f", "-n", namespace)


def test_suspend_stops_requests(crd: Cluster, namespace: str, github: FakeGitHub, operator_log: Path) -> None:
    github.add_package("sus-org", "app", total=9)
    spec: dict[str, Any] = {"owner": "sus-org", "packages": [{"name": "app"}]}
    apply_packagestats(crd, namespace, "sus", spec)
    ready(crd, namespace, "sus", operator_log)
    apply_packagestats(crd, namespace, "sus", {**spec, "suspend": True})
    time.sleep(1.0)
    path = "/orgs/sus-org/"
    before = github.count(path)
    request_scrape(crd, namespace, "sus")
    time.sleep(3.0)
    assert github.count(path) == before
    assert get(crd, namespace, "sus")["status"]["totalDownloads"] == 9
    apply_packagestats(crd, namespace, "sus", {**spec, "suspend": False})
    wait_for("a scrape after resuming", lambda: github.count(path) > before, 15, operator_log)


def test_deletion_leaves_nothing_behind(crd: Cluster, namespace: str, github: FakeGitHub,
                                        operator_log: Path) -> None:
    github.add_package("del-org", "app", total=3)
    apply_packagestats(crd, namespace, "del", {"owner": "del-org", "interval": "1m",
                                                "packages": [{"name": "app"}]})
    obj = ready(crd, namespace, "del", operator_log)
    assert obj["metadata"]["finalizers"] == ["packagestats.dev/finalizer"]
    annotations = obj["metadata"].get("annotations", {})
    assert not [k for k in annotations if "kopf" in k]  # kopf's bookkeeping is under our prefix, if any
    crd.kubectl("delete", "packagestats", "del", "-n", namespace, "--timeout=30s")
    left = crd.kubectl("get", "packagestats", "-n", namespace, "-o", "name").stdout.split()
    assert "packagestats.packagestats.dev/del" not in left
    before = github.count("/orgs/del-org/")
    request_scrape_failed = crd.kubectl("annotate", "packagestats", "del", "-n", namespace, "x=y", check=False)
    assert request_scrape_failed.returncode != 0
    time.sleep(2)
    assert github.count("/orgs/del-org/") == before


def test_status_is_owned_by_packagestats_and_other_managers_fields_survive(
    crd: Cluster, namespace: str, github: FakeGitHub, operator_log: Path,
) -> None:
    github.add_package("own-org", "app", total=42)
    apply_packagestats(crd, namespace, "own", {"owner": "own-org", "packages": [{"name": "app"}]})
    ready(crd, namespace, "own", operator_log)
    crd.kubectl("label", "packagestats", "own", "-n", namespace, "team=devrel")
    foreign = {"apiVersion": "packagestats.dev/v1alpha1", "kind": "PackageStats",
               "metadata": {"name": "own", "namespace": namespace},
               "status": {"conditions": [{"type": "Audited", "status": "True", "reason": "Checked",
                                          "message": "by another tool",
                                          "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}
    crd.kubectl("apply", "--server-side", "--field-manager=auditor", "--subresource=status", "-f", "-",
                input=json.dumps(foreign))
    github.set_total("own-org", "app", 43)
    request_scrape(crd, namespace, "own")
    obj = ready(crd, namespace, "own", operator_log, downloads=43)
    assert obj["metadata"]["labels"]["team"] == "devrel"
    assert obj["spec"] == {"owner": "own-org", "interval": "1h", "suspend": False, "retryInterval": "1m",
                           "packages": [{"name": "app", "type": "container"}]}
    types = [c["type"] for c in obj["status"]["conditions"]]
    assert "Audited" in types and "Ready" in types
    managed = crd.kubectl_json("get", "packagestats", "own", "-n", namespace,
                               "--show-managed-fields")["metadata"]["managedFields"]
    by_manager = {(m["manager"], m.get("subresource", "")): m for m in managed}
    ours = by_manager[("packagestats", "status")]
    assert ours["operation"] == "Apply"
    assert "f:totalDownloads" in ours["fieldsV1"]["f:status"]
    our_conditions = ours["fieldsV1"]["f:status"]["f:conditions"]
    assert 'k:{"type":"Ready"}' in our_conditions and 'k:{"type":"Audited"}' not in our_conditions
    assert 'k:{"type":"Audited"}' in by_manager[("auditor", "status")]["fieldsV1"]["f:status"]["f:conditions"]
    assert "f:spec" not in ours["fieldsV1"] and ("tests", "") in by_manager
