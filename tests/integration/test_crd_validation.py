"""The apiserver itself rejects specs that GitHub would not accept (schema patterns and CEL rules)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from packagestats import api
from tests.support.cluster import Cluster

pytestmark = pytest.mark.cluster


def _apply(kube: Cluster, namespace: str, spec: dict[str, Any], name: str = "v") -> tuple[int, str]:
    body = {"apiVersion": api.API_VERSION, "kind": api.KIND,
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}
    proc = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(body), check=False)
    return proc.returncode, proc.stderr


@pytest.mark.parametrize(("spec", "expected"), [
    ({"owner": "-bad"}, "spec.owner"),
    ({"owner": "a" * 40}, "spec.owner"),
    ({"owner": "double--hyphen"}, "spec.owner"),
    ({"owner": "ok", "interval": "30s"}, "interval must be at least 1m"),
    ({"owner": "ok", "interval": "1d"}, "spec.interval"),
    ({"owner": "ok", "interval": "200h"}, "interval must be at most 168h"),
    ({"owner": "ok", "packages": [{"name": "Upper"}]}, "container package names are lowercase"),
    ({"owner": "ok", "packages": [{"name": "a//b"}]}, "spec.packages[0].name"),
    ({"owner": "ok", "packages": [{"name": "x", "type": "pypi"}]}, "spec.packages[0].type"),
    ({"owner": "ok", "packages": [{"name": "x"}, {"name": "x", "type": "container"}]}, "Duplicate value"),
    ({"owner": "ok", "packages": [{"name": "x", "repository": "other/repo"}]},
     "a package's repository must belong to spec.owner"),
    ({"owner": "ok", "packages": [{"name": f"p{i}"} for i in range(api.MAX_PACKAGES + 1)]}, "spec.packages"),
    ({}, "spec.owner"),
])
def test_invalid_spec_is_rejected(crd: Cluster, namespace: str, spec: dict[str, Any], expected: str) -> None:
    code, stderr = _apply(crd, namespace, spec)
    assert code != 0
    assert expected in stderr, stderr


def test_valid_spec_is_accepted_with_defaults(crd: Cluster, namespace: str) -> None:
    spec = {"owner": "Octo-Org", "packages": [
        {"name": "team/app"}, {"name": "Company.Lib", "type": "nuget", "repository": "octo-org/lib"},
        {"name": "com.example.core", "type": "maven", "repository": "core"},
    ]}
    body = {"apiVersion": api.API_VERSION, "kind": api.KIND,
            "metadata": {"name": "ok", "namespace": namespace}, "spec": spec}
    crd.kubectl("apply", "-f", "-", input=json.dumps(body))
    obj = crd.kubectl_json("get", "pkgstats", "ok", "-n", namespace)
    assert obj["spec"]["interval"] == "1h"
    assert obj["spec"]["suspend"] is False
    assert [p["type"] for p in obj["spec"]["packages"]] == ["container", "nuget", "maven"]
