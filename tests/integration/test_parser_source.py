"""The operator's parser follower against the real apiserver: a Flux OCIRepository (Flux's own CRD) whose
status.artifact points at a real HTTP server serving the artifact tarball, as source-controller does.
Only the artifact URL and the OCIRepository's status are used, so source-controller itself can take the
HTTP server's place unchanged (the end-to-end test with Flux does that)."""

from __future__ import annotations

import datetime
import hashlib
import http.server
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from packagestats import parser_source
from packagestats.metrics import Metrics, Observations
from packagestats.parser_source import Follower, OCIRepositorySource
from packagestats.sandbox import Sandbox, module_bytes
from tests.support import flux
from tests.support.cluster import Cluster
from tests.support.parser_artifacts import SELFTEST_PAGE, other_interface, rebadged, selftest_files, tar_gz

pytestmark = pytest.mark.cluster

PAGE = Path(__file__).resolve().parents[1] / "data" / "ghcr-pages" / SELFTEST_PAGE


@pytest.fixture(scope="module")
def oci_crd(kube: Cluster) -> Cluster:
    try:
        crd = next(c for c in flux.crds() if c.name.startswith("ocirepositories."))
    except flux.GoUnavailable as e:
        pytest.skip(str(e))
    kube.kubectl("apply", "--server-side", "--field-manager=packagestats-tests", "-f", str(crd.path))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd.name}")
    return kube


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class Artifacts:
    """A directory of tarballs served over HTTP on loopback, as source-controller serves artifacts."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), lambda *a: _Quiet(*a, directory=str(root)))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.requests = 0

    def publish(self, name: str, files: dict[str, bytes]) -> tuple[str, str]:
        data = tar_gz(files)
        (self.root / name).write_bytes(data)
        return f"http://127.0.0.1:{self.server.server_port}/{name}", "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def artifacts(tmp_path: Path) -> Iterator[Artifacts]:
    served = Artifacts(tmp_path)
    yield served
    served.server.shutdown()
    served.server.server_close()


def set_artifact(kube: Cluster, namespace: str, name: str, url: str, digest: str, revision: str) -> None:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    artifact = {"url": url, "digest": digest, "revision": revision, "path": f"ocirepository/{name}.tar.gz",
                "lastUpdateTime": now}
    import json

    kube.kubectl("-n", namespace, "patch", "ocirepository", name, "--subresource=status", "--type=merge",
                 "-p", json.dumps({"status": {"artifact": artifact}}))


@pytest.fixture
def repository(oci_crd: Cluster, namespace: str) -> str:
    name = f"parser-{uuid.uuid4().hex[:6]}"
    oci_crd.kubectl("apply", "-f", "-", input=f"""
