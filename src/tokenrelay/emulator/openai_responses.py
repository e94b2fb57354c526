"""OpenAI's Responses API (`POST /v1/responses`): the same script as Chat Completions, spoken
as typed `response.*` events (every one with a contiguous `sequence_number`) or one `response`
object.

What the real API does and this one copies: reasoning models (o-series, gpt-5) emit a
`reasoning` item first; its summary streams only when `reasoning.summary` asks for one, and
its `encrypted_content` comes only with `include: ["reasoning.encrypted_content"]`. Encrypted
reasoning sent back is verified (a keyed hash stands in for OpenAI's encryption), so a 200 on
the next turn proves the gateway returned it untouched. `previous_response_id` needs stored
responses, which the emulator never keeps. Compaction (`POST /v1/responses/compact`, or a
`compaction_trigger` item last in the input) answers one `compaction` item whose
`encrypted_content` is keyed like the reasoning (sent back, it is verified the same way: another
gateway's or vendor's is refused). Faults: the script's triggers; a mid-stream error is
a `response.failed` event, `[[max]]` ends `incomplete` with `incomplete_details`.
"""

from __future__ import annotations

from typing import Any

import orjson

from tokenrelay.emulator import script, tokens
from tokenrelay.emulator.openai_errors import Invalid, auth, error
from tokenrelay.emulator.shape import Mismatch, Path, items, kind, need, opt
from tokenrelay.emulator.wire import (
    BadJSON,
    Req,
    Resp,
    created,
    hex_id,
    json_resp,
    sign,
    sse_resp,
    verify,
)

_REASONING_MODELS = ("o1", "o3", "o4", "gpt-5")
_SIGN_KIND = "openai-reasoning"
_COMPACTION_KIND = "openai-compaction"
_MIDSTREAM = {
    "code": "server_error",
    "message": "An error occurred while processing your request. You can retry your request, "
    "or contact us through our help center at help.openai.com if the error persists.",
}
_ROLES = ("user", "assistant", "system", "developer")

Json = dict[str, Any]


# ------------------------------------------------------------------------------- the request


def _validate(body: Json) -> None:
    if not body.get("model"):
        raise Invalid("Missing required parameter: 'model'.", param="model")
    if body.get("previous_response_id") is not None:
        ref = body["previous_response_id"]
        raise Invalid(f"Previous response with id '{ref}' not found.", param="previous_response_id")
    if "input" not in body:
        raise Invalid("Missing required parameter: 'input'.", param="input")
    try:
        _shape(body)
    except Mismatch as exc:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.path)
        where = where.lstrip(".")
        expected = " or ".join(exc.expected.split("|"))
        raise Invalid(
            f"Invalid type for '{where}': expected {expected}, but got {kind(exc.got)} instead.",
            param=where,
            code="invalid_type",
        ) from None
    if "does-not-exist" in str(body["model"]):
        raise Invalid(
            f"The model `{body['model']}` does not exist or you do not have access to it.",
            404,
            code="model_not_found",
        )
    cap = body.get("max_output_tokens")
    if cap is not None and cap < 16:
        raise Invalid(
            f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, "
            f"but got {cap} instead.",
            param="max_output_tokens",
            code="integer_below_min_value",
        )
    _check_items(body["input"])


def _shape(body: Json) -> None:
    need(body["model"], "string", ("model",))
    value = need(body["input"], "string|array", ("input",))
    if isinstance(value, list):
        for i, item in enumerate(items(value, "object", ("input",))):
            path: Path = ("input", i)
            content = item.get("content")
            if content is not None and not isinstance(content, str):
                for j, part in enumerate(items(content, "object", (*path, "content"))):
                    need(part.get("type"), "string", (*path, "content", j, "type"))
            opt(item, "call_id", "string", path)
            opt(item, "arguments", "string", path)
            opt(item, "encrypted_content", "string", path)
    opt(body, "instructions", "string", ())
    items(body.get("tools") or [], "object", ("tools",))
    opt(body, "tool_choice", "string|object", ())
    opt(body, "max_output_tokens", "integer", ())
    opt(body, "stream", "boolean", ())
    opt(body, "reasoning", "object", ())
    opt(body, "include", "array", ())


