"""The page parser through the real wasm module: captured GitHub pages, fixtures, hostile input, limits.

No cluster needed. One sandbox (one compile) serves the module; sandboxes with other limits load the
compiled module from the same disk cache.
"""

from __future__ import annotations

import asyncio
import datetime
import random
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import packagestats.sandbox as sandbox_module
from packagestats.pages import (
    DailyCount,
    ListingEntry,
    ListingPage,
    PackagePage,
    VersionRow,
    VersionsPage,
)
from packagestats.sandbox import (
    BadOutputError,
    Kind,
    LimitExceeded,
    ModuleLoadError,
    NoCountError,
    ParserError,
    ParseResult,
    Sandbox,
)
from packagestats.settings import Settings

# Real captured pages, kept in the repository (each names its source at the top).
SHARED = Path(__file__).resolve().parents[1] / "data" / "ghcr-pages"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pages"

FUEL = 2_000_000_000
MEMORY = 256 * 1024 * 1024
NO_TOTAL = 'no "Total downloads" count found'
UTC = datetime.UTC


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("module-cache")


@pytest.fixture(scope="module")
def sandbox(cache_dir: Path) -> Sandbox:
    sb = Sandbox(fuel=FUEL, memory_bytes=MEMORY, timeout_seconds=5.0, cache_dir=cache_dir)
    sb.load()
    return sb


def package(result: ParseResult) -> PackagePage:
    assert isinstance(result.page, PackagePage)
    return result.page


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


# -- the real captures (values from tests/data/ghcr-pages/README.md) ----------------------------------

REAL = {
    "icicle-insights-2026-08.html": (248, "248", "2026-08-08", "2026-07-10", 29, "2026-07-29T07:36:30"),
    "icicle-insights-2026-09.html": (302, "302", "2026-09-24", "2026-08-26", 38, "2026-09-24T20:19:35"),
    "headscale-2026-07.html": (1418338, "1.42M", "2026-07-21", "2026-06-22", 195120, "2026-07-21T11:35:43"),
}


def test_every_captured_page_is_covered() -> None:
    assert {p.name for p in SHARED.glob("*.html")} == set(REAL)


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_page(sandbox: Sandbox, name: str) -> None:
    total, text, newest, oldest, bar_sum, published = REAL[name]
    result = sandbox.parse_file(SHARED / name)
    page = package(result)
    assert page.downloads == total
    assert page.approximate is False
    assert page.downloads_text == text
    assert len(page.daily) == 30
    assert page.daily[0].date == datetime.date.fromisoformat(oldest)
    assert page.daily[-1].date == datetime.date.fromisoformat(newest)
    assert [d.date for d in page.daily] == sorted(d.date for d in page.daily)
    assert sum(d.count for d in page.daily) == bar_sum
    assert page.last_published == datetime.datetime.fromisoformat(published).replace(tzinfo=UTC)
    assert page.versions == []
    assert page.versions_page_count is None
    assert 0 < result.fuel_consumed < FUEL
    assert result.seconds > 0


def test_real_page_first_and_last_bars(sandbox: Sandbox) -> None:
    page = package(sandbox.parse_file(SHARED / "headscale-2026-07.html"))
    assert page.daily[0] == DailyCount(date=datetime.date(2026, 6, 22), count=8149)
    assert page.daily[-1] == DailyCount(date=datetime.date(2026, 7, 21), count=1553)


# -- fixtures -------------------------------------------------------------------------------------


def digest(c: str) -> str:
    return "sha256:" + c * 64


def test_full_package_page(sandbox: Sandbox) -> None:
    page = package(sandbox.parse(fixture("package-full.html")))
    assert (page.downloads, page.approximate, page.downloads_text) == (1418338, False, "1.42M")
    assert [(d.date.isoformat(), d.count) for d in page.daily] == [
        ("2026-07-19", 3310),
        ("2026-07-20", 3578),
        ("2026-07-21", 1553),
    ]
    assert page.versions == [
        VersionRow(id="1052123365", name=digest("1"), tags=["v0.27.0", "latest", "0.27"], downloads=1553),
        VersionRow(id="1047416062", name=digest("2"), tags=["main-8eec2db"], downloads=120),
    ]
    assert page.last_published == datetime.datetime(2026, 7, 21, 11, 35, 43, tzinfo=UTC)


def test_versions_list_with_separators_and_pagination(sandbox: Sandbox) -> None:
    result = sandbox.parse(fixture("versions-tagged-page2.html"), "versions")
    assert result.page == VersionsPage(
        versions=[
            VersionRow(
                id="512345678",
                name="sha256:0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9",
                tags=["v2.4.1", "latest"],
                downloads=17118,
            ),
            VersionRow(
                id="498765432",
                name="sha256:ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100",
                tags=["v2.4.0"],
                downloads=1204503,
            ),
            VersionRow(id="401122334", name=None, tags=["sha-9f8e7d6"], downloads=0),
        ],
        page_count=7,
    )


