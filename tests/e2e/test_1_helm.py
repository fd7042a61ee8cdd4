"""The image on a real node, installed by `helm install` as the README says, doing its job."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e import helm_install as hi
from tests.e2e.conftest import E2ECluster, images
from tests.support.fake_github import FakeGitHub

COMMITTED_PARSER = hi.REPO / "src" / "packagestats" / "parser.wasm"
SITE_PACKAGES = "/opt/packagestats/lib/python3.11/site-packages"
CRD_NAME = "packagestats.packagestats.dev"


def test_the_image_ships_the_committed_parser(image: str) -> None:
    if shutil.which("buildah") is None:
        pytest.skip("the image was built elsewhere (PACKAGESTATS_E2E_IMAGE): no buildah storage to read")
    inside = images.image_file(image, f"{SITE_PACKAGES}/packagestats/parser.wasm")
    assert hashlib.sha256(inside).hexdigest() == hashlib.sha256(COMMITTED_PARSER.read_bytes()).hexdigest()
    print(f"\nimage {image}: {images.image_size(image)}")


def test_a_deployment_is_scheduled_and_its_pod_runs(kube: E2ECluster, image: str, namespace: str) -> None:
    """No host network: the pod gets a namespace with loopback only, and still runs."""
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "sleeper", "namespace": namespace},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "sleeper"}},
                 "template": {"metadata": {"labels": {"app": "sleeper"}}, "spec": {
                     "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "sleep", "image": image, "imagePullPolicy": "IfNotPresent",
                                     "command": ["python3", "-c", "import time; time.sleep(3600)"]}]}}},
    }
    kube.kubectl("apply", "-f", "-", input=json.dumps(deployment))
    hi.wait_for("the Deployment to be available", lambda: hi.deployment_available(kube, namespace, "sleeper"),
                120, hi.diagnose(kube, namespace))
    pod = kube.kubectl("get", "pods", "-n", namespace, "-l", "app=sleeper", "-o",
                       "jsonpath={.items[0].metadata.name}").stdout
    links = kube.kubectl("exec", "-n", namespace, pod, "--", "python3", "-c",
                         "import socket; print(sorted(n for _, n in socket.if_nameindex()))").stdout
    assert links.strip() == "['lo']"


def test_helm_install_upgrade_uninstall(kube: E2ECluster, image: str, github: FakeGitHub, namespace: str,
                                       tmp_path: Path) -> None:
    helm = hi.Helm(kube, tmp_path / "helm")
    release, ops = "packagestats", f"{namespace}-ops"
    metrics, health = hi.free_port(), hi.free_port()
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(hi.chart_values(kube, image, github, metrics, health)))
    started = time.monotonic()
    helm.run("install", release, str(hi.CHART), "-n", ops, "--create-namespace", "-f", str(values),
             "--wait", "--timeout=180s")
    print(f"\nhelm install --wait: {time.monotonic() - started:.1f}s")
    full = f"{release}"
    pod = hi.operator_pod(kube, ops)

    # The running container's security, seen from inside it.
    proc_status = kube.kubectl("exec", "-n", ops, pod, "--", "cat", "/proc/1/status").stdout
    fields = dict(line.split(":\t", 1) for line in proc_status.splitlines() if ":\t" in line)
    assert fields["Uid"].split()[:2] == ["65532", "65532"]
    assert fields["Gid"].split()[:2] == ["65532", "65532"]
    assert int(fields["CapEff"], 16) == 0 and int(fields["CapPrm"], 16) == 0 and int(fields["CapBnd"], 16) == 0
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Seccomp"].strip() == "2"  # a seccomp filter (RuntimeDefault) is in force
    write = kube.kubectl("exec", "-n", ops, pod, "--", "python3", "-c", "open('/probe', 'w')", check=False)
    assert write.returncode != 0 and "Read-only file system" in write.stderr
    kube.kubectl("exec", "-n", ops, pod, "--", "python3", "-c", "open('/tmp/probe', 'w')")

    # It does its job: a sample from the stand-in becomes Ready with the page's exact count.
    sample = {"apiVersion": "packagestats.dev/v1alpha1", "kind": "PackageStats",
              "metadata": {"name": "headscale", "namespace": namespace,
                           "annotations": {"packagestats.dev/badge": "true"}},
              "spec": {"owner": "juanfont", "packages": [{"name": "headscale", "repository": "headscale"}]}}
    kube.kubectl("apply", "-f", "-", input=json.dumps(sample))
    obj = hi.ready(kube, "packagestats", "headscale", namespace, 120, hi.diagnose(kube, ops))
    assert obj["status"]["totalDownloads"] == 1418338
    code, text = hi.http_get(f"http://127.0.0.1:{metrics}/metrics")
    assert code == 200
    totals = [ln for ln in text.splitlines() if ln.startswith("packagestats_total_downloads{")
              and f'namespace="{namespace}"' in ln and 'name="headscale"' in ln]
    assert len(totals) == 1 and float(totals[0].rsplit(" ", 1)[1]) == 1418338
    code, badge = hi.http_get(f"http://127.0.0.1:{metrics}/badge/{namespace}/headscale")
    assert code == 200 and json.loads(badge)["message"] == "1.42M"
    assert hi.http_get(f"http://127.0.0.1:{health}/healthz")[0] == 200

    # Upgrade to a chart whose CRD gained a field: plain Helm leaves CRDs alone (the README says so);
    # the Deployment rolls to the new revision.
    changed = hi.bumped_chart(tmp_path / "chart", "0.1.1-e2e")
    helm.run("upgrade", release, str(changed), "-n", ops, "-f", str(values), "--set", "podLabels.upgraded=yes",
             "--wait", "--timeout=180s")
    assert not hi.crd_has_new_field(kube)
    hi.wait_for("the upgraded pod", lambda: kube.kubectl(
        "get", "pods", "-n", ops, "-l", "upgraded=yes", "--field-selector=status.phase=Running",
        "-o", "name").stdout.strip(), 120, hi.diagnose(kube, ops))
    hi.wait_for("the Deployment to be available", lambda: hi.deployment_available(kube, ops, full), 120,
                hi.diagnose(kube, ops))

    # Uninstall as the README says: the resources first (the operator removes its finalizer), then the release.
    kube.kubectl("delete", "packagestats", "headscale", "-n", namespace, "--timeout=60s")
    helm.run("uninstall", release, "-n", ops, "--wait", "--timeout=120s")
    gone = kube.kubectl("get", "deployment", full, "-n", ops, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    assert kube.kubectl("get", "crd", CRD_NAME, check=False).returncode == 0  # Helm never deletes CRDs
    kube.kubectl("delete", "namespace", ops, "--wait=false", check=False)
