"""Issue 25, item 5: the compatibility matrix — every client API × vendor × feature driven through
the official SDK (anthropic, openai, google-genai) against the emulated vendors. Each probe
asserts what must hold for the feature to work at all, and notes through `probe` what survived
translation and what was lost; tests/compat_recorder.py turns the outcomes into the published
contract (`make compat`) and fails a cell whose observation no longer matches it."""

from __future__ import annotations

import base64
import json
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from compat_recorder import CLI_PACKAGES, Probe
from e2e.test_tool_loops import ANTHROPIC_TOOLS, OPENAI_TOOLS
from tokenrelay import ir
from tokenrelay.catalog import compatibility as contract
from tokenrelay.frontends.anthropic.parse import parse_messages_request
from tokenrelay.frontends.chat.parse import parse_chat_request
from tokenrelay.frontends.gemini.parse import parse_generate_request
from tokenrelay.frontends.responses.parse import parse_responses_request
from tokenrelay.vendors import registry

ASK = "What's the weather in Paris?"
WORDS = "[[words:60]] count"  # the emulator answers " w1 w2 ... w60"
STOP = "w17"
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temp_c": {"type": "integer"}},
    "required": ["city", "temp_c"],
    "additionalProperties": False,
}
A_TOOLS: Any = ANTHROPIC_TOOLS
O_TOOLS: Any = OPENAI_TOOLS
R_TOOLS: Any = [
    {"type": "function", "name": t["function"]["name"], "description": "", "strict": False}
    | {"parameters": t["function"]["parameters"]}
    for t in O_TOOLS
]
G_TOOLS = [
    types.Tool(
        function_declarations=[
            types.FunctionDeclaration(
                name=t["function"]["name"],
                description=t["function"].get("description", ""),
                parameters_json_schema=t["function"]["parameters"],
            )
            for t in O_TOOLS
        ]
    )
]
CACHED = "[[cache]] Hi"  # the emulator: report part of the prompt as read from cache
LONG = "You are a meticulous assistant. Follow the house style closely. " * 300


def _own(p: Probe) -> str:
    """A long prompt no other cell sends: a vendor's prompt cache holds no earlier copy, so the
    first call writes and the second reads whatever order the tests run in."""
    return p.key + " " + LONG


def _png() -> bytes:
    """A 16×16 red PNG, built here so no binary fixture is needed."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 16 for _ in range(16))
    header = (16).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _pdf() -> bytes:
    text = b"BT /F1 12 Tf 72 720 Td (The secret word is heliotrope.) Tj ET"
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(text) + text + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = b"%PDF-1.4\n", []
    for i, obj in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    return out + b"trailer << /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objs) + 1,
        xref,
    )


PNG_B64 = base64.b64encode(_png()).decode()
PDF_B64 = base64.b64encode(_pdf()).decode()


FORMATS = {"messages": "anthropic", "chat": "openai", "responses": "responses", "gemini": "gemini"}
PARSE: dict[str, Callable[[Any, dict[str, str]], ir.Request]] = {
    "messages": parse_messages_request,
    "chat": parse_chat_request,
    "responses": lambda body, headers: parse_responses_request(body, headers)[0],
    "gemini": parse_generate_request,
}


def _sent_to_vendor(p: Probe, body: dict[str, Any]) -> str:
    """The call the gateway builds from this client body for the cell's vendor (the emulator
    does not show what it received): the body itself on the pass-through path."""
    api, vendor, _ = p.key.split("/")
    adapter = registry()[vendor].adapter
    if adapter.passthrough(FORMATS[api]) is not None:
        return orjson.dumps(body).decode()
    req = PARSE[api](body, {})
    adapter.finalize(req, 4096)
    return adapter.build_request(req, req.model, api_key="k", base_url="http://v").body.decode()


def _media_reaches_vendor(p: Probe, body: dict[str, Any], data: str, what: str) -> None:
    """The media's bytes in the vendor's call, not dropped or replaced on the way."""
    p.check(f"the {what} in the vendor's call", data[:64] in _sent_to_vendor(p, body))


def _schema_reaches_vendor(p: Probe, body: dict[str, Any]) -> None:
    sent = _sent_to_vendor(p, body)
    p.check("the schema in the vendor's call", '"temp_c"' in sent and '"required"' in sent)


def _refused(probe: Probe, exc: Exception) -> None:
    """A 4xx in the client's own error format: the cell is `no`, with the gateway's reason."""
    status = getattr(exc, "status_code", None) or getattr(exc, "code", None)
    assert isinstance(status, int) and 400 <= status < 500, exc
    message = getattr(exc, "message", None) or str(exc)
    probe.refuse(f"refused with {status}: {str(message)[:200]}")


CLIENT_ERRORS = (anthropic.BadRequestError, openai.BadRequestError, genai_errors.ClientError)


def _pdf_answered(p: Probe, ask: Callable[[], str], body: dict[str, Any]) -> None:
    """`ask` (sending `body`, a PDF in it) answers with text, or is refused in the client's
    format; the PDF in the vendor's call."""
    try:
        text = ask()
    except CLIENT_ERRORS as exc:
        return _refused(p, exc)
    assert text
    p.check("base64 PDF accepted", True)
    _media_reaches_vendor(p, body, PDF_B64, "document")


