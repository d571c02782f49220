"""Azure Functions entry point (Python v2 programming model).

Thin by design: it binds triggers and nothing else. HTTP routes live in one ASGI app
(``rotation.api.app``); every other trigger is a blueprint in ``rotation.triggers``. No SDK
client is built at import.
"""

from __future__ import annotations

import importlib

import azure.functions as func

from rotation.api.app import create_app

# Blueprint modules, each exposing ``bp: func.Blueprint``.
BLUEPRINTS: tuple[str, ...] = (
    "rotation.triggers.rewrap",
    "rotation.triggers.events",
    "rotation.triggers.timer",
    "rotation.triggers.runner",
)

app = func.AsgiFunctionApp(app=create_app(), http_auth_level=func.AuthLevel.FUNCTION)
for _module in BLUEPRINTS:
    app.register_functions(importlib.import_module(_module).bp)
