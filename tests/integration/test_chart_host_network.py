"""The chart's hostNetwork value, for clusters without a pod network (such as the project's own node)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support.cluster import Cluster

CHART = Path(__file__).resolve().parents[2] / "charts" / "packagestats"


def _deployment(kube: Cluster, *args: str) -> dict[str, Any]:
    out = subprocess.run([kube.tool("helm"), "template", "rel", str(CHART), *args], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    [deployment] = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment"]
    result: dict[str, Any] = deployment
    return result


def _pod_spec(kube: Cluster, *args: str) -> dict[str, Any]:
    spec: dict[str, Any] = _deployment(kube, *args)["spec"]["template"]["spec"]
    return spec


def test_host_network_is_off_by_default(kube: Cluster) -> None:
    spec = _pod_spec(kube)
    assert "hostNetwork" not in spec and "dnsPolicy" not in spec


def test_host_network_on(kube: Cluster) -> None:
    spec = _pod_spec(kube, "--set", "hostNetwork=true")
    assert spec["hostNetwork"] is True
    # Cluster DNS still answers first for a host-network pod.
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"


def test_host_network_rolls_one_pod_at_a_time(kube: Cluster) -> None:
    """A surge pod could not start where the old one holds the node's ports: stop one, then start one."""
    strategy = _deployment(kube, "--set", "hostNetwork=true")["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    assert _deployment(kube)["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 1


def test_host_network_must_be_a_boolean(kube: Cluster) -> None:
    proc = subprocess.run([kube.tool("helm"), "template", "rel", str(CHART), "--set-string", "hostNetwork=yes"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "hostNetwork" in proc.stderr
