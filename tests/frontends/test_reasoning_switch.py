"""A conversation that changed vendor, converted for the one that answers next
(reasoning/cache.py `convert_for`, `needs_conversion`): what each vendor refuses in another's
turns is changed, what it accepts is left as it was; `convert_for` says when the prompt's text
changed (a stream then keeps its converted request for a cut stream's prompt estimate, not the
client's bytes)."""

from __future__ import annotations

from tokenrelay import ir
from tokenrelay.reasoning.cache import (
    FOREIGN_REASONING,
    GEMINI_FOREIGN_SIGNATURE,
    ReasoningCache,
    convert_for,
    needs_conversion,
)


def _conversation(first: list[ir.Part] | None = None) -> ir.Request:
    """A tool turn another vendor made (no reasoning of its own), then a new question."""
    call = ir.ToolCall("call_1", "Read", '{"path": "a.txt"}')
    return ir.Request(
        model="m",
        messages=[
            ir.Message("user", [ir.Text("Read a.txt")]),
            ir.Message("assistant", [*(first or []), call]),
            ir.Message("user", [ir.ToolResult("call_1", [ir.Text("secret A")])]),
            ir.Message("assistant", [ir.Text("It is A.")]),
            ir.Message("user", [ir.Text("And b.txt?")]),
        ],
        thinking=ir.ThinkingConfig(enabled=True, budget_tokens=2048),
    )


def test_gemini_gets_the_stand_in_signature_on_calls_it_did_not_make() -> None:
    req = _conversation()
    assert needs_conversion(ReasoningCache(), "gemini", req)
    assert not convert_for("gemini", req)  # a signature: the prompt's text is as it was
    call = req.messages[1].parts[0]
    assert isinstance(call, ir.ToolCall) and call.signature == GEMINI_FOREIGN_SIGNATURE
    # A call Gemini signed keeps its own signature.
    own = _conversation()
    own_call = own.messages[1].parts[0]
    assert isinstance(own_call, ir.ToolCall)
    own_call.signature = "gemini-own"
    assert not needs_conversion(ReasoningCache(), "gemini", own)
    convert_for("gemini", own)
    assert own_call.signature == "gemini-own"


def test_deepseek_gets_reasoning_text_on_tool_turns() -> None:
    req = _conversation()
    assert convert_for("deepseek", req)  # text the client did not send (a cut stream's estimate)
    assert req.messages[1].parts[0] == ir.Thinking(FOREIGN_REASONING)
    # Another vendor's visible reasoning is what DeepSeek reads instead.
    seen = _conversation([ir.Thinking("I should read a.txt", "sig-of-anthropic")])
    assert not convert_for("deepseek", seen)
    assert seen.messages[1].parts[0] == ir.Thinking("I should read a.txt", "sig-of-anthropic")
    # Thinking off: nothing to add.
    off = _conversation()
    off.thinking = ir.ThinkingConfig(enabled=False)
    convert_for("deepseek", off)
    assert isinstance(off.messages[1].parts[0], ir.ToolCall)


def test_anthropic_with_thinking_sees_unsigned_tool_use_as_text() -> None:
    req = _conversation([ir.Thinking("another vendor's reasoning")])
    assert needs_conversion(ReasoningCache(), "anthropic", req)
    assert convert_for("anthropic", req)
    said = req.messages[1].parts
    assert said == [ir.Text('[called the tool Read with {"path": "a.txt"}]')]
    assert req.messages[2].parts == [ir.Text("[the tool Read returned: secret A]")]
    # Its own signed turns stay tool use; thinking off, nothing changes either.
    signed = _conversation([ir.Thinking("mine", "sig")])
    assert not needs_conversion(ReasoningCache(), "anthropic", signed)
    assert not convert_for("anthropic", signed)
    assert isinstance(signed.messages[1].parts[1], ir.ToolCall)
    off = _conversation()
    off.thinking = None
    assert not needs_conversion(ReasoningCache(), "anthropic", off)
