#!/usr/bin/env python3
"""Real Flux on the node of hack/node.py: source-, helm- and kustomize-controller built from their Go
modules and run as processes with the node's kubeconfig, and an OCI registry on loopback to push to.

    python -m hack.flux build   # build the controllers (once; cached), print the bin directory
    python -m hack.flux up      # on a running node: CRDs, controllers, registry; prints
                                #   export PACKAGESTATS_OCI_REGISTRY=127.0.0.1:PORT
    python -m hack.flux down    # stop them and remove their files

The module proxy here serves only some versions; this set builds and speaks Flux 2.9's APIs
(helm.toolkit.fluxcd.io/v2, source.toolkit.fluxcd.io/v1, kustomize.toolkit.fluxcd.io/v1). Each is built
through a wrapper module that copies the controller's own replace directives (its `./api` one excepted:
the published api module of the same version is required instead).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from hack import controlplane, procs, toolchain

# name -> (module, version, extra replaces beyond the module's own)
CONTROLLERS: dict[str, tuple[str, str, list[str]]] = {
    "source-controller": ("github.com/fluxcd/source-controller", "v1.9.6",
                          # v0.18.3's zip is refused by the proxy here; v0.18.1 has the same API.
                          ["replace github.com/fluxcd/pkg/artifact => github.com/fluxcd/pkg/artifact v0.18.1"]),
    "helm-controller": ("github.com/fluxcd/helm-controller", "v1.6.4", []),
    "kustomize-controller": ("github.com/fluxcd/kustomize-controller", "v1.9.6", []),
}
FLUX_REVISION = 1
FLUX_BIN_DIR = toolchain.CACHE / "bin" / ("flux-" + "_".join(
    f"{n.split('-')[0]}-{v}" for n, (_, v, _) in CONTROLLERS.items()) + f"_r{FLUX_REVISION}")
STATE_DIR = toolchain.CACHE / "flux"
NAMESPACE = "flux-system"
REGISTRY_BINARY = "/usr/bin/docker-registry"


def log(msg: str) -> None:
    print(f"[flux] {msg}", file=sys.stderr, flush=True)


def _replaces(gomod: str) -> list[str]:
    """The module's replace directives, single or in blocks, except those to local directories."""
    lines = []
    for m in re.finditer(r"^replace\s*\(\s*\n(.*?)^\)", gomod, flags=re.M | re.S):
        lines += [ln.strip() for ln in m.group(1).splitlines() if ln.strip() and not ln.strip().startswith("//")]
    lines += [m.group(1).strip() for m in re.finditer(r"^replace\s+([^(\n].*)$", gomod, flags=re.M)]
    return [f"replace {ln}" for ln in lines if "=> ./" not in ln and "=> ../" not in ln]


def build() -> Path:
    if all((FLUX_BIN_DIR / n).exists() for n in CONTROLLERS):
        return FLUX_BIN_DIR
    with toolchain.build_lock():
        for name, (module, version, extra) in CONTROLLERS.items():
            if (FLUX_BIN_DIR / name).exists():
                continue
            start = time.monotonic()
            gomod = (toolchain.module_dir(module, version) / "go.mod").read_text()
            toolchain.build_module(name, {module: version}, [*_replaces(gomod), *extra], {name: module},
                                   FLUX_BIN_DIR, tidy=False)
            log(f"built {name} {version} in {time.monotonic() - start:.0f}s")
    return FLUX_BIN_DIR


def crd_files() -> list[Path]:
    files = []
    for module, version, _ in CONTROLLERS.values():
        files += sorted((toolchain.module_dir(module, version) / "config" / "crd" / "bases").glob("*.yaml"))
    return files


def ensure_registry() -> None:
    if not Path(REGISTRY_BINARY).exists():
        toolchain.apt_install({"docker-registry": REGISTRY_BINARY})
        # The package starts a system service on port 5000; ours runs on a port of its own.
        subprocess.run(["systemctl", "disable", "--now", "docker-registry"], capture_output=True, check=False)
        subprocess.run(["pkill", "-f", "^/usr/bin/docker-registry serve /etc/docker/registry"],
                       capture_output=True, check=False)


