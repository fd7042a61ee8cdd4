"""The running operator (`packagestats run`, a real apiserver): a new parser module is loaded without a
restart and named in status, and a drifted page raises MarkupSuspect instead of being written, until the
user accepts it with the annotation."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from functools import partial
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
        reasons = [reason for reason, _ in crd.events(namespace, "headscale")]
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


def test_a_refused_module_is_shown_on_every_resource(crd: Cluster, namespace: str, github: FakeGitHub,
                                                     tmp_path: Path) -> None:
    """A candidate whose self-test fails: ParserRefused=True on every PackageStats at once (no scrape is
    due), without a status write per check; Ready and the counts stay those of the module in use; a good
    candidate afterwards turns it False."""
    mounted = tmp_path / "parser"
    mounted.mkdir()
    sandbox = Sandbox(fuel=2_000_000_000, memory_bytes=256 << 20, timeout_seconds=5, cache_dir=None)
    first, bad, fixed = rebadged("refuse-1"), rebadged("refuse-2"), rebadged("refuse-3")

    def selftest(**kw: Any) -> None:
        for name, data in selftest_files(sandbox, **kw).items():
            (mounted / name.replace("selftest/", "selftest-")).write_bytes(data)

    write_module(mounted, first)
    selftest()
    env = {"PACKAGESTATS_PARSER_SOURCE": f"file:{mounted / 'parser.wasm'}", "PACKAGESTATS_PARSER_CHECK_SECONDS": "1"}
    names = ("headscale", "headscale-again")
    with running_operator(crd.kubeconfig, github.base_url, env, namespace=namespace) as op:
        for name in names:
            apply_packagestats(crd, namespace, name, {
                "owner": "juanfont", "interval": "1h", "retryInterval": "1h",
                "packages": [{"name": "headscale", "repository": "headscale"}]})
        def read_by(wasm: bytes, name: str) -> bool:
            packages = get(crd, namespace, name).get("status", {}).get("packages", [])
            return [p.get("parser") for p in packages] == [label(wasm)]
        for name in names:
            wait_for(f"{name} read by the first module", partial(read_by, first, name), op=op, timeout=60)

        # The expectation beside the module first (the module in use is not checked again), then the
        # module: its self-test page no longer gives what its JSON says.
        selftest(expected_downloads=5)
        write_module(mounted, bad)

        def refused(name: str) -> dict[str, Any] | None:
            obj = get(crd, namespace, name)
            c = condition(obj, "ParserRefused")
            return obj if c is not None and c["status"] == "True" else None
        objs = {name: wait_for(f"ParserRefused=True on {name}", partial(refused, name), op=op, timeout=30)
                for name in names}
        for obj in objs.values():
            c = condition(obj, "ParserRefused")
            assert c is not None and c["reason"] == "SelfTestFailed"
            assert c["message"] == (
                f"The parser module from file:{mounted / 'parser.wasm'} (revision sha256:"
                f"{hashlib.sha256(bad).hexdigest()}) was refused: package-headscale.html: the module's output "
                f"differs in downloads; parser {label(first)} (sha256:{hashlib.sha256(first).hexdigest()}) from "
                f"file:{mounted / 'parser.wasm'} stays in use")
            ready = condition(obj, "Ready")
            assert ready is not None and (ready["status"], ready["reason"]) == ("True", "Succeeded")
            assert obj["status"]["totalDownloads"] == REAL_TOTAL

        # Checked again every second, the same refusal: nothing more is written.
        versions = {name: obj["metadata"]["resourceVersion"] for name, obj in objs.items()}
        time.sleep(3.5)
        assert {name: get(crd, namespace, name)["metadata"]["resourceVersion"] for name in names} == versions

        # A scrape now is read by the module in use; the condition stays as it was.
        requested = request_scrape(crd, namespace, "headscale")

        def scraped() -> dict[str, Any] | None:
            obj = get(crd, namespace, "headscale")
            return obj if obj["status"].get("lastHandledRequestedAt") == requested else None
        obj = wait_for("a scrape with the module in use", scraped, op=op, timeout=30)
        assert obj["status"]["packages"][0]["parser"] == label(first)
        assert obj["status"]["packages"][0]["downloads"] == REAL_TOTAL
        assert condition(obj, "ParserRefused") == condition(objs["headscale"], "ParserRefused")
        ready = condition(obj, "Ready")
        assert ready is not None and ready["status"] == "True"

        # A good module: the condition turns False on every resource, naming the module now in use.
        selftest()
        write_module(mounted, fixed)

        def accepted(name: str) -> dict[str, Any] | None:
            obj = get(crd, namespace, name)
            c = condition(obj, "ParserRefused")
            return obj if c is not None and c["status"] == "False" else None
        for name in names:
            obj = wait_for(f"ParserRefused=False on {name}", partial(accepted, name), op=op, timeout=30)
            c = condition(obj, "ParserRefused")
            assert c is not None and c["reason"] == "Accepted"
            assert f"parser {label(fixed)} (sha256:{hashlib.sha256(fixed).hexdigest()})" in c["message"]
        request_scrape(crd, namespace, "headscale-again")
        wait_for("counts read by the good module", partial(read_by, fixed, "headscale-again"), op=op, timeout=30)
        assert op.proc.poll() is None
