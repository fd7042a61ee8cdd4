"""Benchmark of the page parser on a ~240 KB package page; prints figures, asserts nothing.

    .venv/bin/python benchmarks/parser.py [--runs N] [--compile-runs N]

(a) native: the parser crate built for the host (`wasm/examples/bench.rs`, rustup's cargo), timing
    its own loop of parse + JSON;
(a') native, a process per page: the parser program built for the host, run once per page the way the
    sandbox runs the module once per page (for scale; the targets are against (a));
(b) the sandbox: `Sandbox.parse` with the module compiled once (a fresh store, temp dirs, limits,
    model validation per call);
(c) the sandbox compiling the module for every call (new Engine + Module, no disk cache);
(s) selectolax (lexbor) and (l) lxml, unsandboxed, in this process: parse the same page and take the same
    values (the total's title after "Total downloads", the sparkline's data-date/data-merge-count, each
    "Version downloads" row's count, id and tags), checked equal to (b)'s. Install them with
    `.venv/bin/pip install -e '.[bench]'`; without them those lines are skipped.
Targets: (b) <= 1.5x (s); (c)/(b) >= 20.

--breakdown also times the module's run alone (instantiated store to exit) with each combination of
fuel and epoch metering, so that (b) splits into wasm execution, metering and the runner's own costs
(temp directory, store, validation).
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder comes first on sys.path, where benchmarks/operator.py would shadow the
# standard library's `operator` for every import below.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import hashlib  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import wasmtime  # noqa: E402

from packagestats.pages import PackagePage  # noqa: E402
from packagestats.sandbox import Sandbox, module_bytes  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_PAGE = REPO / "tests" / "data" / "ghcr-pages" / "headscale-2026-07.html"
FALLBACK_PAGE = REPO / "tests" / "fixtures" / "pages" / "package-full.html"
TARGET_BYTES = 240_000

# One row of "Recent tagged image versions" in the markup of GitHub's 2026 package pages.
_COPY_ICON = (
    "M0 6.75C0 5.784.784 5 1.75 5h1.5a.75.75 0 0 1 0 1.5h-1.5a.25.25 0 0 0-.25.25v7.5c0 .138.112.25.25.25"
    "h7.5a.25.25 0 0 0 .25-.25v-1.5a.75.75 0 0 1 1.5 0v1.5A1.75 1.75 0 0 1 9.25 16h-7.5A1.75 1.75 0 0 1 0 14.25Z"
)
_DOWNLOAD_ICON = (
    "M2.75 14A1.75 1.75 0 0 1 1 12.25v-2.5a.75.75 0 0 1 1.5 0v2.5c0 .138.112.25.25.25h10.5a.25.25 0 0 0"
    " .25-.25v-2.5a.75.75 0 0 1 1.5 0v2.5A1.75 1.75 0 0 1 13.25 14Z"
)
ROW = """        <li data-view-component="true" class="Box-row">  <div class="d-flex" >
    <div class="col-10 d-flex flex-auto flex-column" style="overflow: hidden;">
          <div class="d-inline-flex flex-wrap">
              <a class="Label mr-1 mb-2 text-normal"
                 href="/users/juanfont/packages/container/headscale/{id}?tag=v0.{i}.0">v0.{i}.0</a>
              <a class="Label mr-1 mb-2 text-normal"
                 href="/users/juanfont/packages/container/headscale/{id}?tag=0.{i}">0.{i}</a>
          </div>
      <div class="css-truncate css-truncate-target d-block" style="max-width: 540px;">
        <small class="color-fg-muted">
            Published {i} days ago &middot; Digest
            <span class="Details js-details-container">
              <span class="hidden-text-expander inline">
                <button type="button" class="ellipsis-expander js-details-target"
                        aria-expanded="false">&hellip;</button>
              </span>
              <div class="Details-content--hidden mt-2">
                <code class="d-block color-bg-subtle border-0 rounded-2 f6 lh-default">
                  <clipboard-copy aria-label="Copy" role="button" tabindex="0" value="sha256:{digest}"
                                  class="CopyBlock d-block position-relative px-2 py-1 rounded-2">
                    <span class="color-fg-muted">sha256:{digest}</span>
                    <svg aria-hidden="true" height="16" viewBox="0 0 16 16" version="1.1" width="16"
                         class="octicon octicon-copy"><path d="{copy_icon}"></path></svg>
                  </clipboard-copy>
                </code>
              </div>
            </span>
        </small>
      </div>
    </div>
    <div class="d-flex flex-items-center">
      <span class="d-flex flex-items-center gap-1 color-fg-muted overflow-hidden f6 tmp-mr-3"
            style="white-space:nowrap;">
        <svg aria-hidden="true" height="16" viewBox="0 0 16 16" version="1.1" width="16"
             class="octicon octicon-download"><path d="{download_icon}"></path></svg>
        {count:,}
        <span class="sr-only">Version downloads</span>
      </span>
    </div>
  </div>
