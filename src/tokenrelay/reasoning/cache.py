"""Server-side memory of reasoning state a vendor needs back on the next turn.

Anthropic wants its signed thinking blocks replayed before the tool calls they led to, Gemini 3
its `thoughtSignature` on the function call, DeepSeek its `reasoning_content` on tool-call turns.
The OpenAI Chat Completions format has no field for the first two, and OpenAI-SDK clients tend
to drop the third; so the gateway remembers them, keyed by tool-call id (ids are unique per
response), and restores them when the client sends the conversation back.

One process keeps them in memory. Several (workers, replicas) share them through Redis when
TOKENRELAY_REDIS_URL is set, so the next turn of a tool loop may land on any of them: the
memory stays as a near cache, a state is written to Redis before the client has the answer
(`flush`) and read back on a miss before the request is built (`prefetch`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import orjson

from tokenrelay import ir
from tokenrelay.settings import Settings
from tokenrelay.store.redis_pool import redis_client

log = logging.getLogger("tokenrelay.reasoning")

# A state larger than this stays in the process that saw it (a loop continuing elsewhere then
# fails as it would without the gateway's memory): Redis holds balances too, and a value this
# size is already ~500k tokens of thinking.
MAX_SHARED_BYTES = 2 * 1024 * 1024


@dataclass(slots=True)
class ReasoningState:
    vendor: str
    model: str
    thinking: list[ir.Thinking | ir.RedactedThinking] = field(default_factory=list)
    tool_signatures: dict[str, str] = field(default_factory=dict)


class ReasoningCache:
    """An in-process TTL + LRU map. Bounded, so a flood of tool calls cannot exhaust memory."""

    shared = False  # the relay awaits `prefetch` only when True
    # (tool-call ids, encoded state) put but not yet in Redis; the relay awaits `flush` when
    # non-empty. Always empty here.
    pending: list[tuple[list[str], bytes]]

    def __init__(self, ttl_s: float = 24 * 3600, max_entries: int = 100_000) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._items: OrderedDict[str, tuple[float, ReasoningState]] = OrderedDict()
        self.pending = []

    def put(self, tool_call_ids: list[str], state: ReasoningState) -> None:
        expires = time.monotonic() + self._ttl
        for call_id in tool_call_ids:
            self._items[call_id] = (expires, state)
            self._items.move_to_end(call_id)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def get(self, tool_call_id: str) -> ReasoningState | None:
        item = self._items.get(tool_call_id)
        if item is None:
            return None
        expires, state = item
        if expires < time.monotonic():
            del self._items[tool_call_id]
            return None
        return state

    async def prefetch(self, req: ir.Request) -> None:
        """Nothing to fetch: this process saw every state it has."""

    async def flush(self) -> None:
        """Nothing to write."""

    async def close(self) -> None:
        """Nothing to close."""


class SharedReasoningCache(ReasoningCache):
    """The in-process map in front of Redis (`prefix` + "rs:" + tool-call id, with the TTL).
    Redis trouble costs a warning, never the request: the loop then continues only on the
    process that remembers it."""

    shared = True

    def __init__(
        self, redis: Any, prefix: str, ttl_s: float = 24 * 3600, max_entries: int = 100_000
    ) -> None:
        super().__init__(ttl_s, max_entries)
        self._redis = redis
        self._prefix = prefix + "rs:"

    def put(self, tool_call_ids: list[str], state: ReasoningState) -> None:
        super().put(tool_call_ids, state)
        blob = encode(state)
        if len(blob) > MAX_SHARED_BYTES:
            log.warning("reasoning state of %d bytes kept in this process only", len(blob))
            return
        self.pending.append((tool_call_ids, blob))

    async def flush(self) -> None:
        pending, self.pending = self.pending, []
        if not pending:
            return
        ttl = max(int(self._ttl), 1)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for ids, blob in pending:
                    for call_id in ids:
                        pipe.set(self._prefix + call_id, blob, ex=ttl)
                await pipe.execute()
        except Exception as exc:  # Redis down or slow: the answer goes out all the same
            log.warning("reasoning state not shared (Redis: %s)", type(exc).__name__)

    async def prefetch(self, req: ir.Request) -> None:
        missing = [
            p.id
            for m in req.messages
            if m.role == "assistant"
            for p in m.parts
            if isinstance(p, ir.ToolCall) and self.get(p.id) is None
        ]
        if not missing:
            return
        try:
            blobs = await self._redis.mget([self._prefix + i for i in missing])
        except Exception as exc:
            log.warning("reasoning state not read (Redis: %s)", type(exc).__name__)
            return
        for call_id, blob in zip(missing, blobs, strict=True):
            if blob is not None:
                # A value this version cannot read (another wrote it) is a miss.
                with contextlib.suppress(ValueError, TypeError, KeyError, IndexError):
                    super().put([call_id], decode(blob))

    async def close(self) -> None:
        await self._redis.aclose()


def encode(state: ReasoningState) -> bytes:
    """Compact: {"v": vendor, "m": model, "t": [["t", text, signature] | ["r", data]],
    "s": {tool-call id: signature}}."""
    thinking = [
        ["t", p.text, p.signature] if isinstance(p, ir.Thinking) else ["r", p.data]
        for p in state.thinking
    ]
    return orjson.dumps(
        {"v": state.vendor, "m": state.model, "t": thinking, "s": state.tool_signatures}
    )


def decode(blob: bytes) -> ReasoningState:
    raw = orjson.loads(blob)
    thinking: list[ir.Thinking | ir.RedactedThinking] = [
        ir.Thinking(str(t[1]), t[2]) if t[0] == "t" else ir.RedactedThinking(str(t[1]))
        for t in raw["t"]
    ]
    signatures = {str(k): str(v) for k, v in dict(raw["s"]).items()}
    return ReasoningState(str(raw["v"]), str(raw["m"]), thinking, signatures)


# The client carries it instead: a Responses API client gets a translated vendor's reasoning as
# `encrypted_content` and sends it back (frontends/responses*); OpenAI's own Responses API must
# never see one (vendors/openai_responses drops them).
BLOB_PREFIX = "trr1."


def to_blob(parts: list[ir.Thinking | ir.RedactedThinking]) -> str:
    """Reasoning state as an opaque string: the prefix + base64url JSON (not secret: it is the
    client's own conversation, and each vendor checks its own signatures on replay)."""
    raw = [
        ["t", p.text, p.signature] if isinstance(p, ir.Thinking) else ["r", p.data] for p in parts
    ]
    return BLOB_PREFIX + base64.urlsafe_b64encode(orjson.dumps(raw)).decode()


def from_blob(blob: str) -> list[ir.Thinking | ir.RedactedThinking]:
    """The inverse of `to_blob`; ValueError for anything it did not make."""
    if not blob.startswith(BLOB_PREFIX):
        raise ValueError("not a reasoning blob")
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(blob[len(BLOB_PREFIX) :]))
        return [
            ir.Thinking(str(t[1]), t[2]) if t[0] == "t" else ir.RedactedThinking(str(t[1]))
            for t in raw
        ]
    except (binascii.Error, TypeError, IndexError, KeyError) as exc:
        raise ValueError("not a reasoning blob") from exc


