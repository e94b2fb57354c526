"""Anthropic Messages request body → IR, validated once with errors that name the field.

What the IR cannot model is kept verbatim in `req.extras` (extras_format "anthropic"), so an
Anthropic upstream receives it untouched:
- unknown top-level fields (service_tier, container, mcp_servers, context_management, ...);
- server tools (`tools[i].type` other than "custom", e.g. web_search_20250305): `req.tools` holds
  the custom tools only (what other vendors can run) and `extras["tools"]` the client's whole
  list in its order, which the Anthropic adapter lays over its own;
- `output_config` with keys beyond effort/format is kept whole the same way;
- likewise, server-tool content blocks in messages (server_tool_use, *_tool_result, ...):
  they are left out of the IR messages and `extras["messages"]` keeps the originals.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from tokenrelay import ir
from tokenrelay.frontends import validate as v
from tokenrelay.frontends.validate import JSONObject

_MODELED = frozenset(
    {
        "model",
        "max_tokens",
        "messages",
        "system",
        "tools",
        "tool_choice",
        "thinking",
        "output_config",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "stream",
        "metadata",
    }
)

# Content blocks that only make sense on an Anthropic upstream (server tools' own turns).
_SERVER_BLOCK_SUFFIXES = ("_tool_use", "_tool_result")
_SERVER_BLOCKS = frozenset({"search_result", "container_upload"})
_IMAGE_TYPES = ("base64", "url")
# "system" mid-list: Claude Code sends the sub-agent list that way for models it does not know.
_ROLES = ("user", "assistant", "system")
_DOCUMENT_TYPES = ("base64", "text", "url")


def parse_messages_request(body: Any, headers: Mapping[str, str]) -> ir.Request:
    """POST /v1/messages."""
    data = v.body_object(body)
    req = _parse(data, headers)
    req.max_tokens = v.integer(v.required(data, "max_tokens"), "max_tokens", minimum=1)
    return req


def parse_count_tokens_request(body: Any, headers: Mapping[str, str]) -> ir.Request:
    """POST /v1/messages/count_tokens: the same body, max_tokens not required."""
    data = v.body_object(body)
    req = _parse(data, headers)
    req.max_tokens = v.opt_integer(data, "max_tokens", minimum=1)
    return req


def _parse(data: JSONObject, headers: Mapping[str, str]) -> ir.Request:
    req = ir.Request(
        model=v.required_string(data, "model"),
        messages=[],
        extras_format="anthropic",
        passthrough_headers=_passthrough_headers(headers),
    )
    req.messages, has_server_blocks = _messages(v.required(data, "messages"))
    if has_server_blocks:
        req.extras["messages"] = data["messages"]
    if data.get("system") is not None:
        req.system = _system(data["system"])
    if data.get("tools") is not None:
        req.tools, has_server_tools = _tools(data["tools"])
        if has_server_tools:
            req.extras["tools"] = data["tools"]
            req.server_tools = True
    if data.get("tool_choice") is not None:
        req.tool_choice = _tool_choice(data["tool_choice"])
    if data.get("thinking") is not None:
        req.thinking = _thinking(data["thinking"])
    if data.get("output_config") is not None:
        _output_config(data["output_config"], req)
    req.temperature = v.opt_number(data, "temperature", minimum=0, maximum=1)
    req.top_p = v.opt_number(data, "top_p", minimum=0, maximum=1)
    req.top_k = v.opt_integer(data, "top_k", minimum=0)
    if data.get("stop_sequences") is not None:
        req.stop = v.string_list(data["stop_sequences"], "stop_sequences")
    req.stream = bool(v.opt_boolean(data, "stream"))
    if data.get("metadata") is not None:
        req.user = _metadata_user(data["metadata"])
    for key, value in data.items():
        if key not in _MODELED:
            req.extras[key] = value
    if data.get("mcp_servers"):  # Anthropic calls their tools itself, a sampling pass each
        req.server_tools = True
    return req


def _passthrough_headers(headers: Mapping[str, str]) -> dict[str, str]:
    # anthropic-version is the adapter's business (it speaks one version); the rest
    # (anthropic-beta above all) changes what the upstream accepts, so it travels along.
    out: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith("anthropic-") and lower != "anthropic-version":
            out[lower] = value
    return out


# ---------------------------------------------------------------------------------- messages


def _messages(value: Any) -> tuple[list[ir.Message], bool]:
    messages: list[ir.Message] = []
    has_server_blocks = False
    for msg, path in v.objects(value, "messages"):
        role = v.one_of(v.required(msg, "role", path), v.at(path, "role"), _ROLES)
        if role == "system":
            texts = _system(v.required(msg, "content", path), v.at(path, "content"))
            messages.append(ir.Message(role="system", parts=list(texts)))
            continue
        parts, server = _content(v.required(msg, "content", path), v.at(path, "content"))
        has_server_blocks = has_server_blocks or server
        messages.append(ir.Message(role=role, parts=parts))  # type: ignore[arg-type]
    return messages, has_server_blocks


def _content(value: Any, path: str) -> tuple[list[ir.Part], bool]:
    if isinstance(value, str):
        return [ir.Text(value)], False
    if not isinstance(value, list):
        raise v.fail(path, "expected string or list of content blocks")
    parts: list[ir.Part] = []
    server = False
    for block, where in v.objects(value, path):
        kind = v.required_string(block, "type", where)
        if _is_server_block(kind):
            server = True
            continue
        parts.append(_block(kind, block, where))
    return parts, server


def _is_server_block(kind: str) -> bool:
    return kind in _SERVER_BLOCKS or (kind.endswith(_SERVER_BLOCK_SUFFIXES) and kind != "tool_use")


def _block(kind: str, block: JSONObject, path: str) -> ir.Part:
    if kind == "text":
        return _text(block, path)
    if kind == "image":
        return _image(block, path)
    if kind == "document":
        return _document(block, path)
    if kind == "tool_use":
        return _tool_use(block, path)
    if kind == "tool_result":
        return _tool_result(block, path)
    if kind == "thinking":
        return ir.Thinking(
            text=v.required_string(block, "thinking", path),
            signature=v.opt_string(block, "signature", path),
        )
    if kind == "redacted_thinking":
        return ir.RedactedThinking(v.required_string(block, "data", path))
    raise v.fail(v.at(path, "type"), f"unsupported content block type {kind!r}")


def _cache_control(block: JSONObject, path: str) -> dict[str, Any] | None:
    value = block.get("cache_control")
    return None if value is None else v.obj(value, v.at(path, "cache_control"))


def _text(block: JSONObject, path: str) -> ir.Text:
    citations = block.get("citations")
    return ir.Text(
        text=v.required_string(block, "text", path),
        cache_control=_cache_control(block, path),
        citations=None if citations is None else v.array(citations, v.at(path, "citations")),
    )


def _image(block: JSONObject, path: str) -> ir.Image:
    src_path = v.at(path, "source")
    source = v.obj(v.required(block, "source", path), src_path)
    kind = v.one_of(source.get("type"), v.at(src_path, "type"), _IMAGE_TYPES)
    cache = _cache_control(block, path)
    if kind == "url":
        return ir.Image(
            url=v.required_string(source, "url", src_path),
            cache_control=cache,
        )
    return ir.Image(
        media_type=v.required_string(source, "media_type", src_path),
        data=v.required_string(source, "data", src_path),
        cache_control=cache,
    )


def _document(block: JSONObject, path: str) -> ir.Document:
    src_path = v.at(path, "source")
    source = v.obj(v.required(block, "source", path), src_path)
    kind = v.one_of(source.get("type"), v.at(src_path, "type"), _DOCUMENT_TYPES)
    doc = ir.Document(
        source_type=kind,  # type: ignore[arg-type]
        media_type=v.opt_string(source, "media_type", src_path),
        title=v.opt_string(block, "title", path),
        cache_control=_cache_control(block, path),
        extra={k: v for k, v in block.items() if k in ("citations", "context")},
    )
    if kind == "url":
        doc.url = v.required_string(source, "url", src_path)
    else:
        doc.data = v.required_string(source, "data", src_path)
    return doc


def _tool_use(block: JSONObject, path: str) -> ir.ToolCall:
    arguments = v.required_obj(block, "input", path)
    return ir.ToolCall(
        id=v.required_string(block, "id", path),
        name=v.required_string(block, "name", path),
        arguments=orjson.dumps(arguments).decode(),
        cache_control=_cache_control(block, path),
    )


def _tool_result(block: JSONObject, path: str) -> ir.ToolResult:
    result = ir.ToolResult(
        tool_call_id=v.required_string(block, "tool_use_id", path),
        is_error=bool(v.opt_boolean(block, "is_error", path)),
        cache_control=_cache_control(block, path),
    )
    content = block.get("content")
    c_path = v.at(path, "content")
    if isinstance(content, str):
        result.content = [ir.Text(content)]
    elif isinstance(content, list):
        for item, where in v.objects(content, c_path):
            kind = v.one_of(item.get("type"), v.at(where, "type"), ("text", "image"))
            result.content.append(_text(item, where) if kind == "text" else _image(item, where))
    elif content is not None:
        raise v.fail(c_path, "expected string or list of content blocks")
    return result


# ----------------------------------------------------------------------------- other fields


def _system(value: Any, where: str = "system") -> list[ir.Text]:
    if isinstance(value, str):
        return [ir.Text(value)]
    if not isinstance(value, list):
        raise v.fail(where, "expected string or list of text blocks")
    texts: list[ir.Text] = []
    for block, path in v.objects(value, where):
        v.one_of(block.get("type"), v.at(path, "type"), ("text",))
        texts.append(_text(block, path))
    return texts


def _tools(value: Any) -> tuple[list[ir.Tool], bool]:
    tools: list[ir.Tool] = []
    has_server_tools = False
    for tool, path in v.objects(value, "tools"):
        if v.opt_string(tool, "type", path) not in (None, "custom"):
            has_server_tools = True
            continue
        schema = v.required_obj(tool, "input_schema", path)
        tools.append(
            ir.Tool(
                name=v.required_string(tool, "name", path),
                description=v.opt_string(tool, "description", path),
                parameters=schema,
                strict=v.opt_boolean(tool, "strict", path),
                cache_control=_cache_control(tool, path),
            )
        )
    return tools, has_server_tools


def _tool_choice(value: Any) -> ir.ToolChoice:
    choice = v.obj(value, "tool_choice")
    kind = v.one_of(choice.get("type"), "tool_choice.type", ("auto", "any", "tool", "none"))
    name = None
    if kind == "tool":
        name = v.string(v.required(choice, "name", "tool_choice"), "tool_choice.name")
    disable = v.opt_boolean(choice, "disable_parallel_tool_use", "tool_choice")
    return ir.ToolChoice(type=kind, name=name, disable_parallel=bool(disable))  # type: ignore[arg-type]


def _thinking(value: Any) -> ir.ThinkingConfig:
    cfg = v.obj(value, "thinking")
    kind = v.one_of(cfg.get("type"), "thinking.type", ("enabled", "disabled", "adaptive"))
    if kind == "disabled":
        return ir.ThinkingConfig(enabled=False)
    display = v.opt_string(cfg, "display", "thinking")
    if kind == "adaptive":
        return ir.ThinkingConfig(enabled=True, adaptive=True, display=display)
    budget = v.integer(
        v.required(cfg, "budget_tokens", "thinking"), "thinking.budget_tokens", minimum=1
    )
    return ir.ThinkingConfig(enabled=True, budget_tokens=budget, display=display)


def _output_config(value: Any, req: ir.Request) -> None:
    cfg = v.obj(value, "output_config")
    effort = v.opt_string(cfg, "effort", "output_config")
    if effort is not None:
        if req.thinking is None:
            req.thinking = ir.ThinkingConfig()
        req.thinking.effort = effort
    if cfg.get("format") is not None:
        fmt = v.obj(cfg["format"], "output_config.format")
        v.one_of(fmt.get("type"), "output_config.format.type", ("json_schema",))
        schema = v.obj(
            v.required(fmt, "schema", "output_config.format"), "output_config.format.schema"
        )
        # Anthropic structured output is always constrained decoding, hence strict.
        req.response_format = {
            "type": "json_schema",
            "name": "response",
            "schema": schema,
            "strict": True,
        }
    if set(cfg) - {"effort", "format"}:
        req.extras["output_config"] = cfg  # whole, like server tools: see module docstring


def _metadata_user(value: Any) -> str | None:
    meta = v.obj(value, "metadata")
    for key in meta:
        if key != "user_id":
            raise v.fail(v.at("metadata", key), "Extra inputs are not permitted")
    return v.opt_string(meta, "user_id", "metadata")
