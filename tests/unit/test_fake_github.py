"""The GitHub stand-in itself: routes, page content, changing answers, fault scoping."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import date

import pytest

from tests.support.fake_github import (
    CAPTURED,
    FakeGitHub,
    abbreviate,
    captured_page,
    make_versions,
    strip_total,
)


@pytest.fixture
def gh() -> Iterator[FakeGitHub]:
    with FakeGitHub(versions_per_page=2, listing_per_page=2) as fake:
        yield fake


def get(fake: FakeGitHub, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(fake.base_url + path, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""


def test_abbreviate_like_github() -> None:
    cases = {0: "0", 248: "248", 999: "999", 1000: "1K", 14_432: "14.4K", 144_000: "144K", 1_418_338: "1.42M"}
    assert {n: abbreviate(n) for n in cases} == cases


def test_generated_package_page_has_what_a_parser_needs(gh: FakeGitHub) -> None:
    daily = list(range(1, 31))
    gh.add_package(
        "acme",
        "tool",
        repository="tool",
        total=1_418_338,
        daily=daily,
        issues=135,
        versions=make_versions(2, downloads=[12_345, 7]),
        chart_end=date(2026, 7, 21),
    )
    status, page = get(gh, "/acme/tool/pkgs/container/tool")
    assert status == 200
    # "Last published" and "Issues" come first, then the total: exact in title, abbreviated as text.
    assert page.index("Last published") < page.index(">Issues<") < page.index("Total downloads")
    assert '<h3 title="1418338">1.42M</h3>' in page
    bars = re.findall(r'data-merge-count="(\d+)" data-date="([\d-]+)"', page)
    assert len(bars) == 30 and bars[0] == ("30", "2026-07-21") and bars[-1] == ("1", "2026-06-22")
    assert sum(int(count) for count, _ in bars) == sum(daily)
    assert re.findall(r'<span class="sr-only">Version downloads</span>\s*([\d,]+)', page) == ["12,345", "7"]
    assert page.count('class="Label tmp-mr-1') == 3  # v1.0.1 + latest, v1.0.0


def test_versions_pages_and_listing_paginate(gh: FakeGitHub) -> None:
    gh.add_package("acme", "tool", repository="tool", versions=make_versions(5))
    gh.add_package("acme", "a/b", type="npm")
    gh.add_package("acme", "c")
    _, page3 = get(gh, "/acme/tool/pkgs/container/tool/versions?filters%5Bversion_type%5D=tagged&page=3")
    assert page3.count('class="Box-row"') == 1 and 'data-total-pages="3"' in page3
    _, listing = get(gh, "/orgs/acme/packages?visibility=public&page=1")
    assert listing.count('class="Box-row"') == 2 and 'rel="next"' in listing
    _, listing2 = get(gh, "/orgs/acme/packages?visibility=public&page=2")
    names = re.findall(r'<a class="text-bold[^"]*" href="([^"]+)" title="([^"]+)"', listing + listing2)
    assert sorted(names) == [
        ("/orgs/acme/packages/container/package/c", "c"),
        ("/orgs/acme/packages/container/package/tool", "tool"),
        ("/orgs/acme/packages/npm/package/a%2Fb", "a/b"),
    ]
    assert "in <a" in listing + listing2 and "acme/tool</a>" in listing + listing2


def test_owner_kinds_and_redirects(gh: FakeGitHub) -> None:
    gh.add_owner("bob", "users")
    gh.add_package("bob", "x", repository="bob/dots")
    assert get(gh, "/orgs/bob/packages?visibility=public&page=1")[0] == 404
    assert get(gh, "/bob?tab=packages&visibility=public&page=1")[0] == 200
    assert get(gh, "/orgs/bob/packages/container/package/x")[0] == 404
    assert get(gh, "/users/bob/packages/container/package/x")[0] == 200  # followed to /bob/dots/pkgs/...
    assert gh.paths()[-1] == "/bob/dots/pkgs/container/x"
    assert get(gh, "/bob/other/pkgs/container/x")[0] == 404  # linked to another repository


def test_captured_pages_are_served_as_is(gh: FakeGitHub) -> None:
    for filename, info in CAPTURED.items():
        gh.add_captured(filename)
        _, page = get(gh, f"/{info.owner}/{info.repository}/pkgs/container/{info.name}")
        assert page.encode() == captured_page(filename)
        assert f'title="{info.total}"' in page
        stripped = strip_total(captured_page(filename))  # (their header comments mention the label)
        assert b">Total downloads<" not in stripped and f'title="{info.total}"'.encode() not in stripped


def test_answers_change_between_requests(gh: FakeGitHub) -> None:
    gh.add_package("acme", "app", total=5)
    path = "/orgs/acme/packages/container/package/app"
    assert 'title="5"' in get(gh, path)[1]
    gh.set_total("acme", "app", 6)
    assert 'title="6"' in get(gh, path)[1]
    gh.set_page("acme", "app", "<html>custom</html>")
    assert get(gh, path)[1] == "<html>custom</html>"


def test_faults_are_scoped_and_counted(gh: FakeGitHub) -> None:
    gh.add_package("acme", "a", total=1)
    gh.add_package("acme", "b", total=2)
    gh.add_package("other", "c", total=3)
    gh.add_fault("status", status=500, owner="acme", name="a", times=2)
    gh.add_fault("no_total", owner="acme")
    a, b, c = (f"/orgs/{o}/packages/container/package/{n}" for o, n in (("acme", "a"), ("acme", "b"), ("other", "c")))
    assert [get(gh, a)[0] for _ in range(2)] == [500, 500]
    assert "Total downloads" not in get(gh, a)[1]  # the package fault is used up; the owner's applies
    assert "Total downloads" not in get(gh, b)[1]
    assert "Total downloads" in get(gh, c)[1]
    gh.clear_faults()
    assert 'title="1"' in get(gh, a)[1]
    assert gh.count(a) == 4 and gh.count("/orgs/acme/") == 5


def test_429_carries_retry_after(gh: FakeGitHub) -> None:
    gh.add_fault("status", status=429, retry_after="7", times=1)
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(gh.base_url + "/orgs/acme/packages?visibility=public&page=1", timeout=5)
    assert (info.value.code, info.value.headers["Retry-After"]) == (429, "7")
