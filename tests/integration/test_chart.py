"""The Helm chart and the Flux manifests on a real API server: lint, render, install, upgrade, uninstall,
RBAC checked with `kubectl auth can-i`, and the operator reconciling with nothing but the chart's
ServiceAccount token.

There is no kubelet or controller-manager: Deployments are created but never run, so nothing here waits
for pods (`helm install` without `--wait`); the operator runs out of cluster as the ServiceAccount.
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from packagestats.settings import Settings
from tests.support import flux
from tests.support.cluster import Cluster
from tests.support.fake_github import FakeGitHub
from tests.support.operator import running_operator, wait_for
from tests.support.promql import exported_series, promql_problems

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "packagestats"
DASHBOARD = CHART / "dashboards" / "packagestats.json"
FLUX = REPO / "deploy" / "flux"
PSS_LABEL = "pod-security.kubernetes.io/enforce"

# Every setting changed from its default (settings.<camelCase> in values.yaml).
CHANGED_SETTINGS: dict[str, Any] = {
    "githubUrl": "http://github.example:8080",
    "userAgent": "packagestats-test/2",
    "maxConcurrency": 16,
    "maxConcurrencyPerHost": 2,
    "requestTimeoutSeconds": 2.5,
    "maxResponseBytes": 1048576,
    "retries": 5,
    "backoffSeconds": 0.25,
    "maxCooldownSeconds": 60.5,
    "maxVersionPages": 0,
    "maxListingPages": 2,
    "requestsPerMinute": 120.5,
    "breakerCooldownSeconds": 5.5,
    "versionsEvery": 3,
    "scheduleSpread": 0.25,
    "maxParses": 4,
    "parserSource": "file:/parser/custom.wasm",
    "parserSha256": "ab" * 32,
    "parserCheckSeconds": 60.5,
    "driftJumpFactor": 5.5,
    "wasmFuel": 3000000000,
    "wasmMemoryBytes": 67108864,
    "wasmTimeoutSeconds": 1.5,
    "cacheDir": "/tmp/c",
    "historyDays": 30,
    "maxVersionsInStatus": 5,
    "kubeTimeoutSeconds": 3.5,
    "leaseName": "ps-leader",
    "leaseDurationSeconds": 30.0,
    "metricsPort": 9090,
    "healthPort": 9091,
}

# The PrometheusRule, the Grafana dashboard's ConfigMap and the badge Ingress, with non-default values.
OBSERVABILITY_VALUES: dict[str, Any] = {
    "prometheusRule": {"enabled": True, "labels": {"release": "prom"}, "staleAfter": "1d12h",
                       "alertLabels": {"team": "platform"},
                       "alerts": {"markupChanged": {"severity": "critical"}, "rateLimited": {"for": "30m"}}},
    "grafanaDashboard": {"enabled": True, "label": "grafana.com/dashboard", "labelValue": "packagestats",
                         "annotations": {"grafana_folder": "PackageStats"}},
    "badgeIngress": {"enabled": True, "className": "nginx", "host": "badges.example.org",
                     "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
                     "tls": [{"secretName": "badges-tls", "hosts": ["badges.example.org"]}]},
}


def camel(field: str) -> str:
    head, *rest = field.split("_")
    return head + "".join(part.capitalize() for part in rest)


# --- helm ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Helm:
    kube: Cluster
    home: Path

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = dict(self.kube.env(), HELM_CACHE_HOME=str(self.home / "cache"),
                   HELM_CONFIG_HOME=str(self.home / "config"), HELM_DATA_HOME=str(self.home / "data"))
        proc = subprocess.run([self.kube.tool("helm"), *args], capture_output=True, text=True, env=env,
                              timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    def template(self, *args: str, namespace: str = "ops", release: str = "rel") -> list[dict[str, Any]]:
        out = self.run("template", release, str(CHART), "--namespace", namespace, *args).stdout
        return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture(scope="module")
def helm(kube: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(kube, tmp_path_factory.mktemp("helm"))


def release_name() -> str:
    return f"ps-{uuid.uuid4().hex[:6]}"


@contextmanager
def installed(helm: Helm, release: str, namespace: str, *args: str) -> Iterator[list[dict[str, Any]]]:
    """`helm install` (no --wait: pods never run here); yields the release's manifest; uninstalls."""
    helm.run("install", release, str(CHART), "--namespace", namespace, *args)
    try:
        manifest = helm.run("get", "manifest", release, "--namespace", namespace).stdout
        yield [d for d in yaml.safe_load_all(manifest) if d]
    finally:
        helm.run("uninstall", release, "--namespace", namespace, check=False)


