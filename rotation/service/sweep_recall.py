"""The sweep's memory across worker processes: read from ``deps.sweep_store`` at the start of a tick,
written back at its end (only the records that changed). Storage calls, not Key Vault calls.

What is read back is input: a record that does not decode, is older than the sweep trusts, or names a
key the settings do not manage in that vault is ignored with a warning (``sweep_memory_ignored``), and
the sweep treats that key as never seen (judged on its current version, its versions read again on a
catching-up tick): a lost or corrupted record costs calls, within the bound, never a decision.
Only vaults of the settings' managed keys are read. A storage failure is logged and the tick goes on
with what the process itself remembers.
"""

from __future__ import annotations

from dataclasses import replace

from rotation.domain.model import KeyRef
from rotation.domain.sweep_cost import key_id
from rotation.domain.sweep_record import SIZE_RECORD, UnusableRecord, decode_seen, decode_size, encode_seen, encode_size
from rotation.errors import RotationError
from rotation.logs import get_logger
from rotation.service.deps import Dependencies
from rotation.service.outcomes import safe_message

_log = get_logger("rotation.reconciler")

#: Per vault (lower-case URL), the records as stored when the tick began.
Stored = dict[str, dict[str, str]]


def recall(deps: Dependencies, vaults: dict[str, list[KeyRef]]) -> Stored:
    """Read each vault's stored records into ``deps.sweep_memory`` (a stored record wins unless the
    process's own is newer: another process may have listed or carried it forward since; a size's queue
    keeps only keys managed in that vault); return them as read, for :func:`keep`."""
    stored: Stored = {}
    store = deps.sweep_store
    if store is None:
        return stored
    for vault, managed in vaults.items():
        try:
            records = store.read(managed[0].vault_url)
        except RotationError as exc:
            _log.warning("sweep_memory_unavailable", vault=vault, error_code=exc.code, error=safe_message(exc))
            continue
        stored[vault] = records
        _adopt(deps, vault, {key_id(key) for key in managed}, records)
    return stored


def _adopt(deps: Dependencies, vault: str, managed: set[str], records: dict[str, str]) -> None:
    memory, now = deps.sweep_memory, deps.clock.now()
    for name, text in records.items():
        try:
            if name == SIZE_RECORD:
                size = decode_size(text, now)
                size = replace(size, pending=tuple(key for key in size.pending if key in managed))
                known_size = memory.vaults.get(vault)
                if known_size is None or size.listed_at >= known_size.listed_at:
                    memory.vaults[vault] = size
            elif name in managed:
                seen = decode_seen(text, now)
                known = memory.keys.get(name)
                if known is None or seen.seen_at >= known.seen_at:
                    memory.keys[name] = seen
            else:
                raise UnusableRecord("not a managed key of this vault")
        except UnusableRecord as exc:
            _log.warning("sweep_memory_ignored", vault=vault, record=name[:200], reason=str(exc))


def keep(deps: Dependencies, vaults: dict[str, list[KeyRef]], stored: Stored) -> None:
    """Write back each vault's size and its managed keys' version listings where they differ from ``stored``."""
    store = deps.sweep_store
    if store is None:
        return
    memory = deps.sweep_memory
    for vault, managed in vaults.items():
        records: dict[str, str] = {}
        if (size := memory.vaults.get(vault)) is not None:
            records[SIZE_RECORD] = encode_size(size)
        for key in managed:
            if (seen := memory.keys.get(key_id(key))) is not None:
                records[key_id(key)] = encode_seen(seen)
        before = stored.get(vault, {})
        changed = {name: text for name, text in records.items() if before.get(name) != text}
        if not changed:
            continue
        try:
            store.write(managed[0].vault_url, changed)
        except RotationError as exc:
            _log.warning("sweep_memory_not_saved", vault=vault, error_code=exc.code, error=safe_message(exc))
