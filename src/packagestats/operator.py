"""Every kopf decorator and start-up setting, thin, calling the domain modules.

One daemon per PackageStats decides when to scrape: at once after a spec change (new generation) or a
new `packagestats.dev/requestedAt` annotation; on its schedule (every interval, at a stable per-object
offset, see pacing.next_scrape); the packages whose scrape failed transiently on their own retry
schedule in between; never while suspended, and only while this process holds the leader Lease. A raw
watch-event handler wakes it so that changes take effect without waiting; it writes nothing, so kopf
keeps no per-handler progress to store.

Start-up builds one `Runtime` (settings, clients, metrics, the election) and keeps it in kopf's memo
under one key; the handlers take it from there.
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
import kubernetes
import pydantic
import urllib3

from packagestats import api, kube, pacing, parser_source, status, web
from packagestats.github import GitHubClient
from packagestats.history_db import HistoryDB, HistoryError
from packagestats.leader import Leader, default_identity, default_namespace
from packagestats.metrics import Metrics, Observations
from packagestats.reconcile import Key, Report, Scraper
from packagestats.sandbox import Sandbox
from packagestats.settings import Settings

registry = kopf.OperatorRegistry()
RESOURCE = (api.GROUP, api.VERSION, api.PLURAL)
log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """What the handlers share, built once at start-up."""

    config: Settings
    github: GitHubClient
    scraper: Scraper
    writer: kube.StatusWriter
    api_client: kubernetes.client.ApiClient
    observations: Observations
    metrics: Metrics
    leader: Leader | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    web_runner: Any = None
    events: kube.EventRecorder | None = None  # None: through kopf (tests that build a Runtime by hand)
    history: HistoryDB | None = None  # PACKAGESTATS_HISTORY_URL; None: status only
    parser: parser_source.Follower | None = None  # None: the ParserRefused condition is left as it is
    daemons: dict[Key, ResourceState] = field(default_factory=dict)  # the running daemons, to wake them

    @property
    def leading(self) -> bool:
        return self.leader is None or self.leader.leading

    @property
    def term(self) -> int:
        return self.leader.term if self.leader is not None else 0

    def parser_state(self) -> status.ParserState | None:
        follower = self.parser
        if follower is None or follower.in_use is None:
            return None
        refused = follower.refused
        return status.ParserState(
            label=follower.in_use.label, digest=follower.in_use.digest, origin=follower.origin,
            source=follower.source.name,
            refused=None if refused is None else status.ParserRefusal(refused.reason, refused.message,
                                                                      refused.revision))

    def wake_all(self) -> None:
        """Every daemon re-checks at once (the parser's state changed: each resource's condition with it)."""
        for state in self.daemons.values():
            state.wake.set()


@dataclass
class Retry:
    failures: int  # transient failures in a row
    due: float  # wall-clock time of the next try


@dataclass
class ResourceState:
    """Per-resource memory of the operator process (kept in kopf's per-object memo)."""

    wake: asyncio.Event = field(default_factory=asyncio.Event)
    uid: str = ""  # of the object, for its Events
    term: int = -1  # the leadership term the rest belongs to; another term: read everything again
    status: api.PackageStatsStatus | None = None  # as last applied: newer than the watched body
    last_full: float | None = None  # wall-clock time of the last scrape of all packages
    full_retry: Retry | None = None  # when the whole scrape failed (discovery, an unexpected error)
    write_retry: Retry | None = None  # when the apiserver did not take the status
    retries: dict[Key, Retry] = field(default_factory=dict)  # packages that failed transiently
    scrapes: dict[Key, int] = field(default_factory=dict)  # per package, for settings.versions_every
    unwritten: api.PackageStatsStatus | None = None  # a status the apiserver did not take yet
    written_at: float = 0.0  # wall-clock time of the last status applied by this process

    def reset(self, term: int) -> None:
        self.term, self.status, self.last_full = term, None, None
        self.full_retry = self.write_retry = self.unwritten = None
        self.retries.clear()


def _state(memo: kopf.Memo) -> ResourceState:
    state = memo.get("state")
    if not isinstance(state, ResourceState):
        state = ResourceState()
        memo["state"] = state
    return state


def _runtime(memo: kopf.Memo) -> Runtime:
    runtime = memo["runtime"]
    assert isinstance(runtime, Runtime)
    return runtime


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
    # Every call has a deadline: a half-open connection must not park a watch or a write for ever.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 300 + 30
    settings.watching.connect_timeout = config.kube_timeout_seconds
    settings.watching.reconnect_backoff = 1.0
    settings.networking.request_timeout = max(60.0, config.kube_timeout_seconds)
    settings.networking.connect_timeout = config.kube_timeout_seconds
    github = GitHubClient(config)
    sandbox = Sandbox.from_settings(config)
    client = kube.new_api_client()
    observations = Observations()
    metrics = Metrics(observations, config.max_versions_in_status)
    metrics.cooldown.set_function(github.cooldown_remaining)
    metrics.watch_pacing(github.pacing_figures)

    def observe_parse(kind: str, seconds: float, fuel: int) -> None:
        metrics.parser_duration.labels(kind).observe(seconds)
        metrics.parser_fuel.labels(kind).observe(fuel)

    runtime = Runtime(config=config, github=github, scraper=Scraper(config, github, sandbox, observe_parse),
                      writer=kube.StatusWriter(client, timeout=config.kube_timeout_seconds), api_client=client,
                      observations=observations, metrics=metrics)
    if config.lease_name:
        identity = default_identity(config.pod_name)
        leader = Leader(client, name=config.lease_name, namespace=default_namespace(config.lease_namespace),
                        identity=identity, duration=config.lease_duration_seconds,
                        timeout=config.kube_timeout_seconds,
                        on_change=lambda leading: metrics.set_leader(identity, leading))
        metrics.set_leader(identity, False)
        runtime.leader = leader
        runtime.tasks.append(asyncio.create_task(leader.run(), name="leader-election"))
    # The parser module the settings name, checked before the first scrape, then followed (reloaded
    # in place when its source changes).
    runtime.parser, parser_task = await parser_source.start(config.parser_source, config.parser_sha256,
                                                            config.parser_check_seconds, sandbox, client, metrics,
                                                            on_change=runtime.wake_all)
    if parser_task is not None:
        runtime.tasks.append(parser_task)
    runtime.events = kube.EventRecorder(client, instance=default_identity(config.pod_name),
                                        timeout=config.kube_timeout_seconds)
    if config.history_url is not None:
        try:
            runtime.history = HistoryDB(config.history_url.get_secret_value())
        except HistoryError as e:
            raise kopf.PermanentError(f"PACKAGESTATS_HISTORY_URL: {e.message}") from None
        # Connected and migrated at the first write: a database that is down must not stop scraping.
        log.info("history database: %s", runtime.history.display)
    memo["runtime"] = runtime
    if config.metrics_port:
        runtime.web_runner = await web.start(metrics, observations, config.metrics_port)


@kopf.on.cleanup(registry=registry)
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    runtime = memo.get("runtime")
    if not isinstance(runtime, Runtime):
        return
    for task in runtime.tasks:  # the election releases the Lease as it stops
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*runtime.tasks, return_exceptions=True)
    await runtime.github.aclose()
    if runtime.history is not None:
        await runtime.history.aclose()
    runtime.api_client.close()
    if runtime.web_runner is not None:
        await runtime.web_runner.cleanup()


