#!/usr/bin/env python3
"""A real one-node Kubernetes cluster on this machine: the control plane of controlplane.py plus
kube-controller-manager, kube-scheduler, kubelet, containerd 2.x and Debian's runc.

    python -m hack.node build    # build what is missing (kubelet & co., containerd), print the bin directory
    python -m hack.node up       # start it all, wait for the node to be Ready, print `export KUBECONFIG=...`
    python -m hack.node down     # stop every process, unmount what the kubelet mounted, remove its files

Kubernetes 1.36 supports only containerd >= 2.0, and Debian 12 has 1.6, so containerd is built from its Go
module like the rest. No registry is reachable: the sandbox ("pause") image is built here (images.py) and
pinned, and every image is imported into containerd (`import_image`).

The node's network is the machine's loopback: no pod network, no bridge, no kube-proxy. The kubelet's
address is 127.0.0.1, and pods that must reach the apiserver or a test server use host networking with
KUBERNETES_SERVICE_HOST/PORT pointing at the apiserver's loopback port (`apiserver_env`). Other pods get
a network namespace with loopback only (a CNI configuration of the `loopback` plugin alone).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hack import controlplane, images, procs, toolchain

CONTAINERD_VERSION = "v2.4.2"
NODE_REVISION = 1
NODE_BIN_DIR = (toolchain.CACHE / "bin"
                / f"node-k8s-{controlplane.KUBERNETES_VERSION}_containerd-{CONTAINERD_VERSION}_r{NODE_REVISION}")
NODE_BINARIES = ("kubelet", "kube-controller-manager", "kube-scheduler",
                 "containerd", "containerd-shim-runc-v2", "ctr")
STATE_DIR = toolchain.CACHE / "node"
NODE_NAME = "127.0.0.1"
# Paths the kubelet and containerd use whatever their root dirs say; `down` removes them.
OUTSIDE_PATHS = ("/run/containerd/s", "/var/log/containers", "/var/log/pods", "/var/lib/kubelet/device-plugins",
                 "/var/lib/kubelet/plugins_registry", "/var/lib/kubelet/pod-resources", "/var/lib/cni")
DEBIAN_PACKAGES = {"runc": "/usr/sbin/runc", "containernetworking-plugins": "/usr/lib/cni/loopback"}


def log(msg: str) -> None:
    print(f"[node] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Building


def build() -> Path:
    """kubelet, controller-manager and scheduler from the control plane's k8s.io/kubernetes; containerd,
    its runc shim and ctr from containerd's module. A no-op when all are cached."""
    if all((NODE_BIN_DIR / b).exists() for b in NODE_BINARIES):
        return NODE_BIN_DIR
    with toolchain.build_lock():
        start = time.monotonic()
        kube = [b for b in ("kubelet", "kube-controller-manager", "kube-scheduler")
                if not (NODE_BIN_DIR / b).exists()]
        if kube:
            version = controlplane.KUBERNETES_VERSION
            toolchain.build_module(
                "kubernetes-node", {"k8s.io/kubernetes": version}, toolchain.staging_replaces(version),
                {b: f"k8s.io/kubernetes/cmd/{b}" for b in kube}, NODE_BIN_DIR,
                toolchain.version_ldflags(version))
        runtime = [b for b in ("containerd", "containerd-shim-runc-v2", "ctr") if not (NODE_BIN_DIR / b).exists()]
        if runtime:
            # Static, without the snapshotters whose C libraries we do not need (overlayfs is built in).
            module = "github.com/containerd/containerd/v2"
            toolchain.build_module(
                "containerd", {module: CONTAINERD_VERSION}, [],
                {b: f"{module}/cmd/{b}" for b in runtime}, NODE_BIN_DIR,
                [f"-X {module}/version.Version={CONTAINERD_VERSION}"],
                tags=["no_btrfs", "no_devmapper", "no_zfs"])
        log(f"built {kube + runtime} in {time.monotonic() - start:.0f}s into {NODE_BIN_DIR}")
    return NODE_BIN_DIR


def ensure_debian_packages() -> None:
    toolchain.apt_install(DEBIAN_PACKAGES)


# --------------------------------------------------------------------------------------------
# Configuration


def _containerd_config(d: Path, sandbox_image: str) -> str:
    # Version 3 is containerd 2.x's format. This VM's root lacks CAP_SYS_RESOURCE: without
    # restrict_oom_score_adj runc cannot set the sandbox's oom_score_adj and no pod starts.
    return f"""version = 3
root = "{d / 'containerd' / 'root'}"
state = "{d / 'containerd' / 'state'}"

[grpc]
  address = "{d / 'containerd.sock'}"

[ttrpc]
  address = "{d / 'containerd.sock.ttrpc'}"

[debug]
  level = "warn"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{sandbox_image}"

[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "{DEBIAN_PACKAGES['runc']}"
        SystemdCgroup = false
        Root = "{d / 'runc'}"
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni", "{d / 'cni-bin'}"]
    conf_dir = "{d / 'cni'}"

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
"""


