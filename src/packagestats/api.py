"""The PackageStats API: pydantic models of spec and status.

These models are the one truth of the resource: `packagestats.crd` generates the CRD's OpenAPI schema
from them (patterns, bounds, CEL rules and list semantics ride along as JSON-schema extras), and a test
checks that `crds/` holds exactly what they generate.
"""

from __future__ import annotations

import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "packagestats.dev"
VERSION = "v1alpha1"
KIND = "PackageStats"
PLURAL = "packagestats"
SINGULAR = "packagestats"
SHORT_NAMES = ["pkgstats"]
CATEGORIES = ["packagestats", "github"]
API_VERSION = f"{GROUP}/{VERSION}"

FIELD_MANAGER = "packagestats"
FINALIZER = f"{GROUP}/finalizer"
REQUESTED_AT_ANNOTATION = f"{GROUP}/requestedAt"
# Any new value accepts the totals held back as suspect (MarkupSuspect) at the next scrape.
ACCEPT_DOWNLOADS_ANNOTATION = f"{GROUP}/acceptDownloads"
BADGE_ANNOTATION = f"{GROUP}/badge"

PackageType = Literal["container", "npm", "maven", "nuget", "rubygems"]
PACKAGE_TYPES: tuple[PackageType, ...] = ("container", "npm", "maven", "nuget", "rubygems")

# GitHub logins: alphanumerics and single inner hyphens, at most 39 characters.
OWNER_PATTERN = r"^[A-Za-z0-9](-?[A-Za-z0-9])*$"
# Package names across registries (container `a/b`, maven `com.example.lib`, nuget `My.Lib`, npm, gems):
# path segments of alphanumerics, `.`, `_`, `-`, joined by single `/`.
PACKAGE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9._-]+)*$"
REPOSITORY_PATTERN = r"^([A-Za-z0-9](-?[A-Za-z0-9])*/)?[A-Za-z0-9._-]+$"
# Go-style durations limited to hours, minutes and seconds (`1h`, `30m`, `1h30m`).
INTERVAL_PATTERN = r"^([0-9]+(\.[0-9]+)?(h|m|s))+$"
MIN_INTERVAL = "1m"
MAX_PACKAGES = 200

# The status budget: with every list below full and every string at its longest, a status of
# MAX_PACKAGES packages stays under STATUS_BUDGET_BYTES of compact JSON (tests/integration/test_status_budget.py
# proves it on the apiserver). The long record is in the history database, not here.
STATUS_BUDGET_BYTES = 512 * 1024
MAX_STATUS_VERSIONS = 5  # per-version rows per package
MAX_STATUS_HISTORY = 366  # daily points of the resource's total
MAX_STATUS_DAILY = 31  # days of the resource's downloads-per-day chart
MAX_CONDITIONS = 8
MAX_CONDITION_MESSAGE = 1024
MAX_ERROR = 256
MAX_URL = 400
MAX_VERSION_LABEL = 64
MAX_PARSER_LABEL = 80  # "<parser version>@<12 hex of its sha256>"
# Printable ASCII: a package's error is our own text; one byte per character keeps the budget exact.
ASCII_TEXT_PATTERN = r"^[ -~]*$"


def _cel(rule: str, message: str) -> dict[str, Any]:
    return {"rule": rule, "message": message}


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


# ---------------------------------------------------------------------------------------------- spec