def _wait(get: Callable[[], Any], done: Callable[[Any], bool]) -> Any:
    """Poll until `done`: a batch runs in the background (generous: the machine is shared)."""
    deadline = time.monotonic() + 120
    while True:
        got = get()
        if done(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def _text(msg: Any) -> str:
    return "".join(b.text for b in msg.content if b.type == "text")


# ----------------------------------------------------------------------- Anthropic Messages


def messages_text(c: anthropic.Anthropic, model: str, p: Probe) -> None:
    words: Any = [{"role": "user", "content": WORDS}]
    msg = c.messages.create(model=model, max_tokens=200, messages=words)
    with c.messages.stream(model=model, max_tokens=200, messages=words) as s:
        events = list(s)
        final = s.get_final_message()
    streamed = "".join(
        e.delta.text  # type: ignore[union-attr]
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    assert _text(msg).strip()
    start = next(e for e in events if e.type == "message_start")
    # Claude Code's context meter reads it: the prompt's size, not 0 (issue 25, item 2).
    p.check("input_tokens already at message_start", start.message.usage.input_tokens > 0)
    p.check("streamed text equals the whole answer", streamed == _text(msg))
    p.check("stop_reason end_turn", msg.stop_reason == final.stop_reason == "end_turn")
    p.check("usage input and output tokens", msg.usage.input_tokens > 0 < msg.usage.output_tokens)


def messages_tools(c: anthropic.Anthropic, model: str, p: Probe) -> None:
    ask: Any = [{"role": "user", "content": ASK}]
    first = c.messages.create(model=model, max_tokens=500, messages=ask, tools=A_TOOLS)
    call = next(b for b in first.content if b.type == "tool_use")
    p.check("stop_reason tool_use", first.stop_reason == "tool_use")
    p.check("tool_use id and arguments", bool(call.id and call.input.get("city")))  # type: ignore[attr-defined]
    result = {"type": "tool_result", "tool_use_id": call.id, "content": '{"temp_c": 18}'}
    turns: Any = [*ask, {"role": "assistant", "content": first.content}]
    turns.append({"role": "user", "content": [result]})
    answer = c.messages.create(model=model, max_tokens=500, messages=turns, tools=A_TOOLS)
    assert "18" in _text(answer)
    p.check("the tool result reaches the model", True)


def messages_streamed_tool_arguments(c: anthropic.Anthropic, model: str, p: Probe) -> None:
    ask: Any = [{"role": "user", "content": ASK}]
    with c.messages.stream(model=model, max_tokens=500, messages=ask, tools=A_TOOLS) as s:
        parts = [
            e.delta.partial_json  # type: ignore[union-attr]
            for e in s
            if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
        ]
    assert parts and json.loads("".join(parts))["city"]
    p.check("arguments as input_json_delta events", True)
    p.check("arguments in more than one delta", len(parts) > 1)


def messages_reasoning(c: anthropic.Anthropic, model: str, p: Probe) -> None:
    ask: Any = [{"role": "user", "content": "Think, then say hi."}]
    thinking: Any = {"type": "enabled", "budget_tokens": 1024}
    msg = c.messages.create(model=model, max_tokens=2048, messages=ask, thinking=thinking)
    blocks = [b for b in msg.content if b.type == "thinking"]
    assert _text(msg)
    if not p.check("thinking blocks", bool(blocks and blocks[0].thinking)):  # type: ignore[union-attr]
        return
    p.check("a signature to send back", bool(blocks[0].signature))  # type: ignore[union-attr]
    with c.messages.stream(model=model, max_tokens=2048, messages=ask, thinking=thinking) as s:
        kinds = {e.delta.type for e in s if e.type == "content_block_delta"}  # type: ignore[union-attr]
    p.check("thinking streamed as thinking_delta", "thinking_delta" in kinds)


def messages_images(c: anthropic.Anthropic, model: str, p: Probe) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png"}}
    image["source"]["data"] = PNG_B64  # type: ignore[index]
    with_image: Any = [{"role": "user", "content": [image, {"type": "text", "text": "Hi"}]}]
    plain: Any = [{"role": "user", "content": "Hi"}]
    try:
        msg = c.messages.create(model=model, max_tokens=100, messages=with_image)
    except CLIENT_ERRORS as exc:
        return _refused(p, exc)
    base = c.messages.create(model=model, max_tokens=100, messages=plain)
    assert _text(msg)
    p.check("base64 image accepted", True)
    p.check("the image counted in input_tokens", msg.usage.input_tokens > base.usage.input_tokens)
    body = {"model": model, "max_tokens": 100, "messages": with_image}
    _media_reaches_vendor(p, body, PNG_B64, "image")


def messages_documents(c: anthropic.Anthropic, model: str, p: Probe) -> None:
    doc = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf"}}
    doc["source"]["data"] = PDF_B64  # type: ignore[index]
    turns: Any = [{"role": "user", "content": [doc, {"type": "text", "text": "Summarise"}]}]
    body = {"model": model, "max_tokens": 100, "messages": turns}
    _pdf_answered(p, lambda: _text(c.messages.create(**body)), body)


def messages_stop_sequences(c: anthropic.Anthropic, model: str, p: Probe) -> None:
    words: Any = [{"role": "user", "content": WORDS}]
    msg = c.messages.create(model=model, max_tokens=300, messages=words, stop_sequences=[STOP])
    text = _text(msg)
    assert STOP not in text and text.rstrip().endswith("w16")
    p.check("the text ends before the stop sequence", True)
    p.check("stop_reason stop_sequence", msg.stop_reason == "stop_sequence")
    p.check("stop_sequence names the one hit", msg.stop_sequence == STOP)


def messages_json_schema(c: anthropic.Anthropic, model: str, p: Probe) -> None:
    fmt = {"format": {"type": "json_schema", "schema": SCHEMA}}
    ask: Any = [{"role": "user", "content": "Weather in Paris as JSON"}]
    try:
        msg = c.messages.create(
            model=model, max_tokens=300, messages=ask, extra_body={"output_config": fmt}
        )
    except CLIENT_ERRORS as exc:
        return _refused(p, exc)
    assert _text(msg)
    body = {"model": model, "max_tokens": 300, "messages": ask, "output_config": fmt}
    _schema_reaches_vendor(p, body)


def messages_count_tokens(c: anthropic.Anthropic, model: str, p: Probe) -> None:
    short = c.messages.count_tokens(model=model, messages=[{"role": "user", "content": ASK}])
    longer = c.messages.count_tokens(model=model, messages=[{"role": "user", "content": LONG}])
    assert 0 < short.input_tokens < longer.input_tokens
    p.check("a count that grows with the prompt", True)


def messages_batches(c: anthropic.Anthropic, model: str, p: Probe) -> None:
    params: Any = {
        "model": model,
        "max_tokens": 40,
        "messages": [{"role": "user", "content": "hi"}],
    }
    batch = c.messages.batches.create(requests=[{"custom_id": "one", "params": params}])
    _wait(lambda: c.messages.batches.retrieve(batch.id), lambda b: b.processing_status == "ended")
    results = list(c.messages.batches.results(batch.id))
    assert results[0].result.type == "succeeded", results
    p.check("a Message Batch line answered", bool(_text(results[0].result.message)))


def messages_cache_control(c: anthropic.Anthropic, model: str, p: Probe) -> None:
    system: Any = [{"type": "text", "text": _own(p), "cache_control": {"type": "ephemeral"}}]
    ask: Any = [{"role": "user", "content": CACHED}]
    first = c.messages.create(model=model, max_tokens=50, system=system, messages=ask)
    again = c.messages.create(model=model, max_tokens=50, system=system, messages=ask)
    assert _text(again)
    p.check("breakpoints accepted", True)
    p.check("cache writes reported", (first.usage.cache_creation_input_tokens or 0) > 0)
    p.check("cache reads reported on a repeat", (again.usage.cache_read_input_tokens or 0) > 0)


# ----------------------------------------------------------------------- OpenAI Chat


def _chat_text(done: Any) -> str:
    return done.choices[0].message.content or ""


def chat_text(c: openai.OpenAI, model: str, p: Probe) -> None:
    words: Any = [{"role": "user", "content": WORDS}]
    done = c.chat.completions.create(model=model, messages=words)
    chunks = list(
        c.chat.completions.create(
            model=model, messages=words, stream=True, stream_options={"include_usage": True}
        )
    )
    streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert _chat_text(done).strip()
    p.check("streamed text equals the whole answer", streamed == _chat_text(done))
    p.check("finish_reason stop", done.choices[0].finish_reason == "stop")
    usage = done.usage
    p.check("usage prompt and completion tokens", bool(usage and usage.prompt_tokens > 0))
    p.check("usage chunk when asked", any(ch.usage for ch in chunks))


def chat_tools(c: openai.OpenAI, model: str, p: Probe) -> None:
    ask: Any = [{"role": "user", "content": ASK}]
    first = c.chat.completions.create(model=model, messages=ask, tools=O_TOOLS)
    msg = first.choices[0].message
    assert msg.tool_calls
    call: Any = msg.tool_calls[0]
    p.check("finish_reason tool_calls", first.choices[0].finish_reason == "tool_calls")
    p.check("tool call id and arguments", bool(call.id and json.loads(call.function.arguments)))
    turns: Any = [*ask, {"role": "assistant", "content": msg.content, "tool_calls": [call]}]
    turns.append({"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 18}'})
    answer = c.chat.completions.create(model=model, messages=turns, tools=O_TOOLS)
    assert "18" in _chat_text(answer)
    p.check("the tool result reaches the model", True)


def chat_streamed_tool_arguments(c: openai.OpenAI, model: str, p: Probe) -> None:
    ask: Any = [{"role": "user", "content": ASK}]
    chunks = list(c.chat.completions.create(model=model, messages=ask, tools=O_TOOLS, stream=True))
    parts = [
        t.function.arguments
        for ch in chunks
        if ch.choices
        for t in ch.choices[0].delta.tool_calls or []
        if t.function and t.function.arguments
    ]
    assert parts and json.loads("".join(parts))["city"]
    p.check("arguments in delta.tool_calls", True)
    p.check("arguments in more than one chunk", len(parts) > 1)


def chat_reasoning(c: openai.OpenAI, model: str, p: Probe) -> None:
    ask: Any = [{"role": "user", "content": "Think, then say hi."}]
    done = c.chat.completions.create(model=model, messages=ask, reasoning_effort="medium")
    assert _chat_text(done)
    extra = done.choices[0].message.model_extra or {}
    p.check("reasoning text as reasoning_content", bool(extra.get("reasoning_content")))
    details = done.usage.completion_tokens_details if done.usage else None
    p.check("reasoning_tokens in usage", bool(details and (details.reasoning_tokens or 0) > 0))


def _data_url(mime: str, data: str) -> str:
    return f"data:{mime};base64,{data}"


def chat_images(c: openai.OpenAI, model: str, p: Probe) -> None:
    part = {"type": "image_url", "image_url": {"url": _data_url("image/png", PNG_B64)}}
    with_image: Any = [{"role": "user", "content": [part, {"type": "text", "text": "Hi"}]}]
    try:
        done = c.chat.completions.create(model=model, messages=with_image)
    except CLIENT_ERRORS as exc:
        return _refused(p, exc)
    base = c.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}])
    assert _chat_text(done) and done.usage and base.usage
    p.check("base64 image accepted", True)
    p.check(
        "the image counted in prompt_tokens", done.usage.prompt_tokens > base.usage.prompt_tokens
    )
    _media_reaches_vendor(p, {"model": model, "messages": with_image}, PNG_B64, "image")


def chat_documents(c: openai.OpenAI, model: str, p: Probe) -> None:
    part = {"type": "file", "file": {"filename": "a.pdf"}}
    part["file"]["file_data"] = _data_url("application/pdf", PDF_B64)  # type: ignore[index]
    turns: Any = [{"role": "user", "content": [part, {"type": "text", "text": "Summarise"}]}]
    body = {"model": model, "messages": turns}
    _pdf_answered(p, lambda: _chat_text(c.chat.completions.create(**body)), body)


def chat_stop_sequences(c: openai.OpenAI, model: str, p: Probe) -> None:
    words: Any = [{"role": "user", "content": WORDS}]
    done = c.chat.completions.create(model=model, messages=words, stop=[STOP])
    text = _chat_text(done)
    assert STOP not in text and text.rstrip().endswith("w16")
    p.check("the text ends before the stop sequence", True)
    p.check("finish_reason stop", done.choices[0].finish_reason == "stop")


def chat_json_schema(c: openai.OpenAI, model: str, p: Probe) -> None:
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "w", "schema": SCHEMA}}
    ask: Any = [{"role": "user", "content": "Weather in Paris as JSON"}]
    try:
        done = c.chat.completions.create(model=model, messages=ask, response_format=fmt)
    except CLIENT_ERRORS as exc:
        return _refused(p, exc)
    assert _chat_text(done)
    _schema_reaches_vendor(p, {"model": model, "messages": ask, "response_format": fmt})


