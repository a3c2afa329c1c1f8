"""Parses every PromQL expression of alert rule files, PrometheusRule manifests and
Grafana dashboards with promql-parser (the Rust parser used by GreptimeDB, through its
Python bindings), and prints how many each file holds.

    check-promql.py FILE...

Grafana's variables ($job, $__rate_interval, ...) are replaced by values of their
kind first. Exits non-zero, naming each expression that does not parse.
"""

import json
import re
import sys

import promql_parser
import yaml

GRAFANA_VARIABLES = [
    (re.compile(r"\$__(rate_)?interval"), "5m"),
    (re.compile(r"\$__range"), "1h"),
    (re.compile(r"\$\{?\w+\}?"), "x"),
]


def rule_expressions(doc):
    groups = doc.get("groups") or (doc.get("spec") or {}).get("groups") or []
    for group in groups:
        for rule in group["rules"]:
            yield rule.get("alert") or rule.get("record"), rule["expr"]


def dashboard_expressions(dashboard):
    pending = list(dashboard.get("panels", []))
    while pending:
        panel = pending.pop()
        pending.extend(panel.get("panels", []))
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield f"panel {panel.get('id')} ({panel.get('title')})", target["expr"]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if variable.get("type") == "query" and query:
            match = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
            yield f"variable {variable['name']}", match.group(1) if match else query


def expressions(path):
    with open(path, encoding="utf-8") as source:
        if path.endswith(".json"):
            yield from dashboard_expressions(json.load(source))
        else:
            for doc in yaml.safe_load_all(source):
                if doc:
                    yield from rule_expressions(doc)


def main(paths):
    failures = 0
    for path in paths:
        count = 0
        for where, expr in expressions(path):
            for pattern, value in GRAFANA_VARIABLES:
                expr = pattern.sub(value, expr)
            count += 1
            try:
                promql_parser.parse(expr)
            except Exception as error:  # the bindings raise a plain exception
                failures += 1
                print(f"{path}: {where}: {error}\n    {expr}", file=sys.stderr)
        if count == 0:
            failures += 1
            print(f"{path}: no PromQL expression found", file=sys.stderr)
        print(f"{path}: {count} expressions")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
