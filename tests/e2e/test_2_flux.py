"""Flux installing the chart for real: source-controller pulls the chart pushed to a registry, helm-controller
installs it with deploy/flux/ (only the registry URL changed, by a kustomize patch), and a Flux
Kustomization with `wait: true` applies a PackageStats and waits on our status through kstatus."""

from __future__ import annotations

import datetime
import json
import os
import time
from pathlib import Path
from typing import Any

import yaml

from tests.e2e import helm_install as hi
from tests.e2e.conftest import E2ECluster, oci
from tests.support.fake_github import FakeGitHub

FLUX_DIR = hi.REPO / "deploy" / "flux"
NS = "flux-system"
RELEASE_NS = "packagestats-system"
# kstatus counts an object that has no status yet as Current, so `wait: true` alone would pass a new
# PackageStats before the operator has seen it; these are the README's expressions for our conditions.
HEALTH_CHECK_EXPRS = [{
    "apiVersion": "packagestats.dev/v1alpha1", "kind": "PackageStats",
    "current": "status.conditions.exists(e, e.type == 'Ready') && "
               "status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'True')",
    "failed": "status.conditions.exists(e, e.type == 'Stalled') && "
              "status.conditions.filter(e, e.type == 'Stalled').all(e, e.status == 'True')",
}]


def _push_chart(helm: hi.Helm, chart: Path, registry: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    helm.run("package", str(chart), "-d", str(out))
    tgz = sorted(out.glob("*.tgz"))[-1]
    helm.run("push", str(tgz), f"oci://{registry}/charts", "--plain-http")
    tgz.unlink()


def _overlay(tmp: Path, registry: str, values: dict[str, Any]) -> Path:
    """deploy/flux/ with the chart's registry changed, and the values this cluster needs."""
    overlay = tmp / "overlay"
    overlay.mkdir()
    patches = [
        {"target": {"kind": "OCIRepository", "name": "packagestats"},
         "patch": json.dumps([
             {"op": "replace", "path": "/spec/url", "value": f"oci://{registry}/charts/packagestats"},
             {"op": "add", "path": "/spec/insecure", "value": True}])},
        {"target": {"kind": "HelmRelease", "name": "packagestats"},
         "patch": json.dumps([{"op": "add", "path": f"/spec/values/{k}", "value": v} for k, v in values.items()])},
    ]
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(FLUX_DIR, overlay)], "patches": patches}))
    return overlay


def _samples(kube: E2ECluster, registry: str, tmp: Path, tag: str, namespace: str, suspend: bool) -> None:
    """Push a PackageStats as a Flux artifact; point the `samples` OCIRepository at it."""
    content = tmp / f"samples-{tag}"
    content.mkdir()
    (content / "packagestats.yaml").write_text(yaml.safe_dump({
        "apiVersion": "packagestats.dev/v1alpha1", "kind": "PackageStats",
        "metadata": {"name": "icicle-insights", "namespace": namespace},
        "spec": {"owner": "ICICLE-ai", "suspend": suspend,
                 "packages": [{"name": "insights", "repository": "icicle-insights"}]}}))
    oci.push(content, f"{registry}/samples:{tag}", revision=tag)
    kube.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
        "metadata": {"name": "samples", "namespace": NS},
        "spec": {"interval": "1m", "url": f"oci://{registry}/samples", "insecure": True, "ref": {"tag": tag}}}))


def _get(kube: E2ECluster, kind: str, name: str, namespace: str) -> dict[str, Any]:
    return dict(kube.kubectl_json("get", kind, name, "-n", namespace))


def _ready_at(obj: dict[str, Any]) -> datetime.datetime:
    c = hi.condition(obj, "Ready")
    assert c is not None
    return datetime.datetime.fromisoformat(c["lastTransitionTime"].replace("Z", "+00:00"))


def _flux_diagnose(kube: E2ECluster, namespace: str) -> Any:
    def run() -> str:
        parts = [kube.kubectl("get", "ocirepositories,helmreleases,kustomizations", "-A", "-o", "yaml",
                              check=False).stdout[-6000:],
                 hi.diagnose(kube, RELEASE_NS)()]
        return "\n".join(parts)
    return run


