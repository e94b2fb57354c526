"""Sessions, CSRF tokens and reset links for the portal and the console.

Sessions are signed cookies (itsdangerous, HMAC-SHA256 with TOKENRELAY_SESSION_SECRET), not
server-side rows: any replica behind a load balancer reads them without a shared store. The
cookie holds the account id, a random session nonce and the time it was signed; it is
httpOnly, SameSite=Lax and Secure over https. The CSRF token of a form is an HMAC of the
session nonce (double-submit, bound to the session): a cross-site form post has the cookie
but cannot read or forge the token.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from tokenrelay.settings import Settings

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

log = logging.getLogger("tokenrelay.portal")

RESET_TTL_S = 3600
VERIFY_TTL_S = 3 * 24 * 3600
FLASH_TTL_S = 300
FLASH = "tr_flash"


@dataclass(frozen=True, slots=True)
class Session:
    subject: str  # account id (portal) or operator email (console)
    nonce: str
    # The account's password fingerprint when signed in: a password change ends every session.
    tag: str = ""


@functools.cache
def _process_secret() -> str:
    """Without TOKENRELAY_SESSION_SECRET: one random key for the process (the portal and the
    console share it), and one warning."""
    log.warning(
        "TOKENRELAY_SESSION_SECRET is not set: sessions are signed with a per-process "
        "key (sign-ins end on restart; set it for several replicas)"
    )
    return secrets.token_urlsafe(32)


class Sessions:
    """One signer per secret; `kind` separates customer and operator cookies and tokens."""

    def __init__(self, settings: Settings) -> None:
        secret = settings.session_secret.get_secret_value() if settings.session_secret else None
        if secret is None:
            secret = _process_secret()
        self._secret = secret.encode()
        self._ttl = settings.session_ttl_s
        self._secure = settings.cookie_secure
        self._signer = URLSafeTimedSerializer(secret, salt="tokenrelay-session")
        self._reset = URLSafeTimedSerializer(secret, salt="tokenrelay-reset")
        self._verify = URLSafeTimedSerializer(secret, salt="tokenrelay-verify")

    @functools.cached_property
    def _flash(self) -> Fernet:
        """Made at the first flash (cryptography: ~7 MB of the process), not at start."""
        from cryptography.fernet import Fernet

        flash_key = hashlib.sha256(b"flash:" + self._secret).digest()
        return Fernet(base64.urlsafe_b64encode(flash_key))

    # ------------------------------------------------------------------ sessions

    def read(self, request: Request, kind: str) -> Session | None:
        raw = request.cookies.get(_cookie(kind))
        if not raw:
            return None
        try:
            data = self._signer.loads(raw, max_age=self._ttl)
        except BadSignature:
            return None
        if not isinstance(data, list) or len(data) != 4 or data[0] != kind:
            return None
        return Session(str(data[1]), str(data[2]), str(data[3]))

    def start(
        self, response: Response, request: Request, kind: str, subject: str, tag: str = ""
    ) -> str:
        """Set the session cookie; returns its nonce (what names this sign-in)."""
        nonce = secrets.token_urlsafe(16)
        token = self._signer.dumps([kind, subject, nonce, tag])
        response.set_cookie(
            _cookie(kind),
            token,
            max_age=self._ttl,
            httponly=True,
            samesite="lax",
            secure=self._secure == "on"
            or (self._secure == "auto" and request.url.scheme == "https"),
            path="/",
        )
        return nonce

    def end(self, response: Response, kind: str) -> None:
        response.delete_cookie(_cookie(kind), path="/")

    # ------------------------------------------------------------------ flash (post/redirect/get)

    def flash(self, response: Response, session: Session, **notes: str) -> None:
        """What a POST has to tell the page it redirects to (a new key, shown once): encrypted,
        bound to the session, read by one GET and then deleted."""
        data = json.dumps({"nonce": session.nonce, **notes}).encode()
        response.set_cookie(
            FLASH, self._flash.encrypt(data).decode(), max_age=FLASH_TTL_S, httponly=True,
            samesite="lax", secure=self._secure == "on", path="/dashboard",
        )  # fmt: skip

    def take_flash(self, request: Request, session: Session) -> dict[str, str]:
        raw = request.cookies.get(FLASH)
        if not raw:
            return {}
        from cryptography.fernet import InvalidToken

        try:
            data = json.loads(self._flash.decrypt(raw.encode(), ttl=FLASH_TTL_S))
        except (InvalidToken, ValueError):
            return {}
        if not isinstance(data, dict) or data.pop("nonce", None) != session.nonce:
            return {}
        return {str(k): str(v) for k, v in data.items()}

    # ------------------------------------------------------------------ CSRF

    def csrf_token(self, session: Session | None) -> str:
        """Bound to the session; before sign-in (sign-up and sign-in forms) to a pre-session
        cookie set by `pre_session`."""
        nonce = session.nonce if session else ""
        return hmac.new(self._secret, b"csrf:" + nonce.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: Session | None, token: Any) -> bool:
        return isinstance(token, str) and hmac.compare_digest(self.csrf_token(session), token)

    # ------------------------------------------------------------------ password reset

    def reset_token(self, account_id: str, password_tag: str) -> str:
        """Good for an hour and until the password changes (the tag is part of the hash)."""
        return self._reset.dumps([account_id, password_tag])

    def verify_token(self, account_id: str, email: str) -> str:
        """Confirms that the account's owner reads this address; good for three days."""
        return self._verify.dumps([account_id, email])

    def verify_subject(self, token: str) -> tuple[str, str] | None:
        try:
            data = self._verify.loads(token, max_age=VERIFY_TTL_S)
        except BadSignature:
            return None
        if not isinstance(data, list) or len(data) != 2:
            return None
        return str(data[0]), str(data[1])

    def reset_subject(self, token: str) -> tuple[str, str] | None:
        try:
            data = self._reset.loads(token, max_age=RESET_TTL_S)
        except BadSignature:
            return None
        if not isinstance(data, list) or len(data) != 2:
            return None
        return str(data[0]), str(data[1])


def _cookie(kind: str) -> str:
    return f"tr_{kind}"
