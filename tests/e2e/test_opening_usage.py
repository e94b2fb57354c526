"""Issue 25, item 2: an Anthropic-format stream from a vendor of another format opens with the
prompt's size (Claude Code's context meter reads `message_start`), not 0; the final
`message_delta` carries the vendor's count."""

from __future__ import annotations

import anthropic
import pytest

SYSTEM = "You are a careful assistant who answers in one short sentence. " * 40


@pytest.mark.parametrize("model", ["gpt-4o", "deepseek-chat", "gemini-2.5-flash", "grok-4.3"])
def test_message_start_reports_the_prompt_size(gateway, api_key, model: str) -> None:
    client = anthropic.Anthropic(api_key=api_key, base_url=gateway.proxy, max_retries=0)
    with client.messages.stream(
        model=model,
        max_tokens=64,
        system=SYSTEM,
        messages=[{"role": "user", "content": "Say hello."}],
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    start = next(e for e in events if e.type == "message_start")
    opening = start.message.usage.input_tokens
    assert final.usage.input_tokens > 0
    # The estimate is within a small factor of the vendor's own count, never 0.
    assert final.usage.input_tokens / 3 <= opening <= final.usage.input_tokens * 3, (
        opening,
        final.usage.input_tokens,
    )
