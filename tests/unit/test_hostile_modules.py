"""Parser modules from outside are untrusted code: hostile modules, written here in WAT, run through the
same sandbox as the real parser. Each is stopped or refused with its own error, nothing outside its
sandbox changes, and the sandbox parses the next page with the module in use as before.

Every module answers `--version` like a real one (unless the test is about that), so that it passes the
load checks and its hostile part runs on a page, as a module shipped through Flux would.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime

from packagestats.pages import PackagePage
from packagestats.sandbox import (
    BadOutputError,
    InterfaceError,
    LimitExceeded,
    LoadedModule,
    ModuleLoadError,
    NoCountError,
    ParserCrashError,
    Sandbox,
    module_bytes,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "pages" / "package-full.html"
VERSION = {"interface": 1, "version": "9.9.9-hostile", "kinds": ["package", "versions", "listing"]}
# WASI errnos a sandbox answers a forbidden open with: EACCES, EBADF, ENOENT, EPERM, EROFS, ENOTCAPABLE.
DENIED = {2, 8, 44, 63, 69, 76}


def wat(text: str) -> bytes:
    return bytes(wasmtime.wat2wasm(text))


def wat_string(text: str) -> str:
    return "".join(f"\\{b:02x}" for b in text.encode())


def module(body: str, *, version: object = VERSION, imports: str = "", data: str = "", memory: int = 1) -> bytes:
    """A WASI module: on `--version` (argc 2) it prints `version`; on a page (argc 3) it runs `body`."""
    answer = version if isinstance(version, str) else json.dumps(version)
    return wat(f"""
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args (param i32 i32) (result i32)))
  {imports}
  (memory (export "memory") {memory})
  (data (i32.const 1024) "{wat_string(answer)}")
  {data}
  (func $print (param $fd i32) (param $ptr i32) (param $len i32) (result i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (call $write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
  (func (export "_start") (local $i i32) (local $errno i32)
    (drop (call $args (i32.const 16) (i32.const 20)))
    (if (i32.eq (i32.load (i32.const 16)) (i32.const 2))
      (then (drop (call $print (i32.const 1) (i32.const 1024) (i32.const {len(answer.encode())}))) (return)))
    {body}))
""")


PATH_OPEN = """(import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))"""


def open_path(fd: int, path: str, *, create: bool) -> bytes:
    """Opens `path` under directory `fd` (creating it, for writing, if `create`); exits with the errno,
    or on success writes to the file / prints its first bytes and exits 0."""
    oflags = 1 if create else 0  # O_CREAT
    rights = (1 << 6) if create else (1 << 1)  # fd_write : fd_read
    use = ("(drop (call $print (i32.load (i32.const 32)) (i32.const 2048) (i32.const 4)))" if create else
           "(drop (call $read (i32.load (i32.const 32)) (i32.const 40) (i32.const 1) (i32.const 48)))"
           "(drop (call $print (i32.const 1) (i32.const 4096) (i32.load (i32.const 48))))")
    return module(f"""
    (i32.store (i32.const 40) (i32.const 4096))
    (i32.store (i32.const 44) (i32.const 256))
    (local.set $errno (call $open (i32.const {fd}) (i32.const 0) (i32.const 2048) (i32.const {len(path.encode())})
      (i32.const {oflags}) (i64.const {rights}) (i64.const 0) (i32.const 0) (i32.const 32)))
    (if (local.get $errno) (then (call $exit (local.get $errno))))
    {use}""", imports=PATH_OPEN + """
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))""",
        data=f'(data (i32.const 2048) "{wat_string(path)}")')


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    sb = Sandbox(fuel=200_000_000, memory_bytes=16 << 20, timeout_seconds=2.0,
                 cache_dir=tmp_path_factory.mktemp("module-cache"))
    sb.load()
    return sb


@pytest.fixture
def private_tmp(sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Runs' directories go under tmp_path: at most one is kept (the module's runs are one at a time)
    and nothing is left once the sandbox is closed."""
    sandbox.close()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    yield tmp_path
    assert len(list(tmp_path.iterdir())) <= 1
    sandbox.close()
    assert list(tmp_path.iterdir()) == []


def run(sandbox: Sandbox, wasm: bytes, page: bytes = b"<p>page</p>") -> None:
    loaded = sandbox.compile(wasm)
    assert isinstance(loaded, LoadedModule)
    sandbox.parse(page, "package", module=loaded)


def still_healthy(sandbox: Sandbox) -> None:
    page = sandbox.parse(FIXTURE.read_bytes()).page
    assert isinstance(page, PackagePage) and page.downloads == 1418338
    assert sandbox.info.digest == "sha256:" + hashlib.sha256(module_bytes()).hexdigest()


def exit_status(error: pytest.ExceptionInfo[ParserCrashError]) -> int:
    prefix = "parser failed (exit status "
    assert error.value.reason.startswith(prefix), error.value.reason
    return int(error.value.reason.removeprefix(prefix).split(")")[0])


