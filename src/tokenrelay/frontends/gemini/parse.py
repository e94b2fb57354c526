"""Gemini `generateContent` request body → IR, validated once with errors that name the field.

The model and the stream flag are not in a Gemini body but in its URL
(`models/{model}:streamGenerateContent`): the route puts them into the payload as `model` and
`stream` (see `gemini.route`), so the relay's intake reads them as for every other API.

Mapping choices worth knowing:
- Roles are user/model; `systemInstruction` becomes `req.system`.
- Consecutive `thought` parts of a model turn form one Thinking part, ended by the part that
  carries its `thoughtSignature` (a stream delivers a thought in pieces, its signature last);
  a `thoughtSignature` on a functionCall is that call's signature.
- Gemini function calls may come without ids: a call without one gets `call_{turn}_{n}`, and a
  functionResponse without one takes the first unanswered call of its name. Gemini CLI
  prefixes the ids it is given with `{name}__`; that prefix is taken off again, so the id is
  the vendor's and the reasoning state remembered under it is found.
- A functionResponse `{"output"|"result": text}` is that text; `{"error": text}` an error
  result; any other object its JSON.
- `parameters` (Gemini's OpenAPI subset: upper-case types, `nullable`) becomes JSON Schema for
  the IR; `parametersJsonSchema` is JSON Schema already.
- Server tools (googleSearch, codeExecution, urlContext ...), `safetySettings`,
  `cachedContent` and generationConfig fields the IR does not model go to `req.extras`
  (extras_format "gemini"): a Gemini upstream gets them, others cannot use them.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from tokenrelay import ir
from tokenrelay.frontends import validate as v
from tokenrelay.frontends.validate import JSONObject

# What Gemini's URL says (the model, streaming): a body that repeats them is not sent on with
# them (see GeminiVendor); the gateway reads them from the route (gateway.intake).
ROUTE_FIELDS = ("model", "stream")
_TOP_LEVEL = frozenset(
    {
        *ROUTE_FIELDS,
        "contents",
        "systemInstruction",
        "tools",
        "toolConfig",
        "generationConfig",
    }
)
_GEN_MODELED = frozenset(
    {
        "temperature",
        "topP",
        "topK",
        "maxOutputTokens",
        "candidateCount",
        "stopSequences",
        "responseMimeType",
        "responseSchema",
        "responseJsonSchema",
        "_responseJsonSchema",
        "thinkingConfig",
    }
)
_LEVELS = ("MINIMAL", "LOW", "MEDIUM", "HIGH")
_MODES = ("AUTO", "ANY", "NONE", "VALIDATED", "MODE_UNSPECIFIED")


def _camel(d: JSONObject) -> JSONObject:
    """One level of a Gemini message with its field names in camelCase. Proto3 JSON takes
    both spellings, and clients use both (google-genai sends `thinking_budget`). One level
    only: the keys below (`args`, `response`, schemas) are the client's own data."""
    if not any("_" in k for k in d):
        return d
    out: JSONObject = {}
    for key, value in d.items():
        camel = key
        if "_" in key[1:]:
            head, *rest = key.split("_")
            camel = head + "".join(w[:1].upper() + w[1:] for w in rest)
        if camel not in out or camel == key:
            out[camel] = value
    return out


def _object(value: Any, path: str) -> JSONObject:
    return _camel(v.obj(value, path))


def _objects(value: Any, path: str) -> Iterator[tuple[JSONObject, str]]:
    for item, where in v.objects(value, path):
        yield _camel(item), where


# Anthropic's redacted thinking travels as a thought part whose wrapped signature is this
# prefix + its data (Gemini has no part for it).
REDACTED = "redacted_thinking:"


def wrap_signature(signature: str) -> str:
    """A vendor's signature as canonical base64, which Gemini clients keep byte-exact."""
    return base64.b64encode(signature.encode()).decode()


def unwrap_signature(value: str | None) -> str | None:
    """The vendor signature `wrap_signature` gave the client; None for anything else (Gemini's
    own signatures only matter to Gemini, which gets the client's body as it came)."""
    if not value:
        return None
    # Bytes in proto3 JSON: either alphabet, padded or not (the Python SDK sends URL-safe).
    text = value.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True).decode()
    except ValueError:  # not base64 (binascii.Error), not ASCII, not UTF-8 underneath
        return None


