"""The CLI is installed as the ``cmk-rotation`` console script, the same main as ``python -m rotation``."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path


class TestConsoleScript:
    """`make` installs the project, so on-call gets `cmk-rotation` on the venv's PATH."""

    def test_entry_point_names_the_cli_main(self) -> None:
        scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}

        assert scripts.get("cmk-rotation") == "rotation.cli:main"

    def test_script_runs_and_lists_the_commands(self) -> None:
        script = Path(sys.executable).with_name("cmk-rotation")

        out = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True).stdout

        for command in ("plan", "rotate", "status", "sweep", "audit"):
            assert command in out
