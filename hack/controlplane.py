#!/usr/bin/env python3
"""A real, local Kubernetes control plane: etcd + kube-apiserver, no kubelet (as envtest does).

No registry ships kube-apiserver and no Docker engine runs here, so the binaries are built from the
Go module proxy into a versioned cache outside the repository and reused on later runs.

    python -m hack.controlplane build        # build what is missing, print the bin directory
    python -m hack.controlplane up           # start, print `export KUBECONFIG=...`
    python -m hack.controlplane down         # stop what `up` started, remove its files

The same class serves the pytest session fixture (tests/conftest.py).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import shutil
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from hack import procs, toolchain

KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
HELM_VERSION = "v3.22.0"

CACHE = toolchain.CACHE
# Bumped when the way the binaries are built changes, so that a cache of older builds is not reused.
BUILD_REVISION = 2
BIN_DIR = CACHE / "bin" / f"k8s-{KUBERNETES_VERSION}_etcd-{ETCD_VERSION}_helm-{HELM_VERSION}_r{BUILD_REVISION}"
STATE_DIR = CACHE / "cluster"  # where `up` keeps what `down` needs

BINARIES = ("kube-apiserver", "kubectl", "etcd", "helm")


def log(msg: str) -> None:
    print(f"[controlplane] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Building


def build(only: list[str] | None = None) -> Path:
    """Build the missing binaries into BIN_DIR and return it (a no-op when all are cached)."""
    wanted = set(only or BINARIES)
    if all((BIN_DIR / b).exists() for b in wanted):
        return BIN_DIR
    with toolchain.build_lock():
        return _build_missing(wanted)


def _build_missing(wanted: set[str]) -> Path:
    missing = {b for b in wanted if not (BIN_DIR / b).exists()}
    if not missing:
        return BIN_DIR
    if shutil.which("go") is None:
        raise RuntimeError("`go` is not on PATH: it is needed once to build the control plane")
    start = time.monotonic()
    if missing & {"kube-apiserver", "kubectl"}:
        toolchain.build_module(
            "kubernetes",
            {"k8s.io/kubernetes": KUBERNETES_VERSION},
            toolchain.staging_replaces(KUBERNETES_VERSION),
            {b: f"k8s.io/kubernetes/cmd/{b}" for b in ("kube-apiserver", "kubectl") if b in missing},
            BIN_DIR,
            toolchain.version_ldflags(KUBERNETES_VERSION),
        )
    if "etcd" in missing:
        toolchain.build_module("etcd", {"go.etcd.io/etcd/server/v3": ETCD_VERSION}, [],
                      {"etcd": "go.etcd.io/etcd/server/v3"}, BIN_DIR)
    if "helm" in missing:
        # Helm renders templates offline for this Kubernetes version (its default is 1.20).
        major, minor = KUBERNETES_VERSION.removeprefix("v").split(".")[:2]
        toolchain.build_module("helm", {"helm.sh/helm/v3": HELM_VERSION}, [],
                      {"helm": "helm.sh/helm/v3/cmd/helm"}, BIN_DIR,
                      [f"-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor={major}",
                       f"-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor={minor}"])
    log(f"built {sorted(missing)} in {time.monotonic() - start:.0f}s into {BIN_DIR}")
    return BIN_DIR


# --------------------------------------------------------------------------------------------
# Certificates


def _certs(d: Path) -> None:
    """A CA, the apiserver's serving cert, an admin client cert in system:masters, and the
    service-account signing key pair."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def write_key(path: Path, k: ec.EllipticCurvePrivateKey) -> None:
        path.write_bytes(k.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
        path.chmod(0o600)

    def name(cn: str, org: str | None = None) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if org:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        return x509.Name(attrs)

    ca_key = key()
    ca = (x509.CertificateBuilder().subject_name(name("packagestats-test-ca"))
          .issuer_name(name("packagestats-test-ca")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=7))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    (d / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    def leaf(stem: str, subject: x509.Name, usage: x509.ObjectIdentifier,
             sans: list[x509.GeneralName] | None = None) -> None:
        k = key()
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.subject)
             .public_key(k.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=7))
             .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        (d / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_key(d / f"{stem}.key", k)

    leaf("apiserver", name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH,
         [x509.DNSName("localhost"), x509.DNSName("kubernetes.default.svc"),
          x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
          x509.IPAddress(ipaddress.ip_address("10.0.0.1"))])
    leaf("admin", name("admin", "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH)
    sa = key()
    write_key(d / "sa.key", sa)
    (d / "sa.pub").write_bytes(sa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


# --------------------------------------------------------------------------------------------
# Running


def _kubeconfig(server: str, d: Path) -> str:
    return f"""apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: {server}
    certificate-authority: {d / 'ca.crt'}
users:
- name: admin
  user:
    client-certificate: {d / 'admin.crt'}
    client-key: {d / 'admin.key'}
contexts:
- name: local
  context: {{cluster: local, user: admin, namespace: default}}
current-context: local
"""


@dataclass
class ControlPlane(procs.Started):
    """etcd + kube-apiserver on free loopback ports, in a directory of their own."""

    workdir: Path
    bin_dir: Path = BIN_DIR
    audit: bool = False  # log every request (metadata only) to audit.log, for counting API calls
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    server: str = ""
    _apiserver_argv: list[str] = field(default_factory=list)

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    def start(self, timeout: float = 120.0) -> ControlPlane:
        t0 = time.monotonic()
        d = self.workdir
        (d / "pki").mkdir(parents=True, exist_ok=True)
        _certs(d / "pki")
        etcd_client, etcd_peer, secure = procs.free_port(), procs.free_port(), procs.free_port()
        self._spawn("etcd", [
            str(self.bin_dir / "etcd"),
            "--data-dir", str(d / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{etcd_client}",
            "--advertise-client-urls", f"http://127.0.0.1:{etcd_client}",
            "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
            "--initial-cluster", f"default=http://127.0.0.1:{etcd_peer}",
            "--unsafe-no-fsync",  # throwaway test data: durability buys nothing but slowness
            "--log-level", "warn",
        ])
        self._wait(f"http://127.0.0.1:{etcd_client}/health", t0 + timeout, "etcd")
        pki = d / "pki"
        self.server = f"https://127.0.0.1:{secure}"
        audit: list[str] = []
        if self.audit:
            policy = d / "audit-policy.yaml"
            policy.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\n"
                              "rules:\n- level: Metadata\n")
            audit = [f"--audit-policy-file={policy}", f"--audit-log-path={self.audit_log}",
                     "--audit-log-mode=blocking"]
        self._apiserver_argv = [
            str(self.bin_dir / "kube-apiserver"), *audit,
            f"--etcd-servers=http://127.0.0.1:{etcd_client}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={secure}",
            f"--cert-dir={d / 'apiserver-certs'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            # For `kubectl logs/exec` on the node of hack/node.py (the kubelet trusts this CA).
            f"--kubelet-client-certificate={pki / 'admin.crt'}",
            f"--kubelet-client-key={pki / 'admin.key'}",
            "--v=0",
        ]
        self._spawn("kube-apiserver", self._apiserver_argv)
        self.kubeconfig.write_text(_kubeconfig(self.server, pki))
        self._wait(f"{self.server}/readyz", t0 + timeout, "kube-apiserver")
        log(f"control plane ready at {self.server} in {time.monotonic() - t0:.1f}s")
        return self

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver alone, as in an outage; etcd keeps running with the data."""
        proc = self.procs.pop("kube-apiserver", None)
        if proc is not None:
            procs.terminate(proc.pid, proc)

    def start_apiserver(self, timeout: float = 60.0) -> None:
        """Start kube-apiserver again after stop_apiserver(), on the same address and certificates."""
        self._spawn("kube-apiserver", self._apiserver_argv)
        self._wait(f"{self.server}/readyz", time.monotonic() + timeout, "kube-apiserver")

    def _spawn(self, name: str, argv: list[str]) -> None:
        self.procs[name] = procs.spawn(self.workdir, name, argv)

    def _wait(self, url: str, deadline: float, name: str) -> None:
        ctx: ssl.SSLContext | None = None
        if url.startswith("https"):
            pki = self.workdir / "pki"
            ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
            ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        procs.wait_until(procs.answers(url, ctx), deadline, self.workdir, name, self.procs[name], interval=0.2)

    def stop(self) -> None:
        # The apiserver first, so that it does not log a storm of etcd errors.
        for name in ("kube-apiserver", "etcd"):
            proc = self.procs.pop(name, None)
            if proc is not None:
                procs.terminate(proc.pid, proc)
        shutil.rmtree(self.workdir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Command line: `make cluster` / `make cluster-down`


def down() -> None:
    if not STATE_DIR.exists():
        log("no control plane is running")
        return
    for name in ("kube-apiserver", "etcd"):
        pid_file = STATE_DIR / f"{name}.pid"
        if pid_file.exists():
            procs.terminate(int(pid_file.read_text()))
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    log("stopped")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["build", "up", "down", "bin-dir"])
    args = p.parse_args()
    if args.command == "bin-dir":
        print(BIN_DIR)
    elif args.command == "build":
        print(build())
    elif args.command == "up":
        down()
        build()
        cp = ControlPlane(STATE_DIR)
        try:
            cp.start()
        except BaseException:
            cp.stop()
            raise
        # The processes live on in their own sessions; `down` stops them by their pid files.
        print(f"export KUBECONFIG={cp.kubeconfig}")
        print(f"export PATH={BIN_DIR}:$PATH")
    else:
        down()


if __name__ == "__main__":
    main()
