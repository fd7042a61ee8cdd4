"""Writes the pages the tests generate, and drifted variants of every page, for `wasm/compare.sh`.

    .venv/bin/python wasm/compare_pages.py OUT_DIR PAGE...

Generated: the GitHub stand-in's package, versions and listing pages (tests/support/fake_github.py),
with and without a total, abbreviated or exact, and the page of benchmarks/parser.py. Drifted: each
given page and each generated one with classes and ids removed, list items as divs and one attribute
per line (`restructured` in wasm/tests/pages.rs), without its total block, and cut in half.
"""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.parser import build_page
from tests.support import fake_github as fg

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def restructured(page: bytes) -> bytes:
    text = re.sub(r' (?:class|id)="[^"]*"', "", page.decode("utf-8", "replace"))
    return text.replace("<li", "<div").replace("</li>", "</div>").replace(" href=", "\n      href=").encode()


def generated() -> dict[str, bytes]:
    pages: dict[str, bytes] = {"benchmark.html": build_page()}
    for total in (0, 7, 1234, 14_400, 1_418_338):
        for count in (0, 1, 5, 45):
            pkg = fg.Package(owner="acme", name="tools/builder", repository="builder", total=total,
                             daily=[(i * 37) % 11 for i in range(30)], chart_end=NOW.date(),
                             versions=fg.make_versions(count, now=NOW), last_published=NOW, issues=3)
            key = f"gen-{total}-{count}"
            pages[f"{key}-package.html"] = fg.package_page_html(pkg, now=NOW).encode()
            pages[f"{key}-nototal.html"] = fg.package_page_html(pkg, with_total=False, now=NOW).encode()
            for page in (1, 2):
                pages[f"{key}-versions-{page}.html"] = fg.versions_page_html(pkg, page, per_page=20).encode()
            listing = [fg.Package(owner="acme", name=f"p{i}", repository="r" if i % 2 else None)
                       for i in range(count)]
            pages[f"{key}-listing.html"] = fg.listing_page_html("acme", "orgs", listing, 1, per_page=20).encode()
    return pages


def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    pages = generated()
    for path in sys.argv[2:]:
        pages[Path(path).name] = Path(path).read_bytes()
    for name, page in pages.items():
        stem = name.removesuffix(".html")
        (out / f"{stem}.html").write_bytes(page)
        (out / f"{stem}-restructured.html").write_bytes(restructured(page))
        (out / f"{stem}-stripped.html").write_bytes(fg.strip_total(page))
        (out / f"{stem}-half.html").write_bytes(page[: len(page) // 2])
    print(f"compare_pages.py: {len(pages) * 4} pages in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
