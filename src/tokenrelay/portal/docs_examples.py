"""Every code example of /docs, built from the gateway's public URL and its catalog.

One section per concept (send a message, stream, reasoning, usage and cost), one tab per
client. Each example reads the key from `TOKENRELAY_API_KEY` (the "set your key" block) and
carries how it runs (`run`: python | node | sh | config) and what its output must contain
(`expect`, a regular expression): tests/docs extracts them from the rendered page and runs
each one verbatim against a gateway.
"""

# ruff: noqa: E501  (the examples are code customers copy, laid out for them, not for ruff)
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tokenrelay.portal import client_setup

KEY_ENV = "TOKENRELAY_API_KEY"
PROMPT = "Explain recursion in one sentence."


@dataclass(frozen=True, slots=True)
class Example:
    client: str  # the tab's id, the same in every section
    label: str
    run: str  # python | node | sh | config
    code: str
    expect: str = r"\S"
    path: str | None = None  # a config file's place


@dataclass(frozen=True, slots=True)
class Models:
    anthropic: str
    openai: str
    gemini: str
    reasoning: str  # its first content block may be thinking


def pick_models(models: list[dict[str, Any]]) -> Models:
    ids = [m["id"] for m in models]

    def first(preferred: tuple[str, ...], vendor: str) -> str:
        for name in preferred:
            if name in ids:
                return name
        by_vendor = [m["id"] for m in models if m.get("vendor") == vendor]
        return by_vendor[0] if by_vendor else (ids[0] if ids else "")

    thinking = [m["id"] for m in models if m.get("capabilities", {}).get("thinking")]
    reasoning = "deepseek-v4-flash" if "deepseek-v4-flash" in ids else (thinking or ids or [""])[0]
    return Models(
        first(("claude-sonnet-4-6", "claude-haiku-4-5"), "anthropic"),
        first(("gpt-4o-mini", "gpt-4o"), "openai"),
        first(("gemini-2.5-flash",), "gemini"),
        reasoning,
    )


def _py_anthropic(base: str) -> str:
    return f"""import os

import anthropic

client = anthropic.Anthropic(api_key=os.environ["{KEY_ENV}"], base_url="{base}/api/proxy")
"""


def _py_openai(base: str) -> str:
    return f"""import os

from openai import OpenAI

client = OpenAI(api_key=os.environ["{KEY_ENV}"], base_url="{base}/api/proxy/v1")
"""


def _py_gemini(base: str) -> str:
    return f"""import os

from google import genai
from google.genai import types

client = genai.Client(
    api_key=os.environ["{KEY_ENV}"],
    http_options=types.HttpOptions(base_url="{base}/api/proxy"),
)
"""


def _js_anthropic(base: str) -> str:
    return f"""import Anthropic from "@anthropic-ai/sdk";

const client = new Anthropic({{ apiKey: process.env.{KEY_ENV}, baseURL: "{base}/api/proxy" }});
"""


def _js_openai(base: str) -> str:
    return f"""import OpenAI from "openai";

const client = new OpenAI({{ apiKey: process.env.{KEY_ENV}, baseURL: "{base}/api/proxy/v1" }});
"""


def _js_gemini(base: str) -> str:
    return f"""import {{ GoogleGenAI }} from "@google/genai";

const ai = new GoogleGenAI({{
  apiKey: process.env.{KEY_ENV},
  httpOptions: {{ baseUrl: "{base}/api/proxy" }},
}});
"""


def _curl(base: str, path: str, auth: str, body: str, *, stream: bool = False) -> str:
    flags = "-sSN --fail-with-body" if stream else "-sS --fail-with-body"
    return f"""curl {flags} {base}/api/proxy{path} \\
  -H "{auth}" \\
  -H "content-type: application/json" \\
  -d '{body}'
"""


