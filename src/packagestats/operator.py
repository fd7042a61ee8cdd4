"""Every kopf decorator and start-up setting, thin, calling the domain modules.

One daemon per PackageStats decides when to scrape: on its interval, at once after a spec change
(new generation) or a new `packagestats.dev/requestedAt` annotation, and never while suspended. A raw
watch-event handler wakes it so that changes take effect without waiting for the interval; it writes
nothing, so kopf keeps no per-handler progress to store.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import kopf
import pydantic

from packagestats import api, kube, status, web
from packagestats.github import GitHubClient
from packagestats.metrics import Metrics, Observations
from packagestats.reconcile import Scraper
from packagestats.sandbox import Sandbox
from packagestats.settings import Settings

registry = kopf.OperatorRegistry()
RESOURCE = (api.GROUP, api.VERSION, api.PLURAL)
log = logging.getLogger(__name__)


@dataclass
class ResourceState:
    """Per-resource memory of the operator process (kept in kopf's per-object memo)."""

    wake: asyncio.Event = field(default_factory=asyncio.Event)
    status: api.PackageStatsStatus | None = None  # as last applied: newer than the watched body
    last_attempt: float | None = None  # monotonic time of the last scrape


def _state(memo: kopf.Memo) -> ResourceState:
    state = memo.get("state")
    if not isinstance(state, ResourceState):
        state = ResourceState()
        memo["state"] = state
    return state


@kopf.on.login(registry=registry)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # Our own registry does not get kopf's default login handlers: in-cluster config or the kubeconfig.
    return kopf.login_via_client(**kwargs)


@kopf.on.startup(registry=registry)
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config: Settings = memo["config"]
    # kopf's bookkeeping goes into annotations under our own prefix, the finalizer is named after our
    # group, and log lines are not turned into Events (ours are posted explicitly).
    settings.persistence.finalizer = api.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=api.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=api.GROUP)
    settings.posting.level = logging.CRITICAL + 1
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    github = GitHubClient(config)
    sandbox = Sandbox.from_settings(config)
    client = kube.new_api_client()
    observations = Observations()
    metrics = Metrics(observations, config.max_versions_in_status)
    metrics.cooldown.set_function(github.cooldown_remaining)

    def observe_parse(kind: str, seconds: float, fuel: int) -> None:
        metrics.parser_duration.labels(kind).observe(seconds)
        metrics.parser_fuel.labels(kind).observe(fuel)

    memo["scraper"] = Scraper(config, github, sandbox, observe_parse)
    memo["writer"] = kube.StatusWriter(client)
    memo["github"] = github
    memo["api_client"] = client
    memo["observations"] = observations
    memo["metrics"] = metrics
    if config.metrics_port:
        memo["web"] = await web.start(metrics, observations, config.metrics_port)


@kopf.on.cleanup(registry=registry)
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    github: GitHubClient | None = memo.get("github")
    if github is not None:
        await github.aclose()
    client = memo.get("api_client")
    if client is not None:
        client.close()
    runner = memo.get("web")
    if runner is not None:
        await runner.cleanup()


@kopf.on.event(*RESOURCE, registry=registry)
async def wake(memo: kopf.Memo, name: str, namespace: str | None, annotations: kopf.Annotations,
               **_: Any) -> None:
    # Every change of the object lets the daemon re-check what is due; it does nothing when nothing is.
    _state(memo).wake.set()
    observations: Observations = memo["observations"]
    observations.set_badge((namespace or "", name), annotations.get(api.BADGE_ANNOTATION) == "true")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


@kopf.daemon(*RESOURCE, registry=registry, cancellation_timeout=5.0, initial_delay=0)
async def scrape_loop(body: kopf.Body, meta: kopf.Meta, name: str, namespace: str | None, memo: kopf.Memo,
                      stopped: kopf.DaemonStopped, **_: Any) -> None:
    namespace = namespace or "default"  # the resource is namespaced: kopf always gives one
    state = _state(memo)
    scraper: Scraper = memo["scraper"]
    writer: kube.StatusWriter = memo["writer"]
    observations: Observations = memo["observations"]
    metrics: Metrics = memo["metrics"]
    key = (namespace, name)
    owner = str((body.get("spec") or {}).get("owner", ""))
    observations.update(key, owner, api.PackageStatsStatus.model_validate(body.get("status") or {}))
    observations.set_badge(key, (meta.get("annotations") or {}).get(api.BADGE_ANNOTATION) == "true")
    try:
        while not stopped:
            state.wake.clear()
            timeout = await _step(body, meta, name, namespace, state, scraper, writer, observations, metrics)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.wake.wait(), timeout=timeout)
    finally:
        # Deleted (or the operator stops): its series and badge go with it.
        observations.forget(key)
        metrics.forget(key)


async def _step(body: kopf.Body, meta: kopf.Meta, name: str, namespace: str, state: ResourceState,
                scraper: Scraper, writer: kube.StatusWriter, observations: Observations,
                metrics: Metrics) -> float | None:
    """Scrape if due; return how long to sleep until the next check (None: until woken)."""
    generation = int(meta.get("generation") or 0)
    if state.status is None:
        state.status = api.PackageStatsStatus.model_validate(body.get("status") or {})
    prev = state.status
    try:
        spec = api.PackageStatsSpec.model_validate(dict(body.get("spec") or {}))
    except pydantic.ValidationError as e:
        # The apiserver's schema should make this unreachable; say so instead of crashing the daemon.
        log.error("%s/%s: invalid spec: %s", namespace, name, e)
        return None
    if spec.suspend:
        return None
    requested = (meta.get("annotations") or {}).get(api.REQUESTED_AT_ANNOTATION)
    requested_new = requested is not None and requested != prev.last_handled_requested_at
    generation_new = prev.observed_generation != generation
    interval = spec.interval_seconds()
    if state.last_attempt is None and prev.last_scrape_time is not None and not generation_new:
        # After a restart: the last scrape recorded in status counts, so a restart does not re-scrape all.
        age = (_now() - prev.last_scrape_time).total_seconds()
        state.last_attempt = time.monotonic() - max(age, 0.0)
    due_in = 0.0 if state.last_attempt is None else state.last_attempt + interval - time.monotonic()
    if not (requested_new or generation_new or due_in <= 0):
        return due_in

    state.last_attempt = time.monotonic()
    try:
        if generation_new:
            reconciling = status.reconciling(prev, generation, _now())
            await writer.apply(namespace, name, reconciling)
            prev = reconciling
        started = time.monotonic()
        result = await scraper.scrape(spec, prev, generation=generation,
                                      requested_at=requested if requested_new else None)
        if result.status != prev:
            await writer.apply(namespace, name, result.status)
        state.status = result.status
        kube.post(body, result.events)
        observations.update((namespace, name), spec.owner, result.status)
        metrics.record_scrape((namespace, name), spec.owner, result.status, time.monotonic() - started)
    except asyncio.CancelledError:
        raise
    except Exception as e:  # the daemon must live on: the next interval retries
        log.exception("%s/%s: scrape failed", namespace, name)
        kube.post(body, [status.Event("Warning", "ScrapeError", f"scrape failed: {type(e).__name__}: {e}")])
        state.status = None  # re-read from the watched object next time
    return interval
