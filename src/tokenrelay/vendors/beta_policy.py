"""What each vendor does with a client's `anthropic-beta` flags and with body fields it has no
model for: forward them, strip them, or translate them into the vendor's own terms.

The one table of it: the adapters ask `beta_headers` (Anthropic) or `report_dropped` (the
others) when they build a call, and `/compatibility` publishes `document()`. A flag this table
does not know is handled the same way every time — forwarded to Anthropic, which is the
authority on its own betas and refuses what it does not take; stripped for every other vendor —
and logged (logger `tokenrelay.vendors.beta_policy`, once per vendor and flag per process, so a
client that sends it on every request does not flood the log).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Literal

from tokenrelay import ir

Action = Literal["forward", "strip", "translate"]
BETA_HEADER = "anthropic-beta"
ANTHROPIC = "anthropic"

log = logging.getLogger(__name__)

# flag -> (what it enables, what a non-Anthropic vendor gets: translate | strip, why)
FLAGS: dict[str, tuple[str, Action, str]] = {
    "claude-code-20250219": (
        "Claude Code's identity",
        "strip",
        "nothing to enable on another vendor",
    ),
    "interleaved-thinking-2025-05-14": (
        "thinking between tool calls",
        "translate",
        "the vendor's reasoning is requested and carried across tool turns (reasoning/cache.py)",
    ),
    "fine-grained-tool-streaming-2025-05-14": (
        "tool arguments streamed unbuffered",
        "translate",
        "arguments are streamed as input_json_delta as fast as the vendor streams them",
    ),
    "effort-2025-11-24": (
        "output_config.effort",
        "translate",
        "becomes the vendor's reasoning effort or thinking budget",
    ),
    "structured-outputs-2025-11-13": (
        "output_config.format (JSON schema)",
        "translate",
        "becomes the vendor's JSON-schema response format",
    ),
    "prompt-caching-2024-07-31": (
        "cache_control breakpoints",
        "strip",
        "breakpoints are dropped; the vendor's automatic caching applies and is billed as "
        "cache reads",
    ),
    "extended-cache-ttl-2025-04-11": (
        "1-hour cache writes",
        "strip",
        "no cache writes to extend",
    ),
    "token-efficient-tools-2025-02-19": (
        "compact tool-call encoding",
        "strip",
        "an Anthropic tokenizer matter",
    ),
    "context-1m-2025-08-07": (
        "a 1M-token context window",
        "strip",
        "the vendor model's own context window applies",
    ),
    "output-128k-2025-02-19": (
        "128k output tokens",
        "strip",
        "the vendor model's own output limit applies",
    ),
    "context-management-2025-06-27": (
        "server-side context editing",
        "strip",
        "the edits are Anthropic's; the whole conversation is sent",
    ),
    "files-api-2025-04-14": (
        "file ids in content blocks",
        "strip",
        "another vendor cannot read an Anthropic file id: such a block is refused",
    ),
    "code-execution-2025-05-22": ("the code execution tool", "strip", "an Anthropic server tool"),
    "web-fetch-2025-09-10": ("the web fetch tool", "strip", "an Anthropic server tool"),
    "mcp-client-2025-04-04": ("mcp_servers", "strip", "Anthropic calls the MCP servers itself"),
    "computer-use-2025-01-24": ("the computer use tool", "strip", "an Anthropic server tool"),
    "oauth-2025-04-20": ("OAuth tokens as credentials", "strip", "the gateway's key is used"),
}
UNKNOWN_FLAG: dict[bool, Action] = {True: "forward", False: "strip"}  # by: is it Anthropic
# Body fields the client API has but the IR does not model (`ir.Request.extras`): forwarded
# whole to a vendor that speaks the client's own format, stripped for any other.
UNKNOWN_FIELDS_NOTE = (
    "forwarded to a vendor that speaks the client's own API (the same wire), stripped when the "
    "request is translated for another vendor; each stripped field is logged"
)

_reported: set[tuple[str, str]] = set()


def flags(headers: Mapping[str, str]) -> list[str]:
    """The client's beta flags, in order (the header is comma-separated)."""
    raw = headers.get(BETA_HEADER, "")
    return [f.strip() for f in raw.split(",") if f.strip()]


def action(vendor: str, flag: str) -> Action:
    if vendor == ANTHROPIC:
        return "forward"
    known = FLAGS.get(flag)
    return known[1] if known is not None else UNKNOWN_FLAG[False]


def _report(vendor: str, what: str, names: list[str]) -> None:
    fresh = [n for n in names if (vendor, what + n) not in _reported]
    if fresh:
        _reported.update((vendor, what + n) for n in fresh)
        log.warning("%s: %s %s", vendor, what, ", ".join(fresh))


def beta_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Anthropic's call gets the client's anthropic-* headers as sent; unknown flags are
    noted (Anthropic answers for them)."""
    unknown = [f for f in flags(headers) if f not in FLAGS]
    if unknown:
        _report(ANTHROPIC, "unknown anthropic-beta flags forwarded:", unknown)
    return dict(headers)


def report_dropped(vendor: str, speaks: str, req: ir.Request) -> None:
    """For a vendor other than Anthropic: its call never carries anthropic-* headers; what is
    stripped of them (unknown flags, and flags with nothing to translate to) and the body
    fields of another API that are dropped (`speaks`: the extras format it forwards) are
    logged."""
    stripped = [f for f in flags(req.passthrough_headers) if action(vendor, f) == "strip"]
    unknown = [f for f in stripped if f not in FLAGS]
    if unknown:
        _report(vendor, "unknown anthropic-beta flags stripped:", unknown)
    if req.extras and req.extras_format != speaks:
        _report(vendor, f"{req.extras_format} fields stripped:", sorted(req.extras))


def document(vendors: list[str]) -> dict[str, object]:
    """The published table: per flag, per vendor, the action and why."""
    return {
        "flags": {
            flag: {
                "enables": enables,
                "vendors": {
                    v: {
                        "action": action(v, flag),
                        "note": "sent as the client sent it" if v == ANTHROPIC else note,
                    }
                    for v in vendors
                },
            }
            for flag, (enables, _, note) in FLAGS.items()
        },
        "unknown_flags": {
            v: {
                "action": UNKNOWN_FLAG[v == ANTHROPIC],
                "note": "logged; Anthropic refuses a flag it does not take"
                if v == ANTHROPIC
                else "logged; never sent",
            }
            for v in vendors
        },
        "unknown_fields": UNKNOWN_FIELDS_NOTE,
    }
