"""The customer portal and the operator console: sign-up and sign-in, sessions, mail, Stripe,
and the operator's brand."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field, SecretStr

from tokenrelay.settings.group import Group

# "open": anyone may sign up (and gets signup_credit_usd); "invite": only with a redemption
# code; "off": no sign-up page (accounts come from the operator).
SignupMode = Literal["open", "invite", "off"]
# "auto": cookies are Secure when the request came over https (X-Forwarded-Proto counts only
# through a proxy uvicorn trusts); "on" / "off" force it.
CookieSecure = Literal["auto", "on", "off"]
# One account per mailbox: "strip" treats a+tag@ as a@ (most providers deliver both to one
# inbox); "keep" makes them different accounts.
PlusTags = Literal["strip", "keep"]


class PortalSettings(Group):
    signup: SignupMode = Field("open", alias="TOKENRELAY_SIGNUP")
    signup_credit_usd: Decimal = Field(Decimal(0), alias="TOKENRELAY_SIGNUP_CREDIT_USD", ge=0)
    # Signs session cookies, CSRF tokens and password-reset links. Every replica behind a load
    # balancer needs the same one; unset, each process picks a random one (one replica only:
    # sessions then end with the process).
    session_secret: SecretStr | None = Field(None, alias="TOKENRELAY_SESSION_SECRET")
    session_ttl_s: int = Field(7 * 24 * 3600, alias="TOKENRELAY_SESSION_TTL_S", gt=0)
    cookie_secure: CookieSecure = Field("auto", alias="TOKENRELAY_COOKIE_SECURE")
    # Failed sign-ins per (client IP, email) within login_window_s before each further try
    # waits, doubling from a second; ten times as many per client IP across emails.
    login_attempts: int = Field(5, alias="TOKENRELAY_LOGIN_ATTEMPTS", gt=0)
    login_window_s: int = Field(300, alias="TOKENRELAY_LOGIN_WINDOW_S", gt=0)
    # Sign-ups per client IP and in all per hour (shared across replicas with Redis).
    signup_per_ip_hour: int = Field(3, alias="TOKENRELAY_SIGNUP_PER_IP_HOUR", ge=0)
    signup_per_hour: int = Field(100, alias="TOKENRELAY_SIGNUP_PER_HOUR", ge=0)
    signup_plus_tags: PlusTags = Field("strip", alias="TOKENRELAY_SIGNUP_PLUS_TAGS")
    # Dots in the local part are ignored at the domains listed (Gmail delivers a.lice@ to
    # alice@).
    signup_dotless_domains: str = Field(
        "gmail.com,googlemail.com", alias="TOKENRELAY_SIGNUP_DOTLESS_DOMAINS"
    )
    # Password reset mail: smtp://user:pass@host:port (smtps:// for TLS); unset, the reset
    # link is written to the log (development).
    smtp_url: SecretStr | None = Field(None, alias="TOKENRELAY_SMTP_URL")
    mail_from: str = Field("tokenrelay@localhost", alias="TOKENRELAY_MAIL_FROM")
    # Stripe Checkout top-ups (off unless the secret key is set); the webhook secret verifies
    # POST /stripe/webhook; amounts offered in whole USD.
    stripe_secret_key: SecretStr | None = Field(None, alias="STRIPE_SECRET_KEY")
    stripe_webhook_secret: SecretStr | None = Field(None, alias="STRIPE_WEBHOOK_SECRET")
    stripe_api_base: str | None = Field(None, alias="TOKENRELAY_STRIPE_API_BASE")  # tests
    stripe_amounts_usd: str = Field("10,25,100", alias="TOKENRELAY_STRIPE_AMOUNTS_USD")

    # --- The operator's brand (tokenrelay.portal.brand): every page, mail and docs example.
    # The public base URL is `public_url` (server settings).
    site_name: str = Field("tokenrelay", alias="TOKENRELAY_SITE_NAME", min_length=1)
    support_email: str | None = Field(None, alias="TOKENRELAY_SUPPORT_EMAIL")
    brand_color: str = Field("#3559c7", alias="TOKENRELAY_BRAND_COLOR", pattern="^#[0-9a-fA-F]{6}$")
    logo_url: str | None = Field(None, alias="TOKENRELAY_LOGO_URL")
    terms_url: str | None = Field(None, alias="TOKENRELAY_TERMS_URL")
    privacy_url: str | None = Field(None, alias="TOKENRELAY_PRIVACY_URL")
    # A TOML file with the same names (site_name = "...") that overrides the variables above.
    brand_file: str | None = Field(None, alias="TOKENRELAY_BRAND_FILE")
