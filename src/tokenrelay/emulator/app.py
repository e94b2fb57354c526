"""Raw ASGI app routing vendor-prefixed paths to the emulated vendors.

Raw ASGI rather than a framework: it sits under load tests, and it needs to drop a connection
mid-body ([[cut]]), which frameworks make awkward. Routing is relative to ``root_path`` so the
gateway can mount it (e.g. under ``/emulator``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import re
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson

from tokenrelay.emulator import (
    anthropic,
    batches,
    embeddings,
    gemini,
    openai_compat,
    openai_errors,
    openai_responses,
)
from tokenrelay.emulator.openai_errors import COMPATIBLE
from tokenrelay.emulator.wire import Req, Resp, bearer, json_resp

log = logging.getLogger("tokenrelay.emulator")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


# Stream counters, served at GET /_stats: tests use them to prove the gateway closes the
# upstream call when its client goes away.
STATS = {"streams_started": 0, "streams_completed": 0, "streams_abandoned": 0, "open_streams": 0}
# The latest routed requests, served at GET /_requests: method, path and a fingerprint of the
# bearer key (never the key), so tests can see which key reached which upstream path; `seq`
# numbers them from 1, so a test can take those after a mark however many went by.
REQUESTS: deque[dict[str, str | int | None]] = deque(maxlen=64)
_SEQ = itertools.count(1)


# Deployments: `/_d/<name>/<vendor path>` serves the same vendor wire as one deployment of
# many, with state of its own (its prompt cache). A fault in the name fails every request:
# `/_d/<name>~503/...`, `/_d/<name>~429r2/...` (429 with retry-after: 2), `/_d/<name>~401/...`.
# POST /_faults {"deployment": name, "status": 503, "retry_after": 2} sets (status 0 clears)
# the same at run time, for a deployment that fails and then comes back.
_DEPLOYMENT = re.compile(r"/_d/([a-z0-9-]{1,40})(?:~(\d{3})(?:r(\d{1,4}))?)?(/.*)")
FAULTS: dict[str, tuple[int, str | None]] = {}


class AbruptClose(Exception):
    """Raised after a [[cut]] stream so the server drops the connection without a terminator."""


_ROUTES: dict[tuple[str, str], Callable[[Req], Resp]] = {
    ("POST", "/anthropic/v1/messages"): anthropic.messages,
    ("POST", "/anthropic/v1/messages/count_tokens"): anthropic.count_tokens,
    ("GET", "/anthropic/v1/models"): anthropic.models,
    ("POST", "/openai/v1/chat/completions"): lambda r: openai_compat.chat(r, "openai"),
    ("POST", "/openai/v1/responses"): openai_responses.responses,
    ("POST", "/openai/v1/responses/input_tokens"): openai_responses.input_tokens,
    ("POST", "/openai/v1/responses/compact"): openai_responses.compact,
    ("POST", "/openai/v1/embeddings"): lambda r: embeddings.openai(r, "openai"),
    ("GET", "/openai/v1/models"): lambda r: openai_compat.models(r, "openai"),
    ("POST", "/xai/v1/chat/completions"): lambda r: openai_compat.chat(r, "xai"),
    ("GET", "/xai/v1/models"): lambda r: openai_compat.models(r, "xai"),
    ("POST", "/deepseek/chat/completions"): lambda r: openai_compat.chat(r, "deepseek"),
    ("POST", "/deepseek/v1/chat/completions"): lambda r: openai_compat.chat(r, "deepseek"),
    ("GET", "/deepseek/models"): lambda r: openai_compat.models(r, "deepseek"),
    ("GET", "/deepseek/v1/models"): lambda r: openai_compat.models(r, "deepseek"),
    ("GET", "/gemini/v1beta/models"): gemini.models,
    ("GET", "/gemini/v1/models"): gemini.models,
}
_GEMINI_PREFIXES = ("/gemini/v1beta/models/", "/gemini/v1/models/")
# Any OpenAI-compatible upstream an operator declares: /compat/<name>/v1/...
_COMPAT = re.compile(r"/compat/([a-z][a-z0-9-]{0,39})/v1/(chat/completions|models|embeddings)")


def _compat_route(method: str, path: str) -> Callable[[Req], Resp] | None:
    match = _COMPAT.fullmatch(path)
    if match is None:
        return None
    name, endpoint = match.groups()
    if (method, endpoint) == ("POST", "chat/completions"):
        return lambda r: openai_compat.chat(r, COMPATIBLE)
    if (method, endpoint) == ("GET", "models"):
        return lambda r: openai_compat.models(r, COMPATIBLE, name)
    if (method, endpoint) == ("POST", "embeddings"):
        return lambda r: embeddings.openai(r, COMPATIBLE)
    return None


def route(method: str, path: str) -> Callable[[Req], Resp] | None:
    bare = path.rstrip("/") or "/"
    handler = (
        _ROUTES.get((method, bare))
        or _compat_route(method, bare)
        or batches.route(method, bare, route)
    )
    prefix = next((p for p in _GEMINI_PREFIXES if path.startswith(p)), None)
    if handler is not None or method != "POST" or prefix is None:
        return handler
    model, _, action = path[len(prefix) :].rpartition(":")
    if not model:
        return None
    if action == "generateContent":
        return lambda r: gemini.generate(r, model, stream=False)
    if action == "streamGenerateContent":
        return lambda r: gemini.generate(r, model, stream=True)
    if action == "countTokens":
        return lambda r: gemini.count_tokens(r, model)
    if action == "embedContent":
        return lambda r: embeddings.gemini_embed(r, model)
    if action == "batchEmbedContents":
        return lambda r: embeddings.gemini_batch(r, model)
    if action == "batchGenerateContent":
        return lambda r: batches.gemini_create(r, route, model)
    return None


def _not_found(method: str, path: str) -> Resp:
    return json_resp(
        404, {"error": {"message": f"emulator: no route for {method} {path}", "type": "not_found"}}
    )


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _watch_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()


async def _send(resp: Resp, send: Send, receive: Receive) -> None:
    streaming = resp.frames is not None
    headers = [(b"content-type", resp.content_type.encode())]
    headers += [(k.encode(), v.encode()) for k, v in resp.headers]
    if not streaming:
        headers.append((b"content-length", str(len(resp.preamble) + len(resp.body)).encode()))
    gone = asyncio.Event()
    watcher = None
    # Long-lived: stop early if the client goes away.
    if resp.delay or resp.first_delay or resp.stall:
        watcher = asyncio.ensure_future(_watch_disconnect(receive, gone))
    try:
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        if resp.preamble:
            await send({"type": "http.response.body", "body": resp.preamble, "more_body": True})
        if resp.first_delay:
            await asyncio.sleep(resp.first_delay)
        if not streaming:
            await send({"type": "http.response.body", "body": resp.body})
            return
        frames = resp.frames or []
        if not resp.delay:  # nothing to pace: one write is far cheaper under load
            frames = [b"".join(frames)]
        STATS["streams_started"] += 1
        STATS["open_streams"] += 1
        try:
            for i, frame in enumerate(frames):
                if gone.is_set():
                    STATS["streams_abandoned"] += 1
                    return
                if i and resp.delay:
                    await asyncio.sleep(resp.delay)
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            if resp.stall:  # silent, the connection open, until the client gives up
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(gone.wait(), resp.stall)
            if resp.cut:
                raise AbruptClose("emulator [[cut]]: dropping the connection mid-stream")
            await send({"type": "http.response.body", "body": b""})
            STATS["streams_completed"] += 1
        finally:
            STATS["open_streams"] -= 1
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


def _fault(req: Req, status: int, retry_after: str | None) -> Resp:
    """The vendor's own error for `status`, as a failing deployment of it answers."""
    if req.path.startswith("/anthropic/"):
        resp = anthropic.error(req, status)
    elif req.path.startswith("/gemini/"):
        resp = gemini.error(status)
    else:
        vendor = req.path.split("/")[1]
        resp = openai_errors.error(
            vendor if vendor in ("openai", "xai", "deepseek") else COMPATIBLE, status
        )
    if retry_after is not None:
        resp.headers = [(k, v) for k, v in resp.headers if k != "retry-after"]
        resp.headers.append(("retry-after", retry_after))
    return resp


