"""github.py: URL forms (pure) and the client against the local GitHub stand-in (no cluster)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from pydantic import SecretStr

from packagestats.github import (
    PACKAGE_TYPES,
    FetchError,
    GitHubClient,
    listing_url,
    owner_package_url,
    package_url,
    parse_retry_after,
    repo_package_url,
    repository_name,
    versions_url,
)
from packagestats.settings import Settings
from tests.support.fake_github import FakeGitHub, make_versions

B = "https://github.com"
TOKEN = "ghp_s3cretTOKENvalue"


# --- URLs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pkg_type", ["container", "npm", "maven", "nuget", "rubygems"])
def test_url_forms_for_every_package_type(pkg_type: str) -> None:
    assert pkg_type in PACKAGE_TYPES
    assert repo_package_url(B, "acme", "tool", "pkg", pkg_type) == f"{B}/acme/tool/pkgs/{pkg_type}/pkg"
    assert owner_package_url(B, "orgs", "acme", "pkg", pkg_type) == f"{B}/orgs/acme/packages/{pkg_type}/package/pkg"
    assert owner_package_url(B, "users", "bob", "pkg", pkg_type) == f"{B}/users/bob/packages/{pkg_type}/package/pkg"


def test_names_are_quoted_and_slash_is_percent_2f() -> None:
    assert repo_package_url(B + "/", "acme", "tool", "a/b c+d") == f"{B}/acme/tool/pkgs/container/a%2Fb%20c%2Bd"
    assert owner_package_url(B, "orgs", "acme", "x/y", "npm") == f"{B}/orgs/acme/packages/npm/package/x%2Fy"


def test_repository_given_as_owner_slash_repo() -> None:
    assert repository_name("acme", "tool") == "tool"
    assert repository_name("Acme", "acme/tool") == "tool"  # logins are case-insensitive
    assert package_url(B, "acme", "pkg", "maven", repository="acme/tool") == f"{B}/acme/tool/pkgs/maven/pkg"
    assert package_url(B, "acme", "pkg", "maven") == f"{B}/orgs/acme/packages/maven/package/pkg"
    for bad in ("other/tool", "a/b/c", "acme/", ""):
        with pytest.raises(ValueError):
            repo_package_url(B, "acme", bad, "pkg")


def test_versions_and_listing_urls() -> None:
    q = "versions?filters%5Bversion_type%5D=tagged&page=3"
    assert versions_url(f"{B}/acme/tool/pkgs/container/a%2Fb", 3) == f"{B}/acme/tool/pkgs/container/a%2Fb/{q}"
    # Owner-scoped: GitHub's own "all versions" link has no `package/` segment.
    assert versions_url(f"{B}/users/bob/packages/npm/package/x", 3) == f"{B}/users/bob/packages/npm/x/{q}"
    assert listing_url(B, "orgs", "acme", 2) == f"{B}/orgs/acme/packages?visibility=public&page=2"
    assert listing_url(B, "users", "bob", 1) == f"{B}/bob?tab=packages&visibility=public&page=1"


def test_bad_arguments_raise_value_error() -> None:
    with pytest.raises(ValueError, match="unknown package type"):
        repo_package_url(B, "acme", "tool", "pkg", "pypi")
    with pytest.raises(ValueError):
        listing_url(B, "orgs", "acme", 0)
    with pytest.raises(ValueError):
        owner_package_url(B, "teams", "acme", "pkg")
    with pytest.raises(ValueError):
        repo_package_url(B, "", "tool", "pkg")


def test_parse_retry_after() -> None:
    now = datetime(2026, 7, 21, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=90), usegmt=True), now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


# --- The client against the stand-in ----------------------------------------------------------------


@pytest.fixture
def gh() -> Iterator[FakeGitHub]:
    with FakeGitHub(token=TOKEN) as fake:
        fake.add_package("acme", "tool", repository="tool", total=1234, versions=make_versions(2))
        fake.add_package("acme", "loose", total=5)  # not linked to a repository
        fake.add_owner("bob", "users")
        fake.add_package("bob", "img/sub", total=7)
        yield fake


def settings(**values: Any) -> Settings:
    # Keyword arguments through Any: mypy without pydantic's plugin takes Field(default, ...) as required.
    return Settings(**values)


def client(fake: FakeGitHub, **overrides: Any) -> GitHubClient:
    values: dict[str, Any] = {
        "github_url": fake.base_url,
        "retries": 2,
        "backoff_seconds": 0.01,
        "request_timeout_seconds": 2.0,
        "requests_per_minute": 1e5,  # the budget has tests of its own (test_pacing.py)
    }
    return GitHubClient(settings(**(values | overrides)))


async def test_repository_linked_page(gh: FakeGitHub) -> None:
    async with client(gh) as c:
        url, body = await c.fetch_package_page("acme", "tool", "container", "acme/tool")
    assert url == f"{gh.base_url}/acme/tool/pkgs/container/tool"
    assert b'<h3 title="1234">1.23K</h3>' in body
    assert gh.paths() == ["/acme/tool/pkgs/container/tool"]
    assert c.stats.requests == 1 and c.stats.by_status == {200: 1}


async def test_owner_scoped_redirect_within_host_is_followed(gh: FakeGitHub) -> None:
    async with client(gh) as c:
        url, body = await c.fetch_package_page("acme", "tool")
    assert url == f"{gh.base_url}/acme/tool/pkgs/container/tool"
    assert b"Total downloads" in body
    assert gh.paths() == ["/orgs/acme/packages/container/package/tool", "/acme/tool/pkgs/container/tool"]
    assert c.stats.by_status == {302: 1, 200: 1}
    assert c.owner_kind("acme") == "orgs"


async def test_org_then_user_fallback_is_remembered(gh: FakeGitHub) -> None:
    async with client(gh) as c:
        url, _ = await c.fetch_package_page("bob", "img/sub")
        assert url == f"{gh.base_url}/users/bob/packages/container/package/img%2Fsub"
        assert c.owner_kind("BOB") == "users"
        await c.fetch_package_page("bob", "img/sub")
        _, listing = await c.fetch_listing_page("bob", 1)
    assert gh.paths() == [
        "/orgs/bob/packages/container/package/img%2Fsub",  # 404: bob is a user
        "/users/bob/packages/container/package/img%2Fsub",
        "/users/bob/packages/container/package/img%2Fsub",  # remembered: no second try of orgs
        "/bob?tab=packages&visibility=public&page=1",
    ]
    assert b'title="img/sub"' in listing
    assert c.stats.errors == {"not_found": 1}


async def test_org_listing_and_versions_page(gh: FakeGitHub) -> None:
    async with client(gh) as c:
        url, listing = await c.fetch_listing_page("acme", 2)
        versions = await c.fetch_versions_page(f"{gh.base_url}/acme/tool/pkgs/container/tool", 1)
    assert url == f"{gh.base_url}/orgs/acme/packages?visibility=public&page=2"
    assert b'id="org-packages"' in listing
    assert b'<span class="sr-only">Version downloads</span>' in versions
    assert gh.paths()[1] == "/acme/tool/pkgs/container/tool/versions?filters%5Bversion_type%5D=tagged&page=1"
    # One connection for both requests: the client reuses it.
    assert len({r.peer_port for r in gh.requests}) == 1


async def test_404_is_not_found(gh: FakeGitHub) -> None:
    async with client(gh) as c:
        with pytest.raises(FetchError) as info:
            await c.fetch_package_page("acme", "missing", repository="tool")
        with pytest.raises(FetchError) as both:
            await c.fetch_package_page("nobody", "missing")
    assert (info.value.reason, info.value.status) == ("not_found", 404)
    assert info.value.url == f"{gh.base_url}/acme/tool/pkgs/container/missing"
    assert both.value.reason == "not_found"
    assert gh.count() == 3  # orgs, then users for the unknown owner; never retried
    assert c.owner_kind("nobody") is None


async def test_redirect_to_another_host_is_refused(gh: FakeGitHub) -> None:
    gh.add_fault("redirect", owner="acme", name="tool", location="http://127.0.0.2:9/steal")
    async with client(gh) as c:
        with pytest.raises(FetchError) as info:
            await c.fetch_package_page("acme", "tool", repository="tool")
    assert info.value.reason == "redirect"
    assert "127.0.0.2:9" in str(info.value)
    assert gh.count() == 1


async def test_redirect_loop_stops_after_five_hops(gh: FakeGitHub) -> None:
    gh.add_fault("redirect", owner="acme", name="tool", location=f"{gh.base_url}/acme/tool/pkgs/container/tool")
    async with client(gh) as c:
        with pytest.raises(FetchError) as info:
            await c.fetch_package_page("acme", "tool", repository="tool")
    assert info.value.reason == "redirect"
    assert gh.count() == 6  # the request and five redirects followed


async def test_500_then_ok_is_retried(gh: FakeGitHub) -> None:
    gh.add_fault("status", status=500, owner="acme", name="tool", times=2)
    async with client(gh) as c:
        _, body = await c.fetch_package_page("acme", "tool", repository="tool")
    assert b'title="1234"' in body
    assert gh.count("/acme/tool/pkgs/container/tool") == 3
    assert c.stats.retries == 2
    assert c.stats.by_status == {500: 2, 200: 1}


async def test_500_always_is_http_status_after_retries(gh: FakeGitHub) -> None:
    gh.add_fault("status", status=502)
    async with client(gh, retries=3) as c:
        with pytest.raises(FetchError) as info:
            await c.fetch_package_page("acme", "tool", repository="tool")
    assert (info.value.reason, info.value.status) == ("http_status", 502)
    assert gh.count() == 4
    assert c.stats.errors == {"http_status": 1}


async def test_other_4xx_is_not_retried(gh: FakeGitHub) -> None:
    gh.add_fault("status", status=403)  # without Retry-After: not a rate limit
    async with client(gh) as c:
        with pytest.raises(FetchError) as info:
            await c.fetch_package_page("acme", "tool", repository="tool")
    assert (info.value.reason, info.value.status) == ("http_status", 403)
    assert gh.count() == 1


async def test_slow_answer_is_timeout(gh: FakeGitHub) -> None:
    gh.add_fault("slow", delay=1.0)
    started = time.monotonic()
    async with client(gh, retries=1, request_timeout_seconds=0.2) as c:
        with pytest.raises(FetchError) as info:
            await c.fetch_package_page("acme", "tool", repository="tool")
    assert info.value.reason == "timeout"
    assert gh.count() == 2
    assert time.monotonic() - started < 0.9


@pytest.mark.parametrize("content_length", [False, True])
async def test_huge_body_is_too_large(gh: FakeGitHub, content_length: bool) -> None:
    gh.add_fault("huge", size=1024 * 1024, content_length=content_length)
    async with client(gh, max_response_bytes=64 * 1024) as c:
        with pytest.raises(FetchError) as info:
            await c.fetch_package_page("acme", "tool", repository="tool")
    assert (info.value.reason, info.value.status) == ("too_large", 200)
    assert gh.count() == 1  # not retried


async def test_truncated_body_is_an_error(gh: FakeGitHub) -> None:
    gh.add_fault("truncate")
    async with client(gh, retries=1) as c:
        with pytest.raises(FetchError) as info:
            await c.fetch_package_page("acme", "tool", repository="tool")
    assert info.value.reason == "connection"
    assert gh.count() == 2


async def test_truncated_once_then_whole_page(gh: FakeGitHub) -> None:
    gh.add_fault("truncate", times=1)
    async with client(gh) as c:
        _, body = await c.fetch_package_page("acme", "tool", repository="tool")
    assert body.rstrip().endswith(b"</html>")
    assert gh.count() == 2


async def test_connection_refused_is_connection() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with GitHubClient(settings(github_url=f"http://127.0.0.1:{port}", retries=1, backoff_seconds=0.01)) as c:
        with pytest.raises(FetchError) as info:
            await c.fetch(f"http://127.0.0.1:{port}/acme")
    assert info.value.reason == "connection"
    assert c.stats.retries == 1


async def test_429_starts_a_cooldown_that_fails_fast(gh: FakeGitHub) -> None:
    gh.add_fault("status", status=429, retry_after="1", times=1)
    async with client(gh) as c:
        with pytest.raises(FetchError) as first:
            await c.fetch_package_page("acme", "tool", repository="tool")
        assert (first.value.reason, first.value.status, first.value.retry_after) == ("rate_limited", 429, 1.0)
        assert gh.count() == 1  # a 429 is not retried

        with pytest.raises(FetchError) as second:
            await c.fetch_listing_page("acme", 1)
        assert second.value.reason == "rate_limited"
        assert second.value.retry_after is not None and 0 < second.value.retry_after <= 1.0
        assert gh.count() == 1  # failed fast: the server saw nothing
        assert c.stats.fast_failed == 1

        await asyncio.sleep(c.cooldown_remaining() + 0.02)
        _, body = await c.fetch_package_page("acme", "tool", repository="tool")
    assert b'title="1234"' in body
    assert gh.count() == 2


async def test_cooldown_is_bounded_and_403_with_retry_after_counts(gh: FakeGitHub) -> None:
    gh.add_fault("status", status=403, retry_after="3600", times=1)
    async with client(gh, max_cooldown_seconds=1) as c:
        with pytest.raises(FetchError) as info:
            await c.fetch_package_page("acme", "tool", repository="tool")
        assert (info.value.reason, info.value.status, info.value.retry_after) == ("rate_limited", 403, 1.0)
        assert 0.5 < c.cooldown_remaining() <= 1.0


@pytest.mark.parametrize(("per_host", "overall", "expected"), [(2, 8, 2), (4, 3, 3)])
async def test_concurrency_is_bounded(gh: FakeGitHub, per_host: int, overall: int, expected: int) -> None:
    gh.add_fault("slow", delay=0.15)
    async with client(gh, max_concurrency_per_host=per_host, max_concurrency=overall) as c:
        results = await asyncio.gather(*(c.fetch_package_page("acme", "tool", repository="tool") for _ in range(6)))
    assert len(results) == 6
    assert gh.count() == 6
    assert gh.max_in_flight == expected


async def test_token_is_sent_as_bearer_and_never_shown(gh: FakeGitHub) -> None:
    config = settings(github_url=gh.base_url, github_token=SecretStr(TOKEN), retries=0)
    async with GitHubClient(config) as c:
        await c.fetch_package_page("acme", "tool", repository="tool")
        with pytest.raises(FetchError) as info:
            await c.fetch_package_page("acme", "missing", repository="tool")
    request = gh.requests[0]
    assert (request.authorization, request.token_ok) == ("Bearer", True)
    assert request.headers["authorization"] == "<redacted>"
    assert request.headers["user-agent"] == config.user_agent
    for text in (repr(c), str(c), str(info.value), repr(info.value), repr(config)):
        assert TOKEN not in text
    assert "token=set" in repr(c)


async def test_no_token_no_authorization_header(gh: FakeGitHub) -> None:
    async with client(gh) as c:
        await c.fetch_package_page("acme", "tool", repository="tool")
    assert gh.requests[0].authorization is None
    assert "token=none" in repr(c)


async def test_urls_outside_github_are_refused(gh: FakeGitHub) -> None:
    async with client(gh) as c:
        with pytest.raises(ValueError, match="not on"):
            await c.fetch("http://127.0.0.2:1/acme")
    assert gh.count() == 0
