"""The chart's history database values: the URL as text or from a Secret, the SQLite file on a PVC or
an emptyDir (and NOTES saying so), rendered by helm; the NOTES by a dry-run install on the apiserver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_chart import CHART, Helm, helm  # noqa: F401 - fixture
from tests.support.cluster import Cluster

pytestmark = pytest.mark.cluster


def _pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def _env(pod: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in pod["containers"][0]["env"]}


def test_no_database_by_default(helm: Helm) -> None:  # noqa: F811
    pod = _pod(helm.template())
    assert "PACKAGESTATS_HISTORY_URL" not in _env(pod)
    assert [v["name"] for v in pod["volumes"]] == [v["name"] for v in pod["volumes"] if v["name"] != "history"]


def test_sqlite_on_a_pvc_and_postgresql_from_a_secret(helm: Helm) -> None:  # noqa: F811
    docs = helm.template("--set", "history.persistence.enabled=true", "--set", "history.persistence.size=5Gi")
    pod = _pod(docs)
    assert _env(pod)["PACKAGESTATS_HISTORY_URL"]["value"] == "sqlite:////var/lib/packagestats/history.db"
    [claim] = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    volume = next(v for v in pod["volumes"] if v["name"] == "history")
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["history"] == "/var/lib/packagestats"

    pod = _pod(helm.template("--set", "history.existingSecret.name=history-dsn"))
    env = _env(pod)["PACKAGESTATS_HISTORY_URL"]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "history-dsn", "key": "url"}
    assert "history" not in [v["name"] for v in pod["volumes"]]


def test_notes_warn_about_an_emptydir(helm: Helm, crd: Cluster, tmp_path: Path) -> None:  # noqa: F811
    out = helm.run("install", "notes", str(CHART), "--dry-run=server", "--namespace", "default",
                   "--set", "history.url=sqlite:////var/lib/packagestats/history.db").stdout
    assert "is on an emptyDir: a restart" in out
    pod = _pod(helm.template("--set", "history.url=sqlite:////var/lib/packagestats/history.db"))
    assert next(v for v in pod["volumes"] if v["name"] == "history") == {"name": "history", "emptyDir": {}}
    quiet = helm.run("install", "notes", str(CHART), "--dry-run=server", "--namespace", "default",
                     "--set", "history.persistence.enabled=true").stdout
    assert "emptyDir" not in quiet.split("NOTES:", 1)[1]
