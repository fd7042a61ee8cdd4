#!/usr/bin/env python3
"""The main job on one machine: a local control plane, a GitHub stand-in, the operator, a sample resource.

    python -m hack.demo up      # start everything, wait for the sample to be Ready, print it
    python -m hack.demo down    # stop everything `up` started

github.com is often out of reach of a test machine, so the operator reads the real captured pages of
`deploy/samples/packagestats.yaml`'s packages from a local stand-in. Set PACKAGESTATS_GITHUB_URL to
scrape another server (https://github.com where it is reachable) instead.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hack import controlplane, procs, toolchain

REPO = Path(__file__).resolve().parents[1]
DEMO_DIR = toolchain.CACHE / "demo"
SAMPLE = REPO / "deploy" / "samples" / "packagestats.yaml"
CRD = REPO / "crds" / "packagestats.dev_packagestats.yaml"


def serve_github(port_file: Path) -> None:
    """Serve the captured pages of the sample packages until killed."""
    from tests.support.fake_github import FakeGitHub

    gh = FakeGitHub().start()
    gh.add_captured("headscale-2026-07.html")
    gh.add_captured("icicle-insights-2026-09.html")
    port_file.write_text(str(gh.port))
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    gh.stop()


def up() -> None:
    down()
    DEMO_DIR.mkdir(parents=True)
    bin_dir = controlplane.build()
    cp = controlplane.ControlPlane(controlplane.STATE_DIR, bin_dir)
    cp.start()
    env = dict(os.environ, KUBECONFIG=str(cp.kubeconfig), PATH=f"{bin_dir}:{os.environ['PATH']}")

    def kubectl(*args: str) -> str:
        return subprocess.run(["kubectl", *args], env=env, check=True, capture_output=True, text=True).stdout

    kubectl("apply", "--server-side", "-f", str(CRD))
    kubectl("wait", "--for=condition=Established", "crd/packagestats.packagestats.dev", "--timeout=60s")
    github_url = os.environ.get("PACKAGESTATS_GITHUB_URL")
    if not github_url:
        port_file = DEMO_DIR / "github.port"
        procs.spawn(DEMO_DIR, "github", [sys.executable, "-m", "hack.demo", "serve-github", str(port_file)],
                    dict(env, PYTHONPATH=str(REPO)))
        deadline = time.monotonic() + 20
        while not port_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        github_url = f"http://127.0.0.1:{port_file.read_text()}"
    script = Path(sys.executable).parent / "packagestats"
    procs.spawn(DEMO_DIR, "operator", [str(script), "run"], dict(
        env, PACKAGESTATS_GITHUB_URL=github_url, PACKAGESTATS_HEALTH_PORT="0", PACKAGESTATS_METRICS_PORT="0"))
    kubectl("apply", "-f", str(SAMPLE))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        items = json.loads(kubectl("get", "packagestats", "-A", "-o", "json"))["items"]
        readies = [next((c["status"] for c in i.get("status", {}).get("conditions", []) if c["type"] == "Ready"),
                        None) for i in items]
        if items and all(r == "True" for r in readies):
            break
        time.sleep(0.5)
    print(kubectl("get", "packagestats", "-A"))
    print(f"export KUBECONFIG={cp.kubeconfig}")
    print(f"export PATH={bin_dir}:$PATH")
    print(f"# operator log: {DEMO_DIR / 'operator.log'}; stop everything with: make demo-down")


def down() -> None:
    if DEMO_DIR.exists():
        for name in ("operator", "github"):
            pid_file = DEMO_DIR / f"{name}.pid"
            if pid_file.exists():
                procs.terminate(int(pid_file.read_text()))
        for f in DEMO_DIR.iterdir():
            f.unlink()
        DEMO_DIR.rmdir()
    controlplane.down()


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "up":
        up()
    elif command == "down":
        down()
    elif command == "serve-github" and len(sys.argv) == 3:
        serve_github(Path(sys.argv[2]))
    else:
        sys.exit(__doc__)
