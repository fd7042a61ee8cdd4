"""Flux's own CRDs, from the Flux controllers' Go modules, for server-side dry runs of deploy/flux/.

The CRD files live in each controller's module at config/crd/bases/. `go mod download` fetches a module
once into the Go module cache and answers from it afterwards, so no cache of our own is needed.

Versions: helm-controller v1.4.3 is the newest v1 that the Go module proxy serves here (it refuses the
others); source-controller v1.9.6 is the newest v1 whose go.mod accepts the machine's Go 1.26 (v1.10.x
needs Go 1.27). Both serve the GA APIs that deploy/flux/ uses: helm.toolkit.fluxcd.io/v2 and
source.toolkit.fluxcd.io/v1.

The same way, prometheus_rule_crd() takes the PrometheusRule CRD (monitoring.coreos.com/v1) from the
prometheus-operator module (example/prometheus-operator-crd/), for dry runs of the chart's PrometheusRule.
v0.85.0 is the one version of that module the Go module proxy lists here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

HELM_CONTROLLER = ("github.com/fluxcd/helm-controller", "v1.4.3")
SOURCE_CONTROLLER = ("github.com/fluxcd/source-controller", "v1.9.6")
PROMETHEUS_OPERATOR = ("github.com/prometheus-operator/prometheus-operator", "v0.85.0")

# The CRDs that deploy/flux/ needs: (module, file name under config/crd/bases/, CRD name).
CRDS: tuple[tuple[tuple[str, str], str, str], ...] = (
    (HELM_CONTROLLER, "helm.toolkit.fluxcd.io_helmreleases.yaml", "helmreleases.helm.toolkit.fluxcd.io"),
    (SOURCE_CONTROLLER, "source.toolkit.fluxcd.io_ocirepositories.yaml",
     "ocirepositories.source.toolkit.fluxcd.io"),
)


class GoUnavailable(RuntimeError):
    """`go` is not on PATH."""


@dataclass(frozen=True)
class FluxCRD:
    name: str  # e.g. helmreleases.helm.toolkit.fluxcd.io
    path: Path  # the file in the Go module cache


def module_dir(module: str, version: str) -> Path:
    """The module's directory in the Go module cache, downloading it on first use."""
    go = shutil.which("go")
    if go is None:
        raise GoUnavailable("`go` is not on PATH: it is needed to fetch Flux's CRDs from the Go module proxy")
    env = dict(os.environ, GOFLAGS="-mod=mod", GOTOOLCHAIN="local", GO111MODULE="on")
    proc = subprocess.run([go, "mod", "download", "-json", f"{module}@{version}"], capture_output=True,
                          text=True, env=env, cwd=tempfile.gettempdir(), timeout=300)
    try:
        info = json.loads(proc.stdout)
    except json.JSONDecodeError as e:
        raise RuntimeError(f"go mod download {module}@{version} failed:\n{proc.stderr}") from e
    if proc.returncode != 0 or "Error" in info:
        raise RuntimeError(f"go mod download {module}@{version} failed: {info.get('Error', proc.stderr)}")
    return Path(info["Dir"])


def crds() -> list[FluxCRD]:
    """The Flux CRD files deploy/flux/ needs, from the Go module cache."""
    result = []
    for (module, version), filename, name in CRDS:
        path = module_dir(module, version) / "config" / "crd" / "bases" / filename
        if not path.is_file():
            raise RuntimeError(f"{filename} not found in {module}@{version}")
        result.append(FluxCRD(name, path))
    return result


def prometheus_rule_crd() -> FluxCRD:
    """The PrometheusRule CRD file of prometheus-operator, from the Go module cache (not a Flux CRD, but
    fetched and described alike)."""
    module, version = PROMETHEUS_OPERATOR
    filename = "monitoring.coreos.com_prometheusrules.yaml"
    path = module_dir(module, version) / "example" / "prometheus-operator-crd" / filename
    if not path.is_file():
        raise RuntimeError(f"{filename} not found in {module}@{version}")
    return FluxCRD("prometheusrules.monitoring.coreos.com", path)
