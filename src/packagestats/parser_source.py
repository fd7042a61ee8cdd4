"""Where the parser module comes from, the checks a new one must pass, and loading it without a restart.

The setting `PACKAGESTATS_PARSER_SOURCE` names the source:

- `builtin`: the module shipped in this package (the default);
- `file:PATH`: a module file, e.g. from a mounted ConfigMap or image volume; self-test pages may sit
  beside it in `selftest/`;
- `ocirepository:NAMESPACE/NAME`: a Flux OCIRepository; its `status.artifact` (a tar.gz that Flux's
  source-controller serves at `url`, with its sha256 in `digest`) holds `parser.wasm` and `selftest/`.

A candidate becomes the module in use only when it passes every check: the pin
(`PACKAGESTATS_PARSER_SHA256`), the artifact's digest, the interface (`--version`), and its self-test
pages, each parsed in the sandbox to exactly the expected JSON beside it. A refused candidate leaves
the module in use as it was; the refusal is logged, counted, posted as an Event and, through the
operator, shown on every PackageStats as the ParserRefused condition.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import json
import logging
import tarfile
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath
from typing import Any, Final, Protocol, cast

import httpx
import pydantic

from packagestats.sandbox import (
    InterfaceError,
    Kind,
    LoadedModule,
    ModuleLoadError,
    ParserError,
    ParserInfo,
    Sandbox,
    module_bytes,
)

log = logging.getLogger(__name__)

MODULE_NAME: Final = "parser.wasm"
SELFTEST_DIR: Final = "selftest"
FLUX_SOURCE_GROUP: Final = "source.toolkit.fluxcd.io"
FLUX_SOURCE_VERSION: Final = "v1"
# An artifact is a module (under 1 MB) and a few pages: anything far larger is not one.
MAX_ARTIFACT_BYTES: Final = 64 * 1024 * 1024
MAX_SELFTEST_PAGES: Final = 32
_KINDS: Final[tuple[Kind, ...]] = ("package", "versions", "listing")


class Refused(Exception):
    """A candidate module failed a check; `reason` is one CamelCase word, `message` says what failed,
    `revision` which version of the source was refused (None: not known, e.g. the source was unreadable)."""

    def __init__(self, reason: str, message: str, revision: str | None = None) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.revision = revision


@dataclasses.dataclass(frozen=True)
class SelfTest:
    """A page shipped with the module, and (if given) the JSON the module must print for it."""

    name: str
    kind: Kind
    page: bytes
    expected: Any = None  # parsed JSON, or None: the page must merely parse


@dataclasses.dataclass(frozen=True)
class Candidate:
    wasm: bytes
    origin: str  # where it came from, for logs, Events and the metric's `source` label
    revision: str  # what identifies this version of the source (a digest)
    selftests: tuple[SelfTest, ...] = ()
    needs_selftest: bool = False  # a module from Flux must bring its self-test
    shown_revision: str = ""  # what users know this version by (Flux's revision); empty: `revision`


def _selftests(files: dict[str, bytes]) -> tuple[SelfTest, ...]:
    """`selftest/KIND[-NAME].html` pages and their `.json` expectations, from an artifact's files."""
    tests = []
    for path, page in sorted(files.items()):
        p = PurePosixPath(path)
        if p.parent.name != SELFTEST_DIR or p.suffix != ".html":
            continue
        kind = p.stem.split("-", 1)[0]
        if kind not in _KINDS:
            raise Refused("BadArtifact", f"{path}: a self-test page is named after its kind ({', '.join(_KINDS)})")
        expected_file = files.get(str(p.with_suffix(".json")))
        try:
            expected = json.loads(expected_file) if expected_file is not None else None
        except ValueError as e:
            raise Refused("BadArtifact", f"{p.with_suffix('.json')} is not JSON: {e}") from e
        tests.append(SelfTest(p.name, kind, page, expected))
    if len(tests) > MAX_SELFTEST_PAGES:
        raise Refused("BadArtifact", f"more than {MAX_SELFTEST_PAGES} self-test pages")
    return tuple(tests)


