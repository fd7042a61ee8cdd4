#!/usr/bin/env python3
"""Lays out a parser module as the artifact the operator follows through Flux: `parser.wasm` and
`selftest/KIND-NAME.{html,json}` (a page and what this module must print for it), checked as the
operator checks it. `make parser-artifact` pushes the directory with hack/oci.py.

    python wasm/artifact.py OUT_DIR [--parser FILE.wasm] [--page KIND-NAME.html=PATH ...]

Without --page, the newest real captured package page of tests/data/ghcr-pages is the self-test.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from packagestats.parser_source import Refused, artifact_files
from packagestats.sandbox import ParserError, Sandbox, module_bytes
from packagestats.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PAGE = ("package-headscale.html", REPO / "tests" / "data" / "ghcr-pages" / "headscale-2026-07.html")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--parser", type=Path, help="the module (default: src/packagestats/parser.wasm)")
    p.add_argument("--page", action="append", default=[], metavar="KIND-NAME.html=PATH")
    args = p.parse_args()
    pages = {}
    for spec in args.page or [f"{DEFAULT_PAGE[0]}={DEFAULT_PAGE[1]}"]:
        name, _, path = spec.partition("=")
        pages[name] = Path(path).read_bytes()
    wasm = args.parser.read_bytes() if args.parser else module_bytes()
    try:
        files = artifact_files(Sandbox.from_settings(Settings()), wasm, pages)
    except (ParserError, Refused, ValueError) as e:
        print(f"artifact.py: {e}", file=sys.stderr)
        return 1
    shutil.rmtree(args.out, ignore_errors=True)
    for name, data in files.items():
        (args.out / name).parent.mkdir(parents=True, exist_ok=True)
        (args.out / name).write_bytes(data)
    print(f"artifact.py: {args.out}: {', '.join(sorted(files))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
