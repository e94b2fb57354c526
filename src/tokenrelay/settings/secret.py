"""A secret setting's value (keys, tokens, webhook URLs): read with `get_secret_value()`, never
shown by repr or str, so a log line, a traceback or a repr of the settings cannot carry it."""

from __future__ import annotations

from typing import Final

_MASK: Final = "**********"


class SecretStr:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __len__(self) -> int:
        # An empty variable is falsy, like an unset one: callers test `if settings.admin_token`.
        return len(self._value)

    def __str__(self) -> str:
        return _MASK if self._value else ""

    def __repr__(self) -> str:
        return f"SecretStr({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)
