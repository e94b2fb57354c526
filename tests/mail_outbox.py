"""The mail the gateway would send, as tests read it: without TOKENRELAY_SMTP_URL each mail is
one log line on `tokenrelay.portal` ("<what> for <address> (...): <link>"). Importing this
module starts collecting them (the gateways under test run in this process)."""

from __future__ import annotations

import logging
import re

LINE = re.compile(
    r"^(?P<what>[a-z ]+) for (?P<to>\S+) \(no SMTP configured, development\): (?P<link>\S+)$"
)


class _Outbox(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.sent: list[tuple[str, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = LINE.match(record.getMessage())
        if found:
            self.sent.append((found["what"], found["to"], found["link"]))


OUTBOX = _Outbox()
logging.getLogger("tokenrelay.portal").addHandler(OUTBOX)


def last_link(what: str, to: str) -> str:
    """The newest link of this kind mailed to this address."""
    links = [link for w, t, link in OUTBOX.sent if w == what and t == to]
    assert links, f"no {what} mail to {to}"
    return links[-1]


def links(what: str, to: str) -> list[str]:
    return [link for w, t, link in OUTBOX.sent if w == what and t == to]
