"""The deployment templates in infra/: well-formed, least privilege, and in step with docs/permissions.md.

There is no Bicep compiler on the machines that build this project, so the ARM JSON beside the
Bicep is a hand translation. These tests parse both (Bicep with pycep, the parser checkov uses) and
check that they declare the same parameters, resources, role assignments and event filters, and that
both match the step-to-permission table in docs/permissions.md.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"
ROLE_DEFINITION = "Microsoft.Authorization/roleDefinitions"
DEPLOYMENT = "Microsoft.Resources/deployments"
EVENT_SUBSCRIPTION = "Microsoft.EventGrid/systemTopics/eventSubscriptions"
DESCRIPTION = re.compile(r"^CMK rotation: (?P<role>.+) on (?P<scope>.+)$")
GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
FORBIDDEN_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
    "f58310d9-a9f6-439a-9e8d-f62e7b41a168": "Role Based Access Control Administrator",
    "00482a5a-887f-4fb3-b363-3b7fe8e74483": "Key Vault Administrator",
    "14b46e9e-c2b7-41b4-b07b-48a6ebf60603": "Key Vault Crypto Officer",
    "acdd72a7-3385-48ef-bd42-f606fba81ae7": "Reader",
}
KEY_EVENTS = {
    "Microsoft.KeyVault.KeyNearExpiry",
    "Microsoft.KeyVault.KeyExpired",
    "Microsoft.KeyVault.KeyNewVersionCreated",
}


# -- readers -------------------------------------------------------------------------------------


@cache
def bicep(name: str) -> dict[str, Any]:
    """The pycep tree of infra/<name>."""
    return BicepParser().parse(file_path=INFRA / name)  # type: ignore[no-any-return]


def bicep_files() -> list[str]:
    return ["main.bicep", *sorted(f"modules/{p.name}" for p in (INFRA / "modules").glob("*.bicep"))]


@cache
def arm() -> dict[str, Any]:
    return json.loads((INFRA / "main.json").read_text())  # type: ignore[no-any-return]


def arm_templates(template: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """The main template and every template nested in it, depth first."""
    template = arm() if template is None else template
    yield template
    for resource in template.get("resources", []):
        if resource["type"] == DEPLOYMENT:
            yield from arm_templates(resource["properties"]["template"])


def arm_resources() -> Iterator[dict[str, Any]]:
    for template in arm_templates():
        yield from template.get("resources", [])


def bicep_resources(name: str) -> dict[str, dict[str, Any]]:
    return dict(bicep(name).get("resources", {}))


def body(resource_or_module: dict[str, Any]) -> dict[str, Any]:
    """The declared body of a Bicep resource or module, under any loop or condition."""
    config: dict[str, Any] = resource_or_module["config"]
    while "loop_type" in config or "condition" in config:
        config = config["config"]
    return config


def strings(node: object) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def assignment_descriptions(trees: list[object]) -> Counter[str]:
    return Counter(s for tree in trees for s in strings(tree) if DESCRIPTION.match(s))


def arm_template_for_bicep(name: str) -> dict[str, Any]:
    """The ARM template that translates infra/<name>: the one with the same target scope and parameter names."""
    wanted = set(bicep(name).get("parameters", {}))
    scope = bicep(name)["globals"]["scope"]["value"]
    schema = {"resourceGroup": "/deploymentTemplate.json#", "subscription": "/subscriptionDeploymentTemplate.json#"}
    matches = [
        t for t in arm_templates() if set(t.get("parameters", {})) == wanted and t["$schema"].endswith(schema[scope])
    ]
    assert len(matches) == 1, f"{name}: {len(matches)} ARM templates have parameters {sorted(wanted)}"
    return matches[0]


@cache
def permission_doc_tables() -> dict[str, list[dict[str, str]]]:
    """Every Markdown table in docs/permissions.md, keyed by its header line."""
    section = (REPO / "docs" / "permissions.md").read_text()
    tables: dict[str, list[dict[str, str]]] = {}
    lines = section.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and i + 1 < len(lines) and set(lines[i + 1].replace("|", "").strip()) <= {"-"}:
            header = [c.strip() for c in line.strip("|").split("|")]
            rows = []
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append(dict(zip(header, (c.strip() for c in row.strip("|").split("|")), strict=True)))
            tables[" | ".join(header)] = rows
    return tables


def permission_table() -> list[dict[str, str]]:
    return permission_doc_tables()["step | identity | role | scope | permissions | why"]


def builtin_roles() -> dict[str, str]:
    return {r["built-in role"]: r["id"].strip("`") for r in permission_doc_tables()["built-in role | id"]}


def permissions(cell: str) -> set[str]:
    return set(re.findall(r"`([^`]+)`", cell))


def custom_roles_arm() -> dict[str, set[str]]:
    roles = {}
    for resource in arm_resources():
        if resource["type"] == ROLE_DEFINITION:
            properties = resource["properties"]
            name = re.search(r"'(CMK Rotation [A-Za-z ]+) \(\{0\}\)'", properties["roleName"])
            assert name, properties["roleName"]
            granted = set()
            for block in properties["permissions"]:
                granted |= set(block["actions"]) | set(block["dataActions"])
            roles[name.group(1)] = granted
    return roles


def custom_roles_bicep() -> dict[str, set[str]]:
    roles = {}
    for resource in bicep_resources("modules/roleDefinitions.bicep").values():
        properties = body(resource)["properties"]
        name = properties["roleName"].removesuffix(" (${namePrefix})")
        granted = set()
        for block in properties["permissions"]:
            granted |= set(block["actions"]) | set(block["dataActions"])
        roles[name] = granted
    return roles


# -- tests ---------------------------------------------------------------------------------------


class TestTemplatesAreWellFormed:
    """Both templates parse; every resource names an apiVersion and every parameter a description."""

    @pytest.mark.parametrize("name", bicep_files())
    def test_every_bicep_resource_has_an_api_version(self, name: str) -> None:
        resources = bicep_resources(name)

        missing = [
            symbol for symbol, r in resources.items() if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", r["api_version"])
        ]

        assert resources
        assert missing == []

    @pytest.mark.parametrize("name", bicep_files())
    def test_every_bicep_parameter_is_used(self, name: str) -> None:
        code = "\n".join(re.sub(r"(^|\s)//.*", "", line) for line in (INFRA / name).read_text().splitlines())

        unused = [p for p in bicep(name)["parameters"] if len(re.findall(rf"\b{p}\b", code)) < 2]

        assert unused == []

    @pytest.mark.parametrize("name", bicep_files())
    def test_every_bicep_parameter_and_output_has_a_description(self, name: str) -> None:
        tree = bicep(name)

        undocumented = [
            symbol
            for section in ("parameters", "outputs")
            for symbol, item in tree.get(section, {}).items()
            if not any(d["type"] == "description" and d["argument"].strip() for d in item["decorators"])
        ]

        assert tree["parameters"]
        assert undocumented == []

    def test_every_arm_resource_has_an_api_version(self) -> None:
        resources = list(arm_resources())

        missing = [r.get("name") for r in resources if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", r.get("apiVersion", ""))]

        assert len(resources) > 20
        assert missing == []

    def test_every_arm_parameter_and_output_has_a_description(self) -> None:
        templates = list(arm_templates())

        undocumented = [
            name
            for template in templates
            for section in ("parameters", "outputs")
            for name, item in template.get(section, {}).items()
            if not item.get("metadata", {}).get("description", "").strip()
        ]

        assert len(templates) == len(bicep_files())
        assert undocumented == []


def own_strings(template: dict[str, Any]) -> Iterator[str]:
    """Every string of a template, leaving out the templates nested in it (they are their own scope)."""
    for section in ("parameters", "variables", "outputs"):
        yield from strings(template.get(section, {}))
    for resource in template.get("resources", []):
        if resource["type"] == DEPLOYMENT:
            yield from strings({k: v for k, v in resource.items() if k != "properties"})
            yield from strings(resource["properties"].get("parameters", {}))
        else:
            yield from strings(resource)


class TestArmExpressionsResolve:
    """Each ARM expression is balanced and names only parameters, variables and loops its template declares."""

    @pytest.mark.parametrize("index", range(len(bicep_files())))
    def test_references_are_declared_and_brackets_balance(self, index: int) -> None:
        template = list(arm_templates())[index]
        expressions = [s for s in own_strings(template) if s.startswith("[") and s.endswith("]")]
        copies = {c["name"] for c in template.get("variables", {}).get("copy", [])} | {
            r["copy"]["name"] for r in template.get("resources", []) if "copy" in r
        }
        declared_variables = set(template.get("variables", {})) - {"copy"} | {
            c["name"] for c in template.get("variables", {}).get("copy", [])
        }

        unbalanced = [
            e for e in expressions if re.sub(r"'[^']*'", "", e).count("(") != re.sub(r"'[^']*'", "", e).count(")")
        ]
        parameters = {n for e in expressions for n in re.findall(r"parameters\('(\w+)'\)", e)}
        variables = {n for e in expressions for n in re.findall(r"variables\('(\w+)'\)", e)}
        loops = {n for e in expressions for n in re.findall(r"copyIndex\('(\w+)'\)", e)}
        depends = {d for r in template.get("resources", []) for d in r.get("dependsOn", []) if not d.startswith("[")}

        assert expressions
        assert unbalanced == []
        assert parameters <= set(template.get("parameters", {}))
        assert variables <= declared_variables
        assert loops <= copies
        assert depends <= copies

    def test_every_declared_parameter_is_used(self) -> None:
        unused = []
        for template in arm_templates():
            text = json.dumps(list(own_strings(template)))
            unused += [p for p in template.get("parameters", {}) if f"parameters('{p}')" not in text]

        assert unused == []


class TestBicepAndArmDeclareTheSameThings:
    """The hand-written ARM JSON says what the Bicep says: same parameters, resources and versions."""

    @pytest.mark.parametrize("name", bicep_files())
    def test_parameters_have_the_same_types_and_defaults_presence(self, name: str) -> None:
        template = arm_template_for_bicep(name)

        in_bicep = {p: (v["type"], v["default"] is not None) for p, v in bicep(name)["parameters"].items()}
        in_arm = {p: (v["type"], "defaultValue" in v) for p, v in template["parameters"].items()}

        assert in_bicep == in_arm

    @pytest.mark.parametrize("name", bicep_files())
    def test_resources_have_the_same_types_and_api_versions(self, name: str) -> None:
        template = arm_template_for_bicep(name)

        in_bicep = Counter(
            (r["type"], r["api_version"]) for r in bicep_resources(name).values() if not r.get("existing")
        ) + Counter((DEPLOYMENT, "2022-09-01") for _ in bicep(name).get("modules", {}))
        in_arm = Counter((r["type"], r["apiVersion"]) for r in template["resources"])

        assert in_bicep == in_arm

    @pytest.mark.parametrize("name", bicep_files())
    def test_outputs_are_the_same(self, name: str) -> None:
        template = arm_template_for_bicep(name)

        in_bicep = {o: v["type"] for o, v in bicep(name).get("outputs", {}).items()}
        in_arm = {o: v["type"] for o, v in template.get("outputs", {}).items()}

        assert in_bicep == in_arm

    def test_role_assignment_descriptions_are_the_same(self) -> None:
        in_bicep = assignment_descriptions([bicep(n) for n in bicep_files()])

        in_arm = assignment_descriptions([arm()])

        assert in_bicep == in_arm
        assert len(in_bicep) >= 10

    def test_custom_roles_grant_the_same_permissions(self) -> None:
        in_bicep = custom_roles_bicep()

        in_arm = custom_roles_arm()

        assert in_bicep == in_arm
        assert len(in_bicep) == 5

    def test_app_settings_are_the_same(self) -> None:
        site = next(r for r in arm_resources() if r["type"] == "Microsoft.Web/sites")
        bicep_site = body(bicep_resources("main.bicep")["functionApp"])

        in_arm = [s["name"] for s in site["properties"]["siteConfig"]["appSettings"]]
        in_bicep = [s["name"] for s in bicep_site["properties"]["siteConfig"]["appSettings"]]

        assert in_arm == in_bicep

    def test_checkov_skips_are_the_same_and_each_has_a_reason(self) -> None:
        skip = re.compile(r"checkov:skip=(CKV2?_[A-Z]+_\d+):\s*(\S.*)")
        bicep_text = "\n".join((INFRA / n).read_text() for n in bicep_files())

        in_bicep = {m.group(1): m.group(2) for m in skip.finditer(bicep_text)}
        in_arm = {
            m.group(1): m.group(2)
            for r in arm_resources()
            for item in r.get("metadata", {}).get("checkov", [])
            if (m := skip.search(item))
        }

        assert in_bicep.keys() == in_arm.keys()
        assert all(len(reason) > 30 for reason in in_bicep.values())


class TestLeastPrivilege:
    """No broad role anywhere; custom roles list actions one by one; writes are never subscription-wide."""

    def test_no_broad_built_in_role_is_used(self) -> None:
        text = "\n".join((INFRA / n).read_text() for n in [*bicep_files(), "main.json"]).lower()

        used = {FORBIDDEN_ROLES[g] for g in GUID.findall(text) if g in FORBIDDEN_ROLES}

        assert used == set()

    def test_custom_roles_have_no_wildcards_and_no_destructive_actions(self) -> None:
        granted = set().union(*custom_roles_arm().values())

        risky = {
            a for a in granted if "*" in a or re.search(r"/(delete|purge/action|listKeys/action|import/action)$", a)
        }

        assert granted
        assert risky == set()

    def test_only_the_read_only_role_is_assigned_at_subscription_scope(self) -> None:
        subscription_templates = [t for t in arm_templates() if "subscriptionDeploymentTemplate" in t["$schema"]]

        literal = assignment_descriptions(
            [r for t in subscription_templates for r in t["resources"] if r["type"] == ROLE_ASSIGNMENT]
        )
        callers = {
            s
            for r in arm()["resources"]
            if r["type"] == DEPLOYMENT and "subscriptionDeploymentTemplate" in r["properties"]["template"]["$schema"]
            for s in strings(r["properties"]["parameters"])
            if DESCRIPTION.match(s)
        }

        assert literal == Counter()
        assert callers == {"CMK rotation: CMK Rotation Reader on consumer subscription"}
        assert custom_roles_arm()["CMK Rotation Reader"] == {
            "Microsoft.Storage/storageAccounts/read",
            "Microsoft.MachineLearningServices/workspaces/read",
            "Microsoft.KeyVault/vaults/read",
            "Microsoft.ContainerRegistry/registries/read",
            "Microsoft.Compute/diskEncryptionSets/read",
            "Microsoft.ResourceGraph/resources/read",
        }

    def test_key_roles_are_assigned_at_key_scope(self) -> None:
        assignments = [r for r in arm_resources() if r["type"] == ROLE_ASSIGNMENT]

        key_scoped = {
            r["properties"]["description"]
            for r in assignments
            if "/keys/" in r.get("scope", "") and DESCRIPTION.match(r["properties"]["description"])
        }

        assert key_scoped == {
            "CMK rotation: CMK Rotation Key Operator on managed key",
            "CMK rotation: CMK Rotation Audit Signer on audit signing key",
            "CMK rotation: Key Vault Crypto Service Encryption User on managed key",
        }

    def test_data_blob_role_is_assigned_on_containers_only(self) -> None:
        scopes = {
            r["properties"]["description"]: r["scope"]
            for r in arm_resources()
            if r["type"] == ROLE_ASSIGNMENT and "Storage Blob Data Contributor" in r["properties"]["description"]
        }

        assert set(scopes) == {
            "CMK rotation: Storage Blob Data Contributor on data container",
            "CMK rotation: Storage Blob Data Contributor on dead-letter container",
        }
        assert all("/containers/" in scope for scope in scopes.values())


class TestReadmeTableMatchesTheTemplates:
    """docs/permissions.md's step-to-permission table is what the templates assign, by role and scope."""

    def test_every_assignment_in_the_templates_is_a_row_and_every_row_is_assigned(self) -> None:
        rows = {(r["role"], r["scope"]) for r in permission_table()}

        assigned = {
            (m.group("role"), m.group("scope")) for s in assignment_descriptions([arm()]) if (m := DESCRIPTION.match(s))
        }

        assert rows == assigned

    def test_custom_roles_grant_exactly_the_permissions_the_table_lists(self) -> None:
        listed: dict[str, set[str]] = {}
        for row in permission_table():
            if row["role"].startswith("CMK Rotation "):
                listed.setdefault(row["role"], set()).update(permissions(row["permissions"]))

        granted = custom_roles_arm()

        assert listed == granted

    def test_built_in_roles_are_the_ids_the_table_lists(self) -> None:
        by_description: dict[str, set[str]] = {}
        for template in arm_templates():
            variables = template.get("variables", {})
            for r in template.get("resources", []):
                if r["type"] != ROLE_ASSIGNMENT or not DESCRIPTION.match(r["properties"]["description"]):
                    continue
                ref = re.search(r"variables\('(\w+)'\)", r["properties"]["roleDefinitionId"])
                if ref:
                    role = DESCRIPTION.match(r["properties"]["description"]).group("role")  # type: ignore[union-attr]
                    by_description.setdefault(role, set()).add(variables[ref.group(1)])

        expected = {role: {guid} for role, guid in builtin_roles().items()}
        table_builtins = {r["role"] for r in permission_table() if not r["role"].startswith("CMK Rotation ")}

        assert by_description == expected
        assert table_builtins == set(expected)

    def test_every_row_names_its_permissions_and_reason(self) -> None:
        rows = permission_table()

        incomplete = [r["step"] for r in rows if not permissions(r["permissions"]) or len(r["why"]) < 20]

        assert len(rows) >= 15
        assert incomplete == []


