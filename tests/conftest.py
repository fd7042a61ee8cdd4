from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cluster import Cluster, cluster

REPO = Path(__file__).resolve().parents[1]
CRD_FILE = REPO / "crds" / "packagestats.dev_packagestats.yaml"


@pytest.fixture(scope="session")
def kube() -> Iterator[Cluster]:
    """A real API server for the whole session (built on first use, then cached)."""
    with cluster() as c:
        yield c


@pytest.fixture(scope="session")
def crd(kube: Cluster) -> Cluster:
    kube.kubectl("apply", "--server-side", "--field-manager=packagestats-tests", "-f", str(CRD_FILE))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                 "crd/packagestats.packagestats.dev")
    return kube


@pytest.fixture
def namespace(kube: Cluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", name)
    yield name
    # Without a controller-manager the namespace stays Terminating; its objects are gone with the
    # throwaway control plane. On a real cluster it is cleaned up normally.
    kube.kubectl("delete", "namespace", name, "--wait=false", check=False)