def _set_fault(body: bytes) -> Resp:
    try:
        spec = orjson.loads(body or b"{}")
        name, status = str(spec["deployment"]), int(spec.get("status") or 0)
        retry_after = spec.get("retry_after")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return json_resp(400, {"error": "expected {deployment, status, retry_after?}"})
    if status:
        FAULTS[name] = (status, None if retry_after is None else str(retry_after))
    else:
        FAULTS.pop(name, None)
    return json_resp(200, {"faults": {k: v[0] for k, v in FAULTS.items()}})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_app() -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):  # Starlette's Mount keeps the prefix in path
            path = path[len(root) :] or "/"
        method: str = scope["method"]
        body = await _read_body(receive)
        if method == "GET" and path == "/_stats":
            await _send(json_resp(200, dict(STATS)), send, receive)
            return
        if method == "GET" and path == "/_requests":
            await _send(json_resp(200, {"data": list(REQUESTS)}), send, receive)
            return
        if method == "POST" and path == "/_faults":
            await _send(_set_fault(body), send, receive)
            return
        deployment: str | None = None
        fault: tuple[int, str | None] | None = None
        match = _DEPLOYMENT.fullmatch(path)
        if match is not None:
            deployment, status, retry_after, path = match.groups()
            fault = (int(status), retry_after) if status else FAULTS.get(deployment)
        handler = route(method, path)
        if handler is None:
            await _send(_not_found(method, path), send, receive)
            return
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
        }
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        req = Req(method=method, path=path, query=query, headers=headers, body=body)
        req.deployment = deployment
        req.root = root + (f"/_d/{deployment}" if deployment else "")
        key = bearer(req)
        fingerprint = hashlib.sha256(key.encode()).hexdigest()[:16] if key else None
        entry: dict[str, str | int | None] = {
            "method": method,
            "path": path,
            "bearer_sha256": fingerprint,
            "seq": next(_SEQ),
        }
        if deployment is not None:
            entry["deployment"] = deployment
        REQUESTS.append(entry)
        try:
            resp = handler(req) if fault is None else _fault(req, *fault)
        except Exception:  # an emulator bug must still answer like a server would
            log.exception("emulator: %s %s failed", method, path)
            # The generic 500 every vendor can give; never the exception text.
            resp = json_resp(
                500, {"error": {"message": "Internal server error", "type": "api_error"}}
            )
        await _send(resp, send, receive)

    return app
