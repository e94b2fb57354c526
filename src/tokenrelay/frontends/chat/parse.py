"""OpenAI Chat Completions request body → IR, validated once with errors that name the field.

Mapping choices worth knowing:
- system/developer messages, wherever they sit, become `req.system` texts in order.
- `tool` messages (one per call) and the user message right after them become ONE IR user turn,
  tool results first: the shape Anthropic and Gemini require.
- `reasoning_content` on an assistant message (DeepSeek/xAI style) becomes a Thinking part at
  the start of the turn, so reasoning state survives a round trip through OpenAI-format clients.
- The legacy `functions` / `function_call` / `function` role get a clear 400 (use tools).
- `stream_options` is validated and kept in extras (include_obfuscation and friends), but the
  relay always asks upstream for usage; `client_wants_usage` tells the renderer whether the
  client gets the usage chunk.
- Non-function tools (type "custom") are left out of `req.tools`; `extras["tools"]` then keeps
  the client's whole list for an OpenAI-format upstream to lay over its own.
- Every other unmodelled top-level field goes to `req.extras` (extras_format "openai").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tokenrelay import ir
from tokenrelay.frontends import validate as v
from tokenrelay.frontends.validate import JSONObject

_MODELED = frozenset(
    {
        "model",
        "messages",
        "max_completion_tokens",
        "max_tokens",
        "temperature",
        "top_p",
        "stop",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "reasoning_effort",
        "stream",
        "user",
        "safety_identifier",
    }
)
_LEGACY = ("functions", "function_call")
_ROLES = ("system", "developer", "user", "assistant", "tool")


def client_wants_usage(body: Any) -> bool:
    """Whether the client asked for the final usage chunk (`stream_options.include_usage`)."""
    if not isinstance(body, dict):
        return False
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def parse_chat_request(body: Any, headers: Mapping[str, str]) -> ir.Request:
    data = v.body_object(body)
    for key in _LEGACY:
        if data.get(key) is not None:
            raise v.fail(key, f"the deprecated '{key}' parameter is not supported; use 'tools'")
    req = ir.Request(model=v.required_string(data, "model"), messages=[], extras_format="openai")
    req.system, req.messages = _messages(v.required(data, "messages"))
    _sampling(data, req)
    _tools(data, req)
    if data.get("response_format") is not None:
        req.response_format = _response_format(data["response_format"])
    effort = v.opt_string(data, "reasoning_effort")
    if effort is not None:
        req.thinking = (
            ir.ThinkingConfig(enabled=False)
            if effort == "none"
            else ir.ThinkingConfig(enabled=True, effort=effort)
        )
    req.stream = bool(v.opt_boolean(data, "stream"))
    if data.get("stream_options") is not None:
        v.opt_boolean(
            v.obj(data["stream_options"], "stream_options"), "include_usage", "stream_options"
        )
        req.include_usage = client_wants_usage(data)
    user = v.opt_string(data, "user")  # deprecated by OpenAI in favour of safety_identifier
    req.user = v.opt_string(data, "safety_identifier") or user
    req.extras.update((k, v) for k, v in data.items() if k not in _MODELED)
    req.server_tools = data.get("web_search_options") is not None  # search runs vendor-side
    return req


def _sampling(data: JSONObject, req: ir.Request) -> None:
    for key in ("max_completion_tokens", "max_tokens"):  # the current name wins
        if data.get(key) is not None:
            req.max_tokens = v.integer(data[key], key, minimum=1)
            break
    req.temperature = v.opt_number(data, "temperature", minimum=0, maximum=2)
    req.top_p = v.opt_number(data, "top_p", minimum=0, maximum=1)
    stop = data.get("stop")
    if isinstance(stop, str):
        req.stop = [stop]
    elif stop is not None:
        if not isinstance(stop, list):
            raise v.fail("stop", "expected a string or a list of strings")
        req.stop = v.string_list(stop, "stop", max_items=4)


# ---------------------------------------------------------------------------------- messages


class _Conversation:
    """Builds IR turns; tracks the open tool-result turn that later tool messages join."""

    def __init__(self) -> None:
        self.system: list[ir.Text] = []
        self.messages: list[ir.Message] = []
        self.tool_turn: ir.Message | None = None  # open while tool messages keep coming
        self.call_names: dict[str, str] = {}  # tool_call id → function name (Gemini needs it)

    def add(self, msg: JSONObject, path: str) -> None:
        role = v.one_of(v.required(msg, "role", path), v.at(path, "role"), _ROLES)
        if role != "assistant" and msg.get("tool_calls") is not None:
            # OpenAI refuses it too; dropping it would answer a request the client did not make.
            raise v.fail(v.at(path, "tool_calls"), f"not allowed on a '{role}' message")
        content_path = v.at(path, "content")
        if role in ("system", "developer"):
            self.system += _texts(v.required(msg, "content", path), content_path)
        elif role == "tool":
            self._tool(msg, path)
        elif role == "user":
            parts = _user_content(v.required(msg, "content", path), content_path)
            if self.tool_turn is not None:  # text after tool results joins their turn
                self.tool_turn.parts += parts
                self.tool_turn = None
            else:
                self.messages.append(
                    ir.Message("user", parts, name=v.opt_string(msg, "name", path))
                )
        else:
            self.tool_turn = None
            self.messages.append(self._assistant(msg, path))

    def _tool(self, msg: JSONObject, path: str) -> None:
        call_id = v.required_string(msg, "tool_call_id", path)
        content = _texts(v.required(msg, "content", path), v.at(path, "content"))
        result = ir.ToolResult(call_id, list(content), name=self.call_names.get(call_id))
        if self.tool_turn is None:
            self.tool_turn = ir.Message("user", [])
            self.messages.append(self.tool_turn)
        self.tool_turn.parts.append(result)

    def _assistant(self, msg: JSONObject, path: str) -> ir.Message:
        if msg.get("function_call") is not None:
            raise v.fail(v.at(path, "function_call"), "deprecated; use 'tool_calls'")
        parts: list[ir.Part] = []
        reasoning = v.opt_string(msg, "reasoning_content", path)
        if reasoning:
            parts.append(ir.Thinking(reasoning))
        content = msg.get("content")
        if content is not None:
            # "" next to tool_calls is common; Anthropic and Gemini reject empty text parts.
            texts = _texts(content, v.at(path, "content"), allow_refusal=True)
            parts += [t for t in texts if t.text]
        refusal = v.opt_string(msg, "refusal", path)
        if refusal and content is None:
            parts.append(ir.Text(refusal))
        if msg.get("tool_calls") is not None:
            for raw, where in v.objects(msg["tool_calls"], v.at(path, "tool_calls")):
                call = _tool_call(raw, where)
                self.call_names[call.id] = call.name
                parts.append(call)
        return ir.Message("assistant", parts, name=v.opt_string(msg, "name", path))


def _messages(value: Any) -> tuple[list[ir.Text], list[ir.Message]]:
    conv = _Conversation()
    for msg, path in v.objects(value, "messages"):
        conv.add(msg, path)
    return conv.system, conv.messages


def _texts(value: Any, path: str, *, allow_refusal: bool = False) -> list[ir.Text]:
    """String or text parts (system, developer, tool and assistant content)."""
    if isinstance(value, str):
        return [ir.Text(value)]
    if not isinstance(value, list):
        raise v.fail(path, "expected a string or a list of text parts")
    kinds = ("text", "refusal") if allow_refusal else ("text",)
    texts = []
    for part, where in v.objects(value, path):
        kind = v.one_of(part.get("type"), v.at(where, "type"), kinds)
        texts.append(ir.Text(v.string(v.required(part, kind, where), v.at(where, kind))))
    return texts


def _user_content(value: Any, path: str) -> list[ir.Part]:
    if isinstance(value, str):
        return [ir.Text(value)]
    if not isinstance(value, list):
        raise v.fail(path, "expected a string or a list of content parts")
    parts: list[ir.Part] = []
    for part, where in v.objects(value, path):
        kind = v.required_string(part, "type", where)
        if kind == "text":
            parts.append(ir.Text(v.required_string(part, "text", where)))
        elif kind == "image_url":
            parts.append(_image(part, where))
        elif kind == "file":
            parts.append(_file(part, where))
        elif kind == "input_audio":
            raise v.fail(v.at(where, "type"), "audio input is not supported by this gateway")
        else:
            raise v.fail(v.at(where, "type"), f"unsupported content part type {kind!r}")
    return parts


def _image(part: JSONObject, path: str) -> ir.Image:
    spec_path = v.at(path, "image_url")
    spec = v.required_obj(part, "image_url", path)
    return v.image_url(v.required_string(spec, "url", spec_path), v.at(spec_path, "url"))


def _file(part: JSONObject, path: str) -> ir.Document:
    spec_path = v.at(path, "file")
    spec = v.obj(v.required(part, "file", path), spec_path)
    if spec.get("file_data") is None:
        # file_id refers to OpenAI's Files API, which no other vendor can read.
        raise v.fail(v.at(spec_path, "file_data"), "Field required (file_id is not supported)")
    where = v.at(spec_path, "file_data")
    mime, data = v.data_uri(v.string(spec["file_data"], where), where)
    return ir.Document(
        source_type="base64",
        media_type=mime,
        data=data,
        filename=v.opt_string(spec, "filename", spec_path),
    )


def _tool_call(value: Any, path: str) -> ir.ToolCall:
    call = v.obj(value, path)
    v.one_of(call.get("type", "function"), v.at(path, "type"), ("function",))
    fn_path = v.at(path, "function")
    fn = v.obj(v.required(call, "function", path), fn_path)
    return ir.ToolCall(
        id=v.required_string(call, "id", path),
        name=v.required_string(fn, "name", fn_path),
        arguments=v.opt_string(fn, "arguments", fn_path) or "{}",
    )


# ------------------------------------------------------------------------------------ tools


def _tools(data: JSONObject, req: ir.Request) -> None:
    if data.get("tools") is not None:
        for tool, path in v.objects(data["tools"], "tools"):
            if tool.get("type") != "function":
                req.extras["tools"] = data["tools"]
                continue
            req.tools.append(_function_tool(tool, path))
    if data.get("tool_choice") is not None:
        req.tool_choice = _tool_choice(data["tool_choice"])
    if v.opt_boolean(data, "parallel_tool_calls") is False:
        req.tool_choice = req.tool_choice or ir.ToolChoice("auto")
        req.tool_choice.disable_parallel = True


def _function_tool(tool: JSONObject, path: str) -> ir.Tool:
    return function(v.required_obj(tool, "function", path), v.at(path, "function"))


def function(fn: JSONObject, path: str, prefix: str = "") -> ir.Tool:
    """An OpenAI function definition (Chat nests it under `function`; Responses does not)."""
    parameters = fn.get("parameters")
    return ir.Tool(
        name=prefix + v.required_string(fn, "name", path),
        description=v.opt_string(fn, "description", path),
        parameters=(
            {"type": "object", "properties": {}}
            if parameters is None
            else v.obj(parameters, v.at(path, "parameters"))
        ),
        strict=v.opt_boolean(fn, "strict", path),
    )


def _tool_choice(value: Any) -> ir.ToolChoice:
    if isinstance(value, str):
        mode = v.one_of(value, "tool_choice", ("auto", "required", "none"))
        return ir.ToolChoice("any" if mode == "required" else mode)  # type: ignore[arg-type]
    choice = v.obj(value, "tool_choice")
    v.one_of(choice.get("type"), "tool_choice.type", ("function",))
    fn = v.obj(v.required(choice, "function", "tool_choice"), "tool_choice.function")
    name = v.string(v.required(fn, "name", "tool_choice.function"), "tool_choice.function.name")
    return ir.ToolChoice("tool", name=name)


def _response_format(value: Any) -> dict[str, Any] | None:
    fmt = v.obj(value, "response_format")
    kind = v.one_of(fmt.get("type"), "response_format.type", ("text", "json_object", "json_schema"))
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    spec_path = "response_format.json_schema"
    spec = v.obj(v.required(fmt, "json_schema", "response_format"), spec_path)
    schema = spec.get("schema")
    return {
        "type": "json_schema",
        "name": v.required_string(spec, "name", spec_path),
        "schema": {} if schema is None else v.obj(schema, v.at(spec_path, "schema")),
        "strict": v.opt_boolean(spec, "strict", spec_path),
    }