def check(sandbox: Sandbox, candidate: Candidate, pin: str = "") -> LoadedModule:
    """The candidate compiled and checked (pin, interface, self-test), ready for `sandbox.use`."""
    digest = hashlib.sha256(candidate.wasm).hexdigest()
    if pin and digest != pin:
        raise Refused("DigestMismatch", f"the module's sha256 is {digest}, the pin is {pin}")
    try:
        loaded = sandbox.compile(candidate.wasm)
    except InterfaceError as e:
        raise Refused("InterfaceMismatch", e.reason) from e
    except ModuleLoadError as e:
        raise Refused("LoadFailed", e.reason) from e
    if candidate.needs_selftest and not candidate.selftests:
        raise Refused("NoSelfTest", f"the artifact has no {SELFTEST_DIR}/*.html page to test the module on")
    for test in candidate.selftests:
        try:
            result = sandbox.parse(test.page, test.kind, module=loaded)
        except ParserError as e:
            raise Refused("SelfTestFailed", f"{test.name}: {e.reason}") from e
        if test.expected is not None:
            got = result.page.model_dump(mode="json")
            try:
                want = type(result.page).model_validate(test.expected).model_dump(mode="json")
            except pydantic.ValidationError as e:
                raise Refused("BadArtifact", f"{test.name}: the expected JSON is not a {test.kind} page") from e
            if got != want:
                differ = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
                raise Refused("SelfTestFailed", f"{test.name}: the module's output differs in {', '.join(differ)}")
    return loaded


def artifact_files(sandbox: Sandbox, wasm: bytes, pages: dict[str, bytes]) -> dict[str, bytes]:
    """The files of an artifact for `wasm`: the module, and each self-test page (`KIND-NAME.html`) with
    the JSON the module prints for it as its expectation; checked as the operator will check it."""
    files = {MODULE_NAME: wasm}
    loaded = sandbox.compile(wasm)
    for name, page in sorted(pages.items()):
        kind = name.split("-", 1)[0]
        if kind not in _KINDS or not name.endswith(".html"):
            raise ValueError(f"{name}: self-test pages are named KIND-NAME.html ({', '.join(_KINDS)})")
        result = sandbox.parse(page, kind, module=loaded)
        files[f"{SELFTEST_DIR}/{name}"] = page
        files[f"{SELFTEST_DIR}/{name.removesuffix('.html')}.json"] = result.page.model_dump_json(indent=2).encode()
    check(sandbox, Candidate(wasm, "artifact", "", _selftests(files), needs_selftest=True))
    return files


# -- sources --------------------------------------------------------------------------------------


class Source(Protocol):
    @property
    def name(self) -> str: ...

    async def fetch(self, known: str | None) -> Candidate | None:
        """The source's module, or None when its revision is still `known`."""
        ...


@dataclasses.dataclass
class BuiltinSource:
    name: str = "builtin"

    async def fetch(self, known: str | None) -> Candidate | None:
        wasm = module_bytes()
        revision = "sha256:" + hashlib.sha256(wasm).hexdigest()
        return None if revision == known else Candidate(wasm, self.name, revision)


@dataclasses.dataclass
class FileSource:
    """A module file; `selftest/` beside it may hold self-test pages (a ConfigMap can't hold folders:
    then `selftest-KIND.html` files beside it count too)."""

    path: Path

    @property
    def name(self) -> str:
        return f"file:{self.path}"

    async def fetch(self, known: str | None) -> Candidate | None:
        return await asyncio.to_thread(self._read, known)

    def _read(self, known: str | None) -> Candidate | None:
        try:
            wasm = self.path.read_bytes()
        except OSError as e:
            raise Refused("Unreadable", f"cannot read {self.path}: {e.strerror}") from e
        revision = "sha256:" + hashlib.sha256(wasm).hexdigest()
        if revision == known:
            return None
        files: dict[str, bytes] = {}
        for page in [*self.path.parent.glob(f"{SELFTEST_DIR}/*"), *self.path.parent.glob(f"{SELFTEST_DIR}-*")]:
            name = page.name.removeprefix(f"{SELFTEST_DIR}-")
            if page.is_file() and page.suffix in (".html", ".json"):
                files[f"{SELFTEST_DIR}/{name}"] = page.read_bytes()
        try:
            selftests = _selftests(files)
        except Refused as e:
            e.revision = revision
            raise
        return Candidate(wasm, self.name, revision, selftests)


