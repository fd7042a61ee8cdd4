"""Building what this machine lacks, once: Go modules into a cache outside the repository, keyed by
version (no registry ships kube-apiserver & co., and no Docker engine runs here), and Debian packages."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

CACHE = Path(os.environ.get("PACKAGESTATS_CACHE", Path.home() / ".cache" / "packagestats"))


def log(msg: str) -> None:
    print(f"[toolchain] {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def build_lock() -> Iterator[None]:
    """Held while building into CACHE: another process building the same binaries is waited for, not raced."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def module_dir(module: str, version: str) -> Path:
    """The unpacked source of `module@version` in Go's module cache (downloaded if missing)."""
    env = dict(os.environ, GOFLAGS="-mod=mod", GOTOOLCHAIN="local", GO111MODULE="on")
    out = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"], capture_output=True,
                         text=True, env=env, cwd=tempfile.gettempdir(), check=False)
    info = json.loads(out.stdout or "{}")
    if out.returncode != 0 or "Error" in info:
        raise RuntimeError(f"go mod download {module}@{version}: {info.get('Error', out.stderr)}")
    return Path(info["Dir"])


def go(args: list[str], cwd: Path) -> None:
    env = dict(os.environ, GOFLAGS="-mod=mod -buildvcs=false", CGO_ENABLED="0", GOTOOLCHAIN="local")
    log(f"go {' '.join(args)}  (in {cwd})")
    subprocess.run(["go", *args], cwd=cwd, env=env, check=True)


def staging_replaces(kube_version: str) -> list[str]:
    """k8s.io/kubernetes pins its staging modules at v0.0.0 with replaces that do not apply to a
    module that requires it: replace each with the published v0.X.Y of the same release."""
    gomod = (module_dir("k8s.io/kubernetes", kube_version) / "go.mod").read_text()
    staging_version = "v0." + kube_version.removeprefix("v1.")
    names = re.findall(r"^\s*(k8s\.io/[\w.-]+)\s*=>\s*\./staging/", gomod, flags=re.M)
    if not names:
        raise RuntimeError(f"no staging replaces found in k8s.io/kubernetes@{kube_version}")
    return [f"replace {n} => {n} {staging_version}" for n in sorted(set(names))]


def version_ldflags(kube_version: str) -> list[str]:
    """What Kubernetes' own build stamps into its binaries: without it they report v0.0.0-master,
    which `kubectl version` refuses to parse and version checks (Helm's kubeVersion) get wrong."""
    major, minor = kube_version.removeprefix("v").split(".")[:2]
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {pkg}.gitVersion={kube_version}", f"-X {pkg}.gitMajor={major}",
                  f"-X {pkg}.gitMinor={minor}", f"-X {pkg}.gitTreeState=clean"]
    return flags


def build_module(name: str, require: dict[str, str], replaces: list[str],
                 packages: dict[str, str], out_dir: Path, ldflags: list[str] | None = None,
                 tags: list[str] | None = None, tidy: bool = True) -> None:
    """A throwaway wrapper module whose only job is to pin versions and `go build` main packages.

    `tidy=False` for modules whose main package is the module's root: tidy drops a requirement that
    only a main package uses, so `-mod=mod` (in `go`) resolves it while building instead."""
    src = CACHE / "src" / name
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    lines = [f"module packagestats.dev/hack/{name}", "", "go 1.26", ""]
    lines += [f"require {mod} {ver}" for mod, ver in require.items()]
    lines += ["", *replaces, ""]
    (src / "go.mod").write_text("\n".join(lines))
    imports = "\n".join(f'\t_ "{pkg}"' for pkg in packages.values())
    (src / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n")
    if tidy:
        go(["mod", "tidy"], src)
    tmp_out = out_dir.with_name(out_dir.name + ".partial")
    tmp_out.mkdir(parents=True, exist_ok=True)
    for binary, pkg in packages.items():
        flags = " ".join(["-s", "-w", *(ldflags or [])])
        tag_args = [f"-tags={','.join(tags)}"] if tags else []
        go(["build", "-trimpath", *tag_args, f"-ldflags={flags}", "-o", str(tmp_out / binary), pkg], src)
    out_dir.mkdir(parents=True, exist_ok=True)
    for binary in packages:
        os.replace(tmp_out / binary, out_dir / binary)
    shutil.rmtree(tmp_out, ignore_errors=True)


def apt_install(packages: dict[str, str]) -> None:
    """Install the Debian packages (name -> a file each installs) that are missing; the package lists are
    refreshed only when an install fails without them (a fresh machine has none)."""
    missing = [pkg for pkg, path in packages.items() if not Path(path).exists()]
    if not missing:
        return
    log(f"apt-get install {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-qq", *missing]
    if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run(install, env=env, check=True, stdout=subprocess.DEVNULL)
