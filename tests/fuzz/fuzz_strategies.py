"""Hypothesis strategies for request bodies: arbitrary bytes and JSON, plausible Anthropic and
OpenAI requests with random (often wrong) field values, and plausible bodies with hostile
fragments spliced in. Sizes stay small so thousands of bodies take seconds, not minutes."""

from __future__ import annotations

import functools
from typing import Any

import orjson
from hypothesis import strategies as st

Json = Any

# Scalars and small containers of any JSON type: what goes where a field's value should be.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),  # what orjson can write
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
junk: st.SearchStrategy[Json] = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
json_values: st.SearchStrategy[Json] = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=25,
)
texts = st.text(max_size=16)


class Wire:
    """Request strategies for both client APIs. `wild`: any field may hold any JSON value
    (mostly 400s, probing the validators); tame: well-typed values with edge-case numbers
    and shapes (mostly reaching a vendor, probing adapters and the emulator)."""

    def __init__(self, models: list[str], *, wild: bool) -> None:
        self.models = models
        self.wild = wild

    def anthropic(self, *, counting: bool = False) -> st.SearchStrategy[dict]:
        return _build(tuple(self.models), self.wild, counting)[0]

    def openai(self) -> st.SearchStrategy[dict]:
        return _build(tuple(self.models), self.wild, False)[1]


