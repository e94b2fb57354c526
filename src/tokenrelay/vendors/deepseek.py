"""DeepSeek: OpenAI Chat Completions with a few differences (VENDORS.md §5).

- Thinking is toggled with `thinking: {"type": "enabled"|"disabled"}`; effort is
  `reasoning_effort: "high"|"max"` (low/medium → high, xhigh → max). Output limit: `max_tokens`.
- Thinking mode requires the reasoning of assistant turns that made tool calls to be replayed
  as `reasoning_content` (400 otherwise); elsewhere it is stripped (R1-era models 400 on it).
- Usage: cache hits in `prompt_cache_hit_tokens`; in streams, usage rides on the finish chunk.
- `finish_reason: insufficient_system_resource` means DeepSeek cut the answer for capacity: the
  decoder emits what was produced, then an `overloaded` error (503) instead of a Finish, so the
  client sees a failure rather than a silently truncated "complete" answer.
- Keep-alive `: keep-alive` comments (streams) and blank lines (JSON bodies) are skipped by the
  SSE parser and by JSON whitespace rules.
"""

from __future__ import annotations

from tokenrelay import ir
from tokenrelay.reasoning.cache import ReasoningCache
from tokenrelay.vendors.openai import JSON, OpenAICompatible

CAPACITY_CUT = (
    "The upstream provider stopped generating for lack of capacity; the answer is incomplete."
)


class DeepSeekVendor(OpenAICompatible):
    name = "deepseek"
    max_tokens_field = "max_tokens"
    remembers_reasoning = True  # OpenAI-format clients drop reasoning_content on tool turns

    def passthrough_body(self, body: JSON, req: ir.Request, reasoning: ReasoningCache) -> None:
        """Thinking as the model name asks (deepseek-reasoner); reasoning_content the client
        dropped from a tool-call turn, put back from memory (the API refuses the turn without)."""
        cfg = req.thinking
        if cfg is not None and cfg.enabled is not None and "thinking" not in body:
            body["thinking"] = {"type": "enabled" if cfg.enabled else "disabled"}
        messages = body.get("messages")
        if isinstance(messages, list):
            body["messages"] = [_with_reasoning(m, reasoning) for m in messages]

    def adjust_for_model(self, body: JSON, req: ir.Request, model: str) -> None:
        cfg = req.thinking
        if cfg is None:
            return
        level = cfg.effort  # a budget alone says "think", not how hard: keep DeepSeek's default
        enabled = cfg.enabled if level != "none" else False
        if enabled is not None:
            body["thinking"] = {"type": "enabled" if enabled else "disabled"}
        if level and enabled is not False:
            body["reasoning_effort"] = "max" if level in ("max", "xhigh") else "high"

    def replay_reasoning(self, message: JSON, thinking: list[str]) -> None:
        if thinking and "tool_calls" in message:
            message["reasoning_content"] = "".join(thinking)

    def cached_tokens(self, raw: JSON) -> int:
        hits = raw.get("prompt_cache_hit_tokens")
        return hits if isinstance(hits, int) else super().cached_tokens(raw)

    def finish(self, reason: str, *, refused: bool = False) -> ir.Finish | ir.Error:
        if reason == "insufficient_system_resource":
            return ir.Error("overloaded", CAPACITY_CUT, 503)
        return super().finish(reason, refused=refused)


def _with_reasoning(msg: object, reasoning: ReasoningCache) -> object:
    if not (
        isinstance(msg, dict)
        and msg.get("role") == "assistant"
        and msg.get("tool_calls")
        and not msg.get("reasoning_content")
    ):
        return msg
    calls = msg["tool_calls"]
    for call in calls if isinstance(calls, list) else []:
        if isinstance(call, dict) and isinstance(call.get("id"), str):
            state = reasoning.get(call["id"])
            if state is not None:
                if state.vendor != DeepSeekVendor.name:
                    return msg
                text = "".join(t.text for t in state.thinking if isinstance(t, ir.Thinking))
                return {**msg, "reasoning_content": text}
    return msg


DEEPSEEK = DeepSeekVendor()
