"""A stand-in for github.com's package pages, for unit and integration tests.

A real HTTP/1.1 server on 127.0.0.1 (a free port) in a background thread. It answers GitHub's URL forms
(repository-linked and owner-scoped package pages, tagged-versions lists, org and user listings) from a
registry that tests program and may change at any time, and it misbehaves on demand (`add_fault`).

    with FakeGitHub() as gh:
        gh.add_package("acme", "tool", repository="tool", total=1234, versions=make_versions(3))
        settings = Settings(github_url=gh.base_url)
        ...
        assert gh.count("/acme/tool/pkgs/container/tool") == 1

The markup is modelled on the real captures in tests/data/ghcr-pages (2026 layout: `tmp-` classes,
"Last published" and "Issues" before "Total downloads", `<h3 title=EXACT>ABBREVIATED</h3>`, the 30-bar
sparkline). Per-version rows, versions lists and listings follow GitHub's known structure (`li.Box-row`,
`a.Label`, `span.sr-only` "Version downloads", `#org-packages` with `a.text-bold`); no 2026 capture of
those exists, so they are as close as known, not verbatim. A user's packages tab reuses the org listing's
item markup inside `#user-packages` (unconfirmed on GitHub).
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest

FaultKind = Literal["status", "slow", "truncate", "huge", "no_total", "redirect"]
OwnerKind = Literal["orgs", "users"]

_REPO_ROOT: Final = Path(__file__).resolve().parents[2]
# The real captured pages, kept in the repository.
CAPTURED_DIRS: Final[tuple[Path, ...]] = (
    _REPO_ROOT / "tests" / "data" / "ghcr-pages",
)


@dataclass(frozen=True)
class CapturedPage:
    owner: str
    name: str
    repository: str
    total: int


# The real pages (see their README): who they belong to and the exact total they show.
CAPTURED: Final[dict[str, CapturedPage]] = {
    "icicle-insights-2026-08.html": CapturedPage("ICICLE-ai", "insights", "icicle-insights", 248),
    "icicle-insights-2026-09.html": CapturedPage("ICICLE-ai", "insights", "icicle-insights", 302),
    "headscale-2026-07.html": CapturedPage("juanfont", "headscale", "headscale", 1418338),
}


def captured_page(filename: str) -> bytes:
    """The bytes of one real captured page (see CAPTURED)."""
    for directory in CAPTURED_DIRS:
        path = directory / filename
        if path.is_file():
            return path.read_bytes()
    raise FileNotFoundError(f"{filename} not found in any of {[str(d) for d in CAPTURED_DIRS]}")


# --- The registry's data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Version:
    """One package version: its tags (container) or version string (other types), downloads, time."""

    tags: tuple[str, ...]
    downloads: int
    published: datetime
    id: int
    digest: str = ""


def make_versions(
    count: int,
    *,
    downloads: Sequence[int] | None = None,
    prefix: str = "v1.0.",
    latest: bool = True,
    start_id: int = 400_000_000,
    now: datetime | None = None,
) -> list[Version]:
    """`count` versions, newest first (`v1.0.{count-1}` ... `v1.0.0`), the newest also tagged `latest`.

    Default downloads are 1,000-and-up so that thousands separators show: 1000*(i+1)+i*37 for the i-th
    oldest version.
    """
    now = now or datetime.now(UTC).replace(microsecond=0)
    result = []
    for newest_index in range(count):
        i = count - 1 - newest_index  # 0 = oldest
        tags: tuple[str, ...] = (f"{prefix}{i}",)
        if latest and newest_index == 0:
            tags = (*tags, "latest")
        result.append(
            Version(
                tags=tags,
                downloads=downloads[newest_index] if downloads is not None else 1000 * (i + 1) + i * 37,
                published=now - timedelta(days=newest_index * 3, hours=1),
                id=start_id + i,
                digest="sha256:" + hashlib.sha256(tags[0].encode()).hexdigest(),
            )
        )
    return result


@dataclass
class Package:
    """A package as the fake serves it. `page_html`, when set, is served as is for the package page."""

    owner: str
    name: str
    type: str = "container"
    repository: str | None = None  # the repository's name (without owner) when linked
    owner_kind: OwnerKind = "orgs"
    total: int = 0
    daily: list[int] = field(default_factory=lambda: [0] * 30)  # oldest .. newest, ends at chart_end
    chart_end: date = field(default_factory=lambda: datetime.now(UTC).date())
    versions: list[Version] = field(default_factory=list)  # newest first
    last_published: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(hours=5))
    issues: int = 0
    page_html: bytes | None = None


@dataclass
class Fault:
    """A misbehaviour; applies to requests of its scope (all, one owner, one package) `times` times."""

    kind: FaultKind
    owner: str | None = None
    name: str | None = None
    times: int | None = None  # None: for ever
    until: float | None = None  # a time.monotonic() from which it no longer applies; None: for ever
    status: int = 500  # kind "status"
    retry_after: str | None = None  # kind "status": the Retry-After header
    delay: float = 0.0  # kind "slow": seconds before answering (normally)
    size: int = 10 * 1024 * 1024  # kind "huge": bytes of the body
    content_length: bool = False  # kind "huge": declare the size in Content-Length
    location: str = "http://example.invalid/elsewhere"  # kind "redirect"
    hits: int = 0  # how often it was applied


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # as sent: path and query, percent-encoding kept
    time: float  # time.monotonic()
    headers: dict[str, str]  # lower-case names; an Authorization value is replaced by "<redacted>"
    authorization: str | None  # the scheme of the Authorization header ("Bearer"), None when absent
    token_ok: bool | None  # whether the bearer token equals FakeGitHub(token=...); None when not set
    peer_port: int  # the client's port: equal ports mean a reused connection


# --- Page builders (pure functions) -----------------------------------------------------------------

_e = html.escape


def abbreviate(n: int) -> str:
    """GitHub's short count: 248, 14.4K, 144K, 1.42M (three significant digits from 1,000 up)."""
    for limit, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "K")):
        if n >= limit:
            value = n / limit
            digits = 2 if value < 10 else 1 if value < 100 else 0
            text = f"{value:.{digits}f}"
            if "." in text:
                text = text.rstrip("0").rstrip(".")
            return text + suffix
    return str(n)


