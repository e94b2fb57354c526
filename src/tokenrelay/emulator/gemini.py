"""Google Gemini API (native v1beta): generate, stream, countTokens and the models list."""

from __future__ import annotations

from typing import Any

import orjson

from tokenrelay.emulator import script, tokens, wire
from tokenrelay.emulator.shape import Mismatch, Path, items, need
from tokenrelay.emulator.wire import BadJSON, Req, Resp

_CT = "application/json; charset=UTF-8"
MAX_CANDIDATES = 8  # generationConfig.candidateCount: Gemini generates up to 8
_SENTINEL = "skip_thought_signature_validator"
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: "Request had invalid authentication credentials.",
    403: "The caller does not have permission",
    429: "You exceeded your current quota, please check your plan.",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}
_MISSING_SIG = (
    "Function call is missing a thought_signature in functionCall parts. This is required for "
    "tools to work correctly, and missing thought_signature may lead to degraded model "
    "performance. Additional data, function call `default_api:{name}` , position {pos}. Please "
    "refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
)
_FINISH = {
    "end": "STOP",
    "stop_sequence": "STOP",
    "tool_use": "STOP",
    "max_tokens": "MAX_TOKENS",
    "refusal": "SAFETY",
}
MODELS = [
    ("gemini-3-pro-preview", "Gemini 3 Pro Preview"),
    ("gemini-2.5-pro", "Gemini 2.5 Pro"),
    ("gemini-2.5-flash", "Gemini 2.5 Flash"),
    ("gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite"),
    ("gemini-2.0-flash", "Gemini 2.0 Flash"),
]


class Invalid(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def error(status: int, message: str | None = None, details: list[Any] | None = None) -> Resp:
    err: dict[str, Any] = {
        "code": status,
        "message": message or _MESSAGES.get(status, "Error"),
        "status": _STATUS.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION"),
    }
    headers: list[tuple[str, str]] = []
    if status == 429 and details is None:
        details = [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel"}],
            },
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"},
        ]
        headers.append(("retry-after", "1"))
    if details:
        err["details"] = details
    return wire.json_resp(status, {"error": err}, headers, _CT)


def auth(req: Req) -> Resp | None:
    key = req.headers.get("x-goog-api-key") or req.query.get("key")
    if not key:
        return error(
            403,
            "Method doesn't allow unregistered callers (callers without "
            "established identity). Please use API Key or other form of API "
            "consumer identity to call this API.",
        )
    if wire.is_bad_key(key):
        msg = "API key not valid. Please pass a valid API key."
        return error(
            400,
            msg,
            [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                },
                {
                    "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                    "locale": "en-US",
                    "message": msg,
                },
            ],
        )
    return None


def _get(d: Any, camel: str) -> Any:
    """The REST API accepts camelCase and snake_case field names alike."""
    if not isinstance(d, dict):
        return None
    if camel in d:
        return d[camel]
    return d.get("".join("_" + c.lower() if c.isupper() else c for c in camel))


def _parts(content: Any) -> list[dict[str, Any]]:
    parts = _get(content, "parts")
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def _thinks(model: str, budget: Any) -> bool:
    return ("2.5" in model or model.startswith("gemini-3")) and budget != 0


def _prompt_tokens(body: dict[str, Any]) -> int:
    n = 0
    for content in [_get(body, "systemInstruction"), *(_get(body, "contents") or [])]:
        for p in _parts(content):
            if "text" in p:
                n += tokens.count(str(p["text"]))
            elif (call := _get(p, "functionCall")) is not None:
                n += tokens.count(str(call.get("name", ""))) + tokens.count_json(call.get("args"))
            elif (res := _get(p, "functionResponse")) is not None:
                n += tokens.count(str(res.get("name", ""))) + tokens.count_json(res.get("response"))
            else:
                n += tokens.IMAGE_TOKENS
    for tool in _get(body, "tools") or []:
        n += tokens.count_json(tool)
    return max(n, 1)


