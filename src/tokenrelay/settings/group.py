"""What every group of settings shares: each field is read from its environment variable (the
variable's public name, declared with `env`), unknown variables are ignored, and a group is
constructible in code by field name (or variable name), the environment filling in the rest.

A field's annotation says what it accepts, in msgspec's terms (a Literal set, `str | None`,
`Annotated[int, Meta(ge=1)]`), and msgspec converts and checks each value: strings from the
environment become int, float, bool or Decimal. Two kinds of metadata of ours add what msgspec
does not do: `Before` rewrites a string first (a log level in any case, pydantic's spellings of
a boolean), `Check` tests the converted value (bounds on a Decimal, a secret's length).
(pydantic-settings did this before: with pydantic, 12 of the idle server's 82 MB.)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import (
    Annotated,
    Any,
    ClassVar,
    Literal,
    TypeVar,
    cast,
    get_args,
    get_origin,
    get_type_hints,
)

import msgspec

from tokenrelay.settings.secret import SecretStr

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting's value is not one the gateway accepts (named, with what it accepts)."""


@dataclass(frozen=True, slots=True)
class Var:
    """A field's environment variable and its default: what `env` declares."""

    name: str
    default: object


def env(name: str, default: T) -> T:
    """A field read from the environment variable `name`; `default` when it is not set."""
    return cast(T, Var(name, default))


@dataclass(frozen=True, slots=True)
class Before:
    """Annotated metadata: applied to a string value before msgspec converts it."""

    rewrite: Callable[[str], str]


@dataclass(frozen=True, slots=True)
class Check:
    """Annotated metadata: a test on the converted value (when not None) that msgspec's `Meta`
    cannot state, and what it accepts, for the error."""

    ok: Callable[[Any], bool]
    accepts: str


# pydantic's spellings of a boolean, in any case (msgspec itself takes true/false/1/0).
_WORDS = dict.fromkeys(("on", "yes", "y", "t"), "true") | dict.fromkeys(
    ("off", "no", "n", "f"), "false"
)
Flag = Annotated[bool, Before(lambda v: _WORDS.get(v.lower(), v))]


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    var: str
    default: object
    type: Any  # the annotation, as msgspec converts to it
    rewrites: tuple[Callable[[str], str], ...]
    checks: tuple[Check, ...]
    options: tuple[object, ...]  # a Literal's values, named in the error
    secret: bool
    trim: bool  # a number or a boolean: surrounding spaces dropped

    def convert(self, value: object) -> object:
        if isinstance(value, str):
            if self.trim:  # `PORT=8080 ` in an env file: pydantic-settings took it, so do we
                value = value.strip()
            for rewrite in self.rewrites:
                value = rewrite(value)
        value = msgspec.convert(value, self.type, strict=False, dec_hook=_secret)
        for check in self.checks:
            if value is not None and not check.ok(value):
                raise msgspec.ValidationError(f"Expected {check.accepts}")
        return value

    def problem(self, value: object, error: msgspec.ValidationError) -> str:
        """One clause of the error line: the variable, what it accepts, what it got."""
        # msgspec's message less what it got (shown below) and JSON's null (a variable is unset).
        accepts = str(error).partition(", got ")[0].replace(" | null", "")
        if self.options and accepts.startswith("Invalid enum value"):
            *most, last = [repr(o) for o in self.options]
            accepts = f"Expected {', '.join(most)} or {last}" if most else f"Expected {last}"
        got = "a secret, not shown" if self.secret else repr(value)
        return f"{self.var}: {accepts} (got {got})"


class Group:
    # The fields the environment or the caller set, not left at their defaults.
    given: frozenset[str]
    _fields: ClassVar[tuple[_Field, ...]] = ()

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls._fields = _declared(cls)  # at import: a field declared wrong fails at once

    def __init__(self, **values: object) -> None:
        fields = self._fields
        unknown = values.keys() - {f.name for f in fields} - {f.var for f in fields}
        if unknown:
            raise TypeError(f"{type(self).__name__} has no setting {', '.join(sorted(unknown))}")
        environ = _environ()
        given, problems = set(), []
        for f in fields:
            for source, key in ((values, f.name), (values, f.var), (environ, f.var)):
                if key in source:
                    raw = source[key]
                    try:
                        setattr(self, f.name, f.convert(raw))
                    except msgspec.ValidationError as exc:
                        problems.append(f.problem(raw, exc))
                    given.add(f.name)
                    break
            else:
                setattr(self, f.name, f.default)
        if problems:
            raise SettingsError("invalid settings: " + "; ".join(problems))
        self.given = frozenset(given)

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in self._fields)
        return f"{type(self).__name__}({shown})"


def _environ() -> dict[str, str]:
    """The environment by upper-case name, the exact spelling first: pydantic-settings read the
    variables in any case, and a deployment may rely on that."""
    return {k.upper(): v for k, v in os.environ.items()} | {
        k: v for k, v in os.environ.items() if k.isupper()
    }


def _secret(kind: type, value: object) -> object:
    """msgspec's hook for the one type of ours it converts to."""
    if kind is SecretStr and isinstance(value, str | SecretStr):
        return value if isinstance(value, SecretStr) else SecretStr(value)
    raise TypeError(f"Expected `str`, got `{type(value).__name__}`")


def _declared(cls: type) -> tuple[_Field, ...]:
    hints = get_type_hints(cls, include_extras=True)
    fields = []
    for name, hint in hints.items():
        var = getattr(cls, name, None)
        if not isinstance(var, Var):
            continue
        meta = get_args(hint)[1:] if get_origin(hint) is Annotated else ()
        nested = list(_walk(hint))
        fields.append(
            _Field(
                name=name,
                var=var.name,
                default=var.default,
                type=hint,
                rewrites=tuple(m.rewrite for m in meta if isinstance(m, Before)),
                checks=tuple(m for m in meta if isinstance(m, Check)),
                options=next((get_args(t) for t in nested if get_origin(t) is Literal), ()),
                secret=SecretStr in nested,
                trim=any(t in (int, float, Decimal, bool) for t in nested),
            )
        )
    return tuple(fields)


def _walk(hint: Any) -> Iterator[Any]:
    """The type and every type inside it (a union's members, Annotated's first argument)."""
    yield hint
    args = get_args(hint)[:1] if get_origin(hint) is Annotated else get_args(hint)
    if get_origin(hint) is not Literal:
        for arg in args:
            yield from _walk(arg)
