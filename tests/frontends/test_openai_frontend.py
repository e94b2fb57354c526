"""The OpenAI Chat Completions codec: request → IR, IR → SSE / JSON / errors, checked through
the official openai SDK."""

from __future__ import annotations

import copy
from typing import Any

import openai
import orjson
import pytest
from frontend_harness import (
    ERROR_KINDS,
    midstream_error_events,
    openai_client,
    render_stream,
    text_events,
    thinking_events,
    tool_events,
)

from tokenrelay import ir
from tokenrelay.errors import GatewayError
from tokenrelay.frontends.chat.frontend import (
    OPENAI_FRONTEND,
    OpenAIStreamRenderer,
    client_wants_usage,
)

FULL_BODY: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "name": "ann",
            "content": [
                {"type": "text", "text": "Look"},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64,iVBOR", "detail": "low"},
                },
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                {
                    "type": "file",
                    "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"},
                },
            ],
        },
        {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "I should call both.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": "{}"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
        {"role": "user", "content": "Thanks, and?"},
        {"role": "assistant", "content": "Done."},
        {"role": "user", "content": "Bye"},
    ],
    "max_completion_tokens": 500,
    "max_tokens": 9,
    "temperature": 1.5,
    "top_p": 0.5,
    "stop": ["END", "STOP"],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather",
                "parameters": {"type": "object"},
                "strict": True,
            },
        },
        {"type": "function", "function": {"name": "get_time"}},
    ],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "parallel_tool_calls": False,
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": True},
    },
    "reasoning_effort": "high",
    "stream": True,
    "stream_options": {"include_usage": True},
    "user": "old-user",
    "safety_identifier": "u-7",
    "n": 1,
    "seed": 42,
    "logprobs": False,
    "frequency_penalty": 0.1,
    "presence_penalty": 0.2,
    "logit_bias": {"50256": -100},
    "service_tier": "flex",
    "prompt_cache_key": "k",
    "store": False,
    "metadata": {"a": "b"},
    "verbosity": "low",
}


def expected_full_request() -> ir.Request:
    return ir.Request(
        model="gpt-4o",
        system=[ir.Text("Be brief."), ir.Text("Use tools.")],
        messages=[
            ir.Message(
                "user",
                [
                    ir.Text("Look"),
                    ir.Image(media_type="image/png", data="iVBOR"),
                    ir.Image(url="https://x/y.png"),
                    ir.Document(
                        "base64", media_type="application/pdf", data="JVBE", filename="a.pdf"
                    ),
                ],
                name="ann",
            ),
            ir.Message(
                "assistant",
                [
                    ir.Thinking("I should call both."),
                    ir.ToolCall("call_1", "get_weather", '{"city":"Paris"}'),
                    ir.ToolCall("call_2", "get_time", "{}"),
                ],
            ),
            ir.Message(
                "user",
                [
                    ir.ToolResult("call_1", [ir.Text("sunny")], name="get_weather"),
                    ir.ToolResult("call_2", [ir.Text("noon")], name="get_time"),
                    ir.Text("Thanks, and?"),
                ],
            ),
            ir.Message("assistant", [ir.Text("Done.")]),
            ir.Message("user", [ir.Text("Bye")]),
        ],
        tools=[
            ir.Tool("get_weather", "Weather", {"type": "object"}, strict=True),
            ir.Tool("get_time", None, {"type": "object", "properties": {}}),
        ],
        tool_choice=ir.ToolChoice("tool", name="get_weather", disable_parallel=True),
        max_tokens=500,
        temperature=1.5,
        top_p=0.5,
        stop=["END", "STOP"],
        thinking=ir.ThinkingConfig(enabled=True, effort="high"),
        response_format={
            "type": "json_schema",
            "name": "out",
            "schema": {"type": "object"},
            "strict": True,
        },
        user="u-7",
        stream=True,
        include_usage=True,
        extras={
            "stream_options": {"include_usage": True},
            "n": 1,
            "seed": 42,
            "logprobs": False,
            "frequency_penalty": 0.1,
            "presence_penalty": 0.2,
            "logit_bias": {"50256": -100},
            "service_tier": "flex",
            "prompt_cache_key": "k",
            "store": False,
            "metadata": {"a": "b"},
            "verbosity": "low",
        },
        extras_format="openai",
    )


# ----------------------------------------------------------------------------------- parsing


def test_full_request_parses_to_exact_ir() -> None:
    assert OPENAI_FRONTEND.parse_request(FULL_BODY, {"authorization": "x"}) == (
        expected_full_request()
    )