def send(base: str, m: Models) -> list[Example]:
    msg = f'[{{"role": "user", "content": "{PROMPT}"}}]'
    js_msg = f'[{{ role: "user", content: "{PROMPT}" }}]'
    return [
        Example("py-anthropic", "Python · Anthropic", "python", _py_anthropic(base) + f"""
message = client.messages.create(model="{m.anthropic}", max_tokens=1024, messages={msg})
# A reasoning model's first blocks are "thinking": print the text blocks.
print("".join(block.text for block in message.content if block.type == "text"))
"""),
        Example("py-chat", "Python · OpenAI Chat", "python", _py_openai(base) + f"""
completion = client.chat.completions.create(model="{m.openai}", messages={msg})
print(completion.choices[0].message.content)
"""),
        Example("py-responses", "Python · OpenAI Responses", "python", _py_openai(base) + f"""
response = client.responses.create(model="{m.anthropic}", input="{PROMPT}")
print(response.output_text)
"""),
        Example("py-gemini", "Python · Gemini", "python", _py_gemini(base) + f"""
response = client.models.generate_content(model="{m.gemini}", contents="{PROMPT}")
print(response.text)
"""),
        Example("js-anthropic", "Node · Anthropic", "node", _js_anthropic(base) + f"""
const message = await client.messages.create({{
  model: "{m.anthropic}",
  max_tokens: 1024,
  messages: {js_msg},
}});
// A reasoning model's first blocks are "thinking": print the text blocks.
console.log(message.content.filter((b) => b.type === "text").map((b) => b.text).join(""));
"""),
        Example("js-chat", "Node · OpenAI Chat", "node", _js_openai(base) + f"""
const completion = await client.chat.completions.create({{
  model: "{m.openai}",
  messages: {js_msg},
}});
console.log(completion.choices[0].message.content);
"""),
        Example("js-responses", "Node · OpenAI Responses", "node", _js_openai(base) + f"""
const response = await client.responses.create({{ model: "{m.anthropic}", input: "{PROMPT}" }});
console.log(response.output_text);
"""),
        Example("js-gemini", "Node · Gemini", "node", _js_gemini(base) + f"""
const response = await ai.models.generateContent({{ model: "{m.gemini}", contents: "{PROMPT}" }});
console.log(response.text);
"""),
        Example("curl", "curl", "sh", _curl(
            base, "/v1/messages", f"x-api-key: ${KEY_ENV}",
            f'{{"model": "{m.anthropic}", "max_tokens": 256, "messages": {msg}}}',
        ).replace('  -H "content-type', '  -H "anthropic-version: 2023-06-01" \\\n  -H "content-type'),
            expect=r'"type":\s*"message"'),
    ]  # fmt: skip


def stream(base: str, m: Models) -> list[Example]:
    msg = f'[{{"role": "user", "content": "{PROMPT}"}}]'
    js_msg = f'[{{ role: "user", content: "{PROMPT}" }}]'
    return [
        Example("py-anthropic", "Python · Anthropic", "python", _py_anthropic(base) + f"""
with client.messages.stream(model="{m.anthropic}", max_tokens=1024, messages={msg}) as stream:
    for text in stream.text_stream:
        print(text, end="", flush=True)
print()
"""),
        Example("py-chat", "Python · OpenAI Chat", "python", _py_openai(base) + f"""
stream = client.chat.completions.create(model="{m.openai}", messages={msg}, stream=True)
for chunk in stream:
    if chunk.choices:
        print(chunk.choices[0].delta.content or "", end="", flush=True)
print()
"""),
        Example("py-responses", "Python · OpenAI Responses", "python", _py_openai(base) + f"""
with client.responses.stream(model="{m.anthropic}", input="{PROMPT}") as stream:
    for event in stream:
        if event.type == "response.output_text.delta":
            print(event.delta, end="", flush=True)
print()
"""),
        Example("py-gemini", "Python · Gemini", "python", _py_gemini(base) + f"""
for chunk in client.models.generate_content_stream(model="{m.gemini}", contents="{PROMPT}"):
    print(chunk.text or "", end="", flush=True)
print()
"""),
        Example("js-anthropic", "Node · Anthropic", "node", _js_anthropic(base) + f"""
const stream = client.messages.stream({{ model: "{m.anthropic}", max_tokens: 1024, messages: {js_msg} }});
stream.on("text", (text) => process.stdout.write(text));
await stream.finalMessage();
console.log();
"""),
        Example("js-chat", "Node · OpenAI Chat", "node", _js_openai(base) + f"""
const stream = await client.chat.completions.create({{ model: "{m.openai}", messages: {js_msg}, stream: true }});
for await (const chunk of stream) {{
  process.stdout.write(chunk.choices[0]?.delta?.content ?? "");
}}
console.log();
"""),
        Example("js-responses", "Node · OpenAI Responses", "node", _js_openai(base) + f"""
const stream = await client.responses.create({{ model: "{m.anthropic}", input: "{PROMPT}", stream: true }});
for await (const event of stream) {{
  if (event.type === "response.output_text.delta") process.stdout.write(event.delta);
}}
console.log();
"""),
        Example("js-gemini", "Node · Gemini", "node", _js_gemini(base) + f"""
const stream = await ai.models.generateContentStream({{ model: "{m.gemini}", contents: "{PROMPT}" }});
for await (const chunk of stream) process.stdout.write(chunk.text ?? "");
console.log();
"""),
        Example("curl", "curl", "sh", _curl(
            base, "/v1/chat/completions", f"Authorization: Bearer ${KEY_ENV}",
            f'{{"model": "{m.openai}", "stream": true, "messages": {msg}}}', stream=True,
        ), expect=r"data: \[DONE\]"),
    ]  # fmt: skip


