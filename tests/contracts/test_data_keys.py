"""The ``DataKeys`` contract: ``FakeDataKeys`` and ``BlobDataKeys`` (Azurite + the Key Vault emulator) agree.

``survey`` counts a location's blobs by version of the key, ``""`` for blobs it cannot re-wrap
(malformed or missing ``encryptiondata``) and ``SURVEY_OTHER_KEYS`` for blobs of another key (a data
location can be shared by several keys); a re-wrap moves every healthy blob on an old version to the
new one, counts those already there and those of other keys (untouched, not failures), names each bad
blob (location and name) and touches it not; ``begin_rewrap`` is idempotent per rotation; a rotation never begun reports
``(False, RewrapSummary())``; only blobs under the location's prefix are seen; a location whose
container does not exist is reported as a failure (it cannot be verified, so it blocks retirement).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from rotation.domain.model import SURVEY_OTHER_KEYS, KeyRef, RewrapSummary
from rotation.ports import DataKeys
from rotation.settings import DataLocation
from tests.contracts.conftest import BOTH, fake_or_real

PRINCIPAL = "contract-tests"


@dataclass
class Blobs:
    """A data location, a key with two versions, and the means to write blobs there as their owners do."""

    data_keys: DataKeys
    key: KeyRef
    old: str
    new: str
    location: DataLocation
    missing: DataLocation  # a location whose container does not exist
    put: Callable[[str, str], None]  # (name, version): a healthy blob wrapped by that version of ``key``
    put_foreign: Callable[[str], None]  # a healthy blob wrapped by another key
    put_malformed: Callable[[str], None]  # encryptiondata that is not JSON
    put_plain: Callable[[str], None]  # no encryptiondata at all
    put_unwrappable: Callable[[str, str], None]  # names that version of ``key``, but its data key does not unwrap


@pytest.fixture(params=BOTH)
def blobs(request: pytest.FixtureRequest) -> Iterator[Blobs]:
    yield from fake_or_real(request, fake_blobs, real_blobs)


def fake_blobs() -> Blobs:
    from tests.fakes.data_keys import FakeDataKeys

    fake = FakeDataKeys()
    location = DataLocation("https://data.blob.core.windows.net", "secure", "in/")
    key, other = (
        KeyRef("https://kv-contract.vault.azure.net", "cmk"),
        KeyRef("https://kv-contract.vault.azure.net", "x"),
    )
    old, new = uuid.uuid4().hex, uuid.uuid4().hex
    return Blobs(
        data_keys=fake,
        key=key,
        old=old,
        new=new,
        location=location,
        missing=DataLocation(location.account_url, f"gone{uuid.uuid4().hex[:8]}"),
        put=lambda name, version: fake.put_blob(location, name, key.version_uri(version)),
        put_foreign=lambda name: fake.put_blob(location, name, other.version_uri(uuid.uuid4().hex)),
        put_malformed=lambda name: fake.put_blob(location, name, None, problem="malformed encryptiondata"),
        put_plain=lambda name: fake.put_blob(location, name, None),
        put_unwrappable=lambda name, version: fake.put_blob(
            location, name, key.version_uri(version), problem="unwrap failed"
        ),
    )


def real_blobs(local_azure: dict[str, Any]) -> Iterator[Blobs]:
    from emulators.keyvault.kek import VaultKek
    from rotation.adapters.local_credential import LocalDevelopmentCredential
    from rotation.rewrap.adapter import BlobDataKeys
    from rotation.settings import HostStorageSettings, Settings
    from tests.integration.rewrap_helpers import encrypted_client, new_container
    from tests.integration.vaults import new_vault

    ca = local_azure["ca_bundle"]
    _, _, keys = new_vault(local_azure, "dk", PRINCIPAL)
    old = keys.create_rsa_key("cmk", size=2048)
    new = keys.create_rsa_key("cmk", size=2048)
    foreign = keys.create_rsa_key("other", size=2048)
    key, _ = KeyRef.parse(str(new.id))
    container = new_container(local_azure)
    location = DataLocation(container.url.rsplit("/", 1)[0], container.container_name, "in/")
    writers: dict[str, Any] = {}

    def put_wrapped(name: str, kid: str) -> None:
        if kid not in writers:
            writers[kid] = encrypted_client(container, VaultKek(kid, ca, PRINCIPAL), "2.0")
        writers[kid].upload_blob(name, os.urandom(64))

    def put_unwrappable(name: str, version: str) -> None:
        put_wrapped(name, key.version_uri(version))
        client = container.get_blob_client(name)
        doc = json.loads(client.get_blob_properties().metadata["encryptiondata"])
        doc["WrappedContentKey"]["EncryptedKey"] = "AAAA" * 86 + "AA=="  # 258 bytes no RSA-2048 key unwraps
        client.set_blob_metadata({"encryptiondata": json.dumps(doc)})

    missing = DataLocation(location.account_url, f"gone{uuid.uuid4().hex[:8]}")
    settings = Settings(  # the scope the re-wrap re-checks every run against: the key and both locations
        storage=HostStorageSettings(connection_string=local_azure["storage"]["connection_string"]),
        managed_keys=(key.uri,),
        data_locations=(location, missing),
        ca_bundle=ca,
        verify_challenge_resource=False,
    )
    adapter = BlobDataKeys(settings, LocalDevelopmentCredential(PRINCIPAL), {"connection_verify": ca}, inline=True)
    yield Blobs(
        data_keys=adapter,
        key=key,
        old=str(old.properties.version),
        new=str(new.properties.version),
        location=location,
        missing=missing,
        put=lambda name, version: put_wrapped(name, key.version_uri(version)),
        put_foreign=lambda name: put_wrapped(name, str(foreign.id)),
        put_malformed=lambda name: container.upload_blob(name, b"x", metadata={"encryptiondata": "{not json"}),
        put_plain=lambda name: container.upload_blob(name, b"plain"),
        put_unwrappable=put_unwrappable,
    )
    adapter.close()
    container.delete_container()
    keys.close()


def arrange(blobs: Blobs) -> None:
    """Three blobs on the old version, one on the new, one of another key, two it cannot read, one outside
    the prefix."""
    for i in range(3):
        blobs.put(f"in/old{i}", blobs.old)
    blobs.put("in/new0", blobs.new)
    blobs.put_foreign("in/foreign")
    blobs.put_malformed("in/malformed")
    blobs.put_plain("in/plain")
    blobs.put("out/old-elsewhere", blobs.old)


class TestSurvey:
    """Blob counts by version of the key; ``""`` counts what cannot be re-wrapped, ``SURVEY_OTHER_KEYS``
    other keys' blobs; the prefix bounds it."""

    def test_survey(self, blobs: Blobs) -> None:
        arrange(blobs)

        counts = blobs.data_keys.survey(blobs.key, [blobs.location])

        assert counts == {blobs.old: 3, blobs.new: 1, "": 2, SURVEY_OTHER_KEYS: 1}

    def test_a_blob_whose_data_key_does_not_unwrap_still_counts_on_its_version(self, blobs: Blobs) -> None:
        blobs.put("in/good", blobs.old)
        blobs.put_unwrappable("in/bad-unwrap", blobs.old)

        counts = blobs.data_keys.survey(blobs.key, [blobs.location])

        assert counts == {blobs.old: 2}


