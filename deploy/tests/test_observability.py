"""deploy/observability holds what a running caseloop is watched with: Prometheus alert rules and a
Grafana dashboard. Both are checked here the way Prometheus and Grafana would take them — every
expression parsed by a PromQL parser, the rule file held to the shape of a Prometheus rule file —
and every metric they name is one a real service shows on its /metrics (supervision, started in
process on the test broker, scraped as Prometheus would). A broken expression, a malformed rule or a
metric no service has fails the check."""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.testing.fixtures import DevelopmentCaller
from caseloop_supervision.app import create_app
from caseloop_supervision.config import SupervisionSettings

OBSERVABILITY = Path(__file__).resolve().parents[1] / "observability"

#: Series Prometheus makes itself for every target, not found on any /metrics.
MADE_BY_PROMETHEUS = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})

#: The series a family of each type shows (a histogram's buckets, sum and count; a counter's total).
SERIES_OF_A_FAMILY = {
    "histogram": ("_bucket", "_sum", "_count"),
    "counter": ("_total",),
    "gauge": ("",),
    "untyped": ("",),
}

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_GROUP_KEYS = frozenset({"name", "interval", "limit", "query_offset", "labels", "rules"})
_RULE_KEYS = frozenset({"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"})
#: Grafana's template variable query naming a metric: ``label_values(metric, label)``.
_LABEL_VALUES = re.compile(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)")


def alert_rules() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((OBSERVABILITY / "alerts.yaml").read_text())
    return document


def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((OBSERVABILITY / "dashboard.json").read_text())
    return document


def metrics_named(expr: str) -> set[str]:
    """The metric names an expression selects; raises ValueError when it does not parse."""
    names: set[str] = set()

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name is None:
                raise ValueError(f"{expr!r} selects series without naming their metric")
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def problems_of_the_rule_file(document: object) -> list[str]:
    """What Prometheus would refuse in a rule file (``promtool check rules``), one line each."""
    if not isinstance(document, dict) or set(document) != {"groups"}:
        return ["a rule file is a mapping with one key, groups"]
    groups = document["groups"]
    if not isinstance(groups, list) or not groups:
        return ["groups is a list of at least one group"]
    problems: list[str] = []
    names = [group.get("name") for group in groups if isinstance(group, dict)]
    if len(set(names)) != len(names):
        problems.append("group names repeat")
    for group in groups:
        if not isinstance(group, dict) or not isinstance(group.get("name"), str) or not group["name"]:
            problems.append(f"a group without a name: {group!r}")
            continue
        where = f"group {group['name']}"
        if unknown := set(group) - _GROUP_KEYS:
            problems.append(f"{where}: unknown fields {sorted(unknown)}")
        if not isinstance(group.get("rules"), list) or not group["rules"]:
            problems.append(f"{where}: no rules")
            continue
        for rule in group["rules"]:
            problems.extend(f"{where}: {problem}" for problem in problems_of_a_rule(rule))
    return problems


def problems_of_a_rule(rule: object) -> Iterator[str]:
    if not isinstance(rule, dict):
        yield f"a rule is a mapping: {rule!r}"
        return
    if unknown := set(rule) - _RULE_KEYS:
        yield f"unknown fields {sorted(unknown)}"
    if ("alert" in rule) == ("record" in rule):
        yield f"a rule is an alert or a record, one of them: {rule!r}"
        return
    name = rule.get("alert", rule.get("record"))
    if not isinstance(name, str) or not re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", name):
        yield f"not a valid rule name: {name!r}"
    expr = rule.get("expr")
    if not isinstance(expr, str) or not expr.strip():
        yield f"{name}: no expression"
    else:
        try:
            metrics_named(expr)
        except ValueError as error:
            yield f"{name}: the expression does not parse: {error}"
    for duration in ("for", "keep_firing_for"):
        if duration in rule:
            try:
                promql_parser.parse_duration(str(rule[duration]))
            except ValueError:
                yield f"{name}: {duration} is not a duration: {rule[duration]!r}"
    for field in ("labels", "annotations"):
        values = rule.get(field, {})
        if not isinstance(values, dict) or not all(
            isinstance(key, str) and _LABEL_NAME.match(key) and isinstance(value, str) for key, value in values.items()
        ):
            yield f"{name}: {field} map label names to text"


def dashboard_expressions(document: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard's panels (rows' nested panels too)."""
    expressions: list[str] = []
    for panel in _panels(document.get("panels", [])):
        expressions.extend(target["expr"] for target in panel.get("targets", []) if target.get("expr"))
    return expressions


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_variable_metrics(document: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for variable in document.get("templating", {}).get("list", []):
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        found.update(_LABEL_VALUES.findall(text))
    return found


def exposed_series(exposition: str) -> set[str]:
    """Every series name a scrape can show: the samples, and each family's series by its type (a
    labelled family not observed yet has no sample, but Prometheus will see it once it is)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in SERIES_OF_A_FAMILY.get(family.type, ("",)))
    return names