def test_tool_messages_merge_into_one_user_turn_results_first() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                    {"id": "b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
                ],
            },
            {"role": "tool", "tool_call_id": "a", "content": "1"},
            {"role": "tool", "tool_call_id": "b", "content": "2"},
            {"role": "user", "content": "more"},
            {"role": "user", "content": "separate"},
        ],
    }
    msgs = OPENAI_FRONTEND.parse_request(body, {}).messages
    assert [m.role for m in msgs] == ["user", "assistant", "user", "user"]
    assert msgs[1].parts == [ir.ToolCall("a", "f", "{}"), ir.ToolCall("b", "g", "{}")]  # no ""
    assert msgs[2].parts == [
        ir.ToolResult("a", [ir.Text("1")], name="f"),
        ir.ToolResult("b", [ir.Text("2")], name="g"),
        ir.Text("more"),
    ]
    assert msgs[3].parts == [ir.Text("separate")]


def test_reasoning_content_round_trips() -> None:
    """Rendered reasoning_content, sent back as history, becomes the same Thinking part."""
    resp = ir.fold(thinking_events())
    message = OPENAI_FRONTEND.render_response(resp, request_id="r", extra_usage={})["choices"][0][
        "message"
    ]
    assert message["reasoning_content"] == "Let me think."
    history = {"model": "m", "messages": [{"role": "user", "content": "q"}, message]}
    parsed = OPENAI_FRONTEND.parse_request(history, {}).messages[1]
    assert parsed == ir.Message("assistant", [ir.Thinking("Let me think."), ir.Text("42")])


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("reasoning_effort", "none", ir.ThinkingConfig(enabled=False)),
        ("reasoning_effort", "minimal", ir.ThinkingConfig(enabled=True, effort="minimal")),
        ("tool_choice", "required", ir.ToolChoice("any")),
        ("tool_choice", "none", ir.ToolChoice("none")),
        ("response_format", {"type": "json_object"}, {"type": "json_object"}),
        ("response_format", {"type": "text"}, None),
        ("stop", "END", ["END"]),
        ("max_tokens", 7, 7),
    ],
)
def test_single_field_mappings(field: str, value: Any, expected: Any) -> None:
    ir_field = {"reasoning_effort": "thinking", "max_tokens": "max_tokens"}.get(field, field)
    req = OPENAI_FRONTEND.parse_request({"model": "m", "messages": [], field: value}, {})
    assert getattr(req, ir_field) == expected


def test_client_wants_usage() -> None:
    assert client_wants_usage({"stream_options": {"include_usage": True}})
    assert not client_wants_usage({"stream_options": {"include_usage": False}})
    assert not client_wants_usage({"stream": True})
    assert not client_wants_usage([])


def test_custom_tools_kept_whole_in_extras() -> None:
    tools = [{"type": "custom", "name": "grammar"}, {"type": "function", "function": {"name": "f"}}]
    req = OPENAI_FRONTEND.parse_request({"model": "m", "messages": [], "tools": tools}, {})
    assert [t.name for t in req.tools] == ["f"]
    assert req.extras == {"tools": tools}


def _mutate(path: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(FULL_BODY)
    *parents, last = path.split(".")
    target: Any = body
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if value is _DELETE:
        del target[last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return body


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("model", _DELETE, "model: Field required"),
        ("messages", "hi", "messages: expected a list"),
        ("messages.0.role", "robot", "messages.0.role: expected one of"),
        ("messages.1.content", 5, "messages.1.content: expected a string or a list of content"),
        (
            "messages.1.content.0",
            {"type": "input_audio", "input_audio": {}},
            "messages.1.content.0.type: audio input is not supported",
        ),
        (
            "messages.1.content.1.image_url.url",
            "ftp://x",
            "messages.1.content.1.image_url.url: expected an http(s) URL",
        ),
        (
            "messages.1.content.1.image_url.url",
            "data:image/png,xyz",
            "messages.1.content.1.image_url.url: expected a data:",
        ),
        (
            "messages.1.content.3.file",
            {"file_id": "file-1"},
            "messages.1.content.3.file.file_data: Field required",
        ),
        (
            "messages.3.tool_calls.0.function.name",
            _DELETE,
            "messages.3.tool_calls.0.function.name: Field required",
        ),
        ("messages.3.function_call", {"name": "f"}, "messages.3.function_call: deprecated"),
        ("messages.4.tool_call_id", _DELETE, "messages.4.tool_call_id: Field required"),
        ("messages.4.role", "function", "messages.4.role: expected one of"),
        ("functions", [{"name": "f"}], "functions: the deprecated 'functions' parameter"),
        ("function_call", "auto", "function_call: the deprecated"),
        ("temperature", "hot", "temperature: expected a number"),
        ("temperature", 2.5, "temperature: must be less than or equal to 2"),
        ("top_p", -1, "top_p: must be greater than or equal to 0"),
        ("max_completion_tokens", 0, "max_completion_tokens: must be greater than or equal to 1"),
        ("max_completion_tokens", "9", "max_completion_tokens: expected an integer"),
        ("stop", ["a", "b", "c", "d", "e"], "stop: at most 4 items"),
        ("stop", 3, "stop: expected a string or a list"),
        ("tools.0.function.parameters", [], "tools.0.function.parameters: expected an object"),
        ("tool_choice", "sometimes", "tool_choice: expected one of"),
        ("tool_choice.function", _DELETE, "tool_choice.function: Field required"),
        ("parallel_tool_calls", "no", "parallel_tool_calls: expected a boolean"),
        (
            "response_format.json_schema.name",
            _DELETE,
            "response_format.json_schema.name: Field required",
        ),
        ("stream_options", {"include_usage": "yes"}, "stream_options.include_usage: expected"),
        ("reasoning_effort", 3, "reasoning_effort: expected a string"),
    ],
)
def test_validation_errors_name_the_param(path: str, value: Any, message: str) -> None:
    with pytest.raises(GatewayError) as exc:
        OPENAI_FRONTEND.parse_request(_mutate(path, value), {})
    err = exc.value
    assert (err.kind, err.status) == ("invalid_request", 400)
    assert err.message.startswith(message), err.message
    assert err.param == message.split(":")[0]


