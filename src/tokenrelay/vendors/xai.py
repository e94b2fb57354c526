"""xAI (Grok): OpenAI Chat Completions with a few differences (VENDORS.md §4).

- `completion_tokens` excludes reasoning: billable output = completion + reasoning tokens.
- Reasoning models (grok-3-mini, grok-4*, grok-code*) reject `stop`, `presence_penalty` and
  `frequency_penalty` (the gateway enforces stop sequences itself: stop_sequences.py);
  `reasoning_effort` is accepted only by grok-3-mini (low|high) and grok-4.3
  (none|low|medium|high), a 400 elsewhere.
- `max_tokens` is the field sent for the output limit: it is what the Vercel AI SDK's live-tested
  xAI provider sends, while `max_completion_tokens` is not documented in VENDORS.md for xAI.
- Thinking parts are not replayed: Chat Completions on xAI has no field for them.
- Errors are `{"code", "error"}` bodies (parsed by the shared `ErrorInfo`); a bad key is an
  HTTP 400 "Incorrect API key provided" (caught by the shared credential check); running out of
  credits or hitting the spending limit is a 429 that is the gateway's problem, not the client's.
"""

from __future__ import annotations

from tokenrelay import ir
from tokenrelay.vendors.openai import (
    JSON,
    ErrorInfo,
    OpenAIBatches,
    OpenAICompatible,
    effort_level,
)

_REJECTED_BY_REASONING = ("stop", "presence_penalty", "frequency_penalty")


def is_reasoning_model(model: str) -> bool:
    if "non-reasoning" in model:
        return False
    return model.startswith(("grok-3-mini", "grok-4", "grok-code"))


def reasoning_effort(cfg: ir.ThinkingConfig | None, model: str) -> str | None:
    """The `reasoning_effort` value `model` accepts for `cfg`, or None to send none."""
    if cfg is None:
        return None
    level = "none" if cfg.enabled is False else effort_level(cfg)
    if level is None:
        return None
    if model.startswith("grok-3-mini"):  # low|high; it cannot stop reasoning
        return "low" if level in ("none", "minimal", "low") else "high"
    if model.startswith("grok-4.3"):
        return {"minimal": "low", "xhigh": "high", "max": "high"}.get(level, level)
    return None


class XAIVendor(OpenAICompatible):
    name = "xai"
    max_tokens_field = "max_tokens"
    reasoning_in_completion = False

    def enforces_stop(self, model: str) -> bool:
        return not is_reasoning_model(model)  # the gateway cuts at them instead

    def adjust_for_model(self, body: JSON, req: ir.Request, model: str) -> None:
        if is_reasoning_model(model):
            for key in _REJECTED_BY_REASONING:
                body.pop(key, None)
        body.pop("reasoning_effort", None)  # a client extra the model may reject
        effort = reasoning_effort(req.thinking, model)
        if effort is not None:
            body["reasoning_effort"] = effort

    def account_exhausted(self, status: int, info: ErrorInfo) -> bool:
        text = (info.message or "").lower()
        return super().account_exhausted(status, info) or (
            status == 429 and ("credits" in text or "spending limit" in text)
        )


XAI = XAIVendor()


# xAI's Files and Batch APIs take OpenAI's shapes (a JSONL of {custom_id, method, url, body}).
XAI_BATCHES = OpenAIBatches()