def _registry_config(d: Path, port: int, debug_port: int) -> str:
    return f"""version: 0.1
log: {{level: warn}}
storage:
  filesystem: {{rootdirectory: {d / 'registry'}}}
  delete: {{enabled: true}}
http:
  addr: 127.0.0.1:{port}
  debug: {{addr: 127.0.0.1:{debug_port}}}
"""


@dataclass
class Flux(procs.Started):
    """The three controllers and a registry, against the cluster of `kubeconfig`."""

    workdir: Path
    kubeconfig: Path
    bin_dir: Path = FLUX_BIN_DIR
    kubectl: Path = controlplane.BIN_DIR / "kubectl"
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    registry: str = ""  # host:port

    def start(self, timeout: float = 120.0) -> Flux:
        t0 = time.monotonic()
        d = self.workdir
        d.mkdir(parents=True, exist_ok=True)
        ensure_registry()
        kubectl = [str(self.kubectl), f"--kubeconfig={self.kubeconfig}"]
        subprocess.run([*kubectl, "create", "namespace", NAMESPACE], capture_output=True, check=False)
        args: list[str] = []
        for f in crd_files():
            args += ["-f", str(f)]
        subprocess.run([*kubectl, "apply", "--server-side", "--force-conflicts", *args], check=True,
                       capture_output=True)
        subprocess.run([*kubectl, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"],
                       check=True, capture_output=True)
        port, debug = procs.free_port(), procs.free_port()
        (d / "registry.yml").write_text(_registry_config(d, port, debug))
        self._spawn("registry", [REGISTRY_BINARY, "serve", str(d / "registry.yml")])
        self.registry = f"127.0.0.1:{port}"
        (d / "registry").mkdir(exist_ok=True)
        env = {"KUBECONFIG": str(self.kubeconfig), "RUNTIME_NAMESPACE": NAMESPACE}
        for name in CONTROLLERS:
            metrics, health = procs.free_port(), procs.free_port()
            argv = [str(self.bin_dir / name), f"--metrics-addr=127.0.0.1:{metrics}",
                    f"--health-addr=127.0.0.1:{health}", "--enable-leader-election=false",
                    "--watch-all-namespaces=true", "--log-level=info", "--log-encoding=json"]
            if name == "source-controller":
                storage = procs.free_port()
                (d / "storage").mkdir(exist_ok=True)
                argv += [f"--storage-path={d / 'storage'}", f"--storage-addr=127.0.0.1:{storage}",
                         f"--storage-adv-addr=127.0.0.1:{storage}"]
            self._spawn(name, argv, env)
            (d / f"{name}.health").write_text(f"http://127.0.0.1:{health}/readyz")
        for name in CONTROLLERS:
            self._wait_http(name, (d / f"{name}.health").read_text(), t0 + timeout)
        self._wait_http("registry", f"http://{self.registry}/v2/", t0 + timeout)
        (d / "registry.addr").write_text(self.registry)
        log(f"Flux controllers and registry {self.registry} ready in {time.monotonic() - t0:.1f}s")
        return self

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.procs[name] = procs.spawn(self.workdir, name, argv, dict(os.environ, **(env or {})))

    def _wait_http(self, name: str, url: str, deadline: float) -> None:
        procs.wait_until(procs.answers(url), deadline, self.workdir, name, self.procs[name])

    def stop(self) -> None:
        teardown(self.workdir)


def teardown(d: Path) -> None:
    for name in [*CONTROLLERS, "registry"]:
        pid_file = d / f"{name}.pid"
        if pid_file.exists():
            procs.terminate(int(pid_file.read_text()))
    shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["build", "up", "down"])
    args = p.parse_args()
    if args.command == "build":
        print(build())
        return
    teardown(STATE_DIR)
    if args.command == "down":
        log("stopped")
        return
    from hack import node  # a node must be running; nothing else here needs it

    kubeconfig = node.Node(node.STATE_DIR).kubeconfig
    if not kubeconfig.exists():
        raise SystemExit("no node is running: `make node` first")
    build()
    Flux(STATE_DIR, kubeconfig).start()
    print(f"export PACKAGESTATS_OCI_REGISTRY={(STATE_DIR / 'registry.addr').read_text()}")


if __name__ == "__main__":
    main()
