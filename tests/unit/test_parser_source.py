"""Parser sources without a cluster: a module file (as a ConfigMap mounts it) reloaded without a restart,
the checks a candidate must pass, and artifacts that try to climb out of their directory."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path
from typing import Any

import pytest

from packagestats import parser_source
from packagestats.pages import PackagePage
from packagestats.parser_source import Candidate, FileSource, Follower, Refused, check, unpack
from packagestats.sandbox import Sandbox, module_bytes
from tests.support.parser_artifacts import SELFTEST_PAGE, other_interface, rebadged, selftest_files, tar_gz

PAGE = Path(__file__).resolve().parents[1] / "data" / "ghcr-pages" / SELFTEST_PAGE


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def sandbox(cache: Path) -> Sandbox:
    # A new sandbox per test (the module in use changes); compiled modules come from one disk cache.
    return Sandbox(fuel=2_000_000_000, memory_bytes=256 << 20, timeout_seconds=5.0, cache_dir=cache)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(directory: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(data)


async def test_a_file_source_is_reloaded_without_a_restart(sandbox: Sandbox, tmp_path: Path) -> None:
    builtin = sandbox.load()
    mounted = tmp_path / "mount"
    write(mounted, {"parser.wasm": rebadged("one"), **selftest_files(sandbox)})
    loaded: list[str] = []
    follower = Follower(sandbox, FileSource(mounted / "parser.wasm"),
                        on_loaded=lambda info, origin: loaded.append(info.digest))
    assert await follower.check_once()
    assert sandbox.info.digest == f"sha256:{sha(rebadged('one'))}" != builtin.digest
    assert not await follower.check_once()  # unchanged: nothing to do

    # A module that does not speak our interface: refused, the one in use stays.
    write(mounted, {"parser.wasm": other_interface()})
    assert not await follower.check_once()
    assert follower.refused is not None and follower.refused.reason == "InterfaceMismatch"
    assert "speaks parser interface 2" in follower.refused.message
    result = sandbox.parse(PAGE.read_bytes())
    assert isinstance(result.page, PackagePage) and result.page.downloads == 1418338
    assert result.parser is not None and result.parser.digest == f"sha256:{sha(rebadged('one'))}"

    write(mounted, {"parser.wasm": rebadged("two")})
    assert await follower.check_once() and follower.refused is None
    assert loaded == [f"sha256:{sha(rebadged('one'))}", f"sha256:{sha(rebadged('two'))}"]
    assert sandbox.parse(PAGE.read_bytes()).parser == sandbox.info


async def test_an_unreadable_file_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    follower = Follower(sandbox, FileSource(tmp_path / "missing.wasm"))
    assert not await follower.check_once()
    assert follower.refused is not None and follower.refused.reason == "Unreadable"
    assert sandbox.info.digest == f"sha256:{sha(module_bytes())}"


def test_the_pin(sandbox: Sandbox) -> None:
    wasm = rebadged("one")
    assert check(sandbox, Candidate(wasm, "t", "r"), pin=sha(wasm)).info.digest == f"sha256:{sha(wasm)}"
    with pytest.raises(Refused) as caught:
        check(sandbox, Candidate(wasm, "t", "r"), pin=sha(module_bytes()))
    assert caught.value.reason == "DigestMismatch"


def test_a_self_test_that_fails(sandbox: Sandbox) -> None:
    files = selftest_files(sandbox, expected_downloads=5)
    tests = parser_source._selftests(files)
    with pytest.raises(Refused) as caught:
        check(sandbox, Candidate(rebadged("x"), "t", "r", tests))
    assert (caught.value.reason, caught.value.message) == (
        "SelfTestFailed", "package-headscale.html: the module's output differs in downloads")
    assert check(sandbox, Candidate(rebadged("x"), "t", "r", parser_source._selftests(selftest_files(sandbox))))


def test_a_self_test_page_the_module_cannot_parse(sandbox: Sandbox) -> None:
    tests = parser_source._selftests({"selftest/package.html": b"<p>nothing</p>"})
    with pytest.raises(Refused) as caught:
        check(sandbox, Candidate(rebadged("x"), "t", "r", tests))
    assert caught.value.reason == "SelfTestFailed"
    assert 'no "Total downloads" count found' in caught.value.message


def test_an_artifact_must_bring_a_self_test(sandbox: Sandbox) -> None:
    with pytest.raises(Refused) as caught:
        check(sandbox, Candidate(rebadged("x"), "t", "r", needs_selftest=True))
    assert caught.value.reason == "NoSelfTest"


def test_a_self_test_page_named_after_no_kind() -> None:
    with pytest.raises(Refused, match=r"named after its kind"):
        parser_source._selftests({"selftest/headscale.html": b""})


def _tar_with(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return buf.getvalue()


def _member(name: str, type_: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = type_, link
    return info


@pytest.mark.parametrize(
    "member",
    [
        _member("../parser.wasm"),
        _member("/etc/parser.wasm"),
        _member("parser.wasm", tarfile.SYMTYPE, "/etc/passwd"),
        _member("parser.wasm", tarfile.LNKTYPE, "../../etc/passwd"),
        _member("selftest/dev", tarfile.CHRTYPE),
    ],
)
def test_artifacts_that_climb_out_are_refused(member: tarfile.TarInfo) -> None:
    with pytest.raises(Refused) as caught:
        unpack(_tar_with(member))
    assert caught.value.reason == "BadArtifact"


def test_unpack_reads_plain_files() -> None:
    assert unpack(tar_gz({"./parser.wasm": b"w", "selftest/package.html": b"p"})) == {
        "parser.wasm": b"w", "selftest/package.html": b"p"}
    with pytest.raises(Refused, match=r"not a readable tar\.gz"):
        unpack(b"not a tarball")


def test_source_from_setting(tmp_path: Path) -> None:
    assert isinstance(parser_source.source_from_setting("builtin"), parser_source.BuiltinSource)
    assert parser_source.source_from_setting(f"file:{tmp_path}/p.wasm").name == f"file:{tmp_path}/p.wasm"
    with pytest.raises(ValueError, match="unknown parser source"):
        parser_source.source_from_setting("http://example.com/p.wasm")


# -- what the ParserRefused condition is made of ---------------------------------------------------


async def test_a_refusal_names_the_refused_revision_and_changes_are_announced_once(sandbox: Sandbox,
                                                                                   tmp_path: Path) -> None:
    builtin = sandbox.load()
    mounted = tmp_path / "mount"
    changes: list[tuple[str | None, str | None]] = []
    follower: Follower

    def changed() -> None:
        changes.append((follower.in_use.label if follower.in_use else None,
                        follower.refused.reason if follower.refused else None))

    follower = Follower(sandbox, FileSource(mounted / "parser.wasm"), pin=sha(rebadged("pinned")),
                        on_change=changed, in_use=builtin)
    write(mounted, {"parser.wasm": rebadged("other")})
    for _ in range(3):  # checked again and again: one refusal, announced once
        assert not await follower.check_once()
    assert follower.refused is not None and follower.refused.reason == "DigestMismatch"
    assert follower.refused.revision == f"sha256:{sha(rebadged('other'))}"
    assert follower.in_use == builtin and sandbox.info == builtin
    assert changes == [(builtin.label, "DigestMismatch")]

    # A self-test page named after no kind: refused before a candidate is made, its revision still known.
    write(mounted, {"parser.wasm": rebadged("third"), "selftest/nothing.html": b""})
    assert not await follower.check_once()
    assert follower.refused is not None and follower.refused.reason == "BadArtifact"
    assert follower.refused.revision == f"sha256:{sha(rebadged('third'))}"
    (mounted / "selftest" / "nothing.html").unlink()

    write(mounted, {"parser.wasm": rebadged("pinned"), **selftest_files(sandbox)})
    assert await follower.check_once() and follower.refused is None
    assert changes[-1] == (sandbox.info.label, None) and len(changes) == 3


class FlakySource:
    """A source that answers with one module, then cannot be read for a while."""

    name = "flaky"

    def __init__(self, wasm: bytes) -> None:
        self.wasm, self.down = wasm, False

    async def fetch(self, known: str | None) -> Candidate | None:
        if self.down:
            raise Refused("SourceUnavailable", "cannot read flaky: HTTP 503 Service Unavailable")
        revision = f"sha256:{sha(self.wasm)}"
        return None if revision == known else Candidate(self.wasm, self.name, revision)


async def test_a_source_that_is_readable_again_is_no_longer_refused(sandbox: Sandbox) -> None:
    changes: list[str | None] = []
    source = FlakySource(rebadged("one"))
    follower = Follower(sandbox, source, on_change=lambda: changes.append(
        follower.refused.reason if follower.refused else None))
    assert await follower.check_once()
    source.down = True
    assert not await follower.check_once() and not await follower.check_once()
    assert follower.refused is not None and follower.refused.revision is None  # which one is not known
    source.down = False
    assert not await follower.check_once()  # the same revision as before: nothing to load
    assert follower.refused is None
    assert changes == [None, "SourceUnavailable", None]

    # A refused revision stays refused across an outage.
    source.wasm = other_interface()
    assert not await follower.check_once()
    source.down = True
    assert not await follower.check_once()
    source.down = False
    assert not await follower.check_once()
    assert follower.refused is not None and follower.refused.reason == "InterfaceMismatch"
    assert follower.refused.revision == f"sha256:{sha(other_interface())}"


async def test_a_builtin_module_that_misses_the_pin_stays_in_use_and_says_so(sandbox: Sandbox) -> None:
    from packagestats.metrics import Metrics, Observations

    metrics = Metrics(Observations(), 5)
    follower, task = await parser_source.start("builtin", "0" * 64, 30, sandbox, None, metrics)
    assert task is None
    assert follower.in_use == sandbox.info and follower.source.name == "builtin"
    assert follower.refused is not None and follower.refused.reason == "DigestMismatch"
    assert follower.refused.revision == f"sha256:{sha(module_bytes())}"
    assert metrics.registry.get_sample_value("packagestats_parser_refused_total",
                                             {"source": "builtin", "reason": "DigestMismatch"}) == 1.0
    follower, _ = await parser_source.start("builtin", sha(module_bytes()), 30, sandbox, None, metrics)
    assert follower.refused is None


async def test_an_artifact_refused_in_the_download_names_flux_revision_and_digest() -> None:
    import httpx

    tarball = tar_gz({"parser.wasm": rebadged("one")})
    digest = f"sha256:{sha(b'something else')}"
    obj: dict[str, Any] = {"status": {"artifact": {"url": "http://source-controller/a.tar.gz", "digest": digest,
                                   "revision": "latest@sha256:" + "a" * 64}}}

    async def get_object(namespace: str, name: str) -> dict[str, Any]:
        return obj

    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200, content=tarball))) as http:
        source = parser_source.OCIRepositorySource("flux-system", "parser", get_object, http)
        with pytest.raises(Refused) as caught:
            await source.fetch(None)
        assert caught.value.reason == "DigestMismatch"
        assert caught.value.revision == f"latest@sha256:{'a' * 64}, artifact {digest}"

        class Forbidden(Exception):
            status, reason = 403, "Forbidden"

            def __str__(self) -> str:
                return "(403)\nReason: Forbidden\nHTTP response headers: HTTPHeaderDict({...})\nHTTP response body: ..."

        async def forbidden(namespace: str, name: str) -> dict[str, Any]:
            raise Forbidden()

        with pytest.raises(Refused) as caught:
            await parser_source.OCIRepositorySource("flux-system", "parser", forbidden, http).fetch(None)
        assert (caught.value.reason, caught.value.message, caught.value.revision) == (
            "SourceUnavailable", "cannot read ocirepository:flux-system/parser: HTTP 403 Forbidden", None)