@functools.cache  # building the strategies costs more than drawing from them
def _build(
    models: tuple[str, ...], wild: bool, counting: bool
) -> tuple[st.SearchStrategy[dict], st.SearchStrategy[dict]]:
    # Tame bodies leave out what wild ones fill with junk.
    bad = junk if wild else st.nothing()
    ids_ = st.one_of(st.text(max_size=8), bad) if wild else st.text(min_size=1, max_size=8)

    def maybe(value: st.SearchStrategy[Json]) -> st.SearchStrategy[Json]:
        """Mostly the plausible value, sometimes anything at all."""
        return st.one_of(value, value, value, bad) if wild else value

    def fields(required: dict[str, Any], optional: dict[str, Any]) -> st.SearchStrategy[dict]:
        """A dict with some of the optional keys, and now and then an unknown one."""
        extra = st.dictionaries(st.text(min_size=1, max_size=8), junk, max_size=1)
        return st.builds(
            lambda base, more, unknown: {**unknown, **base, **more},
            st.fixed_dictionaries(required),
            st.fixed_dictionaries({}, optional=optional),
            st.one_of(st.just({}), st.just({}), extra) if wild else st.just({}),
        )

    # ------------------------------------------------------------------------------ numbers

    if wild:
        max_tokens = st.one_of(
            st.integers(min_value=1, max_value=64),
            st.integers(min_value=-5, max_value=0),
            st.sampled_from([10**12, 2**63, 2**64 - 1]),
            st.floats(allow_nan=False, allow_infinity=False),
            st.sampled_from(["10", "", True, None, [], {}]),
        )
        temperature = st.one_of(
            st.floats(min_value=0, max_value=1),
            st.floats(allow_nan=False),
            st.sampled_from(["0.5", None]),
        )
    else:  # in range, with the edges
        max_tokens = st.one_of(
            st.integers(min_value=1, max_value=64), st.sampled_from([1, 4096, 10**6])
        )
        temperature = st.one_of(st.none(), st.floats(min_value=0, max_value=1))
    schemas = st.one_of(
        st.just({"type": "object", "properties": {"city": {"type": "string"}}}),
        st.just({"type": "object"}),
        bad,
    )

    # --------------------------------------------------------------------- Anthropic wire

    _source = st.one_of(
        fields({"type": st.just("base64"), "media_type": st.just("image/png"), "data": texts}, {}),
        fields({"type": st.just("url"), "url": st.just("https://example.com/a.png")}, {}),
        fields({"type": st.just("text"), "data": texts}, {"media_type": st.just("text/plain")}),
        bad,
    )
    anthropic_text = fields({"type": st.just("text"), "text": maybe(texts)}, {"cache_control": bad})
    anthropic_blocks = st.one_of(
        anthropic_text,
        fields({"type": st.just("image"), "source": _source}, {}),
        fields({"type": st.just("document"), "source": _source}, {"title": bad}),
        fields(
            {
                "type": st.just("tool_use"),
                "id": ids_,
                "name": maybe(texts),
                "input": maybe(st.just({})),
            },
            {},
        ),
        fields(
            {"type": st.just("tool_result"), "tool_use_id": ids_},
            {
                "content": st.one_of(texts, st.lists(anthropic_text, max_size=2), bad),
                "is_error": bad,
            },
        ),
        fields(
            {"type": st.just("thinking"), "thinking": maybe(texts)}, {"signature": maybe(texts)}
        ),
        fields({"type": st.just("redacted_thinking"), "data": maybe(texts)}, {}),
        fields({"type": st.sampled_from(["web_search_tool_result", "mystery", ""])}, {"x": bad}),
        bad,
    )
    anthropic_message = fields(
        {
            "role": maybe(st.sampled_from(["user", "assistant", "user", "system"][: 3 + wild])),
            "content": st.one_of(texts, st.lists(anthropic_blocks, max_size=3), bad),
        },
        {"tool_calls": bad},
    )
    anthropic_tool = st.one_of(
        fields({"name": maybe(texts), "input_schema": schemas}, {"description": bad, "type": bad}),
        fields({"type": st.just("web_search_20250305"), "name": st.just("web_search")}, {}),
        bad,
    )
    anthropic_tool_choice = st.one_of(
        fields(
            {"type": st.sampled_from(["auto", "any", "none"])}, {"disable_parallel_tool_use": bad}
        ),
        fields({"type": st.just("tool"), "name": maybe(texts)}, {}),
        bad,
    )
    anthropic_thinking = st.one_of(
        st.just({"type": "disabled"}),
        st.just({"type": "adaptive"}),
        fields({"type": st.just("enabled"), "budget_tokens": max_tokens}, {}),
        bad,
    )

    required: dict[str, Any] = {
        "model": maybe(st.sampled_from(models)),
        "messages": maybe(st.lists(anthropic_message, min_size=1, max_size=4)),
    }
    if not counting:
        required["max_tokens"] = max_tokens
    anthropic = fields(
        required,
        {
            "system": st.one_of(texts, st.lists(anthropic_blocks, max_size=2), bad),
            "tools": maybe(st.lists(anthropic_tool, max_size=3)),
            "tool_choice": anthropic_tool_choice,
            "thinking": anthropic_thinking,
            "temperature": temperature,
            "top_p": temperature,
            "top_k": max_tokens,
            "stop_sequences": maybe(st.lists(texts, max_size=3)),
            "stream": maybe(st.booleans()),
            "metadata": maybe(fields({}, {"user_id": maybe(texts)})),
            "output_config": bad,
        },
    )

    # ------------------------------------------------------------------------ OpenAI wire

    _tool_call = fields(
        {
            "id": ids_,
            "type": maybe(st.just("function")),
            "function": maybe(fields({"name": maybe(texts)}, {"arguments": maybe(st.just("{}"))})),
        },
        {},
    )
    openai_parts = st.one_of(
        fields({"type": st.just("text"), "text": maybe(texts)}, {}),
        fields(
            {
                "type": st.just("image_url"),
                "image_url": maybe(
                    fields(
                        {
                            "url": st.sampled_from(
                                ["https://e.com/a.png", "data:image/png;base64,AA==", "x"]
                            )
                        },
                        {},
                    )
                ),
            },
            {},
        ),
        fields({"type": st.just("file"), "file": bad}, {}),
        fields({"type": st.sampled_from(["refusal", "input_audio", "mystery"])}, {"refusal": bad}),
        bad,
    )
    openai_message = fields(
        {
            "role": maybe(
                st.sampled_from(
                    ["user", "assistant", "system", "developer", "tool", "function"][: 4 + 2 * wild]
                )
            ),
            "content": st.one_of(
                st.none() if wild else texts, texts, st.lists(openai_parts, max_size=3), bad
            ),
        },
        {
            "tool_calls": maybe(st.lists(_tool_call, max_size=2)),  # on any role, on purpose
            "tool_call_id": ids_,
            "name": maybe(texts),
            "reasoning_content": maybe(texts),
        },
    )
    openai_tool = st.one_of(
        fields(
            {
                "type": maybe(st.just("function")),
                "function": maybe(
                    fields({"name": maybe(texts)}, {"parameters": schemas, "strict": bad})
                ),
            },
            {},
        ),
        fields({"type": st.just("custom"), "custom": bad}, {}),
        bad,
    )
    openai_tool_choice = st.one_of(
        st.sampled_from(["auto", "required", "none", "bogus"]),
        fields(
            {"type": st.just("function"), "function": maybe(fields({"name": maybe(texts)}, {}))}, {}
        ),
        bad,
    )

    openai = fields(
        {
            "model": maybe(st.sampled_from(models)),
            "messages": maybe(st.lists(openai_message, min_size=1, max_size=4)),
        },
        {
            "max_tokens": max_tokens,
            "max_completion_tokens": max_tokens,
            "temperature": temperature,
            "top_p": temperature,
            "stop": st.one_of(texts, st.lists(texts, max_size=5), bad),
            "stream": maybe(st.booleans()),
            "stream_options": maybe(fields({}, {"include_usage": maybe(st.booleans())})),
            "tools": maybe(st.lists(openai_tool, max_size=3)),
            "tool_choice": openai_tool_choice,
            "parallel_tool_calls": bad,
            "response_format": st.one_of(
                st.sampled_from([{"type": "text"}, {"type": "json_object"}]), bad
            ),
            "reasoning_effort": maybe(st.sampled_from(["none", "low", "high"])),
            "user": bad,
            "metadata": bad,
        },
    )
    return anthropic, openai


