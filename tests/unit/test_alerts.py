"""The alert rules in infra/ and the runbook's "Alerts" sections: every rule links a section, every
section has a rule, and every rule queries log events the service emits and the runbook lists."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.unit.test_infra import REPO, arm_resources, bicep, bicep_resources, body

RULE = "Microsoft.Insights/scheduledQueryRules"
RUNBOOK = REPO / "docs" / "runbook.md"
EVENT_IN_QUERY = re.compile(r'tostring\(r\.event\) == "([a-z_]+)"')


def slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def runbook_alert_anchors() -> set[str]:
    headings = re.findall(r"^### (Alert: .+)$", RUNBOOK.read_text(), flags=re.MULTILINE)
    return {slug(h) for h in headings}


def bicep_rules() -> dict[str, dict[str, Any]]:
    return {name: body(r) for name, r in bicep_resources("modules/alerts.bicep").items() if r["type"] == RULE}


def arm_rules() -> list[dict[str, Any]]:
    return [r for r in arm_resources() if r["type"] == RULE]


def anchor_of(description: str) -> str:
    match = re.search(r"#([a-z0-9-]+)", description)
    assert match, description
    return match.group(1)


def source_text() -> str:
    return "\n".join(p.read_text() for p in (REPO / "rotation").rglob("*.py"))


class TestAlertsLinkTheRunbook:
    def test_every_rule_links_a_runbook_section_and_every_section_has_a_rule(self) -> None:
        anchors = runbook_alert_anchors()
        in_bicep = [anchor_of(str(r["properties"]["description"])) for r in bicep_rules().values()]
        in_arm = [anchor_of(r["properties"]["description"]) for r in arm_rules()]

        assert len(anchors) == 5
        assert sorted(in_bicep) == sorted(anchors)
        assert sorted(in_arm) == sorted(anchors)

    def test_the_runbook_link_is_also_a_custom_property_of_the_notification(self) -> None:
        for rule in bicep_rules().values():
            properties = rule["properties"]
            assert anchor_of(str(properties["actions"]["customProperties"]["runbook"])) == anchor_of(
                str(properties["description"])
            )


class TestAlertQueries:
    @pytest.mark.parametrize("kind", ["bicep", "arm"])
    def test_each_rule_reads_an_event_the_service_emits_and_the_runbook_lists(self, kind: str) -> None:
        rules = bicep_rules().values() if kind == "bicep" else arm_rules()
        runbook = RUNBOOK.read_text()
        source = source_text()

        events = set()
        for rule in rules:
            query = str(rule["properties"]["criteria"]["allOf"][0]["query"])
            named = EVENT_IN_QUERY.findall(query)
            assert len(named) == 1, query
            events.add(named[0])

        assert len(events) == 5
        for event in events:
            assert f"| `{event}`" in runbook or f", `{event}`" in runbook, event
            assert f'"{event}"' in source, f"{event} is not emitted by rotation/"

    def test_the_rules_query_the_apps_application_insights(self) -> None:
        module = bicep("main.bicep")["modules"]["alerts"]
        params = body(module)["params"]

        assert module["detail"]["path"] == "modules/alerts.bicep"
        assert params["appInsightsId"]["operator"]["operands"] == {"operand_1": "appInsights", "operand_2": "id"}
        for rule in bicep_rules().values():
            assert rule["properties"]["scopes"] == ["appInsightsId"]
            assert rule["kind"] == "LogAlert"

    def test_the_seven_day_rule_filters_on_days_left(self) -> None:
        rule = bicep_rules()["expiringInUse"]

        assert "todouble(r.days_left) <= 7" in str(rule["properties"]["criteria"]["allOf"][0]["query"])
