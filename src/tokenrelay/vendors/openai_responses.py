"""OpenAI's Responses API (`/v1/responses`) on the fast path: a Responses client's body goes to
OpenAI as it came (the model name rewritten, `store` off), and the answer comes back byte for
byte while usage is read from `response.completed` (or `response.incomplete`).

Every other vendor is reached by translation (Responses frontend → IR → that vendor's
adapter), so this module decodes the Responses wire into IR only as far as the fast path needs:
usage and completion for billing, the generated text for an interrupted stream's estimate.
Wire format: the event and object shapes in `openai.types.responses`; OpenAI errors share the
Chat Completions shape (vendors/openai.py classifies them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from tokenrelay import ir
from tokenrelay.reasoning import compaction
from tokenrelay.reasoning.cache import BLOB_PREFIX
from tokenrelay.sse import SSEEvent, SSEParser, encode
from tokenrelay.vendors import base
from tokenrelay.vendors.base import Passthrough, PassthroughScan, Seen, UpstreamRequest
from tokenrelay.vendors.openai import JSON, MALFORMED, OpenAICompatible

RESPONSES_FORMAT = "responses"  # the client format (frontends/responses.py) passed through
COMPACT_FORMAT = "responses_compact"  # `/responses/compact`, to OpenAI's own endpoint
_FINAL = ("response.completed", "response.incomplete")
_FAILED = ("response.failed", "error")
_INCOMPLETE = {"max_output_tokens": "max_tokens", "content_filter": "refusal"}


def usage(raw: object) -> ir.Usage:
    """Responses usage → IR: input_tokens includes the cached part; IR input excludes it."""
    if not isinstance(raw, dict):
        return ir.Usage()
    prompt = _int(raw.get("input_tokens"))
    details = raw.get("input_tokens_details")
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    out_details = raw.get("output_tokens_details")
    reasoning = out_details.get("reasoning_tokens") if isinstance(out_details, dict) else None
    return ir.Usage(
        input=max(prompt - cached, 0),
        output=_int(raw.get("output_tokens")),
        cache_read=cached,
        reasoning=reasoning if isinstance(reasoning, int) else None,
    )


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _finish(response: JSON) -> ir.Finish:
    details = response.get("incomplete_details")
    reason = details.get("reason") if isinstance(details, dict) else None
    if response.get("status") == "incomplete":
        return ir.Finish(_INCOMPLETE.get(str(reason), "max_tokens"))
    calls = any(
        isinstance(i, dict) and i.get("type") == "function_call"
        for i in response.get("output") or ()
    )
    return ir.Finish("tool_use" if calls else "end_turn")


def _failure(obj: JSON) -> ir.Error:
    err = obj.get("error") if obj.get("type") != "error" else obj
    if not isinstance(err, dict):
        response = obj.get("response")
        err = response.get("error") if isinstance(response, dict) else None
    message = str((err or {}).get("message") or "The upstream provider reported an error.")
    return ir.Error("api_error", message, 502)


def response_events(obj: JSON) -> list[ir.Event]:
    """A whole `response` object → the IR events it is the fold of."""
    events: list[ir.Event] = [ir.Start(str(obj.get("id") or ""), str(obj.get("model") or ""))]
    if obj.get("status") == "failed":
        return [*events, _failure(obj)]
    for i, item in enumerate(obj.get("output") or ()):
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "message":
            text = "".join(
                str(p.get("text") or p.get("refusal") or "")
                for p in item.get("content") or ()
                if isinstance(p, dict)
            )
            events += [ir.BlockStart(i, "text"), ir.Delta(i, "text", text), ir.BlockStop(i)]
        elif kind == "function_call":
            start = ir.BlockStart(
                i, "tool_call", str(item.get("call_id") or ""), str(item.get("name") or "")
            )
            events += [
                start,
                ir.Delta(i, "arguments", str(item.get("arguments") or "")),
                ir.BlockStop(i),
            ]
        elif kind == "reasoning":
            text = "".join(
                str(s.get("text") or "") for s in item.get("summary") or () if isinstance(s, dict)
            )
            events += [ir.BlockStart(i, "thinking"), ir.Delta(i, "thinking", text), ir.BlockStop(i)]
    events += [usage(obj.get("usage")), _finish(obj)]
    return events


class StreamDecoder:
    """Responses SSE → IR events, as far as billing needs them: generated text, arguments and
    reasoning summaries as deltas, the final usage and how it ended."""

    def __init__(self) -> None:
        self._parser = SSEParser()

    def feed(self, chunk: bytes) -> list[ir.Event]:
        return self._events(self._parser.feed(chunk))

    def close(self) -> list[ir.Event]:
        return self._events(self._parser.flush())

    def _events(self, events: list[SSEEvent]) -> list[ir.Event]:
        out: list[ir.Event] = []
        for ev in events:
            try:
                obj = orjson.loads(ev.data)
            except orjson.JSONDecodeError:
                out.append(ir.Error("api_error", MALFORMED, 502))
                break
            if not isinstance(obj, dict):
                continue
            kind = obj.get("type")
            index = _int(obj.get("output_index"))
            if kind == "response.created":
                response = obj.get("response") or {}
                out.append(
                    ir.Start(str(response.get("id") or ""), str(response.get("model") or ""))
                )
            elif kind == "response.output_item.added":
                item = obj.get("item") or {}
                itype = item.get("type")
                if itype == "message":
                    out.append(ir.BlockStart(index, "text"))
                elif itype == "function_call":
                    out.append(
                        ir.BlockStart(
                            index,
                            "tool_call",
                            str(item.get("call_id") or ""),
                            str(item.get("name") or ""),
                        )
                    )
                elif itype == "reasoning":
                    out.append(ir.BlockStart(index, "thinking"))
            elif kind == "response.output_item.done":
                out.append(ir.BlockStop(index))
            elif kind == "response.output_text.delta":
                out.append(ir.Delta(index, "text", str(obj.get("delta") or "")))
            elif kind == "response.function_call_arguments.delta":
                out.append(ir.Delta(index, "arguments", str(obj.get("delta") or "")))
            elif kind == "response.reasoning_summary_text.delta":
                out.append(ir.Delta(index, "thinking", str(obj.get("delta") or "")))
            elif kind in ("response.completed", "response.incomplete"):
                response = obj.get("response") or {}
                out += [usage(response.get("usage")), _finish(response)]
            elif kind in ("response.failed", "error"):
                out.append(_failure(obj))
                break
        return out


def _event_type(ev: SSEEvent) -> str | None:
    """OpenAI names every event on its `event:` line; the JSON's `type` where a proxy dropped it."""
    if ev.event:
        return ev.event
    head = ev.data[:80]
    start = head.find(b'"type":"')
    if start < 0:
        return None
    start += 8
    return head[start : head.find(b'"', start)].decode(errors="replace")


