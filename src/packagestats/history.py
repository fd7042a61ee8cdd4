"""`packagestats history`: a resource's downloads over time as a table, JSON, CSV or a chart.

Two series come from the status: the total at the last scrape of each UTC day (`status.history`, as
long as the operator has been watching), and downloads per day (the sum over packages of their pages'
30-day charts).
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packagestats.api import PackageStatsStatus

BARS = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class Series:
    namespace: str
    name: str
    owner: str
    status: PackageStatsStatus

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> Series:
        meta = obj.get("metadata", {})
        return cls(meta.get("namespace", ""), meta.get("name", ""), obj.get("spec", {}).get("owner", ""),
                   PackageStatsStatus.model_validate(obj.get("status") or {}))

    def daily(self) -> list[tuple[str, int]]:
        """Downloads per day, summed over packages, oldest first."""
        per_day: dict[str, int] = defaultdict(int)
        for p in self.status.packages:
            for d in p.daily:
                per_day[d.date.isoformat()] += d.count
        return sorted(per_day.items())

    def totals(self) -> list[tuple[str, int]]:
        return [(h.date.isoformat(), h.downloads) for h in self.status.history]

    def rows(self) -> list[tuple[str, int | None, int | None]]:
        """(date, downloads that day, total at the end of the day) over every date either series has."""
        daily, totals = dict(self.daily()), dict(self.totals())
        return [(d, daily.get(d), totals.get(d)) for d in sorted(set(daily) | set(totals))]


def sparkline(values: list[int]) -> str:
    if not values:
        return ""
    low, high = min(values), max(values)
    span = high - low or 1
    return "".join(BARS[(v - low) * (len(BARS) - 1) // span] for v in values)


def table(series: Series) -> str:
    out = [f"{series.namespace}/{series.name} (owner {series.owner}): "
           f"{_fmt(series.status.total_downloads)} downloads in total"]
    daily = [n for _, n in series.daily()]
    totals = [n for _, n in series.totals()]
    if daily:
        out.append(f"per day   {sparkline(daily)}  ({len(daily)} days, {sum(daily):,} downloads)")
    if totals:
        out.append(f"total     {sparkline(totals)}  ({len(totals)} days, {totals[0]:,} -> {totals[-1]:,})")
    out.append("")
    out.append(f"{'date':<12}{'downloads':>12}{'total':>14}")
    for date, day, total in series.rows():
        out.append(f"{date:<12}{_fmt(day):>12}{_fmt(total):>14}")
    return "\n".join(out) + "\n"


def _fmt(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def as_json(series: Series) -> str:
    doc = {
        "namespace": series.namespace, "name": series.name, "owner": series.owner,
        "totalDownloads": series.status.total_downloads,
        "daily": [{"date": d, "downloads": n} for d, n in series.daily()],
        "history": [{"date": d, "totalDownloads": n} for d, n in series.totals()],
        "packages": [{"name": p.name, "type": p.type, "downloads": p.downloads,
                      "history": [{"date": h.date.isoformat(), "downloads": h.downloads} for h in p.history]}
                     for p in series.status.packages],
    }
    return json.dumps(doc, indent=2) + "\n"


def as_csv(series: Series) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["date", "downloads", "total_downloads"])
    for date, day, total in series.rows():
        writer.writerow([date, "" if day is None else day, "" if total is None else total])
    return buf.getvalue()


def plot(series: Series, path: Path) -> None:
    """A PNG or SVG (by the file's suffix) with downloads per day as bars and the total as a line."""
    if path.suffix.lower() not in (".png", ".svg"):
        raise ValueError(f"--plot writes .png or .svg files, not {path.suffix or 'files without a suffix'}")
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display here
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise RuntimeError("--plot needs matplotlib: pip install 'packagestats[plot]'") from e
    import datetime

    def dates(points: list[tuple[str, int]]) -> Any:
        return mdates.date2num([datetime.date.fromisoformat(d) for d, _ in points])

    daily, totals = series.daily(), series.totals()
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
    try:
        ax.bar(dates(daily), [n for _, n in daily], color="#4c9be8", label="downloads per day")
        ax.set_ylabel("downloads per day")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
        fig.autofmt_xdate()
        if totals:
            twin = ax.twinx()
            twin.plot(dates(totals), [n for _, n in totals], color="#d9480f", marker="o", label="total")
            twin.set_ylabel("total downloads")
            twin.ticklabel_format(axis="y", style="plain")
            twin.legend(loc="upper right")
        ax.legend(loc="upper left")
        ax.set_title(f"{series.owner}: {series.namespace}/{series.name}")
        fig.tight_layout()
        fig.savefig(path, format=path.suffix.lower().lstrip("."))
    finally:
        plt.close(fig)
