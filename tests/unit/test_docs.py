from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

from hack import docs  # noqa: E402
from packagestats.settings import Settings  # noqa: E402


def test_readme_documents_every_setting() -> None:
    readme = (REPO / "README.md").read_text()
    assert docs.render(readme) == readme, "run `python hack/docs.py` to regenerate the settings table"
    for name in Settings.model_fields:
        assert f"`PACKAGESTATS_{name.upper()}`" in readme


def test_readme_starts_with_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text()
    first_block = readme.split("```sh", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in first_block.strip().splitlines()] == [["make", "demo"], ["make", "test"]]
    assert "exec make test" in (REPO / ".ci" / "run").read_text()
