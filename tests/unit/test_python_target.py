"""The deploy target's Python version is one decision (docs/decisions/0003): package, Bicep and project agree."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DECIDED = "3.11"


class TestPythonTarget:
    """Every place that names the deployed Python names the decided version."""

    def test_package_builds_for_it(self) -> None:
        source = (REPO / "scripts" / "package.py").read_text()

        assert re.search(r'^PYTHON_VERSION = "([\d.]+)"', source, re.MULTILINE)[1] == DECIDED  # type: ignore[index]

    def test_bicep_and_its_arm_json_run_it(self) -> None:
        bicep = (REPO / "infra" / "main.bicep").read_text()
        arm = json.dumps(json.loads((REPO / "infra" / "main.json").read_text()))

        assert re.findall(r"runtime: \{\s*name: 'python'\s*version: '([\d.]+)'", bicep) == [DECIDED]
        assert re.findall(r'"runtime": \{"name": "python", "version": "([\d.]+)"\}', arm) == [DECIDED]

    def test_project_requires_it(self) -> None:
        project = tomllib.loads((REPO / "pyproject.toml").read_text())

        assert project["project"]["requires-python"] == f">={DECIDED},<3.12"
        assert project["tool"]["mypy"]["python_version"] == DECIDED