</li>
"""


def build_page() -> bytes:
    """The headscale capture (or the full-page fixture) padded with version rows to ~240 KB."""
    base = (SHARED_PAGE if SHARED_PAGE.is_file() else FALLBACK_PAGE).read_text()
    rows: list[str] = []
    size = len(base)
    i = 0
    while size < TARGET_BYTES:
        digest = hashlib.sha256(str(i).encode()).hexdigest()
        row = ROW.format(
            id=1_000_000 + i,
            i=i,
            digest=digest,
            count=17118 * (i + 1),
            copy_icon=_COPY_ICON,
            download_icon=_DOWNLOAD_ICON,
        )
        rows.append(row)
        size += len(row)
        i += 1
    block = '<div class="Box"><ul>\n' + "".join(rows) + "</ul></div>\n"
    return base.replace("</main>", block + "</main>", 1).encode()


def native_median_ms(page_path: Path, runs: int) -> float:
    cargo = shutil.which("cargo", path=str(Path.home() / ".cargo" / "bin") + os.pathsep + os.environ["PATH"])
    if cargo is None:
        raise SystemExit("cargo not found: the native figure needs the host Rust toolchain")
    manifest = REPO / "wasm" / "Cargo.toml"
    build = [cargo, "build", "--quiet", "--release", "--manifest-path", str(manifest)]
    subprocess.run([*build, "--example", "bench", "--bin", "packagestats-parser"], check=True)
    binary = REPO / "wasm" / "target" / "release" / "examples" / "bench"
    out = subprocess.run(
        [str(binary), "package", str(page_path), str(runs)], check=True, capture_output=True, text=True
    ).stdout
    match = re.search(r"median_ms=([0-9.]+)", out)
    if match is None:
        raise SystemExit(f"unexpected output of the native bench: {out!r}")
    return float(match.group(1))


def native_process_median_ms(page_path: Path, runs: int) -> float:
    """The native parser program (built by `native_median_ms`) run as one process per page."""
    command = [str(REPO / "wasm" / "target" / "release" / "packagestats-parser"), "package", str(page_path)]
    times: list[float] = []
    for i in range(runs + 5):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        if i >= 5:
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def sandbox_median_ms(sandbox: Sandbox, page: bytes, runs: int) -> tuple[float, int]:
    for _ in range(5):  # warm up: first-call costs (ticker thread, page cache) are not per-page costs
        sandbox.parse(page)
    times: list[float] = []
    fuel = 0
    for _ in range(runs):
        start = time.perf_counter()
        result = sandbox.parse(page)
        times.append(time.perf_counter() - start)
        fuel = result.fuel_consumed
    return statistics.median(times) * 1000, fuel


def run_only_median_ms(page_path: Path, fuel: bool, epoch: bool, runs: int) -> float:
    """The module's `_start` alone, from an instantiated store to its exit, with the given metering."""
    config = wasmtime.Config()
    config.consume_fuel = fuel
    config.epoch_interruption = epoch
    engine = wasmtime.Engine(config)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    pre = linker.instantiate_pre(wasmtime.Module(engine, module_bytes()))
    times: list[float] = []
    for i in range(runs + 5):
        wasi = wasmtime.WasiConfig()
        wasi.argv = ["packagestats-parser", "package", f"/page/{page_path.name}"]
        wasi.preopen_dir(str(page_path.parent), "/page", False)
        wasi.stdout_custom = len
        store = wasmtime.Store(engine)
        if fuel:
            store.set_fuel(2_000_000_000)
        if epoch:
            store.set_epoch_deadline(1_000_000)
        store.set_wasi(wasi)
        start_func = pre.instantiate(store).exports(store).get("_start")
        assert isinstance(start_func, wasmtime.Func)
        start = time.perf_counter()
        try:
            start_func(store)
        except wasmtime.ExitTrap as e:
            assert e.code == 0, f"parser exited with {e.code}"
        if i >= 5:
            times.append(time.perf_counter() - start)
        del store
    return statistics.median(times) * 1000


def _count(text: str) -> int:
    return int(re.sub(r"[^0-9]", "", text) or "0")


