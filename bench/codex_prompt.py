"""A coding agent's request at a chosen size, the same every run: what Codex CLI and Claude Code
send (20-60 KB of JSON: a long system prompt, a dozen tools with JSON schemas, the session's
history), for measuring what a live stream keeps of its request (`bench.tails --prompt-kb`).

Built from the recorded Codex request in tests/fixtures/codex (its instructions, its function
tools), recast as a Chat Completions or Anthropic Messages body, with history turns of a
tool-using session added until the body reaches the size asked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parent.parent / "tests/fixtures/codex/request_tool_turn.json"


def _recorded() -> tuple[str, list[dict[str, Any]]]:
    """The recorded request's developer instructions and its function tools."""
    body = json.loads(FIXTURE.read_text())["body"]
    system = "\n\n".join(
        part["text"]
        for item in body["input"]
        if item.get("role") == "developer"
        for part in item["content"]
    )
    tools = [t for t in body["tools"] if t["type"] == "function"]
    return system, tools


def _turn(n: int) -> tuple[str, str, str, str]:
    """History turn `n`: the user's ask, the command the model ran, its output, the answer."""
    ask = f"Step {n}: look at src/module_{n}.py and tell me what `handler_{n}` returns."
    cmd = json.dumps({"cmd": f"sed -n 1,40p src/module_{n}.py", "max_output_tokens": 2000})
    output = "\n".join(
        f"{i:4d}  def handler_{n}_{i}(request, context):  # returns the parsed payload {i * n}"
        for i in range(1, 25)
    )
    answer = f"`handler_{n}` returns the parsed payload of the request (line {n % 40 + 1})."
    return ask, cmd, output, answer


def _openai(system: str, tools: list[dict[str, Any]], turns: int, last: str) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for n in range(turns):
        ask, cmd, output, answer = _turn(n)
        fn = {"name": "exec_command", "arguments": cmd}
        call = {"id": f"call_{n}", "type": "function", "function": fn}
        messages += [
            {"role": "user", "content": ask},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": f"call_{n}", "content": output},
            {"role": "assistant", "content": answer},
        ]
    messages.append({"role": "user", "content": last})
    fns = [
        {"type": "function", "function": {k: t[k] for k in ("name", "description", "parameters")}}
        for t in tools
    ]
    return {"messages": messages, "tools": fns}


def _anthropic(system: str, tools: list[dict[str, Any]], turns: int, last: str) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    for n in range(turns):
        ask, cmd, output, answer = _turn(n)
        use = {"type": "tool_use", "id": f"toolu_{n}", "name": "exec_command"}
        result = {"type": "tool_result", "tool_use_id": f"toolu_{n}", "content": output}
        messages += [
            {"role": "user", "content": ask},
            {"role": "assistant", "content": [{**use, "input": json.loads(cmd)}]},
            {"role": "user", "content": [result]},
            {"role": "assistant", "content": answer},
        ]
    messages.append({"role": "user", "content": last})
    schemas = [
        {"name": t["name"], "description": t["description"], "input_schema": t["parameters"]}
        for t in tools
    ]
    return {"system": system, "messages": messages, "tools": schemas}


def body(fmt: str, model: str, kb: int, prompt: str, stream: bool) -> str:
    """A Chat Completions ("openai") or Anthropic Messages body of about `kb` KB (never less:
    history turns are added until it is reached; a size below the instructions and tools
    alone cuts the instructions, down to the tools' ~7 KB) whose last user message is
    `prompt`."""
    if fmt not in ("openai", "anthropic"):
        raise ValueError(f"--prompt-kb: no {fmt} body (openai and anthropic formats only)")
    build = _openai if fmt == "openai" else _anthropic
    system, tools = _recorded()
    want = kb * 1024

    def dumped(system: str, turns: int) -> str:
        msg = {"model": model, "max_tokens": 256, **build(system, tools, turns, prompt)}
        if stream:
            msg["stream"] = True
        return json.dumps(msg, separators=(",", ":"))

    text = dumped(system, 0)
    if len(text) > want:  # the instructions cut to fit
        return dumped(system[: max(len(system) - (len(text) - want), 0)], 0)
    turns = 0
    while len(text) < want:
        turns += 1
        text = dumped(system, turns)
    return text
