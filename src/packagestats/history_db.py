"""The history database: schema and migrations, the write of each good scrape, and the reads of
`packagestats history`. One module for any SQL engine: SQLite (aiosqlite) or PostgreSQL (psycopg 3),
through SQLAlchemy 2's asyncio engine; Alembic migrates the schema (`migrations/`).

Per package and UTC day a row holds GitHub's own count of that day (from the page's 30-day chart,
upserted for all 30 days on every scrape, so a gap of up to 30 days fills itself) and the exact total at
the day's last scrape; per package, version and day the version's total; per resource and day the total.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from packagestats.api import PackageRef
from packagestats.status import Scraped, version_label

log = logging.getLogger(__name__)

VERSION_TABLE = "packagestats_alembic_version"
MIGRATION_LOCK = 0x5061636B  # pg_advisory_xact_lock key: "Pack"
MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "head"
WRITE_TIMEOUT_SECONDS = 60.0  # a database that hangs must not hold the scrape loop

metadata = sa.MetaData()
resources = sa.Table(
    "resources", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("namespace", sa.String(253), nullable=False),
    sa.Column("name", sa.String(253), nullable=False),
    sa.Column("owner", sa.String(39), nullable=False),
    sa.UniqueConstraint("namespace", "name", name="uq_resources_namespace_name"),
)
packages = sa.Table(
    "packages", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("resource_id", sa.Integer, sa.ForeignKey("resources.id", ondelete="CASCADE"), nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("name", sa.String(214), nullable=False),
    sa.Column("repository", sa.String(140)),
    sa.UniqueConstraint("resource_id", "type", "name", name="uq_packages_resource_type_name"),
)
package_days = sa.Table(
    "package_days", metadata,
    sa.Column("package_id", sa.Integer, sa.ForeignKey("packages.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("downloads", sa.BigInteger),
    sa.Column("total", sa.BigInteger),
    sa.Column("total_at", sa.DateTime(timezone=True)),
    sqlite_with_rowid=False,
)
resource_days = sa.Table(
    "resource_days", metadata,
    sa.Column("resource_id", sa.Integer, sa.ForeignKey("resources.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("total", sa.BigInteger, nullable=False),
    sa.Column("total_at", sa.DateTime(timezone=True), nullable=False),
    sqlite_with_rowid=False,
)
package_versions = sa.Table(
    "package_versions", metadata,
    sa.Column("package_id", sa.Integer, sa.ForeignKey("packages.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("version", sa.String(255), primary_key=True),
    sa.Column("downloads", sa.BigInteger, nullable=False),
    sqlite_with_rowid=False,
)


class HistoryError(Exception):
    """The database could not be reached, migrated or written. `reason` is one CamelCase word; the
    message never holds the URL or its password."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def engine_url(url: str) -> sa.URL:
    """`sqlite:///PATH` or `postgresql://...` (libpq style, as in a Secret) -> the async driver's URL."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as e:
        raise HistoryError("InvalidURL", "the history URL is not a database URL") from e
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise HistoryError("InvalidURL", "a SQLite history URL needs a file: sqlite:///PATH")
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    raise HistoryError("InvalidURL", f"history URLs are sqlite:///PATH or postgresql://..., not {backend}://")


def redacted(url: str) -> str:
    """The URL without password or query (which may hold one): safe for logs."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError:
        return "<invalid URL>"
    return parsed.set(password=None, query={}).render_as_string(hide_password=True)


def _describe(e: BaseException, secret: str | None) -> str:
    inner = getattr(e, "orig", None) or e
    text = str(inner).strip().splitlines()
    message = f"{type(inner).__name__}: {text[0] if text else 'no message'}"
    if secret:
        message = message.replace(secret, "***")
    return message[:400]


