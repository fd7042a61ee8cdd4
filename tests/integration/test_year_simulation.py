"""A year of a 200-package resource: 365 scrapes with a clock that advances a day at a time, each
written as the operator writes it (status.build -> the history database -> server-side apply) to the
real apiserver and to each real database. The status stays under its budget whatever the age; the
database holds every day of every package; `packagestats history` returns them."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from packagestats import api, kube, status
from packagestats.api import DailyCount, PackageRef, VersionDownloads
from packagestats.history_db import HistoryDB, package_days
from tests.support.cluster import Cluster
from tests.support.databases import Postgres, postgres_server  # noqa: F401 - fixtures
from tests.support.operator import apply_packagestats, get
from tests.support.status_budget import compact_size

pytestmark = pytest.mark.cluster

DAYS = int(os.environ.get("PACKAGESTATS_YEAR_DAYS", "365"))  # fewer: a quick look while developing
START = datetime.datetime(2025, 1, 1, 23, 30, tzinfo=datetime.UTC)


def per_day(i: int, day: datetime.date) -> int:
    return 100 + (i * 7 + day.toordinal() * 13) % 900  # deterministic, varying


_CHART: dict[tuple[int, datetime.date], DailyCount] = {}  # a day's bar, made once: it stays what it was


def outcome(i: int, now: datetime.datetime, total: int) -> status.Scraped:
    today = now.date()
    days = [today - datetime.timedelta(days=k) for k in range(29, -1, -1)]
    daily = [_CHART.get((i, d)) or _CHART.setdefault((i, d), DailyCount(date=d, count=per_day(i, d))) for d in days]
    _CHART.pop((i, today - datetime.timedelta(days=30)), None)
    versions = [VersionDownloads(id=str(v), tags=[f"v1.{v}"], downloads=total // (v + 2)) for v in range(5)]
    return status.Scraped(url=f"https://github.com/acme/repo/pkgs/container/p{i:03d}", downloads=total,
                          daily=daily, versions=versions)


async def test_a_year_of_scrapes(crd: Cluster, namespace: str, tmp_path: Path,
                                 postgres_server: Postgres | None) -> None:  # noqa: F811
    refs = [PackageRef(name=f"p{i:03d}-{'x' * 60}", repository="repo") for i in range(api.MAX_PACKAGES)]
    apply_packagestats(crd, namespace, "year", {"owner": "acme", "packages": [
        {"name": r.name, "repository": r.repository} for r in refs]})
    # Both databases in one pass: the same scrapes, one status apply per day.
    pg = (postgres_server.create_database(f"year_{namespace.replace('-', '_')}") if postgres_server is not None
          else os.environ["PACKAGESTATS_TEST_POSTGRES_URL"])
    urls = {"sqlite": f"sqlite:///{tmp_path}/history.db", "postgresql": pg}
    dbs = {kind: HistoryDB(url) for kind, url in urls.items()}
    totals = [1_000_000 * (i + 1) for i in range(len(refs))]
    prev: api.PackageStatsStatus | None = None
    largest = 0
    spent = {"build": 0.0, "sqlite": 0.0, "postgresql": 0.0, "apply": 0.0}
    try:
        with crd.api_client() as client:
            writer = kube.StatusWriter(client, timeout=60)
            for day in range(DAYS):
                now = START + datetime.timedelta(days=day)
                t = time.monotonic()
                outcomes: dict[tuple[str, str], status.Outcome] = {}
                for i, ref in enumerate(refs):
                    totals[i] += per_day(i, now.date())
                    outcomes[(ref.type, ref.name)] = outcome(i, now, totals[i])
                result = status.build(prev, refs, outcomes, generation=1, now=now, history_days=90,
                                      max_versions=20)
                spent["build"] += time.monotonic() - t
                for kind, db in dbs.items():
                    t = time.monotonic()
                    await db.record(namespace, "year", "acme", result.scraped, result.status.total_downloads, now)
                    spent[kind] += time.monotonic() - t
                new = status.with_history(result.status, prev, True, "Recorded", "ok", now)
                t = time.monotonic()
                await writer.apply(namespace, "year", new)
                spent["apply"] += time.monotonic() - t
                largest = max(largest, compact_size(kube.status_document(namespace, "year", new)["status"]))
                prev = new
        obj = get(crd, namespace, "year")
        stored = compact_size(obj["status"])
        print(f"\n{DAYS} days: largest status {largest} bytes, stored {stored} bytes "
              f"(budget {api.STATUS_BUDGET_BYTES}); seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in spent.items()))
        assert largest <= api.STATUS_BUDGET_BYTES and stored <= api.STATUS_BUDGET_BYTES
        assert obj["status"]["totalDownloads"] == sum(totals)
        assert len(obj["status"]["history"]) == min(DAYS, 90)  # the short history of the total
        assert len(obj["status"]["packages"]) == api.MAX_PACKAGES

        # Each database holds every day of every package: the year's totals and its daily counts.
        for db in dbs.values():
            async with db.engine().connect() as conn:
                rows = (await conn.execute(sa.select(package_days.c.package_id, sa.func.count(package_days.c.total),
                                                     sa.func.count(package_days.c.downloads))
                                           .group_by(package_days.c.package_id))).all()
            assert len(rows) == api.MAX_PACKAGES
            assert all(with_total == DAYS and with_count == DAYS + 29 for _, with_total, with_count in rows)
    finally:
        for db in dbs.values():
            await db.aclose()
    for history_url in urls.values():
        _check_history_command(crd, namespace, history_url, totals)


def _check_history_command(crd: Cluster, namespace: str, history_url: str, totals: list[int]) -> None:
    # `packagestats history` reads them back, as a user runs it.
    script = Path(sys.executable).parent / "packagestats"
    proc = subprocess.run([str(script), "history", "year", "-n", namespace, "--db", history_url, "-o", "json",
                           "--since", START.date().isoformat()], capture_output=True, text=True,
                          env=crd.env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["source"] == "database" and doc["totalDownloads"] == sum(totals)
    assert len(doc["days"]) == DAYS
    assert all(len(p["days"]) == DAYS for p in doc["packages"]) and len(doc["packages"]) == api.MAX_PACKAGES
    first = doc["packages"][0]
    assert first["days"][-1]["totalDownloads"] == totals[0]
    assert first["days"][10]["downloads"] == per_day(0, START.date() + datetime.timedelta(days=10))
    assert not any(d["derived"] for d in first["days"])
    assert history_url.split("@")[-1] not in proc.stderr
