#!/usr/bin/env python3
"""The operator at scale, on the local control plane: prints figures, asserts nothing.

For each size (packages in resources): time from `kubectl apply` to all Ready, the operator's API
requests (from the apiserver's audit log, told apart by user agent), its peak RSS, and, over an idle
window after that, its CPU use and API writes (there should be none: nothing changed).

    python benchmarks/operator.py                 # 100 in 10, then 1,000 in 100
    python benchmarks/operator.py --sizes 1000:100 --idle 30 --set PACKAGESTATS_MAX_CONCURRENCY=16
Targets: 1,000 packages in 100 resources all Ready in <= 20 s, RSS <= 200 MB, the 1,000 run <= 11x the
100 run, no API writes while nothing changed.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's folder comes first on sys.path, and its name would shadow the standard
# library's `operator` for every module imported after this line.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "hack"), str(REPO)]

from tests.support.fake_github import FakeGitHub, make_versions  # noqa: E402
from tests.support.operator import running_operator  # noqa: E402

import controlplane  # noqa: E402

CRD = REPO / "crds" / "packagestats.dev_packagestats.yaml"
WRITES = {"create", "update", "patch", "delete"}


def _proc_stat(pid: int) -> tuple[float, int]:
    """(CPU seconds, peak RSS bytes) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    hwm = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmHWM"))
    return cpu, int(hwm.split()[1]) * 1024


def _operator_requests(audit_log: Path, since: float) -> Counter[str]:
    """The operator's API requests by verb: its own client's and kopf's (by their user agents)."""
    counts: Counter[str] = Counter()
    for line in audit_log.read_text().splitlines():
        event = json.loads(line)
        agent = event.get("userAgent", "")
        if not agent.startswith(("packagestats/", "kopf/")):
            continue
        stamp = time.mktime(time.strptime(event["requestReceivedTimestamp"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        if stamp >= since:
            counts[event["verb"]] += 1
    return counts


def run(cp: controlplane.ControlPlane, packages: int, resources: int, idle: float,
        settings: dict[str, str]) -> dict[str, Any]:
    env = dict(os.environ, KUBECONFIG=str(cp.kubeconfig))
    kubectl = str(cp.bin_dir / "kubectl")
    ns = f"bench-{packages}"
    subprocess.run([kubectl, "create", "namespace", ns], env=env, check=True, capture_output=True)
    per = packages // resources
    with FakeGitHub() as gh:
        docs = []
        for r in range(resources):
            owner = f"o{packages}-{r}"
            names = [f"pkg-{i}" for i in range(per)]
            for i, name in enumerate(names):
                gh.add_package(owner, name, repository="repo", total=1000 + i, daily=list(range(30)),
                               versions=make_versions(3))
            docs.append({"apiVersion": "packagestats.dev/v1alpha1", "kind": "PackageStats",
                         "metadata": {"name": f"r{r}", "namespace": ns},
                         "spec": {"owner": owner, "interval": "1h",
                                  "packages": [{"name": n, "repository": "repo"} for n in names]}})
        manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
        with running_operator(cp.kubeconfig, gh.base_url, settings) as op:
            time.sleep(3)  # let the operator start and list (nothing to do yet)
            pid, log = op.pid, op.log
            cpu_start, _ = _proc_stat(pid)
            t0 = time.time()
            subprocess.run([kubectl, "apply", "-f", "-"], input=manifest, env=env, check=True,
                           capture_output=True, text=True)
            while True:
                out = subprocess.run([kubectl, "get", "packagestats", "-n", ns, "-o", "json"], env=env,
                                     check=True, capture_output=True, text=True).stdout
                items = json.loads(out)["items"]
                ready = sum(1 for i in items for c in i.get("status", {}).get("conditions", [])
                            if c["type"] == "Ready" and c["status"] == "True")
                if ready == resources:
                    break
                if time.time() - t0 > 300:
                    raise SystemExit(f"not all Ready after 300 s ({ready}/{resources}); see {log}")
                time.sleep(0.2)
            elapsed = time.time() - t0
            busy_cpu = _proc_stat(pid)[0] - cpu_start
            fetches = gh.count()
            busy_requests = _operator_requests(cp.audit_log, t0)
            cpu0, _ = _proc_stat(pid)
            t_idle = time.time()
            time.sleep(idle)
            cpu1, rss = _proc_stat(pid)
            idle_requests = _operator_requests(cp.audit_log, t_idle)
    totals = [sum(p.get("downloads", 0) for p in i["status"]["packages"]) for i in items]
    return {
        "packages": packages, "resources": resources, "ready_seconds": elapsed, "page_fetches": fetches,
        "busy_cpu_seconds": busy_cpu,
        "api_requests": dict(busy_requests), "idle_cpu_percent": 100 * (cpu1 - cpu0) / idle,
        "idle_api_requests": dict(idle_requests),
        "idle_api_writes": sum(n for v, n in idle_requests.items() if v in WRITES),
        "peak_rss_mb": rss / 2**20, "correct_totals": totals == [sum(1000 + i for i in range(per))] * resources,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100:10,1000:100", help="PACKAGES:RESOURCES, comma-separated")
    p.add_argument("--idle", type=float, default=20.0, help="seconds of the idle window")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="an operator setting, e.g. PACKAGESTATS_MAX_VERSION_PAGES=0; default: the operator's")
    args = p.parse_args()
    bin_dir = controlplane.build()
    print(f"operator settings: {args.set or 'defaults'}", flush=True)
    results = []
    with controlplane.ControlPlane(Path(tempfile.mkdtemp(prefix="bench-cp-")), bin_dir, audit=True) as cp:
        subprocess.run([str(bin_dir / "kubectl"), "apply", "--server-side", "-f", str(CRD)], check=True,
                       env=dict(os.environ, KUBECONFIG=str(cp.kubeconfig)), capture_output=True)
        for size in args.sizes.split(","):
            packages, resources = (int(x) for x in size.split(":"))
            result = run(cp, packages, resources, args.idle, dict(kv.split("=", 1) for kv in args.set))
            results.append(result)
            print(f"{packages:>5} packages in {resources:>3} resources: all Ready in {result['ready_seconds']:.1f} s, "
                  f"{result['page_fetches']} page fetches, operator CPU {result['busy_cpu_seconds']:.1f} s, "
                  f"API requests {result['api_requests']}, "
                  f"peak RSS {result['peak_rss_mb']:.0f} MB, idle CPU {result['idle_cpu_percent']:.2f} %, "
                  f"idle API writes {result['idle_api_writes']} (all idle requests {result['idle_api_requests']}), "
                  f"totals correct: {result['correct_totals']}", flush=True)
    if len(results) == 2:
        print(f"ratio of Ready times: {results[1]['ready_seconds'] / results[0]['ready_seconds']:.1f}x "
              f"for {results[1]['packages'] / results[0]['packages']:.0f}x the packages")


if __name__ == "__main__":
    main()
