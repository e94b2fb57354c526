"""The billing seam the relay calls: reserve before the upstream call, settle after it.

`UsageMeter` prices every request from its metered usage (the cost shown to the client in the
`x-tokenrelay-cost-usd` header and the final stream event) and logs the usage record.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from tokenrelay.billing.pricing import cost_nano, usd
from tokenrelay.catalog import Catalog
from tokenrelay.settings import Settings

if TYPE_CHECKING:
    from tokenrelay.relay import Prepared

log = logging.getLogger("tokenrelay.usage")


class UsageMeter:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    async def admit(self, p: Prepared) -> None:
        return None

    def cost(self, p: Prepared) -> int:
        if p.ctx.cost_nano is None:
            return cost_nano(p.ctx.usage, p.resolved.entry.price)
        return p.ctx.cost_nano

    def extra_usage(self, p: Prepared) -> dict[str, Any]:
        return {"cost_usd": usd(self.cost(p))}

    def cost_headers(self, p: Prepared) -> list[tuple[bytes, bytes]]:
        return [(b"x-tokenrelay-cost-usd", usd(self.cost(p)).encode())]

    async def settle(self, p: Prepared) -> None:
        ctx = p.ctx
        if ctx.cost_nano is not None:  # settled already: once per request
            return
        ctx.cost_nano = cost_nano(ctx.usage, p.resolved.entry.price)
        u = ctx.usage
        log.info(
            "usage request_id=%s key=%s model=%s vendor=%s stream=%s status=%s source=%s "
            "in=%d out=%d cache_read=%d cache_write=%d reasoning=%d cost_usd=%s ms=%.1f",
            ctx.request_id,
            ctx.key_id,
            ctx.model_id,
            ctx.vendor,
            ctx.stream,
            ctx.status,
            ctx.usage_source,
            u.input,
            u.output,
            u.cache_read,
            u.cache_write,
            u.reasoning,
            usd(self.cost(p)),
            ctx.duration_ms or 0.0,
        )

    async def close(self) -> None:
        return None


async def build_meter(settings: Settings, engine: Any, catalog: Catalog) -> UsageMeter:
    return UsageMeter(catalog)