def test_owner_listing(sandbox: Sandbox) -> None:
    result = sandbox.parse(fixture("listing-org.html"), "listing")
    assert result.page == ListingPage(
        packages=[
            ListingEntry(name="widget", type="container", repository="acme/widget"),
            ListingEntry(name="tools/builder", type="container", repository="acme/build-tools"),
            ListingEntry(name="left-pad", type="npm", repository=None),
        ],
        page_count=3,
    )


def test_abbreviated_total_is_approximate(sandbox: Sandbox) -> None:
    page = package(sandbox.parse(fixture("package-abbreviated.html")))
    assert (page.downloads, page.approximate, page.downloads_text) == (14400, True, "14.4K")
    assert page.daily == []
    assert page.last_published is None


def test_missing_total_is_an_error_not_zero(sandbox: Sandbox) -> None:
    with pytest.raises(NoCountError) as caught:
        sandbox.parse(fixture("package-no-total.html"))
    assert caught.value.reason == NO_TOTAL


def test_renamed_classes(sandbox: Sandbox) -> None:
    page = package(sandbox.parse(fixture("package-renamed-classes.html")))
    assert (page.downloads, page.approximate) == (302, False)
    assert [d.count for d in page.daily] == [0, 4]
    assert page.last_published == datetime.datetime(2026, 9, 24, 20, 19, 35, tzinfo=UTC)
    assert page.versions == [
        VersionRow(id="777", name=digest("3"), tags=["v1.0.0"], downloads=2001),
        VersionRow(id="776", name=None, tags=["v0.9.0"], downloads=99),
    ]


def test_one_attribute_per_line(sandbox: Sandbox) -> None:
    page = package(sandbox.parse(fixture("package-attributes-per-line.html")))
    assert (page.downloads, page.approximate, page.downloads_text) == (2480, False, "2.5K")
    assert [(d.date.isoformat(), d.count) for d in page.daily] == [("2026-09-23", 5), ("2026-09-24", 11)]
    assert page.versions == [VersionRow(id="4242", name=None, tags=["edge"], downloads=3141592)]


def test_page_kinds_must_match(sandbox: Sandbox) -> None:
    with pytest.raises(NoCountError) as no_rows:
        sandbox.parse(fixture("package-abbreviated.html"), "versions")
    assert no_rows.value.reason == 'no version rows found: no "Version downloads" label on the page'
    with pytest.raises(NoCountError) as no_packages:
        sandbox.parse(fixture("package-abbreviated.html"), "listing")
    assert no_packages.value.reason == ("no package links found in the listing: none of its 0 links ends in "
                                        '/packages/TYPE/package/NAME, and no "No packages found" text')
    with pytest.raises(ValueError, match="unknown page kind"):
        sandbox.parse(b"", "bogus")  # type: ignore[arg-type]


def test_an_owner_without_packages_is_an_empty_listing(sandbox: Sandbox) -> None:
    from tests.support.fake_github import listing_page_html

    page = sandbox.parse(listing_page_html("acme", "orgs", [], 1).encode(), "listing").page
    assert isinstance(page, ListingPage) and page.packages == [] and page.page_count == 1


# -- hostile input --------------------------------------------------------------------------------


def headscale_like() -> str:
    return fixture("package-full.html").decode()


def test_twenty_megabytes_of_text_parse_cleanly(sandbox: Sandbox) -> None:
    filler = "<p>" + "lorem ipsum dolor sit amet " * 780_000 + "</p>"
    page = headscale_like().replace("</main>", filler + "</main>").encode()
    assert len(page) > 20_000_000
    result = sandbox.parse(page)
    assert package(result).downloads == 1418338
    assert len(package(result).versions) == 2