def by_kind(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    result: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        result.setdefault(doc["kind"], []).append(doc)
    return result


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    [deployment] = by_kind(docs)["Deployment"]
    [c] = deployment["spec"]["template"]["spec"]["containers"]
    return dict(c)


def settings_from(c: dict[str, Any]) -> Settings:
    """The operator's settings as the container's environment gives them (the token aside)."""
    plain = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    assert all(name.startswith("PACKAGESTATS_") for name in plain)
    kwargs = {name.removeprefix("PACKAGESTATS_").lower(): value for name, value in plain.items()}
    assert "github_token" not in kwargs
    return Settings(**kwargs, github_token=None)


def rules(role: dict[str, Any]) -> list[tuple[str, str, tuple[str, ...]]]:
    return sorted((group, resource, tuple(r["verbs"]))
                  for r in role["rules"] for group in r["apiGroups"] for resource in r["resources"])


OWN_RULES = [
    ("", "events", ("create", "get", "patch")),
    ("packagestats.dev", "packagestats", ("list", "watch", "patch")),
    ("packagestats.dev", "packagestats/status", ("patch",)),
]
CRD_RULE = ("apiextensions.k8s.io", "customresourcedefinitions", ("list", "watch"))
NAMESPACES_RULE = ("", "namespaces", ("list", "watch"))


# --- lint and template --------------------------------------------------------------------------------


def test_lint_default_and_non_default_values(helm: Helm, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({
        "watchNamespaces": ["team-a", "team-b"],
        "github": {"tokenSecret": {"name": "gh-token", "key": "pat"}},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
        "networkPolicy": {"enabled": True, "apiServer": {"cidrs": ["10.0.0.1/32"], "ports": [6443]}},
        "settings": CHANGED_SETTINGS,
        **OBSERVABILITY_VALUES,
    }))
    for args in ([], ["-f", str(values)]):
        out = helm.run("lint", "--strict", str(CHART), *args).stdout
        assert "1 chart(s) linted, 0 chart(s) failed" in out
        assert "[ERROR]" not in out and "[WARNING]" not in out


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "settings.maxConcurrency=0"], "at '/settings/maxConcurrency': minimum: got 0, want 1"),
    (["--set", "settings.wasmFuel=5"], "at '/settings/wasmFuel': minimum: got 5, want 1\u00d710\u2070\u2076"),
    (["--set", "github.token=ghp_plain"], "at '/github': additional properties 'token' not allowed"),
    (["--set", "settings.unknownSetting=1"], "at '/settings': additional properties 'unknownSetting' not allowed"),
    (["--set-json", 'watchNamespaces=["Bad_NS"]'], "at '/watchNamespaces/0': 'Bad_NS' does not match pattern"),
    (["--set", "replicaCount=11"], "at '/replicaCount': maximum: got 11, want 10"),
    (["--set-json", 'extraEnv=[{"name":"PACKAGESTATS_GITHUB_TOKEN","value":"x"}]'],
     "at '/extraEnv/0/name': 'not' failed"),
    (["--set", "prometheusRule.staleAfter=3 hours"], "at '/prometheusRule/staleAfter': '3 hours' does not match"),
    (["--set", "prometheusRule.alerts.rateLimited.for=15min"],
     "at '/prometheusRule/alerts/rateLimited/for': '15min' does not match"),
    (["--set", "prometheusRule.alerts.unknownAlert.enabled=true"],
     "at '/prometheusRule/alerts': additional properties 'unknownAlert' not allowed"),
    (["--set", "prometheusRule.alertLabels.severity=critical"], "invalid propertyName 'severity'"),
    (["--set", "grafanaDashboard.folder=x"], "at '/grafanaDashboard': additional properties 'folder' not allowed"),
    (["--set", "badgeIngress.path=/metrics"], "at '/badgeIngress': additional properties 'path' not allowed"),
    (["--set", "badgeIngress.host=Bad_Host"], "at '/badgeIngress/host': 'Bad_Host' does not match"),
])
def test_schema_rejects_bad_values(helm: Helm, args: list[str], message: str) -> None:
    proc = helm.run("template", "rel", str(CHART), *args, check=False)
    assert proc.returncode == 1
    assert message in proc.stderr