def _check_items(value: Any) -> None:
    """Roles, item types, call/output pairing and encrypted reasoning, as OpenAI checks them."""
    if isinstance(value, str):
        return
    calls: set[str] = set()
    for i, item in enumerate(value):
        itype = item.get("type", "message")
        if itype == "message":
            if item.get("role") not in _ROLES:
                raise Invalid(
                    f"Invalid value: '{item.get('role')}'. Supported values are: 'assistant', "
                    "'system', 'developer', and 'user'.",
                    param=f"input[{i}].role",
                    code="invalid_value",
                )
        elif itype == "function_call":
            calls.add(str(item.get("call_id")))
        elif itype == "function_call_output":
            if str(item.get("call_id")) not in calls:
                raise Invalid(
                    f"No tool call found for function call output with call_id "
                    f"{item.get('call_id')}.",
                    param="input",
                )
        elif itype == "reasoning":
            blob = item.get("encrypted_content")
            if blob is not None and not _verified(blob):
                raise Invalid(
                    "The encrypted content for item "
                    f"{item.get('id')} could not be verified. Reason: Encrypted content "
                    "organization_id did not match the target organization.",
                    param=f"input[{i}].encrypted_content",
                    code="invalid_encrypted_content",
                )
        elif itype == "compaction":
            text, _, mac = str(item.get("encrypted_content")).rpartition("~")
            if not verify(_COMPACTION_KIND, text, mac):
                raise Invalid(
                    f"The encrypted content for item {item.get('id')} could not be verified.",
                    param=f"input[{i}].encrypted_content",
                    code="invalid_encrypted_content",
                )
        elif itype == "item_reference":
            raise Invalid(
                f"Item with id '{item.get('id')}' not found. Items are not persisted when "
                "`store` is set to false.",
                param="input",
            )


def _verified(blob: str) -> bool:
    text, _, mac = blob.rpartition("~")
    return verify(_SIGN_KIND, text, mac)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") in ("input_text", "output_text", "text")
        )
    return ""


def _tools(body: Json) -> list[tuple[str, dict[str, Any], str | None]]:
    """(name, parameters, namespace) of every function the model may call."""
    out: list[tuple[str, dict[str, Any], str | None]] = []
    for tool in body.get("tools") or []:
        if tool.get("type") == "function" and tool.get("name"):
            out.append((str(tool["name"]), tool.get("parameters") or {}, None))
        elif tool.get("type") == "namespace":
            for inner in tool.get("tools") or []:
                if isinstance(inner, dict) and inner.get("type") == "function":
                    out.append((str(inner["name"]), inner.get("parameters") or {}, tool["name"]))
    return out


def _turn(body: Json, reasoning: bool) -> script.Turn:
    value = body["input"]
    if isinstance(value, str):
        value = [{"role": "user", "content": value}]
    names = {
        str(i.get("call_id")): str(i.get("name")) for i in value if _kind(i) == "function_call"
    }
    results: list[tuple[str, str]] = []
    for item in reversed(value):
        if _kind(item) != "function_call_output":
            break
        call = str(item.get("call_id"))
        results.insert(0, (names.get(call, "unknown"), _text(item.get("output"))))
    text = " ".join(r for _, r in results) or next(
        (_text(i.get("content")) for i in reversed(value) if i.get("role") == "user"), ""
    )
    # A compaction after the user's last message: the model goes on from its summary.
    for item in reversed(value):
        if _kind(item) == "compaction":
            text = str(item.get("encrypted_content")).rpartition("~")[0]
        if _kind(item) in ("compaction", "function_call_output") or item.get("role") == "user":
            break
    choice = body.get("tool_choice", "auto")
    forced = None
    if isinstance(choice, dict):
        forced, mode = choice.get("name"), "any"
    else:
        mode = {"none": "none", "required": "any"}.get(str(choice), "auto")
    if _compacting(body):
        forced, mode = None, "none"  # the answer is the summary
    cap = body.get("max_output_tokens")
    return script.Turn(
        model=str(body["model"]),
        text=text,
        tool_results=results,
        tools=[(name, params) for name, params, _ in _tools(body)],
        tool_mode=mode,
        forced_tool=forced,
        max_tokens=cap if isinstance(cap, int) else None,
        reasoning=reasoning,
        parallel_allowed=body.get("parallel_tool_calls", True) is not False,
    )


