"""FakeDataKeys keeps the port's contract, so workflow tests built on it mean something."""

from __future__ import annotations

from rotation.domain.model import SURVEY_OTHER_KEYS, KeyRef
from rotation.settings import DataLocation
from tests.fakes.data_keys import FakeBlob, FakeDataKeys

KEY = KeyRef("https://kv.vault.azure.net", "cmk")
LOCATION = DataLocation("https://data.blob.core.windows.net", "encrypted")


class TestFakeDataKeys:
    """Healthy blobs move to the new version; broken ones are reported and keep needing the old version;
    progress is polled, pausable and idempotent per rotation."""

    def test_rewrap_moves_healthy_blobs_and_reports_broken_ones(self) -> None:
        fake = FakeDataKeys()
        fake.put_blobs(LOCATION, KEY, "v1", 3)
        fake.put_blob(LOCATION, "broken", KEY.version_uri("v1"), problem="malformed encryptiondata")
        fake.put_blob(LOCATION, "foreign", "https://kv.vault.azure.net/keys/other/v9")
        fake.put_blob(LOCATION, "versionless", KEY.uri)

        fake.begin_rewrap("r1", KEY, "v2", [LOCATION])
        done, summary = fake.rewrap_progress("r1")

        assert done is True
        assert summary.rewrapped == 3
        assert {f.blob: f.reason for f in summary.failed} == {
            "broken": "malformed encryptiondata",
            "versionless": "KeyId names no version",
        }
        assert summary.other_keys == 1
        assert fake.blob(LOCATION, "foreign") == FakeBlob("https://kv.vault.azure.net/keys/other/v9")
        assert fake.versions_in_use(KEY, [LOCATION]) == {"v2": 3, "v1": 1}
        assert fake.survey(KEY, [LOCATION]) == {"v2": 3, "v1": 1, "": 1, SURVEY_OTHER_KEYS: 1}

    def test_paused_and_partial_progress(self) -> None:
        fake = FakeDataKeys(per_poll=2)
        fake.put_blobs(LOCATION, KEY, "v1", 5)
        fake.paused = True
        fake.begin_rewrap("r2", KEY, "v2", [LOCATION])

        paused = fake.rewrap_progress("r2")
        fake.paused = False
        first = fake.rewrap_progress("r2")
        fake.begin_rewrap("r2", KEY, "v2", [LOCATION])  # idempotent
        fake.rewrap_progress("r2")
        last = fake.rewrap_progress("r2")

        assert paused[0] is False
        assert paused[1].remaining_on_old_versions == 5
        assert first[0] is False
        assert first[1].rewrapped == 2
        assert last[0] is True
        assert last[1].rewrapped == 5

    def test_survey_and_deleted_blobs(self) -> None:
        fake = FakeDataKeys()
        fake.put_blobs(LOCATION, KEY, "v1", 2)
        fake.put_blob(LOCATION, "x", KEY.version_uri("v1"), problem="unwrap failed")
        fake.begin_rewrap("r3", KEY, "v2", [LOCATION])
        fake.delete_blob(LOCATION, "b000000")

        survey = fake.survey(KEY, [LOCATION])
        done, summary = fake.rewrap_progress("r3")

        assert survey == {"v1": 2}  # "x" cannot be unwrapped, but its KeyId names v1
        assert done is True
        assert summary.skipped_deleted == 1
        assert summary.rewrapped == 1