def test_template_default(helm: Helm) -> None:
    docs = helm.template()
    kinds = by_kind(docs)
    assert sorted(kinds) == ["ClusterRole", "ClusterRoleBinding", "Deployment", "Role", "RoleBinding", "Service",
                             "ServiceAccount"]
    assert all(len(v) == 1 for v in kinds.values())
    for doc in docs:
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert doc["metadata"]["namespace"] == "ops"
        assert doc["metadata"]["name"] == ("rel-packagestats-leader" if doc["kind"] in ("Role", "RoleBinding")
                                           else "rel-packagestats")

    # Every setting reaches the container with its default; no token without a Secret.
    c = container(docs)
    assert settings_from(c) == Settings(github_token=None)
    # The token and the history database's URL only when given.
    assert [e["name"] for e in c["env"]] == [f"PACKAGESTATS_{f.upper()}" for f in Settings.model_fields
                                             if f not in ("github_token", "history_url")]
    assert c["image"] == "ghcr.io/packagestats/packagestats:0.1.0"
    assert c["args"] == ["run"]
    assert c["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"},
                          {"name": "health", "containerPort": 8081, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
        "runAsUser": 65532, "runAsGroup": 65532, "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"}}
    assert c["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert c["resources"]["limits"]["memory"] == "768Mi"  # 2 parses x 256Mi + 256Mi

    [deployment] = kinds["Deployment"]
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    # The Lease: its namespace and the identity come from the pod.
    refs = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in c["env"]
            if "fieldRef" in e.get("valueFrom", {})}
    assert refs == {"PACKAGESTATS_LEASE_NAMESPACE": "metadata.namespace", "PACKAGESTATS_POD_NAME": "metadata.name"}
    [lease_role] = kinds["Role"]
    assert lease_role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                                    "verbs": ["get", "create", "update"]}]
    [lease_binding] = kinds["RoleBinding"]
    assert lease_binding["roleRef"]["name"] == "rel-packagestats-leader"
    assert "PodDisruptionBudget" not in kinds  # one replica: a budget would block drains
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "rel-packagestats"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}]

    [role] = kinds["ClusterRole"]
    assert rules(role) == sorted([CRD_RULE, *OWN_RULES])
    [binding] = kinds["ClusterRoleBinding"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rel-packagestats", "namespace": "ops"}]
    [service] = kinds["Service"]
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"},
        {"name": "health", "port": 8081, "targetPort": "health", "protocol": "TCP"}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_template_non_default(helm: Helm, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({
        "watchNamespaces": ["team-a", "team-b"],
        "github": {"tokenSecret": {"name": "gh-token", "key": "pat"}},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
        "networkPolicy": {"enabled": True, "apiServer": {"cidrs": ["10.0.0.1/32"], "ports": [6443]}},
        "image": {"digest": "sha256:" + "ab" * 32},
        "settings": CHANGED_SETTINGS,
    }))
    docs = helm.template("-f", str(values))
    kinds = by_kind(docs)
    assert sorted(kinds) == ["ClusterRole", "ClusterRoleBinding", "Deployment", "NetworkPolicy", "Role",
                             "RoleBinding", "Service", "ServiceAccount", "ServiceMonitor"]
    # The leader election's Role and binding in the release's namespace; the rest per watched namespace.
    for kind in ("Role", "RoleBinding"):
        [lease_doc] = [d for d in kinds[kind] if d["metadata"]["name"] == "rel-packagestats-leader"]
        assert lease_doc["metadata"]["namespace"] == "ops"
        kinds[kind].remove(lease_doc)

    c = container(docs)
    expected = {f: CHANGED_SETTINGS[camel(f)] for f in Settings.model_fields if camel(f) in CHANGED_SETTINGS}
    assert set(expected) == set(Settings.model_fields) - {"github_token", "namespaces", "lease_namespace",
                                                           "pod_name", "history_url"}
    assert settings_from(c) == Settings(**expected, namespaces="team-a,team-b", github_token=None)
    [token] = [e for e in c["env"] if e["name"] == "PACKAGESTATS_GITHUB_TOKEN"]
    assert token == {"name": "PACKAGESTATS_GITHUB_TOKEN",
                     "valueFrom": {"secretKeyRef": {"name": "gh-token", "key": "pat"}}}
    assert c["image"] == "ghcr.io/packagestats/packagestats@sha256:" + "ab" * 32
    assert [p["containerPort"] for p in c["ports"]] == [9090, 9091]

    # Namespaced mode: a Role and RoleBinding per watched namespace, the ClusterRole read-only.
    [cluster_role] = kinds["ClusterRole"]
    assert rules(cluster_role) == sorted([CRD_RULE, NAMESPACES_RULE])
    assert sorted(r["metadata"]["namespace"] for r in kinds["Role"]) == ["team-a", "team-b"]
    for role in kinds["Role"]:
        assert rules(role) == OWN_RULES
    for binding in kinds["RoleBinding"]:
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                      "name": "rel-packagestats"}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rel-packagestats", "namespace": "ops"}]

    [monitor] = kinds["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "60s",
                                             "scrapeTimeout": "10s"}]
    [service] = kinds["Service"]
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]

    [policy] = kinds["NetworkPolicy"]
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == [{"ports": [{"port": "metrics", "protocol": "TCP"},
                                          {"port": "health", "protocol": "TCP"}]}]
    dns, apiserver, github = spec["egress"]
    assert dns["ports"] == [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
    assert apiserver == {"ports": [{"port": 6443, "protocol": "TCP"}], "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}]}
    assert github == {"ports": [{"port": 443, "protocol": "TCP"}]}


def test_template_ports_off(helm: Helm) -> None:
    docs = helm.template("--set", "settings.metricsPort=0", "--set", "settings.healthPort=0")
    assert sorted(by_kind(docs)) == ["ClusterRole", "ClusterRoleBinding", "Deployment", "Role", "RoleBinding",
                                     "ServiceAccount"]
    c = container(docs)
    assert "ports" not in c and "livenessProbe" not in c and "readinessProbe" not in c
    assert settings_from(c).health_port == 0 and settings_from(c).metrics_port == 0
    proc = helm.run("template", "rel", str(CHART), "--set", "settings.metricsPort=0",
                    "--set", "serviceMonitor.enabled=true", check=False)
    assert proc.returncode == 1 and "serviceMonitor.enabled needs settings.metricsPort > 0" in proc.stderr


def observability_docs(helm: Helm, tmp_path: Path, namespace: str = "ops") -> list[dict[str, Any]]:
    values = tmp_path / "observability.yaml"
    values.write_text(yaml.safe_dump(OBSERVABILITY_VALUES))
    return helm.template("-f", str(values), namespace=namespace)


def test_template_observability(helm: Helm, tmp_path: Path) -> None:
    docs = observability_docs(helm, tmp_path)
    kinds = by_kind(docs)
    assert sorted(kinds) == ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "Ingress",
                             "PrometheusRule", "Role", "RoleBinding", "Service", "ServiceAccount"]
    labels = kinds["Deployment"][0]["metadata"]["labels"]
    [service] = kinds["Service"]

    # The Ingress routes /badge (and /badge/...) to the metrics port, and nothing else.
    [ingress] = kinds["Ingress"]
    assert ingress == {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "rel-packagestats-badges", "namespace": "ops", "labels": labels,
                     "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"}},
        "spec": {
            "ingressClassName": "nginx",
            "tls": [{"secretName": "badges-tls", "hosts": ["badges.example.org"]}],
            "rules": [{"host": "badges.example.org", "http": {"paths": [{
                "path": "/badge", "pathType": "Prefix",
                "backend": {"service": {"name": "rel-packagestats", "port": {"name": "metrics"}}}}]}}],
        }}
    assert [p["name"] for p in service["spec"]["ports"]] == ["metrics", "health"]
    paths = [p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert paths == ["/badge"]

    # The dashboard, byte for byte, in a ConfigMap with the sidecar's label.
    [configmap] = kinds["ConfigMap"]
    assert configmap["metadata"] == {
        "name": "rel-packagestats-dashboard", "namespace": "ops",
        "labels": {**labels, "grafana.com/dashboard": "packagestats"},
        "annotations": {"grafana_folder": "PackageStats"}}
    assert configmap["data"] == {"packagestats.json": DASHBOARD.read_text().removesuffix("\n")}
    assert json.loads(configmap["data"]["packagestats.json"])["uid"] == "packagestats"

    # The alerts: staleAfter 1d12h is 129600 s; severity per alert, alertLabels on each.
    [rule] = kinds["PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"] == {"name": "rel-packagestats", "namespace": "ops",
                                "labels": {**labels, "release": "prom"}}
    [group] = rule["spec"]["groups"]
    assert group["name"] == "packagestats"
    assert [{k: v for k, v in r.items() if k != "annotations"} for r in group["rules"]] == [
        {"alert": "PackageStatsScrapeStale",
         "expr": "time() - packagestats_package_last_success_timestamp_seconds > 129600",
         "for": "0m", "labels": {"severity": "warning", "team": "platform"}},
        {"alert": "PackageStatsMarkupChanged",
         "expr": "sum by (namespace, name, owner, package, type) "
                 '(increase(packagestats_fetch_errors_total{reason="NoCount"}[129600s])) > 0',
         "for": "0m", "labels": {"severity": "critical", "team": "platform"}},
        {"alert": "PackageStatsRateLimited", "expr": "packagestats_github_cooldown_seconds > 0",
         "for": "30m", "labels": {"severity": "warning", "team": "platform"}},
    ]
    series = exported_series()
    for r in group["rules"]:
        assert promql_problems(r["expr"], series) == [], r["alert"]
        assert set(r["annotations"]) == {"summary", "description"}
        # Prometheus's templates pass through Helm untouched.
        assert "{{ $labels." in r["annotations"]["description"], r["alert"]
    stale, markup, limited = (r["annotations"] for r in group["rules"])
    assert stale["summary"] == ("No good scrape of {{ $labels.package }} ({{ $labels.type }}) of PackageStats "
                                "{{ $labels.namespace }}/{{ $labels.name }} for more than 1d12h")
    assert "{{ $value | humanizeDuration }}" in stale["description"]
    assert "NoCount" in markup["description"] and "markup" in markup["description"]
    assert limited["summary"] == "GitHub has rate-limited packagestats (HTTP 429) for more than 30m"


def test_template_observability_options(helm: Helm) -> None:
    docs = helm.template("--set", "prometheusRule.enabled=true",
                         "--set", "prometheusRule.alerts.scrapeStale.enabled=false",
                         "--set", "prometheusRule.alerts.rateLimited.enabled=false",
                         "--set", "grafanaDashboard.enabled=true", "--set", "grafanaDashboard.namespace=monitoring",
                         "--set", "badgeIngress.enabled=true")
    kinds = by_kind(docs)
    [rule] = kinds["PrometheusRule"]
    assert [r["alert"] for r in rule["spec"]["groups"][0]["rules"]] == ["PackageStatsMarkupChanged"]
    assert "[10800s]" in rule["spec"]["groups"][0]["rules"][0]["expr"]  # the default staleAfter, 3h
    [configmap] = kinds["ConfigMap"]
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert "annotations" not in configmap["metadata"]
    # No host: the rule matches every host; no class, no TLS.
    [ingress] = kinds["Ingress"]
    assert ingress["spec"] == {"rules": [{"http": {"paths": [{
        "path": "/badge", "pathType": "Prefix",
        "backend": {"service": {"name": "rel-packagestats", "port": {"name": "metrics"}}}}]}}]}


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "badgeIngress.enabled=true", "--set", "settings.metricsPort=0"],
     "badgeIngress.enabled needs settings.metricsPort > 0"),
    (["--set", "badgeIngress.enabled=true", "--set", "service.enabled=false"],
     "badgeIngress.enabled needs service.enabled"),
    (["--set", "prometheusRule.enabled=true", "--set", "prometheusRule.staleAfter=0h"],
     "prometheusRule.staleAfter must be a duration above 0"),
    (["--set", "prometheusRule.enabled=true", "--set", "prometheusRule.alerts.scrapeStale.enabled=false",
      "--set", "prometheusRule.alerts.markupChanged.enabled=false",
      "--set", "prometheusRule.alerts.rateLimited.enabled=false"],
     "prometheusRule.enabled needs at least one of prometheusRule.alerts.*.enabled"),
])
def test_template_refuses(helm: Helm, args: list[str], message: str) -> None:
    proc = helm.run("template", "rel", str(CHART), *args, check=False)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def prometheus_rule_crd(kube: Cluster) -> flux.FluxCRD:
    """prometheus-operator's PrometheusRule CRD, from the Go module proxy, installed in the test cluster."""
    try:
        crd = flux.prometheus_rule_crd()
    except flux.GoUnavailable as e:
        pytest.skip(str(e))
    kube.kubectl("apply", "--server-side", "--field-manager=packagestats-tests", "-f", str(crd.path))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd.name}")
    return crd


