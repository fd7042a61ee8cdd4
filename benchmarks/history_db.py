"""Benchmark of the history database: write time per scrape and per package at 1,000 packages, and
bytes of database per package-year, for SQLite and PostgreSQL. Prints figures, asserts nothing.

    .venv/bin/python benchmarks/history_db.py [--packages 1000] [--days 60] [--versions 20] [--backend both]

The packages are 5 resources of 200 (the CRD's maximum); one scrape writes all of them, as the operator
does (HistoryDB.record per resource: the 30-day chart upserted, the day's total, the versions' totals).
The clock advances a day per scrape. PostgreSQL is a throwaway server from hack/postgres.py (or
PACKAGESTATS_HISTORY_URL when it names one); SQLite is a file in a temporary directory.

Bytes per package-year: the growth of the database between the end of day 30 (the first chart is in
by then) and the last day, per package and day, times 365 (SQLite: the file after a WAL checkpoint;
PostgreSQL: pg_database_size after VACUUM).
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder comes first on sys.path, where benchmarks/operator.py would shadow the
# standard library's `operator` for every import below.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import datetime  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import sqlalchemy as sa  # noqa: E402

from packagestats.api import DailyCount, PackageRef, VersionDownloads  # noqa: E402
from packagestats.history_db import HistoryDB  # noqa: E402
from packagestats.status import Scraped  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from hack import postgres  # noqa: E402

PER_RESOURCE = 200
START = datetime.datetime(2025, 1, 1, 23, 0, tzinfo=datetime.UTC)


def scrape(i: int, now: datetime.datetime, versions: int) -> Scraped:
    """A package page as GitHub gives it: a past day's count stays what it was, today's bar grows; the
    newest 3 versions gain downloads every day, older ones rarely (here: never)."""
    today = now.date()
    total = 1_000_000 * (i + 1) + today.toordinal() * 500
    daily = [DailyCount(date=day, count=100 + (i + day.toordinal()) % 400)
             for day in (today - datetime.timedelta(days=k) for k in range(30))]
    rows = [VersionDownloads(id=str(v), tags=[f"v1.{v}"],
                             downloads=(total // (v + 2)) if v < 3 else 1000 * (i + 1) // (v + 1))
            for v in range(versions)]
    return Scraped(url="https://github.com/o/r/pkgs/container/p", downloads=total, daily=daily, versions=rows)


async def size(db: HistoryDB, url: str) -> int:
    async with db.engine().connect() as conn:
        if url.startswith("sqlite"):
            await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            return Path(url.removeprefix("sqlite:///")).stat().st_size
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.exec_driver_sql("VACUUM")
        return int((await conn.execute(sa.text("SELECT pg_database_size(current_database())"))).scalar_one())


async def run(name: str, url: str, packages: int, days: int, versions: int) -> None:
    db = HistoryDB(url)
    refs = [PackageRef(name=f"package-{i:04d}", repository="repo") for i in range(packages)]
    groups = [refs[n:n + PER_RESOURCE] for n in range(0, packages, PER_RESOURCE)]
    try:
        await db.migrate()
        per_scrape: list[float] = []
        at_30 = 0
        for day in range(days):
            now = START + datetime.timedelta(days=day)
            started = time.perf_counter()
            for g, group in enumerate(groups):
                scraped = [(ref, scrape(g * PER_RESOURCE + i, now, versions)) for i, ref in enumerate(group)]
                await db.record("bench", f"resource-{g}", "o", scraped, sum(s.downloads for _, s in scraped), now)
            per_scrape.append(time.perf_counter() - started)
            if day == 29:
                at_30 = await size(db, url)
        end = await size(db, url)
    finally:
        await db.aclose()
    steady = per_scrape[1:] or per_scrape  # the first scrape inserts 30 days of every chart
    median = statistics.median(steady)
    print(f"{name}: {packages} packages, {days} daily scrapes, {versions} versions per package")
    print(f"  write time per scrape (all {packages} packages): median {median * 1000:.0f} ms, "
          f"max {max(steady) * 1000:.0f} ms, first {per_scrape[0] * 1000:.0f} ms")
    print(f"  write time per package: {median / packages * 1e6:.0f} us")
    if days > 30:
        per_package_day = (end - at_30) / packages / (days - 30)
        print(f"  database size: {end / 1e6:.1f} MB after {days} days; "
              f"{per_package_day * 365 / 1024:.0f} KiB per package-year ({per_package_day:.0f} bytes per package-day)")
    else:
        print(f"  database size: {end / 1e6:.1f} MB after {days} days (--days > 30 for the yearly figure)")


@contextlib.contextmanager
def postgres_url() -> Iterator[str]:
    given = os.environ.get("PACKAGESTATS_HISTORY_URL", "")
    if given.startswith("postgres"):
        yield given
        return
    with postgres.Postgres() as server:
        yield server.url()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", type=int, default=1000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--versions", type=int, default=20, help="per package (the default of "
                        "PACKAGESTATS_MAX_VERSIONS_IN_STATUS, the rows read and recorded)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    # Stopped with SIGTERM (timeout, kill): unwind, so the throwaway PostgreSQL server is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="packagestats-bench-") as tmp:
            asyncio.run(run("SQLite", f"sqlite:///{tmp}/history.db", args.packages, args.days, args.versions))
    if args.backend in ("postgresql", "both"):
        with postgres_url() as url:
            asyncio.run(run("PostgreSQL", url, args.packages, args.days, args.versions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