def reasoning_cache_for(settings: Settings) -> ReasoningCache:
    """Shared through Redis when the gateway has one; in this process otherwise."""
    if not settings.redis_url:
        return ReasoningCache(ttl_s=settings.reasoning_cache_ttl_s)
    # Short timeouts: a hung Redis delays a tool turn by seconds at worst, then it goes on.
    client = redis_client(settings.redis_url, connections=64, wait_s=2, io_timeout_s=2)
    return SharedReasoningCache(client, settings.redis_prefix, ttl_s=settings.reasoning_cache_ttl_s)


def remember(cache: ReasoningCache, vendor: str, resp: ir.Response) -> None:
    """After a response: keep what its tool calls will need on the next turn."""
    calls = [p for p in resp.content if isinstance(p, ir.ToolCall)]
    if not calls:
        return
    thinking = [p for p in resp.content if isinstance(p, ir.Thinking | ir.RedactedThinking)]
    signatures = {c.id: c.signature for c in calls if c.signature}
    if not thinking and not signatures:
        return
    cache.put([c.id for c in calls], ReasoningState(vendor, resp.model, thinking, signatures))


def restore(cache: ReasoningCache, vendor: str, req: ir.Request) -> bool:
    """Before a request: put back the reasoning state the client could not carry. True when
    that added text to the prompt (thinking)."""
    added = False
    for msg in req.messages:
        if msg.role != "assistant":
            continue
        calls = [p for p in msg.parts if isinstance(p, ir.ToolCall)]
        if not calls:
            continue
        state = next((s for c in calls if (s := cache.get(c.id)) is not None), None)
        if state is None or state.vendor != vendor:
            continue
        for call in calls:
            if call.signature is None and call.id in state.tool_signatures:
                call.signature = state.tool_signatures[call.id]
        if state.thinking and _needs_thinking(vendor, msg):
            kept = [p for p in msg.parts if not isinstance(p, ir.Thinking | ir.RedactedThinking)]
            msg.parts = [*state.thinking, *kept]
            added = True
    return added


