"""L3: signed licences, verifiable offline with a published Ed25519 key (signing.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.licensing.signing import (
    LicenceSigner,
    b64url,
    b64url_decode,
    generate_private_key_b64,
    key_id_of,
    raw_public,
    verify,
)

CURRENT_KEY = base64.b64encode(bytes(range(32))).decode()
PREVIOUS_KEY = base64.b64encode(bytes(range(100, 132))).decode()
CLAIMS: dict[str, Any] = {
    "customer_email": "jane@customer.example.com",
    "appliance_id": "xoa-1",
    "edition": "enterprise",
    "valid_until": "2026-04-12T08:00:00+00:00",
    "issued_at": "2026-03-12T08:00:00+00:00",
}


def previous_public_b64() -> str:
    key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(PREVIOUS_KEY))
    return base64.b64encode(raw_public(key.public_key())).decode()


def signer() -> LicenceSigner:
    return LicenceSigner.from_base64(CURRENT_KEY, [previous_public_b64()])


def published_key() -> str:
    return signer().public_keys().public_key


def payload_of(licence: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(b64url_decode(licence.split(".")[0]))
    return decoded


def test_l3_signed_licence_verifies_with_the_published_key() -> None:
    licence = signer().sign(CLAIMS)
    claims = verify(licence, published_key())
    assert claims == {**CLAIMS, "key_id": signer().key_id}


def test_l3_licence_is_payload_dot_signature_unpadded_base64url() -> None:
    licence = signer().sign(CLAIMS)
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", licence)
    _, signature = licence.split(".")
    assert len(b64url_decode(signature)) == 64


def test_l3_payload_is_json_with_the_contract_fields_and_key_id() -> None:
    payload = payload_of(signer().sign(CLAIMS))
    assert payload["customer_email"] == "jane@customer.example.com"
    assert payload["appliance_id"] == "xoa-1"
    assert payload["edition"] == "enterprise"
    assert payload["valid_until"] == "2026-04-12T08:00:00+00:00"
    assert payload["issued_at"] == "2026-03-12T08:00:00+00:00"
    assert payload["key_id"] == signer().key_id


def test_l3_tampered_payload_fails_verify() -> None:
    licence = signer().sign(CLAIMS)
    payload, signature = licence.split(".")
    middle = len(payload) // 2
    swapped = "A" if payload[middle] != "A" else "B"
    tampered = payload[:middle] + swapped + payload[middle + 1 :]
    with pytest.raises(ValueError, match="does not verify"):
        verify(f"{tampered}.{signature}", published_key())


def test_l3_forged_edition_fails_verify() -> None:
    licence = signer().sign(CLAIMS)
    _, signature = licence.split(".")
    forged = {**payload_of(licence), "edition": "premium"}
    body = json.dumps(forged, separators=(",", ":"), sort_keys=True).encode()
    with pytest.raises(ValueError, match="does not verify"):
        verify(f"{b64url(body)}.{signature}", published_key())


def test_l3_signature_from_another_key_fails_verify() -> None:
    other = LicenceSigner.from_base64(PREVIOUS_KEY)
    licence = other.sign(CLAIMS)
    with pytest.raises(ValueError, match="does not verify"):
        verify(licence, published_key())


@pytest.mark.parametrize("licence", ["", "no-dot", "a.b.c", "!!!.???"])
def test_l3_malformed_licence_fails_verify(licence: str) -> None:
    with pytest.raises(ValueError, match="does not verify"):
        verify(licence, published_key())


def test_l3_key_id_is_a_digest_of_the_public_key() -> None:
    current = signer()
    public = current.private_key.public_key()
    expected = "k_" + hashlib.sha256(raw_public(public)).hexdigest()[:16]
    assert current.key_id == expected
    assert key_id_of(public) == expected
    assert re.fullmatch(r"k_[0-9a-f]{16}", expected)


def test_l3_public_keys_list_the_current_and_previous_keys() -> None:
    keys = signer().public_keys()
    assert keys.algorithm == "Ed25519"
    assert keys.key_id == signer().key_id
    assert len(base64.b64decode(keys.public_key)) == 32
    assert [k.public_key for k in keys.keys] == [keys.public_key, previous_public_b64()]
    assert [k.key_id for k in keys.keys] == [
        signer().key_id,
        LicenceSigner.from_base64(PREVIOUS_KEY).key_id,
    ]


def test_l3_licence_signed_before_rotation_verifies_with_a_listed_previous_key() -> None:
    old_licence = LicenceSigner.from_base64(PREVIOUS_KEY).sign(CLAIMS)
    listed = {k.key_id: k.public_key for k in signer().public_keys().keys}
    key_id = payload_of(old_licence)["key_id"]
    assert verify(old_licence, listed[key_id])["edition"] == "enterprise"


def test_l3_signing_key_must_be_32_raw_bytes() -> None:
    with pytest.raises(ValueError, match="32-byte"):
        LicenceSigner.from_base64(base64.b64encode(b"short").decode())


def test_l3_generated_key_is_a_usable_32_byte_key() -> None:
    generated = generate_private_key_b64()
    assert len(base64.b64decode(generated)) == 32
    fresh = LicenceSigner.from_base64(generated)
    licence = fresh.sign(CLAIMS)
    assert verify(licence, fresh.public_keys().public_key)["appliance_id"] == "xoa-1"


def test_l3_b64url_is_unpadded_and_round_trips() -> None:
    for size in range(6):
        data = bytes(range(250, 250 + size))
        encoded = b64url(data)
        assert "=" not in encoded
        assert b64url_decode(encoded) == data
