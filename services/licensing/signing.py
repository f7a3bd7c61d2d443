"""Signed licences (L3): ``<payload>.<signature>``, Ed25519, verifiable offline.

``payload`` is the unpadded base64url of a canonical JSON object; ``signature`` the
unpadded base64url Ed25519 signature of the ASCII bytes of ``payload``. Each key has
an id (a digest of its public key) so keys can be rotated: the payload names its
``key_id`` and ``/v1/public-key`` lists every key still valid. The payload is a
``LicenceClaims`` (shared.contracts.licensing); an appliance checks the signature with
the published key, offline, then reads it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.contracts.licensing import LicenceClaims, PublicKeyEntry, PublicKeys


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


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
    # A digest of the public key: computed once, every licence check names it.
    key_id: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key_id", key_id_of(self.private_key.public_key()))

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

    def sign(self, claims: LicenceClaims) -> str:
        """The licence of ``claims``, which name this signer's key: compact JSON with sorted
        keys, moments as ISO 8601 (``datetime.isoformat``), absent values as ``null``."""
        if claims.key_id != self.key_id:
            raise ValueError(f"claims naming key {claims.key_id} signed with key {self.key_id}")
        body = json.dumps(
            claims.model_dump(), default=_isoformat, separators=(",", ":"), sort_keys=True
        )
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


def _isoformat(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} has no place in a licence")
