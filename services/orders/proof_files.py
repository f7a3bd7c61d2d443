"""``proof.get`` (operations): the bytes of one uploaded proof, to review it (O4)."""

from __future__ import annotations

import base64

from bson import ObjectId

from services.orders.handlers import OrdersDeps
from shared.basics.errors import ErrorCode, Refused
from shared.contracts.operations import GetProof, ProofFile
from shared.runtime.messaging import Delivery


async def get_proof(query: GetProof, delivery: Delivery, *, deps: OrdersDeps) -> ProofFile:
    """A proof of any line, for operations only (``SENDERS``): its bytes in base64."""
    line = await deps.store.lines.load(query.order_id)
    proof = next((p for p in line.proofs if p.proof_id == query.proof_id), None)
    if proof is None:
        raise Refused(ErrorCode.NOT_FOUND, f"line {query.order_id} has no proof {query.proof_id}")
    stream = await deps.store.proof_files.open_download_stream(ObjectId(proof.file_id))
    content = await stream.read()
    return ProofFile(
        order_id=line.id,
        reseller_id=line.reseller_id,
        proof_id=proof.proof_id,
        filename=proof.filename,
        content_type=proof.content_type,
        size=proof.size,
        sha256=proof.sha256,
        uploaded_at=proof.uploaded_at,
        content_base64=base64.b64encode(content).decode(),
    )