def test_observability_objects_pass_server_side_dry_run(kube: Cluster, prometheus_rule_crd: flux.FluxCRD,
                                                        helm: Helm, namespace: str, tmp_path: Path) -> None:
    docs = [d for d in observability_docs(helm, tmp_path, namespace=namespace)
            if d["kind"] in ("PrometheusRule", "ConfigMap", "Ingress")]
    out = kube.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-",
                       input=yaml.safe_dump_all(docs)).stdout
    assert sorted(out.splitlines()) == [
        "configmap/rel-packagestats-dashboard created (server dry run)",
        "ingress.networking.k8s.io/rel-packagestats-badges created (server dry run)",
        "prometheusrule.monitoring.coreos.com/rel-packagestats created (server dry run)",
    ]
    # The check is real: the CRD refuses a field it does not know, and a `for` that is no duration.
    [rule] = [d for d in docs if d["kind"] == "PrometheusRule"]
    rule["spec"]["groups"][0]["rules"][0]["severity"] = "warning"
    refused = kube.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-",
                           input=yaml.safe_dump(rule), check=False)
    assert refused.returncode == 1 and 'unknown field "spec.groups[0].rules[0].severity"' in refused.stderr
    del rule["spec"]["groups"][0]["rules"][0]["severity"]
    rule["spec"]["groups"][0]["rules"][0]["for"] = "15 minutes"
    refused = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(rule), check=False)
    assert refused.returncode == 1 and "spec.groups[0].rules[0].for" in refused.stderr, refused.stderr


