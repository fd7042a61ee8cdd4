#!/usr/bin/env python3
"""Container images without a registry or a Docker engine: base images made from Debian packages, the
sandbox ("pause") image, and the project's own image built from its Dockerfile by buildah.

    python -m hack.images build          # build localhost/packagestats:VERSION, print its reference
    python -m hack.images load           # ... and import it into the node of hack/node.py (`make image`)

No image registry is reachable here, so the base images the Dockerfile names (what a laptop would pull)
are made locally with mmdebstrap under the same names: the Dockerfile has one form for both. They carry
two facts of this machine a pulled image does not need: its extra CA certificates (package registries
are reached through a TLS proxy) and apt's `Check-Valid-Until false` for its snapshot mirror.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Protocol

from hack import toolchain

REPO = Path(__file__).resolve().parents[1]
IMAGES_DIR = toolchain.CACHE / "images"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"localhost/packagestats:{VERSION}"
# Bump when the way a base is made changes, so that an older one is not reused.
BASE_REVISION = 1
PAUSE_IMAGE = "localhost/packagestats-pause:1"
DEBIAN_SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
SOURCES = [f"deb {MIRROR} {DEBIAN_SUITE} main", f"deb {MIRROR} {DEBIAN_SUITE}-updates main",
           f"deb http://deb.debian.org/debian-security {DEBIAN_SUITE}-security main"]
# The Dockerfile's base images (its ARG defaults) and the Debian packages each is made of.
BASES: dict[str, list[str]] = {
    "docker.io/library/debian:bookworm-slim": ["ca-certificates"],
    "docker.io/library/python:3.11-slim-bookworm": ["ca-certificates", "python3", "python3-venv"],
}
TOOLS = {"buildah": "/usr/bin/buildah", "mmdebstrap": "/usr/bin/mmdebstrap", "gcc": "/usr/bin/gcc",
         "libc6-dev": "/usr/lib/x86_64-linux-gnu/libc.a", "uidmap": "/usr/bin/newuidmap",
         "fuse-overlayfs": "/usr/bin/fuse-overlayfs"}
PAUSE_C = r"""
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
/* The pod sandbox's process: hold the namespaces, reap orphans, leave on SIGTERM/SIGINT. */
static void quit(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
    signal(SIGTERM, quit);
    signal(SIGINT, quit);
    signal(SIGCHLD, reap);
    for (;;) pause();
}
"""


def log(msg: str) -> None:
    print(f"[images] {msg}", file=sys.stderr, flush=True)


def _run(*argv: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=True, text=True, **kwargs)  # type: ignore[call-overload, no-any-return]


def ensure_tools() -> None:
    toolchain.apt_install(TOOLS)


def _exists(ref: str) -> bool:
    return subprocess.run(["buildah", "inspect", "--type", "image", ref], capture_output=True).returncode == 0


def _from_archive(ref: str, archive: Path) -> bool:
    """Load a cached base from its archive; False when there is none."""
    if not archive.exists():
        return False
    _run("buildah", "pull", "--quiet", f"oci-archive:{archive}", stdout=subprocess.DEVNULL)
    image_id = _run("buildah", "images", "--quiet", "--no-trunc", f"oci-archive:{archive}",
                    capture_output=True, check=False).stdout.strip()
    if image_id:
        _run("buildah", "tag", image_id.splitlines()[0], ref)
    return _exists(ref)


def _archive(ref: str) -> Path:
    key = hashlib.sha256(f"{ref} {BASES.get(ref)} {BASE_REVISION}".encode()).hexdigest()[:12]
    return IMAGES_DIR / f"{ref.rsplit('/', 1)[-1].replace(':', '_')}-{key}.tar"


def _commit_rootfs(ref: str, rootfs_tar: Path, config: list[str]) -> None:
    container = _run("buildah", "from", "scratch", capture_output=True).stdout.strip()
    try:
        _run("buildah", "add", "--quiet", container, str(rootfs_tar), "/", stdout=subprocess.DEVNULL)
        _run("buildah", "config", *config, container)
        _run("buildah", "commit", "--quiet", "--rm", container, ref, stdout=subprocess.DEVNULL)
    except BaseException:
        subprocess.run(["buildah", "rm", container], capture_output=True)
        raise


def ensure_base(ref: str) -> None:
    if _exists(ref):
        return
    archive = _archive(ref)
    if _from_archive(ref, archive):
        return
    log(f"making {ref} with mmdebstrap")
    with tempfile.TemporaryDirectory(prefix="packagestats-base-") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        hooks = []
        extra_cas = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
        for ca in extra_cas:
            hooks.append(f"--customize-hook=upload {ca} /usr/local/share/ca-certificates/{ca.name}")
        if extra_cas:
            hooks.append('--customize-hook=chroot "$1" update-ca-certificates')
        # Like the official images: no documentation, no package lists left behind.
        hooks.append('--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/usr/share/doc "$1"/usr/share/man')
        _run("mmdebstrap", "--quiet", "--variant=minbase", f"--include={','.join(BASES[ref])}",
             "--aptopt=Acquire::Check-Valid-Until \"false\"", *hooks, DEBIAN_SUITE, str(rootfs), *SOURCES)
        env = ["--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "--env", "LANG=C.UTF-8", "--cmd", "bash"]
        if extra_cas:
            # pip and httpx read certifi's bundle, not the system's, unless told.
            env += ["--env", "PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
                    "--env", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"]
        _commit_rootfs(ref, rootfs, env)
    IMAGES_DIR.mkdir(parents=True, exist_ok=True)
    _run("buildah", "push", "--quiet", ref, f"oci-archive:{archive}:{ref}", stdout=subprocess.DEVNULL)


def ensure_pause() -> None:
    if _exists(PAUSE_IMAGE):
        return
    with tempfile.TemporaryDirectory(prefix="packagestats-pause-") as tmp:
        d = Path(tmp)
        (d / "pause.c").write_text(PAUSE_C)
        (d / "root").mkdir()
        _run("gcc", "-static", "-Os", "-s", "-o", str(d / "root" / "pause"), str(d / "pause.c"))
        _run("tar", "-C", str(d / "root"), "-cf", str(d / "rootfs.tar"), ".")
        _commit_rootfs(PAUSE_IMAGE, d / "rootfs.tar", ["--entrypoint", '["/pause"]', "--user", "65535:65535"])


def build_image(ref: str = IMAGE) -> str:
    """The project's image from its Dockerfile; buildah's layer cache makes a rebuild quick."""
    ensure_tools()
    for base in BASES:
        ensure_base(base)
    log(f"buildah build -t {ref}")
    # Host networking for RUN steps: the parser stage's apt and cargo and pip reach their registries,
    # and no bridge or private address is created.
    _run("buildah", "build", "--quiet", "--layers", "--pull=never", "--network=host", "--isolation=chroot",
         "-t", ref, "-f", str(REPO / "Dockerfile"), str(REPO), stdout=subprocess.DEVNULL)
    return ref


class Runtime(Protocol):
    def ctr(self, *args: str) -> subprocess.CompletedProcess[str]: ...


def load(node: Runtime, ref: str) -> None:
    """Import an image from buildah's storage into the node's containerd (namespace k8s.io)."""
    with tempfile.TemporaryDirectory(prefix="packagestats-load-") as tmp:
        archive = Path(tmp) / "image.tar"
        _run("buildah", "push", "--quiet", ref, f"docker-archive:{archive}:{ref}", stdout=subprocess.DEVNULL)
        node.ctr("images", "import", str(archive))


def import_pause(node: Runtime) -> None:
    ensure_tools()
    ensure_pause()
    load(node, PAUSE_IMAGE)


def image_file(ref: str, path: str) -> bytes:
    """A file's bytes from an image (for checks such as the parser module's digest)."""
    container = _run("buildah", "from", "--pull=never", ref, capture_output=True).stdout.strip()
    try:
        mount = _run("buildah", "mount", container, capture_output=True).stdout.strip()
        return (Path(mount) / path.lstrip("/")).read_bytes()
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True)


def image_size(ref: str) -> str:
    """The image's size as buildah reports it (uncompressed, all layers)."""
    return _run("buildah", "images", "--noheading", "--format", "{{.Size}}", ref, capture_output=True).stdout.strip()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["build", "load"])
    args = p.parse_args()
    if shutil.which("buildah") is None:
        ensure_tools()
    ref = build_image()
    if args.command == "load":
        from hack import node  # node imports this module for the pause image

        n = node.Node(node.STATE_DIR)
        if not n.socket.exists():
            raise SystemExit("no node is running: `make node` first")
        load(n, ref)
    print(ref)


if __name__ == "__main__":
    main()
