"""The long-running processes of hack/: each in a session of its own, with a log file and a pid file in its
directory (so that a later `down` can stop it), waited for until it answers."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Self


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(workdir: Path, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start `argv` with its output in `workdir/NAME.log` and its pid in `workdir/NAME.pid`."""
    with open(workdir / f"{name}.log", "ab") as logf:
        proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    (workdir / f"{name}.pid").write_text(str(proc.pid))
    return proc


def pid_of(workdir: Path, name: str) -> int | None:
    f = workdir / f"{name}.pid"
    return int(f.read_text()) if f.exists() else None


def _tail(workdir: Path, name: str) -> str:
    log = workdir / f"{name}.log"
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


def wait_until(probe: Callable[[], bool], deadline: float, workdir: Path, name: str,
               proc: subprocess.Popen[bytes] | None, interval: float = 0.3) -> None:
    """Poll `probe` until it holds; fail with the log's tail when the process exits or time runs out."""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{_tail(workdir, name)}")
        if probe():
            return
        time.sleep(interval)
    raise TimeoutError(f"{name} not ready in time:\n{_tail(workdir, name)}")


def answers(url: str, context: ssl.SSLContext | None = None) -> Callable[[], bool]:
    """A probe: whether `url` answers 200."""
    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as r:
                return bool(r.status == 200)
        except Exception:  # noqa: BLE001 - not up yet
            return False
    return probe


def terminate(pid: int, proc: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM, then SIGKILL after 15 s."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc is not None:
            if proc.poll() is not None:
                return
        else:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
        if proc is not None:
            proc.wait(5)
    except ProcessLookupError:
        pass


class Started:
    """A context manager over `start()` and `stop()`; a start that fails stops what it had started."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