def _reason(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "Timeout"
    if isinstance(e, sa.exc.OperationalError | sa.exc.InterfaceError | OSError):
        return "DatabaseUnavailable"
    return "WriteFailed"


def _upgrade(connection: Connection, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _current(connection: Connection) -> str | None:
    from alembic.migration import MigrationContext

    return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()


# ------------------------------------------------------------------------------------------------ reads


@dataclass(frozen=True)
class Day:
    date: datetime.date
    downloads: int | None  # that day's downloads
    derived: bool  # True: the difference of consecutive totals, not GitHub's own count
    total: int | None  # the total at the day's last scrape


@dataclass(frozen=True)
class PackageHistory:
    name: str
    type: str
    repository: str | None
    days: list[Day]


@dataclass(frozen=True)
class ResourceHistory:
    namespace: str
    name: str
    owner: str
    days: list[Day]
    packages: list[PackageHistory] = field(default_factory=list)


def _package_days(rows: Iterable[tuple[datetime.date, int | None, int | None]]) -> list[Day]:
    out: list[Day] = []
    prev: tuple[datetime.date, int | None] | None = None
    for day, downloads, total in rows:
        derived = False
        if downloads is None and total is not None and prev is not None and prev[1] is not None \
                and prev[0] == day - datetime.timedelta(days=1) and total >= prev[1]:
            downloads, derived = total - prev[1], True
        out.append(Day(day, downloads, derived, total))
        prev = (day, total)
    return out


def _resource_days(pkgs: Sequence[PackageHistory], totals: dict[datetime.date, int]) -> list[Day]:
    per_day: dict[datetime.date, tuple[int, bool]] = {}
    for p in pkgs:
        for d in p.days:
            if d.downloads is not None:
                n, derived = per_day.get(d.date, (0, False))
                per_day[d.date] = (n + d.downloads, derived or d.derived)
    dates = sorted(set(per_day) | set(totals))
    return [Day(d, per_day[d][0] if d in per_day else None, per_day.get(d, (0, False))[1], totals.get(d))
            for d in dates]


# ----------------------------------------------------------------------------------------------- engine


class HistoryDB:
    """One database for the process. Connects and migrates on first use, so a database that is down
    at start-up only delays history, and is retried on every write."""

    def __init__(self, url: str) -> None:
        self._secret = make_url(url).password if "://" in url else None
        self._target = engine_url(url)
        self.display = redacted(url)
        self._engine: AsyncEngine | None = None
        self._ready = False
        self._lock = asyncio.Lock()
        # What this process last wrote per package id: its 30-day chart and its versions' totals. Only
        # what differs is sent again; emptied on any failure (and empty after a restart), so the next
        # write upserts everything: a gap fills itself as the issue of the operator being down.
        self._charts: dict[int, dict[datetime.date, int]] = {}
        self._versions: dict[int, dict[str, int]] = {}

    def _make_engine(self) -> AsyncEngine:
        kwargs: dict[str, Any] = {"hide_parameters": True}
        if self._target.get_backend_name() == "sqlite":
            assert self._target.database is not None
            Path(self._target.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_async_engine(self._target, connect_args={"timeout": 30}, **kwargs)

            @sa.event.listens_for(engine.sync_engine, "connect")
            def _pragmas(dbapi_connection: Any, _: Any) -> None:
                # WAL: `packagestats history` reads while the operator writes.
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.close()

            return engine
        return create_async_engine(self._target, pool_pre_ping=True, pool_size=2, max_overflow=2,
                                   connect_args={"connect_timeout": 10}, **kwargs)

    def engine(self) -> AsyncEngine:
        if self._engine is None:
            self._engine = self._make_engine()
        return self._engine

    async def migrate(self, revision: str = HEAD) -> None:
        async with self.engine().begin() as conn:
            await conn.run_sync(_upgrade, revision)
        self._ready = revision == HEAD

    async def revision(self) -> str | None:
        async with self.engine().connect() as conn:
            return await conn.run_sync(_current)

    async def _ensure(self) -> None:
        async with self._lock:
            if not self._ready:
                log.info("migrating the history database %s", self.display)
                await self.migrate()

    async def aclose(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def record(self, namespace: str, name: str, owner: str, scraped: Sequence[tuple[PackageRef, Scraped]],
                     total: int | None, now: datetime.datetime) -> None:
        """Write one scrape's good results in one transaction; raises HistoryError."""
        try:
            async with asyncio.timeout(WRITE_TIMEOUT_SECONDS):
                await self._ensure()
                async with self.engine().begin() as conn:
                    written = await self._write(conn, namespace, name, owner, scraped, total, now)
        except HistoryError:
            self._charts.clear()
            self._versions.clear()
            raise
        except (sa.exc.SQLAlchemyError, OSError, TimeoutError) as e:
            self._charts.clear()
            self._versions.clear()
            self._ready = False  # a recreated database gets its schema again
            raise HistoryError(_reason(e), _describe(e, self._secret)) from e
        for pid, (chart, versions) in written.items():
            self._charts[pid], self._versions[pid] = chart, versions

    def _insert(self, table: sa.Table) -> Any:
        dialect = postgresql if self._target.get_backend_name() == "postgresql" else sqlite
        return dialect.insert(table)

    async def _upsert(self, conn: AsyncConnection, table: sa.Table, rows: list[dict[str, Any]],
                      keys: list[str], update: list[str]) -> None:
        """INSERT ... ON CONFLICT DO UPDATE of the rows, compiled once and sent as one executemany
        (rows left as they were are not rewritten)."""
        if not rows:
            return
        stmt = self._insert(table)
        changed = sa.or_(*(table.c[c].is_distinct_from(stmt.excluded[c]) for c in update))
        await conn.execute(stmt.on_conflict_do_update(
            index_elements=keys, set_={c: stmt.excluded[c] for c in update}, where=changed), rows)

    async def _write(self, conn: AsyncConnection, namespace: str, name: str, owner: str,
                     scraped: Sequence[tuple[PackageRef, Scraped]], total: int | None,
                     now: datetime.datetime) -> dict[int, tuple[dict[datetime.date, int], dict[str, int]]]:
        ins = self._insert(resources).values(namespace=namespace, name=name, owner=owner)
        resource_id = (await conn.execute(ins.on_conflict_do_update(
            index_elements=["namespace", "name"], set_={"owner": ins.excluded.owner}
        ).returning(resources.c.id))).scalar_one()
        ids = await self._package_ids(conn, resource_id, [ref for ref, _ in scraped])
        today = now.date()
        daily: list[dict[str, Any]] = []
        totals: list[dict[str, Any]] = []
        versions: dict[tuple[int, str], dict[str, Any]] = {}
        written: dict[int, tuple[dict[datetime.date, int], dict[str, int]]] = {}
        for ref, s in scraped:
            pid = ids[(ref.type, ref.name)]
            old_chart, old_versions = self._charts.get(pid, {}), self._versions.get(pid, {})
            chart = {d.date: d.count for d in s.daily}
            daily.extend({"package_id": pid, "day": day, "downloads": n} for day, n in chart.items()
                         if old_chart.get(day) != n)
            totals.append({"package_id": pid, "day": today, "total": s.downloads, "total_at": now})
            seen: dict[str, int] = {}
            for v in s.versions:
                label = version_label(v)[:255]
                if label in seen:
                    continue
                seen[label] = v.downloads
                if old_versions.get(label) != v.downloads:  # a row when a version's total changed
                    versions[(pid, label)] = {"package_id": pid, "day": today, "version": label,
                                              "downloads": v.downloads}
            written[pid] = (chart, seen)
        await self._upsert(conn, package_days, daily, ["package_id", "day"], ["downloads"])
        await self._upsert(conn, package_days, totals, ["package_id", "day"], ["total", "total_at"])
        await self._upsert(conn, package_versions, list(versions.values()), ["package_id", "day", "version"],
                           ["downloads"])
        if total is not None and scraped:
            await self._upsert(conn, resource_days, [{"resource_id": resource_id, "day": today, "total": total,
                                                      "total_at": now}], ["resource_id", "day"],
                               ["total", "total_at"])
        return written

    async def _package_ids(self, conn: AsyncConnection, resource_id: int,
                           refs: Sequence[PackageRef]) -> dict[tuple[str, str], int]:
        async def known() -> dict[tuple[str, str], tuple[int, str | None]]:
            rows = await conn.execute(sa.select(packages.c.type, packages.c.name, packages.c.id,
                                                packages.c.repository).where(packages.c.resource_id == resource_id))
            return {(t, n): (i, r) for t, n, i, r in rows}

        have = await known()
        missing = [{"resource_id": resource_id, "type": r.type, "name": r.name, "repository": r.repository}
                   for r in refs if (r.type, r.name) not in have]
        if missing:
            await conn.execute(self._insert(packages).on_conflict_do_nothing(), missing)
            have = await known()
        for r in refs:
            pid, repository = have[(r.type, r.name)]
            if repository != r.repository:
                await conn.execute(sa.update(packages).where(packages.c.id == pid).values(repository=r.repository))
        return {key: pid for key, (pid, _) in have.items()}

    async def read(self, namespace: str, name: str, since: datetime.date | None = None,
                   until: datetime.date | None = None) -> ResourceHistory | None:
        """The full series of a resource (None: the database has never seen it)."""
        try:
            async with self.engine().connect() as conn:
                if await conn.run_sync(_current) is None:
                    return None
                row = (await conn.execute(sa.select(resources.c.id, resources.c.owner).where(
                    resources.c.namespace == namespace, resources.c.name == name))).first()
                if row is None:
                    return None
                resource_id, owner = row
                q = (sa.select(packages.c.id, packages.c.type, packages.c.name, packages.c.repository,
                               package_days.c.day, package_days.c.downloads, package_days.c.total)
                     .join(package_days, package_days.c.package_id == packages.c.id)
                     .where(packages.c.resource_id == resource_id)
                     .order_by(packages.c.type, packages.c.name, package_days.c.day))
                r = (sa.select(resource_days.c.day, resource_days.c.total)
                     .where(resource_days.c.resource_id == resource_id).order_by(resource_days.c.day))
                if since is not None:
                    # One day earlier, so the first day in range can be derived from the day before.
                    q = q.where(package_days.c.day >= since - datetime.timedelta(days=1))
                    r = r.where(resource_days.c.day >= since)
                if until is not None:
                    q = q.where(package_days.c.day <= until)
                    r = r.where(resource_days.c.day <= until)
                rows = (await conn.execute(q)).all()
                totals = {d: t for d, t in await conn.execute(r)}
        except (sa.exc.SQLAlchemyError, OSError) as e:
            raise HistoryError(_reason(e), _describe(e, self._secret)) from e
        grouped: dict[int, tuple[str, str, str | None, list[tuple[datetime.date, int | None, int | None]]]] = {}
        for pid, type_, pname, repository, day, downloads, total in rows:
            grouped.setdefault(pid, (type_, pname, repository, []))[3].append((day, downloads, total))
        pkgs = []
        for type_, pname, repository, days in grouped.values():
            series = [d for d in _package_days(days) if since is None or d.date >= since]
            pkgs.append(PackageHistory(pname, type_, repository, series))
        return ResourceHistory(namespace, name, owner, _resource_days(pkgs, totals), pkgs)
