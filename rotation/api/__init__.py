"""The HTTP API: one ASGI app served by the Functions host (AsgiFunctionApp) and by uvicorn locally."""
