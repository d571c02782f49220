"""Key material and the cryptographic operations of the Key Vault keys API, with ``cryptography``.

RSA-OAEP-256 uses SHA-256 for both the OAEP hash and MGF1, as Key Vault does. A128KW/A192KW/A256KW are
AES key wrap (RFC 3394) with an ``oct``/``oct-HSM`` key. Sign and verify take a digest, as the REST API does.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from emulators.keyvault.errors import bad_parameter

RSA_TYPES = ("RSA", "RSA-HSM")
EC_TYPES = ("EC", "EC-HSM")
OCT_TYPES = ("oct", "oct-HSM")
KEY_TYPES = RSA_TYPES + EC_TYPES + OCT_TYPES
RSA_SIZES = (2048, 3072, 4096)
OCT_SIZES = (128, 192, 256)
CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
    "P-256K": ec.SECP256K1(),
}
KEY_OPS = ("encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey", "import", "export")
DEFAULT_OPS = {
    "RSA": ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"],
    "EC": ["sign", "verify"],
    "oct": ["encrypt", "decrypt", "wrapKey", "unwrapKey"],
}
RSA_ENCRYPTION = ("RSA-OAEP", "RSA-OAEP-256", "RSA1_5")
AES_KW = {"A128KW": 128, "A192KW": 192, "A256KW": 256}
AES_GCM = {"A128GCM": 128, "A192GCM": 192, "A256GCM": 256}
ENCRYPTION_ALGORITHMS = (
    *RSA_ENCRYPTION,
    *AES_GCM,
    *AES_KW,
    "A128CBC",
    "A192CBC",
    "A256CBC",
    "A128CBCPAD",
    "A192CBCPAD",
    "A256CBCPAD",
    "CKM_AES_KEY_WRAP",
    "CKM_AES_KEY_WRAP_PAD",
)
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
SIGNATURE_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "ES256K")
_EC_SIGN_CURVE = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521", "ES256K": "P-256K"}
_B64 = re.compile(r"^[A-Za-z0-9_\-+/]*={0,2}$")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(value: object, field: str = "value") -> bytes:
    """Decode base64url (the service also accepts the standard alphabet); anything else is BadParameter."""
    if not isinstance(value, str) or not _B64.match(value):
        raise bad_parameter(f"The parameter '{field}' is not a valid base64url string.")
    text = value.rstrip("=").replace("+", "-").replace("/", "_")
    if len(text) % 4 == 1:
        raise bad_parameter(f"The parameter '{field}' is not a valid base64url string.")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise bad_parameter(f"The parameter '{field}' is not a valid base64url string.") from exc


def _int_bytes(number: int, length: int | None = None) -> bytes:
    return number.to_bytes(length or max(1, (number.bit_length() + 7) // 8), "big")


@dataclass
class KeyMaterial:
    """One version's key: its type, private part and the public JWK fields the service returns."""

    kty: str
    private: Any  # rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | bytes (oct)
    public_jwk: dict[str, str]
    _state: dict[str, str] | None = None

    @property
    def family(self) -> str:
        return "RSA" if self.kty in RSA_TYPES else "EC" if self.kty in EC_TYPES else "oct"

    @property
    def hsm(self) -> bool:
        return self.kty.endswith("-HSM")

    @property
    def size(self) -> int:
        if self.family == "RSA":
            return int(self.private.key_size)
        if self.family == "EC":
            return int(self.private.curve.key_size)
        return len(self.private) * 8

    # -- persistence --------------------------------------------------------------------------

    def to_state(self) -> dict[str, str]:
        if self._state is None:
            self._state = self._serialise()
        return self._state

    def _serialise(self) -> dict[str, str]:
        if self.family == "oct":
            raw = bytes(self.private)
        else:
            raw = self.private.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        return {"kty": self.kty, "private": base64.b64encode(raw).decode()}

    @classmethod
    def from_state(cls, state: dict[str, str]) -> KeyMaterial:
        raw = base64.b64decode(state["private"])
        kty = state["kty"]
        if kty in OCT_TYPES:
            return cls(kty, raw, {})
        private = serialization.load_der_private_key(raw, password=None)
        return cls(kty, private, _public_jwk(private))


def _public_jwk(private: Any) -> dict[str, str]:
    if isinstance(private, rsa.RSAPrivateKey):
        numbers = private.public_key().public_numbers()
        return {"n": b64url(_int_bytes(numbers.n)), "e": b64url(_int_bytes(numbers.e))}
    if isinstance(private, ec.EllipticCurvePrivateKey):
        point = private.public_key().public_numbers()
        length = (private.curve.key_size + 7) // 8
        crv = next(name for name, curve in CURVES.items() if curve.name == private.curve.name)
        return {"crv": crv, "x": b64url(_int_bytes(point.x, length)), "y": b64url(_int_bytes(point.y, length))}
    raise TypeError(type(private))