def unpack(tarball: bytes) -> dict[str, bytes]:
    """The regular files of a tar.gz artifact by normalized path; links, devices and paths that climb
    out are refused, and the whole is bounded."""
    files: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:*") as tar:
            for member in tar:
                path = PurePosixPath(member.name)
                if member.isdir():
                    continue
                if not member.isfile() or path.is_absolute() or ".." in path.parts:
                    raise Refused("BadArtifact", f"{member.name}: only plain files with relative paths are allowed")
                total += member.size
                if total > MAX_ARTIFACT_BYTES:
                    raise Refused("BadArtifact", f"the artifact unpacks to more than {MAX_ARTIFACT_BYTES} bytes")
                data = tar.extractfile(member)
                if data is not None:
                    files[str(PurePosixPath(*[p for p in path.parts if p != "."]))] = data.read()
    except (tarfile.TarError, EOFError, OSError) as e:
        raise Refused("BadArtifact", f"the artifact is not a readable tar.gz: {e}") from e
    return files


GetObject = Callable[[str, str], Awaitable[dict[str, Any]]]  # (namespace, name) -> OCIRepository


def _brief(e: Exception) -> str:
    """An error in one line: an apiserver error by its HTTP status (its text holds the response's
    headers and body, too long for a condition and of no use there)."""
    code = getattr(e, "status", None)
    if isinstance(code, int):
        return f"HTTP {code} {getattr(e, 'reason', '') or ''}".strip()
    return " ".join(f"{type(e).__name__}: {e}".split())


