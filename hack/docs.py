#!/usr/bin/env python3
"""Regenerate the settings table of README.md from the Settings model (run after changing settings)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from packagestats.settings import Settings  # noqa: E402

START = "<!-- settings-table: generated from src/packagestats/settings.py; tests/unit/test_docs.py checks it -->"
END = "<!-- /settings-table -->"


def settings_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, info in Settings.model_fields.items():
        default = info.default
        shown = "(none)" if default in (None, "") else f"`{default}`"
        rows.append(f"| `PACKAGESTATS_{name.upper()}` | {shown} | {info.description or ''} |")
    return "\n".join(rows)


def render(readme: str) -> str:
    block = f"{START}\n{settings_table()}\n{END}"
    return re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: block, readme, flags=re.S)


if __name__ == "__main__":
    path = REPO / "README.md"
    path.write_text(render(path.read_text()))
