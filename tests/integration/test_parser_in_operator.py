"""The running operator (`packagestats run`, a real apiserver): a new parser module is loaded without a
restart and named in status, and a drifted page raises MarkupSuspect instead of being written, until the
user accepts it with the annotation."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from packagestats import api
from packagestats.sandbox import Sandbox
from tests.support.cluster import Cluster
from tests.support.fake_github import FakeGitHub, captured_page
from tests.support.operator import apply_packagestats, condition, get, request_scrape, running_operator, wait_for
from tests.support.parser_artifacts import rebadged, selftest_files

pytestmark = pytest.mark.cluster

REAL_TOTAL = 1418338


def label(wasm: bytes) -> str:
    return f"0.2.0@{hashlib.sha256(wasm).hexdigest()[:12]}"


def write_module(directory: Path, wasm: bytes) -> None:
    tmp = directory / ".parser.wasm.tmp"
    tmp.write_bytes(wasm)
    tmp.replace(directory / "parser.wasm")  # as a ConfigMap update swaps its files


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as gh:
        gh.add_captured("headscale-2026-07.html")
        yield gh


def package(kube: Cluster, namespace: str) -> dict[str, Any]:
    packages: list[dict[str, Any]] = get(kube, namespace, "headscale").get("status", {}).get("packages", [])
    return packages[0] if packages else {}


def test_a_new_parser_and_a_drifted_page(crd: Cluster, namespace: str, github: FakeGitHub, tmp_path: Path) -> None:
    mounted = tmp_path / "parser"
    mounted.mkdir()
    first, second = rebadged("operator-1"), rebadged("operator-2")
    write_module(mounted, first)
    for name, data in selftest_files(Sandbox(fuel=2_000_000_000, memory_bytes=256 << 20, timeout_seconds=5,
                                             cache_dir=None)).items():
        (mounted / name.replace("selftest/", "selftest-")).write_bytes(data)
    env = {"PACKAGESTATS_PARSER_SOURCE": f"file:{mounted / 'parser.wasm'}", "PACKAGESTATS_PARSER_CHECK_SECONDS": "1"}
    with running_operator(crd.kubeconfig, github.base_url, env, namespace=namespace) as op:
        apply_packagestats(crd, namespace, "headscale", {
            "owner": "juanfont", "interval": "1h", "retryInterval": "1h",
            "packages": [{"name": "headscale", "repository": "headscale"}]})
        got = wait_for("counts read by the first module", lambda: (p := package(crd, namespace)).get("parser") ==
                       label(first) and p, op=op, timeout=60)
        assert got["downloads"] == REAL_TOTAL

        # A new module in the mounted file: the next scrape is read by it, by the same process.
        write_module(mounted, second)
        wait_for("the second module loaded", lambda: label(second) in op.log.read_text(), op=op, timeout=30)
        request_scrape(crd, namespace, "headscale")
        wait_for("counts read by the second module", lambda: package(crd, namespace).get("parser") == label(second),
                 op=op, timeout=30)
        assert op.proc.poll() is None

        # The page drifts: its heading now reads 248. Held back, MarkupSuspect says why.
        page = captured_page("headscale-2026-07.html").replace(b'title="1418338"', b'title="248"')
        github.update_package("juanfont", "headscale", page_html=page)
        request_scrape(crd, namespace, "headscale")

        def suspect() -> dict[str, Any] | None:
            obj = get(crd, namespace, "headscale")
            c = condition(obj, "MarkupSuspect")
            return obj if c is not None and c["status"] == "True" else None
        obj = wait_for("MarkupSuspect=True", suspect, op=op, timeout=30)
        pkg = obj["status"]["packages"][0]
        assert (pkg["downloads"], pkg["held"], pkg["errorReason"]) == (REAL_TOTAL, 248, "MarkupSuspect")
        assert obj["status"]["totalDownloads"] == REAL_TOTAL
        c = condition(obj, "MarkupSuspect")
        assert c is not None and "TotalDecreased: total 248 is below the last good total 1418338" in c["message"]
        reasons = [e["reason"] for e in crd.kubectl_json("get", "events", "-n", namespace, "--field-selector",
                                                          "involvedObject.name=headscale")["items"]]
        assert "MarkupSuspect" in reasons

        # The user accepts it.
        crd.kubectl("annotate", "packagestats", "headscale", "-n", namespace, "--overwrite",
                    f"{api.ACCEPT_DOWNLOADS_ANNOTATION}={time.time():.3f}")

        def accepted() -> dict[str, Any] | None:
            obj = get(crd, namespace, "headscale")
            c = condition(obj, "MarkupSuspect")
            return obj if c is not None and c["status"] == "False" else None
        obj = wait_for("the accepted total written", accepted, op=op, timeout=30)
        pkg = obj["status"]["packages"][0]
        assert pkg["downloads"] == 248 and "held" not in pkg and "error" not in pkg
