"""OpenAI's Files API (purpose `batch`) and Batch API, as the openai SDK calls them:
`client.files.create/retrieve/list/delete/content`, `client.batches.create/retrieve/list/
cancel`. Each line of the input file is a Chat Completions, Responses or embeddings request
for any catalog model; the output file holds the lines that answered 200, the error file the
others, both written as OpenAI writes them when the batch ends."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from types import SimpleNamespace
from typing import Any

import orjson
from starlette.datastructures import UploadFile
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
    page,
    page_limit,
    too_large,
)
from tokenrelay.batches.jobs import BatchJobs, LineSpec
from tokenrelay.batches.store import (
    CANCELLED,
    CANCELLING,
    ENDED,
    ERRORED,
    EXPIRED,
    SUCCEEDED,
    Batch,
    BatchStore,
    line_request_id,
    now,
)
from tokenrelay.customers.keys import KeyStore
from tokenrelay.errors import GatewayError, invalid
from tokenrelay.frontends.chat.frontend import OPENAI_FRONTEND

ENDPOINTS = ("/v1/chat/completions", "/v1/responses", "/v1/embeddings")
MAX_LINES = 50_000  # OpenAI's own bound on requests per batch
# An ended batch whose output files are still missing after this had its runner stop first.
_GRACE = dt.timedelta(seconds=30)
_CUSTOM_ID = re.compile(r"[^\x00-\x1f]{1,200}")


def _ts(value: Any) -> int | None:
    return int(value.timestamp()) if value is not None else None


def file_object(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "file",
        "bytes": row.bytes,
        "created_at": _ts(row.created_at),
        "filename": row.filename,
        "purpose": row.purpose,
        "status": "processed",
        "expires_at": None,
        "status_details": None,
    }


def batch_object(b: Batch) -> dict[str, Any]:
    c = b.counts
    ended = b.status == ENDED
    cancelled = ended and b.cancelling_at is not None
    expired = ended and not cancelled and c.get(EXPIRED, 0) > 0
    status = {CANCELLING: "cancelling"}.get(b.status, "in_progress")
    if ended:
        status = "cancelled" if cancelled else "expired" if expired else "completed"
        if not b.meta.get("finalized"):  # its output files are being written
            status = "finalizing"
    return {
        "id": b.id,
        "object": "batch",
        "endpoint": b.endpoint,
        "errors": None,
        "input_file_id": b.input_file_id,
        "completion_window": "24h",
        "status": status,
        "output_file_id": b.meta.get("output_file_id"),
        "error_file_id": b.meta.get("error_file_id"),
        "created_at": _ts(b.created_at),
        "in_progress_at": _ts(b.created_at),
        "expires_at": _ts(b.expires_at),
        "finalizing_at": _ts(b.ended_at) if ended else None,
        "completed_at": _ts(b.ended_at) if status == "completed" else None,
        "failed_at": None,
        "expired_at": _ts(b.ended_at) if expired else None,
        "cancelling_at": _ts(b.cancelling_at),
        "cancelled_at": _ts(b.ended_at) if cancelled else None,
        "request_counts": {
            "total": b.total,
            "completed": c.get(SUCCEEDED, 0),
            "failed": c.get(ERRORED, 0) + c.get(EXPIRED, 0),
        },
        "metadata": b.meta.get("metadata"),
    }


def parse_input_file(content: bytes) -> list[LineSpec]:
    """The JSONL of requests: `{custom_id, method: POST, url, body}` a line (400 naming the
    line otherwise)."""
    specs: list[LineSpec] = []
    seen: set[str] = set()
    for n, raw in enumerate(content.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            item = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise invalid(f"line {n}: not valid JSON", "file") from None
        if not isinstance(item, dict):
            raise invalid(f"line {n}: expected a JSON object", "file")
        cid, url, body = item.get("custom_id"), item.get("url"), item.get("body")
        if not isinstance(cid, str) or not _CUSTOM_ID.fullmatch(cid):
            raise invalid(f"line {n}: custom_id: a string of 1 to 200 characters", "file")
        if cid in seen:
            raise invalid(f"line {n}: custom_id {cid!r} is not unique in the file", "file")
        seen.add(cid)
        if item.get("method", "POST") != "POST" or url not in ENDPOINTS:
            raise invalid(f"line {n}: expected method POST and a url of {ENDPOINTS}", "file")
        if not isinstance(body, dict):
            raise invalid(f"line {n}: body: expected a JSON object", "file")
        specs.append(LineSpec(cid, str(url), body))
        if len(specs) > MAX_LINES:
            raise invalid(f"a batch file holds at most {MAX_LINES} requests", "file")
    if not specs:
        raise invalid("the file holds no requests", "file")
    return specs


def _line_id(batch_id: str, line_no: int) -> str:
    rid = line_request_id(batch_id, line_no)
    return "batch_req_" + hashlib.sha256(rid.encode()).hexdigest()[:32]


_ENDED_WHY = {
    CANCELLED: ("batch_cancelled", "This request was not run: the batch was cancelled."),
    EXPIRED: ("batch_expired", "This request could not be run within the completion window."),
}


class OpenAIBatches:
    def __init__(self, jobs: BatchJobs, store: BatchStore, keys: KeyStore, max_bytes: int) -> None:
        self.jobs = jobs
        self.store = store
        self.keys = keys
        self.max_bytes = max_bytes
        jobs.on_end["openai"] = self.write_output

    def routes(self, prefix: str) -> list[Route]:
        return http.routes(
            prefix,
            OPENAI_FRONTEND,
            [
                ("POST", "/files", self.upload),
                ("GET", "/files", self.list_files),
                ("GET", "/files/{file_id}", self.retrieve_file),
                ("DELETE", "/files/{file_id}", self.delete_file),
                ("GET", "/files/{file_id}/content", self.file_content),
                ("POST", "/batches", self.create),
                ("GET", "/batches", self.list_batches),
                ("GET", "/batches/{batch_id}", self.retrieve),
                ("POST", "/batches/{batch_id}/cancel", self.cancel),
            ],
        )

    # ---------------------------------------------------------------- files

    async def upload(self, request: Request) -> Response:
        key = await authenticated(self.keys, request)
        declared = request.headers.get("content-length", "")
        if not declared.isdigit():
            raise GatewayError("invalid_request", "Content-Length is required for uploads.", 411)
        if int(declared) > self.max_bytes:
            raise too_large(self.max_bytes)
        form = await request.form(max_files=1, max_fields=8, max_part_size=self.max_bytes)
        try:
            purpose, upload = form.get("purpose"), form.get("file")
            if purpose != "batch":
                raise invalid("purpose: only 'batch' files are accepted here", "purpose")
            if not isinstance(upload, UploadFile):
                raise invalid("file: a file part is required", "file")
            content = await upload.read()
            filename = upload.filename or "batch.jsonl"
        finally:
            await form.close()
        parse_input_file(content)
        row = await self.store.add_file(key.account_id or key.id, "batch", filename, content)
        return JSONResponse(file_object(SimpleNamespace(**row)))

    async def list_files(self, request: Request) -> Response:
        key = await authenticated(self.keys, request)
        purpose = request.query_params.get("purpose")
        rows = await self.store.files(key.account_id or key.id, purpose, page_limit(request, 100))
        return JSONResponse(page([file_object(r) for r in rows], False, {"object": "list"}))

    async def _file(self, request: Request, *, content: bool = False) -> Any:
        key = await authenticated(self.keys, request)
        file_id = request.path_params["file_id"]
        row = await self.store.file(key.account_id or key.id, file_id, content=content)
        if row is None:
            raise not_found("file", file_id)
        return row

    async def retrieve_file(self, request: Request) -> Response:
        return JSONResponse(file_object(await self._file(request)))

    async def delete_file(self, request: Request) -> Response:
        key = await authenticated(self.keys, request)
        file_id = request.path_params["file_id"]
        if not await self.store.delete_file(key.account_id or key.id, file_id):
            raise not_found("file", file_id)
        return JSONResponse({"id": file_id, "object": "file", "deleted": True})

    async def file_content(self, request: Request) -> Response:
        row = await self._file(request, content=True)
        return Response(row.content or b"", media_type="application/octet-stream")

    # ---------------------------------------------------------------- batches

    async def create(self, request: Request) -> Response:
        key = await authenticated(self.keys, request)
        body = await json_body(request, 1024 * 1024)
        endpoint = body.get("endpoint")
        if endpoint not in ENDPOINTS:
            raise invalid(f"endpoint: expected one of {ENDPOINTS}", "endpoint")
        if body.get("completion_window") != "24h":
            raise invalid("completion_window: only '24h' is supported", "completion_window")
        metadata = body.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise invalid("metadata: expected an object of strings", "metadata")
        file_id = str(body.get("input_file_id", ""))
        row = await self.store.file(key.account_id or key.id, file_id, content=True)
        if row is None or row.purpose != "batch":
            raise not_found("file", file_id)
        specs = parse_input_file(row.content or b"")
        if any(s.endpoint != endpoint for s in specs):
            raise invalid(f"every line's url must be the batch's endpoint {endpoint}", "endpoint")
        batch = await self.jobs.create(
            key, "openai", str(endpoint), specs, input_file_id=file_id, meta={"metadata": metadata}
        )
        return JSONResponse(batch_object(batch))

    async def _batch(self, request: Request) -> Batch:
        key = await authenticated(self.keys, request)
        batch_id = request.path_params["batch_id"]
        batch = await self.store.batch(batch_id, key.account_id or key.id)
        if batch is None or batch.api != "openai":
            raise not_found("batch", batch_id)
        ended = batch.ended_at
        # Ended, and its output files missing long after: its runner stopped before writing.
        if ended is not None and not batch.meta.get("finalized") and now() - ended > _GRACE:
            await self.write_output(batch)
            batch = await self.store.batch(batch_id) or batch
        return batch

    async def retrieve(self, request: Request) -> Response:
        return JSONResponse(batch_object(await self._batch(request)))

    async def cancel(self, request: Request) -> Response:
        batch = await self._batch(request)
        cancelled = await self.jobs.cancel(batch.account_id, batch.id)
        return JSONResponse(batch_object(cancelled or batch))

    async def list_batches(self, request: Request) -> Response:
        key = await authenticated(self.keys, request)
        account = key.account_id or key.id
        return await batch_page(
            self.store, account, "openai", request, batch_object,
            most=100, after="after", head={"object": "list"},
        )  # fmt: skip

    # ---------------------------------------------------------------- the end of a batch

    async def write_output(self, batch: Batch) -> None:
        """The output file (lines answered 200) and the error file (the others)."""
        out: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        rows = await self.store.results(batch.id, (SUCCEEDED, ERRORED, CANCELLED, EXPIRED))
        for r in rows:
            line: dict[str, Any] = {"id": _line_id(batch.id, r.line_no), "custom_id": r.custom_id}
            if r.status in (SUCCEEDED, ERRORED):
                line["response"] = {
                    "status_code": r.status_code,
                    "request_id": line_request_id(batch.id, r.line_no),
                    "body": orjson.loads(r.result) if r.result else None,
                }
                line["error"] = None
            else:
                code, message = _ENDED_WHY[r.status]
                line["response"] = None
                line["error"] = {"code": code, "message": message}
            (out if r.status == SUCCEEDED else errors).append(line)
        meta = dict(batch.meta)
        for name, rows_ in (("output_file_id", out), ("error_file_id", errors)):
            if rows_:
                f = await self.store.add_file(
                    batch.account_id,
                    "batch_output",
                    f"{batch.id}_{name[:-8]}.jsonl",
                    jsonl(rows_),
                    batch_id=batch.id,
                )
                meta[name] = f["id"]
        meta["finalized"] = True
        await self.store.set_meta(batch.id, meta)
