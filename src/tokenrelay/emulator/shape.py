"""Type checks on request bodies, so malformed input gets the vendor's 400 instead of
crashing the emulator. The real APIs validate against a schema before anything else; each
vendor module catches `Mismatch` and words it the way its vendor does."""

from __future__ import annotations

from typing import Any

Path = tuple[str | int, ...]
# Expected JSON type → the Python types that satisfy it (bool is not a number in JSON).
_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


class Mismatch(Exception):
    """The value at `path` is not of the `expected` JSON type."""

    def __init__(self, path: Path, expected: str, got: Any) -> None:
        super().__init__(f"{path}: expected {expected}")
        self.path, self.expected, self.got = path, expected, got


def kind(value: Any) -> str:
    """The JSON type name of a parsed value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    for name in ("number", "string", "array", "object"):
        if isinstance(value, _TYPES[name]):
            return name
    return "unknown"


def need(value: Any, expected: str, path: Path) -> Any:
    """`value` if it is of the `expected` JSON type ("string|array" allows either)."""
    names = expected.split("|")
    if kind(value) not in names and not ("number" in names and kind(value) == "integer"):
        raise Mismatch(path, expected, value)
    return value


def opt(parent: dict[str, Any], key: str, expected: str, path: Path) -> Any:
    """parent[key] checked like `need`; absent or null passes as None."""
    value = parent.get(key)
    return None if value is None else need(value, expected, (*path, key))


def items(value: Any, expected: str, path: Path) -> list[Any]:
    """An array whose every item is of the `expected` type."""
    for i, item in enumerate(need(value, "array", path)):
        need(item, expected, (*path, i))
    return list(value)
