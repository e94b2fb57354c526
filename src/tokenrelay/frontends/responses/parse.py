"""OpenAI Responses API request body → IR, validated once with errors that name the field.

Mapping choices worth knowing:
- `instructions` and system/developer messages, wherever they sit, become `req.system` texts.
- Consecutive assistant-side items (assistant messages, `function_call`, `reasoning`) make ONE
  IR assistant turn; `function_call_output` items and the user message right after them make
  ONE IR user turn, tool results first: the shapes Anthropic and Gemini require.
- `reasoning` items whose `encrypted_content` the gateway issued (`reasoning_blob`) become the
  vendor's own Thinking/RedactedThinking parts again (Anthropic signatures, DeepSeek
  reasoning). OpenAI's own encrypted reasoning only means something to OpenAI (fast path).
- Tools in a `namespace` are flattened to `<namespace>__<name>`; the renderer splits the name
  back into `name` and `namespace` on the way out.
- OpenAI's built-in tools (web_search, file_search, ...) run only on OpenAI: they are listed in
  `req.native_only` and a translated request refuses them; those OpenAI runs itself set
  `req.server_tools` (the hold counts their sampling passes). A `web_search` tool without live
  access (`external_web_access: false`, which Codex CLI sends on every request by default) is
  only an offer of OpenAI's cached search index: elsewhere it is left out instead.
- Compaction (reasoning/compaction.py): a `compaction_trigger` item asks for the conversation
  to be compacted (`Echo.compact`: the renderer answers with one `compaction` item, and the
  model is asked for a summary, tools off); a `compaction` item the gateway sealed becomes the
  summary's text in a user turn again; OpenAI's own only means something to OpenAI (fast path).
- The gateway stores no response: `previous_response_id`, `conversation`, `item_reference`
  and `background` are refused with the way to do without them.
- Whatever the renderer must echo or obey (include, summary, the request's parameters) is
  returned beside the IR as `Echo`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tokenrelay import ir
from tokenrelay.frontends import validate as v
from tokenrelay.frontends.chat.parse import function
from tokenrelay.frontends.validate import JSONObject
from tokenrelay.reasoning import compaction
from tokenrelay.reasoning.cache import BLOB_PREFIX, from_blob

NAMESPACE_SEP = "__"
_MODELED = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning",
        "max_output_tokens",
        "temperature",
        "top_p",
        "text",
        "stream",
        "user",
        "safety_identifier",
    }
)
_STORED = {
    "previous_response_id": "the gateway does not store responses; send the whole "
    "conversation as `input` (with store: false and include: "
    '["reasoning.encrypted_content"] to keep reasoning)',
    "conversation": "the gateway does not store conversations; send the whole conversation "
    "as `input`",
}
_ROLES = ("user", "assistant", "system", "developer")
_SKIPPED_ITEMS = frozenset({"web_search_call"})  # OpenAI-run search: its answer text follows


@dataclass(slots=True)
class Echo:
    """What the response object repeats of the request, and what shapes the output."""

    fields: dict[str, Any] = field(default_factory=lambda: _echo_fields({}))
    summary: bool = False  # reasoning.summary asked: reasoning text streams as a summary
    encrypted: bool = False  # include: reasoning.encrypted_content
    namespaces: frozenset[str] = frozenset()
    compact: bool = False  # a compaction_trigger came: the answer is one compaction item
    kept: list[Any] = field(default_factory=list)  # /responses/compact: the user's messages


def _unblob(blob: str, path: str) -> list[ir.Part]:
    try:
        return list(from_blob(blob))
    except ValueError:
        raise v.fail(path, "not reasoning this gateway issued (send it back unchanged)") from None


def parse_responses_request(body: Any, headers: Mapping[str, str]) -> tuple[ir.Request, Echo]:
    data = v.body_object(body)
    for key, why in _STORED.items():
        if data.get(key) is not None:
            raise v.fail(key, why)
    if v.opt_boolean(data, "background"):
        raise v.fail("background", "background responses need stored responses; stream instead")
    req = ir.Request(model=v.required_string(data, "model"), messages=[], extras_format="responses")
    echo = Echo()
    instructions = v.opt_string(data, "instructions")
    conv = _Conversation()
    conv.items(v.required(data, "input"))
    req.system = ([ir.Text(instructions)] if instructions else []) + conv.system
    req.messages = conv.messages
    _tools(data, req, echo)
    if conv.compact:
        echo.compact = req.shown_at_end = True
        # The summary is the whole answer: a tool call would be a turn nobody runs.
        ask = ir.Text(compaction.SUMMARIZATION_PROMPT)
        if req.messages and req.messages[-1].role == "user":  # after tool results: one turn
            req.messages[-1].parts.append(ask)
        else:
            req.messages.append(ir.Message("user", [ask]))
        if req.tools:
            req.tool_choice = ir.ToolChoice("none")
    _reasoning(data, req, echo)
    req.max_tokens = (
        None
        if data.get("max_output_tokens") is None
        else v.integer(data["max_output_tokens"], "max_output_tokens", minimum=1)
    )
    req.temperature = v.opt_number(data, "temperature", minimum=0, maximum=2)
    req.top_p = v.opt_number(data, "top_p", minimum=0, maximum=1)
    if data.get("text") is not None:
        req.response_format = _text_format(v.obj(data["text"], "text"))
    if data.get("include") is not None:
        include = v.string_list(data["include"], "include")
        echo.encrypted = "reasoning.encrypted_content" in include
    req.stream = bool(v.opt_boolean(data, "stream"))
    req.include_usage = True  # usage is part of every response
    user = v.opt_string(data, "user")
    req.user = v.opt_string(data, "safety_identifier") or user
    req.extras.update((k, v) for k, v in data.items() if k not in _MODELED)
    echo.fields = _echo_fields(data)
    return req, echo


def _echo_fields(data: JSONObject) -> dict[str, Any]:
    reasoning = data.get("reasoning") or {}
    return {
        "instructions": data.get("instructions"),
        "max_output_tokens": data.get("max_output_tokens"),
        "metadata": data.get("metadata") or {},
        "parallel_tool_calls": data.get("parallel_tool_calls", True),
        "prompt_cache_key": data.get("prompt_cache_key"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "safety_identifier": data.get("safety_identifier"),
        "store": False,  # the gateway keeps nothing, whatever was asked
        "temperature": data.get("temperature"),
        "text": data.get("text") or {"format": {"type": "text"}},
        "tool_choice": data.get("tool_choice") or "auto",
        "tools": data.get("tools") or [],
        "top_p": data.get("top_p"),
        "truncation": data.get("truncation") or "disabled",
        "user": data.get("user"),
    }


# ------------------------------------------------------------------------------------ input


class _Conversation:
    def __init__(self) -> None:
        self.system: list[ir.Text] = []
        self.messages: list[ir.Message] = []
        self.assistant: ir.Message | None = None  # open while assistant-side items keep coming
        self.tool_turn: ir.Message | None = None  # open while function outputs keep coming
        self.call_names: dict[str, str] = {}
        self.compact = False

    def items(self, value: Any) -> None:
        if isinstance(value, str):
            self.messages.append(ir.Message("user", [ir.Text(value)]))
            return
        for item, path in v.objects(value, "input"):
            self.add(item, path)

    def add(self, item: JSONObject, path: str) -> None:
        kind = v.string(item.get("type", "message"), v.at(path, "type"))
        if kind == "message":
            self._message(item, path)
        elif kind == "function_call":
            self._assistant_turn().parts.append(self._call(item, path))
        elif kind == "function_call_output":
            self._output(item, path)
        elif kind == "reasoning":
            self._reasoning(item, path)
        elif kind == "compaction":
            self._compaction(item, path)
        elif kind == "compaction_trigger":
            self.compact = True
        elif kind == "item_reference":
            raise v.fail(path, "the gateway does not store items; send the item itself")
        elif kind not in _SKIPPED_ITEMS:
            raise v.fail(v.at(path, "type"), f"unsupported input item type {kind!r}")

    def _assistant_turn(self) -> ir.Message:
        self.tool_turn = None
        if self.assistant is None:
            self.assistant = ir.Message("assistant", [])
            self.messages.append(self.assistant)
        return self.assistant

    def _message(self, item: JSONObject, path: str) -> None:
        role = v.one_of(v.required(item, "role", path), v.at(path, "role"), _ROLES)
        content_path = v.at(path, "content")
        content = v.required(item, "content", path)
        if role in ("system", "developer"):
            self.system += [p for p in _parts(content, content_path) if isinstance(p, ir.Text)]
        elif role == "assistant":
            parts = [
                p for p in _parts(content, content_path) if not isinstance(p, ir.Text) or p.text
            ]
            self._assistant_turn().parts += parts
        else:
            self.assistant = None
            parts = _parts(content, content_path)
            if self.tool_turn is not None:  # text after tool results joins their turn
                self.tool_turn.parts += parts
                self.tool_turn = None
            else:
                self.messages.append(ir.Message("user", parts))

    def _call(self, item: JSONObject, path: str) -> ir.ToolCall:
        name = v.required_string(item, "name", path)
        namespace = v.opt_string(item, "namespace", path)
        if namespace:
            name = namespace + NAMESPACE_SEP + name
        call = ir.ToolCall(
            id=v.required_string(item, "call_id", path),
            name=name,
            arguments=v.opt_string(item, "arguments", path) or "{}",
        )
        self.call_names[call.id] = call.name
        return call

    def _output(self, item: JSONObject, path: str) -> None:
        self.assistant = None
        call_id = v.required_string(item, "call_id", path)
        output = v.required(item, "output", path)
        content = [
            p for p in _parts(output, v.at(path, "output")) if isinstance(p, ir.Text | ir.Image)
        ]
        result = ir.ToolResult(call_id, content, name=self.call_names.get(call_id))
        if self.tool_turn is None:
            self.tool_turn = ir.Message("user", [])
            self.messages.append(self.tool_turn)
        self.tool_turn.parts.append(result)

    def _compaction(self, item: JSONObject, path: str) -> None:
        blob = v.opt_string(item, "encrypted_content", path)
        if not compaction.is_sealed(blob):
            return  # OpenAI's own: meaningful to OpenAI only, which gets the body as sent
        assert blob is not None
        try:
            text = compaction.expanded(blob)
        except ValueError:
            where = v.at(path, "encrypted_content")
            raise v.fail(
                where, "not a compaction this gateway made (send it back unchanged)"
            ) from None
        self.assistant = self.tool_turn = None
        self.messages.append(ir.Message("user", [ir.Text(text)]))

    def _reasoning(self, item: JSONObject, path: str) -> None:
        blob = v.opt_string(item, "encrypted_content", path)
        turn = self._assistant_turn()
        if blob is not None and blob.startswith(BLOB_PREFIX):
            turn.parts += _unblob(blob, v.at(path, "encrypted_content"))
            return
        if blob is not None:
            return  # OpenAI's own: meaningful to OpenAI only, which gets the body as sent
        summary = v.array(item.get("summary") or [], v.at(path, "summary"))
        texts = [
            v.string(
                v.obj(s, v.at(v.at(path, "summary"), i)).get("text", ""),
                v.at(v.at(path, "summary"), i),
            )
            for i, s in enumerate(summary)
        ]
        if any(texts):
            turn.parts.append(ir.Thinking("\n\n".join(t for t in texts if t)))


def _parts(value: Any, path: str) -> list[ir.Part]:
    if isinstance(value, str):
        return [ir.Text(value)]
    parts: list[ir.Part] = []
    for part, where in v.objects(value, path):
        kind = v.required_string(part, "type", where)
        if kind in ("input_text", "output_text", "text"):
            parts.append(ir.Text(v.required_string(part, "text", where)))
        elif kind == "refusal":
            parts.append(ir.Text(v.required_string(part, "refusal", where)))
        elif kind == "input_image":
            parts.append(_image(part, where))
        elif kind == "input_file":
            parts.append(_file(part, where))
        else:
            raise v.fail(v.at(where, "type"), f"unsupported content part type {kind!r}")
    return parts


def _image(part: JSONObject, path: str) -> ir.Image:
    if part.get("image_url") is None:
        # file_id refers to OpenAI's Files API, which no other vendor can read.
        raise v.fail(v.at(path, "image_url"), "Field required (file_id is not supported)")
    return v.image_url(
        v.string(part["image_url"], v.at(path, "image_url")), v.at(path, "image_url")
    )


def _file(part: JSONObject, path: str) -> ir.Document:
    filename = v.opt_string(part, "filename", path)
    if part.get("file_data") is not None:
        where = v.at(path, "file_data")
        value = v.string(part["file_data"], where)
        mime, data = (
            v.data_uri(value, where) if value.startswith("data:") else ("application/pdf", value)
        )
        return ir.Document(source_type="base64", media_type=mime, data=data, filename=filename)
    if part.get("file_url") is not None:
        url = v.string(part["file_url"], v.at(path, "file_url"))
        return ir.Document(source_type="url", url=url, filename=filename)
    raise v.fail(v.at(path, "file_data"), "Field required (file_id is not supported)")


# ------------------------------------------------------------------------------------ tools

# Built-in tools the client runs (the call comes back to it: one pass per request). Any other
# (web_search, file_search, code_interpreter, mcp, image_generation, and whatever OpenAI adds)
# OpenAI runs itself, each call another sampling pass over the grown context.
CLIENT_RUN = frozenset(
    {"custom", "local_shell", "shell", "apply_patch", "computer", "computer_use_preview"}
)


def _tools(data: JSONObject, req: ir.Request, echo: Echo) -> None:
    namespaces: set[str] = set()
    for tool, path in v.objects(data.get("tools") or [], "tools"):
        kind = v.required_string(tool, "type", path)
        if kind == "function":
            req.tools.append(function(tool, path))
        elif kind == "namespace":
            ns = v.required_string(tool, "name", path)
            namespaces.add(ns)
            for fn, where in v.objects(v.required(tool, "tools", path), v.at(path, "tools")):
                if fn.get("type") != "function":
                    req.native_only.append((v.at(where, "type"), f"the {fn.get('type')!r} tool"))
                    req.server_tools |= fn.get("type") not in CLIENT_RUN
                    continue
                req.tools.append(function(fn, where, prefix=ns + NAMESPACE_SEP))
        elif kind == "web_search" and tool.get("external_web_access") is False:
            # An offer of OpenAI's search index, not a requirement: left out of a translation;
            # OpenAI may still search it, pass after pass.
            req.fast_path_server_tools = True
        else:
            req.native_only.append((path, f"the built-in tool {kind!r}"))
            req.server_tools |= kind not in CLIENT_RUN
    echo.namespaces = frozenset(namespaces)
    if data.get("tool_choice") is not None:
        req.tool_choice = _tool_choice(data["tool_choice"], req)
    if v.opt_boolean(data, "parallel_tool_calls") is False:
        req.tool_choice = req.tool_choice or ir.ToolChoice("auto")
        req.tool_choice.disable_parallel = True


def _tool_choice(value: Any, req: ir.Request) -> ir.ToolChoice:
    if isinstance(value, str):
        mode = v.one_of(value, "tool_choice", ("auto", "required", "none"))
        return ir.ToolChoice("any" if mode == "required" else mode)  # type: ignore[arg-type]
    choice = v.obj(value, "tool_choice")
    kind = v.string(v.required(choice, "type", "tool_choice"), "tool_choice.type")
    if kind == "function":
        name = v.string(v.required(choice, "name", "tool_choice"), "tool_choice.name")
        return ir.ToolChoice("tool", name=name)
    if kind == "allowed_tools":  # a subset the model may use: the mode is what translates
        mode = v.one_of(choice.get("mode", "auto"), "tool_choice.mode", ("auto", "required"))
        return ir.ToolChoice("any" if mode == "required" else "auto")
    req.native_only.append(("tool_choice", f"forcing the built-in tool {kind!r}"))
    return ir.ToolChoice("any")


def _reasoning(data: JSONObject, req: ir.Request, echo: Echo) -> None:
    if data.get("reasoning") is None:
        return
    spec = v.obj(data["reasoning"], "reasoning")
    summary = v.opt_string(spec, "summary", "reasoning") or v.opt_string(
        spec, "generate_summary", "reasoning"
    )
    echo.summary = summary is not None and summary != "none"
    effort = v.opt_string(spec, "effort", "reasoning")
    if effort == "none":
        req.thinking = ir.ThinkingConfig(enabled=False)
    elif effort is not None:
        req.thinking = ir.ThinkingConfig(enabled=True, effort=effort)


def _text_format(text: JSONObject) -> dict[str, Any] | None:
    if text.get("format") is None:
        return None
    fmt = v.obj(text["format"], "text.format")
    kind = v.one_of(fmt.get("type"), "text.format.type", ("text", "json_object", "json_schema"))
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    schema = fmt.get("schema")
    out: dict[str, Any] = {
        "type": "json_schema",
        "name": v.string(v.required(fmt, "name", "text.format"), "text.format.name"),
        "schema": {} if schema is None else v.obj(schema, "text.format.schema"),
        "strict": v.opt_boolean(fmt, "strict", "text.format"),
    }
    description = v.opt_string(fmt, "description", "text.format")
    if description:
        out["description"] = description
    return out