@kopf.on.event(*RESOURCE, registry=registry)
async def wake(memo: kopf.Memo, name: str, namespace: str | None, annotations: kopf.Annotations,
               **_: Any) -> None:
    # Every change of the object lets the daemon re-check what is due; it does nothing when nothing is.
    _state(memo).wake.set()
    _runtime(memo).observations.set_badge((namespace or "", name),
                                          annotations.get(api.BADGE_ANNOTATION) == "true")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


async def _first(*waits: Any) -> None:
    """Until the first of the awaitables is done; the others are cancelled."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


@kopf.daemon(*RESOURCE, registry=registry, cancellation_timeout=5.0, initial_delay=0)
async def scrape_loop(body: kopf.Body, meta: kopf.Meta, name: str, namespace: str | None, memo: kopf.Memo,
                      stopped: kopf.DaemonStopped, **_: Any) -> None:
    namespace = namespace or "default"  # the resource is namespaced: kopf always gives one
    state = _state(memo)
    state.uid = str(meta.get("uid") or "")
    rt = _runtime(memo)
    key = (namespace, name)
    owner = str((body.get("spec") or {}).get("owner", ""))
    rt.observations.update(key, owner, api.PackageStatsStatus.model_validate(body.get("status") or {}))
    rt.observations.set_badge(key, (meta.get("annotations") or {}).get(api.BADGE_ANNOTATION) == "true")
    rt.daemons[key] = state
    try:
        while not stopped:
            if rt.leader is not None and not rt.leader.leading:
                await _first(rt.leader.wait_leading(), stopped.wait())
                continue
            state.wake.clear()
            timeout = await _step(body, meta, name, namespace, state, rt)
            waits: list[Any] = [asyncio.wait_for(state.wake.wait(), timeout=timeout)]
            if rt.leader is not None:
                waits.append(rt.leader.wait_lost())
            with contextlib.suppress(TimeoutError):
                await _first(*waits)
    finally:
        # Deleted (or the operator stops): its series and badge go with it.
        if rt.daemons.get(key) is state:
            del rt.daemons[key]
        rt.observations.forget(key)
        rt.metrics.forget(key)


def _versions_due(state: ResourceState, every: int) -> Any:
    """Whether a package's versions list is due on this scrape: every Nth, with a stable per-package
    phase so that the reads spread over the scrapes (and a restart does not read them all at once)."""
    def due(key: Key) -> bool:
        count = state.scrapes.get(key)
        if count is None:
            count = int(pacing.schedule_offset("/".join(key), every, 1.0))
        state.scrapes[key] = count + 1
        return count % every == every - 1
    return due


async def _step(body: kopf.Body, meta: kopf.Meta, name: str, namespace: str, state: ResourceState,
                rt: Runtime) -> float | None:
    """Scrape what is due; return how long to sleep until the next check (None: until woken)."""
    if state.term != rt.term:
        state.reset(rt.term)  # (re)gained the lead: what another replica wrote since is in the body
    generation = int(meta.get("generation") or 0)
    if state.status is None:
        state.status = api.PackageStatsStatus.model_validate(body.get("status") or {})
    try:
        spec = api.PackageStatsSpec.model_validate(dict(body.get("spec") or {}))
    except pydantic.ValidationError as e:
        # The apiserver's schema should make this unreachable; say so instead of crashing the daemon.
        log.error("%s/%s: invalid spec: %s", namespace, name, e)
        return None
    if spec.suspend:
        # Observe the new generation anyway: kstatus (a Flux Kustomization's `wait`) waits for it.
        suspended = status.suspended(state.status, generation, _now()) \
            if state.status.observed_generation != generation else state.status
        suspended = status.with_parser(suspended, state.status, rt.parser_state(), _now())
        if suspended != state.status:
            await _apply(rt, state, namespace, name, suspended, spec.interval_seconds(),
                         spec.retry_interval_seconds())
        return None
    now = time.time()
    interval, retry_interval = spec.interval_seconds(), spec.retry_interval_seconds()

    if state.unwritten is not None:  # the apiserver was away: catch up before anything else
        if state.write_retry is not None and state.write_retry.due > now:
            return state.write_retry.due - now
        if not await _apply(rt, state, namespace, name, state.unwritten, interval, retry_interval):
            return _until(state.write_retry, time.time())
    prev = state.status

    requested = (meta.get("annotations") or {}).get(api.REQUESTED_AT_ANNOTATION)
    requested_new = requested is not None and requested != prev.last_handled_requested_at
    # A new value accepts the totals held back as suspect (drift.py): scrape now, and write them.
    accept = (meta.get("annotations") or {}).get(api.ACCEPT_DOWNLOADS_ANNOTATION)
    accept_new = accept is not None and accept != prev.last_handled_accept_downloads
    requested_new = requested_new or accept_new
    generation_new = prev.observed_generation != generation
    if state.last_full is None and prev.last_scrape_time is not None and not generation_new:
        # After a restart or a takeover: the last scrape recorded in status counts.
        state.last_full = prev.last_scrape_time.timestamp()
    full_at = now if state.last_full is None else pacing.next_scrape(state.last_full, interval, _anchor(meta, name,
                                                                                                       interval, rt))
    if state.full_retry is not None:
        full_at = min(full_at, state.full_retry.due)
    full = requested_new or generation_new or now >= full_at
    retry_due = {k for k, r in state.retries.items() if r.due <= now}
    if not full and not retry_due:
        # Nothing to scrape, but the parser's condition reaches the resource now, not at its next scrape.
        parsed = status.with_parser(prev, prev, rt.parser_state(), _now())
        if parsed != prev:
            await _apply(rt, state, namespace, name, parsed, interval, retry_interval)
        return min([full_at, *(r.due for r in state.retries.values())]) - now

    try:
        if generation_new:
            reconciling = status.reconciling(prev, generation, _now())
            await rt.writer.apply(namespace, name, reconciling)
            prev = state.status = reconciling
        started = time.monotonic()
        report = await rt.scraper.scrape(
            spec, prev, generation=generation, requested_at=requested if requested_new and requested else None,
            only=None if full else retry_due, versions_due=_versions_due(state, rt.config.versions_every),
            accepted_at=accept if accept_new else None)
        if full:
            state.last_full = now
        new_status = _schedule(state, report, None if full else retry_due, rt, interval, retry_interval)
        new_status = status.with_parser(new_status, prev, rt.parser_state(), _now())
        if not rt.leading:
            return None  # lost the lead during the scrape: the new leader writes
        new_status, history_events = await _record_history(rt, namespace, name, spec.owner, report.result,
                                                           new_status, prev)
        if new_status != prev and (_sans_times(new_status) != _sans_times(prev)
                                   or time.time() - state.written_at >= max(HEARTBEAT_SECONDS, 6 * interval)):
            await _apply(rt, state, namespace, name, new_status, interval, retry_interval)
        else:
            # Nothing but the scrape times moved: no write (status is a summary of what changed; the
            # metrics still see every scrape). A write at least every HEARTBEAT_SECONDS keeps it fresh.
            state.status = new_status
        await _post(rt, body, [*report.events, *history_events])
        rt.observations.update((namespace, name), spec.owner, new_status)
        rt.metrics.record_scrape((namespace, name), spec.owner, new_status, time.monotonic() - started)
    except asyncio.CancelledError:
        raise
    except Exception as e:  # the daemon must live on: try again on the retry schedule
        log.exception("%s/%s: scrape failed", namespace, name)
        await _post(rt, body, [status.Event("Warning", "ScrapeError", f"scrape failed: {type(e).__name__}: {e}")])
        state.status = None  # re-read from the watched object next time
        state.full_retry = _next_retry(state.full_retry, retry_interval, interval, 0.0)
    return 0.0  # plan again from the new state


HEARTBEAT_SECONDS = 6 * 3600.0


def _sans_times(st: api.PackageStatsStatus) -> api.PackageStatsStatus:
    return st.model_copy(update={"last_scrape_time": None, "packages": [
        p.model_copy(update={"last_scrape_time": None}) for p in st.packages]})


def _anchor(meta: kopf.Meta, name: str, interval: float, rt: Runtime) -> float:
    """The origin of the resource's schedule grid: its creation plus its stable offset."""
    created = str(meta.get("creationTimestamp") or "")
    origin = datetime.datetime.fromisoformat(created).timestamp() if created else 0.0
    return origin + pacing.schedule_offset(str(meta.get("uid") or name), interval, rt.config.schedule_spread)


