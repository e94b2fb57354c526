"""The gateway's own CPU per stream chunk, in process: `python -m bench.chunk_cost`.

Feeds a 64-chunk vendor stream (each network read one SSE event, as a vendor flushes them)
through the exchange the relay would build — the fast path for each of the four same-format
pairs, and OpenAI client → Anthropic vendor translated — and divides the CPU time
(`time.process_time`, not wall time: the machine is shared) by the chunks. What it leaves out
is the server's own write of each chunk (uvicorn's `send`), the same for both paths.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import orjson

from tokenrelay import ir
from tokenrelay.billing.metering import RequestContext
from tokenrelay.frontends.anthropic.frontend import ANTHROPIC_FRONTEND
from tokenrelay.frontends.chat.frontend import OPENAI_FRONTEND
from tokenrelay.frontends.gemini.frontend import GEMINI_FRONTEND
from tokenrelay.frontends.responses.frontend import RESPONSES_FRONTEND
from tokenrelay.gateway.codec import Frontend
from tokenrelay.gateway.exchange import ExchangeBase
from tokenrelay.gateway.fastpath import PassthroughExchange
from tokenrelay.gateway.translated import TranslatedExchange
from tokenrelay.reasoning.cache import ReasoningCache
from tokenrelay.sse import encode
from tokenrelay.vendors.anthropic import ANTHROPIC
from tokenrelay.vendors.base import UpstreamRequest, Vendor
from tokenrelay.vendors.gemini import GEMINI
from tokenrelay.vendors.openai import OPENAI
from tokenrelay.vendors.openai_responses import RESPONSES

CHUNKS = 64
WORD = "token "


def _chat() -> list[bytes]:
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}

    def chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return encode(orjson.dumps({**head, "choices": [choice]}))

    usage = {"prompt_tokens": 12, "completion_tokens": CHUNKS, "total_tokens": 12 + CHUNKS}
    return [
        chunk({"role": "assistant", "content": ""}),
        *(chunk({"content": WORD}) for _ in range(CHUNKS)),
        chunk({}, "stop"),
        encode(orjson.dumps({**head, "choices": [], "usage": usage})),
        b"data: [DONE]\n\n",
    ]


def _anthropic() -> list[bytes]:
    msg = {"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": []}
    usage = {"input_tokens": 12, "output_tokens": 1}
    return [
        encode(
            orjson.dumps({"type": "message_start", "message": {**msg, "usage": usage}}),
            "message_start",
        ),
        encode(
            b'{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
            "content_block_start",
        ),
        *(
            encode(
                orjson.dumps(
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": WORD},
                    }
                ),
                "content_block_delta",
            )
            for _ in range(CHUNKS)
        ),
        encode(b'{"type":"content_block_stop","index":0}', "content_block_stop"),
        encode(
            orjson.dumps(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": CHUNKS},
                }
            ),
            "message_delta",
        ),
        encode(b'{"type":"message_stop"}', "message_stop"),
    ]


def _gemini() -> list[bytes]:
    def chunk(text: str, final: bool) -> bytes:
        cand: dict[str, object] = {
            "content": {"parts": [{"text": text}], "role": "model"},
            "index": 0,
        }
        if final:
            cand["finishReason"] = "STOP"
        usage = {
            "promptTokenCount": 12,
            "candidatesTokenCount": CHUNKS,
            "totalTokenCount": 12 + CHUNKS,
        }
        return encode(
            orjson.dumps({"candidates": [cand], "usageMetadata": usage, "modelVersion": "m"})
        )

    return [chunk(WORD, i == CHUNKS - 1) for i in range(CHUNKS)]


def _responses() -> list[bytes]:
    resp = {
        "id": "resp_1",
        "object": "response",
        "status": "in_progress",
        "model": "m",
        "output": [],
    }
    done = {
        **resp,
        "status": "completed",
        "usage": {"input_tokens": 12, "output_tokens": CHUNKS, "total_tokens": 12 + CHUNKS},
    }

    def ev(kind: str, body: dict[str, object]) -> bytes:
        return encode(orjson.dumps({"type": kind, **body}), kind)

    return [
        ev("response.created", {"response": resp}),
        *(
            ev(
                "response.output_text.delta",
                {"item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": WORD},
            )
            for _ in range(CHUNKS)
        ),
        ev("response.completed", {"response": done}),
    ]


Case = tuple[Frontend, Vendor, Callable[[], list[bytes]], bool]
CASES: dict[str, Case] = {
    "fast_openai": (OPENAI_FRONTEND, OPENAI, _chat, True),
    "fast_anthropic": (ANTHROPIC_FRONTEND, ANTHROPIC, _anthropic, True),
    "fast_gemini": (GEMINI_FRONTEND, GEMINI, _gemini, True),
    "fast_responses": (RESPONSES_FRONTEND, RESPONSES, _responses, True),
    "translated": (OPENAI_FRONTEND, ANTHROPIC, _anthropic, False),
}


def _one(case: Case, chunks: list[bytes]) -> None:
    frontend, vendor, _, fast = case
    ctx = RequestContext(request_id="req_bench", client_format=frontend.name)
    req = ir.Request(model="m", messages=[], stream=True)
    ex: ExchangeBase
    kind = PassthroughExchange if fast else TranslatedExchange
    ex = kind(frontend, vendor, ctx, req, ReasoningCache())
    ex.start(UpstreamRequest("POST", "http://upstream", {}, b""), req)
    for chunk in chunks:
        ex.feed(chunk)  # type: ignore[attr-defined]
    ex.close()  # type: ignore[attr-defined]
    assert ex.done, "the stream did not complete"  # type: ignore[attr-defined]
    ex.tail({"cost_usd": 0.001})  # type: ignore[attr-defined]


def per_chunk_us(
    streams: int = 100,
    rounds: int = 9,
    pick: Callable[[list[float]], float] = statistics.median,
) -> dict[str, float]:
    """CPU µs per content chunk for every case (a stream's whole work ÷ its chunks), the
    cases taken in turn within each round so a burst of other work hits them alike; the median
    over rounds, or what `pick` takes."""
    streams_of = {name: CASES[name][2]() for name in CASES}
    for name, chunks in streams_of.items():
        _one(CASES[name], chunks)  # warm-up (imports, caches)
    xs: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(rounds):
        for name, chunks in streams_of.items():
            t0 = time.process_time()
            for _ in range(streams):
                _one(CASES[name], chunks)
            xs[name].append((time.process_time() - t0) * 1e6 / (streams * CHUNKS))
    return {name: round(pick(v), 2) for name, v in xs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.chunk_cost", description=__doc__)
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    for name, us in per_chunk_us(args.streams, args.rounds).items():
        print(f"{name:16s} {us:6.2f} µs CPU/chunk")


if __name__ == "__main__":
    main()
