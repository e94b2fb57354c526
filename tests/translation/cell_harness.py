"""Shared machinery for the translation cells: tests/translation/test_<client>_to_<vendor>.py.

One cell = one client API (the frontend codec) × one vendor (the adapter). A cell takes the
recorded vendor exchanges in shared/fixtures/vendor-recordings/, runs the vendor bytes through
the adapter into IR events the way relay.py does (`_stream`: decoder → renderer, `end()` after
a Finish, `error()` on an ir.Error or a stream without Finish; `_unary`: parse → fold → render)
and checks what the client receives four ways:

- golden: the client-format events, compact and with volatile ids normalised, in
  golden/<client>_to_<vendor>/<case>.json (UPDATE_GOLDEN=1 rewrites them; read the diff);
- wire format: structural rules of the client API (block/tool-call indexes, first chunk,
  terminator, envelope) checked on every rendered stream, so a golden cannot bless a bug there;
- SDK: the official SDK parses the rendered bytes and must see what the vendor said — text,
  reasoning, tool calls, stop reason, usage — where "what the vendor said" is read from the
  raw recording independently of src/ (the vendor's own SDK for Anthropic and the
  OpenAI-compatible vendors, a plain JSON walk for Gemini) and mapped per VENDORS.md §6;
- errors: mid-stream failures become the client's error event (no fake terminator) and the SDK
  raises; HTTP errors get the right status, error type and SDK exception class.

Besides the recordings, every vendor gets two *derived* cases, `parallel_tool_call(_stream)`:
its recorded tool call plus a second parallel call, in the shape VENDORS.md documents for that
vendor (Anthropic: a second tool_use block; OpenAI/DeepSeek: call 1 streamed after call 0 under
`index: 1`; xAI: a second whole call; Gemini: a second functionCall part in the same chunk,
without thoughtSignature). No vendor recording shows parallel calls, and tool-call indexes are
where translators break.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson

from frontends.frontend_harness import anthropic_client, openai_client
from paths import RECORDINGS
from tokenrelay import ir
from tokenrelay.errors import GatewayError
from tokenrelay.frontends.anthropic.frontend import ANTHROPIC_FRONTEND
from tokenrelay.frontends.base import Frontend
from tokenrelay.frontends.chat.frontend import OPENAI_FRONTEND
from tokenrelay.vendors.anthropic import ANTHROPIC
from tokenrelay.vendors.base import UpstreamRequest, Vendor
from tokenrelay.vendors.deepseek import DEEPSEEK
from tokenrelay.vendors.gemini import GEMINI
from tokenrelay.vendors.openai import OPENAI
from tokenrelay.vendors.xai import XAI

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
REQUEST_ID = "req_translation_test"

ADAPTERS: dict[str, Vendor] = {
    "anthropic": ANTHROPIC,
    "openai": OPENAI,
    "gemini": GEMINI,
    "xai": XAI,
    "deepseek": DEEPSEEK,
}
FRONTENDS: dict[str, Frontend] = {"anthropic": ANTHROPIC_FRONTEND, "openai": OPENAI_FRONTEND}

# Recording kinds a vendor may lack; a cell declares its gaps and `check_gaps` keeps it honest.
KINDS: dict[str, tuple[str, ...]] = {
    "text": ("text",),
    "text_stream": ("text_stream",),
    "tool_call": ("tool_call",),
    "tool_call_stream": ("tool_call_stream",),
    "reasoning": ("thinking", "reasoning"),
    "reasoning_stream": ("thinking_stream", "reasoning_stream"),
    "midstream_error": ("midstream_error",),
}

# VENDORS.md §6.2 #18 — the spec, restated here so that src/ is checked against it, not itself.
FINISH_TO_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
STOP_TO_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
GEMINI_REFUSALS = frozenset(
    ["SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"]
)
ANTHROPIC_TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
_GENERATED = {
    re.compile(r"^msg_[0-9a-f]{32}$"): "msg_<generated>",
    re.compile(r"^chatcmpl-[0-9a-f]{32}$"): "chatcmpl-<generated>",
}

# ============================================================================ recordings


@dataclass(frozen=True, slots=True)
class Recording:
    vendor: str
    case: str  # the file name after "<vendor>__" without suffix, or a derived case name
    stream: bool
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def recorded_cases(vendor: str) -> list[str]:
    names = sorted(p.name.removeprefix(f"{vendor}__") for p in RECORDINGS.glob(f"{vendor}__*"))
    return [
        n.removesuffix(".json").removesuffix(".sse")
        for n in names
        if not n.endswith(".request.json")
    ]


@functools.cache
def load(vendor: str, case: str) -> Recording:
    if case.startswith("parallel_"):
        return _derive_parallel(load(vendor, case.removeprefix("parallel_")))
    sse = RECORDINGS / f"{vendor}__{case}.sse"
    if sse.exists():
        return Recording(vendor, case, True, 200, sse.read_bytes())
    exchange = json.loads((RECORDINGS / f"{vendor}__{case}.json").read_text())
    resp = exchange["response"]
    body = json.dumps(resp["body"]).encode()
    return Recording(vendor, case, False, resp["status"], body, dict(resp.get("headers") or {}))


# ============================================================================ the pipeline


@dataclass(slots=True)
class Rendered:
    """What the client receives: status, body bytes (SSE or JSON), and the Retry-After value
    the relay turns into a header (`GatewayError.retry_after`)."""

    status: int
    body: bytes
    stream: bool
    retry_after: float | None = None


def translate(client: str, rec: Recording) -> Rendered:
    """The vendor answer as the client gets it, step for step as relay.py renders it."""
    adapter, frontend = ADAPTERS[rec.vendor], FRONTENDS[client]
    if rec.status != 200:
        return _render_error(frontend, adapter.parse_error(rec.status, rec.body, rec.headers))
    if not rec.stream:
        folded = ir.fold(adapter.parse_response(rec.body))
        if folded.error is not None:
            return _render_error(frontend, folded.error)
        body = frontend.render_response(folded, request_id=REQUEST_ID, extra_usage={})
        return Rendered(200, orjson.dumps(body), stream=False)
    decoder = adapter.stream_decoder(UpstreamRequest("POST", "http://upstream", {}, b""))
    renderer = frontend.stream_renderer(request_id=REQUEST_ID, include_usage=True)
    usage = ir.UsageTotals()
    out, finished = b"", False
    for ev in decoder.feed(rec.body) + decoder.close():
        if isinstance(ev, ir.Error):
            return Rendered(200, out + renderer.error(GatewayError.from_ir(ev)), stream=True)
        if isinstance(ev, ir.Usage):
            usage.apply(ev)
        finished |= isinstance(ev, ir.Finish)
        out += renderer.render(ev)
    if not finished:
        err = GatewayError("api_error", "Upstream stream ended early.", 502)
        return Rendered(200, out + renderer.error(err), stream=True)
    return Rendered(200, out + renderer.end(usage, {}), stream=True)


def _render_error(frontend: Frontend, error: ir.Error) -> Rendered:
    err = GatewayError.from_ir(error)
    status, body = frontend.render_error(err)
    return Rendered(status, orjson.dumps(body), stream=False, retry_after=err.retry_after)


# ============================================================================ SSE, both ways


def sse_events(raw: bytes) -> list[dict[str, str]]:
    """Field dicts of the events in `raw` (LF or CRLF framing; comments skipped)."""
    events = []
    for block in raw.decode().replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line and not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
        if fields:
            events.append(fields)
    return events


def _sse_bytes(events: list[tuple[str | None, Any]], sep: str = "\n\n") -> bytes:
    out = []
    for name, data in events:
        payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
        out.append((f"event: {name}\n" if name else "") + f"data: {payload}{sep}")
    return "".join(out).encode()


# ============================================================================ golden files


def client_events(client: str, rendered: Rendered) -> dict[str, Any]:
    """The golden form of a rendered answer, after checking the client API's framing."""
    if not rendered.stream:
        golden: dict[str, Any] = {"status": rendered.status}
        if rendered.retry_after is not None:
            golden["retry_after"] = rendered.retry_after
        body = _normalise(orjson.loads(rendered.body))
        if body.get("object") == "chat.completion":
            assert isinstance(body["created"], int)
            body["created"] = "<unix time>"
        golden["body"] = body
        return golden
    text = rendered.body.decode()
    assert text.endswith("\n\n") and "\r" not in text, "every event ends with a blank line"
    blocks = text[:-2].split("\n\n")
    if client == "anthropic":
        return {"events": [_anthropic_event(b) for b in blocks]}
    datas = []
    for block in blocks:
        assert block.startswith("data: ") and "\n" not in block, f"one data line: {block!r}"
        datas.append(block.removeprefix("data: "))
    return _openai_events(datas)


