"""Pooled HTTP connections to the vendors, and where each vendor lives (real or emulated)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from tokenrelay.http_client import HttpClient, Response
from tokenrelay.settings import Settings, Timeouts
from tokenrelay.vendors import VendorSpec
from tokenrelay.vendors.base import UpstreamRequest, Vendor

log = logging.getLogger("tokenrelay")

EMULATED_KEY = "emulated-vendor-key"


@dataclass(slots=True, frozen=True)
class VendorEndpoint:
    name: str
    adapter: Vendor
    base_url: str
    api_key: str
    emulated: bool


class Upstreams:
    """Keep-alive connection pools to the vendors (one per host); created in the lifespan."""

    def __init__(
        self,
        settings: Settings,
        vendors: dict[str, VendorSpec],
        emulator_base: str | None,
        timeouts: Mapping[str, Timeouts] | None = None,
    ) -> None:
        """`timeouts`: per vendor, where not the settings' defaults (the catalog's tables)."""
        self.endpoints: dict[str, VendorEndpoint] = {}
        for name, spec in vendors.items():
            key = spec.api_key()
            if settings.is_emulated(key):
                if emulator_base is None:
                    continue  # TOKENRELAY_EMULATE=none and no key: the vendor is unavailable
                base, key = emulator_base.rstrip("/") + spec.emulator_path, EMULATED_KEY
                emulated = True
            else:
                base, emulated = spec.endpoint_url(), False
            self.endpoints[name] = VendorEndpoint(name, spec.adapter, base, key or "", emulated)
        self.client = HttpClient(timeouts=settings.timeouts())
        self.timeouts = dict(timeouts or {})

    @property
    def emulated(self) -> set[str]:
        return {n for n, e in self.endpoints.items() if e.emulated}

    async def open(self, vendor: str, call: UpstreamRequest) -> Response:
        """Send `call`; returns once the vendor's status and headers arrived."""
        headers = {"accept-encoding": "identity", **call.headers}
        timeouts = self.timeouts.get(vendor)
        return await self.client.request(call.method, call.url, headers, call.body, timeouts)

    async def close(self) -> None:
        await self.client.close()
