from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from packagestats import api, crd

REPO = Path(__file__).resolve().parents[2]


def test_crds_dir_holds_what_the_models_generate() -> None:
    on_disk = (REPO / "crds" / "packagestats.dev_packagestats.yaml").read_text()
    assert on_disk == crd.render(), "run `packagestats crd > crds/packagestats.dev_packagestats.yaml`"


def test_schema_is_structural_and_complete() -> None:
    version = crd.definition()["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]["properties"]

    def walk(node: dict[str, object], path: str) -> None:
        assert "$ref" not in node and "anyOf" not in node, path
        assert "type" in node, f"{path} has no type"
        props = node.get("properties")
        if isinstance(props, dict):
            for key, child in props.items():
                walk(child, f"{path}.{key}")
        items = node.get("items")
        if isinstance(items, dict):
            walk(items, f"{path}[]")

    walk(schema["spec"], "spec")
    walk(schema["status"], "status")
    assert set(schema["spec"]["properties"]) == {"owner", "packages", "interval", "suspend", "retryInterval"}
    status_fields = set(schema["status"]["properties"])
    assert {"packages", "totalDownloads", "observedGeneration", "lastScrapeTime", "conditions"} <= status_fields
    conditions = schema["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    package = schema["status"]["properties"]["packages"]["items"]["properties"]
    assert {"name", "type", "url", "downloads", "lastScrapeTime", "last30Days", "latestDay", "versions"} <= set(package)
    assert "history" not in package  # the long record is in the history database
    status_lists = {"packages", "daily", "history", "conditions"}
    assert all("maxItems" in schema["status"]["properties"][f] for f in status_lists)

    def bounded(node: dict[str, Any], path: str) -> None:
        if node.get("type") == "string":
            assert "maxLength" in node or "enum" in node, f"{path} has no maxLength"
        if node.get("type") == "array":
            assert "maxItems" in node, f"{path} has no maxItems"
            bounded(node["items"], f"{path}[]")
        for key, sub in node.get("properties", {}).items():
            bounded(sub, f"{path}.{key}")

    bounded(schema["status"], "status")
    assert "default" not in yaml.safe_dump(schema["status"])  # status is never defaulted by the apiserver
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns[:5] == ["Owner", "Downloads", "Ready", "Last Scrape", "Age"]


def test_duration_parsing_matches_the_pattern() -> None:
    assert api.parse_duration("1h30m") == 5400
    assert api.parse_duration("90s") == 90
    assert api.parse_duration("1.5h") == 5400
    for bad in ("", "1d", "h", "1h30", "-1m"):
        try:
            api.parse_duration(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} accepted")