def test_flux_installs_upgrades_and_waits_on_packagestats(kube: E2ECluster, image: str, flux_system: str,
                                                         github: FakeGitHub, namespace: str,
                                                         tmp_path: Path) -> None:
    registry = flux_system
    helm = hi.Helm(kube, tmp_path / "helm")
    _push_chart(helm, hi.CHART, registry, tmp_path / "dist")
    values = hi.chart_values(kube, image, github, hi.free_port(), hi.free_port())
    overlay = _overlay(tmp_path, registry, values)
    diagnose = _flux_diagnose(kube, namespace)

    started = time.monotonic()
    kube.kubectl("apply", "-k", str(overlay))
    _samples(kube, registry, tmp_path, "v1", namespace, suspend=False)
    kube.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "samples", "namespace": NS},
        "spec": {"interval": "1m", "retryInterval": "5s", "timeout": "3m", "path": "./", "prune": True,
                 "wait": True, "sourceRef": {"kind": "OCIRepository", "name": "samples"},
                 "healthCheckExprs": HEALTH_CHECK_EXPRS}}))
    try:
        _install_and_wait(kube, registry, helm, tmp_path, namespace, diagnose, started)
    finally:
        # Whatever happened, leave no operator behind for the tests after this one.
        kube.kubectl("delete", "kustomization", "samples", "-n", NS, "--timeout=120s", check=False)
        kube.kubectl("delete", "helmrelease", "packagestats", "-n", NS, "--timeout=120s", check=False)
        kube.kubectl("delete", "ocirepository", "packagestats", "samples", "-n", NS, "--timeout=60s", check=False)


def _install_and_wait(kube: E2ECluster, registry: str, helm: hi.Helm, tmp_path: Path, namespace: str,
                      diagnose: Any, started: float) -> None:

    hi.wait_for("the chart's OCIRepository to be Ready",
                lambda: hi.is_ready(_get(kube, "ocirepository", "packagestats", NS)), 120, diagnose)
    hi.wait_for("the HelmRelease to be Ready",
                lambda: hi.is_ready(_get(kube, "helmrelease", "packagestats", NS)), 240, diagnose)
    hi.wait_for("the operator's Deployment to be available",
                lambda: hi.deployment_available(kube, RELEASE_NS, "packagestats"), 120, diagnose)
    stats = hi.ready(kube, "packagestats", "icicle-insights", namespace, 180, diagnose)
    print(f"\nkubectl apply -k deploy/flux (patched) to a Ready PackageStats: {time.monotonic() - started:.1f}s")
    assert stats["status"]["totalDownloads"] == 302
    ks = hi.ready(kube, "kustomization", "samples", NS, 120, diagnose)
    # kstatus waited on our status: the Kustomization turned Ready no earlier than the PackageStats.
    assert _ready_at(ks) >= _ready_at(stats).replace(microsecond=0)

    # A suspended PackageStats must not make `wait: true` hang: its observedGeneration still catches up.
    _samples(kube, registry, tmp_path, "v2", namespace, suspend=True)
    def applied_v2() -> bool:
        ks = _get(kube, "kustomization", "samples", NS)
        return hi.is_ready(ks) and str(ks["status"].get("lastAppliedRevision") or "").startswith("v2")
    hi.wait_for("the Kustomization to apply the suspended PackageStats and be Ready", applied_v2, 120, diagnose)
    suspended = _get(kube, "packagestats", "icicle-insights", namespace)
    assert suspended["spec"]["suspend"] is True
    assert suspended["status"]["observedGeneration"] == suspended["metadata"]["generation"]

    # A chart version with a changed CRD reaches the cluster through upgrade.crds: CreateReplace.
    bumped = hi.bumped_chart(tmp_path / "chart", "0.1.1")
    _push_chart(helm, bumped, registry, tmp_path / "dist")
    kube.kubectl("annotate", "ocirepository", "packagestats", "-n", NS, "--overwrite",
                 f"reconcile.fluxcd.io/requestedAt={time.time()}")

    def upgraded() -> bool:
        release = _get(kube, "helmrelease", "packagestats", NS)
        return hi.crd_has_new_field(kube) and hi.is_ready(release) and \
            str((release["status"].get("history") or [{}])[0].get("chartVersion")).startswith("0.1.1+")
    hi.wait_for("the HelmRelease to upgrade to 0.1.1 with its CRD", upgraded, 240, diagnose)

    # Clean up in the README's order: the resources (pruned with their Kustomization), then the release.
    kube.kubectl("delete", "kustomization", "samples", "-n", NS, "--timeout=120s")
    hi.wait_for("the PackageStats to be pruned", lambda: kube.kubectl(
        "get", "packagestats", "icicle-insights", "-n", namespace, check=False).returncode != 0, 60, diagnose)
    kube.kubectl("delete", "helmrelease", "packagestats", "-n", NS, "--timeout=120s")
    hi.wait_for("the release to be uninstalled", lambda: kube.kubectl(
        "get", "deployment", "packagestats", "-n", RELEASE_NS, check=False).returncode != 0, 120, diagnose)
