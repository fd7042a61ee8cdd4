"""The wasmtime runner of the page parser: engine and module once, a fresh store per page, hard limits.

Pages are untrusted input. They are parsed by `parser.wasm` (the Rust crate in `wasm/`, shipped inside
this package) under wasmtime, with for every page:

- a new `Store` whose only WASI capability is a temporary directory holding just the page,
  preopened read-only (stdout and stderr go to files beside it, which the guest cannot see; the
  directory is kept for a later page), no environment, no network;
- a fuel budget (instructions), a linear-memory limit, and a wall-clock deadline through epoch
  interruption (one ticker thread per sandbox advances the engine's epoch while pages are parsed).

Whatever the page, `Sandbox.parse` returns a `ParseResult` or raises a `ParserError` subclass.
The compiled module can be cached on disk (`cache_dir`), keyed by the module's hash, the wasmtime
version and the engine settings, and checked with a digest before it is loaded.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import hashlib
import importlib.metadata
import importlib.resources
import math
import os
import platform
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

import pydantic
import wasmtime

from packagestats.pages import ListingPage, ModuleVersion, PackagePage, VersionsPage

if TYPE_CHECKING:
    from packagestats.settings import Settings

Kind = Literal["package", "versions", "listing"]
Limit = Literal["fuel", "memory", "time"]
Page = PackagePage | VersionsPage | ListingPage

_MODELS: Final[dict[str, type[PackagePage] | type[VersionsPage] | type[ListingPage]]] = {
    "package": PackagePage,
    "versions": VersionsPage,
    "listing": ListingPage,
}
# The parser's exit statuses (see wasm/src/main.rs).
_EXIT_OK: Final = 0
_EXIT_USAGE: Final = 2
_EXIT_NOTHING_FOUND: Final = 3
_EXIT_OUT_OF_MEMORY: Final = 4

_GUEST_DIR: Final = "/page"
_PAGE_NAME: Final = "page.html"
# A parse's temporary directory holds these: the page's directory (the guest's only one) and the output.
_PAGE_DIR: Final = "page"
_STDOUT: Final = "stdout"
_STDERR: Final = "stderr"
# More output than any page can justify means something is wrong; don't read it into memory.
_MAX_STDOUT: Final = 64 * 1024 * 1024
_MAX_REASON: Final = 500
_CACHE_MAGIC: Final = b"packagestats-cwasm-1\n"
# std's allocation-failure hook prints this before aborting (an `unreachable` trap).
_OOM_MARKER: Final = "memory allocation of"
_WASM_PAGE: Final = 64 * 1024
_MAX_VERSION_OUTPUT: Final = 64 * 1024
# `--version` runs under limits of its own, ample for printing a line and far below a parse's: the
# parse limits (however tight) are a property of pages, not of whether the module may be used.
_VERSION_FUEL: Final = 100_000_000
_VERSION_MEMORY: Final = 64 * 1024 * 1024
_VERSION_SECONDS: Final = 2.0

# The parser interfaces this operator speaks (`INTERFACE_VERSION` in wasm/src/lib.rs): the command line,
# the exit statuses and the JSON shapes of pages.py. A module answering another one is refused.
SUPPORTED_INTERFACES: Final = frozenset({1})
# Every kind the operator asks for: a module that lacks one could not serve a scrape.
REQUIRED_KINDS: Final = ("package", "versions", "listing")


class ParserError(Exception):
    """The page could not be parsed; `reason` says why in one short line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NoCountError(ParserError):
    """The page holds no download count (or no version rows / packages, for those kinds)."""


class BadOutputError(ParserError):
    """The parser's output is not valid JSON of the expected shape."""


class LimitExceeded(ParserError):
    """The parse ran out of fuel, memory or time."""

    def __init__(self, limit: Limit, reason: str) -> None:
        super().__init__(reason)
        self.limit: Limit = limit