_PROTO_TYPES = {"string": "TYPE_STRING", "integer": "TYPE_INT32", "number": "TYPE_FLOAT"}


def _shape(body: dict[str, Any]) -> None:
    """Types of every field the emulator reads (the real API parses into protobufs first)."""
    system = _get(body, "systemInstruction")
    for i, content in enumerate(items(_get(body, "contents"), "object", ("contents",))):
        _shape_content(content, ("contents", i))
    if system is not None:
        _shape_content(need(system, "object", ("system_instruction",)), ("system_instruction",))
    for i, tool in enumerate(items(_get(body, "tools") or [], "object", ("tools",))):
        decls = _get(tool, "functionDeclarations") or []
        for k, fd in enumerate(items(decls, "object", ("tools", i, "function_declarations"))):
            need(fd.get("name"), "string", ("tools", i, "function_declarations", k, "name"))
    fcc = _get(_get(body, "toolConfig"), "functionCallingConfig")
    if fcc is not None:
        where: Path = ("tool_config", "function_calling_config")
        need(fcc, "object", where)
        mode = _get(fcc, "mode")
        if mode is not None:
            need(mode, "string", (*where, "mode"))
        items(_get(fcc, "allowedFunctionNames") or [], "string", (*where, "allowed_function_names"))
    gen = _get(body, "generationConfig")
    if gen is not None:
        need(gen, "object", ("generation_config",))
        limit = _get(gen, "maxOutputTokens")
        if limit is not None:
            need(limit, "integer", ("generation_config", "max_output_tokens"))
        items(_get(gen, "stopSequences") or [], "string", ("generation_config", "stop_sequences"))
        thinking = _get(gen, "thinkingConfig")
        if thinking is not None:
            need(thinking, "object", ("generation_config", "thinking_config"))


def _shape_content(content: Any, path: Path) -> None:
    need(content, "object", path)
    role = _get(content, "role")
    if role is not None:
        need(role, "string", (*path, "role"))
    for j, part in enumerate(items(_get(content, "parts") or [], "object", (*path, "parts"))):
        where = (*path, "parts", j)
        if "text" in part:
            need(part["text"], "string", (*where, "text"))
        call = _get(part, "functionCall")
        if call is not None:
            need(call, "object", (*where, "function_call"))
            need(call.get("name"), "string", (*where, "function_call", "name"))
        res = _get(part, "functionResponse")
        if res is not None:
            need(res, "object", (*where, "function_response"))


def _validate(model: str, body: dict[str, Any]) -> None:
    if "does-not-exist" in model:
        raise Invalid(
            f"models/{model} is not found for API version v1beta, or is not supported "
            "for generateContent. Call ListModels to see the list of available models "
            "and their supported methods.",
            404,
        )
    contents = _get(body, "contents")
    if not isinstance(contents, list) or not contents:
        raise Invalid("* GenerateContentRequest.contents: contents is not specified\n")
    try:
        _shape(body)
    except Mismatch as exc:
        where = ".".join(f"{p}" if isinstance(p, str) else f"[{p}]" for p in exc.path)
        proto = _PROTO_TYPES.get(exc.expected, "type.googleapis.com/google.protobuf.Struct")
        raise Invalid(
            f"Invalid value at '{where.replace('.[', '[')}' ({proto}), "
            f"{orjson.dumps(exc.got).decode()}"
        ) from None
    temp = _get(_get(body, "generationConfig"), "temperature")
    if temp is not None and not (isinstance(temp, int | float) and 0 <= temp <= 2):
        raise Invalid(
            "* GenerateContentRequest.generation_config.temperature: must be in the "
            "range [0.0, 2.0]\n"
        )
    for i, content in enumerate(contents):
        role = _get(content, "role") or "user"
        if role not in ("user", "model"):
            raise Invalid("Please use a valid role: user, model.")
        parts = _parts(content)
        if not parts:
            raise Invalid(
                f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n"
            )
        first_call = True
        for j, p in enumerate(parts):
            res = _get(p, "functionResponse")
            if res is not None and not isinstance(_get(res, "response"), dict):
                raise Invalid(
                    f"Invalid value at 'contents[{i}].parts[{j}].function_response."
                    "response' (type.googleapis.com/google.protobuf.Struct), "
                    f"{orjson.dumps(_get(res, 'response')).decode()}"
                )
            call = _get(p, "functionCall")
            if call is None or role != "model" or not model.startswith("gemini-3"):
                continue
            if first_call:  # only the first call of a parallel batch carries a signature
                sig = _get(p, "thoughtSignature")
                if not sig:
                    raise Invalid(_MISSING_SIG.format(name=call.get("name"), pos=j + 1))
                payload = f"{call.get('name')}\0{wire.canonical(call.get('args') or {})}"
                if sig != _SENTINEL and not wire.verify("gemini", payload, _standard_base64(sig)):
                    raise Invalid("Corrupted thought signature.")
            first_call = False


