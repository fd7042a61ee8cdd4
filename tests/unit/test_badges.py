from __future__ import annotations

import datetime

import pytest

from packagestats.api import Condition, PackageStatsStatus, PackageStatus
from packagestats.badges import abbreviate, badge


@pytest.mark.parametrize(("n", "text"), [
    (0, "0"), (248, "248"), (999, "999"), (1000, "1k"), (14_400, "14.4k"), (14_449, "14.4k"),
    (100_000, "100k"), (999_999, "1M"), (1_418_338, "1.42M"), (12_000_000, "12M"), (3_210_000_000, "3.21B"),
])
def test_abbreviate(n: int, text: str) -> None:
    assert abbreviate(n) == text


def _status(ready: str) -> PackageStatsStatus:
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    return PackageStatsStatus(
        total_downloads=14_400,
        packages=[PackageStatus(name="a/b", type="container", downloads=14_000),
                  PackageStatus(name="c", type="npm", downloads=400, error="404")],
        conditions=[Condition(type="Ready", status=ready, reason="X", message="", last_transition_time=now)],
    )


def test_badges() -> None:
    assert badge(_status("True")) == {"schemaVersion": 1, "label": "downloads", "message": "14.4k",
                                      "color": "brightgreen"}
    assert badge(_status("False"))["color"] == "orange"  # type: ignore[index]
    assert badge(_status("True"), "a/b")["message"] == "14k"  # type: ignore[index]
    assert badge(_status("True"), "c")["color"] == "orange"  # type: ignore[index]
    assert badge(_status("True"), "missing") is None
    assert badge(PackageStatsStatus()) == {"schemaVersion": 1, "label": "downloads", "message": "unknown",
                                           "color": "lightgrey"}
