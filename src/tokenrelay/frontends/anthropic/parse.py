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
from tokenrelay.frontends.validate import (
    JSONObject,
    array,
    at,
    body_object,
    fail,
    integer,
    obj,
    one_of,
    opt_boolean,
    opt_integer,
    opt_number,
    opt_string,
    required,
    string,
    string_list,
)

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
    data = body_object(body)
    req = _parse(data, headers)
    req.max_tokens = integer(required(data, "max_tokens"), "max_tokens", minimum=1)
    return req


def parse_count_tokens_request(body: Any, headers: Mapping[str, str]) -> ir.Request:
    """POST /v1/messages/count_tokens: the same body, max_tokens not required."""
    data = body_object(body)
    req = _parse(data, headers)
    req.max_tokens = opt_integer(data, "max_tokens", minimum=1)
    return req


def _parse(data: JSONObject, headers: Mapping[str, str]) -> ir.Request:
    req = ir.Request(
        model=string(required(data, "model"), "model"),
        messages=[],
        extras_format="anthropic",
        passthrough_headers=_passthrough_headers(headers),
    )
    req.messages, has_server_blocks = _messages(required(data, "messages"))
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
    req.temperature = opt_number(data, "temperature", minimum=0, maximum=1)
    req.top_p = opt_number(data, "top_p", minimum=0, maximum=1)
    req.top_k = opt_integer(data, "top_k", minimum=0)
    if data.get("stop_sequences") is not None:
        req.stop = string_list(data["stop_sequences"], "stop_sequences")
    req.stream = bool(opt_boolean(data, "stream"))
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
    for i, raw in enumerate(array(value, "messages")):
        path = at("messages", i)
        msg = obj(raw, path)
        role = one_of(required(msg, "role", path), at(path, "role"), _ROLES)
        if role == "system":
            texts = _system(required(msg, "content", path), at(path, "content"))
            messages.append(ir.Message(role="system", parts=list(texts)))
            continue
        parts, server = _content(required(msg, "content", path), at(path, "content"))
        has_server_blocks = has_server_blocks or server
        messages.append(ir.Message(role=role, parts=parts))  # type: ignore[arg-type]
    return messages, has_server_blocks


def _content(value: Any, path: str) -> tuple[list[ir.Part], bool]:
    if isinstance(value, str):
        return [ir.Text(value)], False
    if not isinstance(value, list):
        raise fail(path, "expected string or list of content blocks")
    parts: list[ir.Part] = []
    server = False
    for j, raw in enumerate(value):
        where = at(path, j)
        block = obj(raw, where)
        kind = string(required(block, "type", where), at(where, "type"))
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
            text=string(required(block, "thinking", path), at(path, "thinking")),
            signature=opt_string(block, "signature", path),
        )
    if kind == "redacted_thinking":
        return ir.RedactedThinking(string(required(block, "data", path), at(path, "data")))
    raise fail(at(path, "type"), f"unsupported content block type {kind!r}")


def _cache_control(block: JSONObject, path: str) -> dict[str, Any] | None:
    value = block.get("cache_control")
    return None if value is None else obj(value, at(path, "cache_control"))


def _text(block: JSONObject, path: str) -> ir.Text:
    citations = block.get("citations")
    return ir.Text(
        text=string(required(block, "text", path), at(path, "text")),
        cache_control=_cache_control(block, path),
        citations=None if citations is None else array(citations, at(path, "citations")),
    )


def _image(block: JSONObject, path: str) -> ir.Image:
    src_path = at(path, "source")
    source = obj(required(block, "source", path), src_path)
    kind = one_of(source.get("type"), at(src_path, "type"), _IMAGE_TYPES)
    cache = _cache_control(block, path)
    if kind == "url":
        return ir.Image(
            url=string(required(source, "url", src_path), at(src_path, "url")), cache_control=cache
        )
    return ir.Image(
        media_type=string(required(source, "media_type", src_path), at(src_path, "media_type")),
        data=string(required(source, "data", src_path), at(src_path, "data")),
        cache_control=cache,
    )


def _document(block: JSONObject, path: str) -> ir.Document:
    src_path = at(path, "source")
    source = obj(required(block, "source", path), src_path)
    kind = one_of(source.get("type"), at(src_path, "type"), _DOCUMENT_TYPES)
    doc = ir.Document(
        source_type=kind,  # type: ignore[arg-type]
        media_type=opt_string(source, "media_type", src_path),
        title=opt_string(block, "title", path),
        cache_control=_cache_control(block, path),
        extra={k: v for k, v in block.items() if k in ("citations", "context")},
    )
    if kind == "url":
        doc.url = string(required(source, "url", src_path), at(src_path, "url"))
    else:
        doc.data = string(required(source, "data", src_path), at(src_path, "data"))
    return doc


