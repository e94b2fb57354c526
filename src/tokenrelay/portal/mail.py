"""Password-reset and address-verification mail: SMTP when TOKENRELAY_SMTP_URL is set, else
one log line (development).

The log line carries the link (its token) and nothing else secret: no key, no password.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

from tokenrelay.settings import Settings

log = logging.getLogger("tokenrelay.portal")


async def send_reset(settings: Settings, to: str, link: str, site_name: str = "tokenrelay") -> None:
    text = f"Reset your {site_name} password within the hour:\n\n{link}\n"
    await _deliver(settings, to, "Reset your password", text, "password reset", link)


async def send_verification(
    settings: Settings, to: str, link: str, site_name: str = "tokenrelay"
) -> None:
    text = f"Confirm your email address to get your {site_name} API keys:\n\n{link}\n"
    await _deliver(settings, to, "Confirm your email address", text, "email verification", link)


async def _deliver(
    settings: Settings, to: str, subject: str, text: str, what: str, link: str
) -> None:
    if settings.smtp_url is None:
        log.warning("%s for %s (no SMTP configured, development): %s", what, to, link)
        return
    await send(settings, to, subject, text)


async def send(settings: Settings, to: str, subject: str, text: str) -> None:
    """One plain-text mail; without SMTP, one log line naming the subject (development)."""
    if settings.smtp_url is None:
        log.warning("mail to %s (no SMTP configured, development): %s", to, subject)
        return
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = settings.mail_from, to, subject
    msg.set_content(text)
    url = urlsplit(settings.smtp_url.get_secret_value())
    try:
        await asyncio.to_thread(_send, url.scheme, url.hostname or "localhost", url, msg)
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("mail %r not sent: %s", subject, type(exc).__name__)


def _send(scheme: str, host: str, url: object, msg: EmailMessage) -> None:
    parts = urlsplit(str(getattr(url, "geturl", lambda: "")()))
    port = parts.port or (465 if scheme == "smtps" else 25)
    smtp_cls = smtplib.SMTP_SSL if scheme == "smtps" else smtplib.SMTP
    with smtp_cls(host, port, timeout=10) as smtp:
        if parts.username:
            smtp.login(unquote(parts.username), unquote(parts.password or ""))
        smtp.send_message(msg)