def chat_count_tokens(c: openai.OpenAI, model: str, p: Probe) -> None:
    p.not_applicable("Chat Completions has no count endpoint (the gateway serves Anthropic's)")


ENDED = ("completed", "failed", "expired", "cancelled")  # not validating/in_progress/finalizing


def _openai_batch(c: openai.OpenAI, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    line = {"custom_id": "one", "method": "POST", "url": endpoint, "body": body}
    f = c.files.create(file=("in.jsonl", json.dumps(line).encode()), purpose="batch")
    batch = c.batches.create(input_file_id=f.id, endpoint=endpoint, completion_window="24h")  # type: ignore[arg-type]
    done = _wait(lambda: c.batches.retrieve(batch.id), lambda b: b.status in ENDED)
    assert done.status == "completed" and done.output_file_id, done
    out: dict[str, Any] = json.loads(c.files.content(done.output_file_id).text.splitlines()[0])
    assert out["response"]["status_code"] == 200, out
    return out["response"]["body"]


def chat_batches(c: openai.OpenAI, model: str, p: Probe) -> None:
    body = {"model": model, "max_tokens": 40, "messages": [{"role": "user", "content": "hi"}]}
    answer = _openai_batch(c, "/v1/chat/completions", body)
    p.check("a Batch API line answered", bool(answer["choices"][0]["message"]["content"]))


def chat_cache_control(c: openai.OpenAI, model: str, p: Probe) -> None:
    turns: Any = [{"role": "system", "content": _own(p)}, {"role": "user", "content": CACHED}]
    c.chat.completions.create(model=model, messages=turns, max_tokens=50)
    again = c.chat.completions.create(model=model, messages=turns, max_tokens=50)
    details = again.usage.prompt_tokens_details if again.usage else None
    p.check("cache reads reported on a repeat", bool(details and (details.cached_tokens or 0) > 0))


# ----------------------------------------------------------------------- OpenAI Responses


def responses_text(c: openai.OpenAI, model: str, p: Probe) -> None:
    done = c.responses.create(model=model, input=WORDS)
    streamed, final = "", None
    for ev in c.responses.create(model=model, input=WORDS, stream=True):
        if ev.type == "response.output_text.delta":
            streamed += ev.delta
        elif ev.type == "response.completed":
            final = ev.response
    assert done.output_text.strip() and final is not None
    p.check("streamed text equals the whole answer", streamed == done.output_text)
    p.check("status completed", done.status == final.status == "completed")
    p.check("usage input and output tokens", bool(done.usage and done.usage.output_tokens > 0))


def _function_call(resp: Any) -> Any:
    return next(i for i in resp.output if i.type == "function_call")


def responses_tools(c: openai.OpenAI, model: str, p: Probe) -> None:
    first = c.responses.create(model=model, input=ASK, tools=R_TOOLS)
    call = _function_call(first)
    p.check("function_call with call_id and arguments", bool(call.call_id and call.arguments))
    items: Any = [
        {"role": "user", "content": ASK},
        {"type": "function_call", "call_id": call.call_id, "name": call.name}
        | {"arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": '{"temp_c": 18}'},
    ]
    answer = c.responses.create(model=model, input=items, tools=R_TOOLS)
    assert "18" in answer.output_text
    p.check("the tool result reaches the model", True)


def responses_streamed_tool_arguments(c: openai.OpenAI, model: str, p: Probe) -> None:
    events = list(c.responses.create(model=model, input=ASK, tools=R_TOOLS, stream=True))
    parts = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert parts and json.loads("".join(parts))["city"]
    p.check("arguments as response.function_call_arguments.delta", True)
    p.check("arguments in more than one delta", len(parts) > 1)


def responses_reasoning(c: openai.OpenAI, model: str, p: Probe) -> None:
    done = c.responses.create(
        model=model,
        input="Think, then say hi.",
        reasoning={"effort": "medium", "summary": "auto"},
        include=["reasoning.encrypted_content"],
    )
    assert done.output_text
    items = [i for i in done.output if i.type == "reasoning"]
    p.check("a reasoning item", bool(items))
    p.check("its summary", bool(items and items[0].summary))
    p.check("encrypted_content to send back", bool(items and items[0].encrypted_content))
    details = done.usage.output_tokens_details if done.usage else None
    p.check("reasoning_tokens in usage", bool(details and details.reasoning_tokens > 0))


def responses_images(c: openai.OpenAI, model: str, p: Probe) -> None:
    image = {"type": "input_image", "image_url": _data_url("image/png", PNG_B64), "detail": "auto"}
    items: Any = [{"role": "user", "content": [image, {"type": "input_text", "text": "Hi"}]}]
    try:
        done = c.responses.create(model=model, input=items)
    except CLIENT_ERRORS as exc:
        return _refused(p, exc)
    base = c.responses.create(model=model, input="Hi")
    assert done.output_text and done.usage and base.usage
    p.check("base64 image accepted", True)
    p.check("the image counted in input_tokens", done.usage.input_tokens > base.usage.input_tokens)
    _media_reaches_vendor(p, {"model": model, "input": items}, PNG_B64, "image")


def responses_documents(c: openai.OpenAI, model: str, p: Probe) -> None:
    doc = {"type": "input_file", "filename": "a.pdf"}
    doc["file_data"] = _data_url("application/pdf", PDF_B64)
    items: Any = [{"role": "user", "content": [doc, {"type": "input_text", "text": "Summarise"}]}]
    body = {"model": model, "input": items}
    _pdf_answered(p, lambda: c.responses.create(**body).output_text, body)


def responses_stop_sequences(c: openai.OpenAI, model: str, p: Probe) -> None:
    p.not_applicable("the Responses API has no stop sequences")


def responses_json_schema(c: openai.OpenAI, model: str, p: Probe) -> None:
    fmt: Any = {"format": {"type": "json_schema", "name": "w", "schema": SCHEMA}}
    ask = "Weather in Paris as JSON"
    try:
        done = c.responses.create(model=model, input=ask, text=fmt)
    except CLIENT_ERRORS as exc:
        return _refused(p, exc)
    assert done.output_text
    _schema_reaches_vendor(p, {"model": model, "input": ask, "text": fmt})


def responses_count_tokens(c: openai.OpenAI, model: str, p: Probe) -> None:
    short = c.responses.input_tokens.count(model=model, input=ASK)
    longer = c.responses.input_tokens.count(model=model, input=LONG)
    assert 0 < short.input_tokens < longer.input_tokens
    p.check("a count that grows with the prompt (/responses/input_tokens)", True)


def responses_batches(c: openai.OpenAI, model: str, p: Probe) -> None:
    answer = _openai_batch(c, "/v1/responses", {"model": model, "input": "hi"})
    p.check("a Batch API line answered", bool(answer["output"]))


def responses_cache_control(c: openai.OpenAI, model: str, p: Probe) -> None:
    long = _own(p)
    c.responses.create(model=model, instructions=long, input=CACHED, max_output_tokens=50)
    again = c.responses.create(model=model, instructions=long, input=CACHED, max_output_tokens=50)
    details = again.usage.input_tokens_details if again.usage else None
    p.check("cache reads reported on a repeat", bool(details and details.cached_tokens > 0))


# ----------------------------------------------------------------------- Gemini


def _g_text(resp: Any) -> str:
    parts = resp.candidates[0].content.parts or []
    return "".join(x.text or "" for x in parts if not x.thought)


def gemini_text(c: genai.Client, model: str, p: Probe) -> None:
    done = c.models.generate_content(model=model, contents=WORDS)
    chunks = list(c.models.generate_content_stream(model=model, contents=WORDS))
    streamed = "".join(_g_text(ch) for ch in chunks if ch.candidates)
    assert _g_text(done).strip()
    p.check("streamed text equals the whole answer", streamed == _g_text(done))
    p.check("finishReason STOP", done.candidates[0].finish_reason == types.FinishReason.STOP)  # type: ignore[index]
    u = done.usage_metadata
    p.check("usageMetadata prompt and candidates counts", bool(u and u.candidates_token_count))


def _g_call(resp: Any) -> Any:
    return next(x.function_call for x in resp.candidates[0].content.parts if x.function_call)


def gemini_tools(c: genai.Client, model: str, p: Probe) -> None:
    config = types.GenerateContentConfig(tools=G_TOOLS)  # type: ignore[arg-type]
    first = c.models.generate_content(model=model, contents=ASK, config=config)
    call = _g_call(first)
    p.check("functionCall with args", bool(call.args and call.args.get("city")))
    turns = [
        types.Content(role="user", parts=[types.Part(text=ASK)]),
        first.candidates[0].content,  # type: ignore[index]
        types.Content(
            role="user",
            parts=[types.Part.from_function_response(name=call.name, response={"temp_c": 18})],
        ),
    ]
    answer = c.models.generate_content(model=model, contents=turns, config=config)  # type: ignore[arg-type]
    assert "18" in _g_text(answer)
    p.check("the function response reaches the model", True)


def gemini_streamed_tool_arguments(c: genai.Client, model: str, p: Probe) -> None:
    config = types.GenerateContentConfig(tools=G_TOOLS)  # type: ignore[arg-type]
    chunks = list(c.models.generate_content_stream(model=model, contents=ASK, config=config))
    calls = [
        x.function_call
        for ch in chunks
        if ch.candidates
        for x in ch.candidates[0].content.parts or []  # type: ignore[union-attr]
        if x.function_call
    ]
    assert calls and calls[0].args and calls[0].args.get("city")
    # Gemini's stream carries whole function calls: there are no partial arguments to keep.
    p.check("whole functionCall parts in the stream", True)


def gemini_reasoning(c: genai.Client, model: str, p: Probe) -> None:
    thinking = types.ThinkingConfig(thinking_budget=2048, include_thoughts=True)
    config = types.GenerateContentConfig(thinking_config=thinking)
    done = c.models.generate_content(model=model, contents="Think, then say hi.", config=config)
    assert _g_text(done)
    thoughts = [x for x in done.candidates[0].content.parts or [] if x.thought]  # type: ignore[index,union-attr]
    p.check("thought parts", bool(thoughts and thoughts[0].text))
    u = done.usage_metadata
    p.check("thoughtsTokenCount", bool(u and (u.thoughts_token_count or 0) > 0))


def _g_body(model: str, mime: str, data: str) -> dict[str, Any]:
    part = {"inlineData": {"mimeType": mime, "data": data}}
    return {"model": model, "contents": [{"role": "user", "parts": [part, {"text": "Describe"}]}]}


def _g_inline(c: genai.Client, model: str, p: Probe, mime: str, data: bytes) -> Any:
    part = types.Part.from_bytes(data=data, mime_type=mime)
    try:
        return c.models.generate_content(model=model, contents=[part, "Describe"])
    except CLIENT_ERRORS as exc:
        _refused(p, exc)
        return None


def gemini_images(c: genai.Client, model: str, p: Probe) -> None:
    done = _g_inline(c, model, p, "image/png", _png())
    if done is None:
        return
    base = c.models.generate_content(model=model, contents="Describe")
    assert _g_text(done)
    p.check("inline image accepted", True)
    u, b = done.usage_metadata, base.usage_metadata
    p.check(
        "the image counted in promptTokenCount",
        bool(u and b and (u.prompt_token_count or 0) > (b.prompt_token_count or 0)),
    )
    _media_reaches_vendor(p, _g_body(model, "image/png", PNG_B64), PNG_B64, "image")


def gemini_documents(c: genai.Client, model: str, p: Probe) -> None:
    done = _g_inline(c, model, p, "application/pdf", _pdf())
    if done is not None:
        assert _g_text(done)
        p.check("inline PDF accepted", True)
        body = _g_body(model, "application/pdf", PDF_B64)
        _media_reaches_vendor(p, body, PDF_B64, "document")


def gemini_stop_sequences(c: genai.Client, model: str, p: Probe) -> None:
    config = types.GenerateContentConfig(stop_sequences=[STOP])
    done = c.models.generate_content(model=model, contents=WORDS, config=config)
    text = _g_text(done)
    assert STOP not in text and text.rstrip().endswith("w16")
    p.check("the text ends before the stop sequence", True)
    p.check("finishReason STOP", done.candidates[0].finish_reason == types.FinishReason.STOP)  # type: ignore[index]


def gemini_json_schema(c: genai.Client, model: str, p: Probe) -> None:
    config = types.GenerateContentConfig(
        response_mime_type="application/json", response_json_schema=SCHEMA
    )
    try:
        done = c.models.generate_content(
            model=model, contents="Weather in Paris as JSON", config=config
        )
    except CLIENT_ERRORS as exc:
        return _refused(p, exc)
    assert _g_text(done)
    gen = {"responseMimeType": "application/json", "responseJsonSchema": SCHEMA}
    body = {"model": model, "contents": [{"parts": [{"text": "JSON"}]}], "generationConfig": gen}
    _schema_reaches_vendor(p, body)


def gemini_count_tokens(c: genai.Client, model: str, p: Probe) -> None:
    short = c.models.count_tokens(model=model, contents=ASK)
    longer = c.models.count_tokens(model=model, contents=LONG)
    assert 0 < (short.total_tokens or 0) < (longer.total_tokens or 0)
    p.check("a count that grows with the prompt (countTokens)", True)


def gemini_batches(c: genai.Client, model: str, p: Probe) -> None:
    try:
        c.batches.create(model=model, src=[{"contents": [{"parts": [{"text": "hi"}]}]}])  # type: ignore[arg-type]
    except genai_errors.ClientError as exc:
        _refused(p, exc)
        p.refuse("the gateway does not serve Gemini's batch API (batchGenerateContent)")
        return
    raise AssertionError("a Gemini batch was accepted: record what it does")


def gemini_cache_control(c: genai.Client, model: str, p: Probe) -> None:
    config = types.GenerateContentConfig(system_instruction=_own(p))
    c.models.generate_content(model=model, contents=CACHED, config=config)
    again = c.models.generate_content(model=model, contents=CACHED, config=config)
    u = again.usage_metadata
    p.check(
        "cachedContentTokenCount on a repeat", bool(u and (u.cached_content_token_count or 0) > 0)
    )


CLIENTS: dict[str, Callable[[Any, str], Any]] = {
    "messages": lambda gw, key: anthropic.Anthropic(api_key=key, base_url=gw.proxy, max_retries=0),
    "chat": lambda gw, key: openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0),
    "responses": lambda gw, key: openai.OpenAI(
        api_key=key, base_url=gw.proxy + "/v1", max_retries=0
    ),
    "gemini": lambda gw, key: genai.Client(
        api_key=key,
        http_options=types.HttpOptions(
            base_url=gw.proxy, retry_options=types.HttpRetryOptions(attempts=1)
        ),
    ),
}
PROBES: dict[tuple[str, str], Callable[[Any, str, Probe], None]] = {
    (api, feature): globals()[f"{api}_{feature}"]
    for api in contract.CLIENT_APIS
    for feature in contract.FEATURES
}
CELLS = [
    (api, vendor, feature)
    for api in contract.CLIENT_APIS
    for vendor in contract.VENDOR_MODELS
    for feature in contract.FEATURES
]


