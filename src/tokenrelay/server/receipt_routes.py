"""`GET /v1/receipts/{request_id}`: the signed receipt of one of the key's account's requests,
signed again from the ledger's record (signatures are deterministic: the same bytes the answer
would have carried), for clients that did not ask for it inline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tokenrelay.batches.http import answering, authenticated, not_found
from tokenrelay.billing.receipts import claims, record_from_row
from tokenrelay.frontends.chat.frontend import OPENAI_FRONTEND
from tokenrelay.store.tables import usage_records

if TYPE_CHECKING:
    from tokenrelay.gateway.relay import Relay


def receipt_routes(relay: Relay, prefix: str) -> list[Route]:
    async def receipt(request: Request) -> Response:
        key = await authenticated(relay.keys, request)
        request_id = request.path_params["request_id"]
        account = key.account_id or key.id
        billing = relay.meter.engine
        row = await _row(billing.engine, request_id, account)
        if row is None:  # settled moments ago: still in the writer's queue
            await billing.writer.flush()
            row = await _row(billing.engine, request_id, account)
        if row is None:  # unknown, or another account's: the same answer
            raise not_found("request", request_id)
        ppm = row["multiplier_ppm"] if row["multiplier_ppm"] is not None else key.multiplier_ppm
        signed = claims(record_from_row(row), ppm)
        return JSONResponse({"receipt": relay.meter.receipts.sign(signed), "claims": signed})

    return [Route(prefix + "/receipts/{request_id}", answering(OPENAI_FRONTEND, receipt))]


async def _row(engine: Any, request_id: str, account_id: str) -> dict[str, Any] | None:
    u = usage_records.c
    query = select(usage_records).where(u.request_id == request_id, u.account_id == account_id)
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    return dict(row._mapping) if row is not None else None
