"""Two operator processes, one Lease: only the leader scrapes and writes; when it is SIGKILLed the
standby takes over, reads the last status and goes on."""

from __future__ import annotations

import json
import signal
import time
import uuid
from contextlib import ExitStack
from typing import Any

import pytest

from tests.support.cluster import Cluster
from tests.support.fake_github import FakeGitHub
from tests.support.operator import (
    OperatorProcess,
    apply_packagestats,
    condition,
    get,
    request_scrape,
    running_operator,
    wait_for,
)

pytestmark = pytest.mark.cluster


def lease(kube: Cluster, name: str) -> dict[str, Any] | None:
    proc = kube.kubectl("get", "lease", name, "-n", "default", "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def test_only_the_leader_scrapes_and_a_standby_takes_over(crd: Cluster, namespace: str,
                                                          github: FakeGitHub) -> None:
    github.add_package("ha", "app", total=5)
    lease_name = f"packagestats-ha-{uuid.uuid4().hex[:8]}"
    ops: dict[str, OperatorProcess] = {}
    with ExitStack() as stack:
        for who in ("one", "two"):
            ops[who] = stack.enter_context(running_operator(crd.kubeconfig, github.base_url, {
                "PACKAGESTATS_LEASE_NAME": lease_name, "PACKAGESTATS_POD_NAME": f"op-{who}",
                "PACKAGESTATS_USER_AGENT": f"packagestats-test-{who}"}, namespace=namespace))

        def holder() -> str | None:
            got = lease(crd, lease_name)
            value = (got or {}).get("spec", {}).get("holderIdentity")
            return str(value) if value else None
        leader = wait_for("a leader", holder, 30)
        assert leader in ("op-one", "op-two")
        first, second = ("one", "two") if leader == "op-one" else ("two", "one")
        apply_packagestats(crd, namespace, "ha", {"owner": "ha", "packages": [{"name": "app"}]})
        wait_for("Ready", lambda: (c := condition(get(crd, namespace, "ha"), "Ready")) and c["status"] == "True",
                 90, op=ops[first])
        time.sleep(3)  # the standby has had time to do something wrong
        agents = {r.headers.get("user-agent") for r in github.requests}
        assert agents == {f"packagestats-test-{first}"}  # only the leader ever fetched
        managers = {m.get("manager") for m in crd.kubectl_json("get", "packagestats", "ha", "-n", namespace,
                                                                "--show-managed-fields")["metadata"]["managedFields"]}
        assert "packagestats" in managers

        github.set_total("ha", "app", 6)
        github.reset()
        ops[first].proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        ops[first].proc.wait(10)
        value = request_scrape(crd, namespace, "ha")

        def handled() -> dict[str, Any] | None:
            obj = get(crd, namespace, "ha")
            st = obj.get("status", {})
            return obj if st.get("lastHandledRequestedAt") == value and st.get("totalDownloads") == 6 else None
        obj = wait_for("the standby to handle the new requestedAt", handled, 30, op=ops[second])
        took = time.monotonic() - killed
        assert holder() == f"op-{second}"
    assert took < 30
    assert {r.headers.get("user-agent") for r in github.requests} == {f"packagestats-test-{second}"}
    # One point per day: the takeover added none twice.
    days = [p["date"] for p in obj["status"].get("history", [])]
    assert len(days) == len(set(days))
    transitions = (lease(crd, lease_name) or {}).get("spec", {}).get("leaseTransitions")
    assert transitions == 1
