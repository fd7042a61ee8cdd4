"""The Kubernetes API server the tests talk to: the project's local control plane, or the cluster that
KUBECONFIG names (a kind cluster on a laptop), never a mock."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes

from hack import controlplane

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    bin_dir: Path | None  # where kubectl and helm were built; None: take them from PATH
    local: bool  # True: the throwaway local control plane
    control_plane: controlplane.ControlPlane | None = None  # that control plane (to stop its apiserver)

    def tool(self, name: str) -> str:
        if self.bin_dir is not None and (self.bin_dir / name).exists():
            return str(self.bin_dir / name)
        found = shutil.which(name)
        if found is None:
            raise RuntimeError(f"{name} not found")
        return found

    def env(self) -> dict[str, str]:
        return dict(os.environ, KUBECONFIG=str(self.kubeconfig))

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([self.tool("kubectl"), *args], input=input, capture_output=True, text=True,
                              env=self.env(), timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def events(self, namespace: str, name: str, kind: str | None = None) -> list[tuple[str, str]]:
        """(reason, message) of the Events about the object `name` (of `kind`, when given)."""
        selector = f"involvedObject.name={name}" + (f",involvedObject.kind={kind}" if kind else "")
        items = self.kubectl_json("get", "events", "-n", namespace, "--field-selector", selector)["items"]
        return [(e["reason"], e["message"]) for e in items]

    def api_client(self) -> kubernetes.client.ApiClient:
        client: kubernetes.client.ApiClient = kubernetes.config.new_client_from_config(
            config_file=str(self.kubeconfig))
        return client


@contextmanager
def cluster() -> Iterator[Cluster]:
    given = os.environ.get("KUBECONFIG")
    if given:
        bin_dir = controlplane.BIN_DIR if controlplane.BIN_DIR.exists() else None
        yield Cluster(Path(given), bin_dir, local=False)
        return
    bin_dir = controlplane.build()
    workdir = Path(tempfile.mkdtemp(prefix="packagestats-cp-"))
    with controlplane.ControlPlane(workdir, bin_dir) as cp:
        yield Cluster(cp.kubeconfig, bin_dir, local=True, control_plane=cp)
