"""Parser modules and artifacts for the parser-source tests: the real module under another digest, a
module of another interface, self-test pages with their expected JSON, and Flux-style tar.gz artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import wasmtime

from hack.oci import tar_gz as tar_gz  # Flux's artifact format, re-exported for the tests
from packagestats.sandbox import Sandbox, module_bytes

DATA = Path(__file__).resolve().parents[1] / "data" / "ghcr-pages"
SELFTEST_PAGE = "headscale-2026-07.html"


def _leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def rebadged(tag: str) -> bytes:
    """The real module with a custom section appended: the same parser under another sha256."""
    name = b"packagestats-test"
    payload = b"".join([_leb128(len(name)), name, tag.encode()])
    return b"".join([module_bytes(), b"\x00", _leb128(len(payload)), payload])


def other_interface() -> bytes:
    """A module that answers --version with interface 2."""
    answer = json.dumps({"interface": 2, "version": "2.0.0", "kinds": ["package", "versions", "listing"]})
    hexed = "".join(f"\\{b:02x}" for b in answer.encode())
    return bytes(wasmtime.wat2wasm(f"""(module
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 64) "{hexed}")
      (func (export "_start")
        (i32.store (i32.const 0) (i32.const 64)) (i32.store (i32.const 4) (i32.const {len(answer)}))
        (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""))


def selftest_files(sandbox: Sandbox, *, expected_downloads: int | None = None) -> dict[str, bytes]:
    """`selftest/package-headscale.{html,json}`: a real page and what the built-in module prints for it
    (with `expected_downloads` instead of the real total, to make an expectation no module meets)."""
    page = (DATA / SELFTEST_PAGE).read_bytes()
    expected = sandbox.parse(page, "package").page.model_dump(mode="json")
    if expected_downloads is not None:
        expected["downloads"] = expected_downloads
    return {"selftest/package-headscale.html": page,
            "selftest/package-headscale.json": json.dumps(expected).encode()}