# A network of loopback alone. containerd brings `lo` up in each pod's namespace itself, but wants the
# network's result to name an `eth0` with an address: this plugin reports the node's own loopback address
# for it and creates nothing, so pods without host networking get an isolated namespace with nothing but
# `lo` (and the runtime reports its network ready).
_CNI_PLUGIN_NAME = "packagestats-loopback"
_CNI_PLUGIN = r"""#!/bin/sh
case "$CNI_COMMAND" in
  ADD)
    cat >/dev/null
    printf '{"cniVersion":"1.0.0","interfaces":[{"name":"%s","sandbox":"%s"}],' "$CNI_IFNAME" "$CNI_NETNS"
    printf '"ips":[{"address":"127.0.0.1/8","interface":0}]}\n' ;;
  VERSION)
    printf '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}\n' ;;
  *) cat >/dev/null ;;
esac
"""
_CNI = {"cniVersion": "1.0.0", "name": "loopback-only", "plugins": [{"type": _CNI_PLUGIN_NAME}]}


def _kubelet_config(d: Path, port: int, healthz: int) -> str:
    pki = d / "cp" / "pki"
    return f"""apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz}
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://{d / 'containerd.sock'}
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: false}}
  x509: {{clientCAFile: {pki / 'ca.crt'}}}
authorization:
  mode: AlwaysAllow
failSwapOn: false
# A test machine's disk is often fuller than the defaults allow: never evict or collect images here.
evictionHard: {{memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
resolvConf: /etc/resolv.conf
podPidsLimit: 4096
serializeImagePulls: false
enableServer: true
"""


