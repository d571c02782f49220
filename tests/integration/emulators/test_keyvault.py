"""The Key Vault emulator, driven through azure-keyvault-keys (KeyClient, CryptographyClient) unmodified.

Responses are compared with Microsoft's examples from azure-rest-api-specs (``test_keyvault_samples/``).
Every test makes its own vault (a fresh listener, fresh throttle window, no role assignments).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.keys import (
    JsonWebKey,
    KeyClient,
    KeyRotationLifetimeAction,
    KeyRotationPolicy,
    KeyRotationPolicyAction,
)
from azure.keyvault.keys.crypto import (
    CryptographyClient,
    EncryptionAlgorithm,
    KeyWrapAlgorithm,
    SignatureAlgorithm,
)
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from emulators.auth import make_token
from emulators.keyvault.admin_client import AdminApiError, KeyVaultAdmin
from rotation.adapters.local_credential import LocalDevelopmentCredential
from tests.integration.vaults import key_client

SAMPLES = Path(__file__).parent / "test_keyvault_samples"
VERSION = r"[0-9a-f]{32}"


def sample(name: str) -> dict[str, Any]:
    return dict(json.loads((SAMPLES / name).read_text()))


def assert_same_shape(actual: Any, expected: Any, path: str = "$") -> None:
    """Every field of the Microsoft example is present in ``actual`` with the same JSON type."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        if path.endswith(".tags"):
            return  # a map of the caller's own names
        for name, value in expected.items():
            assert name in actual, f"{path}.{name} missing from {sorted(actual)}"
            assert_same_shape(actual[name], value, f"{path}.{name}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{path}: expected an array"
        if expected and actual:
            assert_same_shape(actual[0], expected[0], f"{path}[0]")
    elif isinstance(expected, bool):
        assert isinstance(actual, bool), f"{path}: expected a boolean, got {actual!r}"
    elif isinstance(expected, int | float):
        assert isinstance(actual, int | float), f"{path}: expected a number"
        assert not isinstance(actual, bool), f"{path}: expected a number, got a boolean"
    else:
        assert isinstance(actual, type(expected)), f"{path}: expected {type(expected).__name__}, got {actual!r}"


def int_bytes(number: int) -> bytes:
    return number.to_bytes((number.bit_length() + 7) // 8, "big")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Capture:
    """A raw_response_hook that keeps the JSON body the SDK received."""

    def __init__(self) -> None:
        self.body: Any = None
        self.status: int | None = None

    def __call__(self, response: Any) -> None:
        self.status = response.http_response.status_code
        text = response.http_response.text()
        self.body = json.loads(text) if text else None


@pytest.fixture
def make_keys(vault: dict[str, Any], ca_bundle: str) -> Callable[..., KeyClient]:
    def build(principal: str = "tester", **options: Any) -> KeyClient:
        return key_client(vault["url"], principal, ca_bundle, **options)

    return build


@pytest.fixture
def make_crypto(ca_bundle: str) -> Callable[..., CryptographyClient]:
    def build(key: Any, principal: str = "tester", **options: Any) -> CryptographyClient:
        return CryptographyClient(
            key,
            LocalDevelopmentCredential(principal),
            connection_verify=ca_bundle,
            verify_challenge_resource=False,
            **options,
        )

    return build


@pytest.fixture
def raw(vault: dict[str, Any], ca_bundle: str) -> Callable[..., requests.Response]:
    """Plain HTTPS to the vault with a bearer token, for what the SDK would never send."""
    session = requests.Session()

    def call(method: str, path: str, *, token: str | None = "tester", **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {make_token(token)}"
        # verify per call: a REQUESTS_CA_BUNDLE in the environment would override session.verify
        return session.request(method, vault["url"] + path, headers=headers, timeout=30, verify=ca_bundle, **kwargs)

    return call


def emulator_now(admin: KeyVaultAdmin) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(admin.now()), dt.UTC)


def repeat(times: int, call: Callable[[int], object]) -> None:
    for i in range(times):
        call(i)


def counters(admin: KeyVaultAdmin, vault: dict[str, Any]) -> dict[str, int]:
    return admin.counters().get(vault["name"], {})


class TestCreateAndGet:
    """Create answers like Microsoft's CreateKey example; get latest (trailing slash) and by version agree."""

    def test_create_matches_the_microsoft_example(self, keys: KeyClient) -> None:
        example = sample("CreateKey-example.7.5.json")
        parameters = example["parameters"]["parameters"]
        capture = Capture()

        key = keys.create_rsa_key(
            "CreateSoftKeyTest",
            size=parameters["key_size"],
            key_operations=parameters["key_ops"],
            tags=parameters["tags"],
            raw_response_hook=capture,
        )

        expected = example["responses"]["200"]["body"]
        assert_same_shape(capture.body, expected)
        assert capture.body["key"]["kty"] == "RSA"
        assert capture.body["key"]["e"] == expected["key"]["e"]
        assert len(b64url_decode(capture.body["key"]["n"])) == len(b64url_decode(expected["key"]["n"])) == 256
        assert capture.body["key"]["key_ops"] == expected["key"]["key_ops"]
        assert capture.body["tags"] == expected["tags"]
        assert re.fullmatch(rf"{re.escape(keys.vault_url)}/keys/CreateSoftKeyTest/{VERSION}", key.id)
        assert capture.body["attributes"]["created"] == capture.body["attributes"]["updated"]

    def test_get_latest_and_by_version(self, keys: KeyClient) -> None:
        first = keys.create_ec_key(f"k-{uuid.uuid4().hex[:6]}", curve="P-256")
        second = keys.create_ec_key(first.name, curve="P-384")
        capture = Capture()

        latest = keys.get_key(first.name, raw_response_hook=capture)
        older = keys.get_key(first.name, first.properties.version)

        assert latest.id == second.id
        assert older.id == first.id
        assert older.key.crv == "P-256"
        assert latest.key.crv == "P-384"
        example = sample("GetKey-example.7.5.json")["responses"]["200"]["body"]
        assert_same_shape(
            capture.body, {"attributes": example["attributes"], "key": {"kid": "", "kty": "", "key_ops": []}}
        )
        assert set(capture.body["key"]) == {"kid", "kty", "key_ops", "crv", "x", "y"}

    def test_names_are_case_insensitive(self, keys: KeyClient) -> None:
        created = keys.create_ec_key("MixedCase")

        found = keys.get_key("mixedcase")

        assert found.id == created.id

    def test_unknown_key_is_key_not_found(self, keys: KeyClient) -> None:
        with pytest.raises(ResourceNotFoundError) as caught:
            keys.get_key("no-such-key")

        assert caught.value.error is not None
        assert caught.value.error.code == "KeyNotFound"
        assert caught.value.error.message.startswith(
            "A key with (name/id) no-such-key was not found in this key vault."
        )

    @pytest.mark.parametrize(("kind", "size"), [("RSA-HSM", 3072), ("RSA", 4096)])
    def test_rsa_sizes_and_hsm(self, keys: KeyClient, kind: str, size: int) -> None:
        key = keys.create_rsa_key(f"r{size}", size=size, hardware_protected=kind.endswith("HSM"))

        assert key.key_type == kind
        assert len(key.key.n) == size // 8


class TestVersionPaging:
    """Versions and keys page with maxresults and an absolute nextLink, like the GetKeyVersions example."""

    def test_versions_page_through_next_link(self, keys: KeyClient) -> None:
        name = f"paged-{uuid.uuid4().hex[:6]}"
        created = [keys.create_ec_key(name).properties.version for _ in range(5)]
        capture = Capture()

        pages = list(keys.list_properties_of_key_versions(name, max_page_size=2, raw_response_hook=capture).by_page())
        versions = [item.version for page in pages for item in page]

        assert len(pages) == 3
        assert sorted(versions) == sorted(created)
        example = sample("GetKeyVersions-example.7.4.json")["responses"]["200"]["body"]
        assert_same_shape(capture.body["value"][0], example["value"][0])
        assert capture.body["nextLink"] is None  # the last page

    def test_next_link_is_absolute_with_skiptoken_and_maxresults(
        self, keys: KeyClient, raw: Callable[..., requests.Response]
    ) -> None:
        name = f"paged-{uuid.uuid4().hex[:6]}"
        for _ in range(3):
            keys.create_ec_key(name)

        first = raw("GET", f"/keys/{name}/versions?api-version=7.4&maxresults=1").json()

        link = first["nextLink"]
        assert link.startswith(f"{keys.vault_url}/keys/{name}/versions?api-version=7.4&$skiptoken=")
        assert link.endswith("&maxresults=1")
        assert len(first["value"]) == 1
        second = raw("GET", link[len(keys.vault_url) :]).json()
        assert second["value"][0]["kid"] != first["value"][0]["kid"]

    def test_list_keys_is_versionless(self, keys: KeyClient) -> None:
        names = {keys.create_ec_key(f"list-{i}").name for i in range(3)}

        listed = list(keys.list_properties_of_keys(max_page_size=1))

        assert {item.name for item in listed} == names
        assert all(item.version is None for item in listed)

    def test_maxresults_out_of_range_is_bad_parameter(self, raw: Callable[..., requests.Response]) -> None:
        response = raw("GET", "/keys?api-version=7.6&maxresults=26")

        assert response.status_code == 400
        assert response.json()["error"]["code"] == "BadParameter"


class TestUpdate:
    """PATCH changes enabled, nbf, exp, key_ops and tags of one version, as in the UpdateKey example."""

    def test_update_matches_the_microsoft_example(self, keys: KeyClient, raw: Callable[..., requests.Response]) -> None:
        example = sample("UpdateKey-example.7.6.json")
        key = keys.create_rsa_key("UpdateKeyAttributesTest")

        response = raw(
            "PATCH",
            f"/keys/{key.name}/{key.properties.version}?api-version=7.6",
            json=example["parameters"]["parameters"],
        )

        assert response.status_code == 200
        expected = example["responses"]["200"]["body"]
        body = response.json()
        assert_same_shape(body, expected)
        assert body["key"]["key_ops"] == expected["key"]["key_ops"]
        for field in ("enabled", "nbf", "exp"):
            assert body["attributes"][field] == expected["attributes"][field]

    def test_update_through_the_sdk(self, keys: KeyClient) -> None:
        key = keys.create_ec_key("tagged")
        expires = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=10)

        updated = keys.update_key_properties(key.name, key.properties.version, tags={"a": "b"}, expires_on=expires)

        assert updated.properties.tags == {"a": "b"}
        assert updated.properties.expires_on == expires
        assert updated.properties.updated_on is not None


class TestRotate:
    """Rotate makes a new version of the same type; its expiry follows the policy's expiryTime."""

    def test_rotate_without_policy(self, keys: KeyClient) -> None:
        key = keys.create_rsa_key("Key01", tags={"t": "1"})
        capture = Capture()

        rotated = keys.rotate_key("Key01", raw_response_hook=capture)

        assert rotated.properties.version != key.properties.version
        assert rotated.key_type == "RSA"
        assert rotated.properties.tags == {"t": "1"}
        assert rotated.properties.expires_on is None
        assert_same_shape(capture.body, sample("RotateKey-example.7.5.json")["responses"]["200"]["body"])

    def test_rotated_version_expires_per_policy(self, keys: KeyClient) -> None:
        key = keys.create_ec_key("expiring")
        keys.update_key_rotation_policy(
            key.name,
            KeyRotationPolicy(
                lifetime_actions=[KeyRotationLifetimeAction(KeyRotationPolicyAction.rotate, time_after_create="P90D")]
            ),
            expires_in="P2Y",
        )

        rotated = keys.rotate_key(key.name)

        assert rotated.properties.expires_on is not None
        assert rotated.properties.created_on is not None
        lifetime = rotated.properties.expires_on - rotated.properties.created_on
        assert lifetime == dt.timedelta(days=730)

    def test_rotate_unknown_key(self, keys: KeyClient) -> None:
        with pytest.raises(ResourceNotFoundError):
            keys.rotate_key("missing")


class TestRotationPolicy:
    """GET/PUT rotation policy, validated and completed as the service does."""

    def test_put_matches_the_microsoft_example(self, keys: KeyClient, raw: Callable[..., requests.Response]) -> None:
        example = sample("UpdateKeyRotationPolicy-example.2025-07-01.json")
        keys.create_ec_key("updateKey01")

        response = raw(
            "PUT",
            "/keys/updateKey01/rotationpolicy?api-version=2025-07-01",
            json=example["parameters"]["keyRotationPolicy"],
        )
        fetched = raw("GET", "/keys/updateKey01/rotationpolicy?api-version=7.6").json()

        expected = example["responses"]["200"]["body"]
        assert response.status_code == 200
        assert_same_shape(response.json(), expected)
        assert response.json()["lifetimeActions"] == expected["lifetimeActions"]
        assert response.json()["attributes"]["expiryTime"] == "P2Y"
        assert response.json()["id"] == f"{keys.vault_url}/keys/updateKey01/rotationpolicy"
        assert_same_shape(fetched, sample("GetKeyRotationPolicy-example.7.6.json")["responses"]["200"]["body"])

    def test_rotate_only_put_gets_a_default_notify(
        self, keys: KeyClient, raw: Callable[..., requests.Response]
    ) -> None:
        keys.create_ec_key("rotate-only")
        request = {
            "lifetimeActions": [{"trigger": {"timeAfterCreate": "P2M"}, "action": {"type": "Rotate"}}],
            "attributes": {},
        }

        body = raw("PUT", "/keys/rotate-only/rotationpolicy?api-version=7.6", json=request).json()

        assert body["lifetimeActions"] == [
            {"trigger": {"timeAfterCreate": "P2M"}, "action": {"type": "Rotate"}},
            {"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "Notify"}},
        ]
        assert "expiryTime" not in body["attributes"]
        assert isinstance(body["attributes"]["created"], int)

    def test_default_policy_of_a_new_key(self, keys: KeyClient) -> None:
        keys.create_ec_key("fresh")

        policy = keys.get_key_rotation_policy("fresh")

        assert [(a.action, a.time_before_expiry) for a in policy.lifetime_actions] == [
            (KeyRotationPolicyAction.notify, "P30D")
        ]

    @pytest.mark.parametrize(
        "policy",
        [
            pytest.param({"attributes": {"expiryTime": "P27D"}}, id="expiry-below-28-days"),
            pytest.param(
                {"lifetimeActions": [{"trigger": {"timeAfterCreate": "P6D"}, "action": {"type": "Rotate"}}]},
                id="rotate-below-7-days",
            ),
            pytest.param(
                {
                    "lifetimeActions": [
                        {"trigger": {"timeAfterCreate": "P30D"}, "action": {"type": "Rotate"}},
                        {"trigger": {"timeAfterCreate": "P60D"}, "action": {"type": "rotate"}},
                    ]
                },
                id="two-rotate-actions",
            ),
            pytest.param(
                {"lifetimeActions": [{"trigger": {"timeAfterCreate": "P30D"}, "action": {"type": "Notify"}}]},
                id="notify-after-create",
            ),
            pytest.param(
                {"lifetimeActions": [{"trigger": {"timeAfterCreate": "soon"}, "action": {"type": "Rotate"}}]},
                id="not-a-duration",
            ),
            pytest.param(
                {
                    "lifetimeActions": [{"trigger": {"timeAfterCreate": "P85D"}, "action": {"type": "Rotate"}}],
                    "attributes": {"expiryTime": "P90D"},
                },
                id="rotate-too-close-to-expiry",
            ),
        ],
    )
    def test_invalid_policies_are_bad_parameter(
        self, keys: KeyClient, raw: Callable[..., requests.Response], policy: dict[str, Any]
    ) -> None:
        keys.create_ec_key("policy")

        response = raw("PUT", "/keys/policy/rotationpolicy?api-version=7.6", json=policy)

        assert response.status_code == 400
        assert response.json()["error"]["code"] == "BadParameter"


class TestCrypto:
    """Real cryptography: wrapped locally with the public key, unwrapped by the emulator; AES key wrap; signing."""

    @pytest.mark.parametrize(
        "algorithm", [KeyWrapAlgorithm.rsa_oaep, KeyWrapAlgorithm.rsa_oaep_256, KeyWrapAlgorithm.rsa1_5]
    )
    def test_wrap_locally_unwrap_remotely(
        self,
        keys: KeyClient,
        make_crypto: Callable[..., CryptographyClient],
        admin: KeyVaultAdmin,
        vault: dict[str, Any],
        algorithm: KeyWrapAlgorithm,
    ) -> None:
        key = keys.create_rsa_key("kek")
        data_key = os.urandom(32)
        local = make_crypto(key)  # key material in hand: wrap happens locally

        wrapped = local.wrap_key(algorithm, data_key)
        unwrapped = make_crypto(key.id).unwrap_key(algorithm, wrapped.encrypted_key)

        assert unwrapped.key == data_key
        seen = counters(admin, vault)
        assert seen.get("wrapKey", 0) == 0
        assert seen["unwrapKey"] == 1

    def test_wrap_example_round_trips(self, keys: KeyClient, raw: Callable[..., requests.Response]) -> None:
        example = sample("wrapKey-example.2025-07-01.json")
        key = keys.create_rsa_key("sdktestkey")
        request = example["parameters"]["parameters"]

        wrapped = raw("POST", f"/keys/sdktestkey/{key.properties.version}/wrapkey?api-version=2025-07-01", json=request)
        unwrapped = raw(
            "POST",
            f"/keys/sdktestkey/{key.properties.version}/unwrapkey?api-version=2025-07-01",
            json={"alg": request["alg"], "value": wrapped.json()["value"]},
        )

        assert wrapped.status_code == 200
        assert_same_shape(wrapped.json(), example["responses"]["200"]["body"])
        assert wrapped.json()["kid"] == key.id
        assert_same_shape(unwrapped.json(), sample("unwrapKey-example.2025-06-01.json")["responses"]["200"]["body"])
        assert b64url_decode(unwrapped.json()["value"]) == b64url_decode(request["value"])

    def test_standard_base64_is_accepted_like_the_service_emits_it(
        self, keys: KeyClient, raw: Callable[..., requests.Response]
    ) -> None:
        key = keys.create_rsa_key("std64")
        path = f"/keys/std64/{key.properties.version}"
        wrapped = raw("POST", f"{path}/wrapkey?api-version=7.6", json={"alg": "RSA-OAEP", "value": "AAAA"}).json()
        standard = base64.b64encode(b64url_decode(wrapped["value"])).decode()

        response = raw("POST", f"{path}/unwrapkey?api-version=7.6", json={"alg": "RSA-OAEP", "value": standard})

        assert response.status_code == 200
        assert b64url_decode(response.json()["value"]) == b"\x00\x00\x00"

    def test_a256kw_with_an_oct_hsm_key(self, keys: KeyClient, raw: Callable[..., requests.Response]) -> None:
        # Through REST: CryptographyClient 4.11.3 builds a *local* SymmetricKey from an oct-HSM JWK that has no
        # "k" (it substitutes random bytes), so its wrap_key never reaches the service for such keys.
        key = keys.create_oct_key("aes", size=256, hardware_protected=True)
        path = f"/keys/aes/{key.properties.version}"
        data_key = os.urandom(32)

        wrapped = raw("POST", f"{path}/wrapkey?api-version=7.6", json={"alg": "A256KW", "value": b64url(data_key)})
        unwrapped = raw(
            "POST", f"{path}/unwrapkey?api-version=7.6", json={"alg": "A256KW", "value": wrapped.json()["value"]}
        )

        assert key.key_type == "oct-HSM"
        assert wrapped.status_code == 200
        assert len(b64url_decode(wrapped.json()["value"])) == 40
        assert unwrapped.status_code == 200
        assert b64url_decode(unwrapped.json()["value"]) == data_key

    def test_a256gcm_with_an_oct_hsm_key(self, keys: KeyClient, raw: Callable[..., requests.Response]) -> None:
        key = keys.create_oct_key("gcm", size=256, hardware_protected=True)
        path = f"/keys/gcm/{key.properties.version}"
        aad = b64url(b"context")

        sealed = raw(
            "POST", f"{path}/encrypt?api-version=7.6", json={"alg": "A256GCM", "value": b64url(b"hi"), "aad": aad}
        )
        body = sealed.json()
        opened = raw("POST", f"{path}/decrypt?api-version=7.6", json={"alg": "A256GCM", **body, "aad": aad})
        tampered = raw("POST", f"{path}/decrypt?api-version=7.6", json={"alg": "A256GCM", **body, "aad": b64url(b"x")})

        assert sealed.status_code == 200
        assert len(b64url_decode(body["iv"])) == 12
        assert len(b64url_decode(body["tag"])) == 16
        assert b64url_decode(opened.json()["value"]) == b"hi"
        assert tampered.status_code == 400

    def test_encrypt_decrypt(self, keys: KeyClient, make_crypto: Callable[..., CryptographyClient]) -> None:
        key = keys.create_rsa_key("enc")
        client = make_crypto(key)

        encrypted = client.encrypt(EncryptionAlgorithm.rsa_oaep_256, b"secret text")

        assert (
            make_crypto(key.id).decrypt(EncryptionAlgorithm.rsa_oaep_256, encrypted.ciphertext).plaintext
            == b"secret text"
        )

    @pytest.mark.parametrize(
        ("create", "algorithm"),
        [("rsa", SignatureAlgorithm.rs256), ("rsa", SignatureAlgorithm.ps256), ("ec", SignatureAlgorithm.es256)],
    )
    def test_sign_and_verify(
        self,
        keys: KeyClient,
        make_crypto: Callable[..., CryptographyClient],
        create: str,
        algorithm: SignatureAlgorithm,
    ) -> None:
        key = keys.create_rsa_key("signer") if create == "rsa" else keys.create_ec_key("signer", curve="P-256")
        client = make_crypto(key.id)
        digest = hashlib.sha256(b"checkpoint").digest()

        signature = client.sign(algorithm, digest).signature

        assert client.verify(algorithm, digest, signature).is_valid
        assert not client.verify(algorithm, hashlib.sha256(b"tampered").digest(), signature).is_valid

    def test_disabled_version_refuses_unwrap(
        self, keys: KeyClient, make_crypto: Callable[..., CryptographyClient]
    ) -> None:
        key = keys.create_rsa_key("to-disable")
        wrapped = make_crypto(key).wrap_key(KeyWrapAlgorithm.rsa_oaep_256, os.urandom(32))
        keys.update_key_properties(key.name, key.properties.version, enabled=False)

        with pytest.raises(HttpResponseError) as caught:
            make_crypto(key.id).unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key)

        assert caught.value.status_code == 403
        assert caught.value.error is not None
        assert caught.value.error.code == "Forbidden"
        assert caught.value.error.message == "Operation unwrapKey is not allowed on a disabled key."

    def test_expired_version_refuses_wrap_but_still_unwraps(
        self, keys: KeyClient, raw: Callable[..., requests.Response], admin: KeyVaultAdmin
    ) -> None:
        key = keys.create_rsa_key("rsa-exp")
        path = f"/keys/rsa-exp/{key.properties.version}"
        wrapped = raw("POST", f"{path}/wrapkey?api-version=7.6", json={"alg": "RSA-OAEP-256", "value": "AAAA"}).json()
        past = emulator_now(admin) - dt.timedelta(days=1)  # the shared emulator's clock may have been moved
        keys.update_key_properties(key.name, key.properties.version, expires_on=past)

        refused = raw("POST", f"{path}/wrapkey?api-version=7.6", json={"alg": "RSA-OAEP-256", "value": "AAAA"})
        unwrapped = raw(
            "POST", f"{path}/unwrapkey?api-version=7.6", json={"alg": "RSA-OAEP-256", "value": wrapped["value"]}
        )

        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "Forbidden"
        assert "expired" in refused.json()["error"]["message"]
        assert unwrapped.status_code == 200  # Key Vault never crypto-locks data: unwrap stays allowed

    def test_not_yet_valid_version_refuses_sign(
        self, keys: KeyClient, make_crypto: Callable[..., CryptographyClient], admin: KeyVaultAdmin
    ) -> None:
        future = emulator_now(admin) + dt.timedelta(days=3)
        key = keys.create_ec_key("later", not_before=future)

        with pytest.raises(HttpResponseError) as caught:
            make_crypto(key.id).sign(SignatureAlgorithm.es256, hashlib.sha256(b"x").digest())

        assert caught.value.status_code == 403


class TestImport:
    """An imported private key is used as given: data wrapped with our own public key unwraps in the vault."""

    def test_import_rsa(self, keys: KeyClient, make_crypto: Callable[..., CryptographyClient]) -> None:
        private = rsa.generate_private_key(65537, 2048)
        numbers = private.private_numbers()
        jwk = JsonWebKey(
            kty="RSA",
            key_ops=["wrapKey", "unwrapKey"],
            n=int_bytes(numbers.public_numbers.n),
            e=int_bytes(numbers.public_numbers.e),
            d=int_bytes(numbers.d),
            p=int_bytes(numbers.p),
            q=int_bytes(numbers.q),
            dp=int_bytes(numbers.dmp1),
            dq=int_bytes(numbers.dmq1),
            qi=int_bytes(numbers.iqmp),
        )
        oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
        wrapped = private.public_key().encrypt(b"k" * 32, oaep)

        imported = keys.import_key("byok", jwk, hardware_protected=True)
        unwrapped = make_crypto(imported.id).unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped)

        assert imported.key_type == "RSA-HSM"
        assert imported.key.d is None  # private parts never come back
        assert unwrapped.key == b"k" * 32

    def test_public_only_key_is_refused(self, keys: KeyClient) -> None:
        public = rsa.generate_private_key(65537, 2048).public_key().public_numbers()
        jwk = JsonWebKey(kty="RSA", n=public.n.to_bytes(256, "big"), e=public.e.to_bytes(3, "big"))

        with pytest.raises(HttpResponseError) as caught:
            keys.import_key("public-only", jwk)

        assert caught.value.status_code == 400


