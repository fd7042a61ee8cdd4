"""The `packagestats` console script: run, parse, scrape, history, crd."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any, Literal, cast

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


def _current_namespace() -> str:
    import kubernetes

    try:
        _, active = kubernetes.config.list_kube_config_contexts()
        return str(active["context"].get("namespace") or "default")
    except (kubernetes.config.ConfigException, KeyError, TypeError):
        return "default"  # in a pod, or no kubeconfig: as kubectl does


def _history(name: str, namespace: str | None, output: str, plot: Path | None) -> int:
    import kubernetes

    from packagestats import history, kube

    namespace = namespace or _current_namespace()
    with kube.new_api_client() as client:
        try:
            obj = cast(dict[str, Any], kubernetes.client.CustomObjectsApi(client).get_namespaced_custom_object(
                api.GROUP, api.VERSION, namespace, api.PLURAL, name))
        except kubernetes.client.ApiException as e:
            reason = "not found" if e.status == 404 else f"{e.status} {e.reason}"
            print(f"packagestats: {api.PLURAL}/{name} in namespace {namespace}: {reason}", file=sys.stderr)
            return 1
    series = history.Series.from_object(obj)
    render = {"table": history.table, "json": history.as_json, "csv": history.as_csv}[output]
    sys.stdout.write(render(series))
    if plot is not None:
        try:
            history.plot(series, plot)
        except (ValueError, RuntimeError) as e:
            print(f"packagestats: {e}", file=sys.stderr)
            return 2
        print(f"wrote {plot}", file=sys.stderr)
    return 0


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
    hist = sub.add_parser("history", help="a resource's downloads over time, from the cluster")
    hist.add_argument("name")
    hist.add_argument("-n", "--namespace")
    hist.add_argument("-o", "--output", choices=["table", "json", "csv"], default="table")
    hist.add_argument("--plot", type=Path, metavar="FILE", help="also write a chart (.png or .svg)")
    sub.add_parser("crd", help="print the CustomResourceDefinition")
    args = parser.parse_args(argv)

    if args.command == "crd":
        from packagestats import crd

        sys.stdout.write(crd.render())
        return 0
    if args.command == "history":
        return _history(args.name, args.namespace, args.output, args.plot)
    settings = load()
    if args.command == "run":
        return _run(settings, args.verbose)
    if args.command == "parse":
        return _parse(settings, args.file, args.kind)
    return asyncio.run(_scrape(settings, args.target, args.type, args.repository))


if __name__ == "__main__":
    sys.exit(main())
