"""Orders' store against the real store server: a proof upload (O3) is two store commands
and reads back whole, with GridFS's indexes made once at start."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from bson import ObjectId

from services.orders.api_keys import ApiKey
from services.orders.domain import OrderLine
from services.orders.store import PROOFS_BUCKET, OrderStore
from shared.basics.errors import ErrorCode, Refused
from shared.runtime.store import DocumentStore
from tests.support.commands import CommandLog, logged_database

pytestmark = pytest.mark.integration


def _unknown(key: str) -> Refused:
    return Refused(ErrorCode.NOT_FOUND, f"no {key}")


@pytest.fixture
async def commands_and_store(mongo_url: str) -> AsyncIterator[tuple[CommandLog, OrderStore]]:
    async with logged_database(mongo_url, "orders_store") as (log, db):
        lines = DocumentStore(db["order_lines"], OrderLine, unknown=_unknown)
        keys = DocumentStore(db["api_keys"], ApiKey, unknown=_unknown)
        store = OrderStore(lines, keys, db, db["inbox"])
        await store.create_indexes()
        yield log, store


async def test_a_proof_upload_is_its_chunks_then_its_file_and_reads_back_whole(
    commands_and_store: tuple[CommandLog, OrderStore],
) -> None:
    log, store = commands_and_store
    chunks = store.db[f"{PROOFS_BUCKET}.chunks"]
    # GridFS's unique (files_id, n) index, made at start (each server names it its own way)
    assert any([index.get("unique") async for index in await chunks.list_indexes()])

    for n in range(3):  # the first upload into an empty bucket too
        log.sent.clear()
        content = bytes([n]) * (300_000 + n)  # more than one chunk
        file_id = await store.store_proof_file(
            filename=f"proof-{n}.pdf",
            content=content,
            content_type="application/pdf",
            sha256=f"digest-{n}",
            order_id=f"o{n}",
        )
        # no index check per file: the chunks, then the file document, nothing else
        assert log.sent == [
            ("insert", f"{PROOFS_BUCKET}.chunks"),
            ("insert", f"{PROOFS_BUCKET}.files"),
        ]
        stream = await store.proof_files.open_download_stream(ObjectId(file_id))
        assert await stream.read() == content
        assert stream.filename == f"proof-{n}.pdf"
        assert stream.metadata == {
            "order_id": f"o{n}",
            "sha256": f"digest-{n}",
            "content_type": "application/pdf",
        }
