"""`packagestats history`: a resource's downloads over time as a table, JSON, CSV or a chart.

From the history database (`--db` or PACKAGESTATS_HISTORY_URL) it is the full record, per day and per
package: GitHub's own daily counts where known, else the difference of consecutive totals (marked as
derived), and the total at the end of each day. Without a database it is the status's short summary:
the total at the last scrape of each UTC day (`status.history`) and downloads per day (`status.daily`,
the sum of the packages' 30-day charts).
"""

from __future__ import annotations

import csv
import datetime
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packagestats.api import PackageStatsStatus
from packagestats.history_db import Day, ResourceHistory

__all__ = ["ResourceHistory", "Series"]

BARS = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class Series:
    namespace: str
    name: str
    owner: str
    status: PackageStatsStatus
    since: datetime.date | None = None
    until: datetime.date | None = None

    @classmethod
    def from_object(cls, obj: dict[str, Any], since: datetime.date | None = None,
                    until: datetime.date | None = None) -> Series:
        meta = obj.get("metadata", {})
        return cls(meta.get("namespace", ""), meta.get("name", ""), obj.get("spec", {}).get("owner", ""),
                   PackageStatsStatus.model_validate(obj.get("status") or {}), since, until)

    def _within(self, day: datetime.date) -> bool:
        return (self.since is None or day >= self.since) and (self.until is None or day <= self.until)

    def daily(self) -> list[tuple[str, int]]:
        """Downloads per day, summed over packages, oldest first."""
        return [(d.date.isoformat(), d.count) for d in self.status.daily if self._within(d.date)]

    def totals(self) -> list[tuple[str, int]]:
        return [(h.date.isoformat(), h.downloads) for h in self.status.history if self._within(h.date)]

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
        "source": "status",
        "namespace": series.namespace, "name": series.name, "owner": series.owner,
        "totalDownloads": series.status.total_downloads,
        "daily": [{"date": d, "downloads": n} for d, n in series.daily()],
        "history": [{"date": d, "totalDownloads": n} for d, n in series.totals()],
        "packages": [{"name": p.name, "type": p.type, "downloads": p.downloads, "last30Days": p.last30_days}
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
    _plot(f"{series.owner}: {series.namespace}/{series.name}", series.daily(), series.totals(), path)


def _plot(title: str, daily: list[tuple[str, int]], totals: list[tuple[str, int]], path: Path) -> None:
    if path.suffix.lower() not in (".png", ".svg"):
        raise ValueError(f"--plot writes .png or .svg files, not {path.suffix or 'files without a suffix'}")
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display here
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise RuntimeError("--plot needs matplotlib: pip install 'packagestats[plot]'") from e

    def dates(points: list[tuple[str, int]]) -> Any:
        return mdates.date2num([datetime.date.fromisoformat(d) for d, _ in points])

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
        ax.set_title(title)
        fig.tight_layout()
        fig.savefig(path, format=path.suffix.lower().lstrip("."))
    finally:
        plt.close(fig)


# ------------------------------------------------------------------------------ from the database


def _day_doc(d: Day) -> dict[str, Any]:
    return {"date": d.date.isoformat(), "downloads": d.downloads, "derived": d.derived, "totalDownloads": d.total}


def db_json(h: ResourceHistory) -> str:
    doc = {
        "source": "database",
        "namespace": h.namespace, "name": h.name, "owner": h.owner,
        "totalDownloads": next((d.total for d in reversed(h.days) if d.total is not None), None),
        "days": [_day_doc(d) for d in h.days],
        "packages": [{"name": p.name, "type": p.type, "repository": p.repository,
                      "days": [_day_doc(d) for d in p.days]} for p in h.packages],
    }
    return json.dumps(doc, indent=2) + "\n"


def db_csv(h: ResourceHistory) -> str:
    """One row per day of the resource (package empty) and per day of each package."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["package", "type", "date", "downloads", "derived", "total_downloads"])

    def row(name: str, type_: str, d: Day) -> list[object]:
        return [name, type_, d.date.isoformat(), "" if d.downloads is None else d.downloads,
                "true" if d.derived else "false", "" if d.total is None else d.total]

    for d in h.days:
        writer.writerow(row("", "", d))
    for p in h.packages:
        for d in p.days:
            writer.writerow(row(p.name, p.type, d))
    return buf.getvalue()


def db_table(h: ResourceHistory) -> str:
    total = next((d.total for d in reversed(h.days) if d.total is not None), None)
    out = [f"{h.namespace}/{h.name} (owner {h.owner}): {_fmt(total)} downloads in total, "
           f"{len(h.days)} days, {len(h.packages)} packages (from the history database)"]
    per_day = [d.downloads for d in h.days if d.downloads is not None]
    if per_day:
        out.append(f"per day   {sparkline(per_day)}  ({sum(per_day):,} downloads)")
    out.append("")
    out.append(f"{'date':<12}{'downloads':>13}{'total':>16}")
    for d in h.days:
        mark = "*" if d.derived else " "
        out.append(f"{d.date.isoformat():<12}{_fmt(d.downloads):>12}{mark}{_fmt(d.total):>16}")
    out.append("")
    out.append("* derived: the difference of consecutive totals, where GitHub's daily count is not known")
    out.append("")
    out.append(f"{'package':<40}{'type':<10}{'days':>6}{'total':>16}")
    for p in h.packages:
        last = next((d.total for d in reversed(p.days) if d.total is not None), None)
        out.append(f"{p.name[:39]:<40}{p.type:<10}{len(p.days):>6}{_fmt(last):>16}")
    return "\n".join(out) + "\n"


def db_plot(h: ResourceHistory, path: Path) -> None:
    daily = [(d.date.isoformat(), d.downloads) for d in h.days if d.downloads is not None]
    totals = [(d.date.isoformat(), d.total) for d in h.days if d.total is not None]
    _plot(f"{h.owner}: {h.namespace}/{h.name}", daily, totals, path)