class TestRewrap:
    """Healthy blobs move to the new version; bad ones are named, untouched; repeating changes nothing."""

    def test_rewrap_moves_healthy_blobs_and_names_bad_ones(self, blobs: Blobs) -> None:
        arrange(blobs)
        rotation_id = f"rot-{uuid.uuid4().hex[:8]}"

        blobs.data_keys.begin_rewrap(rotation_id, blobs.key, blobs.new, [blobs.location])
        blobs.data_keys.begin_rewrap(rotation_id, blobs.key, blobs.new, [blobs.location])  # idempotent
        done, summary = blobs.data_keys.rewrap_progress(rotation_id)
        again = blobs.data_keys.rewrap_progress(rotation_id)

        assert done is True
        assert (summary.rewrapped, summary.already_current, summary.remaining_on_old_versions) == (3, 1, 0)
        assert summary.other_keys == 1
        assert sorted((f.location, f.blob) for f in summary.failed) == [
            (blobs.location.display, name) for name in ("in/malformed", "in/plain")
        ]
        assert all(f.reason for f in summary.failed)
        assert again == (True, summary)
        assert blobs.data_keys.survey(blobs.key, [blobs.location]) == {blobs.new: 4, "": 2, SURVEY_OTHER_KEYS: 1}

    def test_a_blob_that_fails_to_unwrap_is_named_and_keeps_the_old_version_in_use(self, blobs: Blobs) -> None:
        blobs.put("in/good", blobs.old)
        blobs.put_unwrappable("in/bad-unwrap", blobs.old)
        rotation_id = f"rot-{uuid.uuid4().hex[:8]}"

        blobs.data_keys.begin_rewrap(rotation_id, blobs.key, blobs.new, [blobs.location])
        done, summary = blobs.data_keys.rewrap_progress(rotation_id)

        assert done is True
        assert (summary.rewrapped, [f.blob for f in summary.failed]) == (1, ["in/bad-unwrap"])
        assert summary.failed[0].reason.startswith("unwrap failed")
        assert blobs.data_keys.survey(blobs.key, [blobs.location]) == {blobs.new: 1, blobs.old: 1}

    def test_a_missing_container_is_reported(self, blobs: Blobs) -> None:
        rotation_id = f"rot-{uuid.uuid4().hex[:8]}"

        blobs.data_keys.begin_rewrap(rotation_id, blobs.key, blobs.new, [blobs.missing])
        done, summary = blobs.data_keys.rewrap_progress(rotation_id)

        assert done is True
        assert [(f.location, f.blob, f.reason) for f in summary.failed] == [
            (blobs.missing.display, "", "the data location's container does not exist")
        ]
        assert blobs.data_keys.survey(blobs.key, [blobs.missing]) == {}

    def test_a_rotation_never_begun_is_not_done(self, blobs: Blobs) -> None:
        progress = blobs.data_keys.rewrap_progress(f"rot-{uuid.uuid4().hex[:8]}")

        assert progress == (False, RewrapSummary())
