"""Anthropic Messages API: /v1/messages, /v1/messages/count_tokens, /v1/models."""

from __future__ import annotations

import json
from typing import Any

import orjson

from tokenrelay.emulator import prefix_cache, script, tokens, wire
from tokenrelay.emulator.shape import Mismatch, Path, items, need, opt
from tokenrelay.emulator.wire import BadJSON, Req, Resp

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_ERROR_MESSAGES = {
    401: "invalid x-api-key",
    402: "Your credit balance is too low to access the Anthropic API.",
    403: "Your API key does not have permission to use the specified resource.",
    429: "Number of request tokens has exceeded your per-minute rate limit "
    "(https://docs.claude.com/en/api/rate-limits); see the response headers for current "
    "usage. Please reduce the prompt length or the maximum tokens requested, or try again "
    "later.",
    500: "Internal server error",
    529: "Overloaded",
}
_THINKING_FIRST = (
    "messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{found}`."
    " When `thinking` is enabled, a final `assistant` message must start with a thinking block"
    " (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you"
    " include thinking blocks from previous turns. To avoid this requirement, disable `thinking`."
    " Please consult our documentation at"
    " https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
)
_PING = b'event: ping\ndata: {"type": "ping"}\n\n'
MODELS = [
    ("claude-opus-4-1-20250805", "Claude Opus 4.1", "2025-08-05T00:00:00Z"),
    ("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z"),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-01T00:00:00Z"),
    ("claude-sonnet-4-20250514", "Claude Sonnet 4", "2025-05-14T00:00:00Z"),
    ("claude-3-5-haiku-20241022", "Claude Haiku 3.5", "2024-10-22T00:00:00Z"),
]


class Invalid(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def error(req: Req, status: int, message: str | None = None) -> Resp:
    rid = "req_011C" + wire.rand_id(req.seed("anthropic"), "request", 20)
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    body = {
        "type": "error",
        "error": {
            "details": None,
            "type": kind,
            "message": message or _ERROR_MESSAGES.get(status, f"Emulated {kind}"),
        },
        "request_id": rid,
    }
    headers = [("request-id", rid)]
    if status in (429, 529) or status >= 500:
        headers.append(("x-should-retry", "true"))
    if status in (429, 529):
        headers.append(("retry-after", "1"))
    return wire.json_resp(status, body, headers)


def _auth(req: Req) -> Resp | None:
    key = req.headers.get("x-api-key") or wire.bearer(req)
    if not key:
        return error(req, 401, "x-api-key header is required")
    if wire.is_bad_key(key):
        return error(req, 401, "invalid x-api-key")
    if not req.headers.get("anthropic-version"):
        return error(req, 400, "anthropic-version: header is required")
    return None


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _result_text(block: dict[str, Any]) -> str:
    content = block.get("content", "")
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in _blocks(content) if b.get("type") == "text")