# --- install, upgrade, uninstall ----------------------------------------------------------------------


def kubectl_get(kube: Cluster, doc: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    args = ["get", f"{doc['kind'].lower()}.{doc['apiVersion'].split('/')[0]}"
            if "/" in doc["apiVersion"] else doc["kind"].lower(), doc["metadata"]["name"], "-o", "json"]
    if "namespace" in doc["metadata"]:
        args += ["-n", doc["metadata"]["namespace"]]
    return kube.kubectl(*args, check=False)


def test_install_upgrade_uninstall(kube: Cluster, crd: Cluster, helm: Helm, namespace: str) -> None:
    release = release_name()
    full = f"{release}-packagestats"
    with installed(helm, release, namespace) as manifest:
        # The CRD is there and established (helm skips it when it already exists, as here).
        established = kube.kubectl("get", "crd", "packagestats.packagestats.dev", "-o",
                                   "jsonpath={.status.conditions[?(@.type=='Established')].status}").stdout
        assert established == "True"
        kinds = sorted(d["kind"] for d in manifest)
        # The Role and RoleBinding: the leader election's Lease, in the release's own namespace only.
        assert kinds == ["ClusterRole", "ClusterRoleBinding", "Deployment", "Role", "RoleBinding", "Service",
                         "ServiceAccount"]
        for doc in manifest:
            got = kubectl_get(kube, doc)
            assert got.returncode == 0, got.stderr
            assert json.loads(got.stdout)["metadata"]["labels"]["app.kubernetes.io/instance"] == release
        status = json.loads(helm.run("status", release, "-n", namespace, "-o", "json").stdout)
        assert status["info"]["status"] == "deployed" and status["version"] == 1

        # Upgrade: namespaced mode, another setting, a NetworkPolicy.
        helm.run("upgrade", release, str(CHART), "--namespace", namespace,
                 "--set-json", f'watchNamespaces=["{namespace}"]', "--set", "settings.maxConcurrency=3",
                 "--set", "networkPolicy.enabled=true")
        status = json.loads(helm.run("status", release, "-n", namespace, "-o", "json").stdout)
        assert status["info"]["status"] == "deployed" and status["version"] == 2
        deployment = kube.kubectl_json("get", "deployment", full, "-n", namespace)
        env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["PACKAGESTATS_MAX_CONCURRENCY"] == "3"
        assert env["PACKAGESTATS_NAMESPACES"] == namespace
        assert deployment["metadata"]["generation"] == 2
        role = kube.kubectl_json("get", "role", full, "-n", namespace)
        assert rules(role) == OWN_RULES
        assert rules(kube.kubectl_json("get", "clusterrole", full)) == sorted([CRD_RULE, NAMESPACES_RULE])
        policy = kube.kubectl_json("get", "networkpolicy", full, "-n", namespace)
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]

        helm.run("uninstall", release, "--namespace", namespace)
        for kind, ns in [("deployment", namespace), ("serviceaccount", namespace), ("service", namespace),
                         ("role", namespace), ("rolebinding", namespace), ("networkpolicy", namespace),
                         ("clusterrole", None), ("clusterrolebinding", None)]:
            got = kube.kubectl("get", kind, full, *(["-n", ns] if ns else []), check=False)
            assert got.returncode == 1 and "NotFound" in got.stderr, (kind, got.stderr)
        # The CRD stays: Helm never deletes what it installs from crds/.
        assert kube.kubectl("get", "crd", "packagestats.packagestats.dev", check=False).returncode == 0