def selectolax_values(page: bytes) -> tuple[int, list[tuple[str, int]], list[tuple[str | None, list[str], int]]]:
    """The values (b) gives, read with selectolax as a script would: labels, attributes, rows."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(page)
    total = 0
    for span in tree.css("span"):
        if span.text(strip=True) == "Total downloads":
            heading = span.next
            while heading is not None and heading.tag != "h3":
                heading = heading.next
            if heading is not None:
                total = int(heading.attributes.get("title") or 0)
                break
    daily = sorted((n.attributes["data-date"] or "", int(n.attributes["data-merge-count"] or 0))
                   for n in tree.css("[data-date][data-merge-count]"))
    rows = []
    for label in tree.css("span.sr-only"):
        if label.text(strip=True) != "Version downloads" or label.parent is None:
            continue
        holder = label.parent
        row: Any = holder
        while row is not None and row.tag != "li":
            row = row.parent
        if row is None:
            continue
        count = _count(holder.text(deep=False))
        tags = [a.text(strip=True) for a in row.css("a[href*='?tag=']")]
        href = next((a.attributes.get("href") or "" for a in row.css("a[href*='?tag=']")), "")
        rows.append((href.split("?")[0].rsplit("/", 1)[-1] or None, tags, count))
    return total, daily, rows


def lxml_values(page: bytes) -> tuple[int, list[tuple[str, int]], list[tuple[str | None, list[str], int]]]:
    """The same values with lxml's HTML parser and XPath."""
    import lxml.html

    tree = lxml.html.fromstring(page)
    titles = tree.xpath("//span[normalize-space()='Total downloads']/following-sibling::h3[1]/@title")
    total = int(titles[0]) if titles else 0
    daily = sorted((n.get("data-date") or "", int(n.get("data-merge-count") or 0))
                   for n in tree.xpath("//*[@data-date and @data-merge-count]"))
    rows = []
    for label in tree.xpath("//span[normalize-space()='Version downloads']"):
        holder = label.getparent()
        rows_up = holder.xpath("ancestor::li[1]")
        if not rows_up:
            continue
        count = _count((holder.text or "") + "".join(c.tail or "" for c in holder))
        links = rows_up[0].xpath(".//a[contains(@href, '?tag=')]")
        tags = [a.text_content().strip() for a in links]
        href = links[0].get("href") if links else ""
        rows.append((href.split("?")[0].rsplit("/", 1)[-1] or None, tags, count))
    return total, daily, rows


def native_python_median_ms(extract: object, page: bytes, runs: int) -> float:
    assert callable(extract)
    for _ in range(5):
        extract(page)
    times: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        extract(page)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def compile_per_call_median_ms(page: bytes, runs: int) -> float:
    times: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        Sandbox(fuel=2_000_000_000, memory_bytes=256 << 20, timeout_seconds=5.0, cache_dir=None).parse(page)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300, help="timed calls for (a) and (b)")
    parser.add_argument("--compile-runs", type=int, default=7, help="timed calls for (c)")
    parser.add_argument("--breakdown", action="store_true", help="also time the module's run by metering")
    args = parser.parse_args()

    page = build_page()
    with tempfile.TemporaryDirectory(prefix="packagestats-bench-") as tmp:
        page_path = Path(tmp) / "page.html"
        page_path.write_bytes(page)
        sandbox = Sandbox(fuel=2_000_000_000, memory_bytes=256 << 20, timeout_seconds=5.0, cache_dir=Path(tmp))
        check = sandbox.parse(page).page
        assert isinstance(check, PackagePage)
        print(f"page: {len(page):,} bytes, {len(check.versions)} version rows, total {check.downloads}")

        expected = (check.downloads, [(d.date.isoformat(), d.count) for d in check.daily],
                    [(v.id, v.tags, v.downloads) for v in check.versions])
        others: dict[str, float] = {}
        for label, extract in (("selectolax", selectolax_values), ("lxml", lxml_values)):
            try:
                got = extract(page)
            except ImportError:
                print(f"{label} is not installed (pip install -e '.[bench]'): skipped")
                continue
            if got != expected:
                raise SystemExit(f"{label} read other values than the sandbox: {got[0]}, {len(got[2])} rows")
            others[label] = native_python_median_ms(extract, page, args.runs)

        a = native_median_ms(page_path, args.runs)
        b, fuel = sandbox_median_ms(sandbox, page, args.runs)
        a_process = native_process_median_ms(page_path, args.runs)
        c = compile_per_call_median_ms(page, args.compile_runs)
        runs_by_metering = (
            {
                (fuel, epoch): run_only_median_ms(page_path, fuel, epoch, args.runs)
                for fuel in (True, False)
                for epoch in (True, False)
            }
            if args.breakdown
            else {}
        )

    print(f"(a) native parse + JSON          median {a:8.3f} ms  ({args.runs} runs)")
    print(f"(a') native, a process per page median {a_process:8.3f} ms  ({args.runs} runs)")
    print(f"(b) Sandbox.parse                median {b:8.3f} ms  ({args.runs} runs, {fuel:,} fuel)")
    print(f"(c) Sandbox.parse, compile/call  median {c:8.3f} ms  ({args.compile_runs} runs)")
    for label, ms in others.items():
        print(f"({label[0]}) {label:<27s}median {ms:8.3f} ms  ({args.runs} runs, unsandboxed, same values)")
    if "selectolax" in others:
        s = others["selectolax"]
        print(f"b/s = {b / s:.2f}   (target <= 1.5: {'met' if b <= 1.5 * s else 'missed'})")
    print(f"b/a = {b / a:.2f}   b/a' = {b / a_process:.2f}")
    print(f"c/b = {c / b:.1f}   (target >= 20)")
    if runs_by_metering:
        print("module run alone (store instantiated, page read through WASI, JSON written):")
        for (fuel, epoch), ms in runs_by_metering.items():
            metering = f"fuel {'on ' if fuel else 'off'}, epoch {'on ' if epoch else 'off'}"
            print(f"  {metering}: median {ms:7.3f} ms  ({ms / a:.2f}x a)")
        metered = runs_by_metering[(True, True)]
        print(f"runner's own costs (b minus the metered run): {b - metered:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