def _anthropic_event(block: str) -> dict[str, Any]:
    lines = block.split("\n")
    assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: ")
    data = json.loads(lines[1].removeprefix("data: "))
    assert data["type"] == lines[0].removeprefix("event: "), "event name == data.type"
    return _normalise(data)


def _openai_events(datas: list[str]) -> dict[str, Any]:
    """Chunk envelopes (id, object, created, model) must be identical on every chunk; the
    golden keeps them once and each chunk without them."""
    envelope: dict[str, Any] | None = None
    events: list[Any] = []
    for data in datas:
        if data == "[DONE]":
            events.append(data)
            continue
        chunk = json.loads(data)
        if "error" in chunk:
            events.append(chunk)
            continue
        head = {k: chunk.pop(k) for k in ("id", "object", "created", "model")}
        assert head["object"] == "chat.completion.chunk" and isinstance(head["created"], int)
        assert head["id"].startswith("chatcmpl-")
        envelope = envelope or head
        assert head == envelope, "id, created and model repeat unchanged on every chunk"
        events.append(chunk)
    head = _normalise(dict(envelope or {}))
    if head:
        head["created"] = "<unix time>"
    return {"chunk_envelope": head, "events": events}


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, str):
        for pattern, placeholder in _GENERATED.items():
            if pattern.match(value):
                return placeholder
    return value


