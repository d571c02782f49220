"""Domain values shared by the workflow, the adapters, the triggers and the audit trail.

Plain frozen dataclasses; no I/O. Times are timezone-aware UTC ``datetime`` values.
Nothing here ever holds key material: only identifiers, attributes and counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal
from urllib.parse import urlsplit

from rotation.errors import InputError, excerpt

# -- keys ----------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class KeyRef:
    """A managed key, versionless: the vault it lives in and its name."""

    vault_url: str  # https://host[:port], no trailing slash, lower-case host
    name: str

    @property
    def uri(self) -> str:
        """The versionless key URI, e.g. ``https://kv.vault.azure.net/keys/cmk``."""
        return f"{self.vault_url}/keys/{self.name}"

    def version_uri(self, version: str) -> str:
        """The versioned key identifier (kid) of ``version``."""
        return f"{self.uri}/{version}"

    def same_key(self, other: KeyRef) -> bool:
        """Same vault and same name; Key Vault key names are case-insensitive."""
        return self.vault_url == other.vault_url and self.name.lower() == other.name.lower()

    @staticmethod
    def same_version(a: str, b: str) -> bool:
        """Whether two version ids of a key name the same version (compared case-insensitively)."""
        return a.lower() == b.lower()

    @classmethod
    def parse(cls, uri: str) -> tuple[KeyRef, str | None]:
        """Split a key URI (versioned or not) into the key and its version.

        Raises:
            InputError: ``uri`` is not an https Key Vault key URI.
        """
        parts = urlsplit(uri.strip())
        segments = [s for s in parts.path.split("/") if s]
        if parts.scheme != "https" or not parts.hostname or len(segments) not in (2, 3) or segments[0] != "keys":
            raise InputError(f"{excerpt(uri)} is not a Key Vault key URI (https://<vault>/keys/<name>[/<version>])")
        name = segments[1]
        if not name or not all(c.isalnum() or c == "-" for c in name):
            raise InputError(f"{excerpt(uri)} has a key name Key Vault does not allow")
        version = segments[2] if len(segments) == 3 else None
        if version is not None and not version.isalnum():
            raise InputError(f"{excerpt(uri)} has a malformed key version")
        netloc = parts.netloc.lower()
        if netloc.endswith(":443"):
            netloc = netloc[: -len(":443")]
        return cls(f"https://{netloc}", name), version


@dataclass(frozen=True)
class KeyVersion:
    """Attributes of one version of a key. Never the key material."""

    key: KeyRef
    version: str
    enabled: bool
    created: datetime
    updated: datetime | None = None
    not_before: datetime | None = None
    expires: datetime | None = None
    kty: str = "RSA"
    key_size: int | None = None
    key_ops: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def kid(self) -> str:
        return self.key.version_uri(self.version)


@dataclass(frozen=True)
class KeyListPage:
    """One page of a vault's key listing: each key's current attributes (``version`` empty: Key Vault lists
    the versionless id), and whether another page follows."""

    keys: tuple[KeyVersion, ...]
    more: bool


@dataclass(frozen=True)
class RotationPolicy:
    """The parts of a Key Vault rotation policy the service reads."""

    expiry_time: str | None = None  # ISO 8601 duration applied to new versions, e.g. "P90D"
    rotate_after_create: str | None = None
    rotate_before_expiry: str | None = None
    notify_before_expiry: str | None = None


@dataclass(frozen=True)
class VaultProperties:
    """The vault resource's protection settings (read through ARM)."""

    vault_url: str
    arm_id: str
    soft_delete_enabled: bool
    purge_protection_enabled: bool


# -- consumers -----------------------------------------------------------------------------------


class ConsumerKind(StrEnum):
    """The kinds registered today (``rotation.consumers``); a kind is journalled as its plain name."""

    STORAGE_ACCOUNT = "storage_account"
    ML_WORKSPACE = "ml_workspace"
    DATA_LOCATION = "data_location"


@dataclass(frozen=True)
class StorageEncryptionKept:
    """What a storage account's re-point sends back exactly as it was read: the encryption identity's fields
    (wire name, value) and each encryption service's key type (service, ``keyType``)."""

    identity: tuple[tuple[str, str], ...] = ()
    services: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class StorageAccountKey:
    """A storage account's CMK configuration as read through ARM."""

    account_id: str  # ARM id
    name: str
    vault_url: str  # keyvaulturi, normalised like KeyRef.vault_url
    key_name: str
    key_version: str  # "" when versionless (auto-update)
    current_versioned_key_id: str | None  # read-only currentVersionedKeyIdentifier
    last_key_rotation: datetime | None = None
    identity_principal_id: str | None = None
    kept: StorageEncryptionKept | None = None  # None: not known from this reading (a write reads it first)

    @property
    def versionless(self) -> bool:
        return self.key_version == ""


@dataclass(frozen=True)
class WorkspaceKey:
    """An AML workspace's CMK configuration as read through ARM."""

    workspace_id: str  # ARM id
    name: str
    key_vault_arm_id: str
    key_identifier: str  # as stored: versioned (normally) or versionless
    identity_principal_id: str | None = None
    identity_client_id: str | None = None
    provisioning_state: str = "Succeeded"  # non-terminal ("Updating") while an operation on it runs


