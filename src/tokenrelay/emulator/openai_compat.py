"""OpenAI Chat Completions and its dialects: OpenAI, xAI, DeepSeek and a generic compatible server
(vLLM, Ollama, Mistral, ... under any name: plain Chat Completions without the vendors' quirks).
Differences inline."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from tokenrelay.emulator import script, tokens
from tokenrelay.emulator.openai_errors import COMPATIBLE, Invalid, auth, error
from tokenrelay.emulator.shape import Mismatch, Path, items, kind, need, opt
from tokenrelay.emulator.wire import (
    BadJSON,
    Req,
    Resp,
    bearer,
    created,
    derive,
    hex_id,
    is_bad_key,
    json_resp,
    rand_id,
    sse_data,
    sse_resp,
    uuid_like,
)

XAI_CURRENT = (
    "grok-4.3",
    "grok-4.20-reasoning",
    "grok-4.20-non-reasoning",
    "grok-latest",
    "grok-3-mini",
)
_XAI_RETIRED = re.compile(
    r"^(grok-2|grok-3$|grok-4-0709|grok-4$|grok-4-fast|grok-4-1-fast|"
    r"grok-code-fast-1|grok-beta)"
)
DEEPSEEK_MODELS = (
    "deepseek-chat",
    "deepseek-reasoner",
    "deepseek-v4-flash",
    "deepseek-v4-pro",
    "deepseek-flash",
)
OPENAI_MODELS = ("gpt-5", "gpt-5-mini", "gpt-4.1", "gpt-4o", "gpt-4o-mini", "o3", "o4-mini")
_OPENAI_REASONING = re.compile(r"^(o\d|gpt-5)")
_GPT_4O_MAX_OUTPUT = 16_384  # gpt-4o and gpt-4o-mini refuse a larger max_tokens
_FRAGMENT = re.compile(r"\w+|\s+\w+|[^\w\s]+|\s+")
_DS_FINGERPRINT = "fp_eaab8d114b_prod0820_fp8_kvcache"
_ROLES = ("system", "developer", "user", "assistant", "tool", "function")

_MIDSTREAM = {
    "openai": {
        "message": "The server had an error processing your request. Sorry about that! "
        "You can retry your request, or contact us through our help center at "
        "help.openai.com if you keep seeing this error.",
        "type": "server_error",
        "param": None,
        "code": None,
    },
    "xai": {
        "message": "The service is currently unavailable",
        "type": "server_error",
        "param": None,
        "code": None,
    },
    "deepseek": {
        "message": "Server Overloaded",
        "type": "server_error",
        "param": None,
        "code": "server_error",
    },
    COMPATIBLE: {
        "message": "Internal server error",
        "type": "server_error",
        "param": None,
        "code": None,
    },
}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p.get("text", "")
            for p in content
            if isinstance(p, dict) and p.get("type") in ("text", "input_text")
        )
    return ""


def _prompt_tokens(body: dict[str, Any]) -> int:
    n = 0
    for msg in body.get("messages") or []:
        content = msg.get("content")
        n += tokens.count(_text(content))
        if isinstance(content, list):
            n += tokens.IMAGE_TOKENS * sum(
                1
                for p in content
                if isinstance(p, dict) and p.get("type") in ("image_url", "file", "input_audio")
            )
        for call in msg.get("tool_calls") or []:
            fn = call.get("function") or {}
            n += tokens.count(str(fn.get("name", ""))) + tokens.count(str(fn.get("arguments", "")))
    for tool in body.get("tools") or []:
        n += tokens.count_json(tool)
    return max(n, 1)


def _reasoning_mode(vendor: str, body: dict[str, Any]) -> tuple[bool, bool]:
    """(reasons at all, reasoning text visible)."""
    model = str(body.get("model"))
    if vendor == COMPATIBLE:  # a plain chat model: no reasoning fields
        return False, False
    if vendor == "openai":
        on = bool(_OPENAI_REASONING.match(model)) and body.get("reasoning_effort") != "none"
        return on, False
    if vendor == "xai":
        if model == "grok-3-mini":
            return True, True
        off = model == "grok-4.20-non-reasoning" or body.get("reasoning_effort") == "none"
        return not off, False
    thinking = (
        (body.get("thinking") or {}).get("type") if isinstance(body.get("thinking"), dict) else None
    )
    if model == "deepseek-reasoner":
        on = True
    elif model == "deepseek-chat":
        on = thinking == "enabled"
    else:
        on = thinking != "disabled"
    return on, on


def _validate(vendor: str, body: dict[str, Any]) -> None:
    model = body.get("model")
    if not model:
        raise Invalid(
            "you must provide a model parameter", param="model", code="missing_required_parameter"
        )
    if "messages" not in body:
        raise Invalid(
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    if not isinstance(body["messages"], list) or not body["messages"]:
        raise Invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1,"
            " but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    try:
        _shape(body)
    except Mismatch as exc:
        raise _type_error(vendor, exc) from None
    model = str(model)
    if vendor == "xai" and (model not in XAI_CURRENT or "does-not-exist" in model):
        why = " was retired on 2026-05-15; use grok-4.3" if _XAI_RETIRED.match(model) else ""
        raise Invalid(
            f"The model {model}{why} does not exist or your team does not have access to it.", 404
        )
    if vendor == "deepseek" and model not in DEEPSEEK_MODELS:
        raise Invalid("Model Not Exist", 404, code="invalid_request_error")
    if vendor == COMPATIBLE and "does-not-exist" in model:  # serves any other name
        raise Invalid(f"The model `{model}` does not exist.", 404, code="model_not_found")
    if vendor == "openai":
        if "does-not-exist" in model:
            raise Invalid(
                f"The model `{model}` does not exist or you do not have access to it.",
                404,
                code="model_not_found",
            )
        asked = body.get("max_completion_tokens", body.get("max_tokens"))
        if model.startswith("gpt-4o") and isinstance(asked, int) and asked > _GPT_4O_MAX_OUTPUT:
            field = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
            raise Invalid(
                f"{field} is too large: {asked}. This model supports at most "
                f"{_GPT_4O_MAX_OUTPUT} completion tokens, whereas you provided {asked}.",
                param=field,
                code="invalid_value",
            )
        if _OPENAI_REASONING.match(model) and "max_tokens" in body:
            raise Invalid(
                "Unsupported parameter: 'max_tokens' is not supported with this model."
                " Use 'max_completion_tokens' instead.",
                param="max_tokens",
                code="unsupported_parameter",
            )
    if vendor == "xai" and _reasoning_mode(vendor, body)[0]:
        for name in ("presence_penalty", "frequency_penalty", "stop"):
            if body.get(name) is not None:
                raise Invalid(f"Argument not supported on this model: {name}")
    temp = body.get("temperature")
    if temp is not None and not (isinstance(temp, int | float) and 0 <= temp <= 2):
        raise Invalid(
            f"Invalid 'temperature': decimal above maximum value. Expected a value <= "
            f"2, but got {temp} instead.",
            param="temperature",
            code="decimal_above_max_value",
        )
    _check_tool_messages(body["messages"])
    if vendor == "deepseek" and _reasoning_mode(vendor, body)[0]:
        for msg in body["messages"]:
            if (
                isinstance(msg, dict)
                and msg.get("role") == "assistant"
                and msg.get("tool_calls")
                and not msg.get("reasoning_content")
            ):
                raise Invalid(
                    "The `reasoning_content` in the thinking mode must be passed back to the API.",
                    code="invalid_request_error",
                )


def _shape(body: dict[str, Any]) -> None:
    """Types of every field the emulator reads (the real APIs check them all first)."""
    need(body["model"], "string", ("model",))
    for i, msg in enumerate(items(body["messages"], "object", ("messages",))):
        path: Path = ("messages", i)
        role = msg.get("role")
        content = msg.get("content")
        if content is not None and not isinstance(content, str):
            for j, part in enumerate(items(content, "object", (*path, "content"))):
                ptype = need(part.get("type"), "string", (*path, "content", j, "type"))
                if ptype in ("text", "refusal"):
                    need(part.get(ptype), "string", (*path, "content", j, ptype))
        opt(msg, "name", "string", path)
        opt(msg, "reasoning_content", "string", path)
        if role == "tool":
            need(msg.get("tool_call_id"), "string", (*path, "tool_call_id"))
        if msg.get("tool_calls") is None:
            continue
        if role != "assistant":
            raise Invalid(
                f"Additional properties are not allowed ('tool_calls' was unexpected)"
                f" - 'messages.{i}'",
                param=f"messages[{i}]",
                code="additionalProperties",
            )
        for k, call in enumerate(items(msg["tool_calls"], "object", (*path, "tool_calls"))):
            where = (*path, "tool_calls", k)
            need(call.get("id"), "string", (*where, "id"))
            fn = need(call.get("function"), "object", (*where, "function"))
            need(fn.get("name"), "string", (*where, "function", "name"))
            opt(fn, "arguments", "string", (*where, "function"))
    for i, tool in enumerate(items(body.get("tools") or [], "object", ("tools",))):
        fn = opt(tool, "function", "object", ("tools", i))
        if fn is not None:
            opt(fn, "name", "string", ("tools", i, "function"))
            opt(fn, "parameters", "object", ("tools", i, "function"))
    choice = opt(body, "tool_choice", "string|object", ())
    if isinstance(choice, dict):
        fn = opt(choice, "function", "object", ("tool_choice",))
        if fn is not None:
            opt(fn, "name", "string", ("tool_choice", "function"))
    stop = opt(body, "stop", "string|array", ())
    if isinstance(stop, list):
        items(stop, "string", ("stop",))
    for key in ("max_tokens", "max_completion_tokens"):
        opt(body, key, "integer", ())
    opt(body, "stream", "boolean", ())
    options = opt(body, "stream_options", "object", ())
    if options is not None:
        opt(options, "include_usage", "boolean", ("stream_options",))
    opt(body, "reasoning_effort", "string", ())
    opt(body, "thinking", "object", ())


def _type_error(vendor: str, exc: Mismatch) -> Invalid:
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.path).lstrip(".")
    got = kind(exc.got)
    if vendor in ("openai", COMPATIBLE):  # a compatible server answers like OpenAI (vLLM: 400)
        expected = " or ".join(exc.expected.split("|"))
        return Invalid(
            f"Invalid type for '{where}': expected {_a(expected)}, but got {_a(got)} instead.",
            param=where,
            code="invalid_type",
        )
    # xAI and DeepSeek deserialise with serde: a 422 naming the first field that failed.
    return Invalid(
        "Failed to deserialize the JSON body into the target type: "
        f"{where}: invalid type: {got}, expected {exc.expected.replace('|', ' or ')}",
        422,
    )


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _check_tool_messages(messages: list[Any]) -> None:
    pending: set[str] | None = None
    answered: set[str] = set()
    owner = 0
    unanswered = (
        "An assistant message with 'tool_calls' must be followed by tool messages "
        "responding to each 'tool_call_id'. The following tool_call_ids did not have "
        "response messages: {ids}"
    )
    for i, msg in enumerate(messages):
        role = msg.get("role") if isinstance(msg, dict) else None
        if role not in _ROLES:
            raise Invalid(
                f"Invalid value: '{role}'. Supported values are: 'system', 'assistant',"
                " 'user', 'function', 'tool', and 'developer'.",
                param=f"messages[{i}].role",
                code="invalid_value",
            )
        if role == "tool":
            if pending is None or msg.get("tool_call_id") not in pending:
                raise Invalid(
                    "Invalid parameter: messages with role 'tool' must be a response to"
                    " a preceeding message with 'tool_calls'.",
                    param=f"messages.[{i}].role",
                )
            answered.add(msg["tool_call_id"])
            continue
        if pending is not None and answered != pending:
            ids = ", ".join(sorted(pending - answered))
            raise Invalid(unanswered.format(ids=ids), param=f"messages.[{owner}].role")
        pending = None
        if role == "assistant" and msg.get("tool_calls"):
            pending = {str(c.get("id")) for c in msg["tool_calls"] if isinstance(c, dict)}
            answered, owner = set(), i
    if pending is not None and answered != pending:
        ids = ", ".join(sorted(pending - answered))
        raise Invalid(unanswered.format(ids=ids), param=f"messages.[{owner}].role")


def _turn(vendor: str, body: dict[str, Any], reasoning: bool) -> script.Turn:
    messages = body["messages"]
    names = {
        str(c.get("id")): str((c.get("function") or {}).get("name"))
        for m in messages
        for c in m.get("tool_calls") or []
        if isinstance(c, dict)
    }
    results: list[tuple[str, str]] = []
    text = ""
    # System text or reminders after tool results (Claude Code adds them in long sessions, as
    # a mid-conversation system message) ask nothing: the results are what the model answers.
    while len(messages) > 1 and messages[-1].get("role") in ("system", "developer", "user"):
        last = messages[-1]
        if (
            last.get("role") == "user"
            and script.without_reminders(_text(last.get("content"))).strip()
        ):
            break
        messages = messages[:-1]
    if messages[-1].get("role") != "tool":
        messages = body["messages"]
    if messages[-1].get("role") == "tool":
        for msg in reversed(messages):
            if msg.get("role") != "tool":
                break
            results.insert(
                0, (names.get(str(msg.get("tool_call_id")), "unknown"), _text(msg.get("content")))
            )
        text = " ".join(r for _, r in results)
    else:
        text = next(
            (_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), ""
        )
    tools = [
        (str(t["function"]["name"]), t["function"].get("parameters") or {})
        for t in body.get("tools") or []
        if isinstance(t, dict) and isinstance(t.get("function"), dict) and t["function"].get("name")
    ]
    choice = body.get("tool_choice", "auto")
    forced = None
    if isinstance(choice, dict):
        forced = (choice.get("function") or {}).get("name")
        mode = "any"
    else:
        mode = {"none": "none", "required": "any"}.get(str(choice), "auto")
    stop = body.get("stop")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    return script.Turn(
        model=str(body["model"]),
        text=text,
        tool_results=results,
        tools=tools,
        tool_mode=mode,
        forced_tool=forced,
        max_tokens=max_tokens if isinstance(max_tokens, int) else None,
        stop=[stop] if isinstance(stop, str) else list(stop or []),
        reasoning=reasoning,
        parallel_allowed=body.get("parallel_tool_calls", True) is not False,
    )


def _usage(vendor: str, body: dict[str, Any], plan: script.Plan, thinking: bool) -> dict[str, Any]:
    prompt = _prompt_tokens(body)
    cached = prompt // 2 if plan.cache else 0
    reasoning = len(plan.reasoning)
    visible = plan.visible_tokens
    if vendor == "xai":  # completion_tokens excludes reasoning on xAI
        return {
            "prompt_tokens": prompt,
            "completion_tokens": visible,
            "total_tokens": prompt + visible + reasoning,
            "prompt_tokens_details": {
                "text_tokens": prompt,
                "audio_tokens": 0,
                "image_tokens": 0,
                "cached_tokens": cached,
            },
            "completion_tokens_details": {
                "reasoning_tokens": reasoning,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
            "num_sources_used": 0,
            "cost_in_usd_ticks": (prompt - cached) * 2000
            + cached * 500
            + (visible + reasoning) * 5000,
        }
    completion = visible + reasoning
    if vendor == "deepseek":
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
        }
        if thinking:
            usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
        usage["prompt_cache_hit_tokens"] = cached
        usage["prompt_cache_miss_tokens"] = prompt - cached
        return usage
    if vendor == COMPATIBLE:  # the three counts; cache details only when there is a hit
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if cached:
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
        return usage
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _call_id(vendor: str, seed: bytes, k: int) -> str:
    if vendor == "xai":
        return "call_" + str(int.from_bytes(derive(seed, f"tool{k}")[:8], "big") % 10**8).zfill(8)
    if vendor == "deepseek":
        return f"call_{k:02d}_" + rand_id(seed, f"tool{k}", 24)
    if vendor == COMPATIBLE:  # vLLM's form
        return "chatcmpl-tool-" + hex_id(seed, f"tool{k}", 32)
    return "call_" + rand_id(seed, f"tool{k}", 24)


def _args(vendor: str, args: dict[str, Any]) -> str:
    # DeepSeek's model writes JSON with spaces; OpenAI and xAI compact
    return json.dumps(args) if vendor == "deepseek" else orjson.dumps(args).decode()


_FINISH = {
    "end": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def _message(vendor: str, seed: bytes, plan: script.Plan, visible: bool) -> dict[str, Any]:
    calls: list[dict[str, Any]] = []
    for k, call in enumerate(plan.tool_calls):
        fn = {"name": call.name, "arguments": _args(vendor, call.args)}
        if vendor == "xai":
            calls.append({"id": _call_id(vendor, seed, k), "function": fn, "type": "function"})
        elif vendor == "deepseek":
            calls.append(
                {"index": k, "id": _call_id(vendor, seed, k), "type": "function", "function": fn}
            )
        else:
            calls.append({"id": _call_id(vendor, seed, k), "type": "function", "function": fn})
    if plan.words:
        content: str | None = plan.text
    else:
        quiet = calls or plan.stop == "refusal"
        content = None if vendor in ("openai", COMPATIBLE) and quiet else ""
    msg: dict[str, Any] = {"role": "assistant", "content": content}
    if visible and plan.reasoning:
        msg["reasoning_content"] = plan.reasoning_text
    if calls:
        msg["tool_calls"] = calls
    if vendor == "openai":
        msg["refusal"] = None
        msg["annotations"] = []
    elif vendor == "xai":
        msg["refusal"] = None
    return msg


def _envelope(vendor: str, seed: bytes, model: str, include_usage: bool) -> dict[str, Any]:
    if vendor == "openai":
        cid = "chatcmpl-" + rand_id(seed, "completion", 29)
    elif vendor == COMPATIBLE:
        cid = "chatcmpl-" + hex_id(seed, "completion", 32)
    else:
        cid = uuid_like(seed, "completion")
    env: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created(seed),
        "model": model,
    }
    if vendor == COMPATIBLE:  # no fingerprint, and usage only on the last chunk
        env["choices"] = []
    elif vendor == "openai":
        env["service_tier"] = "default"
        env["system_fingerprint"] = "fp_" + hex_id(seed, "fingerprint", 10)
        env["choices"] = []
        if include_usage:
            env["usage"] = None
    elif vendor == "xai":
        env["choices"] = []
        env["system_fingerprint"] = "fp_" + hex_id(b"xai", "fingerprint", 10)
    else:
        env["system_fingerprint"] = _DS_FINGERPRINT
        env["choices"] = []
        env["usage"] = None
    return env


def _stream(
    vendor: str,
    seed: bytes,
    env: dict[str, Any],
    plan: script.Plan,
    visible: bool,
    usage: dict[str, Any],
    include_usage: bool,
    thinking: bool,
) -> list[bytes]:
    frames: list[bytes] = []
    xai = vendor == "xai"
    extra = {} if xai else {"logprobs": None, "finish_reason": None}
    head, tail = orjson.dumps({**env, "choices": [{"index": 0, "delta": "__D__", **extra}]}).split(
        b'"__D__"'
    )
    started = False

    def put(delta: dict[str, Any]) -> None:
        nonlocal started
        if xai and not started:
            delta["role"] = "assistant"  # xAI names the role after the first field
        started = True
        frames.append(b"data: " + head + orjson.dumps(delta) + tail + b"\n\n")

    if visible and plan.reasoning:
        if vendor == "deepseek":
            put({"role": "assistant", "content": None, "reasoning_content": ""})
        for piece in plan.reasoning:
            put(
                {"reasoning_content": piece}
                if xai
                else {"content": None, "reasoning_content": piece}
            )
    elif vendor in ("deepseek", COMPATIBLE):
        put({"role": "assistant", "content": ""})
    elif vendor == "openai" and (plan.words or not plan.tool_calls):
        put(
            {
                "role": "assistant",
                "content": None if plan.stop == "refusal" else "",
                "refusal": None,
            }
        )
    fail = plan.midstream_error or plan.cut
    for n, word in enumerate(plan.words):
        if fail and n == plan.fail_after:
            break
        put(
            {"content": word, "reasoning_content": None}
            if vendor == "deepseek" and thinking
            else {"content": word}
        )
    if fail:
        if plan.midstream_error:
            frames.append(sse_data({"error": _MIDSTREAM[vendor]}))
        return frames
    if xai and plan.tool_calls:
        put(
            {
                "tool_calls": [
                    {
                        "id": _call_id(vendor, seed, k),
                        "function": {"name": c.name, "arguments": _args(vendor, c.args)},
                        "index": k,
                        "type": "function",
                    }
                    for k, c in enumerate(plan.tool_calls)
                ]
            }
        )
    elif plan.tool_calls:
        for k, call in enumerate(plan.tool_calls):
            first: dict[str, Any] = {
                "tool_calls": [
                    {
                        "index": k,
                        "id": _call_id(vendor, seed, k),
                        "type": "function",
                        "function": {"name": call.name, "arguments": ""},
                    }
                ]
            }
            if not started:
                first = {"role": "assistant", "content": None, **first, "refusal": None}
            put(first)
            for frag in _FRAGMENT.findall(_args(vendor, call.args)):
                put({"tool_calls": [{"index": k, "function": {"arguments": frag}}]})
    if not started:
        put({"content": ""})
    finish = _FINISH[plan.stop]
    if vendor == "deepseek":
        last = {"content": "", "reasoning_content": None} if thinking else {"content": ""}
        frames.append(
            sse_data(
                {
                    **env,
                    "choices": [
                        {"index": 0, "delta": last, "logprobs": None, "finish_reason": finish}
                    ],
                    "usage": usage,
                }
            )
        )
    else:
        frames.append(
            sse_data(
                {**env, "choices": [{"index": 0, "delta": {}, **extra, "finish_reason": finish}]}
            )
        )
        if include_usage:
            frames.append(sse_data({**env, "choices": [], "usage": usage}))
    frames.append(b"data: [DONE]\n\n")
    return frames


def chat(req: Req, vendor: str) -> Resp:
    if (denied := auth(req, vendor)) is not None:
        return denied
    try:
        body = req.json()
        _validate(vendor, body)
    except BadJSON:
        return error(
            vendor,
            400,
            "We could not parse the JSON body of your request. (HINT: This "
            "likely means you aren't using your HTTP library correctly.)",
        )
    except Invalid as exc:
        return error(vendor, exc.status, str(exc), exc.param, exc.code)
    reasoning, visible = _reasoning_mode(vendor, body)
    plan = script.plan(_turn(vendor, body, reasoning))
    stream = bool(body.get("stream"))
    if plan.error is not None or (plan.midstream_error and not stream):
        resp = error(vendor, plan.error or script.error_status_for_midstream(vendor))
        resp.first_delay = plan.first_delay
        return resp
    seed = req.seed(vendor)
    model = str(body["model"])
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    usage = _usage(vendor, body, plan, reasoning)
    env = _envelope(vendor, seed, model, include_usage)
    headers = [("x-request-id", "req_" + hex_id(seed, "request", 32))]
    keepalive = vendor == "deepseek" and plan.keepalive
    if stream:
        frames = _stream(vendor, seed, env, plan, visible, usage, include_usage, reasoning)
        return sse_resp(frames, plan, headers, preamble=b": keep-alive\n\n" if keepalive else b"")
    choice: dict[str, Any] = {"index": 0, "message": _message(vendor, seed, plan, visible)}
    if vendor != "xai":
        choice["logprobs"] = None
    choice["finish_reason"] = _FINISH[plan.stop]
    out = {
        "id": env["id"],
        "object": "chat.completion",
        "created": env["created"],
        "model": model,
        "choices": [choice],
        "usage": usage,
    }
    if vendor == "openai":
        out["service_tier"] = "default"
    if "system_fingerprint" in env:
        out["system_fingerprint"] = env["system_fingerprint"]
    resp = json_resp(200, out, headers)
    resp.first_delay = plan.first_delay + plan.delay * max(len(plan.words) - 1, 0)
    if keepalive:
        resp.preamble = b"\n\n"
    return resp


def models(req: Req, vendor: str, owner: str | None = None) -> Resp:
    """The vendor's model list; a compatible server (`owner`: its name) serves any model name
    and lists one placeholder, like a single-model vLLM server."""
    key = bearer(req)
    if not key or is_bad_key(key):
        return auth(req, vendor) or error(vendor, 401)
    if vendor == COMPATIBLE:
        name = owner or COMPATIBLE
        data = [
            {"id": f"{name}-model", "object": "model", "created": 1_700_000_000, "owned_by": name}
        ]
    elif vendor == "deepseek":
        data = [{"id": m, "object": "model", "owned_by": "deepseek"} for m in DEEPSEEK_MODELS]
    else:
        names, owner = (XAI_CURRENT, "xai") if vendor == "xai" else (OPENAI_MODELS, "system")
        data = [
            {"id": m, "object": "model", "created": 1_700_000_000 + 86_400 * i, "owned_by": owner}
            for i, m in enumerate(names)
        ]
    return json_resp(200, {"object": "list", "data": data})
