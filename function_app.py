"""Azure Functions entry point (Python v2 programming model).

Thin by design: it binds triggers and nothing else. HTTP routes live in one ASGI app
(``rotation.api.app``); other triggers arrive as blueprints. No SDK client is built at import.
"""

from __future__ import annotations

import azure.functions as func

from rotation.api.app import create_app

app = func.AsgiFunctionApp(app=create_app(), http_auth_level=func.AuthLevel.FUNCTION)