def _tool_use(block: JSONObject, path: str) -> ir.ToolCall:
    arguments = obj(required(block, "input", path), at(path, "input"))
    return ir.ToolCall(
        id=string(required(block, "id", path), at(path, "id")),
        name=string(required(block, "name", path), at(path, "name")),
        arguments=orjson.dumps(arguments).decode(),
        cache_control=_cache_control(block, path),
    )


def _tool_result(block: JSONObject, path: str) -> ir.ToolResult:
    result = ir.ToolResult(
        tool_call_id=string(required(block, "tool_use_id", path), at(path, "tool_use_id")),
        is_error=bool(opt_boolean(block, "is_error", path)),
        cache_control=_cache_control(block, path),
    )
    content = block.get("content")
    c_path = at(path, "content")
    if isinstance(content, str):
        result.content = [ir.Text(content)]
    elif isinstance(content, list):
        for k, raw in enumerate(content):
            where = at(c_path, k)
            item = obj(raw, where)
            kind = one_of(item.get("type"), at(where, "type"), ("text", "image"))
            result.content.append(_text(item, where) if kind == "text" else _image(item, where))
    elif content is not None:
        raise fail(c_path, "expected string or list of content blocks")
    return result


# ----------------------------------------------------------------------------- other fields


def _system(value: Any, where: str = "system") -> list[ir.Text]:
    if isinstance(value, str):
        return [ir.Text(value)]
    if not isinstance(value, list):
        raise fail(where, "expected string or list of text blocks")
    texts: list[ir.Text] = []
    for i, raw in enumerate(value):
        path = at(where, i)
        block = obj(raw, path)
        one_of(block.get("type"), at(path, "type"), ("text",))
        texts.append(_text(block, path))
    return texts


def _tools(value: Any) -> tuple[list[ir.Tool], bool]:
    tools: list[ir.Tool] = []
    has_server_tools = False
    for i, raw in enumerate(array(value, "tools")):
        path = at("tools", i)
        tool = obj(raw, path)
        if opt_string(tool, "type", path) not in (None, "custom"):
            has_server_tools = True
            continue
        schema = obj(required(tool, "input_schema", path), at(path, "input_schema"))
        tools.append(
            ir.Tool(
                name=string(required(tool, "name", path), at(path, "name")),
                description=opt_string(tool, "description", path),
                parameters=schema,
                strict=opt_boolean(tool, "strict", path),
                cache_control=_cache_control(tool, path),
            )
        )
    return tools, has_server_tools


def _tool_choice(value: Any) -> ir.ToolChoice:
    choice = obj(value, "tool_choice")
    kind = one_of(choice.get("type"), "tool_choice.type", ("auto", "any", "tool", "none"))
    name = None
    if kind == "tool":
        name = string(required(choice, "name", "tool_choice"), "tool_choice.name")
    disable = opt_boolean(choice, "disable_parallel_tool_use", "tool_choice")
    return ir.ToolChoice(type=kind, name=name, disable_parallel=bool(disable))  # type: ignore[arg-type]


def _thinking(value: Any) -> ir.ThinkingConfig:
    cfg = obj(value, "thinking")
    kind = one_of(cfg.get("type"), "thinking.type", ("enabled", "disabled", "adaptive"))
    if kind == "disabled":
        return ir.ThinkingConfig(enabled=False)
    display = opt_string(cfg, "display", "thinking")
    if kind == "adaptive":
        return ir.ThinkingConfig(enabled=True, adaptive=True, display=display)
    budget = integer(
        required(cfg, "budget_tokens", "thinking"), "thinking.budget_tokens", minimum=1
    )
    return ir.ThinkingConfig(enabled=True, budget_tokens=budget, display=display)


def _output_config(value: Any, req: ir.Request) -> None:
    cfg = obj(value, "output_config")
    effort = opt_string(cfg, "effort", "output_config")
    if effort is not None:
        if req.thinking is None:
            req.thinking = ir.ThinkingConfig()
        req.thinking.effort = effort
    if cfg.get("format") is not None:
        fmt = obj(cfg["format"], "output_config.format")
        one_of(fmt.get("type"), "output_config.format.type", ("json_schema",))
        schema = obj(required(fmt, "schema", "output_config.format"), "output_config.format.schema")
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
    meta = obj(value, "metadata")
    for key in meta:
        if key != "user_id":
            raise fail(at("metadata", key), "Extra inputs are not permitted")
    return opt_string(meta, "user_id", "metadata")
