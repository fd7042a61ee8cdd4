"""The `packagestats` console script: run, parse, scrape, crd."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any, Literal

from packagestats import api
from packagestats.settings import Settings, load


def _run(settings: Settings, verbose: bool) -> int:
    import kopf

    from packagestats import operator

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    namespaces = [n.strip() for n in settings.namespaces.split(",") if n.strip()]
    liveness = f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None
    asyncio.run(kopf.operator(
        registry=operator.registry,
        memo=kopf.Memo(config=settings),
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=True,  # one replica; no peering objects needed
        liveness_endpoint=liveness,
    ))
    return 0


def _parse(settings: Settings, path: Path, kind: Literal["package", "versions", "listing"]) -> int:
    from packagestats.sandbox import ParserError, Sandbox

    try:
        page = path.read_bytes()
    except OSError as e:
        print(f"packagestats: cannot read {path}: {e.strerror}", file=sys.stderr)
        return 2
    try:
        result = Sandbox.from_settings(settings).parse(page, kind)
    except ParserError as e:
        print(f"packagestats: {path}: {e.reason}", file=sys.stderr)
        return 1
    print(result.page.model_dump_json(indent=2))
    return 0


async def _scrape(settings: Settings, target: str, type_: str, repository: str | None) -> int:
    from packagestats.github import GitHubClient
    from packagestats.reconcile import Scraper
    from packagestats.sandbox import Sandbox
    from packagestats.status import Failure

    owner, _, name = target.partition("/")
    if not owner or not name:
        print("packagestats: expected OWNER/PACKAGE", file=sys.stderr)
        return 2
    ref = api.PackageRef(name=name, type=type_, repository=repository)
    async with GitHubClient(settings) as github:
        outcome = await Scraper(settings, github, Sandbox.from_settings(settings)).scrape_package(owner, ref)
    if isinstance(outcome, Failure):
        print(f"packagestats: {outcome.reason}: {outcome.message}", file=sys.stderr)
        return 1
    out: dict[str, Any] = dataclasses.asdict(outcome)
    print(json.dumps(out, indent=2, default=_json_default))
    return 0


def _json_default(value: object) -> object:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"not serializable: {type(value).__name__}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="packagestats", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the operator against the current kubeconfig or in-cluster config")
    run.add_argument("-v", "--verbose", action="store_true")
    parse = sub.add_parser("parse", help="parse a saved GitHub page and print the JSON result")
    parse.add_argument("file", type=Path)
    parse.add_argument("--kind", choices=["package", "versions", "listing"], default="package")
    scrape = sub.add_parser("scrape", help="fetch and parse one package page (no cluster needed)")
    scrape.add_argument("target", metavar="OWNER/PACKAGE")
    scrape.add_argument("--type", default="container", choices=list(api.PACKAGE_TYPES))
    scrape.add_argument("--repository")
    sub.add_parser("crd", help="print the CustomResourceDefinition")
    args = parser.parse_args(argv)

    if args.command == "crd":
        from packagestats import crd

        sys.stdout.write(crd.render())
        return 0
    settings = load()
    if args.command == "run":
        return _run(settings, args.verbose)
    if args.command == "parse":
        return _parse(settings, args.file, args.kind)
    return asyncio.run(_scrape(settings, args.target, args.type, args.repository))


if __name__ == "__main__":
    sys.exit(main())
