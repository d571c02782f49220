"""What the re-wrap may touch, re-derived from the settings: never from a table row or a queue message.

Work rows and queue messages live in AzureWebJobsStorage, which more principals can write than can change
the app's settings. So the key, the new version and the data locations a row names are checked against
``ROTATION_MANAGED_KEYS`` and ``ROTATION_DATA_LOCATIONS`` before the re-wrap lists a container, reads a key
or unwraps anything: a forged row cannot make the service send its storage or Key Vault token to a host
the settings do not name, nor re-wrap blobs outside the configured locations.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rotation.domain.model import KeyRef
from rotation.errors import InputError, PreconditionFailed, excerpt
from rotation.settings import DataLocation, Settings


class OutOfScope(PreconditionFailed):
    """A stored re-wrap run or item names a key or data location the settings do not."""

    code = "OutOfScope"


@dataclass(frozen=True)
class RewrapScope:
    """The managed keys and the data locations, normalised."""

    keys: tuple[KeyRef, ...]
    locations: tuple[DataLocation, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> RewrapScope:
        return cls(tuple(KeyRef.parse(k)[0] for k in settings.managed_keys), settings.data_locations)

    def key(self, key_uri: str) -> KeyRef:
        """The managed key ``key_uri`` names (as configured).

        Raises:
            OutOfScope: not a key URI, or not one of ROTATION_MANAGED_KEYS.
        """
        try:
            named, _ = KeyRef.parse(key_uri)
        except InputError:
            raise OutOfScope(f"re-wrap run names {excerpt(key_uri)}, not a key URI") from None
        for managed in self.keys:
            if managed.same_key(named):
                return managed
        raise OutOfScope(f"re-wrap run names {excerpt(named.uri)}, not a managed key (ROTATION_MANAGED_KEYS)")

    def location(self, location: DataLocation) -> DataLocation:
        """``location`` as configured: the same account endpoint and container, at or under its prefix.

        Raises:
            OutOfScope: no configured location covers it.
        """
        for configured in self.locations:
            same_account = configured.account_url.rstrip("/").lower() == location.account_url.rstrip("/").lower()
            if (
                same_account
                and configured.container == location.container
                and location.prefix.startswith(configured.prefix)
            ):
                return DataLocation(configured.account_url, configured.container, location.prefix)
        raise OutOfScope(
            f"re-wrap run names {excerpt(location.display)}, not a data location (ROTATION_DATA_LOCATIONS)"
        )

    def locations_of(self, locations: Iterable[DataLocation]) -> tuple[DataLocation, ...]:
        return tuple(self.location(loc) for loc in locations)


def checked_version(version: str) -> str:
    """A key version as Key Vault writes them (letters and digits); raises OutOfScope otherwise."""
    if not version or len(version) > 64 or not version.isascii() or not version.isalnum():
        raise OutOfScope(f"re-wrap run names {excerpt(version)}, not a key version")
    return version
