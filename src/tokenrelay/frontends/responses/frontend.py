"""The OpenAI Responses API frontend: request parsing (see responses_parse) and rendering of IR
events as typed `response.*` SSE events (each with a contiguous `sequence_number`), the
`response` JSON object and error bodies (Chat Completions' error shape, the same API family).

IR blocks map to output items one to one: text → `message` (one `output_text` part),
thinking → `reasoning` (its text as a summary when `reasoning.summary` asked; with
`include: ["reasoning.encrypted_content"]` the vendor's reasoning state, signature included,
as the gateway's own `encrypted_content`), redacted thinking → `reasoning` with only
`encrypted_content`, tool call → `function_call` (namespaced names split back).

Asked to compact (a `compaction_trigger` item, or `/responses/compact`: `ResponsesCompactFrontend`),
the model's text becomes one `compaction` item instead, its summary sealed by the gateway
(reasoning/compaction.py); reasoning and text are not shown on the way.

The response object echoes the request's parameters, which the Frontend protocol's renderer
does not receive: `parse_request` leaves them in a context variable that the same request's
task reads when rendering (each request runs in a task of its own, with its own context).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from tokenrelay import ir
from tokenrelay.errors import GatewayError
from tokenrelay.frontends.chat.frontend import error_status_and_body
from tokenrelay.frontends.responses.parse import NAMESPACE_SEP, Echo, parse_responses_request
from tokenrelay.gateway.codec import ExtraUsage
from tokenrelay.reasoning import compaction
from tokenrelay.reasoning.cache import to_blob
from tokenrelay.sse import Framing

__all__ = [
    "RESPONSES_COMPACT_FRONTEND",
    "RESPONSES_FRONTEND",
    "ResponsesCompactFrontend",
    "ResponsesFrontend",
    "ResponsesStreamRenderer",
]

# IR stop reason → why a response is `incomplete` (the others complete it).
_INCOMPLETE = {
    "max_tokens": "max_output_tokens",
    "model_context_window_exceeded": "max_output_tokens",
    "refusal": "content_filter",
}


def _response_id(request_id: str) -> str:
    return "resp_" + request_id.removeprefix("req_")


def _usage(u: ir.UsageTotals, extra: Mapping[str, Any]) -> dict[str, Any]:
    prompt = u.prompt_total
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": u.cache_read,
            "cache_write_tokens": u.cache_write,
        },
        "output_tokens": u.output,
        "output_tokens_details": {"reasoning_tokens": u.reasoning},
        "total_tokens": prompt + u.output,
        **extra,
    }


class _Items:
    """Output items of one response as they are built (shared by stream and JSON)."""

    def __init__(self, request_id: str, echo: Echo) -> None:
        self.echo = echo
        self.request_id = request_id
        self.hex = request_id.removeprefix("req_")
        self.model = ""
        self.created = int(time.time())
        self.done: list[dict[str, Any]] = []

    def item_id(self, prefix: str) -> str:
        return f"{prefix}_{self.hex}{len(self.done):03d}"

    def call_item(
        self, item_id: str, call_id: str, name: str, arguments: str, status: str
    ) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": item_id,
            "type": "function_call",
            "status": status,
            "arguments": arguments,
            "call_id": call_id,
            "name": name,
        }
        ns, sep, bare = name.partition(NAMESPACE_SEP)
        if sep and ns in self.echo.namespaces:
            item["name"], item["namespace"] = bare, ns
        return item

    def reasoning_item(
        self, item_id: str, summary: str, state: list[ir.Thinking | ir.RedactedThinking]
    ) -> dict[str, Any]:
        item: dict[str, Any] = {"id": item_id, "type": "reasoning", "summary": []}
        if self.echo.summary and summary:
            item["summary"] = [{"type": "summary_text", "text": summary}]
        if self.echo.encrypted:
            item["encrypted_content"] = to_blob(state)
        return item

    def compaction_item(self, summary: str) -> dict[str, Any]:
        sealed = compaction.seal(summary, self.model)
        return {"id": self.item_id("cmp"), "type": "compaction", "encrypted_content": sealed}

    def envelope(
        self,
        status: str,
        *,
        usage: dict[str, Any] | None = None,
        stop_reason: str | None = None,
        error: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        reason = _INCOMPLETE.get(stop_reason or "") if status != "in_progress" else None
        if reason is not None and status == "completed":
            status = "incomplete"
        return {
            "id": _response_id(self.request_id),
            "object": "response",
            "created_at": self.created,
            "status": status,
            "background": False,
            "error": error,
            "incomplete_details": {"reason": reason} if reason else None,
            "model": self.model,
            "output": list(self.done),
            "usage": usage,
            **self.echo.fields,
        }


def message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "content": [part] if status != "in_progress" else [],
        "role": "assistant",
    }


class _Open:
    """The output item an open IR block is building."""

    __slots__ = (
        "call_id",
        "chunks",
        "item_id",
        "kind",
        "name",
        "output_index",
        "signature",
        "summary_started",
    )

    def __init__(self, kind: str, item_id: str, output_index: int) -> None:
        self.kind, self.item_id, self.output_index = kind, item_id, output_index
        self.chunks: list[str] = []
        self.signature: str | None = None
        self.summary_started = False
        self.call_id = ""
        self.name = ""


class ResponsesStreamRenderer:
    """IR events → Responses API SSE events for one response."""

    usage_at_start = False

    def __init__(self, *, request_id: str, echo: Echo) -> None:
        self._items = _Items(request_id, echo)
        self._seq = 0
        self._started = False
        self._stop: str | None = None
        self._open: dict[int, _Open] = {}
        # Compacting: the text of every block, kept for the one compaction item at the end.
        self._summary: list[str] | None = [] if echo.compact else None
        self._text_blocks: set[int] = set()

    def _event(self, etype: str, fields: dict[str, Any]) -> bytes:
        data = orjson.dumps({"type": etype, "sequence_number": self._seq, **fields})
        self._seq += 1
        return b"event: " + etype.encode() + b"\ndata: " + data + b"\n\n"

    def render(self, ev: ir.Event) -> bytes:
        if isinstance(ev, ir.Delta):
            return self._delta(ev)
        if isinstance(ev, ir.Usage):
            return b""
        if isinstance(ev, ir.Error):
            return self.error(GatewayError.from_ir(ev))
        if isinstance(ev, ir.Start):
            self._items.model = ev.model
            return self._start()
        out = self._start()
        if self._summary is not None:
            if isinstance(ev, ir.BlockStart) and ev.kind == "text":
                self._text_blocks.add(ev.index)
            if isinstance(ev, ir.BlockStart | ir.BlockStop):
                return out  # nothing shows until the summary is whole
        if isinstance(ev, ir.BlockStart):
            return out + self._block_start(ev)
        if isinstance(ev, ir.BlockStop):
            return out + self._block_stop(ev.index)
        self._stop = ev.stop_reason
        return out

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        envelope = {"response": self._items.envelope("in_progress")}
        return self._event("response.created", envelope) + self._event(
            "response.in_progress", envelope
        )

    def _block_start(self, ev: ir.BlockStart) -> bytes:
        index = len(self._items.done) + len(self._open)
        if ev.kind == "text":
            block = _Open("message", self._items.item_id("msg"), index)
            self._open[ev.index] = block
            where = {"item_id": block.item_id, "output_index": index, "content_index": 0}
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
            return self._event(
                "response.output_item.added",
                {"output_index": index, "item": message_item(block.item_id, "", "in_progress")},
            ) + self._event("response.content_part.added", {**where, "part": part})
        if ev.kind == "tool_call":
            block = _Open("function_call", self._items.item_id("fc"), index)
            block.call_id, block.name = ev.tool_call_id or "", ev.name or ""
            self._open[ev.index] = block
            item = self._items.call_item(
                block.item_id, block.call_id, block.name, "", "in_progress"
            )
            return self._event("response.output_item.added", {"output_index": index, "item": item})
        block = _Open("reasoning", self._items.item_id("rs"), index)
        if ev.kind == "redacted_thinking":
            block.kind, block.signature = "redacted", ev.data or ""
        self._open[ev.index] = block
        item = {"id": block.item_id, "type": "reasoning", "summary": []}
        return self._event("response.output_item.added", {"output_index": index, "item": item})

    def _delta(self, ev: ir.Delta) -> bytes:
        if self._summary is not None:
            if ev.index in self._text_blocks:
                self._summary.append(ev.value)
            return b""
        block = self._open.get(ev.index)
        if block is None or not ev.value:
            return b""
        if ev.kind == "signature":
            block.signature = (block.signature or "") + ev.value
            return b""
        block.chunks.append(ev.value)
        if block.kind == "message":
            where = {
                "item_id": block.item_id,
                "output_index": block.output_index,
                "content_index": 0,
            }
            return self._event(
                "response.output_text.delta", {**where, "delta": ev.value, "logprobs": []}
            )
        if block.kind == "function_call":
            where = {"item_id": block.item_id, "output_index": block.output_index}
            return self._event(
                "response.function_call_arguments.delta", {**where, "delta": ev.value}
            )
        if not self._items.echo.summary:
            return b""
        where = {"item_id": block.item_id, "output_index": block.output_index, "summary_index": 0}
        out = b""
        if not block.summary_started:
            block.summary_started = True
            part = {"type": "summary_text", "text": ""}
            out = self._event("response.reasoning_summary_part.added", {**where, "part": part})
        return out + self._event(
            "response.reasoning_summary_text.delta", {**where, "delta": ev.value}
        )

    def _block_stop(self, index: int) -> bytes:
        block = self._open.pop(index, None)
        if block is None:
            return b""
        text = "".join(block.chunks)
        out = b""
        if block.kind == "message":
            where = {
                "item_id": block.item_id,
                "output_index": block.output_index,
                "content_index": 0,
            }
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
            out += self._event("response.output_text.done", {**where, "text": text, "logprobs": []})
            out += self._event("response.content_part.done", {**where, "part": part})
            item = message_item(block.item_id, text, "completed")
        elif block.kind == "function_call":
            arguments = text or "{}"
            item = self._items.call_item(
                block.item_id, block.call_id, block.name, arguments, "completed"
            )
            where = {"item_id": block.item_id, "output_index": block.output_index}
            out += self._event(
                "response.function_call_arguments.done",
                {**where, "arguments": arguments, "name": item["name"]},
            )
        else:
            state: list[ir.Thinking | ir.RedactedThinking] = (
                [ir.RedactedThinking(block.signature or "")]
                if block.kind == "redacted"
                else [ir.Thinking(text, block.signature)]
            )
            item = self._items.reasoning_item(block.item_id, text, state)
            if block.summary_started:
                where = {
                    "item_id": block.item_id,
                    "output_index": block.output_index,
                    "summary_index": 0,
                }
                part = {"type": "summary_text", "text": text}
                out += self._event("response.reasoning_summary_text.done", {**where, "text": text})
                out += self._event("response.reasoning_summary_part.done", {**where, "part": part})
        self._items.done.append(item)
        return out + self._event(
            "response.output_item.done", {"output_index": block.output_index, "item": item}
        )

    def end(self, usage: ir.UsageTotals, extra_usage: Mapping[str, Any]) -> bytes:
        out = self._start()
        for index in list(self._open):
            out += self._block_stop(index)
        if self._summary is not None:
            item = self._items.compaction_item("".join(self._summary))
            where = {"output_index": len(self._items.done)}
            self._items.done.append(item)
            out += self._event("response.output_item.added", {**where, "item": item})
            out += self._event("response.output_item.done", {**where, "item": item})
        response = self._items.envelope(
            "completed", usage=_usage(usage, extra_usage), stop_reason=self._stop
        )
        final = (
            "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        )
        return out + self._event(final, {"response": response})

    def error(self, err: GatewayError) -> bytes:
        """`response.failed` (with what was complete so far) once the response was announced;
        before that (or after the vendor's own bytes, on the fast path) OpenAI's top-level
        `error` event. The SDKs end the stream on either."""
        if not self._started:
            _, body = error_status_and_body(err)
            code = body["error"]["code"] or body["error"]["type"]
            fields = {"code": code, "message": err.message, "param": err.param}
            return self._event("error", fields)
        # A failed response's code is one of OpenAI's few: a rate limit, or the server's fault.
        code = "rate_limit_exceeded" if err.kind == "rate_limit" else "server_error"
        response = self._items.envelope("failed", error={"code": code, "message": err.message})
        return self._event("response.failed", {"response": response})


def _render(resp: ir.Response, items: _Items) -> None:
    if items.echo.compact:
        summary = "".join(p.text for p in resp.content if isinstance(p, ir.Text))
        items.done.append(items.compaction_item(summary))
        return
    for part in resp.content:
        if isinstance(part, ir.Text):
            items.done.append(message_item(items.item_id("msg"), part.text, "completed"))
        elif isinstance(part, ir.ToolCall):
            items.done.append(
                items.call_item(
                    items.item_id("fc"), part.id, part.name, part.arguments or "{}", "completed"
                )
            )
        elif isinstance(part, ir.Thinking):
            items.done.append(items.reasoning_item(items.item_id("rs"), part.text, [part]))
        elif isinstance(part, ir.RedactedThinking):
            items.done.append(items.reasoning_item(items.item_id("rs"), "", [part]))


class ResponsesFrontend:
    name = "responses"

    def parse_request(self, body: Any, headers: Mapping[str, str]) -> ir.Request:
        req, echo = parse_responses_request(body, headers)
        req.echo = echo
        return req

    def stream_renderer(
        self, *, request_id: str, include_usage: bool, echo: Any = None, framing: Framing = "sse"
    ) -> ResponsesStreamRenderer:
        return ResponsesStreamRenderer(request_id=request_id, echo=echo or Echo())

    def render_response(
        self, resp: ir.Response, *, request_id: str, extra_usage: ExtraUsage, echo: Any = None
    ) -> dict[str, Any]:
        items = _Items(request_id, echo or Echo())
        items.model = resp.model
        _render(resp, items)
        return items.envelope(
            "completed", usage=_usage(resp.usage, extra_usage), stop_reason=resp.stop_reason
        )

    def render_error(self, err: GatewayError) -> tuple[int, dict[str, Any]]:
        return error_status_and_body(err)


def _user_item(item: dict[str, Any]) -> dict[str, Any]:
    """A user message as an output item (OpenAI's shape: typed, its text in parts)."""
    content = item.get("content")
    if isinstance(content, str):
        content = [{"type": "input_text", "text": content}]
    return {"type": "message", "role": "user", "content": content}


class ResponsesCompactFrontend(ResponsesFrontend):
    """`POST /responses/compact`: the conversation compacted, answered at once as a
    `response.compaction` object whose output is the new conversation: the user's messages as
    they were, then one `compaction` item. OpenAI models pass it to OpenAI's own endpoint (the
    `responses_compact` passthrough); every other model writes the summary itself."""

    name = "responses_compact"

    def parse_request(self, body: Any, headers: Mapping[str, str]) -> ir.Request:
        items = body.get("input") if isinstance(body, dict) else None
        if isinstance(items, str):
            items = [{"type": "message", "role": "user", "content": items}]
        if not isinstance(items, list):  # the Responses parser's error names what is wrong
            return super().parse_request(body, headers)
        trigger = {"type": "compaction_trigger"}
        req = super().parse_request({**body, "input": [*items, trigger], "stream": False}, headers)
        req.echo.kept = [
            _user_item(i) for i in items if isinstance(i, dict) and i.get("role") == "user"
        ]
        return req

    def render_response(
        self, resp: ir.Response, *, request_id: str, extra_usage: ExtraUsage, echo: Any = None
    ) -> dict[str, Any]:
        echo = echo or Echo(compact=True)
        items = _Items(request_id, echo)
        items.model = resp.model
        summary = "".join(p.text for p in resp.content if isinstance(p, ir.Text))
        return {
            "id": "cmp_" + request_id.removeprefix("req_"),
            "object": "response.compaction",
            "created_at": items.created,
            "output": [*echo.kept, items.compaction_item(summary)],
            "usage": _usage(resp.usage, extra_usage),
        }


RESPONSES_FRONTEND = ResponsesFrontend()
RESPONSES_COMPACT_FRONTEND = ResponsesCompactFrontend()
