"""Vendor calls: their timeouts, retries, cooldowns, and what a client gone mid-stream does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

from msgspec import Meta

from tokenrelay.settings.group import Flag, Group, env

# A client gone mid-stream: "cancel" closes the upstream call (billing what was generated,
# estimated); "drain" reads on to the vendor's own final usage without forwarding it.
OnDisconnect = Literal["cancel", "drain"]


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


class UpstreamSettings(Group):
    # Vendor call timeouts (Timeouts), the defaults for every vendor; the catalog's
    # `[timeouts.<vendor>]` tables override them per vendor. 0 = no limit (but connect). A
    # timeout before the answer's first byte is retried, then answered 504; a stalled stream
    # ends with the client format's error event, billed for what was delivered.
    connect_timeout_s: Annotated[float, Meta(gt=0)] = env("TOKENRELAY_CONNECT_TIMEOUT_S", 10.0)
    first_byte_timeout_s: Annotated[float, Meta(ge=0)] = env(
        "TOKENRELAY_FIRST_BYTE_TIMEOUT_S", 120.0
    )
    idle_timeout_s: Annotated[float, Meta(ge=0)] = env("TOKENRELAY_IDLE_TIMEOUT_S", 120.0)
    total_timeout_s: Annotated[float, Meta(ge=0)] = env("TOKENRELAY_TOTAL_TIMEOUT_S", 600.0)
    # Deprecated, the one timeout of old (each read from the vendor): when set, the default of
    # the first-byte and idle timeouts that are not set themselves.
    upstream_timeout_s: Annotated[float, Meta(ge=0)] | None = env(
        "TOKENRELAY_UPSTREAM_TIMEOUT", None
    )
    # Extra attempts on connection failures, 5xx/529 and (on another deployment) 429, only
    # before the first byte is sent; all of a request's attempts end within the budget.
    upstream_retries: int = env("TOKENRELAY_UPSTREAM_RETRIES", 1)
    upstream_retry_budget_s: float = env("TOKENRELAY_UPSTREAM_RETRY_BUDGET_S", 30.0)
    # A failed deployment rests for this long, doubling per failure in a row up to the max.
    upstream_cooldown_s: float = env("TOKENRELAY_UPSTREAM_COOLDOWN_S", 1.0)
    upstream_cooldown_max_s: float = env("TOKENRELAY_UPSTREAM_COOLDOWN_MAX_S", 60.0)
    # A conversation sticks to one deployment of a vendor while it is healthy (its prompt cache).
    upstream_affinity: Flag = env("TOKENRELAY_UPSTREAM_AFFINITY", True)
    on_disconnect: OnDisconnect = env("TOKENRELAY_ON_DISCONNECT", "cancel")

    def timeouts(self) -> Timeouts:
        """The vendor call timeouts every vendor has unless the catalog says otherwise."""
        first_byte, idle = self.first_byte_timeout_s, self.idle_timeout_s
        if self.upstream_timeout_s is not None:  # the deprecated variable, where not overridden
            if "first_byte_timeout_s" not in self.given:
                first_byte = self.upstream_timeout_s
            if "idle_timeout_s" not in self.given:
                idle = self.upstream_timeout_s
        return Timeouts(
            self.connect_timeout_s, first_byte or None, idle or None, self.total_timeout_s or None
        )