@dataclass
class Node(procs.Started):
    """The control plane and a node, in one directory; `down` can stop it from its pid files."""

    workdir: Path
    bin_dir: Path = controlplane.BIN_DIR
    node_bin_dir: Path = NODE_BIN_DIR
    cp: controlplane.ControlPlane | None = None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "cp" / "kubeconfig"

    @property
    def socket(self) -> Path:
        return self.workdir / "containerd.sock"

    def start(self, timeout: float = 180.0) -> Node:
        t0 = time.monotonic()
        d = self.workdir
        d.mkdir(parents=True, exist_ok=True)
        self.cp = controlplane.ControlPlane(d / "cp", self.bin_dir).start()
        pki = d / "cp" / "pki"
        kubeconfig = str(self.kubeconfig)
        (d / "cni").mkdir(exist_ok=True)
        (d / "cni" / "10-loopback.conflist").write_text(json.dumps(_CNI))
        (d / "cni-bin").mkdir(exist_ok=True)
        (d / "cni-bin" / _CNI_PLUGIN_NAME).write_text(_CNI_PLUGIN)
        (d / "cni-bin" / _CNI_PLUGIN_NAME).chmod(0o755)
        (d / "containerd.toml").write_text(_containerd_config(d, images.PAUSE_IMAGE))
        env = dict(os.environ, PATH=f"{self.node_bin_dir}:{os.environ['PATH']}")
        self._spawn("containerd", [str(self.node_bin_dir / "containerd"), "--config", str(d / "containerd.toml")],
                    env)
        self._wait(lambda: self.socket.exists(), t0 + timeout, "containerd")
        images.import_pause(self)
        cm_port, sched_port, kubelet_port, healthz = (procs.free_port() for _ in range(4))
        self._spawn("kube-controller-manager", [
            str(self.node_bin_dir / "kube-controller-manager"),
            f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
            "--use-service-account-credentials=true", "--leader-elect=false",
            "--bind-address=127.0.0.1", f"--secure-port={cm_port}",
            # No cloud, no pod network: the controllers that need them are off.
            "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller",
            "--v=0",
        ], env)
        self._spawn("kube-scheduler", [
            str(self.node_bin_dir / "kube-scheduler"),
            f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}", "--leader-elect=false",
            "--bind-address=127.0.0.1", f"--secure-port={sched_port}", "--v=0",
        ], env)
        (d / "kubelet.yaml").write_text(_kubelet_config(d, kubelet_port, healthz))
        self._spawn("kubelet", [
            str(self.node_bin_dir / "kubelet"),
            f"--config={d / 'kubelet.yaml'}", f"--kubeconfig={kubeconfig}",
            f"--root-dir={d / 'kubelet'}", f"--cert-dir={d / 'kubelet-pki'}",
            # The node's address is its name, 127.0.0.1 (--node-ip refuses loopback addresses).
            f"--hostname-override={NODE_NAME}", "--v=0",
        ], env)
        self._wait(self._node_ready, t0 + timeout, "kubelet")
        # The default ServiceAccount appears shortly after the controller-manager starts; pods need it.
        self._wait(lambda: self._kubectl("get", "serviceaccount", "default", "-n", "default").returncode == 0,
                   t0 + timeout, "kube-controller-manager")
        log(f"node {NODE_NAME} Ready in {time.monotonic() - t0:.1f}s")
        return self

    def _kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
                              capture_output=True, text=True, timeout=30)

    def _node_ready(self) -> bool:
        out = self._kubectl("get", "node", NODE_NAME, "-o",
                            "jsonpath={.status.conditions[?(@.type=='Ready')].status}")
        return out.returncode == 0 and out.stdout.strip() == "True"

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.procs[name] = procs.spawn(self.workdir, name, argv, env)

    def _wait(self, probe: Callable[[], bool], deadline: float, name: str) -> None:
        procs.wait_until(probe, deadline, self.workdir, name, self.procs.get(name), interval=0.5)

    def ctr(self, *args: str, input_path: Path | None = None) -> subprocess.CompletedProcess[str]:
        argv = [str(self.node_bin_dir / "ctr"), "--address", str(self.socket), "--namespace", "k8s.io", *args]
        return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600)

    def apiserver_env(self) -> dict[str, str]:
        """What a host-network pod needs to reach the apiserver with in-cluster config (no ClusterIP here)."""
        assert self.cp is not None
        port = self.cp.server.rsplit(":", 1)[1]
        return {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": port}

    def stop(self) -> None:
        teardown(self.workdir, self.bin_dir)


# --------------------------------------------------------------------------------------------
# Teardown: pods first, kubelet before containerd, then unmount and remove.


def teardown(d: Path, bin_dir: Path = controlplane.BIN_DIR) -> None:
    kubeconfig = d / "cp" / "kubeconfig"
    kubelet = procs.pid_of(d, "kubelet")
    if kubelet is not None and kubeconfig.exists() and _alive(kubelet):
        # Let the kubelet stop the pods itself, so that containerd is left with nothing running.
        kubectl = [str(bin_dir / "kubectl"), f"--kubeconfig={kubeconfig}", "--request-timeout=10s"]
        subprocess.run([*kubectl, "delete", "pods", "--all", "--all-namespaces", "--grace-period=2",
                        "--timeout=40s", "--wait=true"], capture_output=True, timeout=60, check=False)
    for name in ("kubelet", "kube-scheduler", "kube-controller-manager"):
        pid = procs.pid_of(d, name)
        if pid is not None:
            procs.terminate(pid)
    _kill_shims(d)
    pid = procs.pid_of(d, "containerd")
    if pid is not None:
        procs.terminate(pid)
    cp_dir = d / "cp"
    for name in ("kube-apiserver", "etcd"):
        pid = procs.pid_of(cp_dir, name)
        if pid is not None:
            procs.terminate(pid)
    _unmount_under(d)
    for path in OUTSIDE_PATHS:
        shutil.rmtree(path, ignore_errors=True)
    for parent in ("/var/lib/kubelet", "/run/containerd"):  # left empty by the paths above
        with contextlib.suppress(OSError):
            os.rmdir(parent)
    shutil.rmtree(d, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _kill_shims(d: Path) -> None:
    """Shims (and the containers under them) whose command line names our containerd's socket."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"containerd-shim-runc-v2" in cmdline and str(d).encode() in cmdline:
            procs.terminate(int(proc.name))


def _unmount_under(d: Path) -> None:
    """Every mount below the node's directory and the paths outside it, deepest first."""
    roots = [str(d.resolve()), *OUTSIDE_PATHS, "/run/containerd"]
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4].replace("\\040", " ")
        if any(target == r or target.startswith(r.rstrip("/") + "/") for r in roots):
            mounts.append(target)
    for target in sorted(set(mounts), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)


# --------------------------------------------------------------------------------------------
# Command line: `make node` / `make node-down`


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["build", "up", "down"])
    args = p.parse_args()
    if args.command == "build":
        controlplane.build()
        ensure_debian_packages()
        print(build())
        return
    teardown(STATE_DIR)
    if args.command == "down":
        log("stopped")
        return
    controlplane.build()
    ensure_debian_packages()
    build()
    node = Node(STATE_DIR)
    try:
        node.start()
    except BaseException:
        node.stop()
        raise
    print(f"export KUBECONFIG={node.kubeconfig}")
    print(f"export PATH={controlplane.BIN_DIR}:{NODE_BIN_DIR}:$PATH")
    print(f"export CONTAINERD_ADDRESS={node.socket} CONTAINERD_NAMESPACE=k8s.io")


if __name__ == "__main__":
    main()