def _relative(when: datetime, now: datetime) -> str:
    seconds = max(0, int((now - when).total_seconds()))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "just now"


def _pkg_segment(name: str) -> str:
    return quote(name, safe="")


def package_path(pkg: Package) -> str:
    """The canonical path of the package page: repository-linked when linked, else owner-scoped."""
    owner, name = quote(pkg.owner, safe=""), _pkg_segment(pkg.name)
    if pkg.repository:
        return f"/{owner}/{quote(pkg.repository, safe='')}/pkgs/{pkg.type}/{name}"
    return f"/{pkg.owner_kind}/{owner}/packages/{pkg.type}/package/{name}"


def versions_path(pkg: Package, page: int) -> str:
    owner, name = quote(pkg.owner, safe=""), _pkg_segment(pkg.name)
    if pkg.repository:
        base = f"/{owner}/{quote(pkg.repository, safe='')}/pkgs/{pkg.type}/{name}"
    else:
        base = f"/{pkg.owner_kind}/{owner}/packages/{pkg.type}/{name}"
    return f"{base}/versions?filters%5Bversion_type%5D=tagged&page={page}"


def listing_path(owner: str, kind: OwnerKind, page: int) -> str:
    if kind == "orgs":
        return f"/orgs/{quote(owner, safe='')}/packages?visibility=public&page={page}"
    return f"/{quote(owner, safe='')}?tab=packages&visibility=public&page={page}"


def sparkline_svg(daily: Sequence[int], end: date) -> str:
    """The 30-day chart: one `<rect>` per day, newest first at x=120, height scaled to the maximum."""
    days = list(daily)[-30:]
    days = [0] * (30 - len(days)) + days
    top = max(days) or 1
    rects = []
    for newest_index, count in enumerate(reversed(days)):
        height = round(24 * count / top)
        day = end - timedelta(days=newest_index)
        rects.append(
            f'                <rect x="{120 - 4 * newest_index}" y="{24 - height}" data-merge-count="{count}"'
            f' data-date="{day.isoformat()}" width="2" height="{height}" rx="1" fill="#28A745"></rect>'
        )
    return (
        '            <svg width="120" height="24" viewBox="0 0 120 24" fill="none"'
        ' xmlns="http://www.w3.org/2000/svg">\n' + "\n".join(rects) + "\n            </svg>"
    )


_DOWNLOAD_ICON: Final = (
    '<svg aria-hidden="true" height="16" viewBox="0 0 16 16" version="1.1" width="16"'
    ' class="octicon octicon-download tmp-mr-1"><path d="M2.75 14A1.75 1.75 0 0 1 1 12.25v-2.5a.75.75 0 0 1'
    " 1.5 0v2.5c0 .138.112.25.25.25h10.5a.25.25 0 0 0 .25-.25v-2.5a.75.75 0 0 1 1.5 0v2.5A1.75 1.75 0 0 1"
    ' 13.25 14Z"></path></svg>'
)


