"""The process and its HTTP edge: where it listens, who may reach what, and the bounds it
puts on client connections."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from tokenrelay.settings.group import Group, env
from tokenrelay.settings.secret import SecretStr


class ServerSettings(Group):
    host: str = env("TOKENRELAY_HOST", "127.0.0.1")
    port: int = env("TOKENRELAY_PORT", 8080)
    # Worker processes (as uvicorn/gunicorn read it): more than one needs Redis for billing.
    workers: int = env("WEB_CONCURRENCY", 1)
    admin_token: SecretStr | None = env("TOKENRELAY_ADMIN_TOKEN", None)
    # Bearer token a Prometheus scrape of /metrics sends (the admin token works too); with
    # neither set /metrics is off: it shows revenue, models and deployments.
    metrics_token: SecretStr | None = env("TOKENRELAY_METRICS_TOKEN", None)
    key_prefix: str = env("TOKENRELAY_KEY_PREFIX", "sk-aic-")
    catalog_path: str | None = env("TOKENRELAY_CATALOG", None)
    max_body_bytes: int = env("TOKENRELAY_MAX_BODY_BYTES", 32 * 1024 * 1024)
    # Client connection bounds (tokenrelay.server.http_guard): a request's headers must arrive
    # within header_timeout_s of the connection or of their first byte, its body within
    # body_timeout_s of the headers; an idle keep-alive connection is closed after
    # keepalive_timeout_s. The response is never timed (streams run as long as the vendor does).
    header_timeout_s: float = env("TOKENRELAY_HEADER_TIMEOUT_S", 10.0)
    body_timeout_s: float = env("TOKENRELAY_BODY_TIMEOUT_S", 60.0)
    keepalive_timeout_s: int = env("TOKENRELAY_KEEPALIVE_TIMEOUT_S", 30)
    # Open connections per client IP; one more is answered 429 and closed.
    # 2048: one customer's backend may hold a thousand streams open at once (the benchmark
    # does); slow clients are bounded by the header and body deadlines, not by this.
    max_connections_per_ip: Annotated[int, Meta(ge=0)] = env(
        "TOKENRELAY_MAX_CONNECTIONS_PER_IP", 2048
    )
    # On SIGTERM: stop accepting, then let requests in flight finish for up to this long.
    shutdown_grace_s: int = env("TOKENRELAY_SHUTDOWN_GRACE_S", 30)
    # The address customers reach the gateway at (https://api.example.com): every absolute link
    # (reset and verification mail, the docs' examples, Stripe's return URLs) is built from it,
    # never from the request's Host header, and when set a request for another Host gets 421.
    # Unset: http://TOKENRELAY_HOST:TOKENRELAY_PORT (the embedded default, `make run`).
    public_url: Annotated[str, Meta(pattern="^https?://[^/]+/?$")] | None = env(
        "TOKENRELAY_PUBLIC_URL", None
    )
    # Peers whose X-Forwarded-For / X-Forwarded-Proto are believed (comma-separated IPs or
    # CIDRs, "*" for any): the load balancer in front. The client IP that throttles count is
    # the first address from the right that is not one of them.
    trusted_proxies: str = env("TOKENRELAY_TRUSTED_PROXIES", "127.0.0.1")

    def public_base(self) -> str:
        """The gateway's public origin, without a trailing slash: links are built from it."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "localhost" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"