def dump_golden(golden: dict[str, Any]) -> str:
    """Readable and diffable: stream events one compact JSON per line, bodies indented."""
    parts = []
    for key, value in golden.items():
        if key == "events":
            lines = ",\n".join("    " + _compact(e) for e in value)
            parts.append(f'  "events": [\n{lines}\n  ]')
        elif key == "body":
            body = json.dumps(value, indent=2, ensure_ascii=False).replace("\n", "\n  ")
            parts.append(f'  "body": {body}')
        else:
            parts.append(f"  {json.dumps(key)}: {_compact(value)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# ============================================================================ wire-format rules


def check_anthropic_stream(events: list[dict[str, Any]]) -> None:
    """docs.anthropic.com streaming: message_start, then blocks 0,1,2… each start → deltas of
    the block's own type → stop, then message_delta + message_stop — or an error, then nothing."""
    assert events[0]["type"] == "message_start"
    message = events[0]["message"]
    assert message["content"] == [] and message["stop_reason"] is None
    assert message["id"].startswith("msg_") and isinstance(message["usage"]["input_tokens"], int)
    delta_types = {
        "text": {"text_delta"},
        "thinking": {"thinking_delta", "signature_delta"},
        "tool_use": {"input_json_delta"},
        "redacted_thinking": set(),
    }
    open_block: tuple[int, str] | None = None
    next_index = 0
    body = [e for e in events[1:] if e["type"] != "ping"]
    for i, ev in enumerate(body):
        kind = ev["type"]
        if kind == "error":
            assert i == len(body) - 1, "nothing follows an error event"
            assert set(ev["error"]) >= {"type", "message"}
            return
        if kind == "content_block_start":
            assert open_block is None and ev["index"] == next_index, "blocks 0,1,2… in order"
            block = ev["content_block"]
            if block["type"] == "tool_use":
                assert block["input"] == {} and ANTHROPIC_TOOL_ID.match(block["id"])
            open_block, next_index = (ev["index"], block["type"]), next_index + 1
        elif kind == "content_block_delta":
            assert open_block is not None and ev["index"] == open_block[0]
            assert ev["delta"]["type"] in delta_types[open_block[1]]
        elif kind == "content_block_stop":
            assert open_block is not None and ev["index"] == open_block[0]
            open_block = None
        else:
            assert open_block is None, f"{kind} inside an open block"
            assert [e["type"] for e in body[i:]] == ["message_delta", "message_stop"]
            assert body[i]["delta"]["stop_reason"] in STOP_TO_FINISH
            assert isinstance(body[i]["usage"]["output_tokens"], int)
            return
    raise AssertionError("stream ended without message_stop or error")


def check_openai_stream(events: list[Any]) -> None:
    """platform.openai.com chat streaming: role first; tool call k = `index: k` (0,1,… in
    order), id/type/name only on its first fragment; one finish chunk with an empty delta; the
    `choices: []` usage chunk; [DONE] — or an error object and nothing after it."""
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    calls: list[int] = []
    finished = False
    for i, ev in enumerate(events):
        if ev == "[DONE]":
            assert i == len(events) - 1 and finished, "[DONE] ends a finished stream"
            return
        if "error" in ev:
            assert i == len(events) - 1, "nothing follows an error chunk"
            assert set(ev["error"]) == {"message", "type", "param", "code"}
            return
        if not ev["choices"]:
            assert finished and ev["usage"]["total_tokens"] >= 0, "usage chunk after finish"
            continue
        (choice,) = ev["choices"]
        assert choice["index"] == 0 and not finished, "nothing after the finish chunk but usage"
        if choice["finish_reason"] is not None:
            assert choice["delta"] == {} and choice["finish_reason"] in FINISH_TO_STOP
            finished = True
        for frag in choice["delta"].get("tool_calls") or ():
            if frag["index"] == len(calls):  # a new call: announced whole
                assert frag.get("id") and frag["type"] == "function" and frag["function"]["name"]
                calls.append(frag["index"])
            else:
                assert calls and frag["index"] == calls[-1], f"call index {frag['index']}?"
                assert set(frag) == {"index", "function"} and set(frag["function"]) == {"arguments"}
    raise AssertionError("stream ended without [DONE] or error")


# ============================================================================ what the SDKs see


@dataclass(slots=True)
class View:
    """An answer as a client program sees it, in the client API's own vocabulary."""

    text: str
    reasoning: str
    tool_calls: list[tuple[str | None, str, Any]]  # id (None: vendor has none), name, args
    stop: str | None
    usage: dict[str, int]


def anthropic_view(msg: anthropic.types.Message) -> View:
    u = msg.usage
    return View(
        text="".join(b.text for b in msg.content if b.type == "text"),
        reasoning="".join(b.thinking for b in msg.content if b.type == "thinking"),
        tool_calls=[(b.id, b.name, b.input) for b in msg.content if b.type == "tool_use"],
        stop=msg.stop_reason,
        usage={
            "input_tokens": u.input_tokens,
            "cache_creation_input_tokens": u.cache_creation_input_tokens or 0,
            "cache_read_input_tokens": u.cache_read_input_tokens or 0,
            "output_tokens": u.output_tokens,
        },
    )


def openai_view(completion: Any) -> View:
    choice = completion.choices[0]
    msg = choice.message
    u = completion.usage
    usage = {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "cached_tokens": (u.prompt_tokens_details and u.prompt_tokens_details.cached_tokens) or 0,
    }
    details = u.completion_tokens_details
    if details is not None and details.reasoning_tokens is not None:
        usage["reasoning_tokens"] = details.reasoning_tokens
    extra = msg.model_extra or {}
    return View(
        text=msg.content or "",
        reasoning=extra.get("reasoning_content") or "",
        tool_calls=[
            (c.id, c.function.name, json.loads(c.function.arguments)) for c in msg.tool_calls or ()
        ],
        stop=choice.finish_reason,
        usage=usage,
    )


def sdk_read(client: str, body: bytes, *, stream: bool) -> Any:
    """The official SDK's final object for `body`: anthropic Message / openai (Parsed)Completion."""
    if client == "anthropic":
        claude = anthropic_client(body) if stream else anthropic_client(orjson.loads(body))
        if not stream:
            return claude.messages.create(model="m", max_tokens=8, messages=[])
        with claude.messages.stream(model="m", max_tokens=8, messages=[]) as s:
            return s.get_final_message()
    gpt = openai_client(body) if stream else openai_client(orjson.loads(body))
    if not stream:
        return gpt.chat.completions.create(model="m", messages=[])
    with gpt.chat.completions.stream(model="m", messages=[]) as s:
        try:
            return s.get_final_completion()
        except openai.LengthFinishReasonError as cut:  # raised for any finish_reason "length"
            return cut.completion


def sdk_view(client: str, rendered: Rendered) -> View:
    final = sdk_read(client, rendered.body, stream=rendered.stream)
    return anthropic_view(final) if client == "anthropic" else openai_view(final)


# ---------------------------------------------------------------- the vendor's own word


@dataclass(slots=True)
class Truth:
    """What the vendor said, in neutral terms: usage per VENDORS.md §6.2 #19 (input excludes
    cache reads, output includes reasoning), stop reason in Anthropic vocabulary (§6.2 #18)."""

    text: str
    reasoning: str
    tool_calls: list[tuple[str | None, str, Any]]
    stop: str
    input: int
    cache_read: int
    cache_write: int
    output: int
    reasoning_tokens: int | None
    vendor_total: int | None  # the vendor's own total_tokens / totalTokenCount


@functools.cache
def truth_of(vendor: str, case: str) -> Truth:
    return vendor_truth(load(vendor, case))


def vendor_truth(rec: Recording) -> Truth:
    if rec.vendor == "anthropic":
        return _anthropic_truth(rec)
    if rec.vendor == "gemini":
        return _gemini_truth(rec)
    return _openai_compatible_truth(rec)


def _anthropic_truth(rec: Recording) -> Truth:
    msg = sdk_read("anthropic", rec.body, stream=rec.stream)
    view, u = anthropic_view(msg), msg.usage
    details = getattr(u, "output_tokens_details", None)
    return Truth(
        view.text,
        view.reasoning,
        view.tool_calls,
        str(msg.stop_reason),
        input=u.input_tokens,
        cache_read=u.cache_read_input_tokens or 0,
        cache_write=u.cache_creation_input_tokens or 0,
        output=u.output_tokens,
        reasoning_tokens=getattr(details, "thinking_tokens", None),
        vendor_total=None,
    )


def _openai_compatible_truth(rec: Recording) -> Truth:
    completion = sdk_read("openai", rec.body, stream=rec.stream)
    view = openai_view(completion)
    raw = completion.usage.model_dump()
    cached = view.usage["cached_tokens"]
    if rec.vendor == "deepseek":
        cached = raw["prompt_cache_hit_tokens"]  # VENDORS.md §5
    reasoning = view.usage.get("reasoning_tokens")
    output = raw["completion_tokens"]
    if rec.vendor == "xai":
        output += reasoning or 0  # VENDORS.md §4: completion_tokens excludes reasoning
    return Truth(
        view.text,
        view.reasoning,
        view.tool_calls,
        FINISH_TO_STOP[str(view.stop)],
        input=raw["prompt_tokens"] - cached,
        cache_read=cached,
        cache_write=0,
        output=output,
        reasoning_tokens=reasoning,
        vendor_total=raw["total_tokens"],
    )


def _gemini_truth(rec: Recording) -> Truth:
    chunks = [json.loads(e["data"]) for e in sse_events(rec.body)] if rec.stream else []
    chunks = chunks or [json.loads(rec.body)]
    text, thoughts, calls, finish, usage = "", "", [], "", {}
    for chunk in chunks:
        cand = chunk["candidates"][0]
        for part in cand["content"]["parts"]:
            if "functionCall" in part:
                fc = part["functionCall"]
                calls.append((fc.get("id"), fc["name"], fc.get("args", {})))
            elif part.get("thought"):
                thoughts += part.get("text", "")
            else:
                text += part.get("text", "")
        finish = cand.get("finishReason", finish)
        usage = chunk.get("usageMetadata", usage)  # cumulative: the last one is final
    stop = "end_turn"
    if finish == "MAX_TOKENS":
        stop = "max_tokens"
    elif finish in GEMINI_REFUSALS:
        stop = "refusal"
    elif calls:
        stop = "tool_use"  # Gemini says STOP for calls too (VENDORS.md §6.2 #18)
    cached = usage.get("cachedContentTokenCount", 0)
    thought_tokens = usage.get("thoughtsTokenCount", 0)
    return Truth(
        text,
        thoughts,
        calls,
        stop,
        input=usage["promptTokenCount"] - cached,
        cache_read=cached,
        cache_write=0,
        output=usage.get("candidatesTokenCount", 0) + thought_tokens,
        reasoning_tokens=thought_tokens,
        vendor_total=usage["totalTokenCount"],
    )


def expected_view(client: str, truth: Truth) -> View:
    if client == "anthropic":
        usage = {
            "input_tokens": truth.input,
            "cache_creation_input_tokens": truth.cache_write,
            "cache_read_input_tokens": truth.cache_read,
            "output_tokens": truth.output,
        }
        return View(truth.text, truth.reasoning, truth.tool_calls, truth.stop, usage)
    prompt = truth.input + truth.cache_read + truth.cache_write
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": truth.output,
        "total_tokens": prompt + truth.output,
        "cached_tokens": truth.cache_read,
    }
    if truth.reasoning_tokens is not None:
        usage["reasoning_tokens"] = truth.reasoning_tokens
    stop = STOP_TO_FINISH[truth.stop]
    return View(truth.text, truth.reasoning, truth.tool_calls, stop, usage)


