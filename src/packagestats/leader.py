"""Leader election on a coordination.k8s.io Lease, so that of several replicas only one scrapes and
writes status.

The rules are client-go's: the holder renews the Lease every `duration / 3`; a candidate takes it over
when the holder has not renewed it for `duration`, measured on the candidate's own clock from when it
last saw the Lease change (so clocks of different nodes need not agree). Every write carries the
resourceVersion it read, so of two candidates only one wins. A leader that cannot renew before its
own deadline steps down at once, before anyone else may take over. On shutdown the Lease is released
so that a rolling update hands over in one retry period rather than one lease duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes
import urllib3
from kubernetes.client import CoordinationV1Api, V1Lease, V1LeaseSpec, V1ObjectMeta
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def default_identity(pod_name: str) -> str:
    return pod_name or f"{socket.gethostname()}-{os.getpid()}"


def default_namespace(namespace: str) -> str:
    if namespace:
        return namespace
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Leader:
    """Runs the election in the background (`run()`); `leading` says whether this process leads now.

    `term` grows with every won election: per-resource state cached under an older term is stale (another
    replica may have written in between) and is read again from the watched objects.
    """

    def __init__(self, client: kubernetes.client.ApiClient, *, name: str, namespace: str, identity: str,
                 duration: float, timeout: float, clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[bool], None] | None = None) -> None:
        self._api = CoordinationV1Api(client)
        self.name, self.namespace, self.identity = name, namespace, identity
        self.duration = duration
        self.renew_every = duration / 3
        self.retry_every = max(1.0, duration / 7)
        # Steps down before a standby may take over (client-go: renew deadline 10 s of a 15 s lease).
        self._renew_deadline = duration * 2 / 3
        self._timeout = timeout
        self._clock = clock
        self._on_change = on_change
        self.leading = False
        self.term = 0
        self.holder: str | None = None  # as last seen
        self._became = asyncio.Event()
        self._lost = asyncio.Event()
        self._observed: tuple[str | None, Any] = (None, None)  # (resourceVersion, renewTime) last seen
        self._observed_at = clock()
        self._deadline = 0.0  # monotonic: a leader that has not renewed by then steps down

    async def wait_leading(self) -> None:
        while not self.leading:
            self._became.clear()
            await self._became.wait()

    async def wait_lost(self) -> None:
        while self.leading:
            self._lost.clear()
            await self._lost.wait()

    async def run(self) -> None:
        try:
            while True:
                renewed = False
                try:
                    renewed = await asyncio.to_thread(self._try_acquire_or_renew)
                except (ApiException, urllib3.exceptions.HTTPError, OSError) as e:  # away, or slow: again soon
                    log.warning("lease %s/%s: %s: %s", self.namespace, self.name, type(e).__name__, e)
                # Until its own deadline a leader keeps leading while it retries.
                self._set(renewed or (self.leading and self._clock() < self._deadline))
                await asyncio.sleep(self.renew_every if renewed else self.retry_every)
        finally:
            if self.leading:
                self._set(False)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.to_thread(self._release), self._timeout)

    def _set(self, leading: bool) -> None:
        if leading == self.leading:
            return
        self.leading = leading
        if leading:
            self.term += 1
            log.info("lease %s/%s: %s is the leader now", self.namespace, self.name, self.identity)
            self._became.set()
        else:
            log.warning("lease %s/%s: %s is not the leader any more", self.namespace, self.name, self.identity)
            self._lost.set()
        if self._on_change is not None:
            self._on_change(leading)

    def _spec(self, acquire: datetime.datetime | None, transitions: int) -> V1LeaseSpec:
        now = _now()
        return V1LeaseSpec(holder_identity=self.identity, lease_duration_seconds=round(self.duration),
                           acquire_time=acquire or now, renew_time=now, lease_transitions=transitions)

    def _try_acquire_or_renew(self) -> bool:
        started = self._clock()
        try:
            lease: V1Lease = self._api.read_namespaced_lease(self.name, self.namespace,
                                                             _request_timeout=self._timeout)
        except ApiException as e:
            if e.status != 404:
                raise
            body = V1Lease(metadata=V1ObjectMeta(name=self.name, namespace=self.namespace),
                           spec=self._spec(None, 0))
            try:
                self._api.create_namespaced_lease(self.namespace, body, _request_timeout=self._timeout)
            except ApiException as e2:
                if e2.status == 409:  # another candidate created it first
                    return False
                raise
            self.holder = self.identity
            self._deadline = started + self._renew_deadline
            return True
        spec = lease.spec or V1LeaseSpec()
        seen = (lease.metadata.resource_version if lease.metadata else None, spec.renew_time)
        if seen != self._observed:
            self._observed, self._observed_at = seen, self._clock()
        self.holder = spec.holder_identity or None
        mine = spec.holder_identity == self.identity
        duration = float(spec.lease_duration_seconds or self.duration)
        expired = not spec.holder_identity or self._clock() > self._observed_at + duration
        if not mine and not expired:
            return False
        transitions = int(spec.lease_transitions or 0) + (0 if mine else 1)
        lease.spec = self._spec(spec.acquire_time if mine else None, transitions)
        try:
            # The read resourceVersion rides along: a concurrent writer makes this fail with 409.
            self._api.replace_namespaced_lease(self.name, self.namespace, lease, _request_timeout=self._timeout)
        except ApiException as e:
            if e.status == 409:
                return False
            raise
        self.holder = self.identity
        self._deadline = started + self._renew_deadline
        return True

    def _release(self) -> None:
        lease: V1Lease = self._api.read_namespaced_lease(self.name, self.namespace, _request_timeout=self._timeout)
        if lease.spec is None or lease.spec.holder_identity != self.identity:
            return
        # An empty holder: the next candidate takes it at once (client-go's ReleaseOnCancel).
        lease.spec.holder_identity = None
        lease.spec.renew_time = _now()
        lease.spec.lease_duration_seconds = 1
        self._api.replace_namespaced_lease(self.name, self.namespace, lease, _request_timeout=self._timeout)
        log.info("lease %s/%s released by %s", self.namespace, self.name, self.identity)
