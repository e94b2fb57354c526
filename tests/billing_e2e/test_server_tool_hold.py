"""Server-side tools hold the same bound through every client format.

A tool the vendor runs itself (web search, code execution, MCP servers, ...) makes it sample
pass after pass inside one request, each pass re-reading the grown context: the hold counts
ten passes of the prompt (prompt_bound.SERVER_TOOL_PASSES), whichever API the client speaks
and however it names the tool. A prompt the body only names (Gemini `cachedContent`) is held
at the model's whole context window. Driven with the official SDKs and a key without credit:
the 402 shows the hold ("may cost up to $X") and no vendor is called.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import anthropic
import httpx
import openai
from google import genai
from google.genai import errors, types

from gateway_support import RunningGateway
from tokenrelay.ir import SERVER_TOOL_PASSES

HOLD = re.compile(r"may cost up to \$([0-9.]+)")
MODEL = "gpt-4o"  # every client format reaches it: OpenAI's own two on the fast path
PROMPT = "Summarise the news about this text. " + "lorem ipsum dolor " * 5_600  # ~100 KB
MAX_OUTPUT = 1_000
PASSES = 10  # documented in the README


def held(call: Callable[[], Any]) -> Decimal:
    """The hold a 402 names; the request must be refused."""
    try:
        call()
    except (anthropic.APIStatusError, openai.APIStatusError) as exc:
        assert exc.status_code == 402, exc
        text = str(exc)
    except errors.APIError as exc:
        assert exc.code == 402, exc
        text = str(exc)
    else:
        raise AssertionError("a key without credit was served")
    found = HOLD.search(text)
    assert found, text
    return Decimal(found.group(1))


def holds(gw: RunningGateway, key: str, model: str = MODEL) -> dict[str, Callable[[], Any]]:
    """Each client format asking for the same prompt with its own server-side tools."""
    claude = anthropic.Anthropic(api_key=key, base_url=gw.proxy, max_retries=0)
    oai = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0)
    gemini = genai.Client(api_key=key, http_options=types.HttpOptions(base_url=gw.proxy))
    user: Any = [{"role": "user", "content": PROMPT}]

    def responses(tool: Any) -> Callable[[], Any]:
        return lambda: oai.responses.create(
            model=model, input=PROMPT, tools=[tool], max_output_tokens=MAX_OUTPUT
        )

    gemini_config = types.GenerateContentConfig(
        tools=[types.Tool(google_search=types.GoogleSearch())], max_output_tokens=MAX_OUTPUT
    )
    return {
        "chat web_search_options": lambda: oai.chat.completions.create(
            model=model, messages=user, web_search_options={}, max_tokens=MAX_OUTPUT
        ),
        "responses web_search": responses({"type": "web_search"}),
        "responses file_search": responses({"type": "file_search", "vector_store_ids": ["vs_1"]}),
        "responses code_interpreter": responses(
            {"type": "code_interpreter", "container": {"type": "auto"}}
        ),
        "responses mcp": responses(
            {"type": "mcp", "server_label": "docs", "server_url": "https://mcp.example/sse"}
        ),
        "responses image_generation": responses({"type": "image_generation"}),
        "anthropic web_search": lambda: claude.messages.create(
            model=model,
            max_tokens=MAX_OUTPUT,
            messages=user,
            tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}],
        ),
        "anthropic mcp_servers": lambda: claude.messages.create(
            model=model,
            max_tokens=MAX_OUTPUT,
            messages=user,
            extra_body={
                "mcp_servers": [{"type": "url", "url": "https://mcp.example/sse", "name": "docs"}]
            },
        ),
        "gemini googleSearch": lambda: gemini.models.generate_content(
            model=model, contents=PROMPT, config=gemini_config
        ),
    }


def test_server_tools_hold_ten_passes_through_every_client_format(
    gateway: RunningGateway, broke_key: str
) -> None:
    models = httpx.get(
        gateway.proxy + "/v1/models", headers={"authorization": f"Bearer {broke_key}"}
    ).json()["data"]
    pricing = next(m for m in models if m["id"] == MODEL)["pricing"]
    per_token = Decimal(pricing["input_per_mtok"]) / 1_000_000
    found = {name: held(call) for name, call in holds(gateway, broke_key).items()}
    # Ten passes over at least the prompt's bytes, at the input rate.
    floor = PASSES * len(PROMPT) * per_token
    assert all(hold >= floor for hold in found.values()), (floor, found)
    # And the same bound whichever way it was asked: the formats' framing differs by a few
    # hundred bytes of a 100 KB prompt.
    assert max(found.values()) <= min(found.values()) * Decimal("1.02"), found
    # Without a server tool, or with a built-in tool the client runs (Codex's apply_patch),
    # the prompt is held once.
    oai = openai.OpenAI(api_key=broke_key, base_url=gateway.proxy + "/v1", max_retries=0)
    patch: Any = [{"type": "custom", "name": "apply_patch", "description": "Apply a patch"}]
    no_tools: Any = []
    for tools in (no_tools, patch):

        def ask(tools: Any = tools) -> Any:
            return oai.responses.create(
                model=MODEL, input=PROMPT, tools=tools, max_output_tokens=MAX_OUTPUT
            )

        once = held(ask)
        assert once * 5 < min(found.values())


def test_gemini_cached_content_is_held_at_the_context_window(
    gateway: RunningGateway, broke_key: str
) -> None:
    model = "gemini-2.5-flash"
    models = httpx.get(
        gateway.proxy + "/v1/models", headers={"authorization": f"Bearer {broke_key}"}
    ).json()["data"]
    entry = next(m for m in models if m["id"] == model)
    per_token = Decimal(entry["pricing"]["input_per_mtok"]) / 1_000_000
    gemini = genai.Client(api_key=broke_key, http_options=types.HttpOptions(base_url=gateway.proxy))
    config = types.GenerateContentConfig(
        cached_content="cachedContents/abc123", max_output_tokens=MAX_OUTPUT
    )
    hold = held(lambda: gemini.models.generate_content(model=model, contents="Hi", config=config))
    assert hold >= entry["context_window"] * per_token


def test_openai_cached_index_search_counts_only_where_it_is_sent(
    gateway: RunningGateway, broke_key: str
) -> None:
    """Codex's `web_search` without live access reaches OpenAI (the fast path), which may search
    its index pass after pass; a translation leaves the tool out, so it holds one pass."""
    oai = openai.OpenAI(api_key=broke_key, base_url=gateway.proxy + "/v1", max_retries=0)
    tool = {"type": "web_search", "external_web_access": False}

    def hold(model: str, tools: Any) -> Decimal:
        return held(
            lambda: oai.responses.create(
                model=model, input=PROMPT, tools=tools, max_output_tokens=MAX_OUTPUT
            )
        )

    assert hold(MODEL, [tool]) > 5 * hold(MODEL, [])
    assert hold("claude-sonnet-4-6", [tool]) == hold("claude-sonnet-4-6", [])


def test_openai_built_in_tools_are_capped_to_the_passes_held(gateway: RunningGateway) -> None:
    """OpenAI sets no limit of its own on built-in tool calls: the call carries
    `max_tool_calls` (a call per pass but the last), lowered, never raised; the response
    echoes what OpenAI was asked."""
    key = gateway.create_key("capped")
    oai = openai.OpenAI(api_key=key, base_url=gateway.proxy + "/v1", max_retries=0)
    cap = SERVER_TOOL_PASSES - 1

    def asked(**extra: Any) -> int | None:
        return oai.responses.create(
            model=MODEL, input="Hi", max_output_tokens=50, **extra
        ).max_tool_calls

    web: Any = [{"type": "web_search"}]
    assert asked(tools=web) == cap
    assert asked(tools=web, max_tool_calls=100) == cap
    assert asked(tools=web, max_tool_calls=3) == 3
    assert asked() is None  # no server tool: the body goes on as it came
