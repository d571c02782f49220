"""``make demo`` tells its story end to end on a fresh local Azure and exits 0."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class TestDemo:
    """The demo starts local Azure, rotates through the Event Grid function and shows every part of the story."""

    def test_demo_runs_to_the_end(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ROTATION_", "AzureWebJobs"))}
        started = time.monotonic()

        result = subprocess.run(
            [sys.executable, "-m", "demo"], cwd=REPO, env=env, capture_output=True, text=True, timeout=240, check=False
        )

        elapsed = time.monotonic() - started
        out = result.stdout
        assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
        assert "Microsoft.KeyVault.KeyNearExpiry" in out
        assert "rotations of the key after two deliveries: 1" in out
        assert re.search(r"^\s*retire\s+succeeded\s", out, re.MULTILINE)
        assert "(disabled)" in out
        assert "audit chain OK" in out
        assert "done: the key and every consumer moved to the new version" in out
        assert elapsed < 120