def _standard_base64(sig: Any) -> Any:
    """A signature is proto `bytes`: Gemini takes it in either base64 alphabet, padded or not
    (the Python SDK sends it URL-safe)."""
    if not isinstance(sig, str):
        return sig
    sig = sig.replace("-", "+").replace("_", "/")
    return sig + "=" * (-len(sig) % 4)


def _turn(model: str, body: dict[str, Any], thinks: bool) -> script.Turn:
    contents = _get(body, "contents")
    last = contents[-1] if (_get(contents[-1], "role") or "user") == "user" else {}
    texts = [str(p["text"]) for p in _parts(last) if "text" in p]
    results = []
    for p in _parts(last):
        res = _get(p, "functionResponse")
        if res is not None:
            value = res.get("response") or {}
            single = next(iter(value.values())) if len(value) == 1 else None
            results.append(
                (str(res.get("name")), single if isinstance(single, str) else wire.canonical(value))
            )
    tools = [
        (str(fd["name"]), _get(fd, "parameters") or _get(fd, "parametersJsonSchema") or {})
        for t in _get(body, "tools") or []
        for fd in _get(t, "functionDeclarations") or []
        if isinstance(fd, dict) and fd.get("name")
    ]
    fcc = _get(_get(body, "toolConfig"), "functionCallingConfig") or {}
    mode = str(_get(fcc, "mode") or "AUTO").upper()
    allowed = _get(fcc, "allowedFunctionNames") or []
    gen = _get(body, "generationConfig") or {}
    return script.Turn(
        model=model,
        text=" ".join(texts + [r for _, r in results]),
        tool_results=results,
        tools=tools,
        tool_mode={"NONE": "none", "ANY": "any"}.get(mode, "auto"),
        forced_tool=allowed[0] if allowed and mode == "ANY" else None,
        max_tokens=_get(gen, "maxOutputTokens"),
        stop=list(_get(gen, "stopSequences") or []),
        reasoning=thinks,
    )


