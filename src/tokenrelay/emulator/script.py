"""Decides, deterministically from a vendor-neutral summary of the request, what to answer.

Prompt triggers (double-bracket markers anywhere in the last user turn):
  [[words:N]] [[delay:MS]] [[first-delay:MS]] [[error:STATUS]] [[midstream-error]] [[cut]]
  [[refuse]] [[max]] [[parallel]] [[cache]] [[keepalive]] [[stall:MS]]

[[stall:MS]] streams the first few words, then stays silent for MS (default 600000) with the
connection open, then drops it: a vendor hanging mid-stream.

Tools, like a model would: the tool the client forces; else the tool the prompt names (its
name, or the words of it: "Read notes.txt", "weather in Paris" for get_weather); else, for a
prompt that names a file path, the tool that reads files (or runs a shell command: `cat <path>`),
with the path as its argument; else, when the client requires some tool, the first one;
otherwise no tool. A turn that carries tool results
is answered from them ("Tool X returned: ..."); a turn that hands over a compacted conversation's
summary (a gateway's or Codex's handoff) is answered without a tool, as a model goes on from its
summary instead of redoing the work it lists; a turn that asks for a handoff summary (a
compaction) is answered with a short one (its first words of the tool results, if any).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from typing import Any

from tokenrelay.emulator import tokens

_MARKER = re.compile(r"\[\[([a-z-]+)(?::([^\]]*))?\]\]")
_WORD = re.compile(r"[A-Za-z0-9']+")
# Context a coding agent adds to the user's turn (Claude Code's reminders): not the user's ask.
_REMINDER = re.compile(r"<system-reminder>.*?</system-reminder>", re.S)
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_SUMMARY_ASK = re.compile(r"handoff summary", re.I)
_SUMMARY_WORDS = 40
_HANDOFF = re.compile(r"conversation were compacted|produced a summary of its thinking", re.I)
# A file path: has a slash, or a name of 2+ characters with an extension that starts with a
# letter ("notes.txt", "src/app.py"; not "e.g" or "4.3").
_PATH = re.compile(
    r"(?<![\w/.:-])(?:~?/?[\w.-]+/)*[\w-][\w.-]+\.[A-Za-z][A-Za-z0-9]{0,7}\b|(?<![\w:/])/[\w.-]+(?:/[\w.-]+)+"
)
_NAME_PART = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")  # get_weather, WebSearch, TaskGet
# Words of a tool name a prompt would not say ("GetWeatherArgs" is named by "weather").
_FILLER = frozenset({"get", "args", "arguments", "params", "tool", "fn", "func", "function"})
_READ_NAMES = ("read",)  # Read, read_file (not view_image: it takes a path too)
_SHELL_NAMES = ("shell", "bash", "exec", "command", "terminal")
_PATH_KEYS = ("path", "file")
_COMMAND_KEYS = ("command", "cmd")
_VOCAB = (
    "alpha",
    "bright",
    "calm",
    "delta",
    "echo",
    "fable",
    "gentle",
    "harbor",
    "island",
    "jasper",
    "kettle",
    "lantern",
    "meadow",
    "nimble",
    "orbit",
    "pebble",
    "quartz",
    "river",
    "silver",
    "timber",
    "umbra",
    "velvet",
    "willow",
    "yonder",
    "zephyr",
)
_FAIL_AFTER = 3  # words streamed before [[midstream-error]] / [[cut]] strike
_MAX_WORDS = 8192  # cap for [[max]] / [[words:N]] so a huge max_tokens cannot stall us


@dataclass(slots=True)
class Turn:
    """What the emulator needs to know about a request, whatever the vendor."""

    model: str
    text: str  # trigger text: every text part of the last user turn, joined
    tool_results: list[tuple[str, str]] = field(default_factory=list)  # (tool name, content)
    tools: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (name, JSON schema)
    tool_mode: str = "auto"  # auto | any | none
    forced_tool: str | None = None
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    reasoning: bool = False
    parallel_allowed: bool = True
    preamble: str = ""  # text some vendors say before calling a tool


@dataclass(slots=True)
class ToolCall:
    name: str
    args: dict[str, Any]
    tokens: int


@dataclass(slots=True)
class Plan:
    words: list[str] = field(default_factory=list)  # text pieces, one per stream chunk
    reasoning: list[str] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    stop: str = "end"  # end | max_tokens | stop_sequence | tool_use | refusal
    stop_sequence: str | None = None
    error: int | None = None
    midstream_error: bool = False
    cut: bool = False  # also set by [[stall]]: the stream stops after fail_after words
    stall: float = 0.0  # seconds of silence before the connection drops ([[stall:MS]])
    delay: float = 0.0
    first_delay: float = 0.0
    cache: bool = False
    keepalive: bool = False

    @property
    def text(self) -> str:
        return "".join(self.words)

    @property
    def reasoning_text(self) -> str:
        return "".join(self.reasoning)

    @property
    def visible_tokens(self) -> int:
        return len(self.words) + sum(c.tokens for c in self.tool_calls)

    @property
    def fail_after(self) -> int:
        return min(_FAIL_AFTER, len(self.words))


def markers(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2) or "" for m in _MARKER.finditer(text)}


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _pieces(words: list[str]) -> list[str]:
    """Words → stream pieces: each but the first carries its leading space."""
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def prompt_words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(_MARKER.sub(" ", text))]


def default_reply(model: str, text: str) -> list[str]:
    """15-25 words that depend on the prompt: an echo of it, then seeded filler."""
    seed = zlib.crc32(text.encode())
    total = 15 + seed % 11
    words = ["Emulated", model, "reply:", *prompt_words(text)[:8]]
    i = 0
    while len(words) < total:
        words.append(_VOCAB[(seed >> (i % 24) ^ i * 7) % len(_VOCAB)])
        i += 1
    words = words[:total]
    words[-1] += "."
    return _pieces(words)


def reasoning_for(text: str) -> list[str]:
    head = prompt_words(text)[:6] or ["nothing"]
    return _pieces(
        [
            "Considering",
            "the",
            "request",
            "about",
            *head,
            "-",
            "I",
            "will",
            "answer",
            "it",
            "briefly.",
        ]
    )


def without_reminders(text: str) -> str:
    """`text` less the context a coding agent adds (Claude Code's <system-reminder> blocks)."""
    return _REMINDER.sub("", text)


def _tool_result_reply(results: list[tuple[str, str]]) -> list[str]:
    text = " ".join(f"Tool {name} returned: {content}." for name, content in results)
    return _pieces(text.split())


def example_value(schema: Any, key: str = "", variant: int = 0) -> Any:
    """A value that satisfies the usual JSON-schema shapes, deterministically."""
    if not isinstance(schema, dict):
        return "value"
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for alt in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(alt), list) and schema[alt]:
            return example_value(schema[alt][0], key, variant)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    kind = str(kind).lower()
    if kind == "object":
        props = schema.get("properties")
        props = props if isinstance(props, dict) else {}
        # A malformed schema (a client's, passed on) gets an example, never a crash.
        listed = schema.get("required")
        required = (
            [k for k in listed if isinstance(k, str) and k in props]
            if isinstance(listed, list)
            else []
        )
        keys = required or list(props)
        return {k: example_value(props[k], k, variant) for k in keys}
    if kind == "array":
        return [example_value(schema.get("items"), key, variant)] if schema.get("items") else []
    if kind in ("integer", "number"):
        return 1 + variant
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if any(s in key.lower() for s in ("loc", "city", "place", "where", "country", "town")):
        return ("Paris", "London")[variant % 2]
    return "value" if variant == 0 else f"value{variant + 1}"


