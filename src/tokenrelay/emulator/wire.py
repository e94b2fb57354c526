"""HTTP plumbing shared by the vendor modules: request/response records, ids, signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from tokenrelay.emulator.script import Plan

# Keyed hashes stand in for the vendors' opaque reasoning signatures: the gateway cannot forge
# them, so a 200 on a follow-up request proves it replayed what the emulator issued.
_SECRET = b"tokenrelay-emulator/reasoning-signature/v1"
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class BadJSON(Exception):
    """The request body is not a JSON object."""


@dataclass(slots=True)
class Req:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    _json: Any = None
    deployment: str | None = None  # served as one deployment of many (`/_d/<name>/...`)
    root: str = ""  # where the emulator is mounted (absolute links it hands out)

    def json(self) -> dict[str, Any]:
        if self._json is None:
            try:
                value = orjson.loads(self.body or b"{}")
            except orjson.JSONDecodeError as exc:
                raise BadJSON(str(exc)) from exc
            if not isinstance(value, dict):
                raise BadJSON("request body must be a JSON object")
            self._json = value
        return self._json

    def seed(self, vendor: str) -> bytes:
        """Digest of the request: every generated id derives from it (same request, same ids).

        Stream flags are left out, so a streamed and a plain call share ids and signatures.
        """
        try:
            body = {k: v for k, v in self.json().items() if k not in ("stream", "stream_options")}
            data = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
        except (BadJSON, TypeError):
            data = self.body
        path = self.path.replace(":streamGenerateContent", ":generateContent")
        return hashlib.sha256(f"{vendor}\0{path}\0".encode() + data).digest()


@dataclass(slots=True)
class Resp:
    """A finished response, or an SSE stream as a list of pre-encoded events (frames)."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    frames: list[bytes] | None = None
    preamble: bytes = b""  # sent right after the headers, before first_delay (keep-alives)
    first_delay: float = 0.0  # seconds before the first body byte
    delay: float = 0.0  # seconds between frames
    cut: bool = False  # drop the connection after the frames, without a terminator
    stall: float = 0.0  # seconds of silence after the frames, before the cut


def sse_resp(
    frames: list[bytes],
    plan: Plan,
    headers: list[tuple[str, str]] | None = None,
    *,
    content_type: str = "text/event-stream; charset=utf-8",
    preamble: bytes = b"",
) -> Resp:
    """A stream of pre-encoded events, paced and cut as the request's script says."""
    return Resp(
        frames=frames,
        content_type=content_type,
        headers=[*(headers or []), ("cache-control", "no-cache")],
        delay=plan.delay,
        first_delay=plan.first_delay,
        cut=plan.cut,
        stall=plan.stall,
        preamble=preamble,
    )


def json_resp(
    status: int,
    obj: Any,
    headers: list[tuple[str, str]] | None = None,
    content_type: str = "application/json",
) -> Resp:
    return Resp(
        status=status, body=orjson.dumps(obj), content_type=content_type, headers=headers or []
    )


def b62(data: bytes, length: int) -> str:
    n = int.from_bytes(data, "big")
    out = []
    for _ in range(length):
        n, r = divmod(n, 62)
        out.append(_B62[r])
    return "".join(out)


def derive(seed: bytes, label: str) -> bytes:
    return hashlib.sha256(seed + label.encode()).digest()


def rand_id(seed: bytes, label: str, length: int) -> str:
    return b62(derive(seed, label), length)


def hex_id(seed: bytes, label: str, length: int) -> str:
    return derive(seed, label).hex()[:length]


def uuid_like(seed: bytes, label: str) -> str:
    h = derive(seed, label).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def created(seed: bytes) -> int:
    """A plausible, deterministic unix timestamp."""
    return 1_760_000_000 + int.from_bytes(seed[:4], "big") % 10_000_000


def sign(kind: str, payload: str) -> str:
    mac = hmac.new(_SECRET, kind.encode() + b"\0" + payload.encode(), hashlib.sha256).digest()
    return base64.b64encode(b"\x12\x20" + mac).decode()


def verify(kind: str, payload: str, signature: object) -> bool:
    return isinstance(signature, str) and hmac.compare_digest(sign(kind, payload), signature)


def canonical(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def sse_data(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def bearer(req: Req) -> str | None:
    auth = req.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return None


def is_bad_key(key: str) -> bool:
    return key == "invalid" or key.startswith("bad-")


def mask_key(key: str) -> str:
    return f"{key[:2]}***{key[-2:]}" if len(key) > 4 else "***"