class TestEventSubscription:
    """Event Grid delivers the three Key Vault key events to the event function, with retries and dead letters."""

    def test_filter_is_the_three_key_events_in_both_templates_and_the_docs(self) -> None:
        arm_subscription = next(r for r in arm_resources() if r["type"] == EVENT_SUBSCRIPTION)
        bicep_subscription = body(bicep_resources("modules/eventSubscription.bicep")["keyEvents"])
        documented = {r["event type"].strip("`") for r in permission_doc_tables()["event type | why"]}

        in_arm = arm_subscription["properties"]["filter"]["includedEventTypes"]
        in_bicep = bicep_subscription["properties"]["filter"]["includedEventTypes"]

        assert sorted(in_arm) == sorted(in_bicep) == sorted(KEY_EVENTS)
        assert documented == KEY_EVENTS

    def test_delivery_goes_to_the_event_function_with_retry_and_dead_letter(self) -> None:
        subscription = next(r for r in arm_resources() if r["type"] == EVENT_SUBSCRIPTION)["properties"]
        caller = next(r for r in arm()["resources"] if "cmk-rotation-events" in r["name"])

        destination = subscription["destination"]
        dead_letter = subscription["deadLetterWithResourceIdentity"]

        assert destination["endpointType"] == "AzureFunction"
        assert "variables('eventFunctionName')" in caller["properties"]["parameters"]["functionResourceId"]["value"]
        assert arm()["variables"]["eventFunctionName"] == "on_key_vault_event"
        assert set(subscription["retryPolicy"]) == {"maxDeliveryAttempts", "eventTimeToLiveInMinutes"}
        assert dead_letter["deadLetterDestination"]["endpointType"] == "StorageBlob"
        assert dead_letter["identity"]["type"] == "SystemAssigned"
        assert subscription["filter"]["advancedFilters"][0]["key"] == "subject"