class TestSoftDelete:
    """Delete keeps the key recoverable; recover brings it back; purge obeys purge protection."""

    def test_delete_recover(self, keys: KeyClient) -> None:
        key = keys.create_ec_key("gone")

        deleted = keys.begin_delete_key("gone", _polling_interval=0.05).result()
        with pytest.raises(ResourceNotFoundError):
            keys.get_key("gone")
        listed = [d.name for d in keys.list_deleted_keys()]
        recovered = keys.begin_recover_deleted_key("gone", _polling_interval=0.05).result()

        assert deleted.recovery_id == f"{keys.vault_url}/deletedkeys/gone"
        assert deleted.scheduled_purge_date is not None
        assert deleted.deleted_date is not None
        assert listed == ["gone"]
        assert recovered.id == key.id
        assert keys.get_key("gone").id == key.id

    @pytest.mark.parametrize(
        ("act", "status"),
        [
            pytest.param(lambda keys, name: keys.create_ec_key(name), 409, id="reusing-the-name"),
            pytest.param(lambda keys, name: keys.purge_deleted_key(name), 403, id="purging-under-purge-protection"),
        ],
    )
    def test_a_deleted_key_is_held(self, keys: KeyClient, act: Callable[[KeyClient, str], object], status: int) -> None:
        keys.create_ec_key("held")
        keys.begin_delete_key("held", _polling_interval=0.05).wait()

        with pytest.raises(HttpResponseError) as caught:
            act(keys, "held")

        assert caught.value.status_code == status
        assert keys.get_deleted_key("held").name == "held"

    def test_purge_without_purge_protection(self, admin: KeyVaultAdmin, ca_bundle: str) -> None:
        vault = admin.create_vault(f"kv{uuid.uuid4().hex[:12]}", enable_purge_protection=False)
        keys = key_client(vault["url"], "p", ca_bundle)
        created = keys.create_ec_key("purgeable")
        keys.begin_delete_key("purgeable", _polling_interval=0.05).wait()

        keys.purge_deleted_key("purgeable")

        assert created.properties.recovery_level == "Recoverable+Purgeable"
        with pytest.raises(ResourceNotFoundError) as caught:
            keys.get_deleted_key("purgeable")
        assert caught.value.error is not None
        assert caught.value.error.message == "Deleted Key not found: purgeable"


