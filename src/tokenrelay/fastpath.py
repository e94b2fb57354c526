"""Same-format pass-through: the client speaks the vendor's own API.

Bytes go through unchanged except the model name (rewritten to the upstream id) and, for
OpenAI-format streams, `stream_options.include_usage` (always asked for, for billing; the extra
usage chunk is dropped again when the client did not ask). Usage is read with a cheap scan: only
the few events that carry it are parsed. Vendor fields the IR does not know survive untouched.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson

from tokenrelay import ir
from tokenrelay.asgi import JSON_HEADERS, Receive, Send, send_bytes
from tokenrelay.errors import GatewayError
from tokenrelay.frontends.base import Frontend
from tokenrelay.reasoning_cache import ReasoningCache, remember
from tokenrelay.sse import SSEParser, encode
from tokenrelay.vendors.base import UpstreamRequest
from tokenrelay.vendors.openai import choice_count

if TYPE_CHECKING:
    from tokenrelay.relay import Prepared, Relay

ANTHROPIC_VERSION = "2023-06-01"


def native_call(p: Prepared, cache: ReasoningCache) -> UpstreamRequest:
    ep, body = p.endpoint, dict(p.payload)
    body["model"] = p.req.model
    if ep.name == "anthropic":
        headers = {
            "x-api-key": ep.api_key,
            "anthropic-version": p.headers.get("anthropic-version", ANTHROPIC_VERSION),
            "content-type": "application/json",
            **p.req.passthrough_headers,
        }
        return UpstreamRequest(
            "POST",
            ep.base_url + "/v1/messages",
            headers,
            orjson.dumps(body),
            max_output=p.req.max_tokens,
        )
    if body.get("stream") is True:
        opts = body.get("stream_options")
        body["stream_options"] = {**(opts if isinstance(opts, dict) else {}), "include_usage": True}
    if ep.name == "deepseek":
        _deepseek_overrides(p, body, cache)
    headers = {"authorization": "Bearer " + ep.api_key, "content-type": "application/json"}
    return UpstreamRequest(
        "POST",
        ep.base_url + "/chat/completions",
        headers,
        orjson.dumps(body),
        max_output=p.req.max_tokens,
        choices=choice_count(body),
    )


def _deepseek_overrides(p: Prepared, body: dict[str, Any], cache: ReasoningCache) -> None:
    """deepseek-reasoner → thinking on; replay reasoning_content the client dropped."""
    if p.resolved.thinking is not None and "thinking" not in body:
        body["thinking"] = {"type": "enabled" if p.resolved.thinking else "disabled"}
    messages = body.get("messages")
    if not isinstance(messages, list):
        return
    restored = []
    for msg in messages:
        if (
            isinstance(msg, dict)
            and msg.get("role") == "assistant"
            and msg.get("tool_calls")
            and not msg.get("reasoning_content")
        ):
            calls = msg["tool_calls"]
            state = None
            for call in calls if isinstance(calls, list) else []:
                if isinstance(call, dict) and isinstance(call.get("id"), str):
                    state = cache.get(call["id"])
                    if state is not None:
                        break
            if state is not None and state.vendor == "deepseek":
                text = "".join(t.text for t in state.thinking if isinstance(t, ir.Thinking))
                msg = {**msg, "reasoning_content": text}
        restored.append(msg)
    body["messages"] = restored


async def serve(
    relay: Relay, frontend: Frontend, p: Prepared, receive: Receive, send: Send
) -> None:
    call = p.call
    assert call is not None
    if not p.ctx.stream:
        await _unary(relay, frontend, p, call, send)
    else:
        await _stream(relay, frontend, p, call, receive, send)


async def _unary(
    relay: Relay, frontend: Frontend, p: Prepared, call: UpstreamRequest, send: Send
) -> None:
    ep, ctx = p.endpoint, p.ctx
    data = await relay.fetch(ep, call, ctx)
    events = ep.adapter.parse_response(data)
    for ev in events:
        if isinstance(ev, ir.Usage):
            ctx.apply_usage(ev)
    folded = ir.fold(events)
    if folded.error is not None:
        raise GatewayError.from_ir(folded.error)
    if ep.name == "deepseek":
        remember(relay.reasoning, ep.name, folded)
    ctx.finish("ok")
    await relay.meter.settle(p)  # committed before the client can have the answer
    headers = [*JSON_HEADERS, *relay.response_headers(p), *relay.meter.cost_headers(p)]
    ctx.mark_first_byte()
    ctx.response_started = True
    await send_bytes(send, 200, data, headers)


async def _stream(
    relay: Relay,
    frontend: Frontend,
    p: Prepared,
    call: UpstreamRequest,
    receive: Receive,
    send: Send,
) -> None:
    from tokenrelay.relay import SHUTTING_DOWN, DisconnectWatch, send_chunk

    ep, ctx = p.endpoint, p.ctx
    async with await relay.open_upstream(ep, call, ctx) as resp:
        scan: _Scan = _AnthropicScan(relay, p) if ep.name == "anthropic" else _OpenAIScan(relay, p)
        await relay.start_stream(send, p)
        parser = SSEParser()
        drain = relay.settings.on_disconnect == "drain"
        async with DisconnectWatch(receive, cancel=not drain) as watch:
            try:
                async for chunk in resp.content.iter_any():
                    out = scan.process(parser.feed(chunk))
                    if out and not watch.disconnected:
                        ctx.mark_first_byte()
                        await send_chunk(send, out)
                    if scan.failed:
                        break
                out = scan.process(parser.flush())
            except asyncio.CancelledError:
                watch.swallow_cancel()
                resp.close()  # hang up on the vendor: nobody reads the rest
                if watch.disconnected:
                    scan.settle_incomplete("cancelled", "client disconnected")
                    return
                # The server's shutdown grace ran out: end the stream the format's way (after
                # what was delivered, which is billed).
                scan.settle_incomplete("cancelled", "gateway shutting down")
                renderer = frontend.stream_renderer(request_id=ctx.request_id, include_usage=False)
                await send_chunk(send, renderer.error(SHUTTING_DOWN), more=False)
                return
            except OSError as exc:  # connection failures and timeouts
                out = b""
                scan.failed = f"Upstream connection failed: {type(exc).__name__}"
        if watch.disconnected:  # drained: bill the vendor's own final usage if it came
            if scan.done:
                ctx.finish("cancelled", "client disconnected")
            else:
                scan.settle_incomplete("cancelled", "client disconnected")
            return
        if scan.failed or not scan.done:
            reason = scan.failed or "Upstream stream ended before completion."
            scan.settle_incomplete("error", reason)
            if not scan.error_forwarded:
                out += frontend.stream_renderer(
                    request_id=ctx.request_id, include_usage=False
                ).error(GatewayError("api_error", reason, 502))
            await send_chunk(send, out, more=False)
            return
        ctx.finish("ok")
        try:
            await relay.meter.settle(p)  # committed before the client sees the end
        except GatewayError as err:  # not billed: the client must not get a whole answer
            renderer = frontend.stream_renderer(request_id=ctx.request_id, include_usage=False)
            await send_chunk(send, out + renderer.error(err), more=False)
            return
        await send_chunk(send, out + scan.render_tail(), more=False)


class _Scan:
    """Watches the vendor's events go by: usage, completion, errors; keeps raw for estimates.

    From the event that carries the final usage on, events are held back in `tail`: they go
    out (with the cost added) only after the settlement has committed."""

    def __init__(self, relay: Relay, p: Prepared) -> None:
        self.relay, self.p = relay, p
        self.done = False
        self.failed: str | None = None
        self.error_forwarded = False
        self.raw: list[bytes] = []
        self.tail: list[Any] = []

    def process(self, events: list[Any]) -> bytes:
        raise NotImplementedError

    def render_tail(self) -> bytes:
        raise NotImplementedError

    def apply_usage_from(self, raw: bytes) -> None:
        decoder = self.p.endpoint.adapter.stream_decoder(UpstreamRequest("POST", "", {}, b""))
        for ev in decoder.feed(raw):
            if isinstance(ev, ir.Usage):
                self.p.ctx.apply_usage(ev)

    def settle_incomplete(self, status: Any, reason: str) -> None:
        """Recover the generated text from what passed by, so the estimate can bill it."""
        decoder = self.p.endpoint.adapter.stream_decoder(UpstreamRequest("POST", "", {}, b""))
        for ev in decoder.feed(b"".join(self.raw)):
            if isinstance(ev, ir.Delta) and ev.kind != "signature":
                self.p.ctx.note_output(ev.value)
        self.p.ctx.finish(status, reason, complete=False)


class _AnthropicScan(_Scan):
    def process(self, events: list[Any]) -> bytes:
        out = bytearray()
        for ev in events:
            name = ev.event
            if self.tail or name == "message_delta":
                if name == "message_delta":
                    self.apply_usage_from(ev.raw)
                elif name == "message_stop":
                    self.done = True
                elif name == "error":
                    self.failed = _error_message(ev.data)
                    self.error_forwarded = True
                    out += b"".join(e.raw for e in self.tail) + ev.raw
                    self.tail.clear()
                    continue
                self.tail.append(ev)
                continue
            self.raw.append(ev.raw)
            if name == "message_start":
                self.apply_usage_from(ev.raw)
            elif name == "error":
                self.failed = _error_message(ev.data)
                self.error_forwarded = True
            out += ev.raw
        return bytes(out)

    def render_tail(self) -> bytes:
        out = bytearray()
        extra = self.relay.meter.extra_usage(self.p)
        for ev in self.tail:
            if ev.event == "message_delta" and extra:
                msg = orjson.loads(ev.data)
                msg.setdefault("usage", {}).update(extra)
                out += encode(orjson.dumps(msg), "message_delta")
            else:
                out += ev.raw
        return bytes(out)


class _OpenAIScan(_Scan):
    def __init__(self, relay: Relay, p: Prepared) -> None:
        super().__init__(relay, p)
        opts = p.payload.get("stream_options")
        self.client_usage = isinstance(opts, dict) and opts.get("include_usage") is True
        # DeepSeek's reasoning must be remembered for its next tool turn: decode it all.
        self.decoder = (
            p.endpoint.adapter.stream_decoder(UpstreamRequest("POST", "", {}, b""))
            if p.endpoint.name == "deepseek"
            else None
        )
        self.events: list[ir.Event] = []

    def process(self, events: list[Any]) -> bytes:
        out = bytearray()
        for ev in events:
            data = ev.data
            if data == b"[DONE]":
                self.done = True
                if self.decoder is not None:
                    remember(self.relay.reasoning, "deepseek", ir.fold(self.events))
                self.tail.append(ev)
                continue
            self.raw.append(ev.raw)
            if self.decoder is not None:
                self.events.extend(self.decoder.feed(ev.raw))
            if data.startswith(b'{"error"'):
                self.failed = _error_message(data)
                self.error_forwarded = True
                out += ev.raw
                continue
            if b'"usage":{' in data or b'"usage": {' in data:
                self.apply_usage_from(ev.raw)
                usage_only = b'"choices":[]' in data or b'"choices": []' in data
                if not (usage_only and not self.client_usage):
                    self.tail.append(ev)
                continue
            if self.tail:
                self.tail.append(ev)
                continue
            out += ev.raw
        return bytes(out)

    def render_tail(self) -> bytes:
        out = bytearray()
        extra = self.relay.meter.extra_usage(self.p)
        for ev in self.tail:
            data = ev.data
            if extra and (b'"usage":{' in data or b'"usage": {' in data):
                chunk = orjson.loads(data)
                chunk["usage"].update(extra)
                out += encode(orjson.dumps(chunk))
            else:
                out += ev.raw
        return bytes(out)


def _error_message(data: bytes) -> str:
    try:
        err = orjson.loads(data).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return "upstream error"
    if isinstance(err, dict):
        return str(err.get("message") or err.get("type") or "upstream error")
    return str(err or "upstream error")