def version_row_html(pkg: Package, version: Version) -> str:
    """One `li.Box-row`: tag labels, publication time, digest, and the downloads of the version."""
    href_base = package_path(pkg) if pkg.repository else versions_path(pkg, 1).split("/versions")[0]
    labels = "\n".join(
        f'          <a class="Label tmp-mr-1 tmp-mb-2 text-normal" href="{_e(href_base)}/{version.id}'
        f'?tag={quote(tag, safe="")}">{_e(tag)}</a>'
        for tag in version.tags
    )
    digest = (
        f'\n        <div class="f6 color-fg-muted text-mono tmp-mt-1">Digest <code>{_e(version.digest)}</code></div>'
        if version.digest and pkg.type == "container"
        else ""
    )
    published = version.published.isoformat(timespec="seconds")
    return f"""    <li class="Box-row">
      <div class="d-flex flex-justify-between flex-items-center">
        <div class="flex-auto">
          <div class="d-flex flex-wrap">
{labels}
          </div>
          <span class="color-fg-muted f6">Published <relative-time datetime="{published}" class="no-wrap">\
{version.published:%b %d, %Y}</relative-time></span>{digest}
        </div>
        <div class="d-flex flex-items-center color-fg-muted f6 tmp-ml-3">
          {_DOWNLOAD_ICON}
          <span class="sr-only">Version downloads</span>
          {version.downloads:,}
        </div>
      </div>
    </li>"""


def _install_hint(pkg: Package) -> str:
    tag = pkg.versions[0].tags[0] if pkg.versions else "latest"
    match pkg.type:
        case "container":
            return f"docker pull ghcr.io/{pkg.owner.lower()}/{pkg.name}:{tag}"
        case "npm":
            return f"npm install @{pkg.owner.lower()}/{pkg.name}@{tag}"
        case "nuget":
            return f"dotnet add package {pkg.name} --version {tag}"
        case "rubygems":
            return f'gem install {pkg.name} --version "{tag}"'
        case _:
            return f"mvn install  # {pkg.name}:{tag}"