class TestFunctionApp:
    """The Function app runs Python 3.11 with a system-assigned identity and identity-based storage."""

    def test_runtime_identity_and_settings(self) -> None:
        site = next(r for r in arm_resources() if r["type"] == "Microsoft.Web/sites")
        settings = {s["name"]: s["value"] for s in site["properties"]["siteConfig"]["appSettings"]}

        runtime = site["properties"]["functionAppConfig"]["runtime"]

        assert runtime == {"name": "python", "version": "3.11"}
        assert site["identity"]["type"] == "SystemAssigned"
        assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
        assert not any("AccountKey" in str(v) or "listKeys" in str(v) for v in settings.values())
        assert {"ROTATION_MANAGED_KEYS", "ROTATION_SUBSCRIPTIONS", "ROTATION_DATA_LOCATIONS"} <= set(settings)

    def test_every_rotation_setting_the_template_sets_is_documented(self) -> None:
        site = next(r for r in arm_resources() if r["type"] == "Microsoft.Web/sites")
        sample = json.loads((REPO / "local.settings.sample.json").read_text())["Values"]

        rotation_settings = {s["name"] for s in site["properties"]["siteConfig"]["appSettings"]} - {
            "AzureWebJobsStorage__accountName",
            "AzureWebJobsStorage__credential",
            "APPLICATIONINSIGHTS_CONNECTION_STRING",
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
        }

        assert rotation_settings
        assert rotation_settings <= set(sample)

    def test_audit_retention_policy_is_created_and_locked(self) -> None:
        """The audit container's retention policy is owned by a deployment script that creates it with
        auditRetentionDays, locks it (lockAuditRetention, default true) and extends it, never shortens or
        deletes it; no declarative (unlocked, re-PUT on every deployment) policy is left beside it."""
        script = next(r for r in arm_resources() if r["type"] == "Microsoft.Resources/deploymentScripts")
        bicep_script = body(bicep_resources("main.bicep")["auditRetention"])
        env = {e["name"]: e["value"] for e in script["properties"]["environmentVariables"]}
        text = script["properties"]["scriptContent"]

        assert (INFRA / "scripts/audit-retention.sh").read_text() == text
        assert "loadTextContent('scripts/audit-retention.sh')" in (INFRA / "main.bicep").read_text()
        assert bicep_script["kind"] == "AzureCLI"
        assert env["CONTAINER"] == "[variables('auditContainerName')]"
        assert env["DAYS"] == "[string(parameters('auditRetentionDays'))]"
        assert env["LOCK"] == "[if(parameters('lockAuditRetention'), 'true', 'false')]"
        assert arm()["parameters"]["lockAuditRetention"]["defaultValue"] is True
        assert arm()["parameters"]["auditRetentionDays"]["minValue"] >= 1
        assert "immutability-policy lock" in text
        assert "--allow-protected-append-writes true" in text
        assert "immutability-policy delete" not in text
        assert not [r for r in arm_resources() if r["type"].endswith("/immutabilityPolicies")]
        assert custom_roles_arm()["CMK Rotation Audit Retention Locker"] == {
            "Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies/read",
            "Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies/write",
            "Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies/extend/action",
            "Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies/lock/action",
        }


