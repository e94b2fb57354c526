"""The gateway's own stop-sequence filter over IR events: whatever way the text is split into
deltas, the client gets the text up to the first stop sequence, then the block's end and a
`stop_sequence` finish, and nothing after."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from tokenrelay import ir
from tokenrelay.gateway.stop_sequences import StopFilter


def _split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in itertools.pairwise(points)]


def _run(text: str, stops: list[str], cuts: list[int], batch: int) -> list[ir.Event]:
    events: list[ir.Event] = [ir.Start("id", "m"), ir.BlockStart(0, "text")]
    events += [ir.Delta(0, "text", piece) for piece in _split(text, cuts)]
    events += [ir.BlockStop(0), ir.Usage(output=9), ir.Finish("end_turn")]
    f = StopFilter(stops)
    out: list[ir.Event] = []
    for i in range(0, len(events), batch):  # the events arrive in network-sized batches
        out += f.process(events[i : i + batch])
    return out


def _expected(text: str, stops: list[str]) -> tuple[str, str | None]:
    """The text before the stop sequence that completes first, and which."""
    for end in range(1, len(text) + 1):
        for stop in stops:
            if stop and text[:end].endswith(stop):
                return text[: end - len(stop)], stop
    return text, None


alphabet = st.sampled_from("ab c")


@given(
    text=st.text(alphabet, max_size=40),
    stops=st.lists(st.text(alphabet, min_size=1, max_size=4), min_size=1, max_size=3),
    cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=12),
    batch=st.integers(min_value=1, max_value=5),
)
def test_cut_at_the_first_stop_whatever_the_split(
    text: str, stops: list[str], cuts: list[int], batch: int
) -> None:
    out = _run(text, stops, cuts, batch)
    want, stop = _expected(text, stops)
    got = "".join(ev.value for ev in out if isinstance(ev, ir.Delta))
    assert got == want
    assert all(ev.value for ev in out if isinstance(ev, ir.Delta))
    if stop is None:
        assert out[-2:] == [ir.Usage(output=9), ir.Finish("end_turn")]
    else:
        # The block ends, the answer finishes on the sequence; the vendor's usage is dropped.
        assert out[-2:] == [ir.BlockStop(0), ir.Finish("stop_sequence", stop)]
        assert sum(isinstance(ev, ir.BlockStop) for ev in out) == 1


def test_thinking_and_tool_arguments_are_not_cut() -> None:
    events: list[ir.Event] = [
        ir.BlockStart(0, "thinking"),
        ir.Delta(0, "thinking", "STOP here"),
        ir.BlockStop(0),
        ir.BlockStart(1, "tool_call", tool_call_id="c", name="f"),
        ir.Delta(1, "arguments", '{"x": "STOP"}'),
        ir.BlockStop(1),
        ir.BlockStart(2, "text"),
        ir.Delta(2, "text", "before ST"),
        ir.Delta(2, "text", "OP after"),
        ir.BlockStop(2),
    ]
    f = StopFilter(["STOP"])
    out = f.process(events)
    assert out[:6] == events[:6]
    assert out[6:] == [
        ir.BlockStart(2, "text"),
        ir.Delta(2, "text", "before "),
        ir.BlockStop(2),
        ir.Finish("stop_sequence", "STOP"),
    ]
    assert f.hit == "STOP"
    assert f.process([ir.Usage(output=5), ir.Finish("end_turn")]) == []