class PackageRef(_Model):
    """One package to track."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        _cel("self.type != 'container' || self.name == self.name.lowerAscii()",
             "container package names are lowercase"),
    ]})

    name: str = Field(
        min_length=1, max_length=214, pattern=PACKAGE_NAME_PATTERN,
        description="The package name as GitHub shows it (may contain `/`).",
    )
    type: PackageType = Field("container", description="The package type.")
    repository: str | None = Field(
        None, max_length=140, pattern=REPOSITORY_PATTERN,
        description="The repository the package is linked to (`repo` or `owner/repo`), if any.",
    )


class PackageStatsSpec(_Model):
    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        _cel("!has(self.packages) || self.packages.all(p, !has(p.repository) || !p.repository.contains('/')"
             " || p.repository.lowerAscii().startsWith(self.owner.lowerAscii() + '/'))",
             "a package's repository must belong to spec.owner"),
    ]})

    owner: str = Field(
        min_length=1, max_length=39, pattern=OWNER_PATTERN,
        description="The GitHub user or organization that owns the packages.",
    )
    packages: list[PackageRef] = Field(
        default_factory=list, max_length=MAX_PACKAGES,
        description="The packages to track; empty: every public package of the owner.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type", "name"]},
    )
    interval: str = Field(
        "1h", max_length=32, pattern=INTERVAL_PATTERN,
        description=f"How often to scrape, as a Go duration of h/m/s, at least {MIN_INTERVAL}.",
        json_schema_extra={"x-kubernetes-validations": [
            _cel(f"duration(self) >= duration('{MIN_INTERVAL}')", f"interval must be at least {MIN_INTERVAL}"),
            _cel("duration(self) <= duration('168h')", "interval must be at most 168h"),
        ]},
    )
    suspend: bool = Field(False, description="Stop scraping while true; the last values stay.")
    retry_interval: str = Field(
        "1m", max_length=32, pattern=INTERVAL_PATTERN,
        description="First retry of a package after a transient failure (429, 5xx, timeout); it doubles"
                    " on each failure in a row, up to the interval, and never comes before GitHub's cooldown.",
        json_schema_extra={"x-kubernetes-validations": [
            _cel("duration(self) >= duration('1s')", "retryInterval must be at least 1s"),
            _cel("duration(self) <= duration('168h')", "retryInterval must be at most 168h"),
        ]},
    )

    def interval_seconds(self) -> float:
        return parse_duration(self.interval)

    def retry_interval_seconds(self) -> float:
        return parse_duration(self.retry_interval)


def parse_duration(text: str) -> float:
    """Seconds of a Go-style duration restricted to h, m and s (the CRD's pattern)."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    total, number = 0.0, ""
    for ch in text:
        if ch.isdigit() or ch == ".":
            number += ch
        elif ch in units and number:
            total += float(number) * units[ch]
            number = ""
        else:
            raise ValueError(f"invalid duration {text!r}")
    if number or not text:
        raise ValueError(f"invalid duration {text!r}")
    return total


# -------------------------------------------------------------------------------------------- status

ConditionStatus = Literal["True", "False", "Unknown"]
ConditionType = Literal["Ready", "Reconciling", "Stalled", "History", "MarkupSuspect", "ParserRefused"]


class Condition(_Model):
    # Any type: other controllers may add their own conditions; the map list keeps them apart.
    type: str = Field(max_length=316, pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                                             r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$")
    status: ConditionStatus
    reason: str = Field(max_length=128, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    message: str = Field(max_length=MAX_CONDITION_MESSAGE)
    last_transition_time: datetime.datetime
    observed_generation: int | None = Field(None, ge=0)


class DailyCount(_Model):
    date: datetime.date
    count: int = Field(ge=0)


class HistoryPoint(_Model):
    """The total at the last scrape of a UTC day."""

    date: datetime.date
    downloads: int = Field(ge=0)


class VersionDownloads(_Model):
    """One row of a package's versions, as the pages give it (the scrape's result, not status)."""

    id: str | None = None
    name: str | None = None
    tags: list[str] = Field(default_factory=list, json_schema_extra={"x-kubernetes-list-type": "atomic"})
    downloads: int = Field(ge=0)
    approximate: bool = False


class VersionCount(_Model):
    """Downloads of one version in status: its first tag, else its name or id."""

    version: str = Field(max_length=MAX_VERSION_LABEL, pattern=ASCII_TEXT_PATTERN)
    downloads: int = Field(ge=0)
    approximate: bool | None = Field(None, description="True when the page gave only an abbreviated count.")


class PackageStatus(_Model):
    name: str = Field(max_length=214, pattern=PACKAGE_NAME_PATTERN)
    type: PackageType
    repository: str | None = Field(None, max_length=140, pattern=REPOSITORY_PATTERN)
    url: str | None = Field(None, max_length=MAX_URL, pattern=r"^https?://[!-~]+$",
                            description="The page the counts were read from.")
    downloads: int | None = Field(None, ge=0, description="Exact total downloads, from the last good scrape.")
    approximate: bool = Field(False, description="True when the page only gave an abbreviated total.")
    last_scrape_time: datetime.datetime | None = Field(None, description="Time of the last good scrape.")
    last_published: datetime.datetime | None = None
    error: str | None = Field(None, max_length=MAX_ERROR, pattern=ASCII_TEXT_PATTERN,
                              description="Why the latest scrape failed; absent when it succeeded.")
    error_reason: str | None = Field(None, max_length=64, pattern=r"^[A-Za-z][A-Za-z0-9]*$",
                                     description="The reason of `error` in one CamelCase word.")
    held: int | None = Field(None, ge=0, description="A suspect total held back (MarkupSuspect): written when "
                             f"the next scrape agrees or on the {ACCEPT_DOWNLOADS_ANNOTATION} annotation.")
    parser: str | None = Field(None, max_length=MAX_PARSER_LABEL, pattern=r"^[0-9A-Za-z.+_-]+@[0-9a-f]+$",
                               description="The parser that read these counts: its version and digest prefix.")
    last30_days: int | None = Field(None, ge=0, alias="last30Days",
                                    description="Sum of the page's 30-day chart (today's bar included).")
    latest_day: DailyCount | None = Field(
        None, description="The newest complete UTC day of the page's chart at the last good scrape.")
    versions: list[VersionCount] = Field(
        default_factory=list, max_length=MAX_STATUS_VERSIONS,
        description="The newest versions' downloads.", json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )


class PackageStatsStatus(_Model):
    observed_generation: int | None = None
    last_handled_requested_at: str | None = Field(
        None, max_length=256,
        description=f"The value of the {REQUESTED_AT_ANNOTATION} annotation last acted upon.",
    )
    last_handled_accept_downloads: str | None = Field(
        None, max_length=256,
        description=f"The value of the {ACCEPT_DOWNLOADS_ANNOTATION} annotation last acted upon.",
    )
    total_downloads: int | None = Field(None, ge=0)
    last_scrape_time: datetime.datetime | None = None
    packages: list[PackageStatus] = Field(
        default_factory=list, max_length=MAX_PACKAGES,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type", "name"]},
    )
    daily: list[DailyCount] = Field(
        default_factory=list, max_length=MAX_STATUS_DAILY,
        description="Downloads per day of all packages, summed from their pages' 30-day charts.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    history: list[HistoryPoint] = Field(
        default_factory=list, max_length=MAX_STATUS_HISTORY,
        description="The total of all packages, one point per UTC day (the long record is in the database).",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    conditions: list[Condition] = Field(
        default_factory=list, max_length=MAX_CONDITIONS,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )

    def condition(self, type_: ConditionType) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

