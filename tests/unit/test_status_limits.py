"""The status and Event rules that keep the apiserver accepting what the operator writes: messages of
at most 1024 characters with "and N more", discovery capped and checked, the History condition and
the minimal status after a refused write."""

from __future__ import annotations

import datetime

import kubernetes

from packagestats import api, kube, status
from packagestats.api import PackageRef

T0 = datetime.datetime(2026, 9, 1, 10, 0, tzinfo=datetime.UTC)


def test_summary_names_the_first_parts_then_how_many_more() -> None:
    parts = [f"package-{i:03d}: none -> {i * 1000}" for i in range(200)]
    text = status.summary(parts)
    assert len(text) <= status.MAX_EVENT_MESSAGE
    assert text.startswith("package-000: none -> 0; package-001")
    shown = text.count("->")
    assert text.endswith(f"; and {200 - shown} more")
    assert status.summary(["short"]) == "short"
    assert status.summary(["x" * 2000]) == "and 1 more"


def test_a_changed_200_package_resource_gives_events_the_apiserver_accepts() -> None:
    refs = [PackageRef(name=f"p{i:03d}" + "a" * 200) for i in range(api.MAX_PACKAGES)]
    outcomes: dict[tuple[str, str], status.Outcome] = {
        (r.type, r.name): status.Scraped(url="https://github.com/o/p", downloads=10**12) for r in refs}
    r = status.build(None, refs, outcomes, generation=1, now=T0, history_days=90, max_versions=5)
    [changed] = [e for e in r.events if e.reason == "DownloadsChanged"]
    assert len(changed.message) <= 1024 and changed.message.endswith("more")
    failed = status.build(r.status, refs, {k: status.Failure("Timeout", "timed out " * 40, permanent=False)
                                           for k in outcomes}, generation=1, now=T0, history_days=90,
                          max_versions=5)
    [warning] = failed.events
    assert warning.type == "Warning" and len(warning.message) <= 1024 and "and " in warning.message
    ready = failed.status.condition("Ready")
    assert ready is not None and len(ready.message) <= api.MAX_CONDITION_MESSAGE
    assert all(p.error is not None and len(p.error) <= api.MAX_ERROR for p in failed.status.packages)


def test_discovery_is_capped_in_listing_order_and_checked() -> None:
    entries: list[tuple[str, str, str | None]] = [(f"pkg-{i:03d}", "container", None) for i in range(250)]
    entries[3] = ("Upper", "container", None)
    entries[4] = ("lib", "npm", "someone-else/lib")
    entries[5] = ("bad name!", "npm", None)
    entries[6] = ("tool", "pypi", None)
    entries.append(("pkg-000", "container", None))  # listed twice
    d = status.discovered("acme", entries)
    assert len(d.refs) == api.MAX_PACKAGES
    assert [r.name for r in d.refs[:4]] == ["pkg-000", "pkg-001", "pkg-002", "pkg-007"]
    assert d.listed == 250
    assert len(d.skipped) == 4
    assert "lowercase" in d.skipped[0] and "does not belong to acme" in d.skipped[1]
    r = status.build(None, d.refs, {(x.type, x.name): status.Scraped(url="https://g/x", downloads=1)
                                    for x in d.refs}, generation=1, now=T0, history_days=90, max_versions=5,
                     discovered=d)
    ready = r.status.condition("Ready")
    assert ready is not None and ready.status == "True"
    assert "the owner lists 250 packages, only the first 200 in listing order are tracked" in ready.message
    [skipped] = [e for e in r.events if e.reason == "DiscoverySkipped"]
    assert skipped.type == "Warning" and "pypi tool" in skipped.message


def test_history_condition_and_the_minimal_status_of_a_refused_write() -> None:
    r = status.build(None, [PackageRef(name="a")], {("container", "a"): status.Scraped(url="https://g/a",
                                                                                       downloads=5)},
                     generation=3, now=T0, history_days=90, max_versions=5)
    bad = status.with_history(r.status, None, False, "DatabaseUnavailable", "down", T0)
    h = bad.condition("History")
    assert h is not None and (h.status, h.reason, h.observed_generation) == ("False", "DatabaseUnavailable", 3)
    later = T0 + datetime.timedelta(hours=1)
    again = status.build(bad, [PackageRef(name="a")], {("container", "a"): status.Scraped(url="https://g/a",
                                                                                          downloads=6)},
                         generation=3, now=later, history_days=90, max_versions=5)
    assert again.status.condition("History") == h  # kept until the writer reports again
    good = status.with_history(again.status, again.status, True, "Recorded", "ok", later)
    gh = good.condition("History")
    assert gh is not None and gh.status == "True" and gh.last_transition_time == later
    minimal = status.write_failed(good, 3, "Request entity too large", later)
    assert [c.type for c in minimal.conditions] == ["Ready"]
    assert minimal.conditions[0].reason == "StatusWriteFailed"
    assert "Request entity too large" in minimal.conditions[0].message
    doc = kube.status_document("ns", "n", minimal)
    assert set(doc["status"]) >= {"conditions"}


def test_write_failures_say_what_the_apiserver_said() -> None:
    e = kubernetes.client.ApiException(status=422, reason="Unprocessable Entity")
    e.body = '{"kind":"Status","message":"status.packages: Too many: 201: must have at most 200 items"}'
    assert kube.write_failure(e) == kube.WriteFailure("Invalid", "status.packages: Too many: 201: must have at "
                                                                 "most 200 items")
    assert kube.write_failure(TimeoutError("read timed out")).reason == "Timeout"
    assert kube.yaml_safe({"a": ["x\U0001f4e6y", 1], "b": "é"}) == {"a": ["x\ufffdy", 1], "b": "é"}
