"""The customer portal and the operator console: sign-up and sign-in, sessions, mail, Stripe,
and the operator's brand."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from msgspec import Meta

from tokenrelay.money import MAX_AMOUNT_NANO, MoneyError, parse_nano, usd
from tokenrelay.settings.group import Check, Group, env
from tokenrelay.settings.secret import SecretStr

# "open": anyone may sign up (and gets signup_credit_usd); "invite": only with a redemption
# code; "off": no sign-up page (accounts come from the operator).
SignupMode = Literal["open", "invite", "off"]
# "auto": cookies are Secure when the request came over https (X-Forwarded-Proto counts only
# through a proxy uvicorn trusts); "on" / "off" force it.
CookieSecure = Literal["auto", "on", "off"]
# One account per mailbox: "strip" treats a+tag@ as a@ (most providers deliver both to one
# inbox); "keep" makes them different accounts.
PlusTags = Literal["strip", "keep"]


def _is_credit(amount: Decimal) -> bool:
    """Whether `amount` converts to nano-USD exactly and in bounds, as the portal converts it
    when an address is verified (money.parse_nano): a sub-nano part or an overflow fails the
    start, not each verification."""
    try:
        parse_nano(amount)
    except MoneyError:
        return False
    return True


class PortalSettings(Group):
    signup: SignupMode = env("TOKENRELAY_SIGNUP", "open")
    signup_credit_usd: Annotated[
        Decimal,
        Check(_is_credit, f"USD from 0 to {usd(MAX_AMOUNT_NANO)}, at most 9 decimal places"),
    ] = env("TOKENRELAY_SIGNUP_CREDIT_USD", Decimal(0))
    # Signs session cookies, CSRF tokens and password-reset links. Every replica behind a load
    # balancer needs the same one; unset, each process picks a random one (one replica only:
    # sessions then end with the process).
    session_secret: SecretStr | None = env("TOKENRELAY_SESSION_SECRET", None)
    session_ttl_s: Annotated[int, Meta(gt=0)] = env("TOKENRELAY_SESSION_TTL_S", 7 * 24 * 3600)
    cookie_secure: CookieSecure = env("TOKENRELAY_COOKIE_SECURE", "auto")
    # Failed sign-ins per (client IP, email) within login_window_s before each further try
    # waits, doubling from a second; ten times as many per client IP across emails.
    login_attempts: Annotated[int, Meta(gt=0)] = env("TOKENRELAY_LOGIN_ATTEMPTS", 5)
    login_window_s: Annotated[int, Meta(gt=0)] = env("TOKENRELAY_LOGIN_WINDOW_S", 300)
    # Sign-ups per client IP and in all per hour (shared across replicas with Redis).
    signup_per_ip_hour: Annotated[int, Meta(ge=0)] = env("TOKENRELAY_SIGNUP_PER_IP_HOUR", 3)
    signup_per_hour: Annotated[int, Meta(ge=0)] = env("TOKENRELAY_SIGNUP_PER_HOUR", 100)
    signup_plus_tags: PlusTags = env("TOKENRELAY_SIGNUP_PLUS_TAGS", "strip")
    # Dots in the local part are ignored at the domains listed (Gmail delivers a.lice@ to
    # alice@).
    signup_dotless_domains: str = env(
        "TOKENRELAY_SIGNUP_DOTLESS_DOMAINS", "gmail.com,googlemail.com"
    )
    # Password reset mail: smtp://user:pass@host:port (smtps:// for TLS); unset, the reset
    # link is written to the log (development).
    smtp_url: SecretStr | None = env("TOKENRELAY_SMTP_URL", None)
    mail_from: str = env("TOKENRELAY_MAIL_FROM", "tokenrelay@localhost")
    # Stripe Checkout top-ups (off unless the secret key is set); the webhook secret verifies
    # POST /stripe/webhook; amounts offered in whole USD.
    stripe_secret_key: SecretStr | None = env("STRIPE_SECRET_KEY", None)
    stripe_webhook_secret: SecretStr | None = env("STRIPE_WEBHOOK_SECRET", None)
    stripe_api_base: str | None = env("TOKENRELAY_STRIPE_API_BASE", None)  # tests
    stripe_amounts_usd: str = env("TOKENRELAY_STRIPE_AMOUNTS_USD", "10,25,100")

    # --- The operator's brand (tokenrelay.portal.brand): every page, mail and docs example.
    # The public base URL is `public_url` (server settings).
    site_name: Annotated[str, Meta(min_length=1)] = env("TOKENRELAY_SITE_NAME", "tokenrelay")
    support_email: str | None = env("TOKENRELAY_SUPPORT_EMAIL", None)
    brand_color: Annotated[str, Meta(pattern="^#[0-9a-fA-F]{6}$")] = env(
        "TOKENRELAY_BRAND_COLOR", "#3559c7"
    )
    logo_url: str | None = env("TOKENRELAY_LOGO_URL", None)
    terms_url: str | None = env("TOKENRELAY_TERMS_URL", None)
    privacy_url: str | None = env("TOKENRELAY_PRIVACY_URL", None)
    # A TOML file with the same names (site_name = "...") that overrides the variables above.
    brand_file: str | None = env("TOKENRELAY_BRAND_FILE", None)
