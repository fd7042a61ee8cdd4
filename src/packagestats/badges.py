"""shields.io endpoint badges: https://shields.io/badges/endpoint-badge (pure functions)."""

from __future__ import annotations

from typing import Any

from packagestats.api import PackageStatsStatus


def abbreviate(n: int) -> str:
    """Three significant digits with a metric suffix, as badges show counts: 248, 14.4k, 1.42M."""
    if n < 1000:
        return str(n)
    for suffix, scale in (("k", 10**3), ("M", 10**6), ("B", 10**9)):
        value = n / scale
        text = f"{value:.{2 if value < 10 else 1 if value < 100 else 0}f}"
        if float(text) < 1000 or suffix == "B":  # 999,999 rounds to 1000k: say 1M instead
            return (text.rstrip("0").rstrip(".") if "." in text else text) + suffix
    raise AssertionError("unreachable")


def badge(status: PackageStatsStatus, package: str | None = None) -> dict[str, Any] | None:
    """The endpoint JSON for the total, or for one package by name; None when there is no such package."""
    ready = status.condition("Ready")
    if package is None:
        downloads, failing = status.total_downloads, ready is None or ready.status != "True"
    else:
        found = [p for p in status.packages if p.name == package]
        if not found:
            return None
        downloads, failing = found[0].downloads, found[0].error is not None
    if downloads is None:
        message, color = "unknown", "lightgrey"
    else:
        # A count kept from an earlier scrape is still true, but say that it may be stale.
        message, color = abbreviate(downloads), "orange" if failing else "brightgreen"
    return {"schemaVersion": 1, "label": "downloads", "message": message, "color": color}
