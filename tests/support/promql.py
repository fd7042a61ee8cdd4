"""Checks PromQL in the chart (alerts, dashboard) against the series src/packagestats/metrics.py exports.

The names are read from that file's source (ast), not imported, so that what is checked is what the
operator defines, whatever state a test leaves a registry in.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

METRICS_PY = Path(__file__).resolve().parents[2] / "src" / "packagestats" / "metrics.py"

# The series a metric family exports, by the kind of object that defines it (prometheus_client's rules;
# the counters' and histograms' `_created` series are left out: they can be switched off).
_SERIES_SUFFIXES = {"GaugeMetricFamily": [""], "Gauge": [""], "Counter": ["_total"],
                    "Histogram": ["_bucket", "_sum", "_count"]}

# Everything else an expression may name: PromQL functions, aggregations and keywords.
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "topk", "bottomk", "by", "without", "on", "ignoring", "group_left",
    "group_right", "bool", "and", "or", "unless", "offset", "rate", "increase", "delta", "time",
    "histogram_quantile", "max_over_time", "min_over_time", "absent", "changes", "resets", "label_values",
}


def exported_series() -> dict[str, set[str]]:
    """Series name -> its labels, for every metric defined in metrics.py."""
    tree = ast.parse(METRICS_PY.read_text())
    constants: dict[str, list[str]] = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.List)):
            constants[node.targets[0].id] = [ast.literal_eval(e) for e in node.value.elts]

    def labels(node: ast.expr) -> list[str]:
        if isinstance(node, ast.Name):
            return constants[node.id]
        assert isinstance(node, ast.List), ast.dump(node)
        result: list[str] = []
        for element in node.elts:
            if isinstance(element, ast.Starred):
                result += labels(element.value)
            else:
                result.append(ast.literal_eval(element))
        return result

    series: dict[str, set[str]] = {}
    for call in ast.walk(tree):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                and call.func.id in _SERIES_SUFFIXES):
            continue
        name = ast.literal_eval(call.args[0])
        keywords = {k.arg: k.value for k in call.keywords}
        label_node = keywords.get("labels", call.args[2] if len(call.args) > 2 else None)
        names = set(labels(label_node)) if label_node is not None else set()
        for suffix in _SERIES_SUFFIXES[call.func.id]:
            base = name.removesuffix("_total") if suffix == "_total" else name
            series[base + suffix] = names | ({"le"} if suffix == "_bucket" else set())
    return series


def promql_problems(expr: str, series: dict[str, set[str]]) -> list[str]:
    """What in a PromQL expression names a series or label that metrics.py does not export (empty: none).

    Grafana's variables ($name, ${name}) may stand in matcher values and range durations."""
    problems: list[str] = []
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals: matcher values
    if text.count("(") != text.count(")") or text.count("{") != text.count("}") or text.count("[") != text.count("]"):
        problems.append(f"unbalanced brackets in {expr!r}")
    used: list[str] = []
    # Selectors with matchers: the labels must be the series'.
    for metric, matchers in re.findall(r"([A-Za-z_:][\w:]*)\s*\{([^}]*)\}", text):
        used.append(metric)
        for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers):
            if metric in series and label not in series[metric]:
                problems.append(f"{metric} has no label {label!r}")
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)  # range durations, $window included
    grouping = re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", text)
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", r"\1", text)
    label_values = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\)\s*", text)
    if label_values:
        grouping.append(label_values.group(2))
        text = f"label_values({label_values.group(1)})"
    words = re.findall(r"(?<![\w.])[A-Za-z_:][\w:]*", text)
    used = list(dict.fromkeys(used + [w for w in words if w not in PROMQL_WORDS]))
    if not used:
        problems.append(f"no metric in {expr!r}")
    for name in used:
        if name not in series:
            problems.append(f"{name} is not exported by metrics.py")
    labels = set().union(*(series.get(name, set()) for name in used))
    for group in grouping:
        for label in filter(None, (g.strip() for g in group.split(","))):
            if label not in labels:
                problems.append(f"label {label!r} is on none of {sorted(set(used))}")
    return problems
