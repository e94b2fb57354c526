"""The rest of what customers call, per vendor, through the official SDKs: token counting, the
model list, images, reasoning, and the request shape Claude Code sends."""

from __future__ import annotations

import base64

import anthropic
import openai
import pytest

# One model per vendor (the names customers use).
PER_VENDOR = ["claude-sonnet-4-6", "gpt-4o", "gemini-2.5-flash", "grok-4.3", "deepseek-chat"]
# A 1×1 PNG.
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360f8cf00000301010018dd8db40000000049454e44ae426082"
    )
).decode()
IMAGE_URL = (
    "https://upload.wikimedia.org/wikipedia/commons/4/47/PNG_transparency_demonstration_1.png"
)


@pytest.fixture(scope="module")
def claude(gateway, api_key) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=api_key, base_url=gateway.proxy, max_retries=0)


@pytest.fixture(scope="module")
def gpt(gateway, api_key) -> openai.OpenAI:
    return openai.OpenAI(api_key=api_key, base_url=gateway.proxy + "/v1", max_retries=0)


@pytest.mark.parametrize("model", PER_VENDOR)
def test_count_tokens_on_every_vendor(claude: anthropic.Anthropic, model: str) -> None:
    short = claude.messages.count_tokens(
        model=model, messages=[{"role": "user", "content": "Hello"}]
    )
    longer = claude.messages.with_raw_response.count_tokens(
        model=model,
        system="You are a careful assistant. " * 20,
        messages=[{"role": "user", "content": "Explain recursion in three sentences, please."}],
        tools=[
            {
                "name": "get_weather",
                "description": "Weather for a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            }
        ],
    )
    assert longer.headers["x-tokenrelay-count"] in ("exact", "estimated")
    assert 0 < short.input_tokens < longer.parse().input_tokens


def test_models_list_through_both_sdks(gpt: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    listed = {m.id: m for m in gpt.models.list()}
    for name in ("claude-sonnet-4-6", "gpt-4o", "gemini-2.5-pro", "deepseek-v4-flash"):
        assert name in listed, name
    extra = listed["gpt-4o"].model_extra or {}
    assert extra["vendor"] == "openai" and "input_per_mtok" in extra["pricing"]
    anthropic_ids = {m.id for m in claude.models.list(limit=1000)}
    assert "claude-sonnet-4-6" in anthropic_ids and "gemini-2.5-flash" in anthropic_ids


@pytest.mark.parametrize("model", PER_VENDOR)
def test_images_base64_and_url_through_both_apis(
    claude: anthropic.Anthropic, gpt: openai.OpenAI, model: str
) -> None:
    msg = claude.messages.create(
        model=model,
        max_tokens=200,
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                    {"type": "image", "source": {"type": "url", "url": IMAGE_URL}},
                    {"type": "text", "text": "Describe both images."},
                ],
            }
        ],
    )
    assert msg.content[0].type == "text" and msg.content[0].text
    completion = gpt.chat.completions.create(
        model=model,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "image_url", "image_url": {"url": IMAGE_URL}},
                    {"type": "text", "text": "Describe both images."},
                ],
            }
        ],
    )
    assert completion.choices[0].message.content


@pytest.mark.parametrize("model", ["claude-sonnet-4-6", "gemini-2.5-pro", "deepseek-reasoner"])
def test_reasoning_reaches_both_apis(
    claude: anthropic.Anthropic, gpt: openai.OpenAI, model: str
) -> None:
    msg = claude.messages.create(
        model=model,
        max_tokens=4000,
        thinking={"type": "enabled", "budget_tokens": 2000},
        messages=[{"role": "user", "content": "Think, then answer: what is 17 * 23?"}],
    )
    kinds = [b.type for b in msg.content]
    assert kinds[0] == "thinking" and "text" in kinds, kinds
    assert msg.content[0].thinking  # type: ignore[union-attr]

    completion = gpt.chat.completions.create(
        model=model,
        reasoning_effort="medium",
        messages=[{"role": "user", "content": "Think, then answer: what is 17 * 23?"}],
    )
    message = completion.choices[0].message
    assert message.content and (message.model_extra or {}).get("reasoning_content")
    assert completion.usage is not None
    if not model.startswith("claude"):  # Anthropic counts thinking in output_tokens, not apart
        details = completion.usage.completion_tokens_details
        assert details is not None and (details.reasoning_tokens or 0) > 0


@pytest.mark.parametrize("model", PER_VENDOR)
def test_claude_code_request_shape_works_on_every_model(
    claude: anthropic.Anthropic, model: str
) -> None:
    """What Claude Code sends: ?beta=true, anthropic-beta, cached system blocks, metadata,
    tools, streaming — pointed at any model."""
    with claude.messages.stream(
        model=model,
        max_tokens=2000,
        system=[
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}
        ],
        metadata={"user_id": "user_abc_account_x_session_y"},
        tools=[
            {
                "name": "Bash",
                "description": "Run a shell command",
                "input_schema": {
                    "type": "object",
                    "properties": {"command": {"type": "string"}},
                    "required": ["command"],
                },
            }
        ],
        messages=[{"role": "user", "content": [{"type": "text", "text": "List the files."}]}],
        extra_headers={"anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14"},
        extra_query={"beta": "true"},
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason in ("end_turn", "tool_use")
    assert final.content
