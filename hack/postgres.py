"""A throwaway PostgreSQL server on loopback, from Debian's packages, for tests and benchmarks.

    python hack/postgres.py up      # prints `export PACKAGESTATS_HISTORY_URL=postgresql://...`
    python hack/postgres.py down    # stops it and removes its directory

`initdb` runs in a temporary directory with a random password (scram-sha-256), the server listens on
127.0.0.1 on a free port with its socket in that directory. As root, everything runs as the `postgres`
user (PostgreSQL refuses to run as root). The pytest fixture (tests/support/databases.py) uses the same class.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType

STATE = Path(os.environ.get("PACKAGESTATS_CACHE", Path.home() / ".cache" / "packagestats")) / "postgres.json"
USER = "packagestats"
DATABASE = "packagestats"


def bin_dir() -> Path:
    """The newest installed Debian PostgreSQL (/usr/lib/postgresql/N/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run `make postgres-deps` (apt-get install postgresql)")
    return found[-1].parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Postgres:
    def __init__(self, workdir: Path | None = None, port: int | None = None, password: str | None = None) -> None:
        self.bin = bin_dir()
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="packagestats-pg-"))
        self.port = port or _free_port()
        self.password = password or secrets.token_hex(16)
        self._user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None

    @property
    def data(self) -> Path:
        return self.workdir / "data"

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, PGPASSWORD=self.password, LC_ALL="C")
        proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=self.workdir, timeout=120,
                              user=self._user.pw_uid if self._user else None,
                              group=self._user.pw_gid if self._user else None)
        if proc.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def start(self) -> str:
        if self._user is not None:
            os.chown(self.workdir, self._user.pw_uid, self._user.pw_gid)
        pwfile = self.workdir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._user is not None:
            os.chown(pwfile, self._user.pw_uid, self._user.pw_gid)
        pwfile.chmod(0o600)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", USER, "--auth=scram-sha-256",
                  f"--pwfile={pwfile}", "-E", "UTF8", "--no-locale")
        pwfile.unlink()
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.workdir}"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.workdir / "server.log"),
                  "-o", options, "-w", "-t", "60", "start")
        self.create_database(DATABASE)
        return self.url()

    def create_database(self, name: str) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise ValueError(f"invalid database name {name!r}")
        self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, name)
        return self.url(name)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Postgres:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


def up() -> int:
    if STATE.exists():
        state = json.loads(STATE.read_text())
        print(f"export PACKAGESTATS_HISTORY_URL={state['url']}")
        return 0
    pg = Postgres()
    try:
        url = pg.start()
    except BaseException:
        pg.stop()
        raise
    STATE.parent.mkdir(parents=True, exist_ok=True)
    STATE.write_text(json.dumps({"workdir": str(pg.workdir), "port": pg.port, "password": pg.password,
                                 "url": url}))
    STATE.chmod(0o600)
    print(f"export PACKAGESTATS_HISTORY_URL={url}")
    return 0


def down() -> int:
    if not STATE.exists():
        print("no PostgreSQL server of hack/postgres.py is running", file=sys.stderr)
        return 0
    state = json.loads(STATE.read_text())
    Postgres(Path(state["workdir"]), state["port"], state["password"]).stop()
    STATE.unlink()
    print("stopped; removed " + state["workdir"], file=sys.stderr)
    return 0


def main(argv: list[str]) -> int:
    commands = {"up": up, "down": down}
    if len(argv) != 1 or argv[0] not in commands:
        print("usage: python hack/postgres.py up|down", file=sys.stderr)
        return 2
    return commands[argv[0]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
