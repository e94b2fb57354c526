"""Embeddings on the OpenAI wire (`POST /v1/embeddings`) and the Gemini wire
(`models/{m}:embedContent`, `:batchEmbedContents`).

Vectors are deterministic: the same model, text and size always give the same unit vector, so
a test can compare the gateway's answer with a direct call. Token counts are the emulator's own
(tokens.count); the Gemini API reports none for embeddings, as the real one does not.
"""

from __future__ import annotations

import hashlib
import math
import random
from typing import Any

from tokenrelay.emulator import gemini, openai_errors
from tokenrelay.emulator.tokens import count
from tokenrelay.emulator.wire import BadJSON, Req, Resp, json_resp

# Default sizes, and whether a model takes `dimensions` (ada-002 does not).
OPENAI_SIZES = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072}
_ADA = {"text-embedding-ada-002": 1536}
GEMINI_SIZES = {"gemini-embedding-001": 3072, "text-embedding-004": 768}
_OPENAI_MAX_INPUTS = 2048
_GEMINI_MAX_REQUESTS = 100


def vector(model: str, text: str, size: int) -> list[float]:
    """The unit vector the emulator gives `text` on `model` at `size` dimensions."""
    seed = hashlib.sha256(f"{model}\0{text}".encode()).digest()
    rng = random.Random(int.from_bytes(seed, "big"))
    raw = [rng.uniform(-1.0, 1.0) for _ in range(size)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


def openai(req: Req, vendor: str) -> Resp:
    if (denied := openai_errors.auth(req, vendor)) is not None:
        return denied
    try:
        body = req.json()
    except BadJSON:
        return openai_errors.error(vendor, 400, "We could not parse the JSON body of your request.")
    model = str(body.get("model"))
    size = OPENAI_SIZES.get(model) or _ADA.get(model)
    if size is None:
        return openai_errors.error(
            vendor,
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    raw = body.get("input")
    inputs: list[Any] = raw if isinstance(raw, list) and raw and not _is_tokens(raw) else [raw]
    if not raw or len(inputs) > _OPENAI_MAX_INPUTS or not all(_valid_input(i) for i in inputs):
        return openai_errors.error(vendor, 400, "'$.input' is invalid.", "input")
    dims = body.get("dimensions")
    if dims is not None:
        if model in _ADA:
            return openai_errors.error(
                vendor, 400, "This model does not support specifying dimensions.", "dimensions"
            )
        if not isinstance(dims, int) or not 0 < dims <= size:
            return openai_errors.error(vendor, 400, "Invalid value for 'dimensions'.", "dimensions")
        size = dims
    fmt = body.get("encoding_format", "float")
    if fmt != "float":  # the gateway always asks for floats (and encodes base64 itself)
        return openai_errors.error(vendor, 400, "emulator: only float", "encoding_format")
    data, tokens = [], 0
    for i, item in enumerate(inputs):
        text = item if isinstance(item, str) else " ".join(map(str, item))
        tokens += count(item) if isinstance(item, str) else len(item)
        data.append({"object": "embedding", "index": i, "embedding": vector(model, text, size)})
    return json_resp(
        200,
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        },
    )


def _is_tokens(value: list[Any]) -> bool:
    return all(isinstance(t, int) and not isinstance(t, bool) for t in value)


def _valid_input(item: Any) -> bool:
    if isinstance(item, str):
        return bool(item)
    return isinstance(item, list) and bool(item) and _is_tokens(item)


def gemini_embed(req: Req, model: str) -> Resp:
    """`:embedContent`: one content."""
    return _gemini(req, model, batch=False)


def gemini_batch(req: Req, model: str) -> Resp:
    """`:batchEmbedContents`: up to 100 requests, each naming the same model."""
    return _gemini(req, model, batch=True)


def _gemini(req: Req, model: str, *, batch: bool) -> Resp:
    if (denied := gemini.auth(req)) is not None:
        return denied
    model = model.removeprefix("models/")
    size = GEMINI_SIZES.get(model)
    if size is None:
        return gemini.error(404, f"models/{model} is not found for API version v1beta.")
    try:
        body = req.json()
    except BadJSON as exc:
        return gemini.error(400, f"Invalid JSON payload received. {exc}")
    items = body.get("requests") if batch else [body]
    if not isinstance(items, list) or not items:
        return gemini.error(400, "* BatchEmbedContentsRequest.requests: must not be empty")
    if len(items) > _GEMINI_MAX_REQUESTS:
        return gemini.error(400, "* BatchEmbedContentsRequest.requests: at most 100 requests")
    out = []
    for item in items:
        if batch and str(item.get("model", "")).removeprefix("models/") != model:
            return gemini.error(400, "Model name in each request must match the URL model.")
        parts = (item.get("content") or {}).get("parts") or []
        text = "".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))
        if not text:
            return gemini.error(400, "* EmbedContentRequest.content: contents must not be empty")
        dims = item.get("outputDimensionality", item.get("output_dimensionality"))
        if dims is not None and (not isinstance(dims, int) or not 0 < dims <= size):
            return gemini.error(400, "* outputDimensionality: out of range")
        out.append({"values": vector(model, text, dims or size)})
    return json_resp(200, {"embeddings": out} if batch else {"embedding": out[0]})
