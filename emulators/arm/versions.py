"""The api-versions each resource provider of the emulator accepts."""

from __future__ import annotations

import re

STORAGE = (
    "2023-01-01",
    "2023-04-01",
    "2023-05-01",
    "2024-01-01",
    "2025-01-01",
    "2025-06-01",
    "2026-09-01",  # azure-mgmt-storage 25.3.0's default
)
ML_LEGACY = "2020-08-01"  # azure-mgmt-machinelearningservices 1.0.1: cannot express a CMK key update
ML = (ML_LEGACY, "2024-04-01", "2024-10-01", "2025-01-01-preview", "2025-06-01", "2025-12-01")
RESOURCES = (
    "2019-10-01",
    "2020-06-01",
    "2020-10-01",
    "2021-01-01",
    "2021-04-01",
    "2022-09-01",
    "2023-07-01",
    "2024-03-01",
    "2024-07-01",
    "2024-11-01",
    "2025-01-01",
    "2025-03-01",
    "2025-04-01",
)
# azure-mgmt-containerregistry 15.0.0's default is 2025-11-01.
CONTAINER_REGISTRY = ("2023-07-01", "2025-04-01", "2025-11-01")
# Disk RP versions; azure-mgmt-compute 39.0.0 sends 2026-03-02 for disk encryption sets.
DISK = ("2022-07-02", "2023-04-02", "2024-03-02", "2025-01-02", "2026-03-02")
# azure-mgmt-resourcegraph 8.0.1 sends 2021-03-01; 2024-04-01 is the newest stable in the specs.
RESOURCE_GRAPH = ("2021-03-01", "2024-04-01")
KEYVAULT = ("2022-07-01", "2023-02-01", "2023-07-01", "2024-11-01")

_WELL_FORMED = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview|-alpha|-beta|-privatepreview)?$")


def well_formed(api_version: str) -> bool:
    return bool(_WELL_FORMED.match(api_version))