def _decode(raw: bytes) -> list[ir.Event]:
    return StreamDecoder().feed(raw)


class ResponsesScan(PassthroughScan):
    """The final event (`response.completed` / `response.incomplete`) carries the usage and ends
    the stream: it is held back and goes out, with the cost merged into its usage, after the
    settlement. `response.failed` and `error` are the vendor's own failure events."""

    def seen(self, ev: SSEEvent) -> Seen:
        kind = _event_type(ev)
        if kind in _FINAL:
            return Seen.FINAL_END
        return Seen.ERROR if kind in _FAILED else Seen.PLAIN

    def failure(self, data: bytes) -> str:
        return _failure(orjson.loads(data)).message

    def add_cost(self, ev: SSEEvent, extra_usage: Mapping[str, Any]) -> bytes:
        if b'"usage":{' not in ev.data:  # nothing to add the cost to
            return ev.raw
        obj = orjson.loads(ev.data)
        obj["response"]["usage"].update(extra_usage)
        return encode(orjson.dumps(obj), ev.event)


def _ours(item: object) -> bool:
    """A reasoning item whose encrypted_content the gateway issued for another vendor."""
    if not isinstance(item, dict) or item.get("type") != "reasoning":
        return False
    blob = item.get("encrypted_content")
    return isinstance(blob, str) and blob.startswith(BLOB_PREFIX)