def _until(retry: Retry | None, now: float) -> float:
    return max(0.0, retry.due - now) if retry is not None else 1.0


def _next_retry(retry: Retry | None, retry_interval: float, interval: float, not_before: float) -> Retry:
    failures = (retry.failures if retry else 0) + 1
    return Retry(failures, time.time() + pacing.retry_delay(failures, retry_interval, interval, not_before))


def _schedule(state: ResourceState, report: Report, tried: set[Key] | None, rt: Runtime, interval: float,
              retry_interval: float) -> api.PackageStatsStatus:
    """Plan the retries after a scrape of `tried` (None: all); the new status, its Ready message saying
    when the next try is."""
    cooldown = rt.github.cooldown_remaining()
    if report.discovery_error is not None and not report.discovery_error.permanent:
        state.full_retry = _next_retry(state.full_retry, retry_interval, interval, cooldown)
    else:
        state.full_retry = None
    for key, outcome in report.outcomes.items():
        if tried is not None and key not in tried:
            continue  # kept as it was: its schedule stands
        if isinstance(outcome, status.Failure) and not outcome.permanent:
            state.retries[key] = _next_retry(state.retries.get(key), retry_interval, interval, cooldown)
        else:  # a success, or a failure only the interval or a spec change can help
            state.retries.pop(key, None)
    for key in list(state.retries):
        if key not in report.outcomes:
            del state.retries[key]  # no longer a target
    nexts = [r.due for r in state.retries.values()]
    if state.full_retry is not None:
        nexts.append(state.full_retry.due)
    new = report.status
    ready = new.condition("Ready")
    if nexts and ready is not None and ready.status != "True":
        when = datetime.datetime.fromtimestamp(min(nexts), datetime.UTC).replace(microsecond=0)
        note = f" Next try at {when.isoformat().replace('+00:00', 'Z')}."
        message = ready.message[: status.MAX_MESSAGE - len(note)] + note
        new = new.model_copy(update={"conditions": [
            c.model_copy(update={"message": message}) if c.type == "Ready" else c for c in new.conditions]})
    return new


