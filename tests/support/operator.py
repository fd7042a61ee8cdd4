"""The operator as users run it: the `packagestats run` console script in a process of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from packagestats import api
from tests.support.cluster import Cluster

T = TypeVar("T")

# Fast retries and short timeouts so that fault tests finish in seconds.
TEST_SETTINGS = {
    "PACKAGESTATS_RETRIES": "1",
    "PACKAGESTATS_BACKOFF_SECONDS": "0.05",
    "PACKAGESTATS_REQUEST_TIMEOUT_SECONDS": "2",
    "PACKAGESTATS_MAX_RESPONSE_BYTES": str(1024 * 1024),
    "PACKAGESTATS_HEALTH_PORT": "0",
    "PACKAGESTATS_METRICS_PORT": "0",
    # Tests run many packages quickly against the local stand-in; the budget has tests of its own.
    "PACKAGESTATS_REQUESTS_PER_MINUTE": "60000",
    # A short breaker cooldown: one test's fault must not hold the next test up (test_pacing.py and
    # test_faults.py run the default).
    "PACKAGESTATS_BREAKER_COOLDOWN_SECONDS": "1",
}


@dataclass(frozen=True)
class OperatorProcess:
    log: Path
    proc: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid


@contextmanager
def running_operator(kubeconfig: Path, github_url: str, extra_env: Mapping[str, str] | None = None, *,
                     namespace: str | None = None) -> Iterator[OperatorProcess]:
    """Start `packagestats run`, watching `namespace` only when given (a test's own: the objects of
    earlier tests stay behind in Terminating namespaces and would otherwise be scraped too); yield its
    pid and log file; stop it (SIGTERM, as Kubernetes would)."""
    workdir = Path(tempfile.mkdtemp(prefix="packagestats-op-"))
    log_path = workdir / "operator.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACKAGESTATS_")}
    env.update(TEST_SETTINGS)
    env.update({"KUBECONFIG": str(kubeconfig), "PACKAGESTATS_GITHUB_URL": github_url,
                "PACKAGESTATS_CACHE_DIR": str(workdir / "cache"),
                # A Lease of its own: an operator killed by an earlier test does not hold this one up.
                "PACKAGESTATS_LEASE_NAME": f"packagestats-{uuid.uuid4().hex[:12]}"})
    if namespace is not None:
        env["PACKAGESTATS_NAMESPACES"] = namespace
    env.update(extra_env or {})
    script = Path(sys.executable).parent / "packagestats"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(script), "run"], stdout=log, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL)
    try:
        yield OperatorProcess(log_path, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0, log: Path | None = None,
             op: OperatorProcess | None = None) -> T:
    """Poll until `probe` returns something truthy; fail with what was last seen and the operator's log
    (at once when the operator `op` has exited)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    log = log or (op.log if op is not None else None)
    while time.monotonic() < deadline and (op is None or op.proc.poll() is None):
        try:
            last = probe()
        except AssertionError as e:  # kubectl failing (object not there yet)
            last = e
        else:
            if last:
                return last  # type: ignore[no-any-return]
        time.sleep(0.25)
    state = f"the operator exited ({op.proc.returncode})" if op is not None and op.proc.poll() is not None \
        else f"timed out after {timeout}s"
    tail = log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""
    raise AssertionError(f"{state} waiting for {what}; last seen: {last!r}\n{tail}")


def apply_packagestats(kube: Cluster, namespace: str, name: str, spec: dict[str, Any],
                       annotations: dict[str, str] | None = None) -> None:
    body = {"apiVersion": api.API_VERSION, "kind": api.KIND,
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
            "spec": spec}
    kube.kubectl("apply", "--server-side", "--field-manager=tests", "-f", "-", input=json.dumps(body))


def get(kube: Cluster, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = kube.kubectl_json("get", "packagestats", name, "-n", namespace)
    return result


def condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any] | None:
    for c in obj.get("status", {}).get("conditions", []):
        if c["type"] == type_:
            return dict(c)
    return None


def request_scrape(kube: Cluster, namespace: str, name: str) -> str:
    value = f"{time.time():.6f}"
    kube.kubectl("annotate", "packagestats", name, "-n", namespace,
                 f"{api.REQUESTED_AT_ANNOTATION}={value}", "--overwrite")
    return value


def events(kube: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kube.kubectl_json(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")["items"]
    return items