# Google's documented stand-in for a function call Gemini did not generate (another model's, in
# a conversation that changed models): Gemini 3 refuses an unsigned call otherwise.
GEMINI_FOREIGN_SIGNATURE = "skip_thought_signature_validator"
# DeepSeek's thinking mode refuses a tool-call turn without reasoning_content; another model's
# turn has none DeepSeek could read, so it says so.
FOREIGN_REASONING = "(This step was taken by another model; its reasoning is not available.)"


def convert_for(vendor: str, req: ir.Request) -> bool:
    """After `restore`: what is still missing for `vendor` in turns another vendor made (the
    conversation changed model), converted: Gemini gets the stand-in signature on unsigned
    calls, DeepSeek reasoning text on tool-call turns (the other vendor's visible reasoning,
    else a note), Anthropic with thinking on sees tool use that no signed thinking leads as
    text (Anthropic refuses it, and a signature cannot be made up). True when the prompt's
    text changed (a signature is not text)."""
    changed = False
    if vendor == "gemini":
        for msg in req.messages:
            calls = [p for p in msg.parts if isinstance(p, ir.ToolCall)]
            if msg.role == "assistant" and calls and not any(c.signature for c in calls):
                calls[0].signature = GEMINI_FOREIGN_SIGNATURE
    elif vendor == "deepseek" and _thinks(req):
        for msg in req.messages:
            if msg.role != "assistant" or not any(isinstance(p, ir.ToolCall) for p in msg.parts):
                continue
            if not any(isinstance(p, ir.Thinking) and p.text for p in msg.parts):
                msg.parts = [ir.Thinking(FOREIGN_REASONING), *msg.parts]
                changed = True
    elif vendor == "anthropic" and _thinks(req):
        changed = _tool_use_as_text(req.messages)
    return changed


def needs_conversion(cache: ReasoningCache, vendor: str, req: ir.Request) -> bool:
    """Whether `req` holds another vendor's turns that `convert_for` must change for `vendor`:
    such a request cannot take the fast path (the client's bytes would be refused)."""
    if vendor == "gemini":
        return any(
            msg.role == "assistant"
            and calls
            and not any(c.signature or _cached_signature(cache, c.id) for c in calls)
            for msg in req.messages
            for calls in [[p for p in msg.parts if isinstance(p, ir.ToolCall)]]
        )
    if vendor == "anthropic" and _thinks(req):
        return any(_unsigned_tool_use(m) for m in req.messages)
    return False


def _cached_signature(cache: ReasoningCache, call_id: str) -> bool:
    state = cache.get(call_id)
    return state is not None and call_id in state.tool_signatures


def _signed_first(msg: ir.Message) -> bool:
    first = msg.parts[0] if msg.parts else None
    return isinstance(first, ir.RedactedThinking) or (
        isinstance(first, ir.Thinking) and bool(first.signature)
    )


def _thinks(req: ir.Request) -> bool:
    return req.thinking is not None and req.thinking.enabled is not False


def _unsigned_tool_use(msg: ir.Message) -> bool:
    return (
        msg.role == "assistant"
        and any(isinstance(p, ir.ToolCall) for p in msg.parts)
        and not _signed_first(msg)
    )


def _tool_use_as_text(messages: list[ir.Message]) -> bool:
    """Every tool use no signed thinking leads, and its results, as text (the lastmost set is
    what Anthropic checks; once it is text, the one before is the lastmost). True when there
    was one."""
    names: dict[str, str] = {}
    for msg in messages:
        if _unsigned_tool_use(msg):
            parts: list[ir.Part] = []
            for p in msg.parts:
                if isinstance(p, ir.ToolCall):
                    names[p.id] = p.name
                    parts.append(ir.Text(f"[called the tool {p.name} with {p.arguments}]"))
                elif not isinstance(p, ir.Thinking | ir.RedactedThinking):
                    parts.append(p)
            msg.parts = parts
        elif msg.role == "user" and names:
            converted: list[ir.Part] = []
            for p in msg.parts:
                if isinstance(p, ir.ToolResult) and p.tool_call_id in names:
                    said = " ".join(c.text for c in p.content if isinstance(c, ir.Text))
                    name = names[p.tool_call_id]
                    converted.append(ir.Text(f"[the tool {name} returned: {said}]"))
                    converted += [c for c in p.content if isinstance(c, ir.Image)]
                else:
                    converted.append(p)
            msg.parts = converted
    return bool(names)


def _needs_thinking(vendor: str, msg: ir.Message) -> bool:
    thinking = [p for p in msg.parts if isinstance(p, ir.Thinking | ir.RedactedThinking)]
    if not thinking:
        return True
    # Anthropic checks signatures: an unsigned block (an OpenAI client's reasoning_content echo)
    # must be replaced by the signed original.
    return vendor == "anthropic" and any(
        isinstance(p, ir.Thinking) and not p.signature for p in thinking
    )
