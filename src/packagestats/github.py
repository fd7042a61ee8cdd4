"""GitHub's package web pages: their URLs, and one careful HTTP client to fetch them.

GitHub has no API for download counts, so the operator reads the public HTML pages. This module knows
the URL forms of those pages and fetches them politely: bounded concurrency, bounded size, retries with
backoff on transient errors, a request budget shared by the whole process, and a per-host circuit
breaker (pacing.py): when GitHub says "slow down" (429) or fails, the operator stops asking for a
cooldown instead of retrying into the limit.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal, Self, get_args
from urllib.parse import quote, urljoin, urlsplit

import httpx

from packagestats.pacing import Breaker, BreakerFigures, PacingFigures, TokenBucket
from packagestats.settings import Settings

logger = logging.getLogger(__name__)

PackageType = Literal["container", "npm", "maven", "nuget", "rubygems"]
OwnerKind = Literal["orgs", "users"]
FetchReason = Literal["not_found", "http_status", "timeout", "connection", "too_large", "redirect", "rate_limited"]

# GitHub's URL path segment for each package type is the type's own name.
PACKAGE_TYPES: Final[tuple[PackageType, ...]] = get_args(PackageType)
OWNER_KINDS: Final[tuple[OwnerKind, ...]] = get_args(OwnerKind)

MAX_REDIRECTS: Final = 5
# One backoff sleep never exceeds this (unless backoff_seconds itself is larger): a reconcile that
# sleeps for minutes holds a worker; the next reconcile will try again anyway.
MAX_BACKOFF_SECONDS: Final = 30.0
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})


# --- URLs -------------------------------------------------------------------------------------------


def _segment(value: str, what: str) -> str:
    """One path segment, every reserved character quoted: a `/` in a package name becomes `%2F`."""
    if not value:
        raise ValueError(f"{what} must not be empty")
    return quote(value, safe="")


def _check_type(pkg_type: str) -> str:
    if pkg_type not in PACKAGE_TYPES:
        raise ValueError(f"unknown package type {pkg_type!r}; expected one of {', '.join(PACKAGE_TYPES)}")
    return pkg_type


def _check_kind(kind: str) -> str:
    if kind not in OWNER_KINDS:
        raise ValueError(f"owner kind must be 'orgs' or 'users', not {kind!r}")
    return kind


def _check_page(page: int) -> int:
    if page < 1:
        raise ValueError(f"page numbers start at 1, got {page}")
    return page


def _base(base: str) -> str:
    return base.rstrip("/")


def repository_name(owner: str, repository: str) -> str:
    """The repository's own name, given `repo` or `owner/repo` (whose owner must be `owner`).

    Logins are case-insensitive on GitHub, so the owner comparison is too.
    """
    parts = repository.split("/")
    if len(parts) == 1:
        repo = parts[0]
    elif len(parts) == 2:
        repo_owner, repo = parts
        if repo_owner.casefold() != owner.casefold():
            raise ValueError(f"repository {repository!r} does not belong to owner {owner!r}")
    else:
        raise ValueError(f"repository must be 'repo' or 'owner/repo', not {repository!r}")
    if not repo:
        raise ValueError(f"repository name is empty in {repository!r}")
    return repo


def repo_package_url(base: str, owner: str, repository: str, name: str, pkg_type: str = "container") -> str:
    """`{base}/{owner}/{repo}/pkgs/{type}/{name}`: the page of a package linked to a repository."""
    repo = repository_name(owner, repository)
    return (
        f"{_base(base)}/{_segment(owner, 'owner')}/{_segment(repo, 'repository')}"
        f"/pkgs/{_check_type(pkg_type)}/{_segment(name, 'package name')}"
    )


def owner_package_url(base: str, kind: str, owner: str, name: str, pkg_type: str = "container") -> str:
    """`{base}/{orgs|users}/{owner}/packages/{type}/package/{name}` (GitHub redirects it when linked)."""
    return (
        f"{_base(base)}/{_check_kind(kind)}/{_segment(owner, 'owner')}"
        f"/packages/{_check_type(pkg_type)}/package/{_segment(name, 'package name')}"
    )


def package_url(
    base: str,
    owner: str,
    name: str,
    pkg_type: str = "container",
    repository: str | None = None,
    kind: str = "orgs",
) -> str:
    """The repository-linked URL when `repository` is given, else the owner-scoped one of `kind`."""
    if repository:
        return repo_package_url(base, owner, repository, name, pkg_type)
    return owner_package_url(base, kind, owner, name, pkg_type)


def versions_url(package_page_url: str, page: int) -> str:
    """Page N of the tagged-versions list of the package whose page is `package_page_url`.

    For a repository-linked page this is `{url}/versions?...`. For an owner-scoped page GitHub drops
    the `package/` segment (`/orgs/O/packages/TYPE/NAME/versions`), as its own "all versions" links do.
    """
    _check_page(page)
    url = package_page_url.rstrip("/")
    scheme, netloc, path, _, _ = urlsplit(url)
    parts = path.split("/")
    # ['', 'orgs', OWNER, 'packages', TYPE, 'package', NAME]
    if len(parts) == 7 and parts[1] in OWNER_KINDS and parts[3] == "packages" and parts[5] == "package":
        path = "/".join([*parts[:5], parts[6]])
        url = f"{scheme}://{netloc}{path}"
    return f"{url}/versions?filters%5Bversion_type%5D=tagged&page={page}"


def listing_url(base: str, kind: str, owner: str, page: int) -> str:
    """Page N of an owner's public packages: the org listing, or the user profile's packages tab."""
    _check_page(page)
    owner_seg = _segment(owner, "owner")
    if _check_kind(kind) == "orgs":
        return f"{_base(base)}/orgs/{owner_seg}/packages?visibility=public&page={page}"
    return f"{_base(base)}/{owner_seg}?tab=packages&visibility=public&page={page}"


# --- Errors and counters ----------------------------------------------------------------------------


class FetchError(Exception):
    """A page could not be fetched. `reason` is stable (for conditions and metrics); the rest is detail.

    The URL holds no secret and may be shown to users; the token never appears here.
    """

    def __init__(
        self,
        reason: FetchReason,
        url: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        message: str = "",
    ) -> None:
        self.reason: FetchReason = reason
        self.url = url
        self.status = status
        self.retry_after = retry_after
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        detail = self.message or self.reason
        if self.status is not None:
            detail = f"{detail} (HTTP {self.status})"
        if self.retry_after is not None:
            detail = f"{detail}, retry in {self.retry_after:.0f}s"
        return f"{self.reason}: {detail}: {self.url}"

    def __repr__(self) -> str:
        return f"FetchError({self.reason!r}, {self.url!r}, status={self.status!r})"


@dataclass
class FetchStats:
    """Counters of one client, for metrics and benchmarks."""

    requests: int = 0  # HTTP requests sent; every retry and redirect hop counts
    by_status: dict[int, int] = field(default_factory=dict)  # responses by status code
    # Failed fetches by reason; the 404 of an org's form before a user's page counts too.
    errors: dict[str, int] = field(default_factory=dict)
    retries: int = 0  # attempts repeated after a 5xx, timeout or connection error
    fast_failed: int = 0  # requests refused locally during a host's cooldown (never sent)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP-date); None if unusable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP-date is always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, (parts.hostname or "").lower(), port


@dataclass
class _Answer:
    status: int
    headers: httpx.Headers
    body: bytes  # empty unless 2xx


# --- The client -------------------------------------------------------------------------------------


class GitHubClient:
    """Fetches GitHub's package pages; one per operator process, shared by all reconciles.

    Use `async with GitHubClient(settings) as gh:` or call `aclose()`. Not thread-safe: use it from
    one event loop.
    """

    def __init__(self, settings: Settings) -> None:
        self._base = _base(settings.github_url)
        self._origin = _origin(self._base)
        self._retries = settings.retries
        self._backoff = settings.backoff_seconds
        self._timeout = settings.request_timeout_seconds
        self._max_bytes = settings.max_response_bytes
        self._max_cooldown = settings.max_cooldown_seconds
        self._has_token = settings.github_token is not None
        headers = {"User-Agent": settings.user_agent, "Accept": "text/html"}
        if settings.github_token is not None:
            headers["Authorization"] = f"Bearer {settings.github_token.get_secret_value()}"
        self._http = httpx.AsyncClient(
            headers=headers,
            # Redirects are followed by hand, to keep them on GitHub's host (the token goes along).
            follow_redirects=False,
            # The per-phase timeouts of httpx; the whole attempt is also bounded (see _attempt).
            timeout=httpx.Timeout(self._timeout),
            limits=httpx.Limits(
                max_connections=settings.max_concurrency,
                max_keepalive_connections=settings.max_concurrency,
            ),
        )
        self._slots = asyncio.Semaphore(settings.max_concurrency)
        self._per_host = settings.max_concurrency_per_host
        self._host_slots: dict[tuple[str, str, int], asyncio.Semaphore] = {}
        self._breakers: dict[tuple[str, str, int], Breaker] = {}
        self._breaker_base = settings.breaker_cooldown_seconds
        self.budget = TokenBucket(settings.requests_per_minute)
        self._owner_kinds: dict[str, OwnerKind] = {}  # owner.casefold() -> the kind that answered
        self._rng = random.Random()
        self.stats = FetchStats()

    def __repr__(self) -> str:
        token = "set" if self._has_token else "none"
        return f"GitHubClient(github_url={self._base!r}, token={token})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def base_url(self) -> str:
        return self._base

    def owner_kind(self, owner: str) -> OwnerKind | None:
        """`orgs` or `users` once a fetch found out which one `owner` is; None before."""
        return self._owner_kinds.get(owner.casefold())

    def cooldown_remaining(self, url: str | None = None) -> float:
        """Seconds left of the cooldown of the host of `url` (default: GitHub's); 0 when none."""
        breaker = self._breakers.get(_origin(url or self._base))
        return breaker.remaining() if breaker is not None else 0.0

    def pacing_figures(self) -> PacingFigures:
        return PacingFigures(
            budget_per_minute=self.budget.rate * 60, tokens=self.budget.available(), granted=self.budget.granted,
            waits=self.budget.waits, waited_seconds=self.budget.waited_seconds,
            breakers=[BreakerFigures(f"{scheme}://{host}:{port}", b.state, b.remaining(), b.opened)
                      for (scheme, host, port), b in self._breakers.items()],
        )

    def _breaker(self, url: str) -> Breaker:
        origin = _origin(url)
        breaker = self._breakers.get(origin)
        if breaker is None:
            breaker = self._breakers[origin] = Breaker(base=self._breaker_base, max=self._max_cooldown)
        return breaker

    # -- high level --

    async def fetch_package_page(
        self, owner: str, pkg_name: str, pkg_type: str = "container", repository: str | None = None
    ) -> tuple[str, bytes]:
        """The package page and its final URL (after redirects, so the repository-linked one if any)."""
        if repository:
            return await self._get(repo_package_url(self._base, owner, repository, pkg_name, pkg_type))
        return await self._per_owner_kind(
            owner, lambda kind: owner_package_url(self._base, kind, owner, pkg_name, pkg_type)
        )

    async def fetch_versions_page(self, package_page_url: str, page: int) -> bytes:
        """Page N of the tagged-versions list; `package_page_url` as returned by fetch_package_page."""
        _, body = await self._get(versions_url(package_page_url, page))
        return body

    async def fetch_listing_page(self, owner: str, page: int) -> tuple[str, bytes]:
        """Page N of the owner's public packages, and the URL it came from."""
        return await self._per_owner_kind(owner, lambda kind: listing_url(self._base, kind, owner, page))

    async def fetch(self, url: str) -> bytes:
        """GET one page of GitHub. Raises FetchError; ValueError for a URL outside github_url's host."""
        _, body = await self._get(url)
        return body

    # -- internals --

    async def _per_owner_kind(self, owner: str, make_url: Callable[[OwnerKind], str]) -> tuple[str, bytes]:
        """Try the org form, then the user form on 404; remember the kind that answered."""
        known = self._owner_kinds.get(owner.casefold())
        kinds: tuple[OwnerKind, ...] = (known,) if known else OWNER_KINDS
        for index, kind in enumerate(kinds):
            try:
                result = await self._get(make_url(kind))
            except FetchError as exc:
                if exc.reason == "not_found" and index + 1 < len(kinds):
                    continue
                raise
            self._owner_kinds[owner.casefold()] = kind
            return result
        raise AssertionError("unreachable: the last kind returns or raises")

    async def _get(self, url: str) -> tuple[str, bytes]:
        if _origin(url) != self._origin:
            raise ValueError(f"refusing to fetch {url!r}: not on {self._base}")
        try:
            return await self._follow(url)
        except FetchError as exc:
            self.stats.errors[exc.reason] = self.stats.errors.get(exc.reason, 0) + 1
            raise

    async def _follow(self, url: str) -> tuple[str, bytes]:
        current = url
        for _hop in range(MAX_REDIRECTS + 1):
            answer = await self._with_retries(current)
            if answer.status not in _REDIRECT_STATUSES:
                return current, answer.body
            location = answer.headers.get("location")
            if not location:
                raise FetchError("http_status", current, status=answer.status, message="redirect without Location")
            target = urljoin(current, location)
            if _origin(target) != self._origin:
                host = urlsplit(target).netloc
                raise FetchError(
                    "redirect",
                    current,
                    status=answer.status,
                    message=f"redirect to another host ({host}) refused",
                )
            current = target
        raise FetchError("redirect", url, message=f"more than {MAX_REDIRECTS} redirects")

    async def _with_retries(self, url: str) -> _Answer:
        """One URL, retried on 5xx, timeouts and connection errors; other answers are final. The host's
        breaker hears the outcome of the request as a whole: an outage once the retries are spent (or at
        once for a 429), a success for any answer that shows the host is up."""
        breaker = self._breaker(url)
        while not await breaker.admit():
            self._check_cooldown(url)  # raises while it is open
        started = time.monotonic()
        try:
            return await self._retrying(url, breaker, started)
        finally:
            breaker.neutral()  # cancelled or refused locally: let another request probe

    async def _retrying(self, url: str, breaker: Breaker, started: float) -> _Answer:
        attempt = 0
        while True:
            self._check_cooldown(url)
            try:
                answer = await self._attempt(url)
            except FetchError as exc:
                if exc.reason in ("timeout", "connection") and attempt < self._retries:
                    attempt = await self._backoff_sleep(attempt, url, exc.reason)
                    continue
                if exc.reason in ("timeout", "connection"):
                    exc.retry_after = self._outage(breaker, started, url, exc.reason)
                raise
            status = answer.status
            if status == 429 or (status == 403 and "retry-after" in answer.headers):
                seconds = self._outage(breaker, started, url, f"HTTP {status}",
                                       parse_retry_after(answer.headers.get("retry-after")))
                raise FetchError("rate_limited", url, status=status, retry_after=seconds,
                                 message="rate limited by GitHub")
            if status >= 500:
                if attempt < self._retries:
                    attempt = await self._backoff_sleep(attempt, url, f"HTTP {status}")
                    continue
                seconds = self._outage(breaker, started, url, f"HTTP {status}")
                raise FetchError("http_status", url, status=status, retry_after=seconds,
                                 message="GitHub failed")
            breaker.success()
            if 200 <= status < 300 or status in _REDIRECT_STATUSES:
                return answer
            if status == 404:
                raise FetchError("not_found", url, status=status, message="no such page")
            raise FetchError("http_status", url, status=status, message="unexpected answer")

    async def _backoff_sleep(self, attempt: int, url: str, why: str) -> int:
        delay = min(self._backoff * 2**attempt, max(MAX_BACKOFF_SECONDS, self._backoff))
        # A little jitter, so that reconciles failing together do not retry in lockstep.
        delay *= 1 + self._rng.uniform(0, 0.1)
        logger.info("retrying %s in %.2fs after %s (retry %d of %d)", url, delay, why, attempt + 1, self._retries)
        await asyncio.sleep(delay)
        self.stats.retries += 1
        return attempt + 1

    def _check_cooldown(self, url: str) -> None:
        remaining = self.cooldown_remaining(url)
        if remaining > 0:
            self.stats.fast_failed += 1
            raise FetchError(
                "rate_limited", url, retry_after=remaining, message="GitHub's host is cooling down"
            )

    def _outage(self, breaker: Breaker, started: float, url: str, why: str,
                retry_after: float | None = None) -> float:
        before = breaker.opened
        seconds = breaker.failure(started, retry_after)
        if breaker.opened != before:
            logger.warning("%s from %s: no requests to its host for %.0fs", why, url, seconds)
        return seconds

    def _host_semaphore(self, origin: tuple[str, str, int]) -> asyncio.Semaphore:
        sem = self._host_slots.get(origin)
        if sem is None:
            sem = self._host_slots[origin] = asyncio.Semaphore(self._per_host)
        return sem

    async def _attempt(self, url: str) -> _Answer:
        """One HTTP request. The host slot is taken before the global one, so that requests queued
        for a busy host do not hold global slots that other hosts could use."""
        origin = _origin(url)
        async with self._host_semaphore(origin), self._slots:
            # The budget is taken last, right before sending, so that its rate is the rate on the wire.
            await self.budget.acquire()
            # A cooldown may have started while this request waited. (The waits are not part of the
            # timeout: it measures GitHub, not our own queue.)
            self._check_cooldown(url)
            self.stats.requests += 1
            try:
                # httpx's timeouts are per read/write; a server dripping bytes could hold a request for
                # ever, so the attempt as a whole is bounded too.
                async with asyncio.timeout(self._timeout), self._http.stream("GET", url) as response:
                    status = response.status_code
                    self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1
                    body = await self._read_capped(response, url) if 200 <= status < 300 else b""
                    return _Answer(status, response.headers, body)
            except (TimeoutError, httpx.TimeoutException) as exc:
                raise FetchError("timeout", url, message=f"no complete answer within {self._timeout:g}s") from exc
            except httpx.RequestError as exc:
                # For example a body cut short (RemoteProtocolError) or a refused connection.
                raise FetchError("connection", url, message=f"{type(exc).__name__}: {exc}") from exc

    async def _read_capped(self, response: httpx.Response, url: str) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise FetchError(
                "too_large",
                url,
                status=response.status_code,
                message=f"page larger than {self._max_bytes} bytes",
            )
        # The cap counts decoded bytes, so a small compressed body cannot expand past it either.
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > self._max_bytes:
                raise FetchError(
                    "too_large",
                    url,
                    status=response.status_code,
                    message=f"page larger than {self._max_bytes} bytes",
                )
        return bytes(body)