def _input_for_openai(items: list[Any]) -> list[Any]:
    """The client's input as OpenAI can read it: reasoning another vendor did left out (OpenAI
    refuses encrypted content it did not issue), and a compaction the gateway sealed (another
    vendor compacted) given as the summary's text in a user message."""
    out: list[Any] = []
    for item in items:
        if _ours(item):
            continue
        if isinstance(item, dict) and item.get("type") == "compaction":
            blob = item.get("encrypted_content")
            if compaction.is_sealed(blob):
                try:
                    text = compaction.expanded(str(blob))
                except ValueError:
                    continue  # refused by the parser before this: cannot happen
                part = {"type": "input_text", "text": text}
                item = {"type": "message", "role": "user", "content": [part]}
        out.append(item)
    return out


class ResponsesPassthrough(OpenAICompatible):
    """The Responses side of the OpenAI adapter: requests, answers and errors on its wire.
    (Errors share the Chat Completions shape, so `parse_error` is the inherited one.)"""

    path = "/responses"

    def passthrough_request(self, body: JSON, req: ir.Request, via: Passthrough) -> UpstreamRequest:
        # The gateway keeps nothing; what OpenAI stored would belong to the operator's account.
        body = {**body, "model": req.model, "store": False}
        if req.server_tools or req.fast_path_server_tools:
            # The hold counts SERVER_TOOL_PASSES passes; OpenAI sets no limit of its own.
            asked = body.get("max_tool_calls")
            cap = ir.SERVER_TOOL_PASSES - 1
            fits = type(asked) is int and 0 <= asked <= cap
            body["max_tool_calls"] = asked if fits else cap
        items = body.get("input")
        if isinstance(items, list):  # the conversation may have changed models
            body["input"] = _input_for_openai(items)
        return UpstreamRequest(
            "POST",
            via.base_url.rstrip("/") + self.path,
            {"authorization": "Bearer " + via.api_key, "content-type": "application/json"},
            orjson.dumps(body),
            max_output=req.max_tokens,
        )

    def passthrough_scan(
        self, on_usage: base.UsageSink, *, client_usage: bool, choices: int = 1
    ) -> ResponsesScan:
        return ResponsesScan(_decode, on_usage)

    def parse_response(self, body: bytes, *, content: bool = True) -> list[ir.Event]:
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict):
            return [ir.Error("api_error", MALFORMED, 502)]
        return response_events(obj)


class CompactPassthrough(ResponsesPassthrough):
    """`/responses/compact`: one JSON answer (a `response.compaction` object, usage included),
    never a stream; OpenAI keeps nothing of it, so `store` is not sent."""

    path = "/responses/compact"

    def passthrough_request(self, body: JSON, req: ir.Request, via: Passthrough) -> UpstreamRequest:
        call = super().passthrough_request(body, req, via)
        sent = orjson.loads(call.body)
        sent.pop("store", None)
        call.body = orjson.dumps(sent)
        return call


RESPONSES = ResponsesPassthrough()
COMPACT = CompactPassthrough()


def input_tokens_request(
    body: JSON, upstream_model: str, *, api_key: str, base_url: str
) -> UpstreamRequest:
    """OpenAI's own count of a Responses body's input (`POST /responses/input_tokens`)."""
    body = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
    return UpstreamRequest(
        method="POST",
        url=base_url.rstrip("/") + "/responses/input_tokens",
        headers={"authorization": f"Bearer {api_key}", "content-type": "application/json"},
        body=orjson.dumps({**body, "model": upstream_model}),
    )


def parse_input_tokens(body: bytes) -> int:
    return int(orjson.loads(body).get("input_tokens", 0))


class OpenAIVendor(OpenAICompatible):
    """OpenAI itself: Chat Completions clients on its chat wire, Responses clients on its
    Responses API, both passed through."""

    def passthrough(self, client_format: str) -> base.Vendor | None:
        if client_format == RESPONSES_FORMAT:
            return RESPONSES
        if client_format == COMPACT_FORMAT:
            return COMPACT
        return super().passthrough(client_format)


OPENAI_VENDOR = OpenAIVendor()

__all__ = [
    "OPENAI_VENDOR",
    "RESPONSES",
    "ResponsesScan",
    "StreamDecoder",
    "response_events",
    "usage",
]
