"""Pooled HTTP connections to the vendors, and where each vendor lives (real or emulated)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tokenrelay.http_client import HttpClient, Response
from tokenrelay.settings import EMULATOR_PATHS, VENDORS, Settings
from tokenrelay.vendors.anthropic import ANTHROPIC
from tokenrelay.vendors.base import UpstreamRequest, Vendor
from tokenrelay.vendors.deepseek import DEEPSEEK
from tokenrelay.vendors.gemini import GEMINI
from tokenrelay.vendors.openai import OPENAI
from tokenrelay.vendors.xai import XAI

log = logging.getLogger("tokenrelay")

ADAPTERS: dict[str, Vendor] = {
    "anthropic": ANTHROPIC,
    "openai": OPENAI,
    "gemini": GEMINI,
    "xai": XAI,
    "deepseek": DEEPSEEK,
}

# The client formats each vendor speaks natively (same-format requests take the fast path).
NATIVE_FORMAT = {
    "anthropic": "anthropic",
    "openai": "openai",
    "xai": "openai",
    "deepseek": "openai",
    "gemini": "gemini",
}

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

    def __init__(self, settings: Settings, emulator_base: str | None) -> None:
        self.endpoints: dict[str, VendorEndpoint] = {}
        for name in VENDORS:
            emulated = settings.is_emulated(name)
            if emulated:
                if emulator_base is None:
                    continue  # TOKENRELAY_EMULATE=none and no key: the vendor is unavailable
                base = emulator_base.rstrip("/") + EMULATOR_PATHS[name]
                key = EMULATED_KEY
            else:
                base = settings.vendor_base_url(name)
                key = settings.vendor_key(name) or ""
            self.endpoints[name] = VendorEndpoint(name, ADAPTERS[name], base, key, emulated)
        self.client = HttpClient(connect_timeout=10.0, read_timeout=settings.upstream_timeout_s)

    @property
    def emulated(self) -> set[str]:
        return {n for n, e in self.endpoints.items() if e.emulated}

    async def open(self, vendor: str, call: UpstreamRequest) -> Response:
        """Send `call`; returns once the vendor's status and headers arrived."""
        headers = {"accept-encoding": "identity", **call.headers}
        return await self.client.request(call.method, call.url, headers, call.body)

    async def close(self) -> None:
        await self.client.close()
