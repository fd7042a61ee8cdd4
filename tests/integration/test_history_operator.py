"""The operator with a history database, end to end: `packagestats run` against the real apiserver and
the GitHub stand-in, writing to a real SQLite file; a database that is down (History=False, scraping
goes on, the password in no log, status or Event); and a status the apiserver refuses
(Ready=False/StatusWriteFailed with the apiserver's message, nothing half-written, a Warning)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cluster import Cluster
from tests.support.fake_github import FakeGitHub
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

SECRET = "pw-that-must-not-leak"


@pytest.fixture(scope="module")
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as gh:
        gh.add_captured("headscale-2026-07.html")
        gh.add_package("hist-org", "tool", repository="tool", total=14_400, daily=[1] * 29 + [5])
        gh.add_package("hist-org", "lib", type="npm", total=300, daily=[2] * 30)
        yield gh


def _cond(kube: Cluster, namespace: str, name: str, type_: str, status_: str, log: Path,
          timeout: float = 60) -> dict[str, object]:
    def probe() -> dict[str, object] | None:
        obj = get(kube, namespace, name)
        c = condition(obj, type_)
        return obj if c is not None and c["status"] == status_ else None
    return wait_for(f"{namespace}/{name} {type_}={status_}", probe, timeout, log)


def test_scrapes_are_recorded_and_read_back(crd: Cluster, namespace: str, github: FakeGitHub,
                                            tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/history.db"
    with running_operator(crd.kubeconfig, github.base_url, {"PACKAGESTATS_HISTORY_URL": url},
                          namespace=namespace) as op:
        apply_packagestats(crd, namespace, "tools", {"owner": "hist-org", "packages": [
            {"name": "tool", "repository": "tool"}, {"name": "lib", "type": "npm"}]})
        obj = _cond(crd, namespace, "tools", "History", "True", op.log)
        assert condition(obj, "Ready")["status"] == "True"  # type: ignore[index]
    script = Path(sys.executable).parent / "packagestats"
    proc = subprocess.run([str(script), "history", "tools", "-n", namespace, "--db", url, "-o", "json"],
                          capture_output=True, text=True, env=crd.env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["totalDownloads"] == 14_700
    tool = next(p for p in doc["packages"] if p["name"] == "tool")
    assert len(tool["days"]) == 30 and tool["days"][-1]["totalDownloads"] == 14_400
    assert [d["downloads"] for d in tool["days"]] == [1] * 29 + [5]
    csv_out = subprocess.run([str(script), "history", "tools", "-n", namespace, "--db", url, "-o", "csv"],
                             capture_output=True, text=True, env=crd.env(), timeout=60).stdout
    assert csv_out.splitlines()[0] == "package,type,date,downloads,derived,total_downloads"


def test_a_database_that_is_down_never_stops_scraping(crd: Cluster, namespace: str, github: FakeGitHub) -> None:
    url = f"postgresql://packagestats:{SECRET}@127.0.0.1:9/packagestats"  # nothing listens on port 9
    with running_operator(crd.kubeconfig, github.base_url, {"PACKAGESTATS_HISTORY_URL": url},
                          namespace=namespace) as op:
        apply_packagestats(crd, namespace, "down", {"owner": "juanfont", "packages": [
            {"name": "headscale", "repository": "headscale"}]})
        obj = _cond(crd, namespace, "down", "History", "False", op.log)
        history = condition(obj, "History")
        assert history is not None and history["reason"] == "DatabaseUnavailable"
        assert condition(obj, "Ready")["status"] == "True"  # type: ignore[index]
        assert obj["status"]["totalDownloads"] == 1418338  # type: ignore[index]
        warnings = wait_for("HistoryWriteFailed Warning", lambda: [
            e for e in events(crd, namespace, "down") if e["reason"] == "HistoryWriteFailed"], 30, op.log)
        request_scrape(crd, namespace, "down")
        wait_for("the repeat aggregated into one Event", lambda: [
            e for e in events(crd, namespace, "down") if e["reason"] == "HistoryWriteFailed" and e["count"] >= 2],
            30, op.log)
        assert len([e for e in events(crd, namespace, "down") if e["reason"] == "HistoryWriteFailed"]) == 1
        log = op.log.read_text()
    assert SECRET not in log and "postgresql://packagestats:***@127.0.0.1:9/packagestats" in log
    assert SECRET not in json.dumps(get(crd, namespace, "down")) and SECRET not in json.dumps(warnings)


POLICY = """
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: NAME}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - apiGroups: [packagestats.dev]
        apiVersions: ["*"]
        operations: [UPDATE]
        resources: [packagestats/status]
  validations:
    - expression: "!has(object.status) || !has(object.status.packages) || size(object.status.packages) <= 1"
      message: "test policy: at most one package in status"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: NAME}
spec:
  policyName: NAME
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {kubernetes.io/metadata.name: NAMESPACE}
"""


def test_a_refused_status_write_is_never_silent(crd: Cluster, namespace: str, github: FakeGitHub) -> None:
    policy = POLICY.replace("NAMESPACE", namespace).replace("NAME", f"refuse-{namespace}")
    crd.kubectl("apply", "-f", "-", input=policy)
    try:
        with running_operator(crd.kubeconfig, github.base_url, namespace=namespace) as op:
            apply_packagestats(crd, namespace, "refused", {"owner": "hist-org", "packages": [
                {"name": "tool", "repository": "tool"}, {"name": "lib", "type": "npm"}]})

            def refused() -> dict[str, object] | None:
                obj = get(crd, namespace, "refused")
                c = condition(obj, "Ready")
                return obj if c is not None and c["reason"] == "StatusWriteFailed" else None
            obj = wait_for("Ready=False/StatusWriteFailed", refused, 60, op.log)
            ready = condition(obj, "Ready")
            assert ready is not None and ready["status"] == "False"
            assert "test policy: at most one package in status" in ready["message"]
            assert obj["status"].get("packages", []) == []  # type: ignore[attr-defined]  # nothing half-written
            wait_for("StatusWriteFailed Warning", lambda: [
                e for e in events(crd, namespace, "refused") if e["reason"] == "StatusWriteFailed"
                and e["type"] == "Warning"], 30, op.log)
    finally:
        crd.kubectl("delete", "-f", "-", input=policy, check=False)