class ModuleLoadError(ParserError):
    """The parser module could not be read, compiled or instantiated."""


class InterfaceError(ModuleLoadError):
    """The module does not answer `--version` with an interface and page kinds this operator speaks."""


class ParserCrashError(ParserError):
    """The parser stopped in an unexpected way (a trap other than a limit, an unknown exit status)."""


@dataclasses.dataclass(frozen=True, slots=True)
class ParserInfo:
    """Which parser module: its own version, its interface, its page kinds and the sha256 of its bytes."""

    version: str
    interface: int
    kinds: tuple[str, ...]
    digest: str  # "sha256:<64 hex>"

    @property
    def label(self) -> str:
        """Short enough for every package's status: `0.2.0@d5a1c0f1e36a` (version, 12 hex of the digest)."""
        return f"{self.version}@{self.digest.removeprefix('sha256:')[:12]}"


@dataclasses.dataclass(frozen=True, slots=True)
class LoadedModule:
    """A compiled module that has answered `--version` with an interface this operator speaks."""

    pre: wasmtime.InstancePre
    info: ParserInfo


@dataclasses.dataclass(frozen=True, slots=True)
class ParseResult:
    page: Page
    fuel_consumed: int
    seconds: float
    parser: ParserInfo | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class _Run:
    code: int
    fuel_left: int
    failure: BaseException | None
    at_memory_limit: bool
    started: bool  # instantiated: a failure came from the module's own run


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_REASON else line[: _MAX_REASON - 1] + "…"


def module_bytes() -> bytes:
    """The parser module shipped in this package."""
    try:
        return importlib.resources.files("packagestats").joinpath("parser.wasm").read_bytes()
    except OSError as e:
        raise ModuleLoadError(f"cannot read the parser module: {e}") from e


class _EpochTicker:
    """Advances an engine's epoch every `interval` seconds while at least one parse is running.

    One thread per engine rather than a timer per call: the epoch is shared by every store of the
    engine, so per-call timers would cut each other's parses short. The thread stops when idle.
    """

    _IDLE_EXIT_SECONDS: Final = 30.0

    def __init__(self, engine: wasmtime.Engine, interval: float) -> None:
        self._engine = engine
        self._interval = interval
        self._cond = threading.Condition()
        self._active = 0
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        with self._cond:
            self._active += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="packagestats-epoch", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._active == 0:
                    if not self._cond.wait(timeout=self._IDLE_EXIT_SECONDS) and self._active == 0:
                        self._thread = None
                        return
            time.sleep(self._interval)
            self._engine.increment_epoch()


