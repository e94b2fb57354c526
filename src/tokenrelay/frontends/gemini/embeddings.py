"""Gemini's `models/{model}:embedContent` (one content) and `:batchEmbedContents` (a list of
them) into the IR and back: `{"embedding": {"values"}}` or `{"embeddings": [...]}`."""

from __future__ import annotations

from typing import Any

from tokenrelay import ir
from tokenrelay.errors import invalid

# Gemini's own bound on requests per batchEmbedContents call.
MAX_REQUESTS = 100


def _get(d: dict[str, Any], camel: str, snake: str) -> Any:
    return d.get(camel, d.get(snake))


def _text(item: Any, where: str) -> str:
    content = item.get("content") if isinstance(item, dict) else None
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list) or not parts:
        raise invalid(f"{where}content.parts: required, a non-empty list", "content")
    texts = [p.get("text") for p in parts if isinstance(p, dict)]
    if not all(isinstance(t, str) for t in texts) or not "".join(texts):  # type: ignore[arg-type]
        raise invalid(f"{where}content.parts: only text parts can be embedded", "content")
    return "".join(texts)  # type: ignore[arg-type]


def parse_embed(model: str, body: Any, *, batch: bool) -> ir.EmbeddingRequest:
    """One request of either method (a batch's requests must agree on everything but text)."""
    if not isinstance(body, dict):
        raise invalid("body: expected a JSON object")
    items = body.get("requests") if batch else [body]
    if not isinstance(items, list) or not items:
        raise invalid("requests: required, a non-empty list", "requests")
    if len(items) > MAX_REQUESTS:
        raise invalid(f"requests: at most {MAX_REQUESTS} per call", "requests")
    texts = [_text(item, f"requests[{i}]." if batch else "") for i, item in enumerate(items)]
    first = items[0]
    options = [
        (
            _get(it, "outputDimensionality", "output_dimensionality"),
            _get(it, "taskType", "task_type"),
            it.get("title"),
        )
        for it in items
    ]
    if any(o != options[0] for o in options):
        raise invalid("requests: every request must ask the same dimensions and task type")
    dims, task, title = options[0]
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims <= 0):
        raise invalid("outputDimensionality: expected a positive integer", "outputDimensionality")
    if batch:
        named = str(first.get("model", "models/" + model)).removeprefix("models/")
        if named != model.removeprefix("models/"):
            raise invalid("requests[].model: must be the model of the URL", "model")
    return ir.EmbeddingRequest(
        model,
        list(texts),
        dims,
        task if isinstance(task, str) else None,
        title if isinstance(title, str) else None,
    )


def render_embed(result: ir.Embeddings, *, batch: bool) -> dict[str, Any]:
    items = [{"values": vec} for vec in result.vectors]
    return {"embeddings": items} if batch else {"embedding": items[0]}