@pytest.mark.parametrize("body", [[], "x", None, 3])
def test_body_must_be_an_object(body: Any) -> None:
    with pytest.raises(GatewayError) as exc:
        OPENAI_FRONTEND.parse_request(body, {})
    assert exc.value.status == 400


# ------------------------------------------------------------------------- stream rendering

_HEAD = b'data: {"id":"chatcmpl-fixed","object":"chat.completion.chunk","created":1700000000,'
_HEAD += b'"model":"m-1","choices":[{"index":0,"delta":'
_TAIL = b',"logprobs":null,"finish_reason":null}],"usage":null}\n\n'
GOLDEN_TEXT_STREAM = (
    _HEAD
    + b'{"role":"assistant","content":""}'
    + _TAIL
    + _HEAD
    + b'{"content":"Hello"}'
    + _TAIL
    + _HEAD
    + b'{"content":" \\"there\\"!"}'
    + _TAIL
    + _HEAD
    + b'{},"logprobs":null,"finish_reason":"stop"}],"usage":null}\n\n'
    + b'data: {"id":"chatcmpl-fixed","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"m-1","choices":[],"usage":{"prompt_tokens":16,"completion_tokens":6,'
    b'"total_tokens":22,"prompt_tokens_details":{"cached_tokens":3},'
    b'"completion_tokens_details":{"reasoning_tokens":0},"cost_usd":"0.000123"}}\n\n'
    b"data: [DONE]\n\n"
)


def _render(events: list[ir.Event], include_usage: bool = True, **extra: Any) -> bytes:
    renderer = OpenAIStreamRenderer(
        request_id="r", include_usage=include_usage, created=1_700_000_000
    )
    return render_stream(renderer, events, extra)


def test_golden_text_stream() -> None:
    raw = _render(text_events(msg_id="chatcmpl-fixed"), cost_usd="0.000123")
    assert raw == GOLDEN_TEXT_STREAM


def test_without_include_usage_no_usage_anywhere() -> None:
    raw = _render(text_events(), include_usage=False)
    assert b"usage" not in raw
    assert raw.endswith(b'"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n')
    chunks = [orjson.loads(line[6:]) for line in raw.split(b"\n\n") if line[6:7] == b"{"]
    assert len({(c["id"], c["created"]) for c in chunks}) == 1
    assert chunks[0]["id"].startswith("chatcmpl-")  # msg_fixed is not an OpenAI id


