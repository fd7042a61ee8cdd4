"""Real history databases for tests: SQLite files and a throwaway PostgreSQL server (hack/postgres.py),
or the server PACKAGESTATS_TEST_POSTGRES_URL names. Never a mock."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hack.postgres import Postgres

BACKENDS = ["sqlite", "postgresql"]
__all__ = ["BACKENDS", "Postgres", "history_url", "postgres_server"]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres | None]:
    if os.environ.get("PACKAGESTATS_TEST_POSTGRES_URL"):
        yield None
        return
    with Postgres() as server:
        yield server


@pytest.fixture(params=BACKENDS)
def history_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/history.db"
    server: Postgres | None = request.getfixturevalue("postgres_server")
    given = os.environ.get("PACKAGESTATS_TEST_POSTGRES_URL")
    if server is None and given:
        return given  # shared: the tests use their own resource names
    assert server is not None
    url: str = server.create_database(f"t_{uuid.uuid4().hex[:12]}")
    return url
