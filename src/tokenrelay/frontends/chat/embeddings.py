"""OpenAI's `POST /v1/embeddings`: the body (input as a string, strings, a token array or token
arrays; `dimensions`; `encoding_format` float or base64) into the IR, the vectors back as
OpenAI's list. base64 is little-endian float32, as OpenAI sends it (the openai SDK asks for it
by default and decodes it itself); the vendor is always asked for floats."""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping
from typing import Any

from tokenrelay import ir
from tokenrelay.errors import invalid

# OpenAI's own bound on inputs per request.
MAX_INPUTS = 2048


def _tokens(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value)
    )


def parse_embeddings(body: Any) -> ir.EmbeddingRequest:
    if not isinstance(body, dict):
        raise invalid("body: expected a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model: Field required (a model name string)", "model")
    raw = body.get("input")
    inputs: list[str | list[int]]
    if isinstance(raw, str) or (isinstance(raw, list) and _tokens(raw)):
        inputs = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(i, str) or _tokens(i) for i in raw):
        inputs = list(raw)
    else:
        raise invalid(
            "input: expected a non-empty string, array of strings, or array of token arrays",
            "input",
        )
    if len(inputs) > MAX_INPUTS:
        raise invalid(f"input: at most {MAX_INPUTS} inputs per request", "input")
    if any(isinstance(i, str) and not i for i in inputs):
        raise invalid("input: an input must not be empty", "input")
    dims = body.get("dimensions")
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims <= 0):
        raise invalid("dimensions: expected a positive integer", "dimensions")
    if body.get("encoding_format", "float") not in ("float", "base64"):
        raise invalid("encoding_format: expected 'float' or 'base64'", "encoding_format")
    return ir.EmbeddingRequest(model, inputs, dims)


def render_embeddings(
    result: ir.Embeddings,
    *,
    model: str,
    encoding_format: str,
    input_tokens: int,
    extra_usage: Mapping[str, Any],
) -> dict[str, Any]:
    as_base64 = encoding_format == "base64"
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": _base64(vec) if as_base64 else vec,
        }
        for i, vec in enumerate(result.vectors)
    ]
    usage = {"prompt_tokens": input_tokens, "total_tokens": input_tokens, **extra_usage}
    return {"object": "list", "data": data, "model": model, "usage": usage}


def _base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
