"""Shared fixtures. A test that needs local Azure asks for ``local_azure``; it starts itself."""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulators.localazure import ALL_SERVICES, LocalAzure

TESTS = Path(__file__).resolve().parent


def _available_services() -> list[str]:
    """Every local service whose code exists in the tree."""
    return [s for s in ALL_SERVICES if s == "storage" or importlib.util.find_spec(f"emulators.{s}") is not None]


@pytest.fixture(scope="session")
def local_azure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Azurite, the Key Vault emulator and the ARM emulator, started for this test session."""
    directory = tmp_path_factory.mktemp("localazure")
    with LocalAzure(Path(directory), services=_available_services()) as local:
        yield local.endpoints


@pytest.fixture
def container(local_azure: dict[str, Any]) -> Iterator[Any]:
    """A fresh blob container in Azurite (a ``ContainerClient``), deleted afterwards."""
    from tests.integration.rewrap_helpers import new_container

    client = new_container(local_azure)
    yield client
    client.delete_container()


@pytest.fixture
def blob_proxy_admin(local_azure: dict[str, Any]) -> Iterator[Any]:
    """The blob proxy's admin client (``BlobProxyAdmin``); versioning and soft delete are off again after
    the test (they are account-wide, like Azure's), and no fault rule is left."""
    from emulators.blobproxy.admin_client import BlobProxyAdmin

    admin = BlobProxyAdmin(local_azure["storage"]["blob_proxy_admin"])
    yield admin
    admin.set_blob_service(versioning=False, soft_delete_days=None)
    admin.clear_faults()


@pytest.fixture
def storage_connection(local_azure: dict[str, Any]) -> str:
    return str(local_azure["storage"]["connection_string"])


@pytest.fixture
def table_name() -> str:
    """A fresh table name in Azurite (an audit table, for the tests that ask): nothing creates it here."""
    return f"audit{uuid.uuid4().hex[:12]}"


@pytest.fixture
def raw_table(storage_connection: str, table_name: str) -> Iterator[Any]:
    """Direct access to that table (a ``TableClient``), as someone with the storage key (an attacker) has."""
    from azure.data.tables import TableClient

    client = TableClient.from_connection_string(storage_connection, table_name)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def _isolated_bootstrap() -> Iterator[None]:
    """No test sees another test's process-wide bootstrap or settings."""
    from rotation import bootstrap

    bootstrap.override(None)
    saved = dict(os.environ)
    yield
    bootstrap.override(None)
    os.environ.clear()
    os.environ.update(saved)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test by its folder: ``-m unit``, ``-m integration``, ``-m e2e``, ``-m worker``, ``-m chaos``."""
    for item in items:
        parts = Path(str(item.fspath)).resolve().relative_to(TESTS).parts  # not the checkout's own path
        for marker in ("unit", "integration", "e2e", "worker", "chaos"):
            if marker in parts:
                item.add_marker(getattr(pytest.mark, marker))