class Sandbox:
    """Runs the parser on pages; safe to share between threads (e.g. `asyncio.to_thread`)."""

    def __init__(
        self,
        fuel: int,
        memory_bytes: int,
        timeout_seconds: float,
        cache_dir: Path | None,
        wasm: bytes | None = None,
    ) -> None:
        if fuel <= 0 or memory_bytes <= 0 or timeout_seconds <= 0:
            raise ValueError("fuel, memory_bytes and timeout_seconds must be positive")
        self.fuel = fuel
        self.memory_bytes = memory_bytes
        self.timeout_seconds = timeout_seconds
        self.cache_dir = cache_dir
        # Ticks of ~1/20 of the timeout (at most 50 ms): the deadline holds to about 5 %.
        self._tick = min(0.05, max(0.001, timeout_seconds / 20))
        self._deadline_ticks = math.ceil(timeout_seconds / self._tick) + 1
        self._wasm = wasm  # None: the module shipped in this package
        self._lock = threading.Lock()
        self._engine: tuple[wasmtime.Engine, wasmtime.Linker, _EpochTicker] | None = None
        self._current: LoadedModule | None = None
        self._work_dirs = _WorkDirs()
        self.loaded_from_cache = False

    def close(self) -> None:
        """Removes the run directories kept for reuse (the sandbox stays usable; also done at exit)."""
        self._work_dirs.close()

    @classmethod
    def from_settings(cls, settings: Settings) -> Sandbox:
        return cls(
            fuel=settings.wasm_fuel,
            memory_bytes=settings.wasm_memory_bytes,
            timeout_seconds=settings.wasm_timeout_seconds,
            cache_dir=settings.cache_dir,
        )

    # -- module -----------------------------------------------------------------------------------

    @staticmethod
    def _config() -> tuple[wasmtime.Config, str]:
        config = wasmtime.Config()
        config.consume_fuel = True
        config.epoch_interruption = True
        config.cranelift_opt_level = "speed"
        # A serialized module only loads into an engine with the same settings: they are part of the
        # cache key.
        return config, "fuel=1;epoch=1;opt=speed"

    def _cache_path(self, wasm: bytes, settings: str) -> Path | None:
        if self.cache_dir is None:
            return None
        key = "\0".join(
            [
                hashlib.sha256(wasm).hexdigest(),
                importlib.metadata.version("wasmtime"),
                settings,
                platform.machine(),
            ]
        )
        return self.cache_dir / f"parser-{hashlib.sha256(key.encode()).hexdigest()[:32]}.cwasm"

    @staticmethod
    def _read_cache(engine: wasmtime.Engine, path: Path) -> wasmtime.Module | None:
        """The cached module, or None when absent, not ours or damaged (then it is recompiled)."""
        try:
            if path.stat().st_uid != os.getuid():
                return None  # compiled code gets executed: only trust files this user wrote
            data = path.read_bytes()
        except OSError:
            return None
        header = len(_CACHE_MAGIC) + 32
        if not data.startswith(_CACHE_MAGIC) or len(data) <= header:
            return None
        digest, payload = data[len(_CACHE_MAGIC) : header], data[header:]
        if hashlib.sha256(payload).digest() != digest:
            return None
        try:
            return wasmtime.Module.deserialize(engine, payload)
        except wasmtime.WasmtimeError:
            return None

    @staticmethod
    def _write_cache(module: wasmtime.Module, path: Path) -> None:
        """Writes the compiled module atomically (temp file + rename); a failure only costs speed."""
        try:
            payload = bytes(module.serialize())
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".parser-", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(_CACHE_MAGIC + hashlib.sha256(payload).digest() + payload)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except (OSError, wasmtime.WasmtimeError):
            pass

    def _runtime(self) -> tuple[wasmtime.Engine, wasmtime.Linker, _EpochTicker]:
        """The engine (one per sandbox: every module it runs shares its epoch ticker) and WASI linker."""
        with self._lock:
            if self._engine is None:
                config, _ = self._config()
                try:
                    engine = wasmtime.Engine(config)
                    linker = wasmtime.Linker(engine)
                    linker.define_wasi()
                except wasmtime.WasmtimeError as e:
                    raise ModuleLoadError(f"cannot set up the wasm engine: {_one_line(str(e))}") from e
                self._engine = (engine, linker, _EpochTicker(engine, self._tick))
            return self._engine

    def compile(self, wasm: bytes) -> LoadedModule:
        """Compiles a module (or loads it from the cache) and asks it `--version`; raises
        `ModuleLoadError` (`InterfaceError` when it does not speak our interface). The module in use
        is not changed: see `use`."""
        engine, linker, _ = self._runtime()
        _, settings = self._config()
        try:
            path = self._cache_path(wasm, settings)
            module = self._read_cache(engine, path) if path is not None else None
            from_cache = module is not None
            if module is None:
                module = wasmtime.Module(engine, wasm)
                _return_freed_memory()
                if path is not None:
                    self._write_cache(module, path)
            # Imports are resolved once; each parse only instantiates.
            pre = linker.instantiate_pre(module)
        except wasmtime.WasmtimeError as e:
            raise ModuleLoadError(f"cannot load the parser module: {_one_line(str(e))}") from e
        loaded = LoadedModule(pre, self._ask_version(pre, "sha256:" + hashlib.sha256(wasm).hexdigest()))
        self.loaded_from_cache = from_cache
        return loaded

    def _ask_version(self, pre: wasmtime.InstancePre, digest: str) -> ParserInfo:
        with self._work_dirs.take(None) as work:
            run = self._run(pre, ["packagestats-parser", "--version"], None, work,
                            (_VERSION_FUEL, _VERSION_MEMORY, math.ceil(_VERSION_SECONDS / self._tick) + 1))
            reason = _one_line(_read_text(work / _STDERR, _MAX_REASON * 4))
            if run.failure is not None:
                error = _classify(run.failure, reason, self, run.at_memory_limit, _VERSION_FUEL, _VERSION_MEMORY,
                                  _VERSION_SECONDS)
                raise InterfaceError(f"the module failed on --version: {error.reason}")
            if run.code != _EXIT_OK:
                raise InterfaceError(f"the module does not answer --version (exit status {run.code}): {reason}")
            if (work / _STDOUT).stat().st_size > _MAX_VERSION_OUTPUT:
                raise InterfaceError("the module's --version output is unreasonably large")
            try:
                answer = ModuleVersion.model_validate_json((work / _STDOUT).read_bytes())
            except pydantic.ValidationError as e:
                raise InterfaceError(f"the module's --version output is not the expected JSON: "
                                     f"{_one_line(str(e))}") from e
        if answer.interface not in SUPPORTED_INTERFACES:
            speaks = ", ".join(str(v) for v in sorted(SUPPORTED_INTERFACES))
            raise InterfaceError(f"the module speaks parser interface {answer.interface}; "
                                 f"this operator speaks {speaks}")
        missing = [k for k in REQUIRED_KINDS if k not in answer.kinds]
        if missing:
            raise InterfaceError(f"the module does not parse {', '.join(missing)} pages")
        return ParserInfo(answer.version, answer.interface, tuple(answer.kinds), digest)

    def use(self, module: LoadedModule) -> None:
        """Parses from now on with `module` (parses already running finish with the one they started)."""
        with self._lock:
            self._current = module

    def _load(self) -> LoadedModule:
        current = self._current
        if current is not None:
            return current
        loaded = self.compile(self._wasm if self._wasm is not None else module_bytes())
        with self._lock:
            if self._current is None:
                self._current = loaded
            return self._current

    def load(self) -> ParserInfo:
        """Compiles (or loads from the cache) and checks the module now rather than on the first parse."""
        return self._load().info

    @property
    def info(self) -> ParserInfo:
        """The module in use."""
        return self._load().info

    # -- parsing ----------------------------------------------------------------------------------

    def parse_file(self, path: Path | str, kind: Kind = "package") -> ParseResult:
        """Parses a saved page (an unreadable file raises `OSError`)."""
        return self.parse(Path(path).read_bytes(), kind)

    def parse(self, page: bytes, kind: Kind = "package", module: LoadedModule | None = None) -> ParseResult:
        """Parses one page with the module in use (or with `module`, e.g. a candidate's self-test)."""
        model = _MODELS.get(kind)
        if model is None:
            raise ValueError(f"unknown page kind {kind!r}")
        started = time.perf_counter()
        loaded = module or self._load()
        try:
            with self._work_dirs.take(page) as work:
                run = self._run(loaded.pre, ["packagestats-parser", kind, f"{_GUEST_DIR}/{_PAGE_NAME}"],
                                work / _PAGE_DIR, work, (self.fuel, self.memory_bytes, self._deadline_ticks))
                stdout = work / _STDOUT
                # A parse that succeeded has nothing to say on stderr: not reading it saves a file read.
                ok = run.failure is None and run.code == _EXIT_OK
                reason = "" if ok else _read_text(work / _STDERR, _MAX_REASON * 4)
                if run.failure is not None:
                    raise _classify(run.failure, reason, self, run.at_memory_limit, started=run.started)
                if run.code == _EXIT_NOTHING_FOUND:
                    raise NoCountError(_one_line(reason) or "the page holds nothing the parser recognises")
                if run.code == _EXIT_OUT_OF_MEMORY:
                    raise LimitExceeded("memory",
                                        f"the page does not fit the memory limit ({self.memory_bytes} bytes)")
                if run.code != _EXIT_OK:
                    what = "usage or I/O error" if run.code == _EXIT_USAGE else f"exit status {run.code}"
                    raise ParserCrashError(f"parser failed ({what}): {_one_line(reason)}")
                if stdout.stat().st_size > _MAX_STDOUT:
                    raise BadOutputError(f"parser output is unreasonably large (over {_MAX_STDOUT} bytes)")
                try:
                    parsed = model.model_validate_json(stdout.read_bytes())
                except pydantic.ValidationError as e:
                    raise BadOutputError(f"parser output does not match the {kind} model: "
                                         f"{_one_line(str(e))}") from e
            return ParseResult(parsed, self.fuel - run.fuel_left, time.perf_counter() - started, loaded.info)
        except OSError as e:
            raise ParserCrashError(f"sandbox I/O failed: {_one_line(str(e))}") from e
        except wasmtime.WasmtimeError as e:  # setting up the store or its WASI context
            raise ParserCrashError(f"sandbox setup failed: {_one_line(str(e))}") from e

    def _run(self, pre: wasmtime.InstancePre, argv: list[str], page_dir: Path | None, work: Path,
             limits: tuple[int, int, int]) -> _Run:
        """Runs the module once with `argv` under (fuel, memory bytes, epoch ticks); returns its exit
        status, fuel left and the trap or error if it failed."""
        fuel, memory_bytes, deadline_ticks = limits
        wasi = wasmtime.WasiConfig()
        wasi.argv = argv
        if page_dir is not None:
            wasi.preopen_dir(str(page_dir), _GUEST_DIR, False)
        wasi.stdout_file = str(work / _STDOUT)
        wasi.stderr_file = str(work / _STDERR)
        engine, _, ticker = self._runtime()
        store = wasmtime.Store(engine)
        store.set_limits(memory_size=memory_bytes)
        store.set_fuel(fuel)
        store.set_wasi(wasi)
        code, failure, at_limit = _EXIT_OK, None, False
        instance: wasmtime.Instance | None = None
        with ticker.running():
            store.set_epoch_deadline(deadline_ticks)
            try:
                instance = pre.instantiate(store)
                start = instance.exports(store).get("_start")
                if not isinstance(start, wasmtime.Func):
                    raise ModuleLoadError("the parser module has no _start function")
                start(store)
            except wasmtime.ExitTrap as e:
                code = e.code
            # Trap (fuel, deadline, abort) is not a WasmtimeError; instantiation failures are.
            except (wasmtime.Trap, wasmtime.WasmtimeError) as e:
                failure = e
        if failure is not None and instance is not None:
            # A module that traps once its memory can grow no further ran into the memory limit.
            memory = instance.exports(store).get("memory")
            if isinstance(memory, wasmtime.Memory):
                at_limit = memory.data_len(store) + _WASM_PAGE > memory_bytes
        fuel_left = store.get_fuel()
        # Dropping the store closes the guest's files before they are read and removed.
        del store
        return _Run(code, fuel_left, failure, at_limit, instance is not None)


