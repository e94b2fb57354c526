"""The docs page a customer lands on: copy-paste examples for both SDKs, the model list."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

if TYPE_CHECKING:
    from tokenrelay.relay import Relay

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>tokenrelay</title><meta name="viewport" content="width=device-width,initial-scale=1">
<style>body{{font:15px/1.5 system-ui,sans-serif;max-width:860px;margin:2rem auto;padding:0 1rem}}
pre{{background:#f4f4f6;padding:.8rem;overflow-x:auto}}table{{border-collapse:collapse}}
td,th{{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:left}}</style></head><body>
<h1>tokenrelay</h1>
<p>One endpoint for Claude, GPT, Gemini, Grok and DeepSeek, through the Anthropic Messages API
or the OpenAI Chat Completions API. Swap the model name; keep the call shape.</p>
<h2>Anthropic SDK</h2><pre>import anthropic
client = anthropic.Anthropic(api_key="sk-aic-…", base_url="{base}/api/proxy")
msg = client.messages.create(model="claude-sonnet-4-6", max_tokens=1024,
    messages=[{{"role": "user", "content": "Hello"}}])
print(msg.content[0].text)</pre>
<h2>OpenAI SDK</h2><pre>from openai import OpenAI
client = OpenAI(api_key="sk-aic-…", base_url="{base}/api/proxy/v1")
for chunk in client.chat.completions.create(model="gemini-2.5-flash", stream=True,
        messages=[{{"role": "user", "content": "Hello"}}]):
    print(chunk.choices[0].delta.content or "", end="") if chunk.choices else None</pre>
<h2>Models</h2><table><tr><th>model</th><th>vendor</th><th>$ in / 1M</th><th>$ out / 1M</th>
<th>aliases</th></tr>{rows}</table></body></html>"""


def web_routes(relay: Relay) -> list[Route]:
    async def index(request: Request) -> HTMLResponse:
        listing = relay.catalog.to_openai_list(relay.upstreams.emulated)
        rows = "".join(_row(m) for m in listing["data"])
        base = str(request.base_url).rstrip("/")
        return HTMLResponse(PAGE.format(base=html.escape(base), rows=rows))

    return [Route("/", index)]


def _row(m: dict[str, Any]) -> str:
    pricing = m.get("pricing", {})
    cells = [
        m["id"] + (" (emulated)" if m.get("emulated") else ""),
        m.get("vendor", ""),
        str(pricing.get("input_per_mtok", "")),
        str(pricing.get("output_per_mtok", "")),
        ", ".join(m.get("aliases", [])),
    ]
    return "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
