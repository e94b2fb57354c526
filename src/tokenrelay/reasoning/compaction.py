"""Compaction the gateway does itself: a conversation summarised by the model that answers it,
handed to the client as a Responses `compaction` item whose `encrypted_content` the gateway
sealed, and expanded back into the conversation when the client sends it on a later turn.

OpenAI compacts on its own (`/responses/compact`, or a `compaction_trigger` item): its items are
readable by OpenAI only. Every other vendor gets the gateway's: the summary encrypted and
authenticated (Fernet: AES-CBC + HMAC-SHA256) under a key derived from the gateway's receipt
signing key, which every replica shares (configured, or kept in the database), so any replica
can open an item another sealed, and a client cannot forge or alter one.

Key rotation: a customer keeps a compaction item as long as its conversation (a Codex session
resumed weeks later), so rotating the receipt key must not make the items out there unreadable.
The gateway seals with the key derived from the current receipt key and opens with that one or
any derived from `TOKENRELAY_RECEIPT_KEY_PREVIOUS` (MultiFernet). The key follows the receipt
key, rather than a key ring of its own in the database, because it is the one secret an
operator already rotates, and one rotation (one setting, the old seeds kept for a while) then
covers both what the key signed (receipts, still verifiable) and what it sealed (items, still
readable); a second ring would be a second secret to back up, rotate and retire. An item no
key opens is refused as bad input (the Responses parser's 400 naming `encrypted_content`).

The keys are the process's (installed at startup, by `install`): the Responses parser, which
opens items, sees a request body and nothing of the gateway's settings. A test process may run
several gateways: each installs its ring and removes it when it closes; the one installed last
seals, and every installed ring opens (so a gateway's items open while it runs, and a ring
stops opening anything once its gateway has stopped).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from cryptography.fernet import Fernet, MultiFernet

# What a sealed item's `encrypted_content` starts with (OpenAI's own never does).
PREFIX = "trc1."
# Said to the model before the summary it wrote earlier, when the conversation goes on.
SUMMARY_PREFIX = (
    "Earlier turns of this conversation were compacted. This is the summary written then; "
    "continue from it:\n\n"
)
# Asked of the model to compact (the last turn of the compaction request).
SUMMARIZATION_PROMPT = (
    "Compact the conversation so far into a handoff summary for yourself, to continue the "
    "work without the earlier turns: the user's goals and constraints, what was done and "
    "decided, the state of files and commands, results that still matter (exact names, "
    "paths, values), and the next steps. Answer with the summary only; call no tools."
)


class KeyRing:
    """One gateway's compaction keys (from its receipt keys, current first), installed in the
    process until the gateway closes it. The ciphers (cryptography: ~7 MB of the process) are
    made at the first seal or open, not at every gateway's start."""

    def __init__(self, secrets: Sequence[bytes]) -> None:
        derived = [
            hmac.new(s, b"tokenrelay compaction v1", hashlib.sha256).digest() for s in secrets
        ]
        self._keys = [base64.urlsafe_b64encode(k) for k in derived]

    @functools.cached_property
    def fernets(self) -> list[Fernet]:
        from cryptography.fernet import Fernet

        return [Fernet(k) for k in self._keys]

    async def close(self) -> None:  # one of the gateway's resources, closed at shutdown
        if self in _rings:
            _rings.remove(self)
            _forget_ciphers()


_rings: list[KeyRing] = []  # installed by the process's gateways, newest last
# The sealer and the opener of the rings installed; None: to be made at the next use.
_ciphers: tuple[Fernet | None, MultiFernet | None] | None = None


def _forget_ciphers() -> None:
    global _ciphers
    _ciphers = None


def _current() -> tuple[Fernet | None, MultiFernet | None]:
    global _ciphers
    if _ciphers is None:
        from cryptography.fernet import MultiFernet

        fernets = [f for ring in reversed(_rings) for f in ring.fernets]
        sealer = _rings[-1].fernets[0] if _rings else None
        _ciphers = (sealer, MultiFernet(fernets) if fernets else None)
    return _ciphers


def install(secrets: Sequence[bytes]) -> KeyRing:
    """Seal with a key derived from `secrets[0]` from now on, and open what any of `secrets`
    sealed (the others: secrets of keys before a rotation) until the ring is closed."""
    if not secrets:
        raise ValueError("a compaction key ring needs at least one secret")
    ring = KeyRing(secrets)
    _rings.append(ring)
    _forget_ciphers()
    return ring


def seal(summary: str, model: str) -> str:
    sealer = _current()[0]
    if sealer is None:
        raise RuntimeError("no compaction key installed (the gateway's startup installs it)")
    token = sealer.encrypt(orjson.dumps({"s": summary, "m": model}))
    return PREFIX + token.decode()


def is_sealed(blob: object) -> bool:
    return isinstance(blob, str) and blob.startswith(PREFIX)


def open_sealed(blob: str) -> str:
    """The summary in an item `seal` made; ValueError for anything else (altered, forged, or
    sealed under a key this gateway does not hold: another gateway's, or one rotated out)."""
    opener = _current()[1] if is_sealed(blob) else None
    if opener is None:
        raise ValueError("not a compaction this gateway sealed")
    from cryptography.fernet import InvalidToken

    try:
        raw = orjson.loads(opener.decrypt(blob[len(PREFIX) :].encode()))
        return str(raw["s"])
    except (InvalidToken, orjson.JSONDecodeError, TypeError, KeyError):
        raise ValueError("not a compaction this gateway sealed") from None


def expanded(blob: str) -> str:
    """The text a sealed item stands for in the conversation."""
    return SUMMARY_PREFIX + open_sealed(blob)