# -- the interface --------------------------------------------------------------------------------


def test_the_builtin_module_names_its_interface(sandbox: Sandbox) -> None:
    info = sandbox.info
    assert (info.interface, info.kinds) == (1, ("package", "versions", "listing"))
    assert info.version == "0.2.0"
    assert info.label == f"0.2.0@{info.digest[7:19]}"
    result = sandbox.parse(FIXTURE.read_bytes())
    assert result.parser == info


@pytest.mark.parametrize(
    ("version", "message"),
    [
        ({**VERSION, "interface": 2}, "the module speaks parser interface 2; this operator speaks 1"),
        ({**VERSION, "kinds": ["package"]}, "the module does not parse versions, listing pages"),
        ("not json", "the module's --version output is not the expected JSON"),
        ({"interface": 1}, "the module's --version output is not the expected JSON"),
    ],
)
def test_a_module_of_another_interface_is_refused(sandbox: Sandbox, private_tmp: Path, version: object,
                                                   message: str) -> None:
    with pytest.raises(InterfaceError) as caught:
        sandbox.compile(module("(call $exit (i32.const 0))", version=version))
    assert caught.value.reason.startswith(message)
    still_healthy(sandbox)


def test_a_module_that_does_not_answer_version_is_refused(sandbox: Sandbox, private_tmp: Path) -> None:
    wasm = wat("""(module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1) (func (export "_start") (call $exit (i32.const 2))))""")
    with pytest.raises(InterfaceError, match=r"does not answer --version \(exit status 2\)"):
        sandbox.compile(wasm)


def test_a_module_that_spins_on_version_is_refused(sandbox: Sandbox, private_tmp: Path) -> None:
    wasm = wat("""(module (memory (export "memory") 1)
      (func (export "_start") (loop $l (br $l))))""")
    with pytest.raises(InterfaceError, match="failed on --version: parser ran out of fuel"):
        sandbox.compile(wasm)


def test_imports_beyond_wasi_are_refused(sandbox: Sandbox) -> None:
    wasm = wat("""(module (import "env" "system" (func (param i32) (result i32)))
      (func (export "_start")))""")
    with pytest.raises(ModuleLoadError, match="cannot load the parser module"):
        sandbox.compile(wasm)


def test_not_a_module_is_refused(sandbox: Sandbox) -> None:
    with pytest.raises(ModuleLoadError, match="cannot load the parser module"):
        sandbox.compile(b"\0asm\x01\0\0\0garbage")


# -- the filesystem -------------------------------------------------------------------------------


def test_writing_into_its_directory_is_refused(sandbox: Sandbox, private_tmp: Path) -> None:
    with pytest.raises(ParserCrashError) as caught:
        run(sandbox, open_path(3, "evil.txt", create=True))
    assert exit_status(caught) in DENIED
    (work,) = private_tmp.iterdir()  # the directory kept for the next run, with nothing created in it
    assert sorted(str(p.relative_to(work)) for p in work.rglob("*")) == [
        "page", "page/page.html", "stderr", "stdout"]
    still_healthy(sandbox)


@pytest.mark.parametrize(
    ("fd", "path"),
    [
        (3, "../stdout"),  # the output files sit beside the page's directory
        (3, "../../../../../../etc/passwd"),
        (3, "/etc/passwd"),
        (4, "etc/passwd"),  # no second preopened directory
        (0, "etc/passwd"),  # stdin is not a directory
    ],
)
def test_paths_outside_are_refused(sandbox: Sandbox, private_tmp: Path, fd: int, path: str) -> None:
    with pytest.raises(ParserCrashError) as caught:
        run(sandbox, open_path(fd, path, create=False))
    assert exit_status(caught) in DENIED


def test_writing_outside_is_refused(sandbox: Sandbox, private_tmp: Path, tmp_path_factory: pytest.TempPathFactory
                                    ) -> None:
    outside = tmp_path_factory.mktemp("outside")
    target = outside / "owned.txt"
    with pytest.raises(ParserCrashError) as caught:
        run(sandbox, open_path(3, os.path.relpath(target, private_tmp / "x" / "page"), create=True))
    assert exit_status(caught) in DENIED
    assert not target.exists()
    with pytest.raises(ParserCrashError):
        run(sandbox, open_path(3, str(target), create=True))
    assert not target.exists()


def test_the_page_is_readable_as_the_real_parser_needs(sandbox: Sandbox, private_tmp: Path) -> None:
    # The control for the tests above: the same module does read the page it is given.
    with pytest.raises(BadOutputError) as caught:
        run(sandbox, open_path(3, "page.html", create=False), page=b"PAGE-CONTENT")
    assert "does not match the package model" in caught.value.reason
    assert "PAGE" in caught.value.reason


# -- the environment ------------------------------------------------------------------------------


