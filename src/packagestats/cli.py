"""The `packagestats` console script: run, parse, scrape, history, crd."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import SecretStr

from packagestats import api
from packagestats.settings import Settings, load


def _run(settings: Settings, verbose: bool) -> int:
    import kopf
    from kopf._core.engines.peering import Identity  # kopf exports the function, not its NewType

    from packagestats import leader, operator

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    namespaces = [n.strip() for n in settings.namespaces.split(",") if n.strip()]
    liveness = f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None
    asyncio.run(kopf.operator(
        registry=operator.registry,
        memo=kopf.Memo(config=settings),
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=True,  # kopf's peering elects nothing: replicas elect a leader on a Lease (leader.py)
        # Our own identity: kopf's default asks the passwd database for the user, and the image's
        # numeric user 65532 has no entry there.
        identity=Identity(leader.default_identity(settings.pod_name)),
        liveness_endpoint=liveness,
    ))
    return 0


def _parse(settings: Settings, paths: list[Path], kind: Literal["package", "versions", "listing"],
           parser: Path | None = None) -> int:
    """One page: its JSON. Several: one JSON line per page, `{"file", "result"}` or `{"file", "error"}`.
    `parser`: a candidate module instead of the built-in one (checked as the operator checks it)."""
    from packagestats.sandbox import ModuleLoadError, ParserError, Sandbox

    sandbox = Sandbox.from_settings(settings)
    if parser is not None:
        try:
            sandbox.use(sandbox.compile(parser.read_bytes()))
        except OSError as e:
            print(f"packagestats: cannot read {parser}: {e.strerror}", file=sys.stderr)
            return 2
        except ModuleLoadError as e:
            print(f"packagestats: {parser}: refused: {e.reason}", file=sys.stderr)
            return 2
        print(f"packagestats: parser {sandbox.info.label} from {parser}", file=sys.stderr)
    failed = 0
    for path in paths:
        try:
            page = path.read_bytes()
        except OSError as e:
            print(f"packagestats: cannot read {path}: {e.strerror}", file=sys.stderr)
            return 2
        try:
            result = sandbox.parse(page, kind)
        except ParserError as e:
            print(f"packagestats: {path}: {e.reason}", file=sys.stderr)
            failed += 1
            if len(paths) > 1:
                print(json.dumps({"file": str(path), "error": e.reason}))
            continue
        if len(paths) == 1:
            print(result.page.model_dump_json(indent=2))
        else:
            print(json.dumps({"file": str(path), "result": result.page.model_dump(mode="json")}))
    return 1 if failed else 0


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


def _history_db(url: str, name: str, namespace: str, output: str, plot: Path | None,
                since: datetime.date | None, until: datetime.date | None) -> int:
    from packagestats import history
    from packagestats.history_db import HistoryDB, HistoryError

    async def read() -> history.ResourceHistory | None:
        db = HistoryDB(url)
        try:
            return await db.read(namespace, name, since, until)
        finally:
            await db.aclose()

    try:
        found = asyncio.run(read())
    except HistoryError as e:
        print(f"packagestats: history database: {e.reason}: {e.message}", file=sys.stderr)
        return 1
    if found is None:
        print(f"packagestats: no history of {api.PLURAL}/{name} in namespace {namespace} in the database",
              file=sys.stderr)
        return 1
    render = {"table": history.db_table, "json": history.db_json, "csv": history.db_csv}[output]
    return _show(render(found), plot, lambda path: history.db_plot(found, path))


def _history(name: str, namespace: str | None, output: str, plot: Path | None, db: str | None = None,
             since: datetime.date | None = None, until: datetime.date | None = None) -> int:
    import kubernetes

    from packagestats import history, kube

    namespace = namespace or _current_namespace()
    url = db or (load().history_url or SecretStr("")).get_secret_value()
    if url:
        return _history_db(url, name, namespace, output, plot, since, until)
    with kube.new_api_client() as client:
        try:
            obj = cast(dict[str, Any], kubernetes.client.CustomObjectsApi(client).get_namespaced_custom_object(
                api.GROUP, api.VERSION, namespace, api.PLURAL, name))
        except kubernetes.client.ApiException as e:
            reason = "not found" if e.status == 404 else f"{e.status} {e.reason}"
            print(f"packagestats: {api.PLURAL}/{name} in namespace {namespace}: {reason}", file=sys.stderr)
            return 1
    series = history.Series.from_object(obj, since, until)
    render = {"table": history.table, "json": history.as_json, "csv": history.as_csv}[output]
    return _show(render(series), plot, lambda path: history.plot(series, path))


def _show(text: str, plot: Path | None, draw: Callable[[Path], None]) -> int:
    """Print a rendered history and draw its plot when asked; the exit code."""
    sys.stdout.write(text)
    if plot is not None:
        try:
            draw(plot)
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
    parse.add_argument("file", type=Path, nargs="+", metavar="PAGE")
    parse.add_argument("--kind", choices=["package", "versions", "listing"], default="package")
    parse.add_argument("--parser", type=Path, metavar="FILE.wasm",
                       help="a candidate parser module instead of the built-in one")
    scrape = sub.add_parser("scrape", help="fetch and parse one package page (no cluster needed)")
    scrape.add_argument("target", metavar="OWNER/PACKAGE")
    scrape.add_argument("--type", default="container", choices=list(api.PACKAGE_TYPES))
    scrape.add_argument("--repository")
    hist = sub.add_parser("history", help="a resource's downloads over time, from the history database or "
                                          "the cluster")
    hist.add_argument("name")
    hist.add_argument("-n", "--namespace")
    hist.add_argument("--db", metavar="URL", help="the history database (default: PACKAGESTATS_HISTORY_URL; "
                                                  "neither: the resource's status)")
    hist.add_argument("--since", type=datetime.date.fromisoformat, metavar="YYYY-MM-DD")
    hist.add_argument("--until", type=datetime.date.fromisoformat, metavar="YYYY-MM-DD")
    hist.add_argument("-o", "--output", choices=["table", "json", "csv"], default="table")
    hist.add_argument("--plot", type=Path, metavar="FILE", help="also write a chart (.png or .svg)")
    sub.add_parser("crd", help="print the CustomResourceDefinition")
    args = parser.parse_args(argv)

    if args.command == "crd":
        from packagestats import crd

        sys.stdout.write(crd.render())
        return 0
    if args.command == "history":
        return _history(args.name, args.namespace, args.output, args.plot, args.db, args.since, args.until)
    settings = load()
    if args.command == "run":
        return _run(settings, args.verbose)
    if args.command == "parse":
        return _parse(settings, args.file, args.kind, args.parser)
    return asyncio.run(_scrape(settings, args.target, args.type, args.repository))


if __name__ == "__main__":
    sys.exit(main())
