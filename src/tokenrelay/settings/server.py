"""The process and its HTTP edge: where it listens, who may reach what, and the bounds it
puts on client connections."""

from __future__ import annotations

from pydantic import Field, SecretStr

from tokenrelay.settings.group import Group


class ServerSettings(Group):
    host: str = Field("127.0.0.1", alias="TOKENRELAY_HOST")
    port: int = Field(8080, alias="TOKENRELAY_PORT")
    # Worker processes (as uvicorn/gunicorn read it): more than one needs Redis for billing.
    workers: int = Field(1, alias="WEB_CONCURRENCY")
    admin_token: SecretStr | None = Field(None, alias="TOKENRELAY_ADMIN_TOKEN")
    # Bearer token a Prometheus scrape of /metrics sends (the admin token works too); with
    # neither set /metrics is off: it shows revenue, models and deployments.
    metrics_token: SecretStr | None = Field(None, alias="TOKENRELAY_METRICS_TOKEN")
    key_prefix: str = Field("sk-aic-", alias="TOKENRELAY_KEY_PREFIX")
    catalog_path: str | None = Field(None, alias="TOKENRELAY_CATALOG")
    max_body_bytes: int = Field(32 * 1024 * 1024, alias="TOKENRELAY_MAX_BODY_BYTES")
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

    def public_base(self) -> str:
        """The gateway's public origin, without a trailing slash: links are built from it."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "localhost" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"
