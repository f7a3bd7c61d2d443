"""Signed licences (L3): ``<payload>.<signature>``, Ed25519, verifiable offline.

``payload`` is the unpadded base64url of a canonical JSON object; ``signature`` the
unpadded base64url Ed25519 signature of the ASCII bytes of ``payload``. Each key has
an id (a digest of its public key) so keys can be rotated: the payload names its
``key_id`` and ``/v1/public-key`` lists every key still valid.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.contracts.licensing import PublicKeyEntry, PublicKeys


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(key: Ed25519PublicKey) -> str:
    return "k_" + hashlib.sha256(raw_public(key)).hexdigest()[:16]


def generate_private_key_b64() -> str:
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class LicenceSigner:
    private_key: Ed25519PrivateKey
    previous_public_keys: tuple[Ed25519PublicKey, ...] = ()

    @classmethod
    def from_base64(
        cls, private_b64: str, previous_public_b64: list[str] | None = None
    ) -> LicenceSigner:
        raw = base64.b64decode(private_b64.strip())
        if len(raw) != 32:
            raise ValueError("LICENSE_SIGNING_KEY must be the base64 of a raw 32-byte Ed25519 key")
        previous = tuple(
            Ed25519PublicKey.from_public_bytes(base64.b64decode(k))
            for k in previous_public_b64 or []
        )
        return cls(Ed25519PrivateKey.from_private_bytes(raw), previous)

    @property
    def key_id(self) -> str:
        return key_id_of(self.private_key.public_key())

    def sign(self, claims: dict[str, Any]) -> str:
        body = json.dumps({**claims, "key_id": self.key_id}, separators=(",", ":"), sort_keys=True)
        payload = b64url(body.encode())
        return f"{payload}.{b64url(self.private_key.sign(payload.encode('ascii')))}"

    def public_keys(self) -> PublicKeys:
        current = self.private_key.public_key()
        keys = [current, *self.previous_public_keys]
        return PublicKeys(
            key_id=self.key_id,
            public_key=base64.b64encode(raw_public(current)).decode(),
            keys=[
                PublicKeyEntry(
                    key_id=key_id_of(k), public_key=base64.b64encode(raw_public(k)).decode()
                )
                for k in keys
            ],
        )


def verify(licence: str, public_key_b64: str) -> dict[str, Any]:
    """What an appliance does offline: check the signature, then read the claims.

    Raises ``ValueError`` on a malformed or tampered licence.
    """
    try:
        payload, signature = licence.split(".")
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64))
        key.verify(b64url_decode(signature), payload.encode("ascii"))
    except (ValueError, InvalidSignature) as exc:
        raise ValueError("licence signature does not verify") from exc
    claims: dict[str, Any] = json.loads(b64url_decode(payload))
    return claims