def _return_freed_memory() -> None:
    """Gives the compiler's freed memory back to the system: glibc keeps it otherwise, about 30 MB of
    the process's resident memory for good. (A no-op without glibc.)"""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def _read_text(path: Path, limit: int) -> str:
    try:
        with path.open("rb") as f:
            return f.read(limit).decode("utf-8", "replace")
    except OSError:
        return ""


class _WorkDirs:
    """Run directories, each `page/` (the guest's only directory, read-only to it) holding the page, and
    the output files beside it, which the guest cannot see. (Files, not wasmtime's in-memory output
    callbacks: those are released on wasmtime's own threads, which can call into a Python that is
    shutting down.) A directory is kept for the next run rather than removed: making and removing one
    cost as much as parsing a small page. The guest can add nothing to it, each run rewrites the page,
    and WASI truncates the output files when it opens them; one that failed I/O is removed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: list[Path] = []
        # Removed at exit too: the list is shared with the finalizer, which must not hold the object.
        weakref.finalize(self, _remove_work_dirs, self._free)

    @contextlib.contextmanager
    def take(self, page: bytes | None) -> Iterator[Path]:
        with self._lock:
            work = self._free.pop() if self._free else None
        work = work or _new_work_dir()
        kept = True
        try:
            if page is not None:
                (work / _PAGE_DIR / _PAGE_NAME).write_bytes(page)
            yield work
        except OSError:
            kept = False
            raise
        finally:
            if kept:
                with self._lock:
                    self._free.append(work)
            else:
                _remove_work_dirs([work])

    def close(self) -> None:
        with self._lock:
            _remove_work_dirs(self._free)


def _new_work_dir() -> Path:
    work = Path(tempfile.mkdtemp(prefix="packagestats-page-"))
    try:
        (work / _PAGE_DIR).mkdir()
    except OSError:
        _remove_work_dirs([work])
        raise
    return work


def _remove_work_dirs(dirs: list[Path]) -> None:
    """Removes run directories: the guest could add nothing (its directory is read-only), so a few calls
    do it, cheaper than a tree walk; anything unexpected falls back to one."""
    while dirs:
        work = dirs.pop()
        try:
            (work / _PAGE_DIR / _PAGE_NAME).unlink(missing_ok=True)
            if (work / _PAGE_DIR).exists():
                (work / _PAGE_DIR).rmdir()
            (work / _STDOUT).unlink(missing_ok=True)
            (work / _STDERR).unlink(missing_ok=True)
            work.rmdir()
        except OSError:
            shutil.rmtree(work, ignore_errors=True)


def _classify(failure: BaseException, stderr: str, sandbox: Sandbox, at_memory_limit: bool = False,
              fuel: int | None = None, memory_bytes: int | None = None,
              seconds: float | None = None, started: bool = False) -> ParserError:
    fuel = sandbox.fuel if fuel is None else fuel
    memory_bytes = sandbox.memory_bytes if memory_bytes is None else memory_bytes
    seconds = sandbox.timeout_seconds if seconds is None else seconds
    if isinstance(failure, wasmtime.Trap):
        code = failure.trap_code
        if code == wasmtime.TrapCode.OUT_OF_FUEL:
            return LimitExceeded("fuel", f"parser ran out of fuel ({fuel} units)")
        if code == wasmtime.TrapCode.INTERRUPT:
            return LimitExceeded("time", f"parser exceeded its {seconds:g} s deadline")
        if _OOM_MARKER in stderr or code == wasmtime.TrapCode.STACK_OVERFLOW or at_memory_limit:
            return LimitExceeded("memory", f"parser exceeded its memory limit ({memory_bytes} bytes)")
        return ParserCrashError(f"parser trapped: {_one_line(failure.message)}")
    message = _one_line(str(failure))
    # Instantiation fails when the module's initial memory is already above the limit.
    if "memory" in message and ("limit" in message or "minimum" in message):
        return LimitExceeded("memory", f"parser module does not fit the memory limit: {message}")
    if started:  # e.g. WASI refusing an exit status outside [0, 126)
        return ParserCrashError(f"parser failed: {message.rpartition('Caused by: ')[2]}")
    return ModuleLoadError(f"cannot instantiate the parser module: {message}")
