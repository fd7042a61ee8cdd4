"""`packagestats parse --parser FILE.wasm PAGE...` as users run it: a candidate module on saved pages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.parser_artifacts import other_interface, rebadged

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "packagestats"
CAPTURED = REPO / "tests" / "data" / "ghcr-pages"
FIXTURES = REPO / "tests" / "fixtures" / "pages"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")  # compiled modules shared by the runs of this module


def run(cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PACKAGESTATS_")}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          env={**environ, "PACKAGESTATS_CACHE_DIR": str(cache)})


def test_a_candidate_on_several_pages(cache: Path, tmp_path: Path) -> None:
    candidate = tmp_path / "candidate.wasm"
    candidate.write_bytes(rebadged("cli"))
    pages = [CAPTURED / "headscale-2026-07.html", FIXTURES / "package-no-total.html",
             CAPTURED / "icicle-insights-2026-09.html"]
    done = run(cache, "parse", "--parser", str(candidate), *map(str, pages))
    assert done.returncode == 1  # one page holds no count
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["file"] for line in lines] == list(map(str, pages))
    assert lines[0]["result"]["downloads"] == 1418338 and lines[2]["result"]["downloads"] == 302
    assert lines[1]["error"] == 'no "Total downloads" count found'
    assert "packagestats: parser 0.2.0@" in done.stderr and str(candidate) in done.stderr


def test_a_candidate_of_another_interface_is_refused(cache: Path, tmp_path: Path) -> None:
    candidate = tmp_path / "v2.wasm"
    candidate.write_bytes(other_interface())
    done = run(cache, "parse", "--parser", str(candidate), str(CAPTURED / "headscale-2026-07.html"))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == (f"packagestats: {candidate}: refused: the module speaks parser interface 2; "
                                   "this operator speaks 1")


def test_one_page_prints_its_json_as_before(cache: Path) -> None:
    done = run(cache, "parse", str(CAPTURED / "headscale-2026-07.html"))
    assert done.returncode == 0 and json.loads(done.stdout)["downloads"] == 1418338