def generate(kty: str, key_size: int | None, curve: str | None, public_exponent: int | None) -> KeyMaterial:
    """Generate key material; parameters are validated by the caller. CPU-heavy for RSA: run off the loop."""
    if kty in RSA_TYPES:
        private = rsa.generate_private_key(public_exponent or 65537, key_size or 2048)
        return KeyMaterial(kty, private, _public_jwk(private))
    if kty in EC_TYPES:
        private_ec = ec.generate_private_key(CURVES[curve or "P-256"])
        return KeyMaterial(kty, private_ec, _public_jwk(private_ec))
    return KeyMaterial(kty, os.urandom((key_size or 256) // 8), {})


def import_jwk(jwk: object, hsm: bool) -> KeyMaterial:
    """Key material from a private JWK (RSA n/e/d[/p/q/dp/dq/qi], EC crv/x/y/d, oct k); BadParameter otherwise."""
    if not isinstance(jwk, dict):
        raise bad_parameter("The parameter 'key' must be a JSON Web Key object.")
    kty = jwk.get("kty")
    if kty not in KEY_TYPES:
        raise bad_parameter(f"The value of the parameter 'kty' is invalid: {kty!r}.")
    family = "RSA" if kty in RSA_TYPES else "EC" if kty in EC_TYPES else "oct"
    final_kty = f"{family}-HSM" if hsm or kty.endswith("-HSM") else family
    try:
        if family == "oct":
            raw = unb64url(jwk.get("k"), "k")
            if len(raw) * 8 not in OCT_SIZES:
                raise bad_parameter("An oct key must be 128, 192 or 256 bits.")
            return KeyMaterial(final_kty, raw, {})
        if family == "EC":
            curve = CURVES.get(str(jwk.get("crv")))
            if curve is None:
                raise bad_parameter(f"The value of the parameter 'crv' is invalid: {jwk.get('crv')!r}.")
            private_ec = ec.derive_private_key(int.from_bytes(unb64url(jwk.get("d"), "d"), "big"), curve)
            material = KeyMaterial(final_kty, private_ec, _public_jwk(private_ec))
            if "x" in jwk and unb64url(jwk["x"], "x").lstrip(b"\0") != unb64url(material.public_jwk["x"]).lstrip(b"\0"):
                raise bad_parameter("The EC public point does not match the private key.")
            return material
        n, e, d = (int.from_bytes(unb64url(jwk.get(f), f), "big") for f in ("n", "e", "d"))
        if all(jwk.get(f) for f in ("p", "q", "dp", "dq", "qi")):
            p_, q_, dp, dq, qi = (int.from_bytes(unb64url(jwk[f], f), "big") for f in ("p", "q", "dp", "dq", "qi"))
        else:
            p_, q_ = rsa.rsa_recover_prime_factors(n, e, d)
            dp, dq, qi = rsa.rsa_crt_dmp1(d, p_), rsa.rsa_crt_dmq1(d, q_), rsa.rsa_crt_iqmp(p_, q_)
        private = rsa.RSAPrivateNumbers(p_, q_, d, dp, dq, qi, rsa.RSAPublicNumbers(e, n)).private_key()
    except ValueError as exc:  # cryptography's verdict on inconsistent numbers
        raise bad_parameter("The key material is not a valid private key.") from exc
    if private.key_size not in RSA_SIZES:
        raise bad_parameter(f"Invalid key size {private.key_size} for RSA keys; use 2048, 3072 or 4096.")
    return KeyMaterial(final_kty, private, _public_jwk(private))


def _rsa_padding(alg: str) -> padding.AsymmetricPadding:
    if alg == "RSA1_5":
        return padding.PKCS1v15()
    digest: hashes.HashAlgorithm = hashes.SHA256() if alg == "RSA-OAEP-256" else hashes.SHA1()  # noqa: S303 - RSA-OAEP is SHA-1 by definition
    return padding.OAEP(mgf=padding.MGF1(digest), algorithm=digest, label=None)


def _check_alg(alg: object, allowed: tuple[str, ...] | dict[str, int]) -> str:
    if not isinstance(alg, str) or not alg:
        raise bad_parameter("The parameter 'alg' is required.")
    if alg not in ENCRYPTION_ALGORITHMS and alg not in SIGNATURE_ALGORITHMS:
        raise bad_parameter(f"Invalid algorithm: '{alg}'.")
    if alg not in allowed:
        raise bad_parameter(f"Algorithm '{alg}' is not supported for this key type.")
    return alg


def encrypt(material: KeyMaterial, alg: object, plaintext: bytes, params: dict[str, Any]) -> dict[str, str]:
    """encrypt / wrapKey. Returns the result fields other than ``kid``."""
    if material.family == "RSA":
        name = _check_alg(alg, RSA_ENCRYPTION)
        try:
            return {"value": b64url(material.private.public_key().encrypt(plaintext, _rsa_padding(name)))}
        except ValueError as exc:
            raise bad_parameter("The plaintext is too long for the key and algorithm.") from exc
    if material.family == "oct":
        name = _check_alg(alg, {**AES_KW, **AES_GCM})
        _check_aes_size(material, name)
        if name in AES_KW:
            if len(plaintext) < 16 or len(plaintext) % 8:
                raise bad_parameter("Key wrap input must be a multiple of 8 bytes and at least 16 bytes.")
            return {"value": b64url(aes_key_wrap(material.private, plaintext))}
        iv = unb64url(params["iv"], "iv") if params.get("iv") else os.urandom(12)
        aad = unb64url(params["aad"], "aad") if params.get("aad") else None
        sealed = AESGCM(material.private).encrypt(iv, plaintext, aad)
        result = {"value": b64url(sealed[:-16]), "iv": b64url(iv), "tag": b64url(sealed[-16:])}
        if aad is not None:
            result["aad"] = b64url(aad)
        return result
    raise bad_parameter("Encryption is not supported for EC keys.")


def decrypt(material: KeyMaterial, alg: object, ciphertext: bytes, params: dict[str, Any]) -> dict[str, str]:
    """decrypt / unwrapKey."""
    if material.family == "RSA":
        name = _check_alg(alg, RSA_ENCRYPTION)
        try:
            return {"value": b64url(material.private.decrypt(ciphertext, _rsa_padding(name)))}
        except ValueError as exc:
            raise bad_parameter("The ciphertext could not be decrypted with this key and algorithm.") from exc
    if material.family == "oct":
        name = _check_alg(alg, {**AES_KW, **AES_GCM})
        _check_aes_size(material, name)
        try:
            if name in AES_KW:
                return {"value": b64url(aes_key_unwrap(material.private, ciphertext))}
            iv = unb64url(params.get("iv"), "iv")
            tag = unb64url(params.get("tag"), "tag")
            aad = unb64url(params["aad"], "aad") if params.get("aad") else None
            return {"value": b64url(AESGCM(material.private).decrypt(iv, ciphertext + tag, aad))}
        except (InvalidUnwrap, InvalidTag, ValueError) as exc:
            raise bad_parameter("The ciphertext could not be decrypted with this key and algorithm.") from exc
    raise bad_parameter("Decryption is not supported for EC keys.")


def _check_aes_size(material: KeyMaterial, alg: str) -> None:
    bits = AES_KW.get(alg) or AES_GCM.get(alg)
    if bits != material.size:
        raise bad_parameter(f"Algorithm '{alg}' requires a {bits}-bit key; this key has {material.size} bits.")


def _sign_params(material: KeyMaterial, alg: object, digest: bytes) -> tuple[str, hashes.HashAlgorithm]:
    if material.family == "RSA":
        name = _check_alg(alg, SIGNATURE_ALGORITHMS[:6])
    elif material.family == "EC":
        name = _check_alg(alg, SIGNATURE_ALGORITHMS[6:])
        if _EC_SIGN_CURVE[name] != material.public_jwk["crv"]:
            raise bad_parameter(f"Algorithm '{name}' does not match the key's curve {material.public_jwk['crv']}.")
    else:
        raise bad_parameter("Signing is not supported for oct keys.")
    bits = "256" if name == "ES256K" else name[2:]
    algorithm = _HASHES[bits]()
    if len(digest) != algorithm.digest_size:
        raise bad_parameter(f"Invalid digest length for algorithm '{name}'.")
    return name, algorithm


def sign(material: KeyMaterial, alg: object, digest: bytes) -> bytes:
    name, algorithm = _sign_params(material, alg, digest)
    if material.family == "RSA":
        pad: padding.AsymmetricPadding = (
            padding.PKCS1v15()
            if name.startswith("RS")
            else padding.PSS(mgf=padding.MGF1(algorithm), salt_length=padding.PSS.DIGEST_LENGTH)
        )
        return bytes(material.private.sign(digest, pad, utils.Prehashed(algorithm)))
    der = material.private.sign(digest, ec.ECDSA(utils.Prehashed(algorithm)))
    r, s = utils.decode_dss_signature(der)
    length = (material.private.curve.key_size + 7) // 8
    return _int_bytes(r, length) + _int_bytes(s, length)


def verify(material: KeyMaterial, alg: object, digest: bytes, signature: bytes) -> bool:
    name, algorithm = _sign_params(material, alg, digest)
    public = material.private.public_key()
    try:
        if material.family == "RSA":
            pad: padding.AsymmetricPadding = (
                padding.PKCS1v15()
                if name.startswith("RS")
                else padding.PSS(mgf=padding.MGF1(algorithm), salt_length=padding.PSS.AUTO)
            )
            public.verify(signature, digest, pad, utils.Prehashed(algorithm))
        else:
            half = len(signature) // 2
            der = utils.encode_dss_signature(
                int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
            )
            public.verify(der, digest, ec.ECDSA(utils.Prehashed(algorithm)))
    except InvalidSignature:
        return False
    return True