apiVersion: source.toolkit.fluxcd.io/v1
kind: OCIRepository
metadata: {{name: {name}, namespace: {namespace}}}
spec: {{interval: 1m, url: "oci://127.0.0.1:5000/packagestats/parser", ref: {{tag: latest}}}}
""")
    return name


async def test_following_an_ocirepository(kube: Cluster, namespace: str, repository: str, artifacts: Artifacts,
                                          tmp_path: Path) -> None:
    sandbox = Sandbox(fuel=2_000_000_000, memory_bytes=256 << 20, timeout_seconds=5.0, cache_dir=tmp_path / "c")
    builtin = sandbox.load()
    metrics = Metrics(Observations(), 5)
    client = kube.api_client()
    refused: list[str] = []

    def on_refused(source: str, e: parser_source.Refused) -> None:
        refused.append(e.reason)
        metrics.parser_refused.labels(source, e.reason).inc()

    async with httpx.AsyncClient() as http:
        source = OCIRepositorySource(namespace, repository, parser_source.kubernetes_getter(client), http)
        follower = Follower(sandbox, source, notify=parser_source.event_poster(client, namespace, repository),
                            on_refused=on_refused)

        # No artifact yet: nothing to load, the built-in module stays.
        assert not await follower.check_once()
        assert refused == ["NoArtifact"] and sandbox.info == builtin

        good = rebadged("flux-1")
        url, digest = artifacts.publish("one.tar.gz", {"parser.wasm": good, **selftest_files(sandbox)})
        set_artifact(kube, namespace, repository, url, digest, "latest@sha256:" + "1" * 64)
        assert await follower.check_once()
        assert sandbox.info.digest == "sha256:" + hashlib.sha256(good).hexdigest() != builtin.digest
        assert follower.origin == f"ocirepository:{namespace}/{repository}@latest@sha256:{'1' * 64}"
        assert sandbox.parse(PAGE.read_bytes()).parser == sandbox.info
        in_use = sandbox.info

        # Another interface: refused, with an Event on the OCIRepository; the module in use stays.
        url, digest = artifacts.publish("two.tar.gz", {"parser.wasm": other_interface(), **selftest_files(sandbox)})
        set_artifact(kube, namespace, repository, url, digest, "latest@sha256:" + "2" * 64)
        assert not await follower.check_once()
        assert refused[-1] == "InterfaceMismatch" and sandbox.info == in_use

        # The status's digest is not the artifact's: refused before the tarball is opened.
        url, _ = artifacts.publish("three.tar.gz", {"parser.wasm": rebadged("flux-3"), **selftest_files(sandbox)})
        set_artifact(kube, namespace, repository, url, "sha256:" + "0" * 64, "latest@sha256:" + "3" * 64)
        assert not await follower.check_once()
        assert refused[-1] == "DigestMismatch" and sandbox.info == in_use

        # A module that prints another total for its own self-test page: refused.
        url, digest = artifacts.publish("four.tar.gz", {"parser.wasm": rebadged("flux-4"),
                                                        **selftest_files(sandbox, expected_downloads=1)})
        set_artifact(kube, namespace, repository, url, digest, "latest@sha256:" + "4" * 64)
        assert not await follower.check_once()
        assert refused[-1] == "SelfTestFailed" and sandbox.info == in_use

        # Without a self-test page: refused.
        url, digest = artifacts.publish("five.tar.gz", {"parser.wasm": rebadged("flux-5")})
        set_artifact(kube, namespace, repository, url, digest, "latest@sha256:" + "5" * 64)
        assert not await follower.check_once()
        assert refused[-1] == "NoSelfTest" and sandbox.info == in_use

        # The artifact is gone from the server: refused, and tried again at the next check.
        set_artifact(kube, namespace, repository, url.replace("five", "gone"), "sha256:" + "6" * 64,
                     "latest@sha256:" + "6" * 64)
        assert not await follower.check_once()
        assert refused[-1] == "DownloadFailed"

        # A good module again: in use, without a restart.
        better = rebadged("flux-7")
        url, digest = artifacts.publish("seven.tar.gz", {"parser.wasm": better, **selftest_files(sandbox)})
        set_artifact(kube, namespace, repository, url, digest, "latest@sha256:" + "7" * 64)
        assert await follower.check_once()
        assert sandbox.info.digest == "sha256:" + hashlib.sha256(better).hexdigest()
        assert follower.refused is None

    events = kube.events(namespace, repository, "OCIRepository")
    assert [r for r, _ in events].count("ParserLoaded") == 2
    for reason in ("NoArtifact", "InterfaceMismatch", "DigestMismatch", "SelfTestFailed", "NoSelfTest"):
        assert any(reason in m for r, m in events if r == "ParserRefused"), reason
    value = metrics.registry.get_sample_value("packagestats_parser_refused_total",
                                              {"source": source.name, "reason": "InterfaceMismatch"})
    assert value == 1.0


async def test_follow_starts_with_the_configured_module(kube: Cluster, namespace: str, repository: str,
                                                        artifacts: Artifacts, tmp_path: Path) -> None:
    """The operator's start-up hook: the OCIRepository's module is in use before the first scrape."""
    good = rebadged("flux-start")
    sandbox = Sandbox(fuel=2_000_000_000, memory_bytes=256 << 20, timeout_seconds=5.0, cache_dir=tmp_path / "c")
    url, digest = artifacts.publish("start.tar.gz", {"parser.wasm": good, **selftest_files(sandbox)})
    set_artifact(kube, namespace, repository, url, digest, "v1")
    metrics = Metrics(Observations(), 5)
    task = await parser_source.follow(f"ocirepository:{namespace}/{repository}", hashlib.sha256(good).hexdigest(),
                                      60, sandbox, kube.api_client(), metrics)
    assert task is not None
    try:
        assert sandbox.info.digest == "sha256:" + hashlib.sha256(good).hexdigest()
        labels: dict[str, Any] = {"version": "0.2.0", "digest": sandbox.info.digest,
                                  "source": f"ocirepository:{namespace}/{repository}"}
        assert metrics.registry.get_sample_value("packagestats_parser_module", labels) == 1.0
    finally:
        task.cancel()
    assert module_bytes() != good
