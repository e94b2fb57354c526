"""Server-side memory of reasoning state a vendor needs back on the next turn.

Anthropic wants its signed thinking blocks replayed before the tool calls they led to, Gemini 3
its `thoughtSignature` on the function call, DeepSeek its `reasoning_content` on tool-call turns.
The OpenAI Chat Completions format has no field for the first two, and OpenAI-SDK clients tend
to drop the third; so the gateway remembers them, keyed by tool-call id (ids are unique per
response), and restores them when the client sends the conversation back.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

from tokenrelay import ir


@dataclass(slots=True)
class ReasoningState:
    vendor: str
    model: str
    thinking: list[ir.Thinking | ir.RedactedThinking] = field(default_factory=list)
    tool_signatures: dict[str, str] = field(default_factory=dict)


class ReasoningCache:
    """An in-process TTL + LRU map. Bounded, so a flood of tool calls cannot exhaust memory."""

    def __init__(self, ttl_s: float = 24 * 3600, max_entries: int = 100_000) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._items: OrderedDict[str, tuple[float, ReasoningState]] = OrderedDict()

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


def restore(cache: ReasoningCache, vendor: str, req: ir.Request) -> None:
    """Before a request: put back the reasoning state the client could not carry."""
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


def _needs_thinking(vendor: str, msg: ir.Message) -> bool:
    thinking = [p for p in msg.parts if isinstance(p, ir.Thinking | ir.RedactedThinking)]
    if not thinking:
        return True
    # Anthropic checks signatures: an unsigned block (an OpenAI client's reasoning_content echo)
    # must be replaced by the signed original.
    return vendor == "anthropic" and any(
        isinstance(p, ir.Thinking) and not p.signature for p in thinking
    )