def _document(title: str, body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en" data-color-mode="auto" data-light-theme="light" data-dark-theme="dark">
<head>
  <meta charset="utf-8">
  <title>{_e(title)}</title>
</head>
<body class="logged-out env-production page-responsive" style="word-wrap: break-word;">
  <div class="application-main" data-commit-hovercards-enabled>
  <main>
{body}
  </main>
  </div>
</body>
</html>
"""


def package_page_html(
    pkg: Package, *, with_total: bool = True, recent_versions: int = 5, now: datetime | None = None
) -> str:
    """A package page: recent tagged versions on the left, the statistics sidebar on the right."""
    now = now or datetime.now(UTC)
    recent = "\n".join(version_row_html(pkg, v) for v in pkg.versions[:recent_versions])
    heading = "Recent tagged image versions" if pkg.type == "container" else "Recent versions"
    repo_link = ""
    issues = ""
    if pkg.repository:
        repo_full = f"{pkg.owner}/{pkg.repository}"
        repo_link = (
            '\n          <li class="tmp-mb-3">'
            f'<a class="Link--primary" href="/{_e(repo_full)}">{_e(repo_full)}</a></li>'
        )
        issues = f"""
          <div class="lh-condensed d-flex flex-column flex-items-baseline">
            <span class="d-block color-fg-muted text-small mb-1">Issues</span>
            <h3 title="{pkg.issues}">{abbreviate(pkg.issues)}</h3>
          </div>"""
    total = ""
    if with_total:
        total = f"""
        <div class="container-lg tmp-my-3 d-flex clearfix">
          <div class="lh-condensed d-flex flex-column flex-items-baseline tmp-pr-1">
            <span class="d-block color-fg-muted text-small tmp-mb-1">Total downloads</span>
            <h3 title="{pkg.total}">{abbreviate(pkg.total)}</h3>
          </div>
          <div class="lh-condensed d-inline-flex flex-column flex-items-baseline tooltipped \
tooltipped-s tmp-mt-3" aria-label="Downloads for the last 30 days">
{sparkline_svg(pkg.daily, pkg.chart_end)}
          </div>
        </div>"""
    published = pkg.last_published.isoformat(timespec="seconds")
    body = f"""    <div class="container-xl clearfix tmp-px-3 tmp-px-md-4 tmp-px-lg-5 tmp-mt-4">
      <div class="d-flex flex-wrap flex-md-nowrap">
        <div class="col-12 col-md-9 tmp-pr-md-4">
          <h2 class="h2 text-normal d-flex flex-items-center">
            <a class="Link--primary text-bold" href="{_e(package_path(pkg))}">{_e(pkg.name)}</a>
            <span class="Label Label--secondary v-align-middle tmp-ml-2">Public</span>
          </h2>
          <div class="tmp-my-3">
            <h4 class="tmp-mb-2">Install from the command line</h4>
            <clipboard-copy value="{_e(_install_hint(pkg))}"></clipboard-copy>
            <pre class="text-mono f6">{_e(_install_hint(pkg))}</pre>
          </div>
          <h4 class="tmp-mt-4 tmp-mb-2">{heading}</h4>
          <ul class="list-style-none Box">
{recent}
          </ul>
          <a class="d-inline-block tmp-mt-2" href="{_e(versions_path(pkg, 1))}">\
View and manage all versions</a>
        </div>
        <div class="col-12 col-md-3 flex-shrink-0">
          <h4 class="tmp-mb-3">Details</h4>
          <ul class="list-style-none">
          <li class="tmp-mb-3"><a class="Link--primary" href="/{_e(pkg.owner)}">{_e(pkg.owner)}</a>\
</li>{repo_link}
          </ul>
      <hr class="tmp-my-3">
      <div>
        <div class="container-lg d-flex clearfix">
          <div class="lh-condensed d-flex flex-column flex-items-baseline tmp-mr-4">
            <span  class="d-block color-fg-muted text-small mb-1">
                Last published
            </span>
            <h3 title="{published}">{_relative(pkg.last_published, now)}</h3>
          </div>{issues}
        </div>{total}
      </div>
      <hr class="tmp-my-3">
        </div>
      </div>
    </div>"""
    return _document(f"Package {pkg.name} · GitHub", body)


def _pagination(page: int, pages: int, href: Callable[[int], str]) -> str:
    """GitHub's will_paginate markup; `href(n)` gives the link of page n."""
    if pages <= 1:
        return ""
    items = []
    if page > 1:
        items.append(
            f'<a class="previous_page" rel="prev" aria-label="Previous Page" href="{_e(href(page - 1))}">Previous</a>'
        )
    else:
        items.append('<span class="previous_page disabled" aria-hidden="true">Previous</span>')
    for n in range(1, pages + 1):
        if n == page:
            items.append(f'<em class="current" data-total-pages="{pages}" aria-current="page">{n}</em>')
        else:
            items.append(f'<a aria-label="Page {n}" href="{_e(href(n))}">{n}</a>')
    if page < pages:
        items.append(f'<a class="next_page" rel="next" aria-label="Next Page" href="{_e(href(page + 1))}">Next</a>')
    else:
        items.append('<span class="next_page disabled" aria-hidden="true">Next</span>')
    return (
        '      <div class="paginate-container">\n'
        '        <div role="navigation" aria-label="Pagination" class="pagination">\n          '
        + "\n          ".join(items)
        + "\n        </div>\n      </div>"
    )


def _pages(count: int, per_page: int) -> int:
    return max(1, -(-count // per_page))


def versions_page_html(pkg: Package, page: int, per_page: int = 30) -> str:
    """Page `page` of the tagged-versions list, with will_paginate-style pagination."""
    rows = pkg.versions[(page - 1) * per_page : page * per_page]
    pages = _pages(len(pkg.versions), per_page)
    items = "\n".join(version_row_html(pkg, v) for v in rows)
    if not rows:
        items = '    <li class="Box-row blankslate"><h3>No tagged versions</h3></li>'
    body = f"""    <div class="container-xl clearfix tmp-px-3 tmp-mt-4">
      <h2 class="h2 text-normal">\
<a class="Link--primary" href="{_e(package_path(pkg))}">{_e(pkg.name)}</a> / versions</h2>
      <nav class="UnderlineNav" aria-label="Version types">
        <a class="UnderlineNav-item selected" aria-current="page" \
href="{_e(versions_path(pkg, 1))}">Tagged</a>
        <a class="UnderlineNav-item" \
href="{_e(versions_path(pkg, 1).split("?")[0])}?filters%5Bversion_type%5D=untagged">Untagged</a>
      </nav>
      <div class="Box tmp-mt-3">
        <div class="Box-header"><h3 class="Box-title">{len(pkg.versions)} tagged versions</h3></div>
        <ul>
{items}
        </ul>
      </div>
{_pagination(page, pages, lambda n: versions_path(pkg, n))}
    </div>"""
    return _document(f"Versions · {pkg.name} · GitHub", body)


def listing_item_html(pkg: Package) -> str:
    """One package of an owner's listing: the bold name link, and "in OWNER/REPO" when linked."""
    href = f"/{pkg.owner_kind}/{quote(pkg.owner, safe='')}/packages/{pkg.type}/package/{_pkg_segment(pkg.name)}"
    linked = ""
    if pkg.repository:
        full = f"{pkg.owner}/{pkg.repository}"
        link = f'<a class="Link--muted" href="/{_e(full)}">{_e(full)}</a>'
        linked = f' <span class="d-inline-block">in {link}</span>'
    published = pkg.last_published.isoformat(timespec="seconds")
    return f"""      <li class="Box-row">
        <div class="d-flex flex-justify-between">
          <div class="flex-auto">
            <span class="Label Label--secondary tmp-mr-1">{_e(pkg.type)}</span>
            <a class="text-bold f4 Link--primary" href="{_e(href)}" title="{_e(pkg.name)}">{_e(pkg.name)}</a>
            <div class="d-flex flex-wrap color-fg-muted f6 tmp-mt-1">
              <span>Published <relative-time datetime="{published}">\
{pkg.last_published:%b %d, %Y}</relative-time></span>{linked}
            </div>
          </div>
        </div>
      </li>"""


def listing_page_html(owner: str, kind: OwnerKind, packages: Sequence[Package], page: int, per_page: int = 30) -> str:
    """Page `page` of an owner's public packages (org: `#org-packages`; user: `#user-packages`)."""
    rows = list(packages)[(page - 1) * per_page : page * per_page]
    pages = _pages(len(packages), per_page)
    items = "\n".join(listing_item_html(p) for p in rows)
    if not rows:
        items = '      <li class="Box-row blankslate"><h3>No packages found</h3></li>'
    container_id = "org-packages" if kind == "orgs" else "user-packages"
    body = f"""    <div class="container-xl clearfix tmp-px-3 tmp-mt-4">
      <h2 class="h3">{_e(owner)} · Packages</h2>
      <div id="{container_id}" class="Box tmp-mt-3">
        <div class="Box-header"><h3 class="Box-title">{len(packages)} packages</h3></div>
        <ul>
{items}
        </ul>
      </div>
{_pagination(page, pages, lambda n: listing_path(owner, kind, n))}
    </div>"""
    return _document(f"Packages · {owner} · GitHub", body)


_TOTAL_BLOCK: Final = re.compile(rb"<span[^>]*>\s*Total downloads\s*</span>\s*<h3[^>]*>[^<]*</h3>", re.IGNORECASE)


def strip_total(page: bytes) -> bytes:
    """A page without its "Total downloads" label and heading (for pages served as is)."""
    return _TOTAL_BLOCK.sub(b"", page)


# --- The server -------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeGitHub

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hang up on purpose (size caps, timeouts): not worth a traceback on stderr.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the client's connection reuse is exercised
    timeout = 30  # idle keep-alive connections end eventually
    # Headers and body go out in separate writes: with Nagle on, each keep-alive answer waits ~40 ms for
    # the client's delayed ACK, which made the stand-in, not the operator, the bottleneck of benchmarks.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.fake._handle(self)

    def send(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        *,
        truncate: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if truncate:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if truncate else body)
        self.wfile.flush()


class FakeGitHub:
    """The GitHub stand-in. Thread-safe: tests may change packages and faults while it serves."""

    def __init__(
        self,
        *,
        versions_per_page: int = 30,
        listing_per_page: int = 30,
        recent_versions: int = 5,
        token: str | None = None,
        port: int = 0,
    ) -> None:
        self.versions_per_page = versions_per_page
        self._port = port  # 0: a free one
        self.listing_per_page = listing_per_page
        self.recent_versions = recent_versions
        self._token = token
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._owners: dict[str, tuple[str, OwnerKind]] = {}  # casefold -> (login, kind)
        self._packages: dict[tuple[str, str, str], Package] = {}  # (owner casefold, type, name)
        self._faults: list[Fault] = []
        self._requests: list[RecordedRequest] = []
        self._in_flight = 0
        self._max_in_flight = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle --

    def start(self) -> Self:
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.fake = self
        self._server = server
        # A short poll interval: shutdown() waits up to one interval, and tests start and stop many servers.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-github", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in a "slow" fault
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeGitHub is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- the registry --

    def add_owner(self, owner: str, kind: OwnerKind = "orgs") -> None:
        """Declare an owner as an organization (default) or a user; packages of an unknown owner make it
        an organization."""
        with self._lock:
            self._owners[owner.casefold()] = (owner, kind)
            for key, pkg in self._packages.items():
                if key[0] == owner.casefold():
                    pkg.owner_kind = kind

    def add_package(
        self,
        owner: str,
        name: str,
        type: str = "container",
        repository: str | None = None,
        *,
        total: int = 0,
        daily: Sequence[int] | None = None,
        versions: Sequence[Version] | None = None,
        page_html: bytes | str | None = None,
        issues: int = 0,
        last_published: datetime | None = None,
        chart_end: date | None = None,
    ) -> Package:
        """Add (or replace) a package. `repository` links it (`repo` or `owner/repo`). `page_html` is
        served as is instead of a generated page. `daily`: up to 30 counts, oldest first."""
        if repository and "/" in repository:
            repository = repository.split("/", 1)[1]
        if isinstance(page_html, str):
            page_html = page_html.encode()
        with self._lock:
            login, kind = self._owners.setdefault(owner.casefold(), (owner, "orgs"))
            pkg = Package(owner=login, name=name, type=type, repository=repository, owner_kind=kind, total=total)
            if daily is not None:
                pkg.daily = list(daily)
            if versions is not None:
                pkg.versions = list(versions)
            if last_published is not None:
                pkg.last_published = last_published
            elif pkg.versions:
                pkg.last_published = pkg.versions[0].published
            if chart_end is not None:
                pkg.chart_end = chart_end
            pkg.issues, pkg.page_html = issues, page_html
            self._packages[(login.casefold(), type, name)] = pkg
            return replace(pkg)

    def add_captured(
        self,
        filename: str,
        *,
        owner: str | None = None,
        name: str | None = None,
        repository: str | None = None,
    ) -> Package:
        """Serve one of the real captured pages as is, under its own owner/name or the ones given."""
        info = CAPTURED[filename]
        return self.add_package(
            owner or info.owner,
            name or info.name,
            repository=repository or info.repository,
            total=info.total,
            page_html=captured_page(filename),
        )

    def update_package(self, owner: str, name: str, type: str = "container", **changes: Any) -> Package:
        """Change fields of a package (total, daily, versions, page_html, repository, ...) at any time."""
        if isinstance(changes.get("page_html"), str):
            changes["page_html"] = changes["page_html"].encode()
        if isinstance(changes.get("repository"), str) and "/" in changes["repository"]:
            changes["repository"] = changes["repository"].split("/", 1)[1]
        with self._lock:
            pkg = self._packages[(owner.casefold(), type, name)]
            for key, value in changes.items():
                if not hasattr(pkg, key) or key in ("owner", "name", "type"):
                    raise TypeError(f"cannot change {key!r} of a package")
                setattr(pkg, key, list(value) if key in ("daily", "versions") else value)
            return replace(pkg)

    def set_total(self, owner: str, name: str, total: int, type: str = "container") -> None:
        self.update_package(owner, name, type, total=total)

    def set_page(self, owner: str, name: str, page_html: bytes | str | None, type: str = "container") -> None:
        self.update_package(owner, name, type, page_html=page_html)

    def remove_package(self, owner: str, name: str, type: str = "container") -> None:
        with self._lock:
            del self._packages[(owner.casefold(), type, name)]

    def package(self, owner: str, name: str, type: str = "container") -> Package:
        with self._lock:
            return replace(self._packages[(owner.casefold(), type, name)])

    def package_url(self, owner: str, name: str, type: str = "container") -> str:
        """The canonical (final) URL of a package page on this server."""
        return self.base_url + package_path(self.package(owner, name, type))

    # -- faults --

    def add_fault(
        self,
        kind: FaultKind,
        *,
        owner: str | None = None,
        name: str | None = None,
        times: int | None = None,
        **params: Any,
    ) -> Fault:
        """Misbehave for requests of one package (owner+name), one owner (its packages and listings), or
        all requests (neither), `times` times or for ever. Params are Fault's fields:

        - "status": answer `status` (404, 429, 500, ...) with `retry_after` as Retry-After if given;
        - "slow": wait `delay` seconds, then answer normally;
        - "truncate": declare the full Content-Length, send half the body, close the connection;
        - "huge": a 200 body of `size` bytes (`content_length`: declare it, else close-delimited);
        - "no_total": the package page without its "Total downloads" block;
        - "redirect": 302 to `location` (another host by default).
        A more specific fault wins over a broader one; among equals, the oldest.
        """
        fault = Fault(kind=kind, owner=owner, name=name, times=times, **params)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, owner: str | None, name: str | None) -> Fault | None:
        def rank(f: Fault) -> int:
            return 2 if f.name is not None else 1 if f.owner is not None else 0

        now = time.monotonic()
        with self._lock:
            self._faults = [f for f in self._faults if f.until is None or now < f.until]
            matching = [
                f
                for f in self._faults
                if (f.owner is None or (owner is not None and f.owner.casefold() == owner.casefold()))
                and (f.name is None or f.name == name)
            ]
            if not matching:
                return None
            fault = max(matching, key=rank)  # max() keeps the first of equal ranks
            fault.hits += 1
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
            return fault

    # -- what was asked --

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def count(self, path_prefix: str = "") -> int:
        """Requests whose path (with query, percent-encoding kept) starts with `path_prefix`."""
        return sum(1 for r in self.requests if r.path.startswith(path_prefix))

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """The most requests handled at the same time since start (or reset())."""
        with self._lock:
            return self._max_in_flight

    def reset(self) -> None:
        """Forget recorded requests and the in-flight maximum (not packages or faults)."""
        with self._lock:
            self._requests.clear()
            self._max_in_flight = self._in_flight

    # -- serving --

    def _record(self, handler: _Handler) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        auth = headers.get("authorization")
        scheme, token_ok = None, None
        if auth is not None:
            headers["authorization"] = "<redacted>"
            scheme, _, token = auth.partition(" ")
            if self._token is not None:
                token_ok = scheme == "Bearer" and token == self._token
        record = RecordedRequest(
            handler.command,
            handler.path,
            time.monotonic(),
            headers,
            scheme,
            token_ok,
            handler.client_address[1],
        )
        with self._lock:
            self._requests.append(record)

    def _handle(self, handler: _Handler) -> None:
        self._record(handler)
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            self._respond(handler)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True
        finally:
            with self._lock:
                self._in_flight -= 1

    def _respond(self, handler: _Handler) -> None:
        split = urlsplit(handler.path)
        query = parse_qs(split.query)
        segments = [unquote(s) for s in split.path.strip("/").split("/")] if split.path.strip("/") else []
        owner, name = _scope(segments, query)
        fault = self._take_fault(owner, name)
        if fault is not None:
            if fault.kind == "status":
                extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
                handler.send(fault.status, _error_page(fault.status), extra)
                return
            if fault.kind == "redirect":
                handler.send(302, b"", {"Location": fault.location})
                return
            if fault.kind == "huge":
                self._send_huge(handler, fault)
                return
            if fault.kind == "slow" and self._stopping.wait(fault.delay):
                handler.close_connection = True
                return
        status, body, headers = self._route(segments, query, no_total=fault is not None and fault.kind == "no_total")
        handler.send(status, body, headers, truncate=fault is not None and fault.kind == "truncate")

    def _send_huge(self, handler: _Handler, fault: Fault) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html; charset=utf-8")
        if fault.content_length:
            handler.send_header("Content-Length", str(fault.size))
        else:
            handler.send_header("Connection", "close")  # the body ends when the connection does
            handler.close_connection = True
        handler.end_headers()
        chunk = b"<!-- " + b"x" * (64 * 1024 - 9) + b" -->"
        sent = 0
        while sent < fault.size and not self._stopping.is_set():
            piece = chunk[: fault.size - sent]
            handler.wfile.write(piece)
            sent += len(piece)
        handler.close_connection = True

    def _route(
        self, seg: list[str], query: dict[str, list[str]], *, no_total: bool
    ) -> tuple[int, bytes, dict[str, str]]:
        page = _page(query)
        not_found: tuple[int, bytes, dict[str, str]] = (404, _error_page(404), {})
        with self._lock:
            owners = dict(self._owners)

        def find(owner: str, pkg_type: str, name: str) -> Package | None:
            # A copy of the one package asked for (not of all: a request must cost the same at 10,000).
            with self._lock:
                found = self._packages.get((owner.casefold(), pkg_type, name))
                return replace(found) if found is not None else None

        # /orgs/O/packages?visibility=public&page=N
        if len(seg) == 3 and seg[0] == "orgs" and seg[2] == "packages":
            login, kind = owners.get(seg[1].casefold(), ("", "users"))
            if kind != "orgs":
                return not_found
            return 200, self._listing(login, kind, page), {}
        # /{orgs|users}/O/packages/T/package/N[/versions] and /{orgs|users}/O/packages/T/N/versions
        if len(seg) >= 6 and seg[0] in ("orgs", "users") and seg[2] == "packages":
            login, kind = owners.get(seg[1].casefold(), ("", "users"))
            if seg[0] != kind:
                return not_found
            if len(seg) == 6 and seg[4] == "package":
                pkg = find(login, seg[3], seg[5])
                if pkg is None:
                    return not_found
                if pkg.repository:  # like GitHub: the owner-scoped form leads to the repository's
                    return 302, b"", {"Location": self.base_url + package_path(pkg)}
                return 200, self._package_page(pkg, no_total), {}
            versions = (len(seg) == 7 and seg[4] == "package" and seg[6] == "versions") or (
                len(seg) == 6 and seg[5] == "versions"
            )
            if versions:
                pkg = find(login, seg[3], seg[5] if len(seg) == 7 else seg[4])
                if pkg is None:
                    return not_found
                return 200, versions_page_html(pkg, page, self.versions_per_page).encode(), {}
            return not_found
        # /O/R/pkgs/T/N[/versions]
        if len(seg) in (5, 6) and seg[2] == "pkgs" and (len(seg) == 5 or seg[5] == "versions"):
            pkg = find(seg[0], seg[3], seg[4])
            if pkg is None or (pkg.repository or "").casefold() != seg[1].casefold():
                return not_found
            if len(seg) == 5:
                return 200, self._package_page(pkg, no_total), {}
            return 200, versions_page_html(pkg, page, self.versions_per_page).encode(), {}
        # /U?tab=packages&visibility=public&page=N
        if len(seg) == 1 and query.get("tab") == ["packages"]:
            login, kind = owners.get(seg[0].casefold(), ("", "orgs"))
            if not login:
                return not_found
            if kind == "orgs":
                return 302, b"", {"Location": self.base_url + listing_path(login, "orgs", page)}
            return 200, self._listing(login, kind, page), {}
        return not_found

    def _package_page(self, pkg: Package, no_total: bool) -> bytes:
        if pkg.page_html is not None:
            return strip_total(pkg.page_html) if no_total else pkg.page_html
        return package_page_html(pkg, with_total=not no_total, recent_versions=self.recent_versions).encode()

    def _listing(self, login: str, kind: OwnerKind, page: int) -> bytes:
        with self._lock:
            mine = [replace(p) for k, p in self._packages.items() if k[0] == login.casefold()]
        own = sorted(
            mine,
            key=lambda p: p.last_published,
            reverse=True,  # GitHub lists the most recently published first
        )
        return listing_page_html(login, kind, own, page, self.listing_per_page).encode()


def _scope(seg: list[str], query: dict[str, list[str]]) -> tuple[str | None, str | None]:
    """The (owner, package name) a request is about, for matching faults."""
    if len(seg) >= 2 and seg[0] in ("orgs", "users"):
        if len(seg) == 6 and seg[4] == "package":
            return seg[1], seg[5]
        if len(seg) == 7 and seg[4] == "package":
            return seg[1], seg[5]
        if len(seg) == 6 and seg[5] == "versions":
            return seg[1], seg[4]
        return seg[1], None
    if len(seg) >= 5 and seg[2] == "pkgs":
        return seg[0], seg[4]
    if len(seg) >= 1:
        return seg[0], None
    return None, None


def _page(query: dict[str, list[str]]) -> int:
    try:
        return max(1, int(query.get("page", ["1"])[0]))
    except ValueError:
        return 1


def _error_page(status: int) -> bytes:
    text = {404: "Page not found", 429: "Too many requests", 500: "Server error"}.get(status, "Error")
    return _document(f"{text} · GitHub", f'    <div class="container-lg"><h1>{status}</h1><p>{text}</p></div>').encode()


@pytest.fixture
def fake_github() -> Iterator[FakeGitHub]:
    """A running FakeGitHub per test; import it into a conftest.py to use it by name."""
    with FakeGitHub() as fake:
        yield fake


def main() -> None:
    """`python -m tests.support.fake_github [PORT]`: serve a few demo packages until interrupted."""
    fake = FakeGitHub(port=int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    for filename in CAPTURED:
        if filename != "icicle-insights-2026-08.html":  # one page per package
            fake.add_captured(filename)
    fake.add_package("acme", "tool", repository="tool", total=14_432, daily=list(range(30)), versions=make_versions(40))
    fake.add_package("acme", "web/frontend", type="npm", total=1_000_001, versions=make_versions(3))
    fake.add_owner("octo-user", "users")
    fake.add_package("octo-user", "dotfiles", total=42, versions=make_versions(1))
    with fake:
        print(fake.base_url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
