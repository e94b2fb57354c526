"""Compaction the gateway does itself: a conversation summarised by the model that answers it,
handed to the client as a Responses `compaction` item whose `encrypted_content` the gateway
sealed, and expanded back into the conversation when the client sends it on a later turn.

OpenAI compacts on its own (`/responses/compact`, or a `compaction_trigger` item): its items are
readable by OpenAI only. Every other vendor gets the gateway's: the summary encrypted and
authenticated (Fernet: AES-CBC + HMAC-SHA256) under a key derived from the gateway's receipt
signing key, which every replica shares (configured, or kept in the database), so any replica
can open an item another sealed, and a client cannot forge or alter one.

The key is the process's (installed at startup): the Responses parser, which opens items, sees
a request body and nothing of the gateway's settings. Keys installed earlier stay accepted for
opening (a test process may start several gateways).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

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

_fernets: list[Fernet] = []
_derived: list[bytes] = []  # the key of each of _fernets, in the same order


def install_key(secret: bytes) -> None:
    """Seal with a key derived from `secret` from now on (and keep opening the older ones)."""
    derived = hmac.new(secret, b"tokenrelay compaction v1", hashlib.sha256).digest()
    kept = [(k, f) for k, f in zip(_derived, _fernets, strict=True) if k != derived]
    _derived[:] = [derived, *(k for k, _ in kept)]
    _fernets[:] = [Fernet(base64.urlsafe_b64encode(derived)), *(f for _, f in kept)]


def seal(summary: str, model: str) -> str:
    if not _fernets:
        raise RuntimeError("no compaction key installed (the gateway's startup installs it)")
    token = _fernets[0].encrypt(orjson.dumps({"s": summary, "m": model}))
    return PREFIX + token.decode()


def is_sealed(blob: object) -> bool:
    return isinstance(blob, str) and blob.startswith(PREFIX)


def open_sealed(blob: str) -> str:
    """The summary in an item `seal` made; ValueError for anything else (altered, forged, or
    sealed by a gateway with another key)."""
    if not is_sealed(blob) or not _fernets:
        raise ValueError("not a compaction this gateway sealed")
    try:
        raw = orjson.loads(MultiFernet(_fernets).decrypt(blob[len(PREFIX) :].encode()))
        return str(raw["s"])
    except (InvalidToken, orjson.JSONDecodeError, TypeError, KeyError):
        raise ValueError("not a compaction this gateway sealed") from None


def expanded(blob: str) -> str:
    """The text a sealed item stands for in the conversation."""
    return SUMMARY_PREFIX + open_sealed(blob)
