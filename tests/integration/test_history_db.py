"""The history database on real SQLite files and a real PostgreSQL server: migrations from empty and
from the previous schema, the writes of good scrapes, reads, catch-up after a gap, and a database that
is down (an error with a reason, never the password)."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from packagestats.api import DailyCount, PackageRef, VersionDownloads
from packagestats.history_db import HistoryDB, HistoryError, engine_url, package_days, redacted
from packagestats.status import Scraped
from tests.support.databases import history_url, postgres_server  # noqa: F401 - fixtures

T0 = datetime.datetime(2026, 1, 1, 22, 0, tzinfo=datetime.UTC)
A = PackageRef(name="app", repository="app")
B = PackageRef(name="lib", type="npm")


def scraped(now: datetime.datetime, total: int, per_day: int = 10, days: int = 30) -> Scraped:
    today = now.date()
    return Scraped(url="https://github.com/o/app", downloads=total,
                   daily=[DailyCount(date=today - datetime.timedelta(days=k), count=per_day) for k in range(days)],
                   versions=[VersionDownloads(tags=["v2"], downloads=total // 2),
                             VersionDownloads(name="1.0.0", downloads=total // 4)])


async def test_migrates_from_empty_and_records_and_reads(history_url: str) -> None:  # noqa: F811
    db = HistoryDB(history_url)
    try:
        for day in range(3):
            now = T0 + datetime.timedelta(days=day)
            await db.record("ns", "r", "o", [(A, scraped(now, 1000 + 10 * day)), (B, scraped(now, 50 + day, 1))],
                            1050 + 11 * day, now)
            # A second scrape the same day: the total is the day's last one, the daily counts upserted.
            await db.record("ns", "r", "o", [(A, scraped(now, 1001 + 10 * day)), (B, scraped(now, 50 + day, 1))],
                            1051 + 11 * day, now + datetime.timedelta(minutes=30))
        assert await db.revision() == "0002"
        h = await db.read("ns", "r")
        assert h is not None and h.owner == "o"
        assert [(p.type, p.name) for p in h.packages] == [("container", "app"), ("npm", "lib")]
        app = h.packages[0]
        assert len(app.days) == 32  # 30 days of the first chart and two new days
        assert [d.total for d in app.days[-3:]] == [1001, 1011, 1021]
        assert all(d.downloads == 10 and not d.derived for d in app.days)
        assert [(d.downloads, d.total) for d in h.days[-3:]] == [(11, 1051), (11, 1062), (11, 1073)]
        assert await db.read("ns", "unknown") is None
        since = (T0 + datetime.timedelta(days=1)).date()
        cut = await db.read("ns", "r", since=since, until=since)
        assert cut is not None and [d.date for d in cut.days] == [since]
        assert [d.date for d in cut.packages[0].days] == [since]
    finally:
        await db.aclose()


async def test_a_gap_fills_itself_and_missing_daily_counts_are_derived(history_url: str) -> None:  # noqa: F811
    db = HistoryDB(history_url)
    try:
        await db.record("ns", "gap", "o", [(A, scraped(T0, 1000, days=1))], 1000, T0)
        later = T0 + datetime.timedelta(days=20)  # the operator was down for 19 days
        await db.record("ns", "gap", "o", [(A, scraped(later, 1200))], 1200, later)
        h = await db.read("ns", "gap")
        assert h is not None
        days = {d.date: d for d in h.packages[0].days}
        assert all(days[(T0 + datetime.timedelta(days=k)).date()].downloads == 10 for k in range(21))
        # Days with totals but no chart: the difference of consecutive totals, marked as derived.
        pages = [(T0, 100), (T0 + datetime.timedelta(days=1), 130), (T0 + datetime.timedelta(days=2), 175)]
        for now, total in pages:
            await db.record("ns", "derived", "o", [(B, Scraped(url="https://x/y", downloads=total))], total, now)
        d = await db.read("ns", "derived")
        assert d is not None
        assert [(x.downloads, x.derived) for x in d.packages[0].days] == [(None, False), (30, True), (45, True)]
    finally:
        await db.aclose()


async def test_upgrade_from_the_previous_schema_keeps_the_data(history_url: str) -> None:  # noqa: F811
    db = HistoryDB(history_url)
    try:
        await db.migrate("0001")
        assert await db.revision() == "0001"
        async with db.engine().begin() as conn:
            await conn.execute(sa.text("INSERT INTO resources (namespace, name, owner) VALUES ('ns', 'old', 'o')"))
            await conn.execute(sa.text("INSERT INTO packages (resource_id, type, name) "
                                       "SELECT id, 'container', 'app' FROM resources"))
            await conn.execute(package_days.insert().values(package_id=1, day=T0.date(), downloads=7, total=700,
                                                            total_at=T0))
        later = T0 + datetime.timedelta(days=1)
        await db.record("ns", "old", "o", [(A, scraped(later, 800, days=1))], 800, later)  # migrates first
        assert await db.revision() == "0002"
        h = await db.read("ns", "old")
        assert h is not None
        assert [(d.date, d.downloads, d.total) for d in h.packages[0].days] == [
            (T0.date(), 7, 700), (later.date(), 10, 800)]
    finally:
        await db.aclose()


async def test_a_database_that_is_down_is_an_error_with_a_reason_and_no_password(tmp_path: Path) -> None:
    url = "postgresql://packagestats:s3cret-pw@127.0.0.1:9/packagestats"  # nothing listens on port 9
    db = HistoryDB(url)
    try:
        with pytest.raises(HistoryError) as failed:
            await db.record("ns", "r", "o", [(A, scraped(T0, 1))], 1, T0)
        assert failed.value.reason == "DatabaseUnavailable"
        assert "s3cret-pw" not in failed.value.message and "s3cret-pw" not in db.display
    finally:
        await db.aclose()
    assert redacted(url) == "postgresql://packagestats:***@127.0.0.1:9/packagestats"
    assert redacted("postgresql://u@h/db?password=x&sslmode=require") == "postgresql://u@h/db"
    unwritable = HistoryDB(f"sqlite:///{tmp_path}/file/history.db")
    (tmp_path / "file").write_text("a file where a directory should be")
    with pytest.raises(HistoryError):
        await unwritable.record("ns", "r", "o", [(A, scraped(T0, 1))], 1, T0)
    await unwritable.aclose()


def test_urls() -> None:
    assert engine_url("sqlite:////var/lib/packagestats/h.db").drivername == "sqlite+aiosqlite"
    assert engine_url("postgresql://u:p@h:5432/d?sslmode=require").drivername == "postgresql+psycopg"
    for bad in ("mysql://u@h/d", "sqlite://", "not a url"):
        with pytest.raises(HistoryError):
            engine_url(bad)


def test_hack_postgres_up_prints_the_url_and_down_leaves_nothing(tmp_path: Path) -> None:
    env = dict(os.environ, PACKAGESTATS_CACHE=str(tmp_path))
    script = Path(__file__).resolve().parents[2] / "hack" / "postgres.py"
    up = subprocess.run([sys.executable, str(script), "up"], capture_output=True, text=True, env=env, timeout=120)
    assert up.returncode == 0, up.stderr
    assert up.stdout.startswith("export PACKAGESTATS_HISTORY_URL=postgresql://packagestats:")
    url = up.stdout.strip().split("=", 1)[1]
    workdir = Path(json.loads((tmp_path / "postgres.json").read_text())["workdir"])
    try:
        async def probe() -> str | None:
            db = HistoryDB(url)
            try:
                await db.migrate()
                return await db.revision()
            finally:
                await db.aclose()
        assert asyncio.run(probe()) == "0002"
    finally:
        down = subprocess.run([sys.executable, str(script), "down"], capture_output=True, text=True, env=env,
                              timeout=120)
    assert down.returncode == 0, down.stderr
    assert not workdir.exists() and not (tmp_path / "postgres.json").exists()