class TestExampleParameters:
    """infra/main.parameters.example.json names only template parameters and gives every required one."""

    def test_example_is_complete_for_the_template(self) -> None:
        example = json.loads((INFRA / "main.parameters.example.json").read_text())["parameters"]

        declared = arm()["parameters"]
        required = {name for name, p in declared.items() if "defaultValue" not in p}

        assert set(example) <= set(declared)
        assert required <= set(example)


class TestEmulatorsKnowTheCustomRoles:
    """The local emulators enforce the custom roles exactly as the template defines them."""

    def test_arm_and_key_vault_emulators_grant_the_template_permissions(self) -> None:
        from emulators.arm.rbac import BUILT_IN_ROLES
        from emulators.keyvault.rbac import PREFIX, ROLES

        in_emulators = {
            name: {PREFIX + action for action in ROLES[name]}
            for name in ("CMK Rotation Key Operator", "CMK Rotation Audit Signer")
        } | {
            name: set(BUILT_IN_ROLES[name].actions)
            for name in ("CMK Rotation Reader", "CMK Rotation Consumer Operator")
        }

        # The Audit Retention Locker acts only during a deployment (its script), never against the emulators.
        in_template = {n: r for n, r in custom_roles_arm().items() if n != "CMK Rotation Audit Retention Locker"}

        assert in_emulators == in_template