def _usage(prompt: int, cached: int, cand: int, thoughts: int) -> dict[str, Any]:
    u: dict[str, Any] = {"promptTokenCount": prompt}
    if cached:
        u["cachedContentTokenCount"] = cached
    if cand:
        u["candidatesTokenCount"] = cand
    u["totalTokenCount"] = prompt + cand + thoughts
    u["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
    if cached:
        u["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
    if thoughts:
        u["thoughtsTokenCount"] = thoughts
    return u


def _call_parts(model: str, plan: script.Plan) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for k, call in enumerate(plan.tool_calls):
        part: dict[str, Any] = {"functionCall": {"name": call.name, "args": call.args}}
        if k == 0 and model.startswith("gemini-3"):
            part["thoughtSignature"] = wire.sign(
                "gemini", f"{call.name}\0{wire.canonical(call.args)}"
            )
        parts.append(part)
    return parts


def _chunks(
    model: str,
    plan: script.Plan,
    prompt: int,
    cached: int,
    visible: bool,
    tail: dict[str, Any],
    index: int = 0,
) -> list[dict[str, Any]]:
    """One candidate's stream as response objects; the non-stream body is built from the same
    plan."""
    chunks: list[dict[str, Any]] = []
    thoughts = 0 if visible else len(plan.reasoning)
    cand = 0

    def chunk(parts: list[dict[str, Any]], finish: str | None = None) -> None:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": index}
        if finish:
            candidate["finishReason"] = finish
        chunks.append(
            {
                "candidates": [candidate],
                "usageMetadata": _usage(prompt, cached, cand, thoughts),
                **tail,
            }
        )

    if visible:
        for piece in plan.reasoning:
            thoughts += 1
            chunk([{"text": piece, "thought": True}])
    fail = plan.midstream_error or plan.cut
    finish = _FINISH[plan.stop]
    sig_tail = model.startswith("gemini-3") and not plan.tool_calls
    for n, word in enumerate(plan.words):
        if fail and n == plan.fail_after:
            return chunks
        cand += 1
        last = n == len(plan.words) - 1 and not sig_tail and not plan.tool_calls and not fail
        chunk([{"text": word}], finish if last else None)
    if fail:
        return chunks
    if plan.tool_calls:
        cand += sum(c.tokens for c in plan.tool_calls)
        chunk(_call_parts(model, plan))
        chunk([{"text": ""}], finish)
    elif sig_tail:
        chunk([{"text": "", "thoughtSignature": wire.sign("gemini-text", plan.text)}], finish)
    elif not plan.words:
        chunk([{"text": ""}], finish)
    return chunks


def _interleaved(
    streams: list[list[dict[str, Any]]], prompt: int, cached: int
) -> list[dict[str, Any]]:
    """Several candidates streamed as Gemini does: their chunks in turn, each naming its
    candidate by `index`, every chunk's usageMetadata counting all candidates so far (so only
    the final chunk's is the whole answer's)."""
    if len(streams) == 1:
        return streams[0]
    out: list[dict[str, Any]] = []
    latest: list[dict[str, Any]] = [{} for _ in streams]
    for k in range(max(map(len, streams))):
        for i, stream in enumerate(streams):
            if k < len(stream):
                latest[i] = stream[k]["usageMetadata"]
                cand = sum(u.get("candidatesTokenCount", 0) for u in latest)
                thoughts = sum(u.get("thoughtsTokenCount", 0) for u in latest)
                out.append({**stream[k], "usageMetadata": _usage(prompt, cached, cand, thoughts)})
    return out


def _candidate_count(body: dict[str, Any]) -> int:
    count = _get(_get(body, "generationConfig"), "candidateCount")
    if count is None:
        return 1
    if type(count) is not int or not 1 <= count <= MAX_CANDIDATES:
        raise Invalid(
            "* GenerateContentRequest.generation_config.candidate_count: must be in the "
            f"range [1, {MAX_CANDIDATES}]\n"
        )
    return count


def generate(req: Req, model: str, stream: bool) -> Resp:
    if (denied := auth(req)) is not None:
        return denied
    model = model.removeprefix("models/")
    try:
        body = req.json()
        _validate(model, body)
        count = _candidate_count(body)
    except BadJSON as exc:
        return error(400, f"Invalid JSON payload received. {exc}")
    except Invalid as exc:
        return error(exc.status, str(exc))
    thinking = _get(_get(body, "generationConfig"), "thinkingConfig") or {}
    thinks = _thinks(model, _get(thinking, "thinkingBudget"))
    visible = thinks and bool(_get(thinking, "includeThoughts"))
    plan = script.plan(_turn(model, body, thinks))
    if plan.error is not None or (plan.midstream_error and not stream):
        resp = error(plan.error or script.error_status_for_midstream("gemini"))
        resp.first_delay = plan.first_delay
        return resp
    prompt = _prompt_tokens(body)
    cached = prompt // 2 if plan.cache else 0
    tail = {"modelVersion": model, "responseId": wire.rand_id(req.seed("gemini"), "response", 23)}
    if plan.stop == "refusal":
        chunks: list[dict[str, Any]] = [
            {
                "promptFeedback": {"blockReason": "SAFETY"},
                "usageMetadata": _usage(prompt, cached, 0, 0),
                **tail,
            }
        ]
    else:
        streams = [_chunks(model, plan, prompt, cached, visible, tail, i) for i in range(count)]
        chunks = _interleaved(streams, prompt, cached)
    if stream:
        sse = req.query.get("alt") == "sse"
        if sse:
            frames = [b"data: " + orjson.dumps(c) + b"\r\n\r\n" for c in chunks]
        else:  # without alt=sse the API streams one JSON array
            frames = [
                (b"[" if i == 0 else b",\r\n") + orjson.dumps(c) for i, c in enumerate(chunks)
            ]
        if plan.midstream_error:
            err = {"error": {"code": 503, "message": _MESSAGES[503], "status": "UNAVAILABLE"}}
            frames.append(
                b"data: " + orjson.dumps(err) + b"\r\n\r\n"
                if sse
                else b",\r\n" + orjson.dumps(err) + b"]"
            )
        elif not sse and not plan.cut:
            frames.append(b"]")
        return wire.sse_resp(frames, plan, content_type="text/event-stream" if sse else _CT)
    resp = wire.json_resp(200, _fold(model, plan, chunks, visible, count), content_type=_CT)
    resp.first_delay = plan.first_delay + plan.delay * max(len(plan.words) - 1, 0)
    return resp


def _fold(
    model: str, plan: script.Plan, chunks: list[dict[str, Any]], visible: bool, count: int
) -> dict[str, Any]:
    """Non-stream body: the stream's parts merged (each of `count` candidates alike), with the
    last chunk's usage."""
    last = chunks[-1]
    if "promptFeedback" in last:
        return last
    parts: list[dict[str, Any]] = []
    if visible and plan.reasoning:
        parts.append({"text": plan.reasoning_text, "thought": True})
    if plan.words:
        text_part: dict[str, Any] = {"text": plan.text}
        if model.startswith("gemini-3") and not plan.tool_calls:
            text_part["thoughtSignature"] = wire.sign("gemini-text", plan.text)
        parts.append(text_part)
    parts.extend(_call_parts(model, plan))
    if not parts:
        parts.append({"text": ""})
    candidate: dict[str, Any] = {
        "content": {"parts": parts, "role": "model"},
        "finishReason": _FINISH[plan.stop],
        "index": 0,
    }
    if plan.tool_calls:
        candidate["finishMessage"] = "Model generated function call(s)."
    return {
        "candidates": [{**candidate, "index": i} for i in range(count)],
        "usageMetadata": last["usageMetadata"],
        "modelVersion": last["modelVersion"],
        "responseId": last["responseId"],
    }


def count_tokens(req: Req, model: str) -> Resp:
    if (denied := auth(req)) is not None:
        return denied
    model = model.removeprefix("models/")
    try:
        body = req.json()
        inner = _get(body, "generateContentRequest")
        body = inner if isinstance(inner, dict) else body
        _validate(model, body)
    except BadJSON as exc:
        return error(400, f"Invalid JSON payload received. {exc}")
    except Invalid as exc:
        return error(exc.status, str(exc))
    n = _prompt_tokens(body)
    return wire.json_resp(
        200,
        {"totalTokens": n, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": n}]},
        content_type=_CT,
    )


def models(req: Req) -> Resp:
    if (denied := auth(req)) is not None:
        return denied
    data = [
        {
            "name": f"models/{m}",
            "version": "001",
            "displayName": d,
            "description": d,
            "inputTokenLimit": 1_048_576,
            "outputTokenLimit": 65_536,
            "supportedGenerationMethods": ["generateContent", "countTokens"],
            "temperature": 1,
            "topP": 0.95,
            "topK": 64,
            "maxTemperature": 2,
            "thinking": "2.5" in m or m.startswith("gemini-3"),
        }
        for m, d in MODELS
    ]
    return wire.json_resp(200, {"models": data}, content_type=_CT)
