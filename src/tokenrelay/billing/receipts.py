"""Signed usage receipts: what a request was billed, signed with the gateway's Ed25519 key.

A receipt is `<payload>.<signature>`, both base64url without padding: the payload is the
claims as compact JSON with sorted keys, the signature Ed25519 over those exact bytes. Anyone
holding the public key (`/.well-known/tokenrelay-receipts.json`) checks it with `cryptography`
alone (README, "Usage receipts"), and recomputes the charge from the published prices
(`tokenrelay receipts verify`).

Claims come from the usage record the ledger holds (`claims`), so the same request always gives
the same receipt (Ed25519 signatures are deterministic): the CSV export and
`GET /v1/receipts/{request_id}` sign its rows again. An answer carries its receipt when its
request asks (`x-tokenrelay-receipt: 1`), or always with TOKENRELAY_RECEIPTS=always: building and
signing one costs ~80 µs of CPU, a quarter of a request's, spent only where it is read.

The key: `TOKENRELAY_RECEIPT_KEY` (the 32-byte private seed, base64), the same on every replica;
without it the first process generates one and stores it in the database (`signing_keys`), where
every later process and replica reads the same one.

Rotation: the seeds the gateway signed with before go in `TOKENRELAY_RECEIPT_KEY_PREVIOUS`
(comma-separated). Nothing is signed with them again, but their public keys stay published
(each with its `kid`, which every receipt names), so receipts issued before still verify, and
the secrets derived from them (`derive_secrets`) still open what they protected (compaction
items customers hold: reasoning/compaction.py). Dropping a seed from the list retires it.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import functools
import hashlib
import hmac
import os
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from tokenrelay import ir
from tokenrelay.billing.pricebook import RATE_FIELDS
from tokenrelay.billing.pricing import cost_nano, customer_nano
from tokenrelay.billing.writer import UsageRecord
from tokenrelay.catalog import Price, PriceTier
from tokenrelay.money import usd
from tokenrelay.store.async_core import AsyncEngine
from tokenrelay.store.tables import signing_keys

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

RECEIPT_HEADER = b"x-tokenrelay-receipt"
WELL_KNOWN_PATH = "/.well-known/tokenrelay-receipts.json"
RECEIPT_VERSION = 1
_KEY_NAME = "receipts"
_SEED_BYTES = 32
_NEW_SEED = "python -c 'import os,base64;print(base64.b64encode(os.urandom(32)).decode())'"


class InvalidReceipt(ValueError):
    """Not a receipt, or its signature does not match its content."""


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_RECORD_FIELDS = frozenset(f.name for f in dataclasses.fields(UsageRecord))


def record_from_row(row: dict[str, Any]) -> UsageRecord:
    """The usage record a `usage_records` row holds (what its receipt is signed from)."""
    record = UsageRecord(**{k: v for k, v in row.items() if k in _RECORD_FIELDS})
    started = row["started_at"]
    record.started_at = started if started.tzinfo else started.replace(tzinfo=dt.UTC)  # SQLite
    return record


def claims(record: UsageRecord, multiplier_ppm: int) -> dict[str, Any]:
    """What a receipt states for a settled record: enough to recompute the charge from the
    list price (`usage` × the price version's rates × the account's price multiplier)."""
    started = record.started_at or dt.datetime.fromtimestamp(0, dt.UTC)
    return {
        "v": RECEIPT_VERSION,
        "request_id": record.request_id,
        "key_id": record.key_id,
        "model_asked": record.model_asked or record.model,
        "model": record.model,
        "vendor": record.vendor,
        # the vendor's own id for the call, to match against its logs (None: it sent none)
        "upstream_request_id": record.upstream_request_id or None,
        "usage": {
            "input_tokens": record.input_tokens,
            "output_tokens": record.output_tokens,
            "cache_read_tokens": record.cache_read_tokens,
            "cache_write_tokens": record.cache_write_tokens,
            "cache_write_1h_tokens": record.cache_write_1h_tokens,
            "reasoning_tokens": record.reasoning_tokens,
        },
        "usage_source": record.usage_source,
        "status": record.status,
        "price_version": record.price_version_id,
        "price_multiplier_ppm": multiplier_ppm,
        "charged_nano": record.cost_nano,
        "charged_usd": usd(record.cost_nano),
        "started_at": started.astimezone(dt.UTC).isoformat(),
    }


class ReceiptSigner:
    """Signs with the Ed25519 key of a 32-byte private `seed`. The key itself (cryptography:
    ~7 MB of the process) is made at the first signature or public key asked for, so a gateway
    that signs nothing never loads it; `derive_secrets` needs only the seed."""

    def __init__(self, seed: bytes, previous: Sequence[bytes] = ()) -> None:
        self._seed = seed
        # Keys signed with before a rotation: published, and their derived secrets kept (the
        # same seed is the same key).
        self.previous: list[ReceiptSigner] = []
        for old in previous:
            if old not in (seed, *(p._seed for p in self.previous)):
                self.previous.append(ReceiptSigner(old))

    @functools.cached_property
    def _key(self) -> Ed25519PrivateKey:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return Ed25519PrivateKey.from_private_bytes(self._seed)

    @functools.cached_property
    def public_raw(self) -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        return self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @functools.cached_property
    def kid(self) -> str:
        return hashlib.sha256(self.public_raw).hexdigest()[:16]

    def sign(self, payload: dict[str, Any]) -> str:
        body = orjson.dumps({**payload, "kid": self.kid}, option=orjson.OPT_SORT_KEYS)
        return _b64u(body) + "." + _b64u(self._key.sign(body))

    def derive_secrets(self, label: bytes) -> list[bytes]:
        """Secrets for another use (`label`) that every replica derives alike, so the gateway's
        other keys need no configuration of their own: the current key's first, then the
        previous keys' (what they protected before a rotation stays readable)."""
        seeds = [self._seed, *(p._seed for p in self.previous)]
        return [hmac.new(seed, label, hashlib.sha256).digest() for seed in seeds]

    def _jwk(self) -> dict[str, str]:
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "use": "sig",
            "kid": self.kid,
            "x": _b64u(self.public_raw),
        }

    def public_document(self) -> dict[str, Any]:
        """The well-known document: the keys as JWKs (RFC 8037), the signing key first and
        then the previous ones (receipts name theirs by `kid`), and the signing key as raw
        base64."""
        return {
            "format": "base64url(JSON claims) '.' base64url(Ed25519 signature over those bytes)",
            "keys": [self._jwk(), *(p._jwk() for p in self.previous)],
            "public_key_base64": base64.b64encode(self.public_raw).decode(),
        }