class TestRbac:
    """With role assignments, each data action needs a role that grants it; a key scope limits it to that key."""

    def test_allow_and_deny_by_role(
        self,
        admin: KeyVaultAdmin,
        vault: dict[str, Any],
        make_keys: Callable[..., KeyClient],
        make_crypto: Callable[..., CryptographyClient],
    ) -> None:
        key = make_keys("setup").create_rsa_key("cmk")
        wrapped = make_crypto(key).wrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"k" * 32)
        admin.set_role_assignments(
            vault["name"],
            [
                {"principal_id": "officer", "role": "Key Vault Crypto Officer"},
                {"principal_id": "storage", "role": "Key Vault Crypto Service Encryption User"},
            ],
        )

        rotated = make_keys("officer").rotate_key("cmk")
        unwrapped = make_crypto(key.id, "storage").unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key)
        with pytest.raises(HttpResponseError) as denied:
            make_keys("storage").create_rsa_key("not-allowed")
        with pytest.raises(HttpResponseError) as stranger:
            make_keys("stranger").get_key("cmk")

        assert rotated.properties.version != key.properties.version
        assert unwrapped.key == b"k" * 32
        for caught in (denied, stranger):
            assert caught.value.status_code == 403
            body = caught.value.response.json()
            assert body["error"]["code"] == "Forbidden"
            assert body["error"]["innererror"] == {"code": "ForbiddenByRbac"}
            assert body["error"]["message"].startswith("Caller is not authorized to perform action on resource.\r\n")
        assert (
            "Action: 'Microsoft.KeyVault/vaults/keys/create/action'" in denied.value.response.json()["error"]["message"]
        )

    def test_key_scoped_assignment(
        self, admin: KeyVaultAdmin, vault: dict[str, Any], make_keys: Callable[..., KeyClient]
    ) -> None:
        setup = make_keys("setup")
        setup.create_ec_key("mine")
        setup.create_ec_key("theirs")
        admin.set_role_assignments(
            vault["name"], [{"principal_id": "app", "role": "Key Vault Reader", "scope": "/keys/mine"}]
        )
        app = make_keys("app")

        found = app.get_key("mine")
        with pytest.raises(HttpResponseError) as caught:
            app.get_key("theirs")

        assert found.name == "mine"
        assert caught.value.status_code == 403

    def test_no_assignments_means_everyone(self, make_keys: Callable[..., KeyClient]) -> None:
        key = make_keys("anyone").create_ec_key("open")

        assert make_keys("someone-else").get_key("open").id == key.id


