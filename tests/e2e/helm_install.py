"""The operator installed from the chart as users install it, on the e2e cluster: values, waits, checks."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import yaml

from hack.procs import free_port as free_port  # re-exported for the e2e tests
from tests.e2e.conftest import E2ECluster
from tests.support.fake_github import FakeGitHub

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "packagestats"
T = TypeVar("T")


NEW_CRD_FIELD = "e2eNote"


def bumped_chart(dest: Path, version: str) -> Path:
    """A copy of the chart at `version` whose CRD gained the optional spec field NEW_CRD_FIELD."""
    shutil.copytree(CHART, dest)
    chart = yaml.safe_load((dest / "Chart.yaml").read_text())
    chart["version"] = version
    (dest / "Chart.yaml").write_text(yaml.safe_dump(chart))
    crd_file = next((dest / "crds").glob("*.yaml"))
    crd = yaml.safe_load(crd_file.read_text())
    spec_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec_schema["properties"][NEW_CRD_FIELD] = {"type": "string", "description": "added by an upgrade test"}
    crd_file.write_text(yaml.safe_dump(crd))
    return dest


def crd_has_new_field(kube: E2ECluster) -> bool:
    live = kube.kubectl_json("get", "crd", "packagestats.packagestats.dev")
    return NEW_CRD_FIELD in live["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"]


def chart_values(kube: E2ECluster, image: str, github: FakeGitHub, metrics_port: int, health_port: int,
                 ) -> dict[str, Any]:
    """Values for this cluster: the image built here, the stand-in as GitHub, and on our node host
    networking with the apiserver's loopback address (there is no ClusterIP routing)."""
    repository, _, tag = image.rpartition(":")
    values: dict[str, Any] = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
        "settings": {"githubUrl": github.base_url, "metricsPort": metrics_port, "healthPort": health_port},
        "livenessProbe": {"initialDelaySeconds": 2},
        "readinessProbe": {"initialDelaySeconds": 1, "periodSeconds": 2},
    }
    if kube.host_network:
        values["hostNetwork"] = True
        values["extraEnv"] = [{"name": k, "value": v} for k, v in kube.apiserver_env]
    return values


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, diagnose: Callable[[], str] | None = None,
             ) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (AssertionError, OSError, subprocess.SubprocessError, json.JSONDecodeError, KeyError) as e:
            last = e
        else:
            if last:
                return cast(T, last)
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}; last seen: {last!r}\n{diagnose() if diagnose else ''}")


def diagnose(kube: E2ECluster, namespace: str) -> Callable[[], str]:
    def run() -> str:
        out = [kube.kubectl("get", "pods,deploy,events", "-n", namespace, "-o", "wide", check=False).stdout]
        pods = kube.kubectl("get", "pods", "-n", namespace, "-o", "name", check=False).stdout.split()
        for pod in pods[:3]:
            out.append(kube.kubectl("logs", "-n", namespace, pod, "--tail=60", check=False).stdout)
            out.append(kube.kubectl("describe", "-n", namespace, pod, check=False).stdout[-3000:])
        return "\n".join(out)
    return run


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == type_), None)


def ready(kube: E2ECluster, kind: str, name: str, namespace: str, timeout: float,
          explain: Callable[[], str] | None = None) -> dict[str, Any]:
    """Wait until the object's Ready condition is True; return the object."""
    def probe() -> dict[str, Any] | None:
        obj: dict[str, Any] = kube.kubectl_json("get", kind, name, "-n", namespace)
        return obj if is_ready(obj) else None
    return wait_for(f"{kind} {namespace}/{name} to be Ready", probe, timeout, explain)


def is_ready(obj: dict[str, Any]) -> bool:
    c = condition(obj, "Ready")
    return c is not None and c.get("status") == "True"


def deployment_available(kube: E2ECluster, namespace: str, name: str) -> bool:
    d = kube.kubectl_json("get", "deployment", name, "-n", namespace)
    status = d.get("status") or {}
    return bool(status.get("availableReplicas")) and status.get("updatedReplicas") == d["spec"]["replicas"]


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def operator_pod(kube: E2ECluster, namespace: str, timeout: float = 120) -> str:
    """The operator's Ready pod. With hostNetwork the chart sets maxUnavailable 1, so for one replica
    `helm --wait` asks for 1 - 1 = 0 ready pods and returns before the pod runs: wait here."""
    def ready_pod() -> str | None:
        pods = kube.kubectl_json("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/name=packagestats")
        for pod in pods["items"]:
            if pod["metadata"].get("deletionTimestamp") is None and is_ready(pod):
                return str(pod["metadata"]["name"])
        return None
    return wait_for("the operator's pod to be Ready", ready_pod, timeout, diagnose(kube, namespace))


class Helm:
    """The helm binary with a home of its own, against the e2e cluster."""

    def __init__(self, kube: E2ECluster, home: Path) -> None:
        self.kube, self.home = kube, home

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = dict(self.kube.env(), HELM_CACHE_HOME=str(self.home / "cache"),
                   HELM_CONFIG_HOME=str(self.home / "config"), HELM_DATA_HOME=str(self.home / "data"))
        proc = subprocess.run([self.kube.tool("helm"), *args], capture_output=True, text=True, env=env,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc
