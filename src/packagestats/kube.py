"""Writing to Kubernetes: the status by server-side apply under our own field manager, and Events.

kopf has no server-side apply and would merge-patch handler results into the status, so the status is
written here with the kubernetes client, whole each time: server-side apply removes owned fields that an
apply leaves out, and applying the same status twice is a no-op.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
import kubernetes

from packagestats import __version__, api
from packagestats.status import Event


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


class StatusWriter:
    def __init__(self, client: kubernetes.client.ApiClient) -> None:
        self._objects = kubernetes.client.CustomObjectsApi(client)
        self.writes = 0  # for benchmarks: API writes made

    async def apply(self, namespace: str, name: str, status: api.PackageStatsStatus) -> None:
        body = status_document(namespace, name, status)
        self.writes += 1
        # The client is synchronous: keep kopf's event loop free.
        await asyncio.to_thread(
            self._objects.patch_namespaced_custom_object_status,
            api.GROUP, api.VERSION, namespace, api.PLURAL, name, body,
            field_manager=api.FIELD_MANAGER, force=True,
            _content_type="application/apply-patch+yaml",
        )


def post(body: kopf.Body, events: list[Event]) -> None:
    """Queue Events on the resource; kopf posts them in the background and retries on failure."""
    for event in events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