@dataclass(frozen=True)
class Consumer:
    """Something that uses a managed key, and the version it uses."""

    kind: str  # a registered kind's name (``ConsumerKind`` for today's)
    resource_id: str  # ARM id, or the data location URL
    name: str
    pinned_version: str | None  # None when the consumer follows the latest version
    version_in_use: str | None  # the version actually in use, when known
    identity_principal_id: str | None = None


# -- triggers ------------------------------------------------------------------------------------


class TriggerKind(StrEnum):
    EVENT = "event"
    TIMER = "timer"
    HTTP = "http"
    CLI = "cli"


@dataclass(frozen=True)
class Trigger:
    """Who or what started (or resumed) a rotation; recorded in the journal and audit trail."""

    kind: TriggerKind
    event_id: str | None = None
    event_type: str | None = None  # e.g. "Microsoft.KeyVault.KeyNearExpiry"
    caller: str | None = None  # identity of an HTTP/CLI caller, when known


KeyEventType = Literal["KeyNearExpiry", "KeyExpired", "KeyNewVersionCreated"]


@dataclass(frozen=True)
class KeyVaultEvent:
    """A validated Key Vault key event (Event Grid schema or CloudEvents 1.0)."""

    event_id: str
    event_type: KeyEventType
    key: KeyRef
    version: str | None
    vault_name: str
    not_before: datetime | None
    expires: datetime | None
    event_time: datetime | None


# -- rotations -----------------------------------------------------------------------------------


class RotationStatus(StrEnum):
    """Where a rotation stands. Terminal: SUCCEEDED, RETIRED, DRY_RUN, REFUSED, FAILED, ROLLED_BACK."""

    RUNNING = "running"  # steps in progress (or interrupted: resumable)
    WAITING = "waiting"  # waiting on something external (versionless adoption, re-wrap queue)
    AWAITING_RETIREMENT = "awaiting_retirement"  # cut over; old version retires after the grace period
    RETIRED = "retired"  # old version disabled; done
    DRY_RUN = "dry_run"
    REFUSED = "refused"  # a precondition failed before any change
    FAILED = "failed"  # stopped with a reason on-call can act on
    ROLLED_BACK = "rolled_back"  # a consumer failed verification and was moved back; needs a human
    NEEDS_HUMAN = "needs_human"
    ABANDONED = "abandoned"  # on-call let it go: key released, consumers left where they were


TERMINAL_STATUSES = frozenset(
    {RotationStatus.RETIRED, RotationStatus.DRY_RUN, RotationStatus.REFUSED, RotationStatus.FAILED,
     RotationStatus.ROLLED_BACK, RotationStatus.NEEDS_HUMAN, RotationStatus.ABANDONED}
)  # fmt: skip


@dataclass(frozen=True)
class StepRecord:
    """One step of a rotation as recorded: name, outcome, timing, a log-safe detail."""

    name: str
    status: Literal["started", "succeeded", "skipped", "failed", "waiting"]
    started_at: datetime
    finished_at: datetime | None = None
    detail: str = ""

    @property
    def duration_ms(self) -> int | None:
        if self.finished_at is None:
            return None
        return int((self.finished_at - self.started_at).total_seconds() * 1000)


@dataclass(frozen=True)
class ConsumerChange:
    """What a rotation did (or would do) to one consumer."""

    kind: str  # a registered kind's name (``ConsumerKind`` for today's)
    resource_id: str
    before: str | None  # version (or "versionless") before
    after: str | None  # version after (or planned)
    status: Literal["planned", "changed", "unchanged", "tracking", "rolled_back", "failed", "adopted"]
    detail: str = ""


@dataclass(frozen=True)
class RewrapFailure:
    """A blob the re-wrap could not move, by name and reason (never its key material)."""

    location: str
    blob: str
    reason: str


@dataclass(frozen=True)
class HeldBlob:
    """A blob version, snapshot or soft-deleted blob whose data key a version of the key wraps.

    Azure writes nothing to a previous version or a snapshot (their metadata cannot be set), and a
    soft-deleted blob can be undeleted, so each keeps the version that wraps it from retiring until
    it is deleted (or expires). ``entry`` says which it is, e.g. ``version 2026-01-01T00:00:00.0000000Z``,
    ``snapshot 2026-01-01T00:00:00.0000000Z`` or ``soft-deleted``.
    """

    location: str
    blob: str
    entry: str
    key_version: str

    def label(self) -> str:
        return f"{self.location}/{self.blob} ({self.entry})"


@dataclass(frozen=True)
class RewrapSummary:
    rewrapped: int = 0
    already_current: int = 0
    skipped_deleted: int = 0
    failed: tuple[RewrapFailure, ...] = ()
    poison_messages: int = 0
    remaining_on_old_versions: int = 0
    #: Blobs of the data locations wrapped by another key (another managed key, or one the service does not
    #: manage): out of this rotation's scope, so neither re-wrapped nor failures.
    other_keys: int = 0