def _ask(text: str) -> str:
    return _MARKER.sub(" ", _REMINDER.sub(" ", text))


def _props(schema: Any) -> dict[str, Any]:
    props = schema.get("properties") if isinstance(schema, dict) else None
    return props if isinstance(props, dict) else {}


def _takes(schema: Any, keys: tuple[str, ...]) -> bool:
    return any(k in name.lower() for name in _props(schema) for k in keys)


def _file_tool(tools: list[tuple[str, dict[str, Any]]]) -> tuple[str, dict[str, Any]] | None:
    """The tool that reads a file: one named for reading that takes a path, else one that runs
    a shell command."""
    for name, schema in tools:
        if any(k in name.lower() for k in _READ_NAMES) and _takes(schema, _PATH_KEYS):
            return name, schema
    for name, schema in tools:
        if any(k in name.lower() for k in _SHELL_NAMES) and _takes(schema, _COMMAND_KEYS):
            return name, schema
    return None


def _named(ask: str, tools: dict[str, Any]) -> list[str]:
    """Tools the prompt names, in the order it names them: the exact name ("Read",
    "get_weather"), or every word of it but filler ("weather", "web search")."""
    words = [w.lower() for w in _WORD.findall(ask)]
    exact = set(_NAME.findall(ask)) | {w.rstrip(".") for w in _NAME.findall(ask)}
    found: list[tuple[int, str]] = []
    for name in tools:
        parts = [w.lower() for w in _NAME_PART.findall(name)]
        parts = [p for p in parts if p not in _FILLER] if len(parts) > 1 else parts
        if name in exact or (parts and all(p in words for p in parts)):
            first = min((words.index(p) for p in parts if p in words), default=len(words))
            found.append((first, name))
    return [name for _, name in sorted(found)]


def _asked_path(ask: str) -> str | None:
    """The file the prompt asks about: the last file name with an extension ("notes.txt"),
    else the last bare path. Agents put their working directory in the turn before the ask
    (Gemini CLI's session context): a directory is not what a read is asked for."""
    found = [m.group(0) for m in _PATH.finditer(ask)]
    files = [p for p in found if "." in p.rsplit("/", 1)[-1]]
    chosen = files or found
    return chosen[-1] if chosen else None


