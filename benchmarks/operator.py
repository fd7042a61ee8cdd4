#!/usr/bin/env python3
"""The operator at scale, on the local control plane: prints figures, asserts nothing.

For each size (packages in resources), with the request budget lifted: time from `kubectl apply` to all
Ready, the operator's CPU per page fetched (parse included), its peak RSS, its API requests per resource
(from the apiserver's audit log, told apart by user agent); then, over one full interval of the
resources in a separate short-interval run (`--steady`, `--interval` 1m, plus the schedule's spread),
the page fetches per package in steady state, the operator's CPU and its API writes (nothing changed on
the pages; the Lease renewals are writes too, the status writes are counted apart).

    python benchmarks/operator.py          # 1,000 in 100, 10,000 in 1,000 (1h), then 1,000 in 100 (1m)
    python benchmarks/operator.py --sizes 100:10,1000:100 --set PACKAGESTATS_MAX_CONCURRENCY=16
Targets: cost linear in packages (10x packages <= 11x time), RSS <= 300 MB at 10,000 packages, operator
CPU <= 3 ms per page, 0 API writes when nothing changed.
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
sys.path[:0] = [str(REPO)]

from hack import controlplane  # noqa: E402
from packagestats.api import parse_duration  # noqa: E402
from tests.support.fake_github import FakeGitHub, make_versions  # noqa: E402
from tests.support.operator import running_operator  # noqa: E402

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
            ref = event.get("objectRef", {})
            what = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
            counts[f"{event['verb']} {what}"] += 1
    return counts


def run(cp: controlplane.ControlPlane, packages: int, resources: int, interval: str, window: float,
        settings: dict[str, str]) -> dict[str, Any]:
    env = dict(os.environ, KUBECONFIG=str(cp.kubeconfig))
    kubectl = str(cp.bin_dir / "kubectl")
    ns = f"bench-{packages}-{interval}"
    subprocess.run([kubectl, "create", "namespace", ns], env=env, check=True, capture_output=True)
    per = packages // resources
    with FakeGitHub() as gh:
        docs = []
        for r in range(resources):
            owner = f"o{packages}-{r}"
            names = [f"pkg-{i}" for i in range(per)]
            for i, name in enumerate(names):
                # The total is above the versions' sum (6,111), as on a real page: the drift checks pass.
                gh.add_package(owner, name, repository="repo", total=10_000 + i, daily=list(range(30)),
                               versions=make_versions(3))
            docs.append({"apiVersion": "packagestats.dev/v1alpha1", "kind": "PackageStats",
                         "metadata": {"name": f"r{r}", "namespace": ns},
                         "spec": {"owner": owner, "interval": interval,
                                  "packages": [{"name": n, "repository": "repo"} for n in names]}})
        manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
        # Each size watches its own namespace: the resources of an earlier size (whose stand-in is gone)
        # must not be scraped along.
        with running_operator(cp.kubeconfig, gh.base_url, {"PACKAGESTATS_NAMESPACES": ns, **settings}) as op:
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
                if time.time() - t0 > 1800:
                    raise SystemExit(f"not all Ready after 1800 s ({ready}/{resources}); see {log}")
                time.sleep(1.0 if resources > 200 else 0.2)
            elapsed = time.time() - t0
            busy_cpu = _proc_stat(pid)[0] - cpu_start
            fetches = gh.count()
            busy_requests = _operator_requests(cp.audit_log, t0)
            steady = window
            cpu0, _ = _proc_stat(pid)
            fetches0 = gh.count()
            t_idle = time.time()
            time.sleep(steady)
            cpu1, rss = _proc_stat(pid)
            steady_fetches = gh.count() - fetches0
            idle_requests = _operator_requests(cp.audit_log, t_idle)
    totals = [sum(p.get("downloads", 0) for p in i["status"]["packages"]) for i in items]
    return {
        "packages": packages, "resources": resources, "ready_seconds": elapsed, "page_fetches": fetches,
        "busy_cpu_seconds": busy_cpu, "cpu_ms_per_page": 1000 * busy_cpu / max(fetches, 1),
        "api_requests_per_resource": sum(busy_requests.values()) / resources,
        "steady_seconds": steady, "steady_fetches_per_package": steady_fetches / packages,
        "api_requests": dict(busy_requests), "idle_cpu_percent": 100 * (cpu1 - cpu0) / steady,
        "idle_api_requests": dict(idle_requests),
        "idle_api_writes": sum(n for v, n in idle_requests.items() if v.split()[0] in WRITES),
        "idle_status_writes": sum(n for v, n in idle_requests.items()
                                  if v.split()[0] in WRITES and v.split()[1] == "packagestats/status"),
        "peak_rss_mb": rss / 2**20, "correct_totals": totals == [sum(10_000 + i for i in range(per))] * resources,
    }


def _print(result: dict[str, Any], label: str) -> None:
    print(f"{result['packages']:>5} packages in {result['resources']:>4} resources ({label}): all Ready in "
          f"{result['ready_seconds']:.1f} s, {result['page_fetches']} page fetches, operator CPU "
          f"{result['busy_cpu_seconds']:.1f} s ({result['cpu_ms_per_page']:.2f} ms per page), API requests "
          f"{result['api_requests']} ({result['api_requests_per_resource']:.1f} per resource), peak RSS "
          f"{result['peak_rss_mb']:.0f} MB; then over {result['steady_seconds']:.0f} s: "
          f"{result['steady_fetches_per_package']:.2f} page fetches per package, "
          f"CPU {result['idle_cpu_percent']:.2f} %, "
          f"API writes {result['idle_api_writes']}, of status {result['idle_status_writes']} "
          f"(all requests {result['idle_api_requests']}), totals correct: {result['correct_totals']}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000:100,10000:1000", help="PACKAGES:RESOURCES, comma-separated")
    p.add_argument("--idle", type=float, default=20.0, help="seconds measured after Ready in the --sizes runs")
    p.add_argument("--steady", default="1000:100", help="PACKAGES:RESOURCES of the short-interval run ('' : none)")
    p.add_argument("--interval", default="1m", help="the short-interval run's interval; one of it is measured")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="an operator setting, e.g. PACKAGESTATS_MAX_VERSION_PAGES=0; default: the operator's")
    args = p.parse_args()
    bin_dir = controlplane.build()
    # The budget is lifted: this measures the operator, not the pacing (which has tests of its own).
    # The fault tests' short timeouts and retries (tests/support/operator.py) are put back to the defaults.
    settings = {"PACKAGESTATS_REQUESTS_PER_MINUTE": "100000", "PACKAGESTATS_REQUEST_TIMEOUT_SECONDS": "20",
                "PACKAGESTATS_RETRIES": "3", "PACKAGESTATS_BACKOFF_SECONDS": "1",
                "PACKAGESTATS_BREAKER_COOLDOWN_SECONDS": "30", **dict(kv.split("=", 1) for kv in args.set)}
    print(f"operator settings: {settings}", flush=True)
    results = []
    with controlplane.ControlPlane(Path(tempfile.mkdtemp(prefix="bench-cp-")), bin_dir, audit=True) as cp:
        subprocess.run([str(bin_dir / "kubectl"), "apply", "--server-side", "-f", str(CRD)], check=True,
                       env=dict(os.environ, KUBECONFIG=str(cp.kubeconfig)), capture_output=True)
        for size in args.sizes.split(","):
            packages, resources = (int(x) for x in size.split(":"))
            result = run(cp, packages, resources, "1h", args.idle, settings)
            results.append(result)
            _print(result, f"interval 1h, {args.idle:.0f} s after Ready")
        if args.steady:
            packages, resources = (int(x) for x in args.steady.split(":"))
            # One full interval and the schedule's spread (10 %): every resource scrapes once more.
            window = parse_duration(args.interval) * 1.1 + 5
            _print(run(cp, packages, resources, args.interval, window, settings),
                   f"interval {args.interval}, one interval after Ready")
    if len(results) == 2:
        print(f"ratio of Ready times: {results[1]['ready_seconds'] / results[0]['ready_seconds']:.1f}x "
              f"for {results[1]['packages'] / results[0]['packages']:.0f}x the packages")


if __name__ == "__main__":
    main()