class TestThrottling:
    """Over the per-vault limit the emulator answers 429 Throttled with Retry-After, surfaced by the SDK."""

    def test_429_through_the_sdk(
        self, admin: KeyVaultAdmin, vault: dict[str, Any], make_keys: Callable[..., KeyClient]
    ) -> None:
        keys = make_keys(retry_total=0)
        keys.create_ec_key("hot")
        admin.set_throttle(vault["name"], limit_per_10s=5)

        with pytest.raises(HttpResponseError) as caught:
            repeat(30, lambda _: keys.get_key("hot"))

        assert caught.value.status_code == 429
        assert int(caught.value.response.headers["Retry-After"]) >= 1
        assert caught.value.response.json() == {
            "error": {
                "code": "Throttled",
                "message": "Request was not processed because too many requests were received. "
                "Reason: VaultRequestTypeLimitReached",
            }
        }
        assert counters(admin, vault)["throttled"] >= 1

    def test_requests_are_weighted_by_key_type(
        self, admin: KeyVaultAdmin, vault: dict[str, Any], make_keys: Callable[..., KeyClient]
    ) -> None:
        keys = make_keys(retry_total=0)
        keys.create_ec_key("hsm", hardware_protected=True)  # EC-HSM: 2,000 per 10 s, so each request costs 2
        admin.set_throttle(vault["name"], limit_per_10s=4)
        attempts: list[int] = []

        def get(i: int) -> None:
            attempts.append(i)
            keys.get_key("hsm")

        with pytest.raises(HttpResponseError) as caught:
            repeat(10, get)

        assert caught.value.status_code == 429
        assert len(attempts) == 3  # two served (2 + 2 = 4), the third refused

    def test_create_limit(
        self, admin: KeyVaultAdmin, vault: dict[str, Any], make_keys: Callable[..., KeyClient]
    ) -> None:
        admin.set_throttle(vault["name"], create_limit_per_10s=2)
        keys = make_keys(retry_total=0)

        with pytest.raises(HttpResponseError) as caught:
            repeat(10, lambda i: keys.create_ec_key(f"c{i}"))

        assert caught.value.status_code == 429
        assert len(list(keys.list_properties_of_keys())) <= 2

    def test_default_limits_are_the_documented_ones(self, admin: KeyVaultAdmin, vault: dict[str, Any]) -> None:
        limits = admin.throttle()["vaults"][vault["name"]]

        assert limits == {"enabled": True, "limit_per_10s": 4000, "create_limit_per_10s": 20}