def test_twenty_megabytes_of_rows_exhaust_the_fuel(sandbox: Sandbox) -> None:
    row = (
        '<li class="Box-row"><a class="Label" href="/users/o/packages/container/p/{i}?tag=v{i}">v{i}</a>'
        '<span>{i},000 <span class="sr-only">Version downloads</span></span></li>\n'
    )
    rows = "".join(row.format(i=i) for i in range(1000))
    page = headscale_like().replace("</main>", "<ul>" + rows * (20_000_000 // len(rows) + 1) + "</ul></main>")
    assert len(page) > 20_000_000
    with pytest.raises(LimitExceeded) as caught:
        sandbox.parse(page.encode())
    assert caught.value.limit == "fuel"


def test_deep_nesting_parses_cleanly(sandbox: Sandbox) -> None:
    # The tree is capped at 512 levels, like browsers; the label and its heading are still found.
    page = "<div><span>" * 50_000 + '<span>Total downloads</span><h3 title="7">7</h3>'
    assert package(sandbox.parse(page.encode())).downloads == 7


def test_very_deep_nesting_exhausts_the_fuel(sandbox: Sandbox) -> None:
    # 1.5M nested elements cost about 1.8G fuel: a quarter of the default runs out.
    short = Sandbox(fuel=FUEL // 4, memory_bytes=MEMORY, timeout_seconds=5.0, cache_dir=sandbox.cache_dir)
    with pytest.raises(LimitExceeded) as caught:
        short.parse(b"<div>" * 1_500_000)
    assert caught.value.limit == "fuel"


def test_nesting_as_large_as_a_page_may_be_is_a_clear_error(sandbox: Sandbox) -> None:
    # The largest page the operator fetches, all nesting: no count, or a limit; never a crash.
    with pytest.raises((NoCountError, LimitExceeded)):
        sandbox.parse(b"<div>" * (Settings().max_response_bytes // 5))


@pytest.mark.parametrize("seed", [1, 2])
def test_binary_garbage(sandbox: Sandbox, seed: int) -> None:
    garbage = random.Random(seed).randbytes(1 << 20)
    with pytest.raises(NoCountError) as caught:
        sandbox.parse(garbage)
    assert caught.value.reason == NO_TOTAL


@pytest.mark.parametrize("page", [b"", b"<", b"\x00" * 64, b"<h3 title='1'>1</h3>", "\u2603".encode() * 1000])
def test_degenerate_pages(sandbox: Sandbox, page: bytes) -> None:
    with pytest.raises(NoCountError) as caught:
        sandbox.parse(page)
    assert caught.value.reason == NO_TOTAL


# -- limits ---------------------------------------------------------------------------------------


def limited(cache_dir: Path, fuel: int = FUEL, memory: int = MEMORY, timeout: float = 5.0) -> Sandbox:
    return Sandbox(fuel=fuel, memory_bytes=memory, timeout_seconds=timeout, cache_dir=cache_dir)


def test_tiny_fuel(cache_dir: Path) -> None:
    sb = limited(cache_dir, fuel=10_000)
    with pytest.raises(LimitExceeded) as caught:
        sb.parse(fixture("package-full.html"))
    assert caught.value.limit == "fuel"
    assert sb.loaded_from_cache


def test_memory_below_the_module_minimum(cache_dir: Path) -> None:
    with pytest.raises(LimitExceeded) as caught:
        limited(cache_dir, memory=1 << 20).parse(fixture("package-full.html"))
    assert caught.value.limit == "memory"


@pytest.mark.parametrize(
    ("memory", "page"),
    [
        # 2 MiB fits the module (1.2 MiB) but not a 4 MB page read into memory (exit status 4).
        (2 << 20, b"<p>" + b"x" * 4_000_000),
        # 16 MiB holds the 8 MB page but not its million elements (allocation failure: abort).
        (16 << 20, b"<b>x</b>" * 1_000_000),
    ],
)
def test_memory_exhausted(cache_dir: Path, memory: int, page: bytes) -> None:
    with pytest.raises(LimitExceeded) as caught:
        limited(cache_dir, memory=memory).parse(page)
    assert caught.value.limit == "memory"


def test_tiny_timeout(cache_dir: Path) -> None:
    page = headscale_like().replace("</main>", "<b>row</b>" * 500_000 + "</main>").encode()
    with pytest.raises(LimitExceeded) as caught:
        limited(cache_dir, timeout=0.005).parse(page)
    assert caught.value.limit == "time"


def test_limits_leave_the_sandbox_usable(sandbox: Sandbox, cache_dir: Path) -> None:
    with pytest.raises(LimitExceeded):
        limited(cache_dir, fuel=10_000).parse(fixture("package-full.html"))
    assert package(sandbox.parse(fixture("package-full.html"))).downloads == 1418338


# -- the runner -----------------------------------------------------------------------------------


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    yield tmp_path


def test_one_run_directory_is_reused_and_close_removes_it(sandbox: Sandbox, private_tmp: Path) -> None:
    sandbox.close()  # directories made before private_tmp
    # A package page's output is longer than a versions page's: the shorter one must not read its tail.
    assert package(sandbox.parse(fixture("package-full.html"))).downloads == 1418338
    versions = sandbox.parse(fixture("versions-tagged-page2.html"), "versions").page
    assert isinstance(versions, VersionsPage) and len(versions.versions) == 3
    with pytest.raises(NoCountError):
        sandbox.parse(fixture("package-no-total.html"))
    (work,) = private_tmp.iterdir()
    assert sorted(str(p.relative_to(work)) for p in work.rglob("*")) == [
        "page", "page/page.html", "stderr", "stdout"]
    assert (work / "page" / "page.html").read_bytes() == fixture("package-no-total.html")
    limited = Sandbox(fuel=10_000, memory_bytes=MEMORY, timeout_seconds=5.0, cache_dir=sandbox.cache_dir)
    with pytest.raises(LimitExceeded):
        limited.parse(fixture("package-full.html"))
    assert len(list(private_tmp.iterdir())) == 2
    sandbox.close()
    limited.close()
    assert list(private_tmp.iterdir()) == []


def test_disk_cache_and_corrupt_cache_file(tmp_path: Path) -> None:
    first = Sandbox(fuel=FUEL, memory_bytes=MEMORY, timeout_seconds=5.0, cache_dir=tmp_path)
    assert package(first.parse(fixture("package-full.html"))).downloads == 1418338
    assert not first.loaded_from_cache
    (cached,) = tmp_path.glob("parser-*.cwasm")

    second = Sandbox(fuel=FUEL, memory_bytes=MEMORY, timeout_seconds=5.0, cache_dir=tmp_path)
    assert package(second.parse(fixture("package-full.html"))).downloads == 1418338
    assert second.loaded_from_cache

    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0xFF
    cached.write_bytes(bytes(data))
    third = Sandbox(fuel=FUEL, memory_bytes=MEMORY, timeout_seconds=5.0, cache_dir=tmp_path)
    assert package(third.parse(fixture("package-full.html"))).downloads == 1418338
    assert not third.loaded_from_cache

    # The damaged file was replaced by a good one.
    fourth = Sandbox(fuel=FUEL, memory_bytes=MEMORY, timeout_seconds=5.0, cache_dir=tmp_path)
    fourth.load()
    assert fourth.loaded_from_cache
    assert [p.name for p in tmp_path.iterdir()] == [cached.name]


def test_no_cache_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    sb = Sandbox(fuel=FUEL, memory_bytes=MEMORY, timeout_seconds=5.0, cache_dir=None)
    assert package(sb.parse(fixture("package-abbreviated.html"))).downloads == 14400
    assert not sb.loaded_from_cache


def test_module_load_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_module, "module_bytes", lambda: b"\0asm not really")
    with pytest.raises(ModuleLoadError) as caught:
        Sandbox(fuel=FUEL, memory_bytes=MEMORY, timeout_seconds=5.0, cache_dir=None).parse(b"<p>")
    assert caught.value.reason.startswith("cannot load the parser module")


def test_output_that_does_not_match_the_model(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    # A package page's JSON checked against the versions model: what a changed parser would look like.
    monkeypatch.setitem(sandbox_module._MODELS, "package", VersionsPage)
    with pytest.raises(BadOutputError) as caught:
        sandbox.parse(fixture("package-full.html"))
    assert caught.value.reason.startswith("parser output does not match the package model")


def test_output_over_the_cap_is_an_error(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_module, "_MAX_STDOUT", 100)
    with pytest.raises(BadOutputError) as caught:
        sandbox.parse(fixture("package-full.html"))
    assert caught.value.reason == "parser output is unreasonably large (over 100 bytes)"


def test_every_failure_is_a_parser_error() -> None:
    for error in (NoCountError, BadOutputError, ModuleLoadError, sandbox_module.ParserCrashError):
        assert issubclass(error, ParserError)
    assert LimitExceeded("time", "slow").limit == "time"
    assert LimitExceeded("time", "slow").reason == "slow"


def test_from_settings(tmp_path: Path) -> None:
    settings = Settings(wasm_fuel=5_000_000, wasm_memory_bytes=8 << 20, wasm_timeout_seconds=2.5, cache_dir=tmp_path)
    sb = Sandbox.from_settings(settings)
    assert (sb.fuel, sb.memory_bytes, sb.timeout_seconds, sb.cache_dir) == (5_000_000, 8 << 20, 2.5, tmp_path)


def test_threads_share_one_sandbox(sandbox: Sandbox) -> None:
    pages: list[tuple[bytes, Kind]] = [
        (fixture("package-full.html"), "package"),
        (fixture("versions-tagged-page2.html"), "versions"),
        (fixture("listing-org.html"), "listing"),
        (fixture("package-renamed-classes.html"), "package"),
    ]
    expected = [sandbox.parse(p, k).page for p, k in pages]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: sandbox.parse(*pages[i % 4]).page, range(48)))
    assert results == [expected[i % 4] for i in range(48)]


async def test_asyncio_to_thread(sandbox: Sandbox) -> None:
    page = fixture("package-full.html")
    results = await asyncio.gather(*(asyncio.to_thread(sandbox.parse, page) for _ in range(16)))
    assert {package(r).downloads for r in results} == {1418338}
    # The same work whatever the thread (within the noise of hash seeds drawn from WASI's random_get).
    assert max(r.fuel_consumed for r in results) < min(r.fuel_consumed for r in results) * 1.01
