"""Anthropic's Message Batches API, as the anthropic SDK calls it:
`client.messages.batches.create/retrieve/list/results/cancel/delete`. Each request's `params`
is a Messages body for any catalog model; results are JSONL, one
`{custom_id, result: {type: succeeded|errored|canceled|expired, ...}}` a line, from the
`results_url` (an absolute link from the public URL) once the batch has ended."""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tokenrelay.batches import http
from tokenrelay.batches.http import (
    authenticated,
    batch_page,
    json_body,
    jsonl,
    not_found,
    public_base,
)
from tokenrelay.batches.jobs import BatchJobs, LineSpec
from tokenrelay.batches.store import (
    CANCELLED,
    CANCELLING,
    ENDED,
    ERRORED,
    EXPIRED,
    OPEN,
    SUCCEEDED,
    Batch,
    BatchStore,
)
from tokenrelay.customers.keys import KeyStore
from tokenrelay.errors import GatewayError, invalid
from tokenrelay.frontends.anthropic.frontend import ANTHROPIC_FRONTEND

MAX_REQUESTS = 100_000  # Anthropic's own bound on requests per batch
_CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_RESULT_TYPE = {SUCCEEDED: "succeeded", ERRORED: "errored", CANCELLED: "canceled"}


def _rfc3339(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


class AnthropicBatches:
    def __init__(
        self,
        jobs: BatchJobs,
        store: BatchStore,
        keys: KeyStore,
        max_bytes: int,
        public_url: str | None,
    ) -> None:
        self.jobs = jobs
        self.store = store
        self.keys = keys
        self.max_bytes = max_bytes
        self.public_url = public_url
        self.prefix = ""

    def routes(self, prefix: str) -> list[Route]:
        self.prefix = prefix

        return http.routes(
            prefix,
            ANTHROPIC_FRONTEND,
            [
                ("POST", "/messages/batches", self.create),
                ("GET", "/messages/batches", self.list_batches),
                ("GET", "/messages/batches/{batch_id}", self.retrieve),
                ("DELETE", "/messages/batches/{batch_id}", self.delete),
                ("POST", "/messages/batches/{batch_id}/cancel", self.cancel),
                ("GET", "/messages/batches/{batch_id}/results", self.results),
            ],
        )

    def batch_object(self, b: Batch, request: Request) -> dict[str, Any]:
        c = b.counts
        ended = b.status == ENDED
        results_url = None
        if ended:
            base = public_base(request, self.public_url)
            results_url = f"{base}{self.prefix}/messages/batches/{b.id}/results"
        return {
            "id": b.id,
            "type": "message_batch",
            "processing_status": "ended"
            if ended
            else "canceling"
            if b.status == CANCELLING
            else "in_progress",
            "request_counts": {
                "processing": sum(c.get(s, 0) for s in OPEN),
                "succeeded": c.get(SUCCEEDED, 0),
                "errored": c.get(ERRORED, 0),
                "canceled": c.get(CANCELLED, 0),
                "expired": c.get(EXPIRED, 0),
            },
            "ended_at": _rfc3339(b.ended_at),
            "created_at": _rfc3339(b.created_at),
            "expires_at": _rfc3339(b.expires_at),
            "archived_at": None,
            "cancel_initiated_at": _rfc3339(b.cancelling_at),
            "results_url": results_url,
        }

    async def create(self, request: Request) -> Response:
        key = await authenticated(self.keys, request)
        body = await json_body(request, self.max_bytes)
        items = body.get("requests")
        if not isinstance(items, list) or not items:
            raise invalid("requests: a non-empty list of {custom_id, params}", "requests")
        if len(items) > MAX_REQUESTS:
            raise invalid(f"requests: at most {MAX_REQUESTS} per batch", "requests")
        specs: list[LineSpec] = []
        seen: set[str] = set()
        for i, item in enumerate(items):
            cid = item.get("custom_id") if isinstance(item, dict) else None
            params = item.get("params") if isinstance(item, dict) else None
            if not isinstance(cid, str) or not _CUSTOM_ID.fullmatch(cid):
                raise invalid(
                    f"requests.{i}.custom_id: 1 to 64 letters, digits, '_' or '-'", "custom_id"
                )
            if cid in seen:
                raise invalid(f"requests.{i}.custom_id: {cid!r} is not unique", "custom_id")
            seen.add(cid)
            if not isinstance(params, dict):
                raise invalid(f"requests.{i}.params: expected a Messages request", "params")
            specs.append(LineSpec(cid, "/v1/messages", params))
        batch = await self.jobs.create(key, "anthropic", "/v1/messages", specs)
        return JSONResponse(self.batch_object(batch, request))

    async def _batch(self, request: Request) -> Batch:
        key = await authenticated(self.keys, request)
        batch_id = request.path_params["batch_id"]
        batch = await self.store.batch(batch_id, key.account_id or key.id)
        if batch is None or batch.api != "anthropic":
            raise not_found("message batch", batch_id)
        return batch

    async def retrieve(self, request: Request) -> Response:
        return JSONResponse(self.batch_object(await self._batch(request), request))

    async def cancel(self, request: Request) -> Response:
        batch = await self._batch(request)
        cancelled = await self.jobs.cancel(batch.account_id, batch.id)
        return JSONResponse(self.batch_object(cancelled or batch, request))

    async def delete(self, request: Request) -> Response:
        batch = await self._batch(request)
        if batch.status != ENDED:
            raise GatewayError(
                "invalid_request",
                f"Batch {batch.id} is still processing: cancel it, then delete it once ended.",
                400,
            )
        await self.store.delete(batch.account_id, batch.id)
        return JSONResponse({"id": batch.id, "type": "message_batch_deleted"})

    async def list_batches(self, request: Request) -> Response:
        key = await authenticated(self.keys, request)
        account = key.account_id or key.id
        return await batch_page(
            self.store, account, "anthropic", request, lambda b: self.batch_object(b, request),
            most=1000, after="after_id", head={},
        )  # fmt: skip

    async def results(self, request: Request) -> Response:
        batch = await self._batch(request)
        if batch.status != ENDED:
            raise GatewayError(
                "invalid_request", f"Batch {batch.id} has not ended: no results yet.", 400
            )
        rows = await self.store.results(batch.id, (SUCCEEDED, ERRORED, CANCELLED, EXPIRED))
        lines = []
        for r in rows:
            result: dict[str, Any] = {"type": _RESULT_TYPE.get(r.status, "expired")}
            if r.status == SUCCEEDED:
                result["message"] = orjson.loads(r.result)
            elif r.status == ERRORED:
                result["error"] = orjson.loads(r.result)
            lines.append({"custom_id": r.custom_id, "result": result})
        return Response(jsonl(lines), media_type="application/x-jsonl")
