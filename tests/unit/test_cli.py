"""The console script as users run it: `packagestats parse`, `scrape` and `crd` (no cluster)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.fake_github import FakeGitHub, captured_page

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "packagestats"


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PACKAGESTATS_")}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=60,
                          env={**environ, "PACKAGESTATS_CACHE_DIR": "", **env})


def test_parse_prints_the_exact_count(tmp_path: Path) -> None:
    page = tmp_path / "headscale.html"
    page.write_bytes(captured_page("headscale-2026-07.html"))
    done = run("parse", str(page))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["kind"], result["downloads"], result["approximate"]) == ("package", 1418338, False)
    assert len(result["daily"]) == 30


def test_parse_without_a_count_fails_with_one_line() -> None:
    done = run("parse", str(REPO / "tests" / "fixtures" / "pages" / "package-no-total.html"))
    assert done.returncode != 0 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Total downloads" in done.stderr
    missing = run("parse", "/nonexistent/page.html")
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_scrape_honours_the_github_url() -> None:
    with FakeGitHub() as gh:
        gh.add_captured("icicle-insights-2026-09.html")
        done = run("scrape", "ICICLE-ai/insights", "--repository", "icicle-insights",
                   PACKAGESTATS_GITHUB_URL=gh.base_url)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["downloads"] == 302
        assert result["url"] == f"{gh.base_url}/ICICLE-ai/icicle-insights/pkgs/container/insights"
        absent = run("scrape", "ICICLE-ai/nope", PACKAGESTATS_GITHUB_URL=gh.base_url)
        assert absent.returncode == 1 and "NotFound" in absent.stderr


def test_crd_prints_the_committed_crd() -> None:
    done = run("crd")
    assert done.stdout == (REPO / "crds" / "packagestats.dev_packagestats.yaml").read_text()