def partial_text(rec: Recording) -> str:
    """The answer text a failing stream delivered before its error event."""
    text = ""
    for ev in sse_events(rec.body):
        data = json.loads(ev["data"])
        if "error" in data or data.get("type") == "error":
            return text
        if rec.vendor == "anthropic":
            text += data.get("delta", {}).get("text", "")
        elif rec.vendor == "gemini":
            text += "".join(p.get("text", "") for p in data["candidates"][0]["content"]["parts"])
        else:
            text += "".join(c["delta"].get("content") or "" for c in data["choices"])
    raise AssertionError(f"{rec.vendor}__{rec.case} has no error event")


# ============================================================================ derived cases


def _second_call(call_id: str | None, args: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    return (call_id + "_2" if call_id else None), {**args, "second": True}


def _fragments(text: str) -> list[str]:
    third = max(len(text) // 3, 1)
    return [text[:third], text[third : 2 * third], text[2 * third :]]


def _derive_parallel(rec: Recording) -> Recording:
    derive: Callable[[Recording], bytes]
    if rec.vendor == "anthropic":
        derive = _anthropic_parallel_stream if rec.stream else _anthropic_parallel
    elif rec.vendor == "gemini":
        derive = _gemini_parallel_stream if rec.stream else _gemini_parallel
    else:
        derive = _openai_parallel_stream if rec.stream else _openai_parallel
    body = derive(rec)
    return Recording(rec.vendor, "parallel_" + rec.case, rec.stream, 200, body, rec.headers)


def _anthropic_parallel(rec: Recording) -> bytes:
    msg = json.loads(rec.body)
    (first,) = [b for b in msg["content"] if b["type"] == "tool_use"]
    call_id, args = _second_call(first["id"], first["input"])
    msg["content"].append({**first, "id": call_id, "input": args})
    return json.dumps(msg).encode()


_DELTA = {"type": "content_block_delta"}


def _anthropic_parallel_stream(rec: Recording) -> bytes:
    events = [(e["event"], json.loads(e["data"])) for e in sse_events(rec.body)]
    start = [d for _, d in events if d["type"] == "content_block_start"][-1]
    assert start["content_block"]["type"] == "tool_use", "the tool call is the last block"
    k = start["index"]
    args = json.loads(
        "".join(
            d["delta"].get("partial_json", "")
            for _, d in events
            if d["type"] == "content_block_delta" and d["index"] == k
        )
    )
    call_id, args2 = _second_call(start["content_block"]["id"], args)
    block = {**start["content_block"], "id": call_id}
    second: list[tuple[str | None, Any]] = [
        ("content_block_start", {**start, "index": k + 1, "content_block": block})
    ]
    for frag in ["", *_fragments(json.dumps(args2))]:  # the API's first fragment is ""
        delta = {"type": "input_json_delta", "partial_json": frag}
        second.append(("content_block_delta", {**_DELTA, "index": k + 1, "delta": delta}))
    second.append(("content_block_stop", {"type": "content_block_stop", "index": k + 1}))
    at = next(i for i, (_, d) in enumerate(events) if d["type"] == "message_delta")
    return _sse_bytes([*events[:at], *second, *events[at:]])


def _openai_parallel(rec: Recording) -> bytes:
    obj = json.loads(rec.body)
    calls = obj["choices"][0]["message"]["tool_calls"]
    first = calls[0]
    call_id, args = _second_call(first["id"], json.loads(first["function"]["arguments"]))
    second = {**first, "id": call_id, "function": {**first["function"]}}
    second["function"]["arguments"] = json.dumps(args)
    if "index" in first:  # DeepSeek numbers non-stream calls too
        second["index"] = 1
    calls.append(second)
    return json.dumps(obj).encode()


def _openai_parallel_stream(rec: Recording) -> bytes:
    """Call 1 streamed after call 0 (OpenAI, DeepSeek: announced, then argument fragments;
    xAI: one whole delta) — VENDORS.md §2.4, §4, §5."""
    datas = [e["data"] for e in sse_events(rec.body)]
    chunks = [json.loads(d) if d != "[DONE]" else d for d in datas]
    with_calls = [
        i
        for i, c in enumerate(chunks)
        if c != "[DONE]" and c["choices"] and c["choices"][0]["delta"].get("tool_calls")
    ]
    template = chunks[with_calls[0]]
    announced = template["choices"][0]["delta"]["tool_calls"][0]
    args = json.loads(
        "".join(
            frag["function"].get("arguments", "")
            for i in with_calls
            for frag in chunks[i]["choices"][0]["delta"]["tool_calls"]
        )
    )
    call_id, args2 = _second_call(announced["id"], args)
    head = {"index": 1, "id": call_id, "type": "function"}
    name = announced["function"]["name"]
    if rec.vendor == "xai":
        deltas = [{**head, "function": {"name": name, "arguments": json.dumps(args2)}}]
    else:
        deltas = [{**head, "function": {"name": name, "arguments": ""}}] + [
            {"index": 1, "function": {"arguments": f}} for f in _fragments(json.dumps(args2))
        ]
    choice = template["choices"][0]
    second = [{**template, "choices": [{**choice, "delta": {"tool_calls": [d]}}]} for d in deltas]
    at = with_calls[-1] + 1
    return _sse_bytes([(None, c) for c in [*chunks[:at], *second, *chunks[at:]]])


def _gemini_parallel(rec: Recording) -> bytes:
    obj = json.loads(rec.body)
    _add_gemini_call(obj)
    return json.dumps(obj).encode()


def _gemini_parallel_stream(rec: Recording) -> bytes:
    chunks = [json.loads(e["data"]) for e in sse_events(rec.body)]
    _add_gemini_call(next(c for c in chunks if _gemini_calls(c)))
    return _sse_bytes([(None, c) for c in chunks], sep="\r\n\r\n")


def _gemini_calls(chunk: dict[str, Any]) -> list[dict[str, Any]]:
    parts = chunk["candidates"][0]["content"]["parts"]
    return [p for p in parts if "functionCall" in p]


def _add_gemini_call(chunk: dict[str, Any]) -> None:
    """A second functionCall part in the same chunk; only the first call of a parallel batch
    carries a thoughtSignature (VENDORS.md §3.3)."""
    first = _gemini_calls(chunk)[0]["functionCall"]
    _, args = _second_call(None, first.get("args", {}))
    parts = chunk["candidates"][0]["content"]["parts"]
    parts.append({"functionCall": {"name": first["name"], "args": args}})


# ============================================================================ the cell


@dataclass(slots=True)
class Cell:
    """One (client API, vendor) cell. `missing` names the recording kinds (see KINDS) the
    vendor has no recording for; `check_gaps` fails when that list goes stale."""

    client: str
    vendor: str
    missing: frozenset[str] = frozenset()
    # case → a known bug visible in its golden, pinned by a strict xfail test in the module;
    # written into the golden file so that nobody mistakes the snapshot for the spec.
    known_bugs: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------------ cases

    def cases(self) -> list[str]:
        derived = [f"parallel_{c}" for c in ("tool_call", "tool_call_stream")]
        recorded = self.recorded()
        return recorded + [c for c in derived if c.removeprefix("parallel_") in recorded]

    def recorded(self) -> list[str]:
        return recorded_cases(self.vendor)

    def success_cases(self) -> list[str]:
        return [c for c in self.cases() if not c.startswith("error_") and "midstream" not in c]

    def render(self, case: str) -> Rendered:
        return translate(self.client, load(self.vendor, case))

    # ------------------------------------------------------------------ checks

    def check_gaps(self) -> None:
        have = set(self.recorded())
        gaps = {kind for kind, names in KINDS.items() if not have & set(names)}
        if not any(c.startswith("error_") for c in have):
            gaps.add("error")
        assert gaps == set(self.missing), "update the cell's `missing` and its docstring"

    def check_golden(self, case: str) -> None:
        rendered = self.render(case)
        golden = client_events(self.client, rendered)
        if rendered.stream:
            check = check_anthropic_stream if self.client == "anthropic" else check_openai_stream
            check(golden["events"])
        path = GOLDEN / f"{self.client}_to_{self.vendor}" / f"{case}.json"
        head = {"recording": _source(self.vendor, case)}
        if case in self.known_bugs:
            head["known_bug"] = self.known_bugs[case]
        text = dump_golden({**head, **golden})
        if UPDATE:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        assert path.exists(), f"no golden {path}: run with UPDATE_GOLDEN=1, then read it"
        stored = path.read_text()
        diff = difflib.unified_diff(stored.splitlines(), text.splitlines(), "golden", "now", n=1)
        assert text == stored, "\n".join(list(diff)[:40])

    def view(self, case: str) -> View:
        return sdk_view(self.client, self.render(case))

    def expected(self, case: str) -> View:
        return expected_view(self.client, truth_of(self.vendor, case))

    def check_sdk(self, case: str) -> None:
        """The official client SDK reads exactly what the vendor said (text, reasoning, tool
        calls with their arguments, stop reason, usage mapped per VENDORS.md)."""
        got, want, truth = self.view(case), self.expected(case), truth_of(self.vendor, case)
        if "reasoning_tokens" not in want.usage:  # the vendor gave no count: nothing to match
            got.usage.pop("reasoning_tokens", None)
        _same("text", got.text, want.text)
        _same("reasoning", got.reasoning, want.reasoning)
        _same("tool calls", [c[1:] for c in got.tool_calls], [c[1:] for c in want.tool_calls])
        _same("stop", got.stop, want.stop)
        _same("usage", got.usage, want.usage)
        if self.client == "openai" and truth.vendor_total is not None:
            _same("total_tokens vs the vendor's", got.usage["total_tokens"], truth.vendor_total)
        ids = [c[0] for c in got.tool_calls]
        assert all(i and ANTHROPIC_TOOL_ID.match(i) for i in ids) and len(set(ids)) == len(ids)
        for got_id, (want_id, _, _) in zip(ids, want.tool_calls, strict=True):
            assert want_id is None or got_id == want_id, "vendor tool-call ids pass through"

    def check_null_content_without_text(self, case: str) -> None:
        """OpenAI client: an answer with no text (tool calls only) has `content: null` — as in
        OpenAI's own streams and in this gateway's non-stream answers."""
        rendered = self.render(case)
        final = sdk_read("openai", rendered.body, stream=rendered.stream)
        assert final.choices[0].message.tool_calls, "a tool-call answer"
        _same("message.content", final.choices[0].message.content, None)

    def check_midstream_error(self, case: str, error_type: str) -> None:
        """After the 200: the answer so far, then the client format's error event and
        nothing else (no message_stop / [DONE]); the SDK raises after yielding the text."""
        rec, rendered = load(self.vendor, case), self.render(case)
        assert rendered.status == 200 and rendered.stream
        events = client_events(self.client, rendered)["events"]
        if self.client == "anthropic":
            assert not any(e["type"] in ("message_delta", "message_stop") for e in events)
            assert events[-1]["type"] == "error" and events[-1]["error"]["type"] == error_type
        else:
            assert "[DONE]" not in events and not any(
                e.get("choices") and e["choices"][0]["finish_reason"] for e in events
            )
            assert events[-1]["error"]["type"] == error_type
        text, exc = self._stream_until_error(rendered.body)
        _same("text before the error", text, partial_text(rec))
        body = exc.body if isinstance(exc.body, dict) else {}
        _same("error type the SDK raised with", body.get("error", body)["type"], error_type)

    def _stream_until_error(self, body: bytes) -> tuple[str, Any]:
        text = ""
        if self.client == "anthropic":
            claude = anthropic_client(body)
            try:
                with claude.messages.stream(model="m", max_tokens=8, messages=[]) as s:
                    for piece in s.text_stream:
                        text += piece
            except anthropic.APIStatusError as exc:  # VENDORS.md §1.4: status 200, error body
                return text, exc
            raise AssertionError("the anthropic SDK did not raise")
        gpt = openai_client(body)
        try:
            for chunk in gpt.chat.completions.create(model="m", messages=[], stream=True):
                text += "".join(c.delta.content or "" for c in chunk.choices)
        except openai.APIError as exc:
            return text, exc
        raise AssertionError("the openai SDK did not raise")

    def check_error(
        self,
        case: str,
        *,
        status: int,
        error_type: str,
        exc: type[Exception],
        retry_after: float | None = None,
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        """A vendor HTTP error: the client's status, error type and SDK exception class."""
        rendered = self.render(case)
        _same("status", rendered.status, status)
        _same("retry-after", rendered.retry_after, retry_after)
        body = orjson.loads(rendered.body)
        if self.client == "anthropic":
            assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
        else:
            assert set(body["error"]) == {"message", "type", "param", "code"}
            _same("code, param", (body["error"]["code"], body["error"]["param"]), (code, param))
        _same("error type", body["error"]["type"], error_type)
        assert body["error"]["message"]
        make = anthropic_client if self.client == "anthropic" else openai_client
        raised = _raised(make(body, status=status), self.client)
        _same("SDK exception", (type(raised), raised.status_code), (exc, status))


def _same(what: str, got: Any, want: Any) -> None:
    assert got == want, f"{what}:\n  client sees {got!r}\n  vendor said {want!r}"


def _raised(sdk: Any, client: str) -> Any:
    try:
        if client == "anthropic":
            sdk.messages.create(model="m", max_tokens=8, messages=[])
        else:
            sdk.chat.completions.create(model="m", messages=[])
    except (anthropic.APIStatusError, openai.APIStatusError) as exc:
        return exc
    raise AssertionError("the SDK did not raise")


def _source(vendor: str, case: str) -> str:
    if case.startswith("parallel_"):
        return f"derived: {_source(vendor, case.removeprefix('parallel_'))} + a second call"
    suffix = ".sse" if (RECORDINGS / f"{vendor}__{case}.sse").exists() else ".json"
    return f"{vendor}__{case}{suffix}"
