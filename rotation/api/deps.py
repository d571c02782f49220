"""Where the HTTP routes and the triggers get their :class:`Dependencies`.

One provider, :func:`get_dependencies`, used by every route (through FastAPI's ``Depends``, so
tests may also use ``app.dependency_overrides``) and by the Event Grid and timer triggers.
Tests and the local server replace it process-wide with :func:`override`.

Dispatch mode: in Azure a started rotation is enqueued on ``rotation-run`` and driven by the
queue trigger (queued). The local server, the demo and the CLI have no queue trigger, so they
call :func:`use_inline_dispatch` at start and rotations run in-process.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rotation.bootstrap import Bootstrap
    from rotation.service.deps import Dependencies


class _State:
    """The process-wide provider state (one per worker process)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.override: Dependencies | None = None
        self.inline = False
        self.built: tuple[Bootstrap, bool, Dependencies] | None = None


_state = _State()


def get_dependencies() -> Dependencies:
    """The dependencies for this worker process, built once from ``rotation.bootstrap.current()``.

    Raises:
        SettingsError: a setting is missing or malformed.
    """
    override = _state.override
    if override is not None:
        return override
    from rotation import bootstrap
    from rotation.service.deps import build_dependencies

    boot = bootstrap.current()
    with _state.lock:
        built = _state.built
        if built is None or built[0] is not boot or built[1] != _state.inline:
            built = (boot, _state.inline, build_dependencies(boot, inline=_state.inline))
            _state.built = built
        return built[2]


def override(dependencies: Dependencies | None) -> None:
    """Use ``dependencies`` for every route and trigger (tests, fakes); ``None`` restores the default."""
    with _state.lock:
        _state.override = dependencies


def use_inline_dispatch(inline: bool = True) -> None:
    """Run started rotations in-process (local server, demo) instead of enqueueing them."""
    with _state.lock:
        _state.inline = inline


def inline_dispatch() -> bool:
    """Whether started rotations run in-process."""
    return _state.inline
