"""A new parser reaches a running operator through the real source-controller, with no restart and no
new image: `make parser-artifact`'s layout pushed to the registry, an OCIRepository following it, and the
operator (PACKAGESTATS_PARSER_SOURCE=ocirepository:...) switching to each new module that passes its checks."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e import helm_install as hi
from tests.e2e.conftest import E2ECluster, oci
from tests.support.fake_github import FakeGitHub
from tests.support.operator import running_operator
from tests.support.parser_artifacts import rebadged

NS = "flux-system"


def _artifact(tmp: Path, module: bytes, tag: str) -> Path:
    """The artifact directory as `make parser-artifact` lays it out (wasm/artifact.py checks it too)."""
    wasm = tmp / f"parser-{tag}.wasm"
    wasm.write_bytes(module)
    out = tmp / f"artifact-{tag}"
    subprocess.run([sys.executable, str(hi.REPO / "wasm" / "artifact.py"), str(out), "--parser", str(wasm)],
                   check=True, capture_output=True, text=True, timeout=120)
    return out


def _labels(kube: E2ECluster, namespace: str) -> set[str]:
    obj = kube.kubectl_json("get", "packagestats", "headscale", "-n", namespace)
    return {str(p.get("parser")) for p in (obj.get("status") or {}).get("packages") or []}


def test_a_new_parser_through_flux_without_a_restart(kube: E2ECluster, flux_system: str, github: FakeGitHub,
                                                     namespace: str, tmp_path: Path) -> None:
    registry = flux_system
    first, second = rebadged("e2e-1"), rebadged("e2e-2")
    oci.push(_artifact(tmp_path, first, "v1"), f"{registry}/parser:v1", revision="v1")
    kube.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
        "metadata": {"name": "parser", "namespace": NS},
        "spec": {"interval": "10s", "url": f"oci://{registry}/parser", "insecure": True, "ref": {"tag": "v1"}}}))
    hi.ready(kube, "ocirepository", "parser", NS, 120)

    env = {"PACKAGESTATS_PARSER_SOURCE": f"ocirepository:{NS}/parser", "PACKAGESTATS_PARSER_CHECK_SECONDS": "2"}
    with running_operator(kube.kubeconfig, github.base_url, env) as op:
        kube.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "packagestats.dev/v1alpha1", "kind": "PackageStats",
            "metadata": {"name": "headscale", "namespace": namespace},
            "spec": {"owner": "juanfont", "packages": [{"name": "headscale", "repository": "headscale"}]}}))
        hi.ready(kube, "packagestats", "headscale", namespace, 120)
        want = hashlib.sha256(first).hexdigest()[:12]
        hi.wait_for("the counts to come from the first module",
                    lambda: all(label.endswith("@" + want) for label in _labels(kube, namespace)), 60)

        # A new module: pushed, followed by source-controller, checked and loaded by the same process.
        oci.push(_artifact(tmp_path, second, "v2"), f"{registry}/parser:v2", revision="v2")
        kube.kubectl("patch", "ocirepository", "parser", "-n", NS, "--type=merge",
                     "-p", json.dumps({"spec": {"ref": {"tag": "v2"}}}))
        want = hashlib.sha256(second).hexdigest()[:12]
        # Ask for a scrape once the module is in use (its compile takes a second or more): an earlier
        # scrape would rightly use the old one.
        hi.wait_for("the new module to be in use", lambda: any(
            reason == "ParserLoaded" and f"@{want}" in message
            for reason, message in kube.events(NS, "parser", "OCIRepository")), 120)
        kube.kubectl("annotate", "packagestats", "headscale", "-n", namespace, "--overwrite",
                     f"packagestats.dev/requestedAt={time.time()}")
        hi.wait_for("the counts to come from the new module",
                    lambda: all(label.endswith("@" + want) for label in _labels(kube, namespace)), 120)
        assert op.proc.poll() is None  # the same process: no restart
        obj = kube.kubectl_json("get", "packagestats", "headscale", "-n", namespace)
        assert hi.is_ready(obj) and obj["status"]["totalDownloads"] == 1418338
        kube.kubectl("delete", "packagestats", "headscale", "-n", namespace, "--timeout=60s")
    kube.kubectl("delete", "ocirepository", "parser", "-n", NS, "--timeout=60s")
