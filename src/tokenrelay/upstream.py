"""Pooled HTTP connections to the vendors, and where each vendor lives (real or emulated)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import aiohttp

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
    """One keep-alive connection pool per vendor; created in the app's lifespan."""

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
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=10, sock_read=settings.upstream_timeout_s
        )
        self._sessions: dict[str, aiohttp.ClientSession] = {}

    @property
    def emulated(self) -> set[str]:
        return {n for n, e in self.endpoints.items() if e.emulated}

    def session(self, vendor: str) -> aiohttp.ClientSession:
        session = self._sessions.get(vendor)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=0, ttl_dns_cache=300, keepalive_timeout=60, enable_cleanup_closed=True
            )
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
            )
            self._sessions[vendor] = session
        return session

    async def open(self, vendor: str, call: UpstreamRequest) -> aiohttp.ClientResponse:
        headers = {"accept-encoding": "identity", **call.headers}
        return await self.session(vendor).request(
            call.method, call.url, data=call.body, headers=headers
        )

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()
