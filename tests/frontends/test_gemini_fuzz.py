"""Hostile Gemini bodies: the parser answers an IR request or a 400 that names a field, never
anything else (an exception here would be a 500)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tokenrelay.errors import GatewayError
from tokenrelay.frontends.gemini.frontend import GEMINI_FRONTEND

# What a parsed JSON body can hold (orjson reads integers past 64 bits as floats).
anything: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def maybe(plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a plausible value, sometimes anything at all."""
    return st.one_of(plausible, plausible, plausible, anything)


name = maybe(st.sampled_from(["f", "g"]))
text = maybe(st.text(max_size=8))
# A part is mostly one kind (as the API wants), sometimes several at once.
_PART_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "text": text,
    "thought": maybe(st.booleans()),
    "thoughtSignature": text,
    "thought_signature": text,
    "functionCall": st.fixed_dictionaries(
        {"name": name},
        optional={"args": maybe(st.dictionaries(st.text(max_size=8), anything)), "id": text},
    ),
    "functionResponse": st.fixed_dictionaries(
        {"name": name},
        optional={
            "response": maybe(st.dictionaries(st.text(max_size=8), anything)),
            "id": text,
            "parts": anything,
        },
    ),
    "inlineData": st.fixed_dictionaries({}, optional={"mimeType": text, "data": text}),
    "fileData": st.fixed_dictionaries({}, optional={"mimeType": text, "fileUri": text}),
    "executableCode": anything,
}
part = st.one_of(
    *(
        st.fixed_dictionaries({k: v}, optional={"thoughtSignature": text})
        for k, v in _PART_FIELDS.items()
        if k != "thoughtSignature"
    ),
    st.fixed_dictionaries({}, optional=_PART_FIELDS),
)
content = st.fixed_dictionaries(
    {"parts": maybe(st.lists(part, max_size=4))},
    optional={"role": maybe(st.sampled_from(["user", "model", "model", "x"]))},
)
body = st.fixed_dictionaries(
    {
        "model": st.text(min_size=1, max_size=5),
        "contents": maybe(st.lists(content, min_size=1, max_size=4)),
    },
    optional={
        "systemInstruction": maybe(
            st.fixed_dictionaries({"parts": st.lists(st.fixed_dictionaries({"text": text}))})
        ),
        "system_instruction": st.fixed_dictionaries({"parts": st.lists(part, max_size=2)}),
        "tools": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "functionDeclarations": st.lists(
                        st.fixed_dictionaries(
                            {"name": anything},
                            optional={"parameters": anything, "parametersJsonSchema": anything},
                        ),
                        max_size=2,
                    )
                    | anything,
                    "googleSearch": anything,
                },
            ),
            max_size=2,
        )
        | anything,
        "toolConfig": st.fixed_dictionaries(
            {},
            optional={
                "functionCallingConfig": st.fixed_dictionaries(
                    {}, optional={"mode": anything, "allowedFunctionNames": anything}
                )
                | anything
            },
        )
        | anything,
        "generationConfig": st.dictionaries(
            st.sampled_from(
                [
                    "temperature",
                    "topP",
                    "top_k",
                    "maxOutputTokens",
                    "candidateCount",
                    "stopSequences",
                    "responseMimeType",
                    "responseSchema",
                    "response_json_schema",
                    "thinkingConfig",
                    "seed",
                ]
            ),
            anything,
        )
        | anything,
        "stream": anything,
    },
)


@settings(max_examples=1500, deadline=None)
@given(body=body)
def test_gemini_parser_answers_ir_or_a_400(body: dict[str, Any]) -> None:
    for parse in (GEMINI_FRONTEND.parse_request, GEMINI_FRONTEND.parse_count_tokens):
        try:
            parse(body, {})
        except GatewayError as err:
            assert err.status == 400 and err.kind == "invalid_request", err.message