class TestFaults:
    """Injected 5xx, latency and dropped connections hit the chosen operations; the SDK's retries see them."""

    def test_status_fault_is_retried_by_the_sdk(
        self,
        admin: KeyVaultAdmin,
        vault: dict[str, Any],
        keys: KeyClient,
        make_crypto: Callable[..., CryptographyClient],
    ) -> None:
        key = keys.create_rsa_key("flaky")
        wrapped = make_crypto(key).wrap_key(KeyWrapAlgorithm.rsa_oaep, b"d" * 32)
        admin.set_faults(
            {
                "rate": 1.0,
                "kind": "status",
                "status": 503,
                "operations": ["unwrapKey"],
                "count": 1,
                "vault": vault["name"],
            }
        )

        result = make_crypto(key.id, retry_backoff_factor=0.01).unwrap_key(
            KeyWrapAlgorithm.rsa_oaep, wrapped.encrypted_key
        )

        assert result.key == b"d" * 32
        seen = counters(admin, vault)
        assert seen["faults"] == 1  # the injected 503, counted apart from the operation
        assert seen["unwrapKey"] == 1  # the SDK's retry, served

    def test_dropped_connection_is_retried(self, admin: KeyVaultAdmin, vault: dict[str, Any], keys: KeyClient) -> None:
        keys.create_ec_key("dropped")
        admin.set_faults({"rate": 1.0, "kind": "drop", "operations": ["getKey"], "count": 1, "vault": vault["name"]})

        found = keys.get_key("dropped", retry_backoff_factor=0.01)

        assert found.name == "dropped"
        assert counters(admin, vault)["faults"] == 1

    def test_latency(self, admin: KeyVaultAdmin, vault: dict[str, Any], keys: KeyClient) -> None:
        keys.create_ec_key("slow")
        admin.set_faults(
            {"rate": 1.0, "kind": "latency", "latency_ms": 300, "operations": ["getKey"], "vault": vault["name"]}
        )

        began = time.perf_counter()
        keys.get_key("slow")
        elapsed = time.perf_counter() - began
        admin.clear_faults()

        assert elapsed >= 0.3