def _choose(turn: Turn) -> tuple[list[tuple[str, dict[str, Any]]], str | None]:
    """The tools the turn may call, best first ([] = none), and the file path the prompt
    names, if any. [[parallel]] calls the first two (or the first one twice)."""
    by_name = dict(turn.tools)
    if turn.forced_tool and turn.forced_tool in by_name:
        return [(turn.forced_tool, by_name[turn.forced_tool])], None
    ask = _ask(turn.text)
    path = _asked_path(ask)
    named = _named(ask, by_name)
    if named:
        return [(n, by_name[n]) for n in named], path
    if path is not None:
        tool = _file_tool(turn.tools)
        if tool is not None:
            return [tool], path
    if turn.tool_mode == "any":
        return list(turn.tools), None
    return [], None


def _arguments(schema: Any, variant: int, path: str | None) -> dict[str, Any]:
    args = example_value(schema or {"type": "object"}, variant=variant)
    if not isinstance(args, dict):
        return {}
    if path is None:
        return args
    # The path the prompt names goes where the tool takes a path (or a command that reads it),
    # whether or not the schema requires that field.
    for key, prop in _props(schema).items():
        kind = prop.get("type") if isinstance(prop, dict) else None
        lower = key.lower()
        if any(k in lower for k in _PATH_KEYS) and kind in (None, "string"):
            args[key] = path
        elif any(k in lower for k in _COMMAND_KEYS):
            args[key] = ["cat", path] if kind == "array" else f"cat {path}"
    return args


def _tool_calls(turn: Turn, parallel: bool) -> list[ToolCall]:
    candidates, path = _choose(turn)
    if not candidates:
        return []
    chosen = candidates[:1]
    if parallel and turn.parallel_allowed:
        chosen.append(candidates[1] if len(candidates) > 1 else candidates[0])
    calls = []
    for i, (name, schema) in enumerate(chosen):
        variant = i if chosen[0][0] == name else 0
        args = _arguments(schema, variant, path)
        calls.append(ToolCall(name, args, tokens.count_json(args)))
    return calls


def plan(turn: Turn) -> Plan:
    m = markers(turn.text)
    p = Plan(
        delay=_int(m.get("delay"), 0) / 1000,
        first_delay=_int(m.get("first-delay"), 0) / 1000,
        cache="cache" in m,
        keepalive="keepalive" in m,
        midstream_error="midstream-error" in m,
        cut="cut" in m or "stall" in m,
        stall=_int(m.get("stall") or None, 600_000) / 1000 if "stall" in m else 0.0,
    )
    if "error" in m:
        p.error = _int(m["error"], 500)
        return p
    if "refuse" in m:
        p.stop = "refusal"
        return p
    if turn.reasoning:
        p.reasoning = reasoning_for(turn.text)

    wants_tools = (
        turn.tools
        and turn.tool_mode != "none"
        and not turn.tool_results
        and "max" not in m
        and not _HANDOFF.search(turn.text)
        and not _SUMMARY_ASK.search(turn.text)
    )
    if wants_tools:
        p.tool_calls = _tool_calls(turn, "parallel" in m)
    if p.tool_calls:
        p.words = _pieces(turn.preamble.split()) if turn.preamble else []
        p.stop = "tool_use"
        return p

    if _SUMMARY_ASK.search(turn.text):
        done = " ".join(f"{name}: {content}" for name, content in turn.tool_results)
        words = _pieces(("Summary of the work so far. " + done).split()[:_SUMMARY_WORDS])
    elif turn.tool_results:
        words = _tool_result_reply(turn.tool_results)
    elif "words" in m:
        n = min(max(_int(m["words"], 0), 0), _MAX_WORDS)
        words = [f" w{i}" for i in range(1, n + 1)]
    else:
        words = default_reply(turn.model, _REMINDER.sub("", turn.text))

    if "max" in m:
        target = turn.max_tokens if turn.max_tokens is not None else len(words)
        target = min(target, _MAX_WORDS)
        base = words or [" w"]
        words = [
            base[i % len(base)] if i < len(base) else " " + base[i % len(base)].strip()
            for i in range(target)
        ]
        p.words, p.stop = words, "max_tokens"
        return p

    for i, piece in enumerate(words):
        hit = next((s for s in turn.stop if s and s.strip() and s.strip() in piece), None)
        if hit is not None:
            words, p.stop, p.stop_sequence = words[:i], "stop_sequence", hit
            break
    if turn.max_tokens is not None and len(words) > turn.max_tokens:
        words, p.stop, p.stop_sequence = words[: max(turn.max_tokens, 0)], "max_tokens", None
    p.words = words
    return p


def error_status_for_midstream(vendor: str) -> int:
    """Status used when [[midstream-error]] hits a non-streaming request."""
    return {"anthropic": 529, "gemini": 503, "deepseek": 503}.get(vendor, 500)