def test_pod_template_is_admitted_under_restricted_pod_security(kube: Cluster, helm: Helm, namespace: str) -> None:
    kube.kubectl("label", "namespace", namespace, f"{PSS_LABEL}=restricted")
    [deployment] = by_kind(helm.template(namespace=namespace))["Deployment"]
    template = deployment["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "pss-check", "namespace": namespace, "labels": template["metadata"]["labels"]},
           "spec": template["spec"]}
    # No controller-manager creates the namespace's "default" ServiceAccount here.
    kube.kubectl("create", "serviceaccount", "pss-check", "-n", namespace)
    pod["spec"]["serviceAccountName"] = "pss-check"
    out = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(pod)).stdout
    assert out.strip() == "pod/pss-check created (server dry run)"
    # The check is real: the same pod as root is refused.
    pod["spec"]["containers"][0]["securityContext"]["runAsUser"] = 0
    pod["spec"]["securityContext"]["runAsUser"] = 0
    refused = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False)
    assert refused.returncode == 1 and 'violates PodSecurity "restricted:latest"' in refused.stderr


# --- RBAC ---------------------------------------------------------------------------------------------


def can_i(kube: Cluster, sa: str, *args: str) -> bool:
    proc = kube.kubectl("auth", "can-i", *args, f"--as={sa}", check=False)
    assert proc.stdout.strip() in ("yes", "no"), proc.stdout + proc.stderr
    return proc.stdout.strip() == "yes"


