"""Downloads over time where people look: metrics, badges and `packagestats history`, end to end on the
real control plane with the GitHub stand-in."""

from __future__ import annotations

import csv
import io
import json
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from packagestats import api
from tests.support.cluster import Cluster
from tests.support.fake_github import FakeGitHub, make_versions
from tests.support.operator import apply_packagestats, condition, get, running_operator, wait_for

pytestmark = pytest.mark.cluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(crd: Cluster) -> Iterator[tuple[FakeGitHub, str, Path]]:
    port = _free_port()
    with FakeGitHub() as gh, running_operator(crd.kubeconfig, gh.base_url,
                                              {"PACKAGESTATS_METRICS_PORT": str(port)}) as op:
        gh.add_captured("icicle-insights-2026-09.html")
        gh.add_package("vis-org", "tool", repository="tool", total=14_400, versions=make_versions(2),
                       daily=[1] * 29 + [5])
        yield gh, f"http://127.0.0.1:{port}", op.log


def _ready(kube: Cluster, namespace: str, name: str, log: Path) -> None:
    wait_for(f"{name} Ready", lambda: (condition(get(kube, namespace, name), "Ready") or {}).get("status") == "True",
             30, log)


def _samples(base: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_metrics_carry_exact_counts_and_go_away_on_delete(crd: Cluster, namespace: str,
                                                          served: tuple[FakeGitHub, str, Path]) -> None:
    _, base, log = served
    apply_packagestats(crd, namespace, "icicle", {"owner": "ICICLE-ai", "packages": [
        {"name": "insights", "repository": "icicle-insights"}]})
    _ready(crd, namespace, "icicle", log)
    labels = frozenset({"namespace": namespace, "name": "icicle", "owner": "ICICLE-ai", "package": "insights",
                        "type": "container"}.items())
    def scraped() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        s = _samples(base)
        return s if ("packagestats_package_downloads", labels) in s else None

    samples = wait_for("metrics of icicle", scraped, 10, log)
    assert samples[("packagestats_package_downloads", labels)] == 302
    total = frozenset({"namespace": namespace, "name": "icicle", "owner": "ICICLE-ai"}.items())
    assert samples[("packagestats_total_downloads", total)] == 302
    assert samples[("packagestats_package_last_success_timestamp_seconds", labels)] > 1.7e9
    parse_count = sum(v for (n, lab), v in samples.items() if n == "packagestats_parser_duration_seconds_count")
    assert parse_count >= 1
    crd.kubectl("delete", "packagestats", "icicle", "-n", namespace, "--timeout=30s")
    gone = wait_for("series removed", lambda: not any(
        dict(lab).get("namespace") == namespace for _, lab in _samples(base)), 10, log)
    assert gone


def test_badges_only_for_resources_that_opt_in(crd: Cluster, namespace: str,
                                               served: tuple[FakeGitHub, str, Path]) -> None:
    _, base, log = served
    spec = {"owner": "vis-org", "packages": [{"name": "tool", "repository": "tool"}]}
    apply_packagestats(crd, namespace, "shown", spec, annotations={api.BADGE_ANNOTATION: "true"})
    apply_packagestats(crd, namespace, "hidden", spec)
    _ready(crd, namespace, "shown", log)
    _ready(crd, namespace, "hidden", log)
    badge = wait_for("badge", lambda: (r := httpx.get(f"{base}/badge/{namespace}/shown", timeout=5)).status_code
                     == 200 and r.json(), 10, log)
    assert badge == {"schemaVersion": 1, "label": "downloads", "message": "14.4k", "color": "brightgreen"}
    package = httpx.get(f"{base}/badge/{namespace}/shown/tool", timeout=5)
    assert package.status_code == 200 and package.json()["message"] == "14.4k"
    for path in (f"/badge/{namespace}/hidden", f"/badge/{namespace}/hidden/tool", f"/badge/{namespace}/shown/nope",
                 f"/badge/{namespace}/absent", "/badge/x"):
        answer = httpx.get(base + path, timeout=5)
        assert answer.status_code == 404, path
        assert "14" not in answer.text
    # opting out takes effect at once
    crd.kubectl("annotate", "packagestats", "shown", "-n", namespace, f"{api.BADGE_ANNOTATION}-")
    wait_for("badge withdrawn", lambda: httpx.get(f"{base}/badge/{namespace}/shown", timeout=5).status_code == 404,
             10, log)


def _history(kube: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "packagestats"
    return subprocess.run([str(script), "history", *args], capture_output=True, text=True, env=kube.env(),
                          timeout=60)


def test_history_command_on_a_resource_with_days_of_history(crd: Cluster, namespace: str, tmp_path: Path) -> None:
    body = {"apiVersion": api.API_VERSION, "kind": api.KIND,
            "metadata": {"name": "days", "namespace": namespace}, "spec": {"owner": "juanfont"}}
    crd.kubectl("apply", "-f", "-", input=json.dumps(body))
    # A few days of status as the operator would have written them, applied with its field manager.
    days = [{"date": f"2026-07-{18 + i:02d}", "downloads": 1_400_000 + 6000 * i} for i in range(3)]
    status = {"totalDownloads": 1418338,
              "history": [*days, {"date": "2026-07-21", "downloads": 1418338}],
              "daily": [{"date": f"2026-07-{d:02d}", "count": 6000 + d} for d in range(18, 22)],
              "packages": [{"name": "headscale", "type": "container", "downloads": 1418338}]}
    crd.kubectl("apply", "--server-side", "--field-manager=packagestats", "--subresource=status", "-f", "-",
                input=json.dumps({**body, "status": status}))
    table = _history(crd, "days", "-n", namespace)
    assert table.returncode == 0, table.stderr
    assert f"{namespace}/days (owner juanfont): 1,418,338 downloads in total" in table.stdout
    assert "2026-07-21         6,021     1,418,338" in table.stdout
    as_json = json.loads(_history(crd, "days", "-n", namespace, "-o", "json").stdout)
    assert [h["totalDownloads"] for h in as_json["history"]] == [1400000, 1406000, 1412000, 1418338]
    rows = list(csv.reader(io.StringIO(_history(crd, "days", "-n", namespace, "-o", "csv").stdout)))
    assert rows[0] == ["date", "downloads", "total_downloads"] and rows[-1] == ["2026-07-21", "6021", "1418338"]
    png = tmp_path / "days.png"
    plotted = _history(crd, "days", "-n", namespace, "--plot", str(png))
    assert plotted.returncode == 0, plotted.stderr
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (900, 450)
    missing = _history(crd, "nope", "-n", namespace)
    assert missing.returncode == 1 and "not found" in missing.stderr
