"""End-to-end fixtures: a real node (kubelet, containerd, runc), the image built from the Dockerfile, real
Flux controllers and a registry on loopback.

Here they are the project's own (hack/node.py, hack/images.py, hack/flux.py). With KUBECONFIG set (for
example `make kind-e2e` on a laptop), the cluster it names is used instead, the image is the one
PACKAGESTATS_E2E_IMAGE names (already loaded into that cluster), and the Flux tests need Flux installed
there and PACKAGESTATS_OCI_REGISTRY (a registry that cluster pulls from over plain HTTP).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hack import controlplane, flux, images, node, oci
from tests.support.cluster import Cluster
from tests.support.fake_github import FakeGitHub

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e
__all__ = ["E2ECluster", "controlplane", "flux", "images", "node", "oci"]


@dataclass(frozen=True)
class E2ECluster(Cluster):
    # What a host-network pod needs to reach the apiserver (no ClusterIP routing on our node); empty on
    # a cluster whose Service network works.
    apiserver_env: tuple[tuple[str, str], ...] = ()
    host_network: bool = False


@pytest.fixture(scope="session")
def e2e_node() -> Iterator[node.Node | None]:
    if os.environ.get("KUBECONFIG"):
        yield None
        return
    controlplane.build()
    node.ensure_debian_packages()
    node.build()
    with node.Node(Path(tempfile.mkdtemp(prefix="packagestats-node-"))) as n:
        yield n


@pytest.fixture(scope="session")
def kube(e2e_node: node.Node | None) -> E2ECluster:
    """The e2e tests' cluster: the node's, or KUBECONFIG's (overrides the control-plane-only one)."""
    if e2e_node is None:
        bin_dir = controlplane.BIN_DIR if controlplane.BIN_DIR.exists() else None
        return E2ECluster(Path(os.environ["KUBECONFIG"]), bin_dir, local=False)
    env = tuple(sorted(e2e_node.apiserver_env().items()))
    return E2ECluster(e2e_node.kubeconfig, controlplane.BIN_DIR, local=True, apiserver_env=env, host_network=True)


@pytest.fixture(scope="session")
def image(e2e_node: node.Node | None) -> str:
    """The image built from the Dockerfile, loaded into the node."""
    given = os.environ.get("PACKAGESTATS_E2E_IMAGE")
    if given:
        return given
    if e2e_node is None:
        pytest.fail("KUBECONFIG is set: set PACKAGESTATS_E2E_IMAGE to the image loaded into that cluster")
    ref: str = images.build_image()
    images.load(e2e_node, ref)
    return ref


@pytest.fixture(scope="session")
def flux_system(e2e_node: node.Node | None, kube: E2ECluster) -> Iterator[str]:
    """Flux's controllers on the cluster; yields the registry (host:port) that they and Helm use."""
    if e2e_node is None:
        registry = os.environ.get("PACKAGESTATS_OCI_REGISTRY")
        if not registry:
            pytest.skip("KUBECONFIG is set but PACKAGESTATS_OCI_REGISTRY is not: no Flux to test against")
        yield registry
        return
    flux.build()
    with flux.Flux(Path(tempfile.mkdtemp(prefix="packagestats-flux-")), e2e_node.kubeconfig) as f:
        yield f.registry


@pytest.fixture(scope="session")
def github() -> Iterator[FakeGitHub]:
    """The GitHub stand-in on 127.0.0.1, reached by host-network pods; serves the real captured pages."""
    with FakeGitHub() as gh:
        gh.add_captured("headscale-2026-07.html")
        gh.add_captured("icicle-insights-2026-09.html")
        yield gh


@pytest.fixture
def namespace(kube: E2ECluster) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", name)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", check=False)