def test_the_environment_is_empty(sandbox: Sandbox, private_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACKAGESTATS_GITHUB_TOKEN", "secret-token")
    wasm = module("""
    (drop (call $env_sizes (i32.const 32) (i32.const 36)))
    (call $exit (i32.add (i32.const 100) (i32.add (i32.load (i32.const 32)) (i32.load (i32.const 36)))))""",
                  imports="""(import "wasi_snapshot_preview1" "environ_sizes_get"
                    (func $env_sizes (param i32 i32) (result i32)))""")
    with pytest.raises(ParserCrashError) as caught:
        run(sandbox, wasm)
    assert exit_status(caught) == 100  # no variables, no bytes


# -- limits ---------------------------------------------------------------------------------------


def test_spinning_forever_runs_out_of_fuel(sandbox: Sandbox, private_tmp: Path) -> None:
    with pytest.raises(LimitExceeded) as caught:
        run(sandbox, module("(loop $l (br $l))"))
    assert caught.value.limit == "fuel"
    still_healthy(sandbox)


def test_spinning_forever_hits_the_deadline(tmp_path: Path) -> None:
    sb = Sandbox(fuel=10**15, memory_bytes=16 << 20, timeout_seconds=0.3, cache_dir=tmp_path)
    with pytest.raises(LimitExceeded) as caught:
        run(sb, module("(loop $l (br $l))"))
    assert caught.value.limit == "time"
    assert caught.value.reason == "parser exceeded its 0.3 s deadline"


def test_growing_past_the_memory_limit(sandbox: Sandbox, private_tmp: Path) -> None:
    wasm = module("""(loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))) unreachable""")
    with pytest.raises(LimitExceeded) as caught:
        run(sandbox, wasm)
    assert caught.value.limit == "memory"
    still_healthy(sandbox)


def test_initial_memory_past_the_limit(sandbox: Sandbox, private_tmp: Path) -> None:
    with pytest.raises(LimitExceeded) as caught:
        run(sandbox, module("(call $exit (i32.const 0))", memory=1024))  # 64 MiB against 16
    assert caught.value.limit == "memory"


def test_printing_100_megabytes(sandbox: Sandbox, private_tmp: Path) -> None:
    # 100 writes of 1 MiB of whatever the memory holds.
    wasm = module("""(loop $l (drop (call $print (i32.const 1) (i32.const 65536) (i32.const 1048576)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 100))))""", memory=17)
    with pytest.raises(BadOutputError) as caught:
        run(sandbox, wasm)
    assert caught.value.reason == "parser output is unreasonably large (over 67108864 bytes)"
    still_healthy(sandbox)


def test_a_flood_on_stderr_is_cut_to_one_short_line(sandbox: Sandbox, private_tmp: Path) -> None:
    wasm = module("""(drop (call $print (i32.const 2) (i32.const 65536) (i32.const 1048576)))
    (call $exit (i32.const 3))""", memory=17)
    with pytest.raises(NoCountError) as caught:
        run(sandbox, wasm)
    assert len(caught.value.reason) <= 500


# -- exit statuses --------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [1, 5, 125])
def test_odd_exit_statuses(sandbox: Sandbox, private_tmp: Path, code: int) -> None:
    with pytest.raises(ParserCrashError) as caught:
        run(sandbox, module(f"(call $exit (i32.const {code}))"))
    assert exit_status(caught) == code


@pytest.mark.parametrize("code", [126, 255, -1])
def test_exit_statuses_wasi_does_not_allow(sandbox: Sandbox, private_tmp: Path, code: int) -> None:
    with pytest.raises(ParserCrashError) as caught:
        run(sandbox, module(f"(call $exit (i32.const {code}))"))
    assert caught.value.reason == "parser failed: exit with invalid exit status outside of [0..126)"
    still_healthy(sandbox)


def test_exit_zero_without_output(sandbox: Sandbox, private_tmp: Path) -> None:
    with pytest.raises(BadOutputError, match="does not match the package model"):
        run(sandbox, module("(call $exit (i32.const 0))"))


def test_a_trap(sandbox: Sandbox, private_tmp: Path) -> None:
    with pytest.raises(ParserCrashError, match="parser trapped"):
        run(sandbox, module("unreachable"))


def test_a_lying_count(sandbox: Sandbox, private_tmp: Path) -> None:
    # Output of the right shape but a negative count never passes validation.
    out = json.dumps({"kind": "package", "downloads": -5, "approximate": False, "downloads_text": "",
                      "daily": [], "versions": [], "last_published": None, "versions_page_count": None})
    wasm = module(f"(drop (call $print (i32.const 1) (i32.const 2048) (i32.const {len(out)})))",
                  data=f'(data (i32.const 2048) "{wat_string(out)}")')
    with pytest.raises(BadOutputError, match="does not match the package model"):
        run(sandbox, wasm)