# --- The rule file -------------------------------------------------------------------------------


def test_the_alert_rules_are_a_prometheus_rule_file_whose_every_expression_parses() -> None:
    document = alert_rules()

    assert problems_of_the_rule_file(document) == []
    alerts = {rule["alert"] for group in document["groups"] for rule in group["rules"]}
    assert {
        "CaseloopServiceDown",
        "CaseloopConsumerLagHigh",
        "CaseloopOutboxOldestEventWaiting",
        "CaseloopDeadLettersIncreasing",
        "CaseloopOverdueCasesGrowing",
    } <= alerts


@pytest.mark.parametrize(
    ("breakage", "complaint"),
    [
        (lambda rule: rule.update(expr="sum by (job (caseloop_consumer_lag_records)"), "does not parse"),
        (lambda rule: rule.update(expr="rate(caseloop_dead_letters_total)"), "does not parse"),
        (lambda rule: rule.update({"for": "ten minutes"}), "not a duration"),
        (lambda rule: rule.update(record="caseloop:lag"), "an alert or a record"),
        (lambda rule: rule.update(severity="page"), "unknown fields"),
        (lambda rule: rule.update(labels={"severity": 3}), "label names to text"),
    ],
)
def test_a_broken_rule_fails_the_check(breakage: Any, complaint: str) -> None:
    document = copy.deepcopy(alert_rules())
    breakage(document["groups"][0]["rules"][0])

    problems = problems_of_the_rule_file(document)

    assert any(complaint in problem for problem in problems), problems


def test_a_rule_file_without_groups_or_with_a_group_twice_fails_the_check() -> None:
    twice = alert_rules()
    twice["groups"].append(copy.deepcopy(twice["groups"][0]))

    assert problems_of_the_rule_file({"rules": []}) == ["a rule file is a mapping with one key, groups"]
    assert "group names repeat" in problems_of_the_rule_file(twice)


# --- The dashboard -------------------------------------------------------------------------------


def test_every_panel_of_the_dashboard_queries_with_an_expression_that_parses() -> None:
    document = dashboard()
    panels = [panel for panel in _panels(document["panels"]) if panel["type"] != "row"]

    assert panels
    assert all(panel.get("targets") for panel in panels), "a panel without a query shows nothing"
    for expr in dashboard_expressions(document):
        metrics_named(expr.replace("$job", "caseloop-supervision"))
    assert len({panel["id"] for panel in _panels(document["panels"])}) == len(list(_panels(document["panels"])))


# --- Every metric named is one a service shows ---------------------------------------------------


@pytest.fixture
async def supervision_scrape(kafka_settings: KafkaSettings, tmp_path: Path) -> str:
    """What supervision's /metrics shows once it has started and answered a request: its runtime's
    figures and its cases by town."""
    settings = SupervisionSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'supervision.db'}")
    app = create_app(settings, kafka_settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), auth=DevelopmentCaller(), base_url="http://supervision"
        ) as client,
    ):
        assert (await client.get(f"/v1/cases/{uuid.uuid4()}")).status_code == 404
        response = await client.get("/metrics")
        assert response.status_code == 200, response.text
        return response.text


async def test_every_metric_the_rules_and_the_dashboard_name_is_one_a_running_service_shows(
    supervision_scrape: str,
) -> None:
    exposed = exposed_series(supervision_scrape) | MADE_BY_PROMETHEUS
    rules = alert_rules()
    named = {
        f"alert {rule['alert']}": metrics_named(rule["expr"]) for group in rules["groups"] for rule in group["rules"]
    }
    named |= {
        f"panel query {expr}": metrics_named(expr.replace("$job", "x")) for expr in dashboard_expressions(dashboard())
    }
    named["dashboard variables"] = dashboard_variable_metrics(dashboard())

    unknown = {where: sorted(names - exposed) for where, names in named.items() if names - exposed}

    assert unknown == {}
    assert {"caseloop_cases_overdue", "caseloop_consumer_lag_records"} <= set().union(*named.values())


async def test_a_metric_no_service_shows_fails_the_check(supervision_scrape: str) -> None:
    exposed = exposed_series(supervision_scrape) | MADE_BY_PROMETHEUS

    assert metrics_named("caseloop_cases_overdue_total > 0") - exposed == {"caseloop_cases_overdue_total"}
    assert metrics_named("caseloop_consumer_lag_records > 0") - exposed == set()
