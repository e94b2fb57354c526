"""The first calls every customer makes, exactly as they write them, against a running gateway.

    export TOKENRELAY_API_KEY=sk-aic-...            # the key `make run` printed
    export TOKENRELAY_URL=http://127.0.0.1:8080     # optional: this is the default
    python3 -m uv run --frozen python examples/seed_examples.py

Needs the `anthropic` and `openai` SDKs (`pip install anthropic openai`; in the checkout, `make
run` installed them into .venv, which `uv run` uses).

Exits non-zero if any call fails or returns no text. Only the base_url differs from what a
customer pastes into their code; the model names are the ones customers use.
"""

from __future__ import annotations

import os
import sys

import anthropic
from openai import OpenAI

BASE = os.environ.get("TOKENRELAY_URL", "http://127.0.0.1:8080").rstrip("/")
KEY = os.environ["TOKENRELAY_API_KEY"]
PROMPT = [{"role": "user", "content": "Explain recursion in 3 sentences."}]
failures: list[str] = []


def check(name: str, text: str) -> None:
    ok = bool(text and text.strip())
    print(f"{'ok ' if ok else 'FAIL'} {name}: {text[:70]!r}")
    if not ok:
        failures.append(name)


claude = anthropic.Anthropic(api_key=KEY, base_url=f"{BASE}/api/proxy")
response = claude.messages.create(model="claude-sonnet-4-6", max_tokens=1024, messages=PROMPT)
check(
    "anthropic non-stream claude-sonnet-4-6",
    "".join(b.text for b in response.content if b.type == "text"),
)

with claude.messages.stream(model="claude-sonnet-4-6", max_tokens=1024, messages=PROMPT) as stream:
    check("anthropic stream claude-sonnet-4-6", "".join(stream.text_stream))

gpt = OpenAI(api_key=KEY, base_url=f"{BASE}/api/proxy/v1")
for model in ["gpt-4o", "gemini-2.5-pro", "grok-4.3", "deepseek-v4-flash", "claude-sonnet-4-6"]:
    completion = gpt.chat.completions.create(model=model, messages=PROMPT)
    check(f"openai non-stream {model}", completion.choices[0].message.content or "")

for model in ["gemini-2.5-flash", "claude-sonnet-4-6", "gpt-4o", "grok-4.3", "deepseek-v4-flash"]:
    chunks = gpt.chat.completions.create(model=model, messages=PROMPT, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    check(f"openai stream {model}", text)

for model in ["gemini-2.5-flash", "gpt-4o", "grok-4.3", "deepseek-v4-flash"]:
    with claude.messages.stream(model=model, max_tokens=1024, messages=PROMPT) as stream:
        check(f"anthropic stream {model}", "".join(stream.text_stream))

print(f"{len(failures)} failed" if failures else "all seed examples passed")
sys.exit(1 if failures else 0)