def parse_generate_request(body: Any, headers: Mapping[str, str]) -> ir.Request:
    data = _camel(v.body_object(body))
    # The model and streaming come from the URL (the intake sets them); a batch line's or a
    # countTokens' inner request may name its model.
    model = (v.opt_string(data, "model") or "").removeprefix("models/")
    req = ir.Request(model=model, messages=[], extras_format="gemini")
    req.include_usage = True  # Gemini streams always carry usageMetadata
    system = data.get("systemInstruction")
    if system is not None:
        req.system = _system(system)
    req.messages = _Conversation().messages_of(v.required(data, "contents"))
    _tools(data, req)
    gen = data.get("generationConfig")
    if gen is not None:
        _generation(_object(gen, "generationConfig"), req)
    req.extras.update((k, v) for k, v in data.items() if k not in _TOP_LEVEL)
    # A cache's contents are billed as prompt (at the cache rate) but are not in the body.
    req.prompt_outside_body = bool(data.get("cachedContent"))
    return req


def parse_count_tokens(body: Any, headers: Mapping[str, str]) -> ir.Request:
    """countTokens takes `contents` or a whole `generateContentRequest`."""
    data = _camel(v.body_object(body))
    inner = data.get("generateContentRequest")
    if inner is not None:
        data = {**_object(inner, "generateContentRequest"), "model": data.get("model")}
    return parse_generate_request(data, headers)


# ---------------------------------------------------------------------------------- contents


def _system(value: Any) -> list[ir.Text]:
    if isinstance(value, str):  # the SDKs accept a bare string; the API a Content
        return [ir.Text(value)]
    content = _object(value, "systemInstruction")
    parts = v.array(v.required(content, "parts", "systemInstruction"), "systemInstruction.parts")
    texts = []
    for i, raw in enumerate(parts):
        where = v.at("systemInstruction.parts", i)
        texts.append(
            ir.Text(v.string(v.required(v.obj(raw, where), "text", where), v.at(where, "text")))
        )
    return texts


class _Conversation:
    """Builds IR turns; pairs functionResponses with the calls they answer."""

    def __init__(self) -> None:
        self.messages: list[ir.Message] = []
        self.unanswered: list[tuple[str, str]] = []  # (name, id) of calls not yet answered

    def messages_of(self, value: Any) -> list[ir.Message]:
        for turn, (content, path) in enumerate(_objects(value, "contents")):
            role = content.get("role") or "user"
            if role not in ("user", "model", "function"):
                raise v.fail(v.at(path, "role"), "expected one of 'user', 'model'")
            parts = v.required_array(content, "parts", path)
            if role == "model":
                self.messages.append(ir.Message("assistant", self._model_parts(parts, turn, path)))
            else:
                self.messages.append(ir.Message("user", self._user_parts(parts, path)))
        return self.messages

    def _model_parts(self, parts: list[Any], turn: int, path: str) -> list[ir.Part]:
        out: list[ir.Part] = []
        thinking: ir.Thinking | None = None  # the open run of thought parts
        calls = 0
        for part, where in _objects(parts, v.at(path, "parts")):
            signature = unwrap_signature(v.opt_string(part, "thoughtSignature", where))
            if part.get("thought") is True:
                text = v.opt_string(part, "text", where) or ""
                if signature and signature.startswith(REDACTED):
                    out.append(ir.RedactedThinking(signature[len(REDACTED) :]))
                    thinking = None
                elif thinking is None or thinking.signature:  # a signature ends its block
                    thinking = ir.Thinking(text, signature)
                    out.append(thinking)
                else:
                    thinking.text += text
                    thinking.signature = signature
                continue
            thinking = None
            call = part.get("functionCall")
            if call is not None:
                tool_call = _function_call(
                    _object(call, v.at(where, "functionCall")), where, turn, calls
                )
                tool_call.signature = signature
                calls += 1
                self.unanswered.append((tool_call.name, tool_call.id))
                out.append(tool_call)
            else:
                out += _content_part(part, where)
        return out

    def _user_parts(self, parts: list[Any], path: str) -> list[ir.Part]:
        out: list[ir.Part] = []
        for part, where in _objects(parts, v.at(path, "parts")):
            response = part.get("functionResponse")
            if response is not None:
                out.append(self._result(_object(response, v.at(where, "functionResponse")), where))
            elif part.get("functionCall") is not None:
                raise v.fail(v.at(where, "functionCall"), "only allowed in a 'model' turn")
            else:
                out += _content_part(part, where)
        # Tool results first in their turn: the order Anthropic requires.
        out.sort(key=lambda p: not isinstance(p, ir.ToolResult))
        return out

    def _result(self, response: JSONObject, where: str) -> ir.ToolResult:
        path = v.at(where, "functionResponse")
        name = v.required_string(response, "name", path)
        call_id = _call_id(v.opt_string(response, "id", path), name)
        if call_id is None:
            call_id = next((i for n, i in self.unanswered if n == name), None) or f"call_{name}"
        self.unanswered = [(n, i) for n, i in self.unanswered if i != call_id]
        value = response.get("response")
        value = {} if value is None else v.obj(value, v.at(path, "response"))
        is_error = set(value) == {"error"}
        text = next(iter(value.values())) if len(value) == 1 else None
        if not isinstance(text, str) or not (is_error or set(value) & {"output", "result"}):
            text = orjson.dumps(value).decode()
        content: list[ir.Text | ir.Image] = [ir.Text(text)]
        for part, where in _objects(response.get("parts") or [], v.at(path, "parts")):
            for p in _content_part(part, where):
                if isinstance(p, ir.Text | ir.Image):
                    content.append(p)
        return ir.ToolResult(call_id, content, is_error=is_error, name=name)