def _compacting(body: Json) -> bool:
    value = body.get("input")
    return isinstance(value, list) and bool(value) and _kind(value[-1]) == "compaction_trigger"


def _kind(item: Any) -> str:
    return str(item.get("type", "message")) if isinstance(item, dict) else ""


def _reasons(body: Json) -> bool:
    effort = (body.get("reasoning") or {}).get("effort")
    return str(body["model"]).startswith(_REASONING_MODELS) and effort != "none"


def _input_tokens(body: Json) -> int:
    n = tokens.count(str(body.get("instructions") or ""))
    value = body["input"]
    for item in [value] if isinstance(value, str) else value:
        if isinstance(item, str):
            n += tokens.count(item)
            continue
        n += tokens.count(_text(item.get("content")) + _text(item.get("output")))
        n += tokens.count(str(item.get("arguments") or "")) + tokens.count(
            str(item.get("name") or "")
        )
        content = item.get("content")
        if isinstance(content, list):
            n += tokens.IMAGE_TOKENS * sum(
                1 for p in content if p.get("type") in ("input_image", "input_file")
            )
    for tool in body.get("tools") or []:
        n += tokens.count_json(tool)
    return max(n, 1)


# ------------------------------------------------------------------------------- the answer


class _Answer:
    """The output items of one planned answer and the events that build them."""

    def __init__(self, body: Json, plan: script.Plan, seed: bytes, reasoning: bool) -> None:
        self.body, self.plan, self.seed = body, plan, seed
        self.model = str(body["model"])
        self.id = "resp_" + hex_id(seed, "response", 48)
        self.created = created(seed)
        self.seq = 0
        summary = (body.get("reasoning") or {}).get("summary")
        self.summary = bool(reasoning and plan.reasoning and summary)
        include = body.get("include") or []
        self.encrypted = reasoning and "reasoning.encrypted_content" in include
        self.reasoning = reasoning and bool(plan.reasoning)
        prompt = _input_tokens(body)
        cached = prompt // 2 if plan.cache else 0
        thought = len(plan.reasoning)
        output = plan.visible_tokens + thought
        self.usage = {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": thought},
            "total_tokens": prompt + output,
        }
        namespaces = {name: ns for name, _, ns in _tools(body)}
        self.calls = [
            (
                "call_" + hex_id(seed, f"call{k}", 24),
                "fc_" + hex_id(seed, f"fc{k}", 48),
                c,
                namespaces.get(c.name),
            )
            for k, c in enumerate(plan.tool_calls)
        ]

    def envelope(self, status: str, output: list[Json], usage: Json | None) -> Json:
        body = self.body
        reasoning = body.get("reasoning") or {}
        incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "background": False,
            "completed_at": self.created + 2 if status == "completed" else None,
            "error": None,
            "incomplete_details": incomplete,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": body.get("max_tool_calls"),
            "model": self.model,
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": None,
            "prompt_cache_key": body.get("prompt_cache_key"),
            "reasoning": {
                "effort": reasoning.get("effort", "medium" if self.reasoning else None),
                "summary": reasoning.get("summary"),
            },
            "safety_identifier": body.get("safety_identifier"),
            "service_tier": "default",
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [],
            "top_logprobs": 0,
            "top_p": body.get("top_p", 1.0),
            "truncation": body.get("truncation", "disabled"),
            "usage": usage,
            "user": body.get("user"),
            "metadata": body.get("metadata") or {},
        }

    def reasoning_item(self) -> Json:
        text = self.plan.reasoning_text
        item: Json = {
            "id": "rs_" + hex_id(self.seed, "reasoning", 48),
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": text}] if self.summary else [],
        }
        if self.encrypted:
            item["encrypted_content"] = "gAAAAAB" + text + "~" + sign(_SIGN_KIND, "gAAAAAB" + text)
        return item

    def message_item(self, text: str, status: str = "completed") -> Json:
        part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
        return {
            "id": "msg_" + hex_id(self.seed, "message", 48),
            "type": "message",
            "status": status,
            "content": [part],
            "role": "assistant",
        }

    def call_item(self, k: int, status: str = "completed") -> Json:
        call_id, item_id, call, namespace = self.calls[k]
        item: Json = {
            "id": item_id,
            "type": "function_call",
            "status": status,
            "arguments": orjson.dumps(call.args).decode() if status == "completed" else "",
            "call_id": call_id,
            "name": call.name,
        }
        if namespace is not None:
            item["namespace"] = namespace
        return item

    def compaction_item(self) -> Json:
        summary = "Summary: " + self.plan.text
        return {
            "id": "cmp_" + hex_id(self.seed, "compaction", 48),
            "type": "compaction",
            "encrypted_content": summary + "~" + sign(_COMPACTION_KIND, summary),
        }

    def output(self) -> list[Json]:
        if _compacting(self.body):
            return [self.compaction_item()]
        out: list[Json] = []
        if self.reasoning:
            out.append(self.reasoning_item())
        if self.plan.words:
            out.append(self.message_item(self.plan.text, self.status_of_message()))
        out += [self.call_item(k) for k in range(len(self.calls))]
        return out

    def status_of_message(self) -> str:
        return "incomplete" if self.plan.stop == "max_tokens" else "completed"

    @property
    def status(self) -> str:
        return "incomplete" if self.plan.stop == "max_tokens" else "completed"

    # ---------------------------------------------------------------------------- events

    def event(self, etype: str, **fields: Any) -> bytes:
        data = {"type": etype, "sequence_number": self.seq, **fields}
        self.seq += 1
        return b"event: " + etype.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def stream(self) -> list[bytes]:
        plan = self.plan
        frames = [
            self.event("response.created", response=self.envelope("in_progress", [], None)),
            self.event("response.in_progress", response=self.envelope("in_progress", [], None)),
        ]
        done: list[Json] = []
        if _compacting(self.body):
            item = self.compaction_item()
            frames.append(self.event("response.output_item.added", output_index=0, item=item))
            frames.append(self.event("response.output_item.done", output_index=0, item=item))
            envelope = self.envelope("completed", [item], self.usage)
            return [*frames, self.event("response.completed", response=envelope)]
        if self.reasoning:
            frames += self._reasoning_events(len(done))
            done.append(self.reasoning_item())
        if plan.words or plan.midstream_error or plan.cut:
            frames += self._message_events(len(done))
            if plan.midstream_error or plan.cut:
                if plan.midstream_error:
                    failed = self.envelope("failed", done, None)
                    failed["error"] = _MIDSTREAM
                    frames.append(self.event("response.failed", response=failed))
                return frames
            done.append(self.message_item(plan.text, self.status_of_message()))
        for k in range(len(self.calls)):
            frames += self._call_events(k, len(done))
            done.append(self.call_item(k))
        final = "response.incomplete" if self.status == "incomplete" else "response.completed"
        frames.append(self.event(final, response=self.envelope(self.status, done, self.usage)))
        return frames

    def _reasoning_events(self, index: int) -> list[bytes]:
        item = self.reasoning_item()
        added = {"id": item["id"], "type": "reasoning", "summary": []}
        frames = [self.event("response.output_item.added", output_index=index, item=added)]
        if self.summary:
            where = {"item_id": item["id"], "output_index": index, "summary_index": 0}
            empty = {"type": "summary_text", "text": ""}
            frames.append(self.event("response.reasoning_summary_part.added", **where, part=empty))
            for piece in self.plan.reasoning:
                frames.append(
                    self.event(
                        "response.reasoning_summary_text.delta",
                        **where,
                        delta=piece,
                        obfuscation=hex_id(self.seed, piece, 8),
                    )
                )
            text = self.plan.reasoning_text
            frames.append(self.event("response.reasoning_summary_text.done", **where, text=text))
            full = {"type": "summary_text", "text": text}
            frames.append(self.event("response.reasoning_summary_part.done", **where, part=full))
        frames.append(self.event("response.output_item.done", output_index=index, item=item))
        return frames

    def _message_events(self, index: int) -> list[bytes]:
        plan = self.plan
        item = self.message_item("", "in_progress")
        item_id = item["id"]
        item["content"] = []
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        empty = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
        frames = [
            self.event("response.output_item.added", output_index=index, item=item),
            self.event("response.content_part.added", **where, part=empty),
        ]
        fail = plan.midstream_error or plan.cut
        for n, word in enumerate(plan.words):
            if fail and n == plan.fail_after:
                return frames
            frames.append(
                self.event(
                    "response.output_text.delta",
                    **where,
                    delta=word,
                    logprobs=[],
                    obfuscation=hex_id(self.seed, f"o{n}", 8),
                )
            )
        if fail:
            return frames
        text = plan.text
        frames.append(self.event("response.output_text.done", **where, text=text, logprobs=[]))
        full = {**empty, "text": text}
        frames.append(self.event("response.content_part.done", **where, part=full))
        done = self.message_item(text, self.status_of_message())
        frames.append(self.event("response.output_item.done", output_index=index, item=done))
        return frames

    def _call_events(self, k: int, index: int) -> list[bytes]:
        item = self.call_item(k, "in_progress")
        arguments = orjson.dumps(self.calls[k][2].args).decode()
        where = {"item_id": item["id"], "output_index": index}
        frames = [self.event("response.output_item.added", output_index=index, item=item)]
        step = max(len(arguments) // 3, 1)
        for i in range(0, len(arguments), step):
            frames.append(
                self.event(
                    "response.function_call_arguments.delta",
                    **where,
                    delta=arguments[i : i + step],
                    obfuscation=hex_id(self.seed, f"a{k}{i}", 8),
                )
            )
        frames.append(
            self.event(
                "response.function_call_arguments.done",
                **where,
                arguments=arguments,
                name=item["name"],
            )
        )
        frames.append(
            self.event("response.output_item.done", output_index=index, item=self.call_item(k))
        )
        return frames


def _checked(req: Req) -> Json | Resp:
    """The request's body, validated as a Responses body, or the error answer."""
    if (denied := auth(req, "openai")) is not None:
        return denied
    try:
        body = req.json()
        _validate(body)
    except BadJSON:
        return error(
            "openai",
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly.)",
        )
    except Invalid as exc:
        return error("openai", exc.status, str(exc), exc.param, exc.code)
    return body


