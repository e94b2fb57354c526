"""Typed field checks for client request bodies, shared by both frontends.

Every check raises `GatewayError(invalid_request, 400)` whose message starts with the field path
(`messages.1.content: ...`, the style Anthropic's own validation uses) and whose `param` is that
path, so both APIs can name the offending field. JSON `null` counts as absent for optional
fields: SDKs and hand-written clients often send explicit nulls.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from tokenrelay import ir
from tokenrelay.errors import GatewayError, invalid

JSONObject = dict[str, Any]


def fail(path: str, message: str) -> GatewayError:
    return invalid(f"{path}: {message}", param=path)


def at(path: str, key: str | int) -> str:
    return f"{path}.{key}" if path else str(key)


def obj(value: Any, path: str) -> JSONObject:
    if not isinstance(value, dict):
        raise fail(path, "expected an object")
    return value


def body_object(body: Any) -> JSONObject:
    if not isinstance(body, dict):
        raise invalid("request body must be a JSON object")
    return body


def required(parent: JSONObject, key: str, path: str = "") -> Any:
    value = parent.get(key)
    if value is None:
        raise fail(at(path, key), "Field required")
    return value


def string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise fail(path, "expected a string")
    return value


def opt_string(parent: JSONObject, key: str, path: str = "") -> str | None:
    value = parent.get(key)
    return None if value is None else string(value, at(path, key))


def integer(value: Any, path: str, *, minimum: int | None = None) -> int:
    # bool is an int subclass in Python; JSON true is not a number.
    if not isinstance(value, int) or isinstance(value, bool):
        raise fail(path, "expected an integer")
    if minimum is not None and value < minimum:
        raise fail(path, f"must be greater than or equal to {minimum}")
    return value


def opt_integer(
    parent: JSONObject, key: str, path: str = "", *, minimum: int | None = None
) -> int | None:
    value = parent.get(key)
    return None if value is None else integer(value, at(path, key), minimum=minimum)


def opt_number(
    parent: JSONObject,
    key: str,
    path: str = "",
    *,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float | None:
    value = parent.get(key)
    if value is None:
        return None
    where = at(path, key)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise fail(where, "expected a number")
    if minimum is not None and value < minimum:
        raise fail(where, f"must be greater than or equal to {minimum:g}")
    if maximum is not None and value > maximum:
        raise fail(where, f"must be less than or equal to {maximum:g}")
    return float(value)


def opt_boolean(parent: JSONObject, key: str, path: str = "") -> bool | None:
    value = parent.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise fail(at(path, key), "expected a boolean")
    return value


def array(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise fail(path, "expected a list")
    return value


def objects(value: Any, path: str) -> Iterator[tuple[JSONObject, str]]:
    """Each item of the list at `path`, which must be an object, with its own path."""
    for i, raw in enumerate(array(value, path)):
        where = at(path, i)
        yield obj(raw, where), where


def string_list(value: Any, path: str, *, max_items: int | None = None) -> list[str]:
    items = array(value, path)
    if max_items is not None and len(items) > max_items:
        raise fail(path, f"at most {max_items} items allowed")
    return [string(item, at(path, i)) for i, item in enumerate(items)]


def one_of(value: Any, path: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise fail(path, f"expected one of {choices}")
    return str(value)


def required_string(parent: JSONObject, key: str, path: str = "") -> str:
    return string(required(parent, key, path), at(path, key))


def required_obj(parent: JSONObject, key: str, path: str = "") -> JSONObject:
    return obj(required(parent, key, path), at(path, key))


def required_array(parent: JSONObject, key: str, path: str = "") -> list[Any]:
    return array(required(parent, key, path), at(path, key))


_DATA_URI = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)(?:;[^,;]*)*;base64,(?P<data>.*)", re.S)


def data_uri(uri: str, path: str) -> tuple[str, str]:
    """(media type, base64 data) of a `data:<type>;base64,<data>` URI."""
    match = _DATA_URI.fullmatch(uri)
    if match is None:
        raise fail(path, "expected a data:<media type>;base64,<data> URI")
    return match["mime"], match["data"]


def image_url(url: str, path: str) -> ir.Image:
    """An image given as a base64 data: URI or an http(s) URL."""
    if url.startswith("data:"):
        mime, data = data_uri(url, path)
        return ir.Image(media_type=mime, data=data)
    if not url.startswith(("https://", "http://")):
        raise fail(path, "expected an http(s) URL or a base64 data: URI")
    return ir.Image(url=url)
