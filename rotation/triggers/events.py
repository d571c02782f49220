"""Event Grid trigger ``on_key_vault_event``: Key Vault key events start, resume or adopt rotations.

Subscribe the function to the vault's system topic (Event Grid schema or CloudEvents 1.0) for
``Microsoft.KeyVault.KeyNearExpiry``, ``KeyExpired`` and ``KeyNewVersionCreated``.

What the function does with each delivery, and why it does (not) fail:

- **acted on** (a managed key in an allowed vault): ``rotation.service.handle_key_event``, which
  starts or resumes a rotation, adopts a version Key Vault's auto-rotation created, or recognises
  a duplicate delivery. One structured ``key_event_handled`` line with the outcome.
- **ignored** (secrets, certificates, other vaults, unmanaged keys): one ``key_event_ignored``
  line with the reason; the function returns normally so Event Grid does not redeliver.
- **malformed**: one ``key_event_malformed`` line naming the bad field, no side effect, and the
  function returns normally too: redelivering the same bytes for 24 hours cannot fix them.
- **may succeed later** (``TransientError``, ``SettingsError``): logged and re-raised, so the
  delivery fails and Event Grid retries on its schedule; the service is idempotent per event.
- **another rotation holds the key**, or the service refused the event's key: logged, returned.
- **any other service failure**: logged with its code and returned; the rotation's journal and
  audit record carry it and the reconciler sweeps unfinished work, so redelivery would add nothing.
"""

from __future__ import annotations

from typing import Any

import azure.functions as func

from rotation import bootstrap
from rotation.domain.events import EventScope, IgnoredEvent, MalformedEvent, describe, parse_fields
from rotation.errors import InputError, RotationError, RotationInProgress, SettingsError, TransientError
from rotation.logs import bound, get_logger

log = get_logger("rotation.triggers.events")

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions leaves __init__ unannotated


@bp.function_name("on_key_vault_event")
@bp.event_grid_trigger(arg_name="event")
def on_key_vault_event(event: func.EventGridEvent) -> None:
    """One Event Grid delivery (the Functions binding yields a ``func.CloudEvent`` for CloudEvents 1.0)."""
    handle_delivery(event)


def _fields(event: Any) -> dict[str, Any]:
    """The envelope fields of a delivery, read defensively (the binding does not validate them).

    The schema is decided by the payload, not by the binding's class: a CloudEvent carries
    ``specversion``. ``func.CloudEvent`` exists only from azure-functions 1.25, and a worker may put
    an older azure-functions first on the path (Core Tools does); naming the class would fail every
    delivery there, ignored events included.
    """
    data = event.get_json() if callable(getattr(event, "get_json", None)) else None
    if getattr(event, "specversion", None) is not None:
        return {
            "event_id": getattr(event, "id", None),
            "event_type": getattr(event, "type", None),
            "subject": getattr(event, "subject", None),
            "source": getattr(event, "source", None),
            "event_time": getattr(event, "time", None),
            "data": data,
        }
    return {
        "event_id": getattr(event, "id", None),
        "event_type": getattr(event, "event_type", None),
        "subject": getattr(event, "subject", None),
        "source": getattr(event, "topic", None),
        "event_time": getattr(event, "event_time", None),
        "data": data,
    }


def handle_delivery(event: Any) -> dict[str, Any]:
    """Parse, triage and hand one delivery to the service; return what was logged (for callers and tests).

    Raises:
        TransientError, SettingsError: the delivery should be retried by Event Grid.
    """
    from rotation import service  # noqa: PLC0415 - imported per call to keep `import function_app` fast

    deps = bootstrap.dependencies()
    scope = EventScope.from_settings(deps.settings.managed_keys, deps.settings.allowed_vaults)
    fields = _fields(event)
    record: dict[str, Any]
    try:
        parsed = parse_fields(**fields, scope=scope)
    except MalformedEvent as exc:
        record = {"outcome": "malformed", "event_id": describe(fields["event_id"], 80), "problem": exc.message}
        log.warning("key_event_malformed", **record)
        return record
    if isinstance(parsed, IgnoredEvent):
        record = {
            "outcome": "ignored",
            "event_id": parsed.event_id,
            "event_type": parsed.event_type,
            "reason": parsed.reason,
            "object_name": parsed.object_name,
            "vault": parsed.vault,
        }
        log.info("key_event_ignored", **record)
        return record

    with bound(event_id=parsed.event_id, key=parsed.key.uri, trigger="event"):
        try:
            outcome = service.handle_key_event(deps, parsed)
        except (TransientError, SettingsError) as exc:
            log.warning("key_event_retry", code=exc.code, message=exc.message, event_type=parsed.event_type)
            raise
        except RotationInProgress as exc:
            record = {"outcome": "in_progress", "rotation_id": exc.rotation_id, "event_type": parsed.event_type}
            log.info("key_event_handled", **record)
            return record
        except InputError as exc:
            record = {"outcome": "refused", "code": exc.code, "reason": exc.message}
            log.warning("key_event_refused", **record)
            return record
        except RotationError as exc:
            record = {"outcome": "failed", "code": exc.code, "reason": exc.message, "event_type": parsed.event_type}
            log.error("key_event_failed", **record)
            return record
        record = outcome.to_dict()
        log.info("key_event_handled", event_type=parsed.event_type, **record)
        return record