def input_tokens(req: Req) -> Resp:
    """`POST /v1/responses/input_tokens`: what the body's input would cost in tokens."""
    body = _checked(req)
    if isinstance(body, Resp):
        return body
    return json_resp(200, {"object": "response.input_tokens", "input_tokens": _input_tokens(body)})


def _parts(content: Any) -> Any:
    return [{"type": "input_text", "text": content}] if isinstance(content, str) else content


def compact(req: Req) -> Resp:
    """`POST /v1/responses/compact`: the new conversation (the user's messages, then one
    compaction item) as a `response.compaction` object, usage included."""
    body = _checked(req)
    if isinstance(body, Resp):
        return body
    value = body["input"]
    items = [{"role": "user", "content": value}] if isinstance(value, str) else list(value)
    body = {**body, "input": [*items, {"type": "compaction_trigger"}]}
    plan = script.plan(_turn(body, False))
    if plan.error is not None:
        return error("openai", plan.error)
    answer = _Answer(body, plan, req.seed("openai"), False)
    kept = [
        {"type": "message", "role": "user", "content": _parts(i.get("content"))}
        for i in items
        if _kind(i) == "message" and i.get("role") == "user"
    ]
    return json_resp(
        200,
        {
            "id": answer.id.replace("resp_", "cmp_", 1),
            "object": "response.compaction",
            "created_at": answer.created,
            "output": [*kept, answer.compaction_item()],
            "usage": answer.usage,
        },
    )


def responses(req: Req) -> Resp:
    body = _checked(req)
    if isinstance(body, Resp):
        return body
    reasoning = _reasons(body)
    plan = script.plan(_turn(body, reasoning))
    stream = bool(body.get("stream"))
    if plan.error is not None or (plan.midstream_error and not stream):
        resp = error("openai", plan.error or script.error_status_for_midstream("openai"))
        resp.first_delay = plan.first_delay
        return resp
    seed = req.seed("openai")
    answer = _Answer(body, plan, seed, reasoning)
    headers = [("x-request-id", "req_" + hex_id(seed, "request", 32))]
    if stream:
        return sse_resp(answer.stream(), plan, headers)
    resp = json_resp(200, answer.envelope(answer.status, answer.output(), answer.usage), headers)
    resp.first_delay = plan.first_delay + plan.delay * max(len(plan.words) - 1, 0)
    return resp
