"""Models of what the wasm page parser prints (`wasm/src/lib.rs` is the other half of this contract).

The parser runs on untrusted pages inside a sandbox; its output is validated here before anything
else in the operator sees it, so the models are strict: frozen, no extra keys, non-negative counts.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Count = Annotated[int, Field(ge=0)]


class DailyCount(_Strict):
    """Downloads on one day, from one bar of the 30-day sparkline."""

    date: datetime.date
    count: Count


class VersionRow(_Strict):
    """One version row: its id in GitHub's URLs, its digest or name, its tags and downloads."""

    id: str | None
    name: str | None
    tags: list[str]
    downloads: Count
    # True when the row gave only an abbreviated count ("1.2K").
    approximate: bool = False


class PackagePage(_Strict):
    kind: Literal["package"] = "package"
    downloads: Count
    # True when the page gave only the abbreviated count ("1.42M"), not the exact `title`.
    approximate: bool
    downloads_text: str
    daily: list[DailyCount]
    versions: list[VersionRow]
    last_published: datetime.datetime | None
    versions_page_count: Annotated[int, Field(ge=1)] | None


class VersionsPage(_Strict):
    kind: Literal["versions"] = "versions"
    versions: list[VersionRow]
    page_count: Annotated[int, Field(ge=1)]


class ListingEntry(_Strict):
    name: str
    type: str
    repository: str | None


class ListingPage(_Strict):
    kind: Literal["listing"] = "listing"
    packages: list[ListingEntry]
    page_count: Annotated[int, Field(ge=1)]


Page = PackagePage | VersionsPage | ListingPage


class ModuleVersion(_Strict):
    """What `parser.wasm --version` prints: the interface it speaks, its own version, its page kinds."""

    interface: Annotated[int, Field(ge=0)]
    version: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z.+_-]+$")]
    kinds: list[str]