# ------------------------------------------------------------------------ raw bodies

# Hostile fragments: invalid UTF-8, lone surrogates, out-of-range numbers, non-JSON literals,
# deep nesting (around orjson's 254 / 1,024 and our 128 limits), BOM, NUL.
_FRAGMENTS = st.one_of(
    st.sampled_from(
        [
            b"\xff",
            b"\xc3\x28",
            b"\xed\xa0\x80",
            b'"\\ud800"',
            b'"\\udc00\\ud800"',
            b"1e999999",
            b"-1e999999",
            b"123456789012345678901234567890",
            b"NaN",
            b"Infinity",
            b"-Infinity",
            b"\xef\xbb\xbf",
            b"\x00",
            b'"\\u0000"',
            b",",
            b"}",
            b"]",
        ]
    ),
    st.integers(min_value=100, max_value=1100).map(lambda n: b"[" * n + b"]" * n),
    st.integers(min_value=100, max_value=1100).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.binary(max_size=8),
)


@st.composite
def spliced(draw: st.DrawFn, bodies: st.SearchStrategy[dict]) -> bytes:
    """A plausible body with a hostile fragment put in place of some of its bytes."""
    raw = orjson.dumps(draw(bodies))
    start = draw(st.integers(min_value=0, max_value=len(raw)))
    end = draw(st.integers(min_value=start, max_value=min(len(raw), start + 4)))
    return raw[:start] + draw(_FRAGMENTS) + raw[end:]


@st.composite
def in_field(draw: st.DrawFn, bodies: st.SearchStrategy[dict]) -> bytes:
    """A plausible body with one top-level field's value replaced by a hostile fragment
    (still well-formed around it, so it reaches the field parsers when it parses at all)."""
    body = draw(bodies)
    key = draw(st.sampled_from(sorted(body) or ["model"]))
    body[key] = "\x00FRAGMENT\x00"
    return orjson.dumps(body).replace(b'"\\u0000FRAGMENT\\u0000"', draw(_FRAGMENTS))


raw_bytes = st.one_of(st.binary(max_size=200), json_values.map(orjson.dumps))
