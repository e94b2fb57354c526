"""Every environment variable the gateway reads, in one typed place."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import ClassVar, Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Bounds on one vendor call, in seconds; None: unbounded. `connect_s`: the TCP (and TLS)
    connection; `first_byte_s`: from sending the request to the status, headers and first
    body bytes; `idle_s`: any silence after that; `total_s`: the whole call, connect included."""

    connect_s: float = 10.0
    first_byte_s: float | None = 120.0
    idle_s: float | None = 120.0
    total_s: float | None = 600.0

    FIELDS: ClassVar[tuple[str, ...]] = ("connect_s", "first_byte_s", "idle_s", "total_s")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    host: str = Field("127.0.0.1", alias="TOKENRELAY_HOST")
    port: int = Field(8080, alias="TOKENRELAY_PORT")
    database_url: str = Field("sqlite:///./tokenrelay.db", alias="TOKENRELAY_DATABASE_URL")
    redis_url: str | None = Field(None, alias="TOKENRELAY_REDIS_URL")
    admin_token: SecretStr | None = Field(None, alias="TOKENRELAY_ADMIN_TOKEN")
    # Bearer token a Prometheus scrape of /metrics sends (the admin token works too); with
    # neither set /metrics is off: it shows revenue, models and deployments.
    metrics_token: SecretStr | None = Field(None, alias="TOKENRELAY_METRICS_TOKEN")
    # Ed25519 private seed (32 bytes, base64) usage receipts are signed with; the same on every
    # replica. Unset: generated once and kept in the database (billing/receipts.py).
    receipt_key: SecretStr | None = Field(None, alias="TOKENRELAY_RECEIPT_KEY")
    # The seeds receipts were signed with before a rotation (comma-separated): their receipts
    # still verify and the compaction items sealed under them still open; none signs again.
    receipt_key_previous: SecretStr | None = Field(None, alias="TOKENRELAY_RECEIPT_KEY_PREVIOUS")
    key_prefix: str = Field("sk-aic-", alias="TOKENRELAY_KEY_PREFIX")
    catalog_path: str | None = Field(None, alias="TOKENRELAY_CATALOG")
    # Which vendors the built-in emulator serves. "auto": those without a key, on the embedded
    # default (SQLite) only — with a production database a vendor without a key is unavailable
    # (a forgotten key must never mean paying customers get emulated replies); "keyless": those
    # without a key, anywhere (explicit opt-in); "none": never; "all": every vendor, even with a
    # key (demo, tests).
    emulate: Literal["auto", "keyless", "none", "all"] = Field("auto", alias="TOKENRELAY_EMULATE")
    # Where the emulator runs; empty = the gateway starts it itself, as a second server in its
    # process on 127.0.0.1:TOKENRELAY_EMULATOR_PORT (0 = any free port), never on its own port.
    emulator_url: str | None = Field(None, alias="TOKENRELAY_EMULATOR_URL")
    emulator_port: int = Field(0, alias="TOKENRELAY_EMULATOR_PORT")
    max_body_bytes: int = Field(32 * 1024 * 1024, alias="TOKENRELAY_MAX_BODY_BYTES")
    # Vendor call timeouts (tokenrelay.settings.Timeouts), the defaults for every vendor; the
    # catalog's `[timeouts.<vendor>]` tables override them per vendor. 0 = no limit (but
    # connect). A timeout before the answer's first byte is retried, then answered 504; a
    # stalled stream ends with the client format's error event, billed for what was delivered.
    connect_timeout_s: float = Field(10.0, alias="TOKENRELAY_CONNECT_TIMEOUT_S", gt=0)
    first_byte_timeout_s: float = Field(120.0, alias="TOKENRELAY_FIRST_BYTE_TIMEOUT_S", ge=0)
    idle_timeout_s: float = Field(120.0, alias="TOKENRELAY_IDLE_TIMEOUT_S", ge=0)
    total_timeout_s: float = Field(600.0, alias="TOKENRELAY_TOTAL_TIMEOUT_S", ge=0)
    # Deprecated, the one timeout of old (each read from the vendor): when set, the default of
    # the first-byte and idle timeouts that are not set themselves.
    upstream_timeout_s: float | None = Field(None, alias="TOKENRELAY_UPSTREAM_TIMEOUT", ge=0)
    # Extra attempts on connection failures, 5xx/529 and (on another deployment) 429, only
    # before the first byte is sent; all of a request's attempts end within the budget.
    upstream_retries: int = Field(1, alias="TOKENRELAY_UPSTREAM_RETRIES")
    upstream_retry_budget_s: float = Field(30.0, alias="TOKENRELAY_UPSTREAM_RETRY_BUDGET_S")
    # A failed deployment rests for this long, doubling per failure in a row up to the max.
    upstream_cooldown_s: float = Field(1.0, alias="TOKENRELAY_UPSTREAM_COOLDOWN_S")
    upstream_cooldown_max_s: float = Field(60.0, alias="TOKENRELAY_UPSTREAM_COOLDOWN_MAX_S")
    # A conversation sticks to one deployment of a vendor while it is healthy (its prompt cache).
    upstream_affinity: bool = Field(True, alias="TOKENRELAY_UPSTREAM_AFFINITY")
    # Client gone mid-stream: "cancel" closes the upstream call (billing what was generated,
    # estimated); "drain" reads on to the vendor's own final usage without forwarding it.
    on_disconnect: Literal["cancel", "drain"] = Field("cancel", alias="TOKENRELAY_ON_DISCONNECT")
    reasoning_cache_ttl_s: int = Field(24 * 3600, alias="TOKENRELAY_REASONING_CACHE_TTL")
    log_level: str = Field("info", alias="TOKENRELAY_LOG_LEVEL")
    # "text" or "json" (one JSON object a line: time, level, logger, message, fields).
    log_format: Literal["text", "json"] = Field("text", alias="TOKENRELAY_LOG_FORMAT")
    # "on": one line per finished request on the `tokenrelay.access` logger.
    access_log: Literal["on", "off"] = Field("off", alias="TOKENRELAY_ACCESS_LOG")
    # OpenTelemetry traces (the `otel` extra, tracing.py): "auto" = on when the standard
    # OTEL_EXPORTER_OTLP_ENDPOINT is set.
    otel: Literal["on", "off", "auto"] = Field("auto", alias="TOKENRELAY_OTEL")
    # Client connection bounds (tokenrelay.server.http_guard): a request's headers must arrive
    # within header_timeout_s of the connection or of their first byte, its body within
    # body_timeout_s of the headers; an idle keep-alive connection is closed after
    # keepalive_timeout_s. The response is never timed (streams run as long as the vendor does).
    header_timeout_s: float = Field(10.0, alias="TOKENRELAY_HEADER_TIMEOUT_S")
    body_timeout_s: float = Field(60.0, alias="TOKENRELAY_BODY_TIMEOUT_S")
    keepalive_timeout_s: int = Field(30, alias="TOKENRELAY_KEEPALIVE_TIMEOUT_S")
    # Open connections per client IP; one more is answered 429 and closed.
    # 2048: one customer's backend may hold a thousand streams open at once (the benchmark
    # does); slow clients are bounded by the header and body deadlines, not by this.
    max_connections_per_ip: int = Field(2048, alias="TOKENRELAY_MAX_CONNECTIONS_PER_IP", ge=0)
    # On SIGTERM: stop accepting, then let requests in flight finish for up to this long.
    shutdown_grace_s: int = Field(30, alias="TOKENRELAY_SHUTDOWN_GRACE_S")
    # Billing: "on" reserves, settles and records every request; "off" only prices responses.
    billing: Literal["on", "off"] = Field("on", alias="TOKENRELAY_BILLING")
    # What a customer pays for each way a request ends (billing/policy.py, README "Billing").
    billing_policy: Literal["delivered", "vendor_accepted_input"] = Field(
        "delivered", alias="TOKENRELAY_BILLING_POLICY"
    )
    # The settlement writer waits this long for more records before committing a batch.
    writer_batch_ms: float = Field(2.0, alias="TOKENRELAY_WRITER_BATCH_MS")
    # Prefix of every Redis key the gateway writes (holds, rate limits, price notices).
    redis_prefix: str = Field("tokenrelay:", alias="TOKENRELAY_REDIS_PREFIX")
    # Worker processes (as uvicorn/gunicorn read it): more than one needs Redis for billing.
    workers: int = Field(1, alias="WEB_CONCURRENCY")

    # --- Batches (tokenrelay.batches): lines run at once per process, and the largest batch
    # file or Message Batches body taken. The public URL makes absolute links (results_url).
    batch_concurrency: int = Field(16, alias="TOKENRELAY_BATCH_CONCURRENCY", ge=1)
    batch_max_bytes: int = Field(200 * 1024 * 1024, alias="TOKENRELAY_BATCH_MAX_BYTES", gt=0)
    # Lines for a vendor with a batch API of its own go to it as one vendor batch (its batch
    # price); off: the gateway runs every line itself. Vendor batches are polled this often.
    batch_vendor_apis: bool = Field(True, alias="TOKENRELAY_BATCH_VENDOR_APIS")
    batch_poll_s: float = Field(30.0, alias="TOKENRELAY_BATCH_POLL_S", gt=0)

    # --- Customer portal and operator console (tokenrelay.portal)
    # "open": anyone may sign up (and gets signup_credit_usd); "invite": only with a
    # redemption code; "off": no sign-up page (accounts come from the operator).
    signup: str = Field("open", alias="TOKENRELAY_SIGNUP", pattern="^(open|invite|off)$")
    signup_credit_usd: Decimal = Field(Decimal(0), alias="TOKENRELAY_SIGNUP_CREDIT_USD", ge=0)
    # Signs session cookies, CSRF tokens and password-reset links. Every replica behind a load
    # balancer needs the same one; unset, each process picks a random one (one replica only:
    # sessions then end with the process).
    session_secret: SecretStr | None = Field(None, alias="TOKENRELAY_SESSION_SECRET")
    # Encrypts vendor keys an operator stores in the console (Fernet, derived from this
    # string); unset, the console stores only `env:NAME` references.
    secret_key: SecretStr | None = Field(None, alias="TOKENRELAY_SECRET_KEY", min_length=16)
    session_ttl_s: int = Field(7 * 24 * 3600, alias="TOKENRELAY_SESSION_TTL_S", gt=0)
    # "auto": cookies are Secure when the request came over https (X-Forwarded-Proto counts
    # only through a proxy uvicorn trusts); "on" / "off" force it.
    cookie_secure: str = Field("auto", alias="TOKENRELAY_COOKIE_SECURE", pattern="^(auto|on|off)$")
    # Failed sign-ins per (client IP, email) within login_window_s before each further try
    # waits, doubling from a second; ten times as many per client IP across emails.
    login_attempts: int = Field(5, alias="TOKENRELAY_LOGIN_ATTEMPTS", gt=0)
    login_window_s: int = Field(300, alias="TOKENRELAY_LOGIN_WINDOW_S", gt=0)
    # The address customers reach the gateway at (https://api.example.com): every absolute link
    # (reset and verification mail, the docs' examples, Stripe's return URLs) is built from it,
    # never from the request's Host header, and when set a request for another Host gets 421.
    # Unset: http://TOKENRELAY_HOST:TOKENRELAY_PORT (the embedded default, `make run`).
    public_url: str | None = Field(
        None, alias="TOKENRELAY_PUBLIC_URL", pattern="^https?://[^/]+/?$"
    )
    # Peers whose X-Forwarded-For / X-Forwarded-Proto are believed (comma-separated IPs or
    # CIDRs, "*" for any): the load balancer in front. The client IP that throttles count is
    # the first address from the right that is not one of them.
    trusted_proxies: str = Field("127.0.0.1", alias="TOKENRELAY_TRUSTED_PROXIES")
    # Sign-ups per client IP and in all per hour (shared across replicas with Redis).
    signup_per_ip_hour: int = Field(3, alias="TOKENRELAY_SIGNUP_PER_IP_HOUR", ge=0)
    signup_per_hour: int = Field(100, alias="TOKENRELAY_SIGNUP_PER_HOUR", ge=0)
    # One account per mailbox: "strip" treats a+tag@ as a@ (most providers deliver both to
    # one inbox); "keep" makes them different accounts. Dots in the local part are ignored
    # at the domains listed (Gmail delivers a.lice@ to alice@).
    signup_plus_tags: str = Field(
        "strip", alias="TOKENRELAY_SIGNUP_PLUS_TAGS", pattern="^(strip|keep)$"
    )
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
    # --- Operator alerts (tokenrelay.admin.alerts): a vendor with every deployment down, an
    # error-rate jump, a model sold below upstream cost go to this webhook (JSON POST) and/or
    # email address; customers' low-balance emails go out on the same check.
    alert_webhook_url: SecretStr | None = Field(None, alias="TOKENRELAY_ALERT_WEBHOOK_URL")
    alert_email: str | None = Field(None, alias="TOKENRELAY_ALERT_EMAIL")
    alert_interval_s: float = Field(60.0, alias="TOKENRELAY_ALERT_INTERVAL_S", gt=0)

    # --- The operator's brand (tokenrelay.portal.brand): every page, mail and docs example.
    # The public base URL is `public_url` (above): every page, mail and docs example uses it.
    site_name: str = Field("tokenrelay", alias="TOKENRELAY_SITE_NAME", min_length=1)
    support_email: str | None = Field(None, alias="TOKENRELAY_SUPPORT_EMAIL")
    brand_color: str = Field("#3559c7", alias="TOKENRELAY_BRAND_COLOR", pattern="^#[0-9a-fA-F]{6}$")
    logo_url: str | None = Field(None, alias="TOKENRELAY_LOGO_URL")
    terms_url: str | None = Field(None, alias="TOKENRELAY_TERMS_URL")
    privacy_url: str | None = Field(None, alias="TOKENRELAY_PRIVACY_URL")
    # A TOML file with the same names (site_name = "...") that overrides the variables above.
    brand_file: str | None = Field(None, alias="TOKENRELAY_BRAND_FILE")

    # Vendor keys and base-URL overrides are read where the vendor registry names them
    # (tokenrelay.vendors: ANTHROPIC_API_KEY, TOKENRELAY_ANTHROPIC_BASE_URL, ...).

    def timeouts(self) -> Timeouts:
        """The vendor call timeouts every vendor has unless the catalog says otherwise."""
        first_byte, idle = self.first_byte_timeout_s, self.idle_timeout_s
        if self.upstream_timeout_s is not None:  # the deprecated variable, where not overridden
            if "first_byte_timeout_s" not in self.model_fields_set:
                first_byte = self.upstream_timeout_s
            if "idle_timeout_s" not in self.model_fields_set:
                idle = self.upstream_timeout_s
        return Timeouts(
            self.connect_timeout_s, first_byte or None, idle or None, self.total_timeout_s or None
        )

    @property
    def embedded(self) -> bool:
        """The embedded default (SQLite, one process): a demo or a developer's machine."""
        return self.database_url.startswith("sqlite")

    def public_base(self) -> str:
        """The gateway's public origin, without a trailing slash: links are built from it."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "localhost" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    def is_emulated(self, api_key: str | None) -> bool:
        """Whether a vendor with this key (None: not set) is served by the emulator."""
        mode = self.emulate
        if mode == "auto":
            mode = "keyless" if self.embedded else "none"
        return mode == "all" or (mode == "keyless" and api_key is None)


class SettingsError(ValueError):
    """A setting's value is not one the gateway accepts (named, with what it accepts)."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        lines = []
        for e in exc.errors():
            field = str(e["loc"][0]) if e["loc"] else "settings"
            lines.append(f"{field}: {e['msg']} (got {e.get('input')!r})")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None
