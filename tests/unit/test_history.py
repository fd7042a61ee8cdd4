from __future__ import annotations

import csv
import io
import json
import struct
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from packagestats import history

OBJ: dict[str, Any] = {
    "metadata": {"name": "hs", "namespace": "ns"},
    "spec": {"owner": "juanfont"},
    "status": {
        "totalDownloads": 1030,
        "history": [{"date": "2026-09-01", "downloads": 1000}, {"date": "2026-09-02", "downloads": 1010},
                    {"date": "2026-09-03", "downloads": 1030}],
        "daily": [{"date": "2026-08-31", "count": 5}, {"date": "2026-09-01", "count": 8}],
        "packages": [
            {"name": "a", "type": "container", "downloads": 1000, "last30Days": 12},
            {"name": "b", "type": "npm", "downloads": 30, "last30Days": 1},
        ],
    },
}


def test_rows_join_both_series() -> None:
    s = history.Series.from_object(OBJ)
    assert s.daily() == [("2026-08-31", 5), ("2026-09-01", 8)]
    assert s.rows() == [("2026-08-31", 5, None), ("2026-09-01", 8, 1000), ("2026-09-02", None, 1010),
                        ("2026-09-03", None, 1030)]


def test_table_json_csv() -> None:
    s = history.Series.from_object(OBJ)
    text = history.table(s)
    assert text.splitlines()[0] == "ns/hs (owner juanfont): 1,030 downloads in total"
    assert "total     ▁▃█  (3 days, 1,000 -> 1,030)" in text
    assert "2026-09-02             -         1,010" in text
    doc = json.loads(history.as_json(s))
    assert doc["history"][-1] == {"date": "2026-09-03", "totalDownloads": 1030}
    assert doc["daily"] == [{"date": "2026-08-31", "downloads": 5}, {"date": "2026-09-01", "downloads": 8}]
    rows = list(csv.reader(io.StringIO(history.as_csv(s))))
    assert rows[0] == ["date", "downloads", "total_downloads"]
    assert rows[1:] == [["2026-08-31", "5", ""], ["2026-09-01", "8", "1000"], ["2026-09-02", "", "1010"],
                        ["2026-09-03", "", "1030"]]


def test_sparkline() -> None:
    assert history.sparkline([]) == ""
    assert history.sparkline([3, 3]) == "▁▁"
    assert history.sparkline([0, 7, 14]) == "▁▄█"


def test_plot_png_and_svg(tmp_path: Path) -> None:
    s = history.Series.from_object(OBJ)
    png = tmp_path / "h.png"
    history.plot(s, png)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (900, 450)
    svg = tmp_path / "h.svg"
    history.plot(s, svg)
    root = ET.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert svg.stat().st_size > 5000
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        history.plot(s, tmp_path / "h.gif")
