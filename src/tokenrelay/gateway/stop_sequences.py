"""Stop sequences the gateway enforces itself, for a model that refuses them (xAI reasoning
models answer `stop` with a 400): the call goes without them, and this filter cuts the answer's
text at the first occurrence of any of them, as the vendor would have.

It sits between the vendor adapter's IR events and the frontend, on the translated path only,
and only for such requests: everything else never meets it. Text is held back while its tail
could be the start of a stop sequence, so a sequence split across deltas is still caught and
never reaches the client. At a match the text block stops and the answer finishes with
`stop_sequence`; every later event (the rest of the text, the vendor's own end and usage) is
dropped — the caller stops reading the vendor.
"""

from __future__ import annotations

from tokenrelay import ir


class StopFilter:
    __slots__ = ("_held", "_stops", "hit")

    def __init__(self, stops: list[str]) -> None:
        self._stops = [s for s in dict.fromkeys(stops) if s]
        self._held: dict[int, str] = {}  # text block index → text held back
        self.hit: str | None = None  # the stop sequence that ended the answer

    def process(self, events: list[ir.Event]) -> list[ir.Event]:
        """The events as the client should see them: cut at the first stop sequence."""
        if self.hit is not None:
            return []
        out: list[ir.Event] = []
        for ev in events:
            if isinstance(ev, ir.Delta) and ev.kind == "text":
                if self._text(ev, out):
                    return out
            elif isinstance(ev, ir.BlockStart) and ev.kind == "text":
                self._held[ev.index] = ""
                out.append(ev)
            elif isinstance(ev, ir.BlockStop) and ev.index in self._held:
                held = self._held.pop(ev.index)
                if held:
                    out.append(ir.Delta(ev.index, "text", held))
                out.append(ev)
            else:
                out.append(ev)
        return out

    def _text(self, ev: ir.Delta, out: list[ir.Event]) -> bool:
        held = self._held.get(ev.index)
        if held is None:  # a delta outside a text block: not ours to judge
            out.append(ev)
            return False
        text = held + ev.value
        match = self._first_match(text)
        if match is not None:
            cut, stop = match
            if cut:
                out.append(ir.Delta(ev.index, "text", text[:cut]))
            out += [ir.BlockStop(ev.index), ir.Finish("stop_sequence", stop)]
            self.hit = stop
            self._held.clear()
            return True
        keep = self._partial(text)
        if keep < len(text):
            out.append(ir.Delta(ev.index, "text", text[: len(text) - keep]))
        self._held[ev.index] = text[len(text) - keep :]
        return False

    def _first_match(self, text: str) -> tuple[int, str] | None:
        """(where it starts, which) for the stop sequence that completes first in `text`."""
        best: tuple[int, int, str] | None = None  # (end, start, stop)
        for stop in self._stops:
            at = text.find(stop)
            if at >= 0 and (best is None or at + len(stop) < best[0]):
                best = (at + len(stop), at, stop)
        return None if best is None else (best[1], best[2])

    def _partial(self, text: str) -> int:
        """How many characters at the end of `text` could begin a stop sequence."""
        longest = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:n]):
                    longest = n
                    break
        return longest
