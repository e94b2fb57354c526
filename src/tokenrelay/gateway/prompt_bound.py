"""The most prompt tokens a vendor can bill for a request as sent: the input side of the hold.

No tokenizer runs: a token never covers less than one byte (byte-level BPE and SentencePiece
with byte fallback alike), and the JSON body the vendor receives has at least as many bytes as
the text it carries, plus syntax around every message and tool that pays for the vendor's own
framing. So the upstream body's byte length bounds every text, tool definition (any field),
cached block and unknown part in it. What bytes cannot bound:

- an image costs up to a vendor-fixed maximum whatever its size: its base64 leaves the byte
  count and the vendor's per-image maximum comes in;
- a PDF or file (rendered pages, a URL, Gemini's fileUri that may name a video), or a prompt
  the body only names (Gemini `cachedContent`), can cost up to the model's context window;
- server tools run up to SERVER_TOOL_PASSES sampling passes on the vendor's side, each
  re-reading the grown context: Anthropic's server tools and `mcp_servers` (its loop stops
  with `pause_turn` after 10 iterations), OpenAI's built-in tools (Responses `web_search`,
  `file_search`, `code_interpreter`, `mcp`, `image_generation`, ...; Chat
  `web_search_options`), Gemini's (googleSearch, codeExecution, urlContext). The parsers say
  which in `req.server_tools`, so a request holds the same whichever client format it came in.

A vendor refuses a prompt beyond the context window, so one pass never bills more than that.
"""

from __future__ import annotations

from collections.abc import Iterator

from tokenrelay import ir

SERVER_TOOL_PASSES = ir.SERVER_TOOL_PASSES
# Tool use makes vendors add a system prompt of their own (Anthropic: ~350 tokens + per tool).
TOOL_PROMPT_TOKENS = 1_024


def prompt_bound(
    req: ir.Request,
    upstream_body: bytes,
    *,
    max_image_tokens: int,
    url_media_bounded: bool,
    context_window: int,
    fast_path: bool = False,
) -> int:
    tokens = len(upstream_body)
    whole_window = req.prompt_outside_body
    for part in _media(req):
        if isinstance(part, ir.Image):
            if part.data:
                data = part.data.encode()
                if data in upstream_body:  # an adapter that dropped it must not lower the bound
                    tokens -= len(data)
            elif not url_media_bounded:
                whole_window = True
            tokens += max_image_tokens
        elif part.source_type != "text":
            whole_window = True
    server_tools = req.server_tools or (fast_path and req.fast_path_server_tools)
    if req.tools or server_tools:
        tokens += TOOL_PROMPT_TOKENS
    per_pass = context_window if whole_window else min(tokens, context_window)
    return per_pass * SERVER_TOOL_PASSES if server_tools else per_pass


def _media(req: ir.Request) -> Iterator[ir.Image | ir.Document]:
    for msg in req.messages:
        for part in msg.parts:
            if isinstance(part, ir.Image | ir.Document):
                yield part
            elif isinstance(part, ir.ToolResult):
                for inner in part.content:
                    if isinstance(inner, ir.Image):
                        yield inner
