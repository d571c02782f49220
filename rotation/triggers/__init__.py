"""Function triggers other than HTTP, each a ``func.Blueprint`` registered by ``function_app.py``.

Each module turns a binding payload into a typed command, calls one service function, and logs
the result. Modules must import cheaply: no SDK client at import.
"""
