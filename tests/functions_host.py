"""Call the Function app's functions as the host would: indexed once, invoked with real func.* objects."""

from __future__ import annotations

import asyncio
import atexit
import functools
from typing import Any

import azure.functions as func

import function_app


@functools.cache
def functions() -> dict[str, func.Function]:
    """The app's functions by name. ``get_functions()`` validates names and may run only once per app."""
    return {f.get_function_name(): f for f in function_app.app.get_functions()}


# One event loop for every invocation, as in the Functions host's worker: the ASGI app's lifespan
# starts on it once and is shut down on it at exit.
_loop = asyncio.new_event_loop()


def _shutdown_asgi() -> None:
    app = function_app.app
    if getattr(app, "startup_task_done", False):
        _loop.run_until_complete(app.middleware.notify_shutdown())
        app.startup_task_done = False  # the app's __del__ would otherwise shut down on a new loop


atexit.register(_shutdown_asgi)


def invoke(name: str, *args: Any) -> Any:
    """Call a function's user code; async functions are run to completion on the worker loop."""
    result = functions()[name].get_user_function()(*args)
    return _loop.run_until_complete(result) if asyncio.iscoroutine(result) else result


def http(
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> func.HttpResponse:
    """Send a real ``func.HttpRequest`` through the HTTP function (the ASGI app)."""
    req = func.HttpRequest(method, f"http://localhost{path}", body=body, headers=headers or {}, params=params or {})
    response: func.HttpResponse = invoke("http_app_func", req, func.Context)
    return response