def _call_id(value: str | None, name: str) -> str | None:
    """The vendor's call id as the gateway gave it: Gemini CLI prefixes ids with `{name}__`."""
    return value.removeprefix(name + "__") if value else None


def _function_call(call: JSONObject, where: str, turn: int, n: int) -> ir.ToolCall:
    path = v.at(where, "functionCall")
    args = call.get("args")
    name = v.required_string(call, "name", path)
    return ir.ToolCall(
        id=_call_id(v.opt_string(call, "id", path), name) or f"call_{turn}_{n}",
        name=name,
        arguments=orjson.dumps({} if args is None else v.obj(args, v.at(path, "args"))).decode(),
    )


def _content_part(part: JSONObject, where: str) -> list[ir.Part]:
    if "text" in part:
        text = v.string(part["text"], v.at(where, "text"))
        return [ir.Text(text)] if text else []
    if part.get("inlineData") is not None:
        path = v.at(where, "inlineData")
        blob = _object(part["inlineData"], path)
        mime = v.required_string(blob, "mimeType", path)
        return [_media(mime, data=v.required_string(blob, "data", path))]
    if part.get("fileData") is not None:
        path = v.at(where, "fileData")
        ref = _object(part["fileData"], path)
        uri = v.required_string(ref, "fileUri", path)
        return [_media(v.opt_string(ref, "mimeType", path), url=uri)]
    code = part.get("executableCode")
    if code is not None:  # Gemini's own code execution, shown to other vendors as text
        return [ir.Text("```\n" + str(v.obj(code, where).get("code") or "") + "\n```")]
    result = part.get("codeExecutionResult")
    if result is not None:
        return [ir.Text(str(v.obj(result, where).get("output") or ""))]
    if part.get("functionResponse") is not None or part.get("functionCall") is not None:
        raise v.fail(where, "function parts are not allowed here")
    if part.get("thoughtSignature") is not None or not part:
        return []  # a signature alone (the end of a Gemini 3 answer): nothing to say
    raise v.fail(where, f"unsupported part (keys: {', '.join(sorted(part))})")


def _media(mime: str | None, *, data: str | None = None, url: str | None = None) -> ir.Part:
    """Inline bytes (`data`) or a file (`url`): an image when its MIME type says so, else a
    document (PDF, text, ...)."""
    if mime and mime.startswith("image/"):
        return ir.Image(media_type=mime, data=data, url=url)
    return ir.Document("url" if url is not None else "base64", media_type=mime, data=data, url=url)


# ------------------------------------------------------------------------------------ tools


def _tools(data: JSONObject, req: ir.Request) -> None:
    tools = data.get("tools")
    server: list[Any] = []
    if tools is not None:
        for tool, path in _objects(tools, "tools"):
            decls = tool.get("functionDeclarations")
            if decls is not None:
                for decl, where in _objects(decls, v.at(path, "functionDeclarations")):
                    req.tools.append(_declaration(decl, where))
            others = {k: v for k, v in tool.items() if k != "functionDeclarations"}
            if others:
                server.append(others)
    if server:  # search, code execution, URL context: run by Gemini, several passes each
        req.extras["tools"] = server
        req.server_tools = True
    config = data.get("toolConfig")
    if config is not None:
        calling = _object(config, "toolConfig").get("functionCallingConfig")
        if calling is not None:
            req.tool_choice = _calling(_object(calling, "toolConfig.functionCallingConfig"))