def _merged(messages: list[Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Validate roles/content and merge consecutive same-role turns, as the API does."""
    turns: list[tuple[str, list[dict[str, Any]]]] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise Invalid(f"messages.{i}: Input should be a valid dictionary")
        role = msg.get("role")
        if role == "system":
            raise Invalid(
                'messages: Unexpected role "system". The Messages API accepts a '
                'top-level `system` parameter, not "system" as an input message role.'
            )
        if role not in ("user", "assistant"):
            raise Invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        content = msg.get("content")
        if content == "" and not (role == "assistant" and i == len(messages) - 1):
            raise Invalid(
                "messages: all messages must have non-empty content except for the "
                "optional final assistant message"
            )
        blocks = _blocks(content)
        for j, b in enumerate(blocks):
            if b.get("type") == "text" and not b.get("text"):
                raise Invalid(
                    f"messages.{i}.content.{j}.text: text content blocks must be non-empty"
                )
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, list(blocks)))
    return turns


def _check_tools(turns: list[tuple[str, list[dict[str, Any]]]]) -> None:
    for i, (role, blocks) in enumerate(turns):
        if role != "assistant":
            prev = turns[i - 1][1] if i else []
            wanted = {b.get("id") for b in prev if b.get("type") == "tool_use"}
            for j, b in enumerate(blocks):
                if b.get("type") == "tool_result" and b.get("tool_use_id") not in wanted:
                    raise Invalid(
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                        f"`tool_result` blocks: {b.get('tool_use_id')}. Each "
                        "`tool_result` block must have a corresponding `tool_use` "
                        "block in the previous message."
                    )
            continue
        ids = [b.get("id") for b in blocks if b.get("type") == "tool_use"]
        nxt = turns[i + 1][1] if i + 1 < len(turns) else None
        if not ids or nxt is None:
            continue  # a trailing tool_use is a prefill; the API only checks answered turns
        answered = {b.get("tool_use_id") for b in nxt if b.get("type") == "tool_result"}
        missing = [x for x in ids if x not in answered]
        if missing:
            raise Invalid(
                f"messages.{i + 1}: `tool_use` ids were found without `tool_result` "
                f"blocks immediately after: {', '.join(map(str, missing))}. Each "
                "`tool_use` block must have a corresponding `tool_result` block in "
                "the next message."
            )


def _check_thinking(turns: list[tuple[str, list[dict[str, Any]]]]) -> None:
    for i in range(len(turns) - 1, -1, -1):
        role, blocks = turns[i]
        if role != "assistant" or not any(b.get("type") == "tool_use" for b in blocks):
            continue
        first = blocks[0]
        kind = first.get("type")
        if kind == "redacted_thinking":
            return  # opaque by design; the emulator never issues these, so nothing to verify
        if kind != "thinking":
            raise Invalid(_THINKING_FIRST.format(i=i, found=kind))
        if not wire.verify("anthropic", str(first.get("thinking", "")), first.get("signature")):
            raise Invalid(f"messages.{i}.content.0: Invalid `signature` in `thinking` block")
        return


def _has_cache_control(body: dict[str, Any]) -> bool:
    return b'"cache_control"' in orjson.dumps(body)


def _prompt_tokens(body: dict[str, Any]) -> int:
    n = 0
    system = body.get("system")
    if isinstance(system, str):
        n += tokens.count(system)
    elif isinstance(system, list):
        n += sum(tokens.count(b.get("text", "")) for b in _blocks(system))
    for msg in body.get("messages") or []:
        for b in _blocks(msg.get("content") if isinstance(msg, dict) else None):
            kind = b.get("type")
            if kind == "text":
                n += tokens.count(b.get("text", ""))
            elif kind == "tool_use":
                n += tokens.count(str(b.get("name", ""))) + tokens.count_json(b.get("input", {}))
            elif kind == "tool_result":
                n += tokens.count(_result_text(b)) or 1
            elif kind == "thinking":
                n += tokens.count(str(b.get("thinking", "")))
            elif kind in ("image", "document"):
                n += tokens.IMAGE_TOKENS
    for tool in body.get("tools") or []:
        n += tokens.count_json(tool)
    return max(n, 1)


# Content block type → its fields the emulator reads, with their types.
_BLOCK_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "text": (("text", "string"),),
    "image": (("source", "object"),),
    "document": (("source", "object"),),
    "tool_use": (("id", "string"), ("name", "string"), ("input", "object")),
    "tool_result": (("tool_use_id", "string"),),
    "thinking": (("thinking", "string"), ("signature", "string")),
    "redacted_thinking": (("data", "string"),),
}


def _shape(body: dict[str, Any]) -> None:
    """Types of every field the emulator reads (the real API checks them all first)."""
    need(body["model"], "string", ("model",))
    opt(body, "max_tokens", "integer", ())
    for i, msg in enumerate(items(body["messages"], "object", ("messages",))):
        content = msg.get("content")
        if not isinstance(content, str):
            _shape_blocks(content, ("messages", i, "content"))
    system = opt(body, "system", "string|array", ())
    if isinstance(system, list):
        _shape_blocks(system, ("system",))
    for i, tool in enumerate(items(body.get("tools") or [], "object", ("tools",))):
        if tool.get("type") in (None, "custom"):
            need(tool.get("name"), "string", ("tools", i, "name"))
            need(tool.get("input_schema"), "object", ("tools", i, "input_schema"))
    choice = opt(body, "tool_choice", "object", ())
    if choice is not None:
        opt(choice, "type", "string", ("tool_choice",))
        opt(choice, "name", "string", ("tool_choice",))
    stop = opt(body, "stop_sequences", "array", ())
    if stop is not None:
        items(stop, "string", ("stop_sequences",))
    opt(body, "stream", "boolean", ())
    opt(body, "thinking", "object", ())


def _shape_blocks(blocks: Any, path: Path) -> None:
    for j, block in enumerate(items(blocks, "object", path)):
        where = (*path, j)
        kind = need(block.get("type"), "string", (*where, "type"))
        for field, expected in _BLOCK_FIELDS.get(kind, ()):
            need(block.get(field), expected, (*where, field))
        content = block.get("content")
        if kind == "tool_result" and content is not None and not isinstance(content, str):
            _shape_blocks(content, (*where, "content"))


def _validate(body: dict[str, Any], counting: bool) -> list[tuple[str, list[dict[str, Any]]]]:
    if not body.get("model"):
        raise Invalid("model: Field required")
    if not counting and "max_tokens" not in body:
        raise Invalid("max_tokens: Field required")
    if "messages" not in body:
        raise Invalid("messages: Field required")
    if not isinstance(body["messages"], list):
        raise Invalid("messages: Input should be a valid list")
    try:
        _shape(body)
    except Mismatch as exc:
        where = ".".join(map(str, exc.path))
        expected = {"object": "dictionary", "array": "list"}.get(exc.expected, exc.expected)
        raise Invalid(f"{where}: Input should be a valid {expected.replace('|', ' or ')}") from None
    if "does-not-exist" in str(body["model"]):
        raise Invalid(f"model: {body['model']}", 404)
    temp = body.get("temperature")
    if temp is not None and not (isinstance(temp, int | float) and 0 <= temp <= 1):
        raise Invalid("temperature: range: 0..1")
    if "tool_choice" in body and not isinstance(body["tool_choice"], dict):
        raise Invalid(
            "tool_choice: Input should be a valid dictionary or object to extract fields from"
        )
    turns = _merged(body["messages"])
    _check_tools(turns)
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            raise Invalid(
                "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
            )
        if not counting and budget >= int(body.get("max_tokens") or 0):
            raise Invalid(
                "`max_tokens` must be greater than `thinking.budget_tokens`. Please "
                "consult our documentation at https://docs.claude.com/en/docs/"
                "build-with-claude/extended-thinking#max-tokens-and-context-window-size"
            )
    if _thinking_on(body):
        _check_thinking(turns)
    return turns


def _thinking_on(body: dict[str, Any]) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def _turn(body: dict[str, Any], turns: list[tuple[str, list[dict[str, Any]]]]) -> script.Turn:
    tool_uses = {
        b.get("id"): str(b.get("name"))
        for _, blocks in turns
        for b in blocks
        if b.get("type") == "tool_use"
    }
    last = turns[-1][1] if turns and turns[-1][0] == "user" else []
    results = [
        (tool_uses.get(b.get("tool_use_id"), "unknown"), _result_text(b))
        for b in last
        if b.get("type") == "tool_result"
    ]
    texts = [b.get("text", "") for b in last if b.get("type") == "text"]
    choice = body.get("tool_choice") or {}
    mode = {"none": "none", "any": "any", "tool": "any"}.get(str(choice.get("type")), "auto")
    tools = [
        (str(t["name"]), t.get("input_schema") or {})
        for t in body.get("tools") or []
        if isinstance(t, dict) and t.get("name") and t.get("type") in (None, "custom")
    ]
    return script.Turn(
        model=str(body["model"]),
        text=" ".join(texts + [r for _, r in results]),
        tool_results=results,
        tools=tools,
        tool_mode=mode,
        forced_tool=choice.get("name") if choice.get("type") == "tool" else None,
        max_tokens=body.get("max_tokens"),
        stop=list(body.get("stop_sequences") or []),
        reasoning=_thinking_on(body),
        preamble="I'll check that.",
        parallel_allowed=not choice.get("disable_parallel_tool_use", False),
    )


def _usage(
    body: dict[str, Any], plan: script.Plan, deployment: str | None = None
) -> dict[str, Any]:
    total = _prompt_tokens(body)
    read = total // 2 if plan.cache else 0
    if deployment is not None and not plan.cache:  # that deployment's own prompt cache
        segments: list[tuple[Any, int]] = [
            (
                [body.get("system"), body.get("tools")],
                _prompt_tokens({"system": body.get("system")}),
            )
        ]
        for msg in body.get("messages") or []:
            segments.append((msg, _prompt_tokens({"messages": [msg]})))
        read = min(prefix_cache.cached_tokens(deployment, str(body.get("model")), segments), total)
    create = (total - read) // 2 if _has_cache_control(body) else 0
    one_hour = b'"1h"' in orjson.dumps(body) if create else False
    return {
        "input_tokens": total - read - create,
        "cache_creation_input_tokens": create,
        "cache_read_input_tokens": read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": 0 if one_hour else create,
            "ephemeral_1h_input_tokens": create if one_hour else 0,
        },
        "output_tokens": plan.visible_tokens + len(plan.reasoning),
        "service_tier": "standard",
        "inference_geo": "not_available",
    }


def _blocks_out(seed: bytes, plan: script.Plan) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if plan.reasoning:
        out.append(
            {
                "type": "thinking",
                "thinking": plan.reasoning_text,
                "signature": wire.sign("anthropic", plan.reasoning_text),
            }
        )
    if plan.words:
        out.append({"type": "text", "text": plan.text})
    for k, call in enumerate(plan.tool_calls):
        out.append(
            {
                "type": "tool_use",
                "id": "toolu_01" + wire.rand_id(seed, f"tool{k}", 22),
                "name": call.name,
                "input": call.args,
            }
        )
    return out


def _stop(plan: script.Plan) -> str:
    return "end_turn" if plan.stop == "end" else plan.stop


def _ev(name: str, obj: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


def _fragments(text: str) -> list[str]:
    """input_json_delta fragments: "" first (as the API does), then short slices."""
    return ["", *(text[i : i + 7] for i in range(0, len(text), 7))]


def _stream(
    seed: bytes,
    msg_id: str,
    model: str,
    plan: script.Plan,
    usage: dict[str, Any],
    context_management: bool,
) -> list[bytes]:
    start_usage = {k: v for k, v in usage.items() if k != "output_tokens"}
    start_usage = {**start_usage, "output_tokens": 1}
    frames = [
        _ev(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": start_usage,
                },
            },
        )
    ]
    fail = plan.midstream_error or plan.cut
    index = 0

    def block_start(block: dict[str, Any]) -> None:
        frames.append(
            _ev(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": block},
            )
        )
        if index == 0:
            frames.append(_PING)

    def delta(delta: dict[str, Any]) -> bytes:
        return _ev(
            "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        )

    def stop() -> None:
        nonlocal index
        frames.append(_ev("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1

    if plan.reasoning:
        block_start({"type": "thinking", "thinking": "", "signature": ""})
        frames.extend(delta({"type": "thinking_delta", "thinking": t}) for t in plan.reasoning)
        frames.append(delta({"type": "thinking_delta", "thinking": ""}))
        frames.append(
            delta(
                {
                    "type": "signature_delta",
                    "signature": wire.sign("anthropic", plan.reasoning_text),
                }
            )
        )
        stop()
    if plan.words:
        block_start({"type": "text", "text": ""})
        prefix = (
            b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
            + str(index).encode()
            + b',"delta":{"type":"text_delta","text":'
        )
        for n, word in enumerate(plan.words):
            if fail and n == plan.fail_after:
                return frames
            frames.append(prefix + orjson.dumps(word) + b"}}\n\n")
        if fail:
            return frames
        stop()
    elif fail:
        return frames
    for k, call in enumerate(plan.tool_calls):
        block_start(
            {
                "type": "tool_use",
                "id": "toolu_01" + wire.rand_id(seed, f"tool{k}", 22),
                "name": call.name,
                "caller": {"type": "direct"},
                "input": {},
            }
        )
        frames.extend(
            delta({"type": "input_json_delta", "partial_json": f})
            for f in _fragments(json.dumps(call.args))
        )
        stop()
    if index == 0:
        frames.append(_PING)
    final = {
        k: usage[k]
        for k in (
            "input_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
            "output_tokens",
        )
    }
    message_delta: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": _stop(plan), "stop_sequence": plan.stop_sequence},
        "usage": final,
    }
    if context_management:  # the context-management beta reports what it cleared (nothing)
        message_delta["context_management"] = {"applied_edits": []}
    frames.append(_ev("message_delta", message_delta))
    frames.append(_ev("message_stop", {"type": "message_stop"}))
    return frames


def messages(req: Req) -> Resp:
    if (denied := _auth(req)) is not None:
        return denied
    try:
        body = req.json()
        turns = _validate(body, counting=False)
    except BadJSON as exc:
        return error(req, 400, f"There was an error parsing the body of your request: {exc}")
    except Invalid as exc:
        return error(req, exc.status, str(exc))
    plan = script.plan(_turn(body, turns))
    stream = bool(body.get("stream"))
    if plan.error is not None or (plan.midstream_error and not stream):
        resp = error(req, plan.error or script.error_status_for_midstream("anthropic"))
        resp.first_delay = plan.first_delay
        return resp
    seed = req.seed("anthropic")
    rid = "req_011C" + wire.rand_id(seed, "request", 20)
    msg_id = "msg_01" + wire.rand_id(seed, "message", 22)
    usage = _usage(body, plan, req.deployment)
    model = str(body["model"])
    headers = [("request-id", rid)]
    if stream:
        frames = _stream(seed, msg_id, model, plan, usage, "context_management" in body)
        if plan.midstream_error:
            frames.append(
                _ev(
                    "error",
                    {
                        "type": "error",
                        "error": {
                            "details": None,
                            "type": "overloaded_error",
                            "message": "Overloaded",
                        },
                        "request_id": rid,
                    },
                )
            )
        return wire.sse_resp(frames, plan, headers)
    out = {
        "model": model,
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "content": _blocks_out(seed, plan),
        "stop_reason": _stop(plan),
        "stop_sequence": plan.stop_sequence,
        "usage": usage,
    }
    if "context_management" in body:
        out["context_management"] = {"applied_edits": []}
    resp = wire.json_resp(200, out, headers)
    resp.first_delay = plan.first_delay + plan.delay * max(len(plan.words) - 1, 0)
    return resp


def count_tokens(req: Req) -> Resp:
    if (denied := _auth(req)) is not None:
        return denied
    try:
        body = req.json()
        _validate(body, counting=True)
    except BadJSON as exc:
        return error(req, 400, f"There was an error parsing the body of your request: {exc}")
    except Invalid as exc:
        return error(req, exc.status, str(exc))
    return wire.json_resp(200, {"input_tokens": _prompt_tokens(body)})


def models(req: Req) -> Resp:
    key = req.headers.get("x-api-key") or wire.bearer(req)
    if not key:
        return error(req, 401, "x-api-key header is required")
    if wire.is_bad_key(key):
        return error(req, 401, "invalid x-api-key")
    data = [{"type": "model", "id": i, "display_name": n, "created_at": c} for i, n, c in MODELS]
    return wire.json_resp(
        200, {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]}
    )
