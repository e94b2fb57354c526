"""JSON Schema → the OpenAPI-3 subset Gemini accepts in `functionDeclarations[].parameters`.

Gemini answers 400 to keywords outside its Schema object (`$schema`, `$ref`/`$defs`,
`additionalProperties`, `default`, `examples`, unsupported `format`s, `required` naming a
property that does not exist, an OBJECT with empty `properties`, …; VENDORS.md §6 hazard 4).
We keep a whitelist rather than strip a blacklist: new JSON-Schema keywords then cannot break
requests. `$ref`s are inlined (recursive ones become a plain object).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Json = dict[str, Any]

# Fields of Gemini's Schema object that carry a plain value (no sub-schemas).
_SCALAR_KEYS = frozenset(
    {
        "description",
        "title",
        "nullable",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "minProperties",
        "maxProperties",
        "minimum",
        "maximum",
        "pattern",
        "propertyOrdering",
    }
)
# The only formats Gemini takes, per type; others → 400 "only 'enum' and 'date-time' …".
_FORMATS = {
    "string": frozenset({"enum", "date-time"}),
    "integer": frozenset({"int32", "int64"}),
    "number": frozenset({"float", "double"}),
}
_MAX_DEPTH = 40  # guards against pathological nesting; deeper parts become a plain object


def clean_schema(schema: Mapping[str, Any]) -> Json:
    """A Gemini-safe copy of `schema` (the input is never modified)."""
    defs: Json = {}
    for key in ("$defs", "definitions"):
        found = schema.get(key)
        if isinstance(found, dict):
            defs.update(found)
    return _clean(schema, defs, (), 0)


def _resolve(ref: str, defs: Json) -> tuple[str, Any] | None:
    for prefix in ("#/$defs/", "#/definitions/"):
        if ref.startswith(prefix):
            name = ref[len(prefix) :]
            return (name, defs[name]) if name in defs else None
    return None


def _clean(node: Any, defs: Json, refs: tuple[str, ...], depth: int) -> Json:
    if not isinstance(node, dict) or depth > _MAX_DEPTH:
        return {"type": "object"}
    ref = node.get("$ref")
    if isinstance(ref, str):
        found = _resolve(ref, defs)
        if found is None or found[0] in refs:  # unknown or recursive: stop here
            out: Json = {"type": "object"}
        else:
            out = _clean(found[1], defs, (*refs, found[0]), depth + 1)
        if isinstance(node.get("description"), str):
            out["description"] = node["description"]
        return out
    if "allOf" in node and isinstance(node["allOf"], list):
        node, refs = _merge_all_of(node, defs, refs)
    out = {}
    _copy_type(node, out)
    for key, value in node.items():
        if key in _SCALAR_KEYS:
            out[key] = value
    _copy_enum(node, out)
    _copy_format(node, out)
    _copy_children(node, out, defs, refs, depth)
    return out


def _copy_type(node: Json, out: Json) -> None:
    t = node.get("type")
    if isinstance(t, list):  # ["string", "null"] → string + nullable
        types = [x for x in t if x != "null"]
        if len(types) < len(t):
            out["nullable"] = True
        t = types[0] if len(types) == 1 else None
    if isinstance(t, str) and t != "null":
        out["type"] = t
    elif "properties" in node:
        out["type"] = "object"


def _copy_enum(node: Json, out: Json) -> None:
    enum = node.get("enum")
    if "const" in node and enum is None:
        enum = [node["const"]]
    # Gemini's enum is for strings only; non-string enums are dropped rather than rejected.
    if isinstance(enum, list) and enum and all(isinstance(v, str) for v in enum):
        out["enum"] = enum
        out.setdefault("type", "string")


def _copy_format(node: Json, out: Json) -> None:
    fmt = node.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS.get(out.get("type", ""), ()):
        out["format"] = fmt


def _copy_children(node: Json, out: Json, defs: Json, refs: tuple[str, ...], depth: int) -> None:
    props = node.get("properties")
    if isinstance(props, dict) and props:
        # Property names are user data, not keywords: a property called "default" stays.
        out["properties"] = {k: _clean(v, defs, refs, depth + 1) for k, v in props.items()}
        required = node.get("required")
        if isinstance(required, list):
            kept = [r for r in required if r in props]
            if kept:
                out["required"] = kept
    items = node.get("items")
    if isinstance(items, dict):
        out["items"] = _clean(items, defs, refs, depth + 1)
    elif out.get("type") == "array":
        out["items"] = {"type": "string"}  # Gemini requires items on arrays
    variants = node.get("anyOf", node.get("oneOf"))
    if isinstance(variants, list):
        _copy_variants(variants, out, defs, refs, depth)


def _copy_variants(
    variants: list[Any], out: Json, defs: Json, refs: tuple[str, ...], depth: int
) -> None:
    """anyOf/oneOf; a `{"type": "null"}` member becomes `nullable`."""
    kept = [v for v in variants if not (isinstance(v, dict) and v.get("type") == "null")]
    if len(kept) < len(variants):
        out["nullable"] = True
    cleaned = [_clean(v, defs, refs, depth + 1) for v in kept]
    if len(cleaned) == 1:
        for key, value in cleaned[0].items():
            out.setdefault(key, value)
    elif cleaned:
        out["anyOf"] = cleaned


def _merge_all_of(node: Json, defs: Json, refs: tuple[str, ...]) -> tuple[Json, tuple[str, ...]]:
    """Gemini has no allOf: fold the members into one schema (properties and required
    united; the first value wins for anything else). Pydantic writes
    `{"allOf": [{"$ref": …}], "description": …}`, so `$ref` members are resolved here."""
    merged: Json = {k: v for k, v in node.items() if k != "allOf"}
    props: Json = dict(merged.get("properties") or {})
    required: list[Any] = list(merged.get("required") or [])
    for member in node["allOf"]:
        if isinstance(member, dict) and isinstance(member.get("$ref"), str):
            found = _resolve(member["$ref"], defs)
            if found is None or found[0] in refs:
                continue
            refs = (*refs, found[0])
            member = found[1]
        if not isinstance(member, dict):
            continue
        props.update(member.get("properties") or {})
        required += [r for r in member.get("required") or [] if r not in required]
        for key, value in member.items():
            if key not in ("properties", "required"):
                merged.setdefault(key, value)
    if props:
        merged["properties"] = props
    if required:
        merged["required"] = required
    return merged, refs