async def _apply(rt: Runtime, state: ResourceState, namespace: str, name: str, new: api.PackageStatsStatus,
                 interval: float, retry_interval: float) -> bool:
    """Apply the status; when the apiserver cannot take it now, keep it and try again on the retry
    schedule (nothing scraped is lost, nothing is fetched again for it)."""
    try:
        await rt.writer.apply(namespace, name, new)
    except (kubernetes.client.exceptions.ApiException, urllib3.exceptions.HTTPError, OSError) as e:
        log.warning("%s/%s: the status could not be written (%s: %s); keeping it for the next try",
                    namespace, name, type(e).__name__, e)
        await _write_failed(rt, state, namespace, name, new, e)
        state.unwritten = new
        state.write_retry = _next_retry(state.write_retry, retry_interval, interval, 0.0)
        return False
    state.status, state.unwritten, state.write_retry = new, None, None
    state.written_at = time.time()
    return True


async def _post(rt: Runtime, body: kopf.Body, events: list[status.Event]) -> None:
    if rt.events is None:
        kube.post(body, events)
        return
    meta = body.get("metadata") or {}
    ref = kube.ObjectRef(str(meta.get("namespace") or "default"), str(meta.get("name")), str(meta.get("uid") or ""))
    await rt.events.post(ref, events)