def reasoning(base: str, m: Models) -> list[Example]:
    msg = f'[{{"role": "user", "content": "{PROMPT}"}}]'
    return [
        Example("py-anthropic", "Python · Anthropic", "python", _py_anthropic(base) + f"""
message = client.messages.create(model="{m.reasoning}", max_tokens=2048, messages={msg})
for block in message.content:  # thinking first, then the answer
    if block.type == "thinking":
        print("thinking:", block.thinking)
    elif block.type == "text":
        print("answer:", block.text)
""", expect=r"answer: \S"),
        Example("py-chat", "Python · OpenAI Chat", "python", _py_openai(base) + f"""
completion = client.chat.completions.create(model="{m.reasoning}", messages={msg})
reply = completion.choices[0].message
print("thinking:", getattr(reply, "reasoning_content", None))  # DeepSeek's and xAI's field
print("answer:", reply.content)
""", expect=r"answer: \S"),
        Example("js-anthropic", "Node · Anthropic", "node", _js_anthropic(base) + f"""
const message = await client.messages.create({{
  model: "{m.reasoning}",
  max_tokens: 2048,
  messages: [{{ role: "user", content: "{PROMPT}" }}],
}});
for (const block of message.content) {{
  if (block.type === "thinking") console.log("thinking:", block.thinking);
  if (block.type === "text") console.log("answer:", block.text);
}}
""", expect=r"answer: \S"),
    ]  # fmt: skip


def usage(base: str, m: Models) -> list[Example]:
    msg = f'[{{"role": "user", "content": "{PROMPT}"}}]'
    return [
        Example("py-chat", "Python · OpenAI Chat", "python", _py_openai(base) + f"""
raw = client.chat.completions.with_raw_response.create(model="{m.openai}", messages={msg})
print("cost USD:", raw.headers["x-tokenrelay-cost-usd"])
print("usage:", raw.parse().usage)

stream = client.chat.completions.create(
    model="{m.reasoning}", messages={msg}, stream=True, stream_options={{"include_usage": True}}
)
for chunk in stream:
    if chunk.usage:  # the last chunk; some vendors send text on it too
        print("usage:", chunk.usage)  # includes cost_usd
""", expect=r"(?s)cost USD: \d.*usage:.*usage:.*cost_usd"),
        Example("py-anthropic", "Python · Anthropic", "python", _py_anthropic(base) + f"""
raw = client.messages.with_raw_response.create(model="{m.anthropic}", max_tokens=256, messages={msg})
print("cost USD:", raw.headers["x-tokenrelay-cost-usd"])
print("usage:", raw.parse().usage)
""", expect=r"cost USD: \d"),
        Example("curl", "curl", "sh", _curl(
            base, "/v1/chat/completions", f"Authorization: Bearer ${KEY_ENV}",
            f'{{"model": "{m.openai}", "messages": {msg}}}',
        ).replace("curl -sS", "curl -sS -D -"), expect=r"x-tokenrelay-cost-usd: \d"),
    ]  # fmt: skip


def coding_clis(base: str, m: Models, key: str, provider: str) -> list[Example]:
    """Each CLI's set-up (client_setup: what tests/clients runs the real CLIs with);
    `provider` names the gateway in Codex's config (a TOML bare key: the brand's slug)."""

    def exports(env: dict[str, str]) -> str:
        return "\n".join(f"export {k}={v}" for k, v in env.items())

    codex = client_setup.codex_config(base, m.anthropic, provider)
    return [
        Example("claude-code", "Claude Code", "config", exports(
            client_setup.claude_code_env(base, key)) + f'\nclaude --model {m.openai}\n'),
        Example("codex", "Codex CLI", "config", codex, path="~/.codex/config.toml"),
        Example("codex", "Codex CLI", "config", exports(client_setup.codex_env(key))
                + '\ncodex exec "Explain this repository"\n'),
        Example("gemini-cli", "Gemini CLI", "config", client_setup.gemini_settings_json(),
                path="~/.gemini/settings.json"),
        Example("gemini-cli", "Gemini CLI", "config", exports(client_setup.gemini_env(base, key))
                + f'\ngemini -m {m.anthropic} -p "Explain this repository"\n'),
    ]  # fmt: skip


SECTIONS: tuple[tuple[str, str, Callable[[str, Models], list[Example]]], ...] = (
    ("send", "Send a message", send),
    ("stream", "Stream the answer", stream),
    ("reasoning", "Reasoning models", reasoning),
    ("usage", "Usage and cost", usage),
)


def tabbed(examples: list[Example]) -> list[tuple[str, str, list[Example]]]:
    """Examples grouped by client tab, in order: (client, label, examples)."""
    groups: dict[str, tuple[str, list[Example]]] = {}
    for ex in examples:
        groups.setdefault(ex.client, (ex.label, []))[1].append(ex)
    return [(client, label, exs) for client, (label, exs) in groups.items()]
