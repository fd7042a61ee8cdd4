"""A status with every list full and every string at its longest (in bytes of UTF-8), for the budget
test and the year simulation."""

from __future__ import annotations

import json
from typing import Any

from packagestats import api

INT64 = 2**63 - 1
WIDE = "\U0001f4e6"  # 4 bytes of UTF-8: the widest character a free-text string can hold
TIME = "2026-09-01T10:00:00.999999999+00:00"


def compact_size(obj: Any) -> int:
    return len(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode())


def _package(i: int) -> dict[str, Any]:
    tag = f"{i:03d}"
    return {
        "name": tag + "a" * (214 - len(tag)),
        "type": "rubygems",
        "repository": "o" * 39 + "/" + tag + "r" * (100 - len(tag)),
        "url": "https://" + "u" * (api.MAX_URL - len("https://")),
        "downloads": INT64,
        "approximate": False,
        "lastScrapeTime": TIME,
        "lastPublished": TIME,
        "error": "~" * api.MAX_ERROR,
        "errorReason": "E" * 64,
        "held": INT64,
        "parser": "p" * (api.MAX_PARSER_LABEL - 13) + "@" + "f" * 12,
        "last30Days": INT64,
        "latestDay": {"date": "2026-08-31", "count": INT64},
        "versions": [{"version": f"{v}" + "v" * (api.MAX_VERSION_LABEL - 1), "downloads": INT64, "approximate": False}
                     for v in range(api.MAX_STATUS_VERSIONS)],
    }


def _condition(i: int) -> dict[str, Any]:
    return {
        "type": "a" * 253 + "/" + f"C{i}" + "c" * (62 - 2 - len(str(i))) + "Z",
        "status": "Unknown",
        "reason": "R" * 128,
        "message": WIDE * api.MAX_CONDITION_MESSAGE,
        "lastTransitionTime": TIME,
        "observedGeneration": INT64,
    }


def maximal_status() -> dict[str, Any]:
    return {
        "observedGeneration": INT64,
        "lastHandledRequestedAt": WIDE * 256,
        "lastHandledAcceptDownloads": WIDE * 256,
        "totalDownloads": INT64,
        "lastScrapeTime": TIME,
        "packages": [_package(i) for i in range(api.MAX_PACKAGES)],
        "daily": [{"date": f"2026-{8 + d // 31:02d}-{d % 31 + 1:02d}", "count": INT64}
                  for d in range(api.MAX_STATUS_DAILY)],
        "history": [{"date": f"{2025 + d // 300}-{d % 300 // 28 + 1:02d}-{d % 28 + 1:02d}", "downloads": INT64}
                    for d in range(api.MAX_STATUS_HISTORY)],
        "conditions": [_condition(i) for i in range(api.MAX_CONDITIONS)],
    }
