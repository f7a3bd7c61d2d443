"""L3: signed licences, verifiable offline with a published Ed25519 key (signing.py).

The licences are checked with the tests' offline verifier, which knows only the contract
(``tests.support.licensing.verify_offline``), never with product code."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.licensing.signing import (
    LicenceSigner,
    b64url,
    generate_private_key_b64,
    key_id_of,
    raw_public,
)
from shared.contracts.licensing import LicenceClaims
from tests.support.licensing import b64url_decode, verify_offline

CURRENT_KEY = base64.b64encode(bytes(range(32))).decode()
PREVIOUS_KEY = base64.b64encode(bytes(range(100, 132))).decode()


def claims_for(key: LicenceSigner) -> LicenceClaims:
    """Claims for an appliance on an active plan, naming the key that signs them."""
    return LicenceClaims(
        customer_email="jane@customer.example.com",
        appliance_id="xoa-1",
        edition="enterprise",
        status="active",
        reason="plan_active",
        support=True,
        order_id="ol_a",
        period_end=datetime(2026, 5, 1, tzinfo=UTC),
        grace_until=datetime(2026, 5, 8, tzinfo=UTC),
        valid_until=datetime(2026, 4, 12, 8, tzinfo=UTC),
        issued_at=datetime(2026, 3, 12, 8, tzinfo=UTC),
        key_id=key.key_id,
    )


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
    licence = signer().sign(claims_for(signer()))
    assert verify_offline(licence, published_key()) == claims_for(signer())


def test_l3_signer_refuses_claims_that_name_another_key() -> None:
    other = LicenceSigner.from_base64(PREVIOUS_KEY)
    with pytest.raises(ValueError, match="signed with key"):
        signer().sign(claims_for(other))


def test_l3_licence_is_payload_dot_signature_unpadded_base64url() -> None:
    licence = signer().sign(claims_for(signer()))
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", licence)
    _, signature = licence.split(".")
    assert len(b64url_decode(signature)) == 64


def test_l3_payload_is_json_with_the_contract_fields_and_key_id() -> None:
    licence = signer().sign(claims_for(signer()))
    payload = payload_of(licence)
    assert payload == {
        "customer_email": "jane@customer.example.com",
        "appliance_id": "xoa-1",
        "edition": "enterprise",
        "status": "active",
        "reason": "plan_active",
        "support": True,
        "order_id": "ol_a",
        "period_end": "2026-05-01T00:00:00+00:00",
        "grace_until": "2026-05-08T00:00:00+00:00",
        "valid_until": "2026-04-12T08:00:00+00:00",
        "issued_at": "2026-03-12T08:00:00+00:00",
        "key_id": signer().key_id,
    }
    assert set(payload) == set(LicenceClaims.model_fields)
    # Canonical: compact, keys sorted, so one set of claims has one payload.
    body = b64url_decode(licence.split(".")[0]).decode()
    assert body == json.dumps(payload, separators=(",", ":"), sort_keys=True)


def test_l3_absent_values_are_null_in_the_payload() -> None:
    free = claims_for(signer()).model_copy(
        update={
            "edition": "free",
            "status": "expired",
            "reason": "no_plan",
            "support": False,
            "order_id": None,
            "period_end": None,
            "grace_until": None,
            "valid_until": None,
        }
    )
    payload = payload_of(signer().sign(free))
    assert [payload[k] for k in ("order_id", "period_end", "grace_until", "valid_until")] == [
        None
    ] * 4


def test_l3_tampered_payload_fails_verify() -> None:
    licence = signer().sign(claims_for(signer()))
    payload, signature = licence.split(".")
    middle = len(payload) // 2
    swapped = "A" if payload[middle] != "A" else "B"
    tampered = payload[:middle] + swapped + payload[middle + 1 :]
    with pytest.raises(ValueError, match="does not verify"):
        verify_offline(f"{tampered}.{signature}", published_key())


def test_l3_forged_edition_fails_verify() -> None:
    licence = signer().sign(claims_for(signer()))
    _, signature = licence.split(".")
    forged = {**payload_of(licence), "edition": "premium"}
    body = json.dumps(forged, separators=(",", ":"), sort_keys=True).encode()
    with pytest.raises(ValueError, match="does not verify"):
        verify_offline(f"{b64url(body)}.{signature}", published_key())


def test_l3_signature_from_another_key_fails_verify() -> None:
    other = LicenceSigner.from_base64(PREVIOUS_KEY)
    licence = other.sign(claims_for(other))
    with pytest.raises(ValueError, match="does not verify"):
        verify_offline(licence, published_key())


@pytest.mark.parametrize("licence", ["", "no-dot", "a.b.c", "!!!.???"])
def test_l3_malformed_licence_fails_verify(licence: str) -> None:
    with pytest.raises(ValueError, match="does not verify"):
        verify_offline(licence, published_key())


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
    previous = LicenceSigner.from_base64(PREVIOUS_KEY)
    old_licence = previous.sign(claims_for(previous))
    listed = {k.key_id: k.public_key for k in signer().public_keys().keys}
    key_id = payload_of(old_licence)["key_id"]
    assert verify_offline(old_licence, listed[key_id]).edition == "enterprise"


def test_l3_signing_key_must_be_32_raw_bytes() -> None:
    with pytest.raises(ValueError, match="32-byte"):
        LicenceSigner.from_base64(base64.b64encode(b"short").decode())


def test_l3_generated_key_is_a_usable_32_byte_key() -> None:
    generated = generate_private_key_b64()
    assert len(base64.b64decode(generated)) == 32
    fresh = LicenceSigner.from_base64(generated)
    licence = fresh.sign(claims_for(fresh))
    assert verify_offline(licence, fresh.public_keys().public_key).appliance_id == "xoa-1"


def test_l3_b64url_is_unpadded_and_round_trips() -> None:
    for size in range(6):
        data = bytes(range(250, 250 + size))
        encoded = b64url(data)
        assert "=" not in encoded
        assert b64url_decode(encoded) == data
