"""The vendors' batch APIs with time compressed: OpenAI's Files + Batch API (also served for
xAI, whose batch API takes OpenAI's shapes), Anthropic's Message Batches and Gemini's Batch
Mode (`models/{model}:batchGenerateContent`, `batches/{id}`), in memory.

Each line is answered by the emulator's own handler for the standard API (same answer, same
usage as a direct call), at creation. A batch runs its lines one after another: line i ends
`Σ max(STEP, its [[first-delay]])` after creation, so a test sees progress and can cancel
mid-way; lines not ended when a cancel arrives end as cancelled, the others keep their answer.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from tokenrelay.emulator import anthropic, gemini, openai_errors
from tokenrelay.emulator.wire import Req, Resp, json_resp

Router = Callable[[str, str], Callable[[Req], Resp] | None]

# Seconds a line takes at least (compressed: a vendor takes minutes to hours).
STEP_S = float(os.environ.get("TOKENRELAY_EMULATOR_BATCH_STEP_MS", "5")) / 1000
_IDS = itertools.count(1)


@dataclass(slots=True)
class Line:
    custom_id: str
    status: int
    body: bytes
    ends: float  # monotonic time the line is done


@dataclass(slots=True)
class Job:
    id: str
    vendor: str
    lines: list[Line]
    created: float  # wall clock
    started: float  # monotonic
    meta: dict[str, Any] = field(default_factory=dict)
    cancelled: float | None = None  # monotonic time of the cancel
    deleted: bool = False

    def done(self, line: Line) -> bool:
        stop = self.cancelled if self.cancelled is not None else time.monotonic()
        return line.ends <= stop

    @property
    def ended(self) -> bool:
        return self.cancelled is not None or all(self.done(ln) for ln in self.lines)

    @property
    def ended_at(self) -> float:
        if self.cancelled is not None:
            return self.created + (self.cancelled - self.started)
        return self.created + (max((ln.ends for ln in self.lines), default=0) - self.started)


JOBS: dict[str, Job] = {}
FILES: dict[str, tuple[str, bytes, float]] = {}  # id -> (purpose, content, created)


def _run(vendor: str, items: list[tuple[str, Req]], router: Router) -> Job:
    """Answer every line now; line i ends after the lines before it, counted from when all
    are answered (answering takes real time: on a loaded machine a few lines took longer
    than their compressed run, and the batch was created ended)."""
    answered: list[tuple[str, int, bytes, float]] = []
    offset = 0.0
    for custom_id, req in items:
        handler = router(req.method, req.path)
        resp = handler(req) if handler is not None else Resp(404, b'{"error":"no route"}')
        offset += max(STEP_S, resp.first_delay)
        body = resp.body if resp.frames is None else b"".join(resp.frames)
        answered.append((custom_id, resp.status, body, offset))
    started = time.monotonic()
    lines = [Line(cid, status, body, started + at) for cid, status, body, at in answered]
    job_id = f"{next(_IDS):06d}{os.urandom(6).hex()}"
    job = Job(job_id, vendor, lines, time.time(), started)
    JOBS[job_id] = job
    return job


def _inner(outer: Req, path: str, body: Any) -> Req:
    headers = {k: v for k, v in outer.headers.items() if k != "content-length"}
    headers["content-type"] = "application/json"
    return Req("POST", path, {}, headers, orjson.dumps(body))


def _job(vendor: str, job_id: str) -> Job | None:
    job = JOBS.get(job_id)
    return job if job is not None and job.vendor == vendor and not job.deleted else None


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}Z"


# ---------------------------------------------------------------- Anthropic Message Batches


def _anthropic_batch(req: Req, job: Job) -> dict[str, Any]:
    done = [ln for ln in job.lines if job.done(ln)]
    ended = job.ended
    results_url = None
    if ended:
        host = req.headers.get("host", "127.0.0.1")
        results_url = (
            f"http://{host}{job.meta['root']}/anthropic/v1/messages/batches/{job.id}/results"
        )
    return {
        "id": job.id,
        "type": "message_batch",
        "processing_status": "ended" if ended else "in_progress",
        "request_counts": {
            "processing": 0 if ended else len(job.lines) - len(done),
            "succeeded": sum(1 for ln in done if ln.status == 200),
            "errored": sum(1 for ln in done if ln.status != 200),
            "canceled": len(job.lines) - len(done) if ended else 0,
            "expired": 0,
        },
        "ended_at": _iso(job.ended_at) if ended else None,
        "created_at": _iso(job.created),
        "expires_at": _iso(job.created + 86400),
        "archived_at": None,
        "cancel_initiated_at": _iso(job.created + job.cancelled - job.started)
        if job.cancelled is not None
        else None,
        "results_url": results_url,
    }


def _anthropic(req: Req, router: Router, rest: str) -> Resp:
    if not (req.headers.get("x-api-key") or req.headers.get("authorization")):
        return anthropic.error(req, 401, "x-api-key header is required")
    if req.method == "POST" and rest == "":
        items = req.json().get("requests")
        if not isinstance(items, list) or not items:
            return anthropic.error(req, 400, "requests: Field required")
        inner = [
            (str(it.get("custom_id")), _inner(req, "/anthropic/v1/messages", it.get("params")))
            for it in items
        ]
        new = _run("anthropic", inner, router)
        new.meta["root"] = req.root
        return json_resp(200, _anthropic_batch(req, new))
    if req.method == "GET" and rest == "":
        jobs = [j for j in JOBS.values() if j.vendor == "anthropic" and not j.deleted]
        data = [_anthropic_batch(req, j) for j in reversed(jobs)]
        first = data[0]["id"] if data else None
        return json_resp(
            200,
            {
                "data": data,
                "has_more": False,
                "first_id": first,
                "last_id": data[-1]["id"] if data else None,
            },
        )
    job_id, _, verb = rest.lstrip("/").partition("/")
    job = _job("anthropic", job_id)
    if job is None:
        return anthropic.error(req, 404, f"No batch found with id '{job_id}'")
    if req.method == "GET" and verb == "":
        return json_resp(200, _anthropic_batch(req, job))
    if req.method == "POST" and verb == "cancel":
        if not job.ended:
            job.cancelled = time.monotonic()
        return json_resp(200, _anthropic_batch(req, job))
    if req.method == "DELETE" and verb == "":
        job.deleted = True
        return json_resp(200, {"id": job.id, "type": "message_batch_deleted"})
    if req.method == "GET" and verb == "results":
        if not job.ended:
            return anthropic.error(req, 400, f"Batch {job.id} is still in progress")
        out = []
        for ln in job.lines:
            if not job.done(ln):
                result: dict[str, Any] = {"type": "canceled"}
            elif ln.status == 200:
                result = {"type": "succeeded", "message": orjson.loads(ln.body)}
            else:
                result = {"type": "errored", "error": orjson.loads(ln.body)}
            out.append(orjson.dumps({"custom_id": ln.custom_id, "result": result}))
        return Resp(200, b"\n".join(out) + b"\n", "application/binary")
    return anthropic.error(req, 404, "Not found")


# ---------------------------------------------------------------- OpenAI (and xAI) Files + Batch


def _multipart(req: Req) -> dict[str, tuple[str | None, bytes]]:
    """name -> (filename, content) of a multipart/form-data body."""
    ctype = req.headers.get("content-type", "")
    m = re.search(r'boundary="?([^";]+)"?', ctype)
    if m is None:
        return {}
    parts: dict[str, tuple[str | None, bytes]] = {}
    for part in req.body.split(b"--" + m.group(1).encode()):
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        name = re.search(rb'name="([^"]*)"', head)
        filename = re.search(rb'filename="([^"]*)"', head)
        if name is not None:
            parts[name.group(1).decode()] = (
                filename.group(1).decode() if filename else None,
                content.removesuffix(b"\r\n"),
            )
    return parts


def _file_object(file_id: str) -> dict[str, Any]:
    purpose, content, created = FILES[file_id]
    return {
        "id": file_id,
        "object": "file",
        "bytes": len(content),
        "created_at": int(created),
        "filename": f"{file_id}.jsonl",
        "purpose": purpose,
        "status": "processed",
        "expires_at": None,
        "status_details": None,
    }


def _add_file(purpose: str, content: bytes) -> str:
    file_id = f"file-{next(_IDS):06d}{os.urandom(8).hex()}"
    FILES[file_id] = (purpose, content, time.time())
    return file_id


def _openai_batch(job: Job) -> dict[str, Any]:
    done = [ln for ln in job.lines if job.done(ln)]
    ended = job.ended
    status = "cancelled" if job.cancelled is not None else "completed" if ended else "in_progress"
    if ended and "output_file_id" not in job.meta:  # written once, when first seen ended
        out: list[bytes] = []
        errors: list[bytes] = []
        for i, ln in enumerate(job.lines):
            line: dict[str, Any] = {"id": f"batch_req_{job.id}_{i}", "custom_id": ln.custom_id}
            if job.done(ln):
                line["response"] = {
                    "status_code": ln.status,
                    "request_id": f"req_{job.id}_{i}",
                    "body": orjson.loads(ln.body),
                }
                line["error"] = None
            else:
                line["response"] = None
                line["error"] = {
                    "code": "batch_cancelled",
                    "message": "This request was not run: the batch was cancelled.",
                }
            (out if job.done(ln) and ln.status == 200 else errors).append(orjson.dumps(line))
        job.meta["output_file_id"] = _add_file("batch_output", b"\n".join(out)) if out else None
        job.meta["error_file_id"] = (
            _add_file("batch_output", b"\n".join(errors)) if errors else None
        )
    ended_at = int(job.ended_at) if ended else None
    return {
        "id": job.id,
        "object": "batch",
        "endpoint": job.meta["endpoint"],
        "errors": None,
        "input_file_id": job.meta["input_file_id"],
        "completion_window": "24h",
        "status": status,
        "output_file_id": job.meta.get("output_file_id"),
        "error_file_id": job.meta.get("error_file_id"),
        "created_at": int(job.created),
        "in_progress_at": int(job.created),
        "expires_at": int(job.created) + 86400,
        "finalizing_at": ended_at,
        "completed_at": ended_at if status == "completed" else None,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": ended_at if job.cancelled is not None else None,
        "cancelled_at": ended_at if job.cancelled is not None else None,
        "request_counts": {
            "total": len(job.lines),
            "completed": sum(1 for ln in done if ln.status == 200),
            "failed": sum(1 for ln in done if ln.status != 200),
        },
        "metadata": job.meta.get("metadata"),
    }


def _listing(data: list[dict[str, Any]]) -> Resp:
    return json_resp(
        200,
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": False,
        },
    )


def _openai(req: Req, router: Router, vendor: str, rest: str) -> Resp:
    def err(status: int, message: str) -> Resp:
        return openai_errors.error(vendor, status, message)

    if not req.headers.get("authorization"):
        return err(401, "You didn't provide an API key.")
    kind, _, rest = rest.partition("/")
    if kind == "files":
        if req.method == "POST" and rest == "":
            parts = _multipart(req)
            if "file" not in parts or parts.get("purpose", (None, b""))[1] != b"batch":
                return err(400, "file and purpose=batch are required")
            return json_resp(200, _file_object(_add_file("batch", parts["file"][1])))
        if req.method == "GET" and rest == "":
            return _listing([_file_object(f) for f in reversed(FILES)])
        file_id, _, verb = rest.partition("/")
        if file_id not in FILES:
            return err(404, f"No such File object: {file_id}")
        if req.method == "GET" and verb == "content":
            return Resp(200, FILES[file_id][1], "application/octet-stream")
        if req.method == "DELETE" and verb == "":
            del FILES[file_id]
            return json_resp(200, {"id": file_id, "object": "file", "deleted": True})
        if req.method == "GET" and verb == "":
            return json_resp(200, _file_object(file_id))
        return err(404, "Not found")
    if req.method == "POST" and rest == "":
        body = req.json()
        file_id, endpoint = str(body.get("input_file_id")), str(body.get("endpoint"))
        if file_id not in FILES:
            return err(404, f"No such File object: {file_id}")
        if body.get("completion_window") != "24h":
            return err(400, "completion_window: only 24h is supported")
        items = []
        for raw in FILES[file_id][1].splitlines():
            if not raw.strip():
                continue
            line = orjson.loads(raw)
            if line.get("url") != endpoint:
                return err(400, "every line's url must be the batch's endpoint")
            items.append(
                (str(line["custom_id"]), _inner(req, f"/{vendor}{endpoint}", line["body"]))
            )
        new = _run(vendor, items, router)
        new.meta.update(endpoint=endpoint, input_file_id=file_id, metadata=body.get("metadata"))
        return json_resp(200, _openai_batch(new))
    if req.method == "GET" and rest == "":
        jobs = [j for j in JOBS.values() if j.vendor == vendor]
        return _listing([_openai_batch(j) for j in reversed(jobs)])
    job_id, _, verb = rest.partition("/")
    job = _job(vendor, job_id)
    if job is None:
        return err(404, f"No batch found with id '{job_id}'")
    if req.method == "POST" and verb == "cancel":
        if not job.ended:
            job.cancelled = time.monotonic()
        return json_resp(200, _openai_batch(job))
    if req.method == "GET" and verb == "":
        return json_resp(200, _openai_batch(job))
    return err(404, "Not found")


# ---------------------------------------------------------------- Gemini Batch Mode

_GEMINI_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
_GEMINI_OUT = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput"


def _gemini_operation(job: Job) -> dict[str, Any]:
    ended = job.ended
    state = "BATCH_STATE_CANCELLED" if job.cancelled is not None else "BATCH_STATE_SUCCEEDED"
    done = [ln for ln in job.lines if job.done(ln)]
    meta: dict[str, Any] = {
        "@type": _GEMINI_TYPE,
        "model": f"models/{job.meta['model']}",
        "displayName": job.meta.get("display_name", ""),
        "createTime": _iso(job.created),
        "updateTime": _iso(job.ended_at if ended else time.time()),
        "batchStats": {
            "requestCount": str(len(job.lines)),
            "successfulRequestCount": str(sum(1 for ln in done if ln.status == 200)),
            "failedRequestCount": str(sum(1 for ln in done if ln.status != 200)),
            "pendingRequestCount": str(0 if ended else len(job.lines) - len(done)),
        },
        "state": state if ended else "BATCH_STATE_RUNNING",
        "name": f"batches/{job.id}",
    }
    op: dict[str, Any] = {"name": f"batches/{job.id}", "metadata": meta}
    if ended:
        meta["endTime"] = _iso(job.ended_at)
        answers = []
        for ln in done:
            answer: dict[str, Any] = {"metadata": {"key": ln.custom_id}}
            if ln.status == 200:
                answer["response"] = orjson.loads(ln.body)
            else:
                answer["error"] = orjson.loads(ln.body).get("error", {})
            answers.append(answer)
        output = {"inlinedResponses": {"inlinedResponses": answers}}
        meta["output"] = output
        op["done"] = True
        op["response"] = {"@type": _GEMINI_OUT, **output}
    return op


def gemini_create(req: Req, router: Router, model: str) -> Resp:
    batch = req.json().get("batch")
    requests = (((batch or {}).get("input_config") or (batch or {}).get("inputConfig") or {})
                .get("requests") or {}).get("requests")  # fmt: skip
    if not isinstance(requests, list) or not requests:
        return gemini.error(400, "batch.input_config.requests.requests is required")
    path = f"/gemini/v1beta/models/{model}:generateContent"
    items = [
        (str((r.get("metadata") or {}).get("key", i)), _inner(req, path, r.get("request")))
        for i, r in enumerate(requests)
    ]
    job = _run("gemini", items, router)
    job.meta.update(model=model, display_name=(batch or {}).get("display_name", ""))
    return json_resp(200, _gemini_operation(job))


def _gemini(req: Req, rest: str) -> Resp:
    if req.method == "GET" and rest == "":
        jobs = [j for j in JOBS.values() if j.vendor == "gemini" and not j.deleted]
        return json_resp(200, {"operations": [_gemini_operation(j) for j in reversed(jobs)]})
    job_id, _, verb = rest.partition(":")
    job = _job("gemini", job_id)
    if job is None:
        return gemini.error(404, f"Batch batches/{job_id} not found.")
    if req.method == "POST" and verb == "cancel":
        if not job.ended:
            job.cancelled = time.monotonic()
        return json_resp(200, {})
    if req.method == "DELETE" and verb == "":
        job.deleted = True
        return json_resp(200, {})
    if req.method == "GET" and verb == "":
        return json_resp(200, _gemini_operation(job))
    return gemini.error(404, "Not found")


_PATHS = re.compile(
    r"/(?:(anthropic)/v1/messages/batches|(openai|xai)/v1/(?=files|batches)|gemini/v1(?:beta)?/batches)"
    r"(.*)"
)


def route(method: str, path: str, router: Router) -> Callable[[Req], Resp] | None:
    """The batch API handler for `path`, if it is one."""
    m = _PATHS.fullmatch(path)
    if m is None:
        return None
    is_anthropic, openai_vendor, rest = m.groups()
    if is_anthropic:
        return lambda r: _anthropic(r, router, rest)
    if openai_vendor:
        return lambda r: _openai(r, router, openai_vendor, rest)
    return lambda r: _gemini(r, rest.removeprefix("/"))
