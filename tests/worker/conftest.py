"""Fixtures of the worker lane: app settings as documented, and one worker per module."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.worker.host import REPO, WorkerHost

SAMPLE_SETTINGS = REPO / "local.settings.sample.json"
# The settings the README documents as required (every other one has a default or is optional).
REQUIRED_SETTINGS = ("FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage")


def sample_settings() -> dict[str, str]:
    """``local.settings.sample.json``'s values: every setting the app documents, as documented."""
    values: dict[str, str] = json.loads(Path(SAMPLE_SETTINGS).read_text())["Values"]
    return dict(values)


def local_settings(local_azure: dict[str, Any], **overrides: str) -> dict[str, str]:
    """The sample settings pointed at local Azure's storage, with no managed keys (nothing to rotate)."""
    settings = sample_settings()
    settings.update(
        AzureWebJobsStorage=str(local_azure["storage"]["connection_string"]),
        ROTATION_MANAGED_KEYS="",
        ROTATION_DATA_LOCATIONS="",
        ROTATION_ALLOWED_VAULTS="",
        ROTATION_AUDIT_SIGNING_KEY="",
        ROTATION_LOG_FORMAT="json",
        ROTATION_LOG_LEVEL="INFO",
    )
    settings.update(overrides)
    return settings


@pytest.fixture(scope="module")
def worker(local_azure: dict[str, Any]) -> Iterator[WorkerHost]:
    """The real worker library, indexed and loaded with the sample settings on local Azure's storage."""
    with WorkerHost(local_settings(local_azure)) as host:
        yield host