@pytest.mark.parametrize(("api", "vendor", "feature"), CELLS, ids=["-".join(c) for c in CELLS])
def test_cell(gateway, api_key, probe: Probe, api: str, vendor: str, feature: str) -> None:
    client = CLIENTS[api](gateway, api_key)
    PROBES[api, feature](client, contract.model_for(feature, vendor), probe)
    assert probe.survives or probe.lost or probe.refused, "a probe that checked nothing"


def test_every_cell_is_recorded_and_none_failing() -> None:
    """The published file covers the whole matrix (no cell silently untested)."""
    rows = contract.matrix() + contract.cli_matrix()
    assert not [r for r in rows if r["status"] in ("untested", "failing")]
    # ...and names the CLI versions tests/clients pins (a bump is re-recorded, not assumed).
    pinned = json.loads((Path(__file__).parents[1] / "clients" / "package.json").read_text())
    assert {c: pinned["dependencies"][pkg] for c, pkg in CLI_PACKAGES.items()} == {
        r["cli"]: r["version"] for r in contract.cli_matrix()
    }


def test_the_page_and_json_are_the_recorded_contract(gateway) -> None:
    doc = httpx.get(gateway.url + "/compatibility.json").json()
    assert doc == json.loads(json.dumps(contract.document()))
    page = httpx.get(gateway.url + "/compatibility")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    cells = contract.matrix() + contract.cli_matrix()
    for status in ("yes", "partial", "no", "n/a"):
        assert page.text.count(f'class="{status}"') >= sum(c["status"] == status for c in cells)
    partial = next(c for c in cells if c["status"] == "partial")
    assert f"lost: {partial['lost'][0]}" in page.text