def _declaration(decl: JSONObject, path: str) -> ir.Tool:
    schema = decl.get("parametersJsonSchema")
    if schema is not None:
        params = v.obj(schema, v.at(path, "parametersJsonSchema"))
    elif decl.get("parameters") is not None:
        params = json_schema(v.obj(decl["parameters"], v.at(path, "parameters")))
    else:
        params = {"type": "object", "properties": {}}
    return ir.Tool(
        name=v.required_string(decl, "name", path),
        description=v.opt_string(decl, "description", path),
        parameters=params,
    )


def _calling(config: JSONObject) -> ir.ToolChoice:
    path = "toolConfig.functionCallingConfig"
    mode = str(config.get("mode") or "AUTO").upper()
    if mode not in _MODES:
        raise v.fail(v.at(path, "mode"), "expected one of " + ", ".join(_MODES[:4]))
    names = config.get("allowedFunctionNames")
    allowed = v.string_list(names, v.at(path, "allowedFunctionNames")) if names else []
    if mode == "NONE":
        return ir.ToolChoice("none")
    if mode == "ANY":
        if len(allowed) == 1:
            return ir.ToolChoice("tool", name=allowed[0])
        return ir.ToolChoice("any")
    return ir.ToolChoice("auto")


_TYPES = {"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"}


def json_schema(schema: Any) -> Any:
    """Gemini's OpenAPI-subset Schema → JSON Schema: lower-case types, `nullable` as a null
    type, `propertyOrdering` dropped, nested schemas converted."""
    if isinstance(schema, list):
        return [json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("propertyOrdering", "nullable"):
            continue
        if key == "type" and isinstance(value, str) and value.upper() in _TYPES:
            out["type"] = value.lower()
        elif key == "properties" and isinstance(value, dict):
            out["properties"] = {k: json_schema(v) for k, v in value.items()}
        elif key in ("items", "anyOf"):
            out[key] = json_schema(value)
        else:
            out[key] = value
    if schema.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


# ------------------------------------------------------------------------- generationConfig


def _generation(gen: JSONObject, req: ir.Request) -> None:
    path = "generationConfig"
    req.temperature = v.opt_number(gen, "temperature", path, minimum=0, maximum=2)
    req.top_p = v.opt_number(gen, "topP", path, minimum=0, maximum=1)
    req.top_k = v.opt_integer(gen, "topK", path, minimum=1)
    req.max_tokens = v.opt_integer(gen, "maxOutputTokens", path, minimum=1)
    v.opt_integer(gen, "candidateCount", path, minimum=1)  # a Gemini upstream generates them
    stop = gen.get("stopSequences")
    if stop is not None:
        req.stop = v.string_list(stop, v.at(path, "stopSequences"), max_items=5)
    mime = v.opt_string(gen, "responseMimeType", path)
    schema = gen.get("responseJsonSchema") or gen.get("_responseJsonSchema")
    if schema is None and gen.get("responseSchema") is not None:
        schema = json_schema(_object(gen["responseSchema"], v.at(path, "responseSchema")))
    if schema is not None or mime == "application/json":
        req.response_format = (
            {"type": "json_object"}
            if schema is None
            else {"type": "json_schema", "name": "response", "schema": v.obj(schema, path)}
        )
    thinking = gen.get("thinkingConfig")
    if thinking is not None:
        req.thinking = _thinking(_object(thinking, v.at(path, "thinkingConfig")))
    rest = {k: v for k, v in gen.items() if k not in _GEN_MODELED}
    if rest or "candidateCount" in gen:
        req.extras["generationConfig"] = {
            **rest,
            **({"candidateCount": gen["candidateCount"]} if "candidateCount" in gen else {}),
        }


def _thinking(cfg: JSONObject) -> ir.ThinkingConfig:
    path = "generationConfig.thinkingConfig"
    budget = cfg.get("thinkingBudget")
    if budget is not None:
        budget = v.integer(budget, v.at(path, "thinkingBudget"), minimum=-1)
    level = v.opt_string(cfg, "thinkingLevel", path)
    if level is not None and level.upper() not in _LEVELS:
        raise v.fail(v.at(path, "thinkingLevel"), "expected one of " + ", ".join(_LEVELS))
    include = v.opt_boolean(cfg, "includeThoughts", path)
    if budget == 0:
        return ir.ThinkingConfig(enabled=False)
    return ir.ThinkingConfig(
        enabled=True if budget or level or include else None,
        budget_tokens=budget if budget and budget > 0 else None,
        effort=level.lower() if level else None,
        adaptive=budget == -1,
    )