async def _record_history(rt: Runtime, namespace: str, name: str, owner: str, result: status.Result,
                          new: api.PackageStatsStatus, prev: api.PackageStatsStatus | None,
                          ) -> tuple[api.PackageStatsStatus, list[status.Event]]:
    """Write the scrape's good results to the history database; the History condition says how it went.
    A failure never stops the status write: the next good write catches up (the 30-day upsert)."""
    if rt.history is None or not result.scraped:
        return new, []
    started = time.monotonic()
    try:
        await rt.history.record(namespace, name, owner, result.scraped, new.total_downloads,
                                new.last_scrape_time or _now())
    except HistoryError as e:
        log.warning("%s/%s: history database %s: %s: %s", namespace, name, rt.history.display, e.reason, e.message)
        rt.metrics.count_failure(rt.metrics.history_write_failures, (namespace, name), e.reason)
        message = f"The history database could not be written ({e.message}); the next good write catches up"
        return (status.with_history(new, prev, False, e.reason, message, _now()),
                [status.Event("Warning", "HistoryWriteFailed", message)])
    rt.metrics.history_write_duration.observe(time.monotonic() - started)
    count = len(result.scraped)
    return status.with_history(new, prev, True, "Recorded",
                               f"The last scrape is in the history database ({count} package"
                               f"{'s' if count != 1 else ''})", _now()), []


async def _write_failed(rt: Runtime, state: ResourceState, namespace: str, name: str,
                        refused: api.PackageStatsStatus, error: Exception) -> None:
    """The apiserver refused the status: say so in Ready (a minimal, conditions-only apply that keeps
    the last good values), a Warning Event and a metric."""
    failure = kube.write_failure(error)
    rt.metrics.count_failure(rt.metrics.status_write_failures, (namespace, name), failure.reason)
    minimal = status.write_failed(state.status, refused.observed_generation or 0, failure.message, _now())
    try:
        await rt.writer.apply_minimal(namespace, name, minimal)
    except (kubernetes.client.exceptions.ApiException, urllib3.exceptions.HTTPError, OSError) as e:
        log.warning("%s/%s: the minimal status could not be written either: %s", namespace, name,
                    kube.write_failure(e).message)
    ready = minimal.condition("Ready")
    if rt.events is not None and ready is not None:
        await rt.events.post(kube.ObjectRef(namespace, name, state.uid),
                             [status.Event("Warning", "StatusWriteFailed", ready.message)])