class TestProtocolErrors:
    """Bad input gets the real error shape (never a 500 or a stack trace) and the emulator keeps serving."""

    def test_challenge(self, raw: Callable[..., requests.Response]) -> None:
        response = raw("GET", "/keys?api-version=7.6", token=None)

        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith('Bearer authorization="https://')
        assert response.headers["WWW-Authenticate"].endswith('resource="https://vault.azure.net"')
        assert response.json() == {
            "error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}
        }

    @pytest.mark.parametrize(
        "header",
        [
            "Bearer not-a-jwt",
            "Basic dXNlcjpwYXNz",
            "Bearer " + make_token("x", audience="https://management.azure.com"),
            "Bearer e30.eyJhdWQiOiJodHRwczovL3ZhdWx0LmF6dXJlLm5ldCJ9.x",  # no oid
        ],
    )
    def test_unusable_tokens_are_401(self, raw: Callable[..., requests.Response], header: str) -> None:
        response = raw("GET", "/keys?api-version=7.6", token=None, headers={"Authorization": header})

        assert response.status_code == 401
        assert "WWW-Authenticate" in response.headers
        assert response.json()["error"]["code"] == "Unauthorized"

    def test_token_for_another_audience(self, raw: Callable[..., requests.Response]) -> None:
        token = make_token("x", audience="https://management.azure.com")

        response = raw("GET", "/keys?api-version=7.6", token=None, headers={"Authorization": f"Bearer {token}"})

        assert response.status_code == 401
        assert response.json()["error"]["message"] == (
            "AKV10022: Invalid audience. Expected https://vault.azure.net, found: https://management.azure.com."
        )

    @pytest.mark.parametrize(
        ("method", "path", "kwargs", "message"),
        [
            ("GET", "/keys?api-version=7.3", {}, "The specified version (7.3) is not recognized."),
            ("GET", "/keys", {}, "api-version"),
            ("POST", "/keys/k/create?api-version=7.6", {"data": b"{not json"}, "not valid JSON"),
            ("POST", "/keys/k/create?api-version=7.6", {"json": {"kty": "DSA"}}, "kty"),
            ("POST", "/keys/bad_name/create?api-version=7.6", {"json": {"kty": "EC"}}, "name"),
            ("POST", "/keys/k/create?api-version=7.6", {"json": {"kty": "RSA", "key_size": 1024}}, "key size"),
            ("POST", "/keys/k/create?api-version=7.6", {"data": b"[" * (2 * 1024 * 1024)}, "larger than"),
        ],
    )
    def test_bad_requests(
        self, raw: Callable[..., requests.Response], method: str, path: str, kwargs: dict[str, Any], message: str
    ) -> None:
        response = raw(method, path, **kwargs)
        after = raw("GET", "/keys?api-version=7.6")

        assert response.status_code == 400
        body = response.json()
        assert set(body) == {"error"}
        assert body["error"]["code"] == "BadParameter"
        assert message in body["error"]["message"]
        assert after.status_code == 200

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            ({"alg": "RSA-OAEP", "value": "***"}, "base64url"),
            ({"alg": "ROT13", "value": "AAAA"}, "Invalid algorithm"),
            ({"alg": "A256KW", "value": "AAAA"}, "not supported for this key type"),
            ({"value": "AAAA"}, "alg"),
            ({"alg": "RSA-OAEP", "value": "AAAA"}, "could not be decrypted"),
        ],
    )
    def test_bad_crypto_requests(
        self, keys: KeyClient, raw: Callable[..., requests.Response], body: dict[str, Any], message: str
    ) -> None:
        key = keys.create_rsa_key("kek")

        response = raw("POST", f"/keys/kek/{key.properties.version}/unwrapkey?api-version=7.6", json=body)

        assert response.status_code == 400
        assert response.json()["error"]["code"] == "BadParameter"
        assert message in response.json()["error"]["message"]

    def test_unknown_path_and_method(self, raw: Callable[..., requests.Response]) -> None:
        unknown = raw("GET", "/secrets/x?api-version=7.6")
        wrong_method = raw("DELETE", "/keys?api-version=7.6")

        assert unknown.status_code == 404
        assert wrong_method.status_code == 405
        assert "error" in unknown.json()
        assert "error" in wrong_method.json()

    @pytest.mark.parametrize("api_version", ["7.4", "7.5", "7.6", "2025-07-01"])
    def test_supported_api_versions(self, make_keys: Callable[..., KeyClient], api_version: str) -> None:
        keys = make_keys(api_version=api_version)

        key = keys.create_ec_key(f"v{api_version.replace('.', '-')}")

        assert keys.get_key(key.name).id == key.id