def verify(receipt: str, public_key_raw: bytes) -> dict[str, Any]:
    """The receipt's claims, when its signature is the key's; raises InvalidReceipt."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    payload, sep, signature = receipt.strip().partition(".")
    try:
        if not sep:
            raise ValueError("no signature")
        body = _unb64u(payload)
        Ed25519PublicKey.from_public_bytes(public_key_raw).verify(_unb64u(signature), body)
        out = orjson.loads(body)
    except InvalidSignature:
        raise InvalidReceipt("the signature does not match this receipt's content") from None
    except ValueError as exc:  # binascii.Error and orjson's errors are ValueErrors
        raise InvalidReceipt(f"not a receipt ({exc})") from None
    if not isinstance(out, dict):
        raise InvalidReceipt("not a receipt (claims are not an object)")
    return out


def published_key(receipt: str, document: dict[str, Any]) -> bytes:
    """The public key of the well-known `document` that signed `receipt`: the one its `kid`
    names (a receipt from before a key rotation), else the current one."""
    payload = receipt.strip().partition(".")[0]
    try:
        kid = orjson.loads(_unb64u(payload)).get("kid")
    except (ValueError, AttributeError):
        kid = None  # `verify` says what is wrong with it
    for jwk in document.get("keys", ()):
        if kid is not None and jwk.get("kid") == kid:
            return _unb64u(jwk["x"])
    return base64.b64decode(document["public_key_base64"])


def _private_key(seed_b64: str, setting: str) -> bytes:
    """A seed in base64, or in base64url as the database keeps a generated one."""
    standard = seed_b64.strip().replace("-", "+").replace("_", "/")
    try:
        seed = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except ValueError:
        seed = b""
    if len(seed) != _SEED_BYTES:  # any 32 bytes are an Ed25519 private key
        raise ValueError(f"{setting} must be a 32-byte Ed25519 private key in base64 ({_NEW_SEED})")
    return seed


def previous_keys(seeds: str | None) -> list[bytes]:
    """TOKENRELAY_RECEIPT_KEY_PREVIOUS: comma-separated seeds, as TOKENRELAY_RECEIPT_KEY."""
    parts = [p.strip() for p in (seeds or "").split(",")]
    return [_private_key(p, "each of TOKENRELAY_RECEIPT_KEY_PREVIOUS") for p in parts if p]


def signer_from_seed(seed_b64: str, previous: str | None = None) -> ReceiptSigner:
    key = _private_key(seed_b64, "TOKENRELAY_RECEIPT_KEY")
    return ReceiptSigner(key, previous_keys(previous))


async def load_signer(
    seed_b64: str | None, engine: AsyncEngine, previous: str | None = None
) -> ReceiptSigner:
    """The configured key, else the one in the database (created by the first process to
    ask: a concurrent first start loses the insert race and reads the winner's); `previous`
    is TOKENRELAY_RECEIPT_KEY_PREVIOUS."""
    if seed_b64:
        return signer_from_seed(seed_b64, previous)
    query = select(signing_keys.c.private_key).where(signing_keys.c.name == _KEY_NAME)
    async with engine.connect() as conn:
        stored = (await conn.execute(query)).scalar_one_or_none()
    if stored is None:
        seed = _b64u(os.urandom(_SEED_BYTES))  # what Ed25519PrivateKey.generate() draws
        row = {"name": _KEY_NAME, "private_key": seed, "created_at": dt.datetime.now(dt.UTC)}
        try:
            async with engine.begin() as conn:
                await conn.execute(insert(signing_keys).values(**row))
            stored = seed
        except IntegrityError:
            async with engine.connect() as conn:
                stored = (await conn.execute(query)).scalar_one()
    return ReceiptSigner(_private_key(stored, "the stored receipt key"), previous_keys(previous))


def price_from_listing(pricing: dict[str, Any]) -> Price:
    """A model's price as `GET /api/proxy/v1/models` publishes it (`pricing`)."""

    def rate(obj: dict[str, Any], field: str) -> Decimal:
        return Decimal(str(obj[f"{field}_per_mtok"]))

    def tier(t: dict[str, Any]) -> PriceTier:
        return PriceTier(int(t["above_prompt_tokens"]), *(rate(t, f) for f in RATE_FIELDS))

    i, o, cr, cw, cw1h = (rate(pricing, f) for f in RATE_FIELDS)
    return Price(i, o, cr, cw, cw1h, tiers=tuple(tier(t) for t in pricing.get("tiers", ())))


def recompute_charge(receipt_claims: dict[str, Any], price: Price) -> int:
    """The charge the receipt's usage comes to at `price` (list rates × price multiplier),
    computed as the gateway bills: nano-USD, rounded once."""
    u = receipt_claims["usage"]
    totals = ir.UsageTotals(
        input=u["input_tokens"],
        output=u["output_tokens"],
        cache_read=u["cache_read_tokens"],
        cache_write=u["cache_write_tokens"],
        cache_write_1h=u["cache_write_1h_tokens"],
        reasoning=u["reasoning_tokens"],
    )
    return customer_nano(cost_nano(totals, price), receipt_claims["price_multiplier_ppm"])
