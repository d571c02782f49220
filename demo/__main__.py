"""``make demo``: start local Azure and show the service working against it.

This grows with the project; today it starts local Azure and calls the Function app's health
route through the same ASGI app the Functions host serves.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from emulators.localazure import ALL_SERVICES, LocalAzure


def main() -> int:
    directory = Path(tempfile.mkdtemp(prefix="cmk-demo-"))
    print(f"== starting local Azure in {directory}")
    import importlib.util

    services = [s for s in ALL_SERVICES if s == "storage" or importlib.util.find_spec(f"emulators.{s}")]
    with LocalAzure(directory, services=services) as local:
        print(json.dumps({k: v for k, v in local.endpoints.items() if k != "storage"}, indent=2))
        os.environ["AzureWebJobsStorage"] = local.endpoints["storage"]["connection_string"]
        os.environ["ROTATION_LOG_FORMAT"] = "console"
        from tests.functions_host import http

        response = http("GET", "/api/health")
        print(f"== GET /api/health -> {response.status_code} {response.get_body().decode()}")
        return 0 if response.status_code == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