class TestAdmin:
    """The admin API registers vaults with their ARM identity and counts requests per operation."""

    def test_vault_description(self, admin: KeyVaultAdmin) -> None:
        name = f"kv{uuid.uuid4().hex[:12]}"

        created = admin.create_vault(name, resource_group="rg-cmk", location="northeurope")

        assert created == admin.get_vault(name)
        assert created["arm_id"] == (
            f"/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-cmk"
            f"/providers/Microsoft.KeyVault/vaults/{name}"
        )
        assert re.fullmatch(r"https://127\.0\.0\.1:\d+", created["url"])
        assert created["enable_purge_protection"] is True
        assert created["soft_delete_retention_days"] == 90
        assert name in {v["name"] for v in admin.list_vaults()}

    def test_vaults_are_separate(
        self, admin: KeyVaultAdmin, vault: dict[str, Any], keys: KeyClient, ca_bundle: str
    ) -> None:
        other = admin.create_vault(f"kv{uuid.uuid4().hex[:12]}")
        other_keys = key_client(other["url"], "tester", ca_bundle)
        keys.create_ec_key("only-here")

        with pytest.raises(ResourceNotFoundError):
            other_keys.get_key("only-here")

        assert other["url"] != vault["url"]

    def test_duplicate_vault_is_conflict_and_ensure_vault_is_idempotent(
        self, admin: KeyVaultAdmin, vault: dict[str, Any]
    ) -> None:
        with pytest.raises(AdminApiError) as caught:
            admin.create_vault(vault["name"])
        again = admin.ensure_vault(vault["name"])

        assert caught.value.status == 409
        assert again == vault

    def test_counters(self, admin: KeyVaultAdmin, vault: dict[str, Any], keys: KeyClient) -> None:
        keys.create_ec_key("counted")
        keys.get_key("counted")
        keys.get_key("counted")

        seen = counters(admin, vault)

        assert seen["createKey"] == 1
        assert seen["getKey"] == 2
        assert seen["unauthorized"] == 1  # the SDK's first, bodiless challenge request
