"""Writing to Kubernetes: the status by server-side apply under our own field manager, and Events.

kopf has no server-side apply and would merge-patch handler results into the status, so the status is
written here with the kubernetes client, whole each time: server-side apply removes owned fields that an
apply leaves out, and applying the same status twice is a no-op.

Events are written here too, as client-go's recorder does: a repeated Event (same object, type, reason
and message) bumps `count` and `lastTimestamp` of the one Event object instead of posting a new one each
interval, and messages are cut to the 1024 characters the apiserver accepts.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any, cast

import kopf
import kubernetes

from packagestats import __version__, api
from packagestats.status import MAX_EVENT_MESSAGE, Event

log = logging.getLogger(__name__)

# The minimal status after a refused write is applied by a manager of its own: it owns only the Ready
# condition, so the last good values (owned by FIELD_MANAGER) stay, and the next good apply, forced,
# takes Ready back.
FALLBACK_FIELD_MANAGER = f"{api.FIELD_MANAGER}-fallback"
_MAX_REMEMBERED = 10_000  # Event names whose count this process knows


def new_api_client() -> kubernetes.client.ApiClient:
    """A client for in-cluster config when running in a pod, else the current kubeconfig."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=configuration)
    client = kubernetes.client.ApiClient(configuration)
    client.user_agent = f"packagestats/{__version__}"  # tells our requests apart in audit logs
    return client


def status_document(namespace: str, name: str, status: api.PackageStatsStatus) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "status": status.model_dump(mode="json", by_alias=True, exclude_none=True),
    }


def yaml_safe(node: Any) -> Any:
    """Characters beyond the BMP replaced by U+FFFD: the client sends JSON with backslash-u escapes, and
    the apiserver's YAML decoder of apply patches refuses the surrogate pairs those characters need."""
    if isinstance(node, str):
        return "".join(ch if ord(ch) <= 0xFFFF else "\ufffd" for ch in node) if not node.isascii() else node
    if isinstance(node, dict):
        return {k: yaml_safe(v) for k, v in node.items()}
    if isinstance(node, list):
        return [yaml_safe(v) for v in node]
    return node


@dataclass(frozen=True)
class WriteFailure:
    """Why the apiserver refused a status write: one CamelCase word and its own message."""

    reason: str
    message: str


def write_failure(e: Exception) -> WriteFailure:
    if isinstance(e, kubernetes.client.ApiException):
        reason = {413: "TooLarge", 422: "Invalid", 409: "Conflict", 504: "Timeout", 429: "Throttled"}.get(
            e.status or 0, f"HTTP{e.status}")
        message = e.reason or ""
        try:
            message = json.loads(e.body or "{}").get("message") or message
        except (ValueError, AttributeError):
            message = (e.body or message) if isinstance(e.body, str) else message
        return WriteFailure(reason, str(message)[:800] or f"HTTP {e.status}")
    reason = "Timeout" if isinstance(e, TimeoutError) or "timed out" in str(e).lower() else "Unreachable"
    return WriteFailure(reason, f"{type(e).__name__}: {e}"[:800])


class StatusWriter:
    def __init__(self, client: kubernetes.client.ApiClient, timeout: float | None = None) -> None:
        self._objects = kubernetes.client.CustomObjectsApi(client)
        self._timeout = timeout  # of each request: a half-open connection must not hold a write for ever
        self.writes = 0  # for benchmarks: API writes made

    async def apply(self, namespace: str, name: str, status: api.PackageStatsStatus) -> None:
        await self.apply_document(namespace, name, status_document(namespace, name, status))

    async def apply_minimal(self, namespace: str, name: str, status: api.PackageStatsStatus) -> None:
        """Only the conditions of `status`, as the fallback manager (see FALLBACK_FIELD_MANAGER)."""
        document = status_document(namespace, name, status)
        document["status"] = {"conditions": document["status"].get("conditions", [])}
        await self.apply_document(namespace, name, document, FALLBACK_FIELD_MANAGER)

    async def apply_document(self, namespace: str, name: str, document: dict[str, Any],
                             manager: str = api.FIELD_MANAGER) -> None:
        self.writes += 1
        # The client is synchronous: keep kopf's event loop free.
        await asyncio.to_thread(
            self._objects.patch_namespaced_custom_object_status,
            api.GROUP, api.VERSION, namespace, api.PLURAL, name, yaml_safe(document),
            field_manager=manager, force=True,
            _content_type="application/apply-patch+yaml", _request_timeout=self._timeout,
        )


@dataclass(frozen=True)
class ObjectRef:
    namespace: str
    name: str
    uid: str


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_name(ref: ObjectRef, event: Event) -> str:
    digest = hashlib.sha256(f"{ref.uid}\0{event.type}\0{event.reason}\0{event.message}".encode()).hexdigest()
    return f"{ref.name[:200]}.{digest[:16]}"


class EventRecorder:
    """Posts Events on PackageStats objects, aggregating repeats into one object (count, lastTimestamp)."""

    def __init__(self, client: kubernetes.client.ApiClient, instance: str = "", timeout: float | None = None) -> None:
        self._core = kubernetes.client.CoreV1Api(client)
        self._instance = instance
        self._timeout = timeout
        self._counts: dict[tuple[str, str], int] = {}  # (namespace, event name) -> count last written

    async def post(self, ref: ObjectRef, events: list[Event]) -> None:
        for event in events:
            try:
                await asyncio.to_thread(self._post, ref, event)
            except Exception as e:  # noqa: BLE001 - Events are best effort; scraping goes on
                log.warning("%s/%s: posting Event %s failed: %s", ref.namespace, ref.name, event.reason,
                            write_failure(e).message)

    def _post(self, ref: ObjectRef, event: Event) -> None:
        name = event_name(ref, event)
        key = (ref.namespace, name)
        now = _now()
        count = self._counts.get(key)
        if count is not None:
            try:
                self._bump(ref, name, count, now)
                return
            except kubernetes.client.ApiException as e:
                if e.status != 404:
                    raise
                # Expired (the apiserver's event TTL): post it anew.
        if len(self._counts) > _MAX_REMEMBERED:
            self._counts.clear()  # bounded memory; a forgotten Event is found again by its name
        body = {
            "metadata": {"name": name, "namespace": ref.namespace},
            "involvedObject": {"apiVersion": api.API_VERSION, "kind": api.KIND, "name": ref.name,
                               "namespace": ref.namespace, "uid": ref.uid},
            "type": event.type, "reason": event.reason[:128], "message": event.message[:MAX_EVENT_MESSAGE],
            "source": {"component": api.FIELD_MANAGER},
            "reportingComponent": f"{api.GROUP}/operator", "reportingInstance": self._instance[:128],
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        try:
            self._core.create_namespaced_event(ref.namespace, cast(Any, body), _request_timeout=self._timeout)
            self._counts[key] = 1
            return
        except kubernetes.client.ApiException as e:
            if e.status != 409:
                raise
        # Posted by an earlier run of the operator: carry on counting from it.
        existing = self._core.read_namespaced_event(name, ref.namespace, _request_timeout=self._timeout)
        self._bump(ref, name, int(existing.count or 1), now)

    def _bump(self, ref: ObjectRef, name: str, count: int, now: str) -> None:
        self._core.patch_namespaced_event(name, ref.namespace, {"count": count + 1, "lastTimestamp": now},
                                          _request_timeout=self._timeout)
        self._counts[(ref.namespace, name)] = count + 1


def post(body: kopf.Body, events: list[Event]) -> None:
    """Queue Events through kopf (each a new object); EventRecorder aggregates repeats instead."""
    for event in events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message[:MAX_EVENT_MESSAGE])