def test_text_stream_through_sdk_create() -> None:
    client = openai_client(_render(text_events()))
    chunks = list(client.chat.completions.create(model="m", messages=[], stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == 'Hello "there"!'
    assert chunks[-2].choices[0].finish_reason == "stop"
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (16, 6, 22)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 3


def test_thinking_stream_gives_reasoning_content_attribute() -> None:
    raw = _render(thinking_events())
    assert b"SIG123" not in raw
    assert b"REDACTED" not in raw
    client = openai_client(raw)
    chunks = list(client.chat.completions.create(model="m", messages=[], stream=True))
    reasoning = "".join(
        getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices
    )
    assert reasoning == "Let me think."
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens_details is not None
    assert chunks[-1].usage.completion_tokens_details.reasoning_tokens == 12


def test_parallel_tool_calls_through_sdk_stream_helper() -> None:
    client = openai_client(_render(tool_events()))
    with client.chat.completions.stream(model="m", messages=[]) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    assert final.id.startswith("chatcmpl-")
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Checking."
    calls = choice.message.tool_calls
    assert calls is not None
    assert [(c.id, c.function.name) for c in calls] == [
        ("call_a", "get_weather"),
        ("call_b", "get_time"),
    ]
    assert [orjson.loads(c.function.arguments) for c in calls] == [
        {"city": "Paris"},
        {"tz": "Europe/Paris", "fmt": 24},
    ]
    assert final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (150, 40)


def test_tool_call_indexes_count_calls_not_blocks() -> None:
    raw = _render(tool_events())
    assert b'"tool_calls":[{"index":0,"id":"call_a"' in raw
    assert b'"tool_calls":[{"index":1,"id":"call_b"' in raw
    assert b'"index":3' not in raw
    assert b"sig" not in raw


def test_midstream_error_raises_in_sdk() -> None:
    raw = _render(midstream_error_events())
    assert raw.endswith(
        b'data: {"error":{"message":"Overloaded","type":"server_error","param":null,'
        b'"code":null}}\n\n'
    )
    assert b"[DONE]" not in raw
    client = openai_client(raw)
    seen: list[str | None] = []
    with pytest.raises(openai.APIError) as exc:
        for chunk in client.chat.completions.create(model="m", messages=[], stream=True):
            seen.append(chunk.choices[0].delta.content)
    assert seen == ["", "Once upon"]
    assert exc.value.message == "Overloaded"


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
    ],
)
def test_finish_reason_mapping(stop_reason: str, finish: str) -> None:
    events = [*text_events()[:-1], ir.Finish(stop_reason)]
    raw = _render(events)
    assert b'"finish_reason":"%s"' % finish.encode() in raw
    resp = OPENAI_FRONTEND.render_response(ir.fold(events), request_id="r", extra_usage={})
    assert resp["choices"][0]["finish_reason"] == finish


# ----------------------------------------------------------------------- non-stream and errors


def test_non_stream_response_through_sdk() -> None:
    resp = ir.fold(tool_events())
    resp.content.insert(0, ir.Thinking("plan", signature="s"))
    resp.usage.cache_write, resp.usage.reasoning = 7, 5
    body = OPENAI_FRONTEND.render_response(resp, request_id="r", extra_usage={"cost_usd": "2"})
    completion = openai_client(body).chat.completions.create(model="m", messages=[])
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "m-tools"
    message = completion.choices[0].message
    assert message.content == "Checking."
    assert getattr(message, "reasoning_content", None) == "plan"
    assert message.refusal is None
    assert message.tool_calls is not None
    assert message.tool_calls[1].function.arguments == (  # type: ignore[union-attr]
        '{"tz":"Europe/Paris","fmt":24}'
    )
    assert completion.choices[0].finish_reason == "tool_calls"
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (157, 40, 197)
    assert usage.model_extra == {"cost_usd": "2"}


def test_non_stream_without_text_has_null_content_and_cutoff_is_stop() -> None:
    resp = ir.Response("", "m", [], None, None, ir.UsageTotals())
    body = OPENAI_FRONTEND.render_response(resp, request_id="r", extra_usage={})
    assert body["choices"][0]["message"] == {"role": "assistant", "content": None, "refusal": None}
    assert body["choices"][0]["finish_reason"] == "stop"


EXPECTED_ERRORS: dict[str, tuple[int, str, str | None, type[openai.APIStatusError]]] = {
    "invalid_request": (400, "invalid_request_error", None, openai.BadRequestError),
    "authentication": (401, "invalid_request_error", "invalid_api_key", openai.AuthenticationError),
    "permission": (403, "request_forbidden", None, openai.PermissionDeniedError),
    "not_found": (404, "invalid_request_error", "model_not_found", openai.NotFoundError),
    "request_too_large": (413, "invalid_request_error", "request_too_large", openai.APIStatusError),
    "rate_limit": (429, "requests", "rate_limit_exceeded", openai.RateLimitError),
    "billing": (402, "insufficient_quota", "insufficient_quota", openai.APIStatusError),
    "overloaded": (503, "server_error", None, openai.InternalServerError),
    "timeout": (504, "server_error", "timeout", openai.InternalServerError),
    "api_error": (502, "server_error", None, openai.InternalServerError),
}


@pytest.mark.parametrize("kind", ERROR_KINDS)
def test_error_bodies_raise_matching_sdk_exception(kind: ir.ErrorKind) -> None:
    status, error_type, code, exc_class = EXPECTED_ERRORS[kind]
    param = "messages.0.role" if kind == "invalid_request" else None
    err = GatewayError(kind, f"{kind} happened", 502 if kind == "api_error" else 400, param=param)
    got_status, body = OPENAI_FRONTEND.render_error(err)
    assert got_status == status
    assert body == {
        "error": {"message": f"{kind} happened", "type": error_type, "param": param, "code": code}
    }
    client = openai_client(body, status=status)
    with pytest.raises(exc_class) as exc:
        client.chat.completions.create(model="m", messages=[])
    assert exc.value.status_code == status
    assert (exc.value.type, exc.value.code, exc.value.param) == (error_type, code, param)
