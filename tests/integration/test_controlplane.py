"""The control plane is real: what a kube-apiserver + etcd do, and a mock would not."""

from __future__ import annotations

import json
import ssl

import httpx
import kubernetes
import pytest

from packagestats import api, kube
from tests.support.cluster import Cluster

pytestmark = pytest.mark.cluster


def test_namespace_created_and_read_back(kube: Cluster, namespace: str) -> None:
    core = kubernetes.client.CoreV1Api(kube.api_client())
    ns = core.read_namespace(namespace)
    assert ns.metadata is not None and ns.status is not None
    assert ns.metadata.name == namespace
    assert ns.status.phase == "Active"
    assert ns.metadata.uid  # assigned by the apiserver


def test_crd_is_established_and_served(crd: Cluster) -> None:
    obj = crd.kubectl_json("get", "crd", "packagestats.packagestats.dev")
    conditions = {c["type"]: c["status"] for c in obj["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions["NamesAccepted"] == "True"
    resources = crd.kubectl("api-resources", "--api-group=packagestats.dev", "-o", "name").stdout.split()
    assert resources == ["packagestats.packagestats.dev"]


async def test_status_by_server_side_apply_shows_field_manager(crd: Cluster, namespace: str) -> None:
    body = {"apiVersion": api.API_VERSION, "kind": api.KIND,
            "metadata": {"name": "ssa", "namespace": namespace}, "spec": {"owner": "octo-org"}}
    crd.kubectl("apply", "-f", "-", input=json.dumps(body))
    writer = kube.StatusWriter(crd.api_client())
    await writer.apply(namespace, "ssa", api.PackageStatsStatus(observed_generation=1, total_downloads=42))
    obj = crd.kubectl_json("get", "packagestats", "ssa", "-n", namespace, "--show-managed-fields")
    assert obj["status"] == {"observedGeneration": 1, "totalDownloads": 42,
                             "packages": [], "daily": [], "history": [], "conditions": []}
    status_managers = [m for m in obj["metadata"]["managedFields"] if m.get("subresource") == "status"]
    assert [(m["manager"], m["operation"]) for m in status_managers] == [("packagestats", "Apply")]
    assert "f:totalDownloads" in status_managers[0]["fieldsV1"]["f:status"]


def test_service_account_token_is_denied_by_rbac(kube: Cluster, namespace: str) -> None:
    kube.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    token = kube.kubectl("create", "token", "nobody", "-n", namespace).stdout.strip()
    assert token.count(".") == 2  # a signed JWT from the TokenRequest API
    server = kube.kubectl("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}").stdout
    ca = kube.kubectl("config", "view", "--minify", "--raw",
                      "-o", "jsonpath={.clusters[0].cluster.certificate-authority}").stdout
    assert ca, "the kubeconfig names its CA file"
    verify = ssl.create_default_context(cafile=ca)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(verify=verify, headers=headers, timeout=10) as client:
        denied = client.get(f"{server}/api/v1/namespaces/{namespace}/secrets")
        assert denied.status_code == 403
        assert f"system:serviceaccount:{namespace}:nobody" in denied.json()["message"]
        # Authenticated, not anonymous: the same token may ask what it is allowed to do.
        review = client.post(f"{server}/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", json={
            "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"namespace": namespace, "verb": "list", "resource": "secrets"}},
        })
        assert review.status_code == 201
        assert review.json()["status"]["allowed"] is False
    # and once a Role allows it, the same request goes through: RBAC decided, not something else
    kube.kubectl("create", "role", "read-secrets", "--verb=list", "--resource=secrets", "-n", namespace)
    kube.kubectl("create", "rolebinding", "read-secrets", "--role=read-secrets",
                 f"--serviceaccount={namespace}:nobody", "-n", namespace)
    with httpx.Client(verify=verify, headers=headers, timeout=10) as client:
        for _ in range(50):
            allowed = client.get(f"{server}/api/v1/namespaces/{namespace}/secrets")
            if allowed.status_code == 200:
                break
        assert allowed.status_code == 200
