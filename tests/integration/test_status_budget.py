"""The status budget on the real apiserver: at the CRD's maximum spec, with every status list full and
every string at its longest, the object is accepted and its status is at most 512 KiB of compact JSON;
one item or character more is refused by the apiserver itself."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from packagestats import api, crd
from tests.support.cluster import Cluster
from tests.support.operator import apply_packagestats, get
from tests.support.status_budget import compact_size, maximal_status

pytestmark = pytest.mark.cluster


def _apply_status(kube: Cluster, namespace: str, name: str, status: dict[str, Any]) -> None:
    """Server-side apply as "packagestats", by kubectl: it sends UTF-8, so 4-byte characters fill the
    free-text strings (the operator's own client cannot send those: kube.yaml_safe)."""
    body = {"apiVersion": api.API_VERSION, "kind": api.KIND, "metadata": {"name": name, "namespace": namespace},
            "status": status}
    proc = kube.kubectl("apply", "--server-side", "--force-conflicts", f"--field-manager={api.FIELD_MANAGER}",
                        "--subresource=status", "-f", "-", input=json.dumps(body, ensure_ascii=False),
                        check=False)
    if proc.returncode != 0:
        raise Refused(proc.stderr)


class Refused(Exception):
    pass


def _paths(node: Any, path: str = "") -> set[str]:
    """Every field path of a schema (its properties) or of a document (its keys)."""
    out: set[str] = set()
    if isinstance(node, dict) and ("properties" in node or "items" in node or "type" in node):
        for key, sub in node.get("properties", {}).items():
            out |= {f"{path}.{key}"} | _paths(sub, f"{path}.{key}")
        if "items" in node:
            out |= _paths(node["items"], f"{path}[]")
    return out


def _keys(doc: Any, path: str = "") -> set[str]:
    out: set[str] = set()
    if isinstance(doc, dict):
        for key, sub in doc.items():
            out |= {f"{path}.{key}"} | _keys(sub, f"{path}.{key}")
    elif isinstance(doc, list):
        for sub in doc:
            out |= _keys(sub, f"{path}[]")
    return out


def test_the_maximal_status_fills_every_field_of_the_schema() -> None:
    # A field added to the status without a place in the maximal status would escape the budget.
    schema = crd.schema_of(api.PackageStatsStatus, keep_defaults=False)
    assert _paths(schema) == _keys(maximal_status())


def _maximal_spec(status: dict[str, Any]) -> dict[str, Any]:
    owner = "o" * 39
    return {"owner": owner, "interval": "1h",
            "packages": [{"name": p["name"], "type": p["type"], "repository": p["repository"]}
                         for p in status["packages"]]}


def test_status_at_the_crds_maximum_is_accepted_and_under_budget(crd: Cluster, namespace: str) -> None:
    status = maximal_status()
    apply_packagestats(crd, namespace, "max", _maximal_spec(status))
    _apply_status(crd, namespace, "max", status)
    obj = get(crd, namespace, "max")
    # Nothing was pruned or defaulted: every field of the maximal status is in the schema.
    assert obj["status"] == status
    assert len(obj["status"]["packages"]) == api.MAX_PACKAGES
    size = compact_size(obj["status"])
    print(f"\nstatus at the CRD's maximum: {size} bytes of compact JSON "
          f"(budget {api.STATUS_BUDGET_BYTES}); whole object {compact_size(obj)} bytes")
    assert size <= api.STATUS_BUDGET_BYTES
    # Our own model reads it back (the operator's `prev`).
    assert len(api.PackageStatsStatus.model_validate(obj["status"]).packages) == api.MAX_PACKAGES


@pytest.mark.parametrize("grow", ["versions", "history", "daily", "conditions", "message", "error", "url",
                                  "packages"])
def test_one_more_item_or_character_is_refused(crd: Cluster, namespace: str, grow: str) -> None:
    status = maximal_status()
    apply_packagestats(crd, namespace, "over", _maximal_spec(status))
    over = copy.deepcopy(status)
    pkg = over["packages"][0]
    if grow == "versions":
        pkg["versions"].append({"version": "extra", "downloads": 1})
    elif grow == "history":
        over["history"].append({"date": "2030-01-01", "downloads": 1})
    elif grow == "daily":
        over["daily"].append({"date": "2030-01-01", "count": 1})
    elif grow == "conditions":
        over["conditions"].append({**over["conditions"][0], "type": "Extra"})
    elif grow == "message":
        over["conditions"][0]["message"] += "x"
    elif grow == "error":
        pkg["error"] += "x"
    elif grow == "url":
        pkg["url"] += "x"
    else:
        over["packages"].append({**pkg, "name": "extra"})
    with pytest.raises(Refused) as refused:
        _apply_status(crd, namespace, "over", over)
    assert "Invalid value" in str(refused.value) or "Too many" in str(refused.value) or \
        "Too long" in str(refused.value), refused.value