@dataclasses.dataclass
class OCIRepositorySource:
    """A Flux OCIRepository: its `status.artifact` is downloaded from source-controller (`url`) and
    checked against its `digest` before anything in it is looked at."""

    namespace: str
    repository: str
    get_object: GetObject
    http: httpx.AsyncClient

    @property
    def name(self) -> str:
        return f"ocirepository:{self.namespace}/{self.repository}"

    async def fetch(self, known: str | None) -> Candidate | None:
        try:
            obj = await self.get_object(self.namespace, self.repository)
        except Exception as e:  # the apiserver's errors come in many types; each is a refusal here
            raise Refused("SourceUnavailable", f"cannot read {self.name}: {_brief(e)}") from e
        artifact = (obj.get("status") or {}).get("artifact") or {}
        url, digest = artifact.get("url"), artifact.get("digest")
        if not isinstance(url, str) or not isinstance(digest, str):
            raise Refused("NoArtifact", f"{self.name} has no status.artifact with a url and digest yet")
        if digest == known:
            return None
        revision = str(artifact.get("revision") or digest)
        # Flux shows the revision (tag@manifest digest); the checks below are about the artifact's digest.
        shown = revision if revision == digest else f"{revision}, artifact {digest}"
        try:
            algorithm, _, expected = digest.partition(":")
            if algorithm != "sha256" or len(expected) != 64:
                raise Refused("DigestMismatch", f"{self.name}: unsupported artifact digest {digest!r}")
            tarball = await self._download(url)
            actual = hashlib.sha256(tarball).hexdigest()
            if actual != expected:
                raise Refused("DigestMismatch",
                              f"the artifact from {url} has sha256 {actual}, its status says {expected}")
            files = unpack(tarball)
            wasm = files.get(MODULE_NAME)
            if wasm is None:
                raise Refused("BadArtifact", f"the artifact of {self.name} holds no {MODULE_NAME}")
            selftests = _selftests(files)
        except Refused as e:
            e.revision = shown
            raise
        return Candidate(wasm, f"{self.name}@{revision}", digest, selftests, needs_selftest=True,
                         shown_revision=shown)

    async def _download(self, url: str) -> bytes:
        try:
            async with self.http.stream("GET", url) as response:
                if response.status_code != 200:
                    raise Refused("DownloadFailed", f"GET {url}: HTTP {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_ARTIFACT_BYTES:
                        raise Refused("DownloadFailed", f"GET {url}: more than {MAX_ARTIFACT_BYTES} bytes")
                return bytes(body)
        except httpx.HTTPError as e:
            raise Refused("DownloadFailed", f"GET {url}: {type(e).__name__}: {e}") from e


def kubernetes_getter(api_client: Any) -> GetObject:
    """Reads OCIRepositories with the operator's kubernetes client (its sync calls run in a thread)."""
    import kubernetes

    custom = kubernetes.client.CustomObjectsApi(api_client)

    async def get(namespace: str, name: str) -> dict[str, Any]:
        obj = await asyncio.to_thread(custom.get_namespaced_custom_object, FLUX_SOURCE_GROUP, FLUX_SOURCE_VERSION,
                                      namespace, "ocirepositories", name, _request_timeout=10)
        return cast(dict[str, Any], obj)

    return get


def source_from_setting(setting: str, get_object: GetObject | None = None,
                        http: httpx.AsyncClient | None = None) -> Source:
    """The source a `PACKAGESTATS_PARSER_SOURCE` value names."""
    if setting in ("", "builtin"):
        return BuiltinSource()
    if setting.startswith("file:"):
        return FileSource(Path(setting.removeprefix("file:")))
    if setting.startswith("ocirepository:"):
        namespace, _, name = setting.removeprefix("ocirepository:").partition("/")
        if not namespace or not name or get_object is None or http is None:
            raise ValueError(f"parser source {setting!r}: expected ocirepository:NAMESPACE/NAME")
        return OCIRepositorySource(namespace, name, get_object, http)
    raise ValueError(f"unknown parser source {setting!r}")


# -- following a source ---------------------------------------------------------------------------


Notify = Callable[[str, str, str], None]  # (Normal|Warning, reason, message)


def _said(refused: Refused | None) -> tuple[str, str | None] | None:
    return None if refused is None else (str(refused), refused.revision)


class Follower:
    """Checks the source for a new module and, when one passes the checks, makes it the sandbox's
    module in use. State of the last check is kept for metrics, health and the ParserRefused condition."""

    def __init__(self, sandbox: Sandbox, source: Source, *, pin: str = "",
                 notify: Notify | None = None,
                 on_loaded: Callable[[ParserInfo, str], None] | None = None,
                 on_refused: Callable[[str, Refused], None] | None = None,
                 on_change: Callable[[], None] | None = None,
                 in_use: ParserInfo | None = None) -> None:
        self.sandbox = sandbox
        self.source = source
        self.pin = pin
        self._notify = notify
        self._on_loaded = on_loaded
        self._on_refused = on_refused
        self._on_change = on_change  # `in_use` or `refused` changed
        self.in_use: ParserInfo | None = in_use
        self.origin: str = "builtin"
        self.refused: Refused | None = None  # why the source's latest revision is not in use; None: it is
        self._seen: str | None = None  # the revision last looked at, loaded or refused
        self._seen_refused: Refused | None = None  # why that revision was refused; None: it was loaded

    async def check_once(self) -> bool:
        """Looks at the source once; True when a new module was loaded."""
        candidate: Candidate | None = None
        try:
            candidate = await self.source.fetch(self._seen)
            if candidate is None:
                # Still the revision last looked at: what was said of it holds again (a source that
                # was unreadable for a while no longer is).
                self._set_refused(self._seen_refused)
                return False
            self._seen = candidate.revision
            loaded = await asyncio.to_thread(check, self.sandbox, candidate, self.pin)
        except Refused as e:
            if candidate is not None:
                e.revision = e.revision or candidate.shown_revision or candidate.revision
                self._seen_refused = e
            if self.refused is None or str(self.refused) != str(e):  # report each refusal once
                log.warning("parser from %s refused, %s stays in use: %s", self.source.name,
                            self.in_use.label if self.in_use else "the module in use", e)
                if self._notify is not None:
                    self._notify("Warning", "ParserRefused", f"{self.source.name}: {e}")
                if self._on_refused is not None:
                    self._on_refused(self.source.name, e)
            self._set_refused(e)
            return False
        self.sandbox.use(loaded)
        self.in_use, self.origin, self.refused, self._seen_refused = loaded.info, candidate.origin, None, None
        log.info("parser %s from %s in use", loaded.info.label, candidate.origin)
        if self._notify is not None:
            self._notify("Normal", "ParserLoaded", f"parser {loaded.info.label} from {candidate.origin} in use")
        if self._on_loaded is not None:
            self._on_loaded(loaded.info, candidate.origin)
        if self._on_change is not None:
            self._on_change()
        return True

    def _set_refused(self, refused: Refused | None) -> None:
        before, self.refused = self.refused, refused
        if _said(before) == _said(refused):  # the same refusal again (a new exception each check)
            return
        if refused is None:
            log.info("parser source %s readable again; %s stays in use", self.source.name,
                     self.in_use.label if self.in_use else "the module in use")
        if self._on_change is not None:
            self._on_change()

    async def run(self, every: float) -> None:
        """Checks the source every `every` seconds until cancelled."""
        while True:
            try:
                await self.check_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not stop the following, nor the operator
                log.exception("checking the parser source %s failed", self.source.name)
            await asyncio.sleep(every)


def event_poster(api_client: Any, namespace: str, name: str) -> Notify:
    """Posts Events about the parser on the OCIRepository it came from (best effort: a failure is
    logged), so that `kubectl events` on the source shows why a module was refused."""
    import datetime

    import kubernetes

    core = kubernetes.client.CoreV1Api(api_client)

    def post(type_: str, reason: str, message: str) -> None:
        now = datetime.datetime.now(datetime.UTC)
        body: Any = {
            "metadata": {"generateName": f"{name}.parser.", "namespace": namespace},
            "involvedObject": {"apiVersion": f"{FLUX_SOURCE_GROUP}/{FLUX_SOURCE_VERSION}", "kind": "OCIRepository",
                               "name": name, "namespace": namespace},
            "type": type_, "reason": reason, "message": message[:1024],
            "source": {"component": "packagestats"}, "reportingComponent": "packagestats",
            "firstTimestamp": now.isoformat(), "lastTimestamp": now.isoformat(), "count": 1,
        }
        try:
            core.create_namespaced_event(namespace, body, _request_timeout=10)
        except Exception as e:  # noqa: BLE001 - Events are best effort
            log.warning("posting Event %s on %s/%s failed: %s", reason, namespace, name, e)

    return post


class _MetricsLike(Protocol):
    @property
    def parser_module(self) -> Any: ...

    @property
    def parser_refused(self) -> Any: ...


async def follow(setting: str, pin: str, every: float, sandbox: Sandbox, api_client: Any,
                 metrics: _MetricsLike) -> asyncio.Task[None] | None:
    """`start`'s task alone."""
    return (await start(setting, pin, every, sandbox, api_client, metrics))[1]


async def start(setting: str, pin: str, every: float, sandbox: Sandbox, api_client: Any,
                metrics: _MetricsLike, on_change: Callable[[], None] | None = None,
                ) -> tuple[Follower, asyncio.Task[None] | None]:
    """Loads the module the settings name (before the first scrape), then follows its source in a
    task; no task for the built-in module, which cannot change. A source that fails its checks at
    start-up leaves the built-in module in use, and is checked again every `every` seconds. The
    follower says at any time which module is in use and why the latest candidate was refused;
    `on_change` is called when either changes."""
    def loaded(info: ParserInfo, origin: str) -> None:
        metrics.parser_module.clear()
        metrics.parser_module.labels(info.version, info.digest, origin.partition("@")[0]).set(1)

    def refused(source: str, e: Refused) -> None:
        metrics.parser_refused.labels(source, e.reason).inc()

    builtin = await asyncio.to_thread(sandbox.load)
    loaded(builtin, "builtin")
    if setting in ("", "builtin"):
        follower = Follower(sandbox, BuiltinSource(), pin=pin, on_change=on_change, in_use=builtin)
        if pin and builtin.digest != f"sha256:{pin}":
            log.error("the built-in parser %s does not match PACKAGESTATS_PARSER_SHA256=%s", builtin.label, pin)
            # Nothing else to use: it stays in use, and says so.
            follower.refused = Refused("DigestMismatch", f"the module's sha256 is {builtin.digest.partition(':')[2]}"
                                       f", the pin is {pin}", revision=builtin.digest)
            refused("builtin", follower.refused)
        return follower, None
    http: httpx.AsyncClient | None = None
    notify: Notify | None = None
    if setting.startswith("ocirepository:"):
        http = httpx.AsyncClient(timeout=30.0, follow_redirects=False)
        namespace, _, name = setting.removeprefix("ocirepository:").partition("/")
        notify = event_poster(api_client, namespace, name)
    source = source_from_setting(setting, kubernetes_getter(api_client), http)
    follower = Follower(sandbox, source, pin=pin, notify=notify, on_loaded=loaded, on_refused=refused,
                        on_change=on_change, in_use=builtin)
    await follower.check_once()

    async def run() -> None:
        try:
            await asyncio.sleep(every)
            await follower.run(every)
        finally:
            if http is not None:
                await http.aclose()

    return follower, asyncio.create_task(run(), name="parser-source")