# -- retirement evidence -------------------------------------------------------------------------

Counts = tuple[tuple[str, int], ...]  # (version, or "unknown" / "problems", count), sorted

#: The bucket of ``DataKeys.survey`` that counts blobs wrapped by other keys. Never a key version: versions
#: are letters and digits only (``KeyRef.parse``).
SURVEY_OTHER_KEYS = "other keys"


@dataclass(frozen=True)
class BlobEvidence:
    """What the blob survey counted over the data locations: the current blobs by the key version that
    wraps them (``problems``: blobs whose metadata names no usable version of this key), the blobs wrapped
    by other keys (``other_keys``: none of this key's concern), and the blob versions, snapshots and
    soft-deleted blobs wrapped by a version of the key (the history the re-wrap cannot move).

    ``surveyed`` counts every current blob listed, other keys' included."""

    locations: int
    surveyed: int
    by_version: Counts = ()
    versions: int = 0
    snapshots: int = 0
    soft_deleted: int = 0
    history_by_version: Counts = ()
    other_keys: int = 0

    def line(self) -> str:
        by_version = ", ".join(f"{v}: {n}" for v, n in self.by_version)
        history = f"{self.versions} versions, {self.snapshots} snapshots, {self.soft_deleted} soft-deleted"
        return (
            f"{self.surveyed} blobs surveyed"
            + (f": {by_version}" if by_version else "")
            + (f"; {self.other_keys} blobs of other keys" if self.other_keys else "")
            + (f"; history on this key: {history}")
        )


@dataclass(frozen=True)
class KindEvidence:
    """One registered kind's consumers of the key, by the version each uses (``unknown``: undetermined)."""

    kind: str
    consumers: int
    by_version: Counts = ()
    blobs: BlobEvidence | None = None

    def line(self) -> str:
        if self.blobs is not None:
            return f"{self.kind} {self.consumers} ({self.blobs.line()})"
        counts = ", ".join(f"{v}: {n}" for v, n in self.by_version)
        return f"{self.kind} {self.consumers}" + (f" ({counts})" if counts else "")


@dataclass(frozen=True)
class RetirementEvidence:
    """What one retirement check relied on: when it ran, every kind it asked and what each found, and
    the references to the old version it found (none when the version was disabled). Log-safe: kinds,
    versions, counts and the references' own log-safe descriptions."""

    checked_at: datetime
    old_version: str
    kinds: tuple[KindEvidence, ...]
    references: tuple[str, ...] = ()

    def line(self) -> str:
        kinds = "; ".join(k.line() for k in self.kinds)
        return f"checked {self.checked_at.isoformat()}: {kinds}; references to the old version: {len(self.references)}"

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> RetirementEvidence:
        """Rebuild from ``jsonable`` output. Raises ValueError, KeyError or TypeError for anything else."""

        def counts(raw: object) -> Counts:
            if not isinstance(raw, list | tuple):
                raise TypeError("counts must be a list")
            return tuple((str(v), int(n)) for v, n in raw)

        def number(raw: object) -> int:
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise TypeError("a count must be a whole number")
            return raw

        def blobs(raw: object) -> BlobEvidence | None:
            if raw is None:
                return None
            if not isinstance(raw, Mapping):
                raise TypeError("blobs must be an object")
            return BlobEvidence(
                number(raw["locations"]),
                number(raw["surveyed"]),
                counts(raw.get("by_version", [])),
                number(raw.get("versions", 0)),
                number(raw.get("snapshots", 0)),
                number(raw.get("soft_deleted", 0)),
                counts(raw.get("history_by_version", [])),
                number(raw.get("other_keys", 0)),
            )

        kinds = data["kinds"]
        references = data.get("references", [])
        if not isinstance(kinds, list) or not isinstance(references, list):
            raise TypeError("kinds and references must be lists")
        return cls(
            checked_at=datetime.fromisoformat(str(data["checked_at"])),
            old_version=str(data["old_version"]),
            kinds=tuple(
                KindEvidence(
                    str(k["kind"]), number(k["consumers"]), counts(k.get("by_version", [])), blobs(k.get("blobs"))
                )
                for k in kinds
            ),
            references=tuple(str(r) for r in references),
        )


# -- audit ---------------------------------------------------------------------------------------

AuditOutcome = Literal[
    "succeeded", "dry_run", "refused", "failed", "rolled_back", "retired", "needs_human",
    "retry_requested", "abandoned", "unretired",
]  # fmt: skip


@dataclass(frozen=True)
class AuditRecord:
    """One rotation outcome as the audit trail stores it (the chain fields are added by the store)."""

    record_id: str
    rotation_id: str | None
    key_uri: str
    old_version: str | None
    new_version: str | None
    trigger: Trigger
    outcome: AuditOutcome
    reason: str
    steps: tuple[StepRecord, ...] = ()
    consumers: tuple[ConsumerChange, ...] = ()
    rewrap: RewrapSummary | None = None
    recorded_at: datetime | None = None
    #: A ``retired`` record's evidence (records before it was kept have none).
    evidence: RetirementEvidence | None = None