def token_kubeconfig(kube: Cluster, namespace: str, sa: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount with a short-lived token."""
    token = kube.kubectl("create", "token", sa, "-n", namespace, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(kube.kubeconfig.read_text())
    current = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    cluster = dict(next(c for c in admin["clusters"] if c["name"] == current["context"]["cluster"])["cluster"])
    if "certificate-authority" in cluster:
        ca = Path(cluster.pop("certificate-authority"))
        if not ca.is_absolute():
            ca = kube.kubeconfig.parent / ca
        cluster["certificate-authority-data"] = base64.b64encode(ca.read_bytes()).decode()
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": sa, "namespace": namespace}}],
        "current-context": "c",
    }))
    return path


FORBIDDEN_MARKERS = ("403", "Forbidden", "forbidden", "Not enough permissions", "Failed to post an event")


def reconcile_as_service_account(kube: Cluster, kubeconfig: Path, watched: str, namespaces: str,
                                 release_namespace: str) -> None:
    """Run the operator with the token kubeconfig: a PackageStats gets Ready with the exact count, its
    Event is posted and, once deleted, its finalizer is removed; the log shows no permission error."""
    def get() -> dict[str, Any] | None:
        proc = kube.kubectl("get", "packagestats", "widget", "-n", watched, "-o", "json", check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 else None

    def ready() -> dict[str, Any] | None:
        obj = get() or {}
        status = obj.get("status", {})
        conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
        return obj if conditions.get("Ready") == "True" and status.get("totalDownloads") == 4242 else None

    def event_reasons() -> set[str]:
        items = kube.kubectl_json("get", "events", "-n", watched,
                                  "--field-selector", "involvedObject.name=widget")["items"]
        return {e["reason"] for e in items}

    with FakeGitHub() as gh:
        gh.add_package("acme", "widget", repository="widget", total=4242)
        kube.kubectl("apply", "--server-side", "--field-manager=tests", "-f", "-", input=json.dumps({
            "apiVersion": "packagestats.dev/v1alpha1", "kind": "PackageStats",
            "metadata": {"name": "widget", "namespace": watched},
            "spec": {"owner": "acme", "packages": [{"name": "widget", "repository": "widget"}]}}))
        # Outside a pod the Lease's namespace is not the pod's own: name the release's, as the chart allows.
        env = {"PACKAGESTATS_NAMESPACES": namespaces, "PACKAGESTATS_LEASE_NAMESPACE": release_namespace}
        with running_operator(kubeconfig, gh.base_url, env) as op:
            obj = wait_for("Ready with 4242 downloads", ready, 60, op=op)
            assert [p["downloads"] for p in obj["status"]["packages"]] == [4242]
            assert obj["metadata"]["finalizers"] == ["packagestats.dev/finalizer"]
            assert "DownloadsChanged" in wait_for("a DownloadsChanged Event", event_reasons, 60, op=op)
            kube.kubectl("delete", "packagestats", "widget", "-n", watched, "--wait=false")
            wait_for("the finalizer removed and the object gone", lambda: get() is None, 60, op=op)
        text = op.log.read_text(errors="replace")
    bad = [line for line in text.splitlines() if any(m in line for m in FORBIDDEN_MARKERS)]
    assert bad == [], "\n".join(bad)


def test_cluster_wide_rbac(kube: Cluster, crd: Cluster, helm: Helm, namespace: str, tmp_path: Path) -> None:
    release = release_name()
    sa_name = f"{release}-packagestats"
    sa = f"system:serviceaccount:{namespace}:{sa_name}"
    other = f"{namespace}-other"
    kube.kubectl("create", "namespace", other)
    try:
        with installed(helm, release, namespace, "--set", "github.tokenSecret.name=gh-token"):
            allowed = [
                ("list", "packagestats.packagestats.dev", "-A"),
                ("watch", "packagestats.packagestats.dev", "-A"),
                ("patch", "packagestats.packagestats.dev", "-n", other),
                ("patch", "packagestats.packagestats.dev", "--subresource=status", "-n", other),
                ("create", "events", "-n", other),
                ("patch", "events", "-n", other),  # a repeated Event is counted, not posted anew
                ("list", "customresourcedefinitions.apiextensions.k8s.io"),
                ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
                ("get", "leases.coordination.k8s.io", "-n", namespace),
                ("update", "leases.coordination.k8s.io", "-n", namespace),
            ]
            denied = [
                ("get", "secrets", "-n", namespace),
                ("get", "secrets/gh-token", "-n", namespace),
                ("list", "secrets", "-A"),
                ("create", "pods", "-n", namespace),
                ("create", "pods", "-n", other),
                ("get", "packagestats.packagestats.dev", "-n", other),
                ("update", "packagestats.packagestats.dev", "-n", other),
                ("create", "packagestats.packagestats.dev", "-n", other),
                ("delete", "packagestats.packagestats.dev", "-n", other),
                ("update", "packagestats.packagestats.dev", "--subresource=status", "-n", other),
                ("delete", "events", "-n", other),
                ("get", "leases.coordination.k8s.io", "-n", other),
                ("list", "namespaces"),
                ("patch", "customresourcedefinitions.apiextensions.k8s.io"),
                ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
            ]
            assert [a for a in allowed if not can_i(kube, sa, *a)] == []
            assert [d for d in denied if can_i(kube, sa, *d)] == []

            kubeconfig = token_kubeconfig(kube, namespace, sa_name, tmp_path / "kubeconfig")
            reconcile_as_service_account(kube, kubeconfig, other, "", namespace)
    finally:
        kube.kubectl("delete", "namespace", other, "--wait=false", check=False)


def test_namespaced_rbac(kube: Cluster, crd: Cluster, helm: Helm, namespace: str, tmp_path: Path) -> None:
    release = release_name()
    sa_name = f"{release}-packagestats"
    sa = f"system:serviceaccount:{namespace}:{sa_name}"
    watched = f"{namespace}-watched"
    kube.kubectl("create", "namespace", watched)
    try:
        with installed(helm, release, namespace, "--set-json", f'watchNamespaces=["{watched}"]'):
            allowed = [
                ("list", "packagestats.packagestats.dev", "-n", watched),
                ("watch", "packagestats.packagestats.dev", "-n", watched),
                ("patch", "packagestats.packagestats.dev", "-n", watched),
                ("patch", "packagestats.packagestats.dev", "--subresource=status", "-n", watched),
                ("create", "events", "-n", watched),
                ("list", "namespaces"),
                ("watch", "namespaces"),
                ("list", "customresourcedefinitions.apiextensions.k8s.io"),
            ]
            denied = [
                ("list", "packagestats.packagestats.dev", "-A"),
                ("list", "packagestats.packagestats.dev", "-n", namespace),
                ("patch", "packagestats.packagestats.dev", "-n", namespace),
                ("create", "events", "-n", namespace),
                ("get", "secrets", "-n", watched),
                ("create", "pods", "-n", watched),
                ("get", "namespaces"),
            ]
            assert [a for a in allowed if not can_i(kube, sa, *a)] == []
            assert [d for d in denied if can_i(kube, sa, *d)] == []

            kubeconfig = token_kubeconfig(kube, namespace, sa_name, tmp_path / "kubeconfig")
            reconcile_as_service_account(kube, kubeconfig, watched, watched, namespace)
    finally:
        kube.kubectl("delete", "namespace", watched, "--wait=false", check=False)


# --- Flux ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flux_crds(kube: Cluster) -> list[flux.FluxCRD]:
    try:
        crds = flux.crds()
    except flux.GoUnavailable as e:
        pytest.skip(str(e))
    for c in crds:
        kube.kubectl("apply", "--server-side", "--field-manager=packagestats-tests", "-f", str(c.path))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{c.name}" for c in crds])
    return crds


def in_namespace(docs: list[dict[str, Any]], namespace: str) -> str:
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    return yaml.safe_dump_all(docs)


def test_flux_manifests_pass_server_side_dry_run(kube: Cluster, crd: Cluster, flux_crds: list[flux.FluxCRD],
                                                 namespace: str) -> None:
    rendered = kube.kubectl("kustomize", str(FLUX)).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    assert sorted(d["kind"] for d in docs) == ["HelmRelease", "OCIRepository"]
    docs += [d for d in yaml.safe_load_all((FLUX / "packagestats-sample.yaml").read_text()) if d]
    out = kube.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-",
                       input=in_namespace(docs, namespace)).stdout
    assert sorted(out.splitlines()) == [
        "helmrelease.helm.toolkit.fluxcd.io/packagestats created (server dry run)",
        "ocirepository.source.toolkit.fluxcd.io/packagestats created (server dry run)",
        "packagestats.packagestats.dev/headscale created (server dry run)",
    ]
    # The check is real: a field Flux does not know is refused.
    [hr] = [d for d in docs if d["kind"] == "HelmRelease"]
    hr["spec"]["install"]["crdPolicy"] = "CreateReplace"
    refused = kube.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-",
                           input=in_namespace([hr], namespace), check=False)
    assert refused.returncode == 1 and 'unknown field "spec.install.crdPolicy"' in refused.stderr


def test_flux_values_are_valid_chart_values(helm: Helm, tmp_path: Path) -> None:
    [hr] = [d for d in yaml.safe_load_all((FLUX / "helmrelease.yaml").read_text()) if d]
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(hr["spec"]["values"]))
    docs = helm.template("-f", str(values), namespace=hr["spec"]["targetNamespace"],
                         release=hr["spec"]["releaseName"])
    c = container(docs)
    assert settings_from(c).max_concurrency == hr["spec"]["values"]["settings"]["maxConcurrency"]
    assert by_kind(docs)["Deployment"][0]["metadata"]["namespace"] == "packagestats-system"


def test_template_two_replicas(helm: Helm) -> None:
    docs = helm.template("--set", "replicaCount=2")
    kinds = by_kind(docs)
    [pdb] = kinds["PodDisruptionBudget"]
    [deployment] = kinds["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": deployment["spec"]["selector"]}
    assert pdb["metadata"]["namespace"] == "ops"
    # Without the election two replicas would both scrape: refused.
    proc = helm.run("template", "rel", str(CHART), "--set", "replicaCount=2", "--set", "settings.leaseName=",
                    check=False)
    assert proc.returncode == 1 and "replicaCount > 1 needs settings.leaseName" in proc.stderr
    assert "Role" not in by_kind(helm.template("--set", "settings.leaseName="))
    # A SQLite file on a ReadWriteOnce volume: one pod at a time, so Recreate, and never two replicas.
    [deployment] = by_kind(helm.template("--set", "history.persistence.enabled=true"))["Deployment"]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    proc = helm.run("template", "rel", str(CHART), "--set", "replicaCount=2", "--set",
                    "history.persistence.enabled=true", check=False)
    assert proc.returncode == 1 and "replicaCount > 1 needs a history database the replicas can share" in proc.stderr
